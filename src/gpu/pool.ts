// Buffer pool with size buckets. A released buffer waits in `pending` until the submit that last used it has
// completed on the GPU; only then can it be handed out again (a queue.writeBuffer into it could otherwise land
// before commands recorded earlier have read it).
// Within a bucket the oldest free buffer goes out first: a training step that acquires its tensors in the same
// order every time then gets the same buffers every time, so its bind groups repeat (bindgroups.ts caches them).

/** Rounds a size up to a bucket: quarter steps between powers of two, so at most 25% is wasted. */
export function bucketSize(bytes: number): number {
  const min = 256;
  if (bytes <= min) return min;
  const pow = 2 ** Math.floor(Math.log2(bytes));
  const step = Math.max(min, pow / 4);
  return Math.ceil(bytes / step) * step;
}

export interface PoolStats {
  live: number; // handed out, not yet released
  pending: number; // released, waiting for their last submit to complete
  free: number; // ready for reuse
  created: number; // GPU buffers ever created
  liveBytes: number;
  totalBytes: number; // bytes in all GPU buffers this pool owns
}

export class BufferPool {
  private free = new Map<number, GPUBuffer[]>();
  private pending: { buffer: GPUBuffer; serial: number }[] = [];
  private age = new WeakMap<GPUBuffer, number>(); // creation order
  private stats_ = { live: 0, created: 0, liveBytes: 0, totalBytes: 0 };

  constructor(
    private device: GPUDevice,
    private usage: GPUBufferUsageFlags,
    private label: string,
  ) {}

  acquire(bytes: number): GPUBuffer {
    const size = bucketSize(bytes);
    const list = this.free.get(size);
    let buffer = list?.pop();
    if (!buffer) {
      buffer = this.device.createBuffer({ label: `${this.label}[${size}]`, size, usage: this.usage });
      this.age.set(buffer, this.stats_.created);
      this.stats_.created++;
      this.stats_.totalBytes += size;
    }
    this.stats_.live++;
    this.stats_.liveBytes += size;
    return buffer;
  }

  /** Returns a buffer; it becomes reusable once submit number `serial` has completed. */
  release(buffer: GPUBuffer, serial: number, completedSerial: number): void {
    this.stats_.live--;
    this.stats_.liveBytes -= buffer.size;
    if (serial <= completedSerial) this.pushFree(buffer);
    else this.pending.push({ buffer, serial });
  }

  /** Called when submit `serial` (and all before it) completed. */
  reclaim(serial: number): void {
    if (this.pending.length === 0) return;
    const still: { buffer: GPUBuffer; serial: number }[] = [];
    for (const p of this.pending) {
      if (p.serial <= serial) this.pushFree(p.buffer);
      else still.push(p);
    }
    this.pending = still;
  }

  stats(): PoolStats {
    let free = 0;
    for (const list of this.free.values()) free += list.length;
    return { ...this.stats_, pending: this.pending.length, free };
  }

  destroy(): void {
    for (const list of this.free.values()) for (const b of list) b.destroy();
    for (const p of this.pending) p.buffer.destroy();
    this.free.clear();
    this.pending = [];
  }

  /** Files a buffer under its size, the list kept newest first so that pop() hands out the oldest. */
  private pushFree(buffer: GPUBuffer): void {
    const list = this.free.get(buffer.size);
    if (!list) {
      this.free.set(buffer.size, [buffer]);
      return;
    }
    const age = this.age.get(buffer)!;
    let at = list.length; // most releases are of the newest buffers: search from the end
    while (at > 0 && this.age.get(list[at - 1])! < age) at--;
    list.splice(at, 0, buffer);
  }
}
