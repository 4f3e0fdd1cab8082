// Per-dispatch GPU timing. While a DispatchProfiler is attached to a Device, every dispatch runs in a compute pass
// of its own whose beginning and end write GPU timestamps (timestamp-query), and is recorded with its label (phase,
// module, loss term), the shapes it binds, its workgroups and its cost (FLOPs declared by the op, bytes bound).
// Without timestamp-query each dispatch is submitted alone and timed by the host when the queue reports it done.
// The profiler's own buffers are created once; steady-state steps create none.
import { readFileSync } from 'node:fs';
import { currentLabel, type Phase } from './labels.js';
import type { BufferLike } from './device.js';

/** What a dispatch costs, as its op declares it. Bytes default to the distinct buffer ranges it binds. */
export interface DispatchCost {
  flops?: number;
  bytes?: number;
}

export interface DispatchRecord {
  index: number; // order within the profiled call
  shader: string; // the op family (shaders/<family>.wgsl)
  entry: string; // the kernel's entry point
  constants: Record<string, number>; // its pipeline's override constants (one pipeline per distinct set)
  phase: Phase;
  module: string; // '' when no module was running (loss terms, optimizer)
  term: string; // loss term or optimizer part ('' elsewhere)
  shapes: Record<string, number[]>; // bound tensors' shapes (raw buffer ranges: [floats])
  workgroups: [number, number, number];
  flops: number | null; // null: the op declares none (memory-bound kernels are judged by bytes)
  bytes: number;
  hostUs: number; // when the host recorded it, µs after the call began
  submit: number; // which submit of the call carried it (0-based)
  gpuStartUs: number; // GPU start, µs after the call's first GPU timestamp
  gpuUs: number; // GPU duration
}

export type TimingSource = 'timestamp-query' | 'wall-clock';

/** Time this thread spent on a CPU, ms: Linux's schedstat of the main thread (ns), else the process's CPU time. */
export function mainThreadCpuMs(): number {
  try {
    const text = readFileSync(`/proc/self/task/${process.pid}/schedstat`, 'utf8');
    return Number(text.split(' ')[0]) / 1e6;
  } catch {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1000;
  }
}

const QUERY_CAPACITY = 4096; // timestamps per submit: 2 per dispatch
const STAGING_BYTES = QUERY_CAPACITY * 8;

interface PendingReadback {
  records: DispatchRecord[];
  staging: GPUBuffer;
  done: Promise<void>;
}

export class DispatchProfiler {
  readonly timing: TimingSource;
  records: DispatchRecord[] = [];
  copies = 0;
  submits = 0;
  waitMs = 0; // host wall time spent awaiting the GPU (readbacks, sync)
  waitCpuMs = 0; // main-thread CPU time during those waits
  waits: { startUs: number; endUs: number }[] = []; // host intervals spent waiting, µs after the call began
  submitUs: number[] = []; // when each submit left the host, µs after the call began
  private start = 0;
  private inSubmit: DispatchRecord[] = []; // recorded since the last submit
  private querySet: GPUQuerySet | null = null;
  private resolveBuffer: GPUBuffer | null = null;
  private freeStaging: GPUBuffer[] = [];
  private pending: PendingReadback[] = [];
  private wallDone: Promise<void>[] = [];
  private firstTimestamp: bigint | null = null;
  private lastDoneMs = 0;

  /** `timing` forces the wall-clock fallback on an adapter that has timestamps (to test it, or compare). */
  constructor(private device: GPUDevice, timing?: TimingSource) {
    this.timing = timing ?? (device.features.has('timestamp-query') ? 'timestamp-query' : 'wall-clock');
    if (this.timing === 'timestamp-query') {
      this.querySet = device.createQuerySet({ type: 'timestamp', count: QUERY_CAPACITY });
      this.resolveBuffer = device.createBuffer({ size: STAGING_BYTES, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
    }
  }

  /** Starts a fresh profiled call (records of the last one are dropped). */
  begin(): void {
    this.records = [];
    this.inSubmit = [];
    this.copies = 0;
    this.submits = 0;
    this.waitMs = 0;
    this.waitCpuMs = 0;
    this.waits = [];
    this.submitUs = [];
    this.firstTimestamp = null;
    this.start = performance.now();
    this.lastDoneMs = 0;
  }

  /** True when the query set cannot take another dispatch before the next submit. */
  get full(): boolean {
    return this.timing === 'timestamp-query' && this.inSubmit.length * 2 >= QUERY_CAPACITY;
  }

  /** Records one dispatch; returns the timestamp writes its pass must carry (none in wall-clock mode). */
  dispatch(shader: string, entry: string, bindings: Record<string, BufferLike>, workgroups: [number, number, number], cost?: DispatchCost, constants: Record<string, number> = {}): GPUComputePassTimestampWrites | undefined {
    const label = currentLabel();
    const record: DispatchRecord = {
      index: this.records.length,
      shader,
      entry,
      constants,
      phase: label.phase ?? 'forward',
      module: label.module ?? '',
      term: label.term ?? '',
      shapes: shapesOf(bindings),
      workgroups,
      flops: cost?.flops ?? null,
      bytes: cost?.bytes ?? boundBytes(bindings),
      hostUs: (performance.now() - this.start) * 1000,
      submit: this.submits,
      gpuStartUs: 0,
      gpuUs: 0,
    };
    this.records.push(record);
    const slot = this.inSubmit.length;
    this.inSubmit.push(record);
    if (!this.querySet) return undefined;
    return { querySet: this.querySet, beginningOfPassWriteIndex: 2 * slot, endOfPassWriteIndex: 2 * slot + 1 };
  }

  /** Before the encoder is finished: resolves this submit's timestamps into a staging buffer. */
  resolve(encoder: GPUCommandEncoder): GPUBuffer | null {
    if (!this.querySet || this.inSubmit.length === 0) return null;
    const count = 2 * this.inSubmit.length;
    const staging = this.freeStaging.pop() ?? this.device.createBuffer({ size: STAGING_BYTES, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    encoder.resolveQuerySet(this.querySet, 0, count, this.resolveBuffer!, 0);
    encoder.copyBufferToBuffer(this.resolveBuffer!, 0, staging, 0, count * 8);
    return staging;
  }

  /** After the submit: reads its timestamps back when the GPU is done (no wait here). */
  submitted(queue: GPUQueue, staging: GPUBuffer | null): void {
    const records = this.inSubmit;
    this.inSubmit = [];
    this.submits++;
    this.submitUs.push((performance.now() - this.start) * 1000);
    if (records.length === 0) return;
    if (staging) {
      const done = staging.mapAsync(GPUMapMode.READ, 0, records.length * 16).then(() => {
        const stamps = new BigUint64Array(staging.getMappedRange(0, records.length * 16));
        this.firstTimestamp ??= stamps[0];
        records.forEach((r, i) => {
          const begin = stamps[2 * i];
          const end = stamps[2 * i + 1];
          r.gpuStartUs = Number(begin - this.firstTimestamp!) / 1000;
          r.gpuUs = Math.max(0, Number(end - begin) / 1000);
        });
        staging.unmap();
        this.freeStaging.push(staging);
      });
      this.pending.push({ records, staging, done });
      return;
    }
    // Wall-clock: one dispatch per submit; its time is from when it could start to when the queue says it is done.
    const submittedAt = performance.now();
    this.wallDone.push(
      queue.onSubmittedWorkDone().then(() => {
        const now = performance.now();
        const startMs = Math.max(submittedAt, this.lastDoneMs);
        this.lastDoneMs = now;
        for (const r of records) {
          r.gpuStartUs = (startMs - this.start) * 1000;
          r.gpuUs = ((now - startMs) * 1000) / records.length;
        }
      }),
    );
  }

  /** Counts the host's wait for the GPU (readbacks, sync) and the CPU the main thread burnt during it. */
  async waitFor<T>(wait: Promise<T>): Promise<T> {
    const t0 = performance.now();
    const c0 = mainThreadCpuMs();
    try {
      return await wait;
    } finally {
      const t1 = performance.now();
      this.waitMs += t1 - t0;
      this.waitCpuMs += mainThreadCpuMs() - c0;
      this.waits.push({ startUs: (t0 - this.start) * 1000, endUs: (t1 - this.start) * 1000 });
    }
  }

  /** Every timestamp of the call read back (call after its last submit). */
  async settle(): Promise<void> {
    const pending = this.pending;
    const wall = this.wallDone;
    this.pending = [];
    this.wallDone = [];
    await Promise.all([...pending.map((p) => p.done), ...wall]);
  }

  destroy(): void {
    this.querySet?.destroy();
    this.resolveBuffer?.destroy();
    for (const s of this.freeStaging) s.destroy();
    this.freeStaging = [];
  }
}

function shapesOf(bindings: Record<string, BufferLike>): Record<string, number[]> {
  const shapes: Record<string, number[]> = {};
  for (const [name, b] of Object.entries(bindings)) {
    const shape = (b as { shape?: readonly number[] }).shape;
    shapes[name] = shape ? [...shape] : [b.byteLength / 4];
  }
  return shapes;
}

/** Bytes of the distinct buffer ranges bound: each is read or written once by an ideal kernel (placeholders that
 * re-bind another binding's range count once). */
export function boundBytes(bindings: Record<string, BufferLike>): number {
  const seen = new Set<string>();
  let bytes = 0;
  const ids = new Map<GPUBuffer, number>();
  for (const b of Object.values(bindings)) {
    if (!ids.has(b.buffer)) ids.set(b.buffer, ids.size);
    const key = `${ids.get(b.buffer)}:${b.byteOffset}:${b.byteLength}`;
    if (seen.has(key)) continue;
    seen.add(key);
    bytes += b.byteLength;
  }
  return bytes;
}
