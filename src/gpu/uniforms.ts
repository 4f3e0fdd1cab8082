// Uniform ring: every dispatch's small parameters (shapes, strides, scalars) are packed into one CPU-side
// mirror and uploaded with a single queue.writeBuffer right before the submit. Queue operations run in order,
// so the ring can be refilled from offset 0 after every submit without waiting for the GPU.
import type { EntryInfo } from './shaders.js';

export type ParamValue = number | boolean | ArrayLike<number>;
export type Params = Record<string, ParamValue>;

export class UniformRing {
  readonly buffer: GPUBuffer;
  private mirror: ArrayBuffer;
  private view: DataView;
  private used = 0;

  constructor(
    device: GPUDevice,
    readonly capacity: number,
    private alignment: number,
  ) {
    this.buffer = device.createBuffer({
      label: 'uniform-ring',
      size: capacity,
      usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
    });
    this.mirror = new ArrayBuffer(capacity);
    this.view = new DataView(this.mirror);
  }

  /** True when `bytes` more would not fit before the next submit. */
  wouldOverflow(bytes: number): boolean {
    return Math.ceil(this.used / this.alignment) * this.alignment + bytes > this.capacity;
  }

  /** Packs `params` by the uniform struct's reflected layout; returns the offset written. */
  pack(info: EntryInfo, params: Params): number {
    const uniform = info.uniform!;
    const offset = Math.ceil(this.used / this.alignment) * this.alignment;
    new Uint8Array(this.mirror, offset, uniform.size).fill(0);
    const where = `${info.file}:${info.entry}: uniform '${uniform.name}'`;
    for (const key of Object.keys(params)) {
      if (!uniform.fields.some((f) => f.name === key)) {
        throw new Error(`${where} has no field '${key}' (fields: ${uniform.fields.map((f) => f.name).join(', ')})`);
      }
    }
    for (const field of uniform.fields) {
      const value = params[field.name];
      if (value === undefined) throw new Error(`${where}: field '${field.name}' (${field.scalar}) not given`);
      const values: ArrayLike<number> =
        typeof value === 'number' ? [value] : typeof value === 'boolean' ? [value ? 1 : 0] : value;
      if (values.length > field.words) {
        throw new Error(`${where}: field '${field.name}' holds ${field.words} values, got ${values.length}`);
      }
      for (let i = 0; i < values.length; i++) {
        const at = offset + field.offset + 4 * i;
        const v = values[i];
        if (field.scalar === 'f32') this.view.setFloat32(at, v, true);
        else if (field.scalar === 'i32') this.view.setInt32(at, v, true);
        else {
          if (v < 0 || !Number.isInteger(v)) throw new Error(`${where}: field '${field.name}' is u32, got ${v}`);
          this.view.setUint32(at, v, true);
        }
      }
    }
    this.used = offset + uniform.size;
    return offset;
  }

  /** Uploads what was packed since the last submit and starts over. */
  upload(queue: GPUQueue): void {
    if (this.used === 0) return;
    queue.writeBuffer(this.buffer, 0, this.mirror, 0, Math.ceil(this.used / 4) * 4);
    this.used = 0;
  }

  destroy(): void {
    this.buffer.destroy();
  }
}
