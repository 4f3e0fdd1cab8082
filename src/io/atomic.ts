// Atomic file writes: the data goes to a temporary file in the destination's folder, is fsync'ed, then renamed
// over the destination. A crash or an error leaves either the old file or the new one, never a torn file.
import * as fs from 'node:fs';
import * as path from 'node:path';

type Bytes = string | ArrayBufferView;

let tempCounter = 0;

/** A unique temporary name next to `target` (same folder, so the final rename never crosses file systems). */
export function tempPathFor(target: string): string {
  const dir = path.dirname(target);
  const base = path.basename(target);
  tempCounter += 1;
  return path.join(dir, `.${base}.${process.pid}.${Date.now().toString(36)}.${tempCounter}.tmp`);
}

/** Best effort: make the rename itself durable. Some platforms cannot open or fsync a folder; that is fine. */
function fsyncDirSync(dir: string): void {
  let fd: number | null = null;
  try {
    fd = fs.openSync(dir, 'r');
    fs.fsyncSync(fd);
  } catch {
    // Windows and some network file systems refuse this; the rename is still atomic.
  } finally {
    if (fd !== null) fs.closeSync(fd);
  }
}

function toUint8(data: Bytes): Uint8Array {
  if (typeof data === 'string') return Buffer.from(data, 'utf8');
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/** Writes all of `bytes` at `position` (fs.writeSync may write less than asked; 1 GiB pieces stay far from limits). */
export function writeFullySync(fd: number, bytes: Uint8Array, position: number): void {
  const piece = 1 << 30;
  let done = 0;
  while (done < bytes.byteLength) {
    const n = fs.writeSync(fd, bytes, done, Math.min(piece, bytes.byteLength - done), position + done);
    if (n <= 0) throw new Error(`short write (${done} of ${bytes.byteLength} bytes)`);
    done += n;
  }
}

/**
 * A file being written in place at arbitrary offsets, which appears at its final path only on commit().
 * Use it for large outputs assembled piece by piece; abort() (or any error before commit) removes the temporary.
 */
export class AtomicFile {
  readonly fd: number;
  readonly tempPath: string;
  private state: 'open' | 'committed' | 'aborted' = 'open';

  private constructor(readonly path: string) {
    fs.mkdirSync(absoluteDir(path), { recursive: true });
    removeStaleTempFiles(absoluteDir(path), baseName(path)); // a killed earlier write of this file (gigabytes, for teacher outputs)
    this.tempPath = tempPathFor(path);
    this.fd = fs.openSync(this.tempPath, 'wx', 0o644);
  }

  static openSync(target: string): AtomicFile {
    return new AtomicFile(target);
  }

  /** Writes `data` at byte `position` of the temporary file. */
  write(data: Bytes, position: number): void {
    if (this.state !== 'open') throw new Error(`${this.path}: write after ${this.state}`);
    writeFullySync(this.fd, toUint8(data), position);
  }

  /** fsync, close, rename over the destination. */
  commit(): void {
    if (this.state !== 'open') throw new Error(`${this.path}: commit after ${this.state}`);
    try {
      fs.fsyncSync(this.fd);
      fs.closeSync(this.fd);
      fs.renameSync(this.tempPath, this.path);
    } catch (err) {
      this.state = 'aborted';
      fs.rmSync(this.tempPath, { force: true });
      throw err;
    }
    this.state = 'committed';
    fsyncDirSync(absoluteDir(this.path));
  }

  /** Drops the temporary file; the destination is untouched. Safe to call more than once. */
  abort(): void {
    if (this.state !== 'open') return;
    this.state = 'aborted';
    try {
      fs.closeSync(this.fd);
    } finally {
      fs.rmSync(this.tempPath, { force: true });
    }
  }
}

function absoluteDir(p: string): string {
  return path.dirname(path.resolve(p));
}

function baseName(p: string): string {
  return path.basename(p);
}

/** Writes `data` (a string, bytes, or pieces written back to back) to `target` atomically. */
export function writeFileAtomicSync(target: string, data: Bytes | readonly Bytes[]): void {
  const file = AtomicFile.openSync(target);
  try {
    let position = 0;
    for (const piece of Array.isArray(data) ? data : [data as Bytes]) {
      const bytes = toUint8(piece);
      file.write(bytes, position);
      position += bytes.byteLength;
    }
    file.commit();
  } catch (err) {
    file.abort();
    throw err;
  }
}

/** Async form of writeFileAtomicSync (same guarantees; uses fs.promises so it does not block the event loop). */
export async function writeFileAtomic(target: string, data: Bytes | readonly Bytes[]): Promise<void> {
  await fs.promises.mkdir(absoluteDir(target), { recursive: true });
  const tempPath = tempPathFor(target);
  const handle = await fs.promises.open(tempPath, 'wx', 0o644);
  try {
    for (const piece of Array.isArray(data) ? data : [data as Bytes]) {
      const bytes = toUint8(piece);
      let done = 0;
      while (done < bytes.byteLength) {
        const { bytesWritten } = await handle.write(bytes, done, bytes.byteLength - done);
        if (bytesWritten <= 0) throw new Error(`${target}: short write`);
        done += bytesWritten;
      }
    }
    await handle.sync();
    await handle.close();
    await fs.promises.rename(tempPath, target);
  } catch (err) {
    await handle.close().catch(() => undefined);
    await fs.promises.rm(tempPath, { force: true });
    throw err;
  }
  fsyncDirSync(absoluteDir(target));
}

const TEMP_NAME = /^\.(.+)\.(\d+)\.[0-9a-z]+\.\d+\.tmp$/;

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'; // alive, someone else's
  }
}

/**
 * Removes the temporary files (tempPathFor names) in `dir` whose writing process is gone: what an atomic write
 * killed mid-way leaves. Files of live processes are left alone (they may be writing now). `target`: only the
 * temporaries of that file name. Returns the names removed.
 */
export function removeStaleTempFiles(dir: string, target?: string): string[] {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    const match = TEMP_NAME.exec(name);
    if (!match || (target !== undefined && match[1] !== target) || processAlive(Number(match[2]))) continue;
    fs.rmSync(path.join(dir, name), { force: true });
    removed.push(name);
  }
  return removed;
}
