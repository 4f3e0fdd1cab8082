// On-disk cache of decoded images: one safetensors file per image set (e.g. Food-11 split x size) holding
// `images` U8 [N, ...shape] and, in __metadata__, the key of every row: (source name, mtime, byte size).
// On open, rows whose source is unchanged are reused and only new or modified sources are decoded; an unchanged
// set opens without decoding anything. Rebuilds are written to a temporary file and renamed into place, so an
// interrupted build never leaves a torn cache. A corrupt or foreign cache file is simply rebuilt.
import * as path from 'node:path';
import { SafetensorsFile, SafetensorsWriter } from '../teacher/safetensors.js';

export const IMAGE_CACHE_FORMAT = 'wgkd-image-cache';
export const IMAGE_CACHE_VERSION = 1;

/** Default cache folder: .cache/wgkd/ under the current directory. */
export function defaultCacheDir(): string {
  return path.resolve('.cache', 'wgkd');
}

/** Identity of a source image: its name within the set, modification time and size. */
export interface SourceKey {
  name: string;
  mtimeMs: number;
  bytes: number;
}

export interface CacheProgress {
  /** Images ready (decoded or reused) out of total. */
  done: number;
  total: number;
  decoded: number;
  reused: number;
}

export interface CachedImageSetOptions {
  /** Cache file path. */
  file: string;
  sources: readonly SourceKey[];
  /** Shape of one image, e.g. [3, 224, 224]. */
  shape: readonly number[];
  /** Decodes source i into shape.reduce(*) bytes. */
  decode: (i: number) => Promise<Uint8Array>;
  /** Decodes in flight at once (default 2). */
  concurrency?: number;
  onProgress?: (p: CacheProgress) => void;
  /** Sets up to this size are held in memory; larger ones are read from the cache file per image (default 1 GiB). */
  memoryLimitBytes?: number;
  /** Extra __metadata__ (informational). */
  metadata?: Record<string, string>;
}

/** Decoded images, served synchronously from memory or from the cache file. */
export interface CachedImageSet {
  readonly length: number;
  /** How many images this open had to decode (0 when the cache was complete). */
  readonly decodedCount: number;
  readonly file: string;
  image(i: number): Uint8Array;
  close(): void;
}

type Row = [name: string, mtimeMs: number, bytes: number];

function sameKey(row: Row | undefined, key: SourceKey): boolean {
  return row !== undefined && row[0] === key.name && row[1] === key.mtimeMs && row[2] === key.bytes;
}

/** Opens the cache file if it is valid for `shape`; null if it is missing, corrupt or of another layout. */
function openExisting(file: string, shape: readonly number[]): { st: SafetensorsFile; rows: Row[] } | null {
  let st: SafetensorsFile;
  try {
    st = SafetensorsFile.open(file);
  } catch {
    return null;
  }
  try {
    const meta = st.metadata;
    if (meta.format !== IMAGE_CACHE_FORMAT || meta.format_version !== String(IMAGE_CACHE_VERSION) || !st.has('images')) throw new Error('foreign');
    const info = st.info('images');
    if (info.dtype !== 'U8' || info.shape.slice(1).join(',') !== shape.join(',')) throw new Error('other shape');
    const rows = JSON.parse(meta.sources) as Row[];
    if (!Array.isArray(rows) || rows.length !== info.shape[0]) throw new Error('bad sources');
    return { st, rows };
  } catch {
    st.close();
    return null;
  }
}

/** Opens (building or updating as needed) the cached, decoded image set described by `options`. */
export async function openCachedImageSet(options: CachedImageSetOptions): Promise<CachedImageSet> {
  const { file, sources, shape } = options;
  const imageBytes = shape.reduce((n, d) => n * d, 1);
  const total = sources.length;
  let existing = openExisting(file, shape);
  let decodedCount = 0;

  const complete = existing !== null && existing.rows.length === total && sources.every((s, i) => sameKey(existing!.rows[i], s));
  if (!complete) {
    // Reuse rows by source name where the key still matches; decode the rest.
    const previous = new Map<string, number>();
    existing?.rows.forEach((row, i) => previous.set(row[0], i));
    const reuse = sources.map((s) => {
      const i = previous.get(s.name);
      return i !== undefined && sameKey(existing!.rows[i], s) ? i : -1;
    });
    const rows: Row[] = sources.map((s) => [s.name, s.mtimeMs, s.bytes]);
    const writer = SafetensorsWriter.create(
      file,
      { images: { dtype: 'U8', shape: [total, ...shape] } },
      { ...options.metadata, format: IMAGE_CACHE_FORMAT, format_version: String(IMAGE_CACHE_VERSION), sources: JSON.stringify(rows) },
    );
    try {
      let done = 0;
      let reused = 0;
      const report = (): void => options.onProgress?.({ done, total, decoded: decodedCount, reused });
      for (let i = 0; i < total; i++) {
        if (reuse[i] < 0) continue;
        writer.writeRows('images', i, existing!.st.readRows('images', reuse[i], 1) as Uint8Array);
        done++;
        reused++;
      }
      report();
      const pending = reuse.flatMap((r, i) => (r < 0 ? [i] : []));
      // A small pool of decoders; the first failure stops the others before they write again.
      let next = 0;
      let failure: unknown = null;
      const worker = async (): Promise<void> => {
        while (failure === null && next < pending.length) {
          const i = pending[next++];
          try {
            const pixels = await options.decode(i);
            if (failure !== null) return;
            if (pixels.length !== imageBytes) {
              throw new Error(`image cache: decoding ${sources[i].name} gave ${pixels.length} bytes, expected ${imageBytes} ([${shape.join(', ')}])`);
            }
            writer.writeRows('images', i, pixels);
          } catch (err) {
            failure ??= err;
            return;
          }
          done++;
          decodedCount++;
          report();
        }
      };
      const concurrency = Math.max(1, options.concurrency ?? 2);
      await Promise.all(Array.from({ length: Math.min(concurrency, pending.length) }, worker));
      if (failure !== null) throw failure;
      existing?.st.close();
      existing = null;
      writer.finish();
    } catch (err) {
      writer.abort();
      existing?.st.close();
      throw err;
    }
    existing = openExisting(file, shape);
    if (!existing) throw new Error(`image cache: ${file} could not be read back after writing it`);
  } else {
    options.onProgress?.({ done: total, total, decoded: 0, reused: total });
  }

  const st = existing!.st;
  const inMemory = total * imageBytes <= (options.memoryLimitBytes ?? 2 ** 30);
  const all = inMemory ? (st.read('images') as Uint8Array) : null;
  if (all) st.close();
  return {
    length: total,
    decodedCount,
    file,
    image(i: number): Uint8Array {
      if (!Number.isInteger(i) || i < 0 || i >= total) throw new Error(`image cache ${file}: image ${i} outside [0, ${total})`);
      return all ? all.subarray(i * imageBytes, (i + 1) * imageBytes) : (st.readRows('images', i, 1) as Uint8Array);
    },
    close(): void {
      if (!all) st.close();
    },
  };
}
