// Tensor: a float32 (or int32/uint32) contiguous array on the GPU with a PyTorch shape. Views (reshape) share
// a reference-counted storage. Lifetime is explicit: dispose(), or scope(fn), which frees every tensor created
// inside fn except the ones it returns or keep()s.
import { getDevice, type BufferLike, type Device } from './gpu/device.js';
import type { Scalar } from './gpu/shaders.js';
import { backward as runBackward, record, type Node } from './autograd/tape.js';
import { rng } from './random.js';

export type DType = Scalar;
export type Shape = readonly number[];

export interface TensorOptions {
  device?: Device;
  dtype?: DType;
  requiresGrad?: boolean;
}

/** GPU memory shared by a tensor and its views; returned to the pool when the last one is disposed. */
class Storage {
  private refs = 1;
  constructor(
    readonly device: Device,
    readonly buffer: GPUBuffer,
  ) {}
  retain(): this {
    this.refs++;
    return this;
  }
  release(): void {
    if (--this.refs === 0) this.device.releaseBuffer(this.buffer);
  }
}

export function numelOf(shape: Shape): number {
  let n = 1;
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) throw new Error(`invalid shape [${shape.join(', ')}]`);
    n *= d;
  }
  return n;
}

export function shapeStr(shape: Shape): string {
  return `[${shape.join(', ')}]`;
}

// ---- lifetime scopes -----------------------------------------------------------------------------------------

const scopes: Set<Tensor>[] = [];

function collectTensors(value: unknown, into: Set<Tensor>, depth = 0): Set<Tensor> {
  if (value instanceof Tensor) into.add(value);
  else if (depth < 3 && Array.isArray(value)) for (const v of value) collectTensors(v, into, depth + 1);
  else if (depth < 3 && value && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    for (const v of Object.values(value)) collectTensors(v, into, depth + 1);
  }
  return into;
}

/** The returned tensors plus everything their recorded graphs need for backward() (inputs and saved tensors). */
function withGraphs(returned: Set<Tensor>): Set<Tensor> {
  const alive = new Set<Tensor>();
  const stack = [...returned];
  while (stack.length > 0) {
    const t = stack.pop()!;
    if (alive.has(t)) continue;
    alive.add(t);
    if (t.node) stack.push(...t.node.inputs, ...t.node.saved);
  }
  return alive;
}

function endScope(result: unknown): void {
  const created = scopes.pop()!;
  const alive = withGraphs(collectTensors(result, new Set()));
  const parent = scopes[scopes.length - 1];
  for (const t of created) {
    if (alive.has(t)) parent?.add(t);
    else t.dispose();
  }
}

/**
 * Runs fn and disposes every tensor created inside it, except those it returns (they move to the enclosing
 * scope, together with what their recorded graphs need for backward()) and those passed to keep(). Works for
 * async fn too; scopes must not interleave across awaits.
 */
export function scope<T>(fn: () => T): T {
  scopes.push(new Set());
  let result: T;
  try {
    result = fn();
  } catch (err) {
    endScope(undefined);
    throw err;
  }
  if (result instanceof Promise) {
    return result.then(
      (value) => (endScope(value), value),
      (err) => {
        endScope(undefined);
        throw err;
      },
    ) as T;
  }
  endScope(result);
  return result;
}

/** Takes a tensor out of every open scope: the caller now owns it and must dispose() it. */
export function keep<T extends Tensor>(t: T): T {
  for (const s of scopes) s.delete(t);
  return t;
}

// ---- the tensor ----------------------------------------------------------------------------------------------

export class Tensor implements BufferLike {
  requiresGrad = false;
  /** Gradient of a leaf after backward(); intermediate tensors never keep one. */
  grad: Tensor | null = null;
  /** Set by the zero fills of gradients (zeroGrad), cleared by the first write: backward then copies a leaf's
   * first gradient into it instead of adding (a copy where a dispatch was: ~30 dispatches less per step). */
  knownZero = false;
  /** How this tensor was computed, for backward(); null for leaves and outside the tape. */
  node: Node | null = null;
  private disposed = false;

  private constructor(
    private storage: Storage,
    readonly shape: Shape,
    readonly dtype: DType,
    private offset = 0, // bytes into the storage (views made by packTensors)
  ) {
    scopes[scopes.length - 1]?.add(this);
  }

  get device(): Device {
    return this.storage.device;
  }
  get numel(): number {
    return numelOf(this.shape);
  }
  get ndim(): number {
    return this.shape.length;
  }
  get buffer(): GPUBuffer {
    this.checkAlive();
    return this.storage.buffer;
  }
  private checkAlive(): void {
    if (this.disposed) throw new Error(`tensor ${shapeStr(this.shape)} used after dispose()`);
  }
  get byteOffset(): number {
    return this.offset;
  }
  get byteLength(): number {
    return this.numel * 4;
  }
  get isDisposed(): boolean {
    return this.disposed;
  }

  /** Uninitialised tensor (its contents are whatever the pooled buffer held). */
  static empty(shape: Shape, options: TensorOptions = {}): Tensor {
    const device = options.device ?? getDevice();
    const buffer = device.createBuffer(Math.max(4, numelOf(shape) * 4));
    const t = new Tensor(new Storage(device, buffer), [...shape], options.dtype ?? 'f32');
    t.requiresGrad = options.requiresGrad ?? false;
    return t;
  }

  static fromArray(data: ArrayLike<number>, shape: Shape = [data.length], options: TensorOptions = {}): Tensor {
    const n = numelOf(shape);
    if (data.length !== n) throw new Error(`fromArray: ${data.length} values do not fill shape ${shapeStr(shape)}`);
    const dtype = options.dtype ?? (data instanceof Int32Array ? 'i32' : data instanceof Uint32Array ? 'u32' : 'f32');
    const typed = dtype === 'f32' ? Float32Array.from(data) : dtype === 'i32' ? Int32Array.from(data) : Uint32Array.from(data);
    const device = options.device ?? getDevice();
    const t = new Tensor(new Storage(device, device.upload(typed)), [...shape], dtype);
    t.requiresGrad = options.requiresGrad ?? false;
    return t;
  }

  static full(shape: Shape, value: number, options: TensorOptions = {}): Tensor {
    const t = Tensor.empty(shape, options);
    if (t.numel > 0) {
      // The fill kernel writes raw 32-bit patterns, so one kernel serves every dtype.
      t.device.dispatch('elementwise', 'fill', {
        bindings: { out_bits: { buffer: t.buffer, byteOffset: 0, byteLength: t.byteLength } },
        params: { n: t.numel, bits: bitsOf(value, t.dtype) },
        workgroups: Math.ceil(t.numel / 256),
      });
    }
    return t;
  }
  static zeros(shape: Shape, options: TensorOptions = {}): Tensor {
    return Tensor.full(shape, 0, options);
  }
  static ones(shape: Shape, options: TensorOptions = {}): Tensor {
    return Tensor.full(shape, 1, options);
  }
  /** Uniform in [low, high), seeded. */
  static rand(shape: Shape, options: TensorOptions & { seed?: number; low?: number; high?: number } = {}): Tensor {
    const next = rng(options.seed ?? 0);
    const { low = 0, high = 1 } = options;
    const data = new Float32Array(numelOf(shape));
    for (let i = 0; i < data.length; i++) data[i] = low + (high - low) * next();
    return Tensor.fromArray(data, shape, options);
  }
  /** Normal(mean, std), seeded (Box-Muller). */
  static randn(shape: Shape, options: TensorOptions & { seed?: number; mean?: number; std?: number } = {}): Tensor {
    const next = rng(options.seed ?? 0);
    const { mean = 0, std = 1 } = options;
    const data = new Float32Array(numelOf(shape));
    for (let i = 0; i < data.length; i += 2) {
      const r = Math.sqrt(-2 * Math.log(1 - next()));
      const theta = 2 * Math.PI * next();
      data[i] = mean + std * r * Math.cos(theta);
      if (i + 1 < data.length) data[i + 1] = mean + std * r * Math.sin(theta);
    }
    return Tensor.fromArray(data, shape, options);
  }

  /** The values of an f32 tensor (one submit and a wait). Int tensors: toInt32Array() / toUint32Array(). */
  async toArray(): Promise<Float32Array> {
    if (this.dtype !== 'f32') throw new Error(`toArray() reads f32 tensors; this one is ${this.dtype}: use to${this.dtype === 'i32' ? 'Int32' : 'Uint32'}Array()`);
    const [bytes] = await this.device.read([this]);
    return new Float32Array(bytes);
  }
  async toInt32Array(): Promise<Int32Array> {
    if (this.dtype === 'f32') throw new Error('toInt32Array() reads i32/u32 tensors; this one is f32: use toArray()');
    const [bytes] = await this.device.read([this]);
    return new Int32Array(bytes);
  }
  async toUint32Array(): Promise<Uint32Array> {
    if (this.dtype === 'f32') throw new Error('toUint32Array() reads i32/u32 tensors; this one is f32: use toArray()');
    const [bytes] = await this.device.read([this]);
    return new Uint32Array(bytes);
  }

  async item(): Promise<number> {
    if (this.numel !== 1) throw new Error(`item() needs a tensor with one element, got shape ${shapeStr(this.shape)}`);
    return (this.dtype === 'f32' ? await this.toArray() : await this.toInt32Array())[0];
  }

  /**
   * Overwrites the values in place (loading checkpoints). Whatever was recorded before is submitted first, so
   * the queue runs it before this write, and later commands see the new values.
   */
  write(data: ArrayLike<number>): void {
    this.checkAlive();
    if (data.length !== this.numel) throw new Error(`write: ${data.length} values into ${this}`);
    const typed = this.dtype === 'f32' ? Float32Array.from(data) : this.dtype === 'i32' ? Int32Array.from(data) : Uint32Array.from(data);
    this.device.flush();
    this.device.queue.writeBuffer(this.storage.buffer, this.offset, typed.buffer, 0, typed.byteLength);
  }

  /** Same data, new shape (no copy). One dimension may be -1. */
  reshape(shape: Shape): Tensor {
    this.checkAlive();
    const resolved = resolveShape(shape, this.numel);
    const view = new Tensor(this.storage.retain(), resolved, this.dtype, this.offset);
    const input = this;
    return record(view, 'reshape', [input], (g) => [g.reshape(input.shape)]);
  }
  view(shape: Shape): Tensor {
    return this.reshape(shape);
  }

  /** Same data, cut from the tape. */
  detach(): Tensor {
    this.checkAlive();
    return new Tensor(this.storage.retain(), this.shape, this.dtype, this.offset);
  }

  /**
   * Moves the data of `tensors` into one new buffer, each at an offset aligned for binding, and makes every
   * tensor a view of it (their identity, shape and grad stay). Returns the flat tensor spanning the whole
   * buffer (padding included, zero-filled), so one kernel can update all of them at once (multi-tensor
   * optimisers). The caller owns the flat tensor.
   */
  static pack(tensors: Tensor[]): { flat: Tensor; offsets: number[] } {
    if (tensors.length === 0) throw new Error('pack: no tensors');
    const device = tensors[0].device;
    const align = Math.max(device.device.limits.minStorageBufferOffsetAlignment, 16);
    const offsets: number[] = [];
    let bytes = 0;
    for (const t of tensors) {
      if (t.dtype !== 'f32') throw new Error(`pack: ${t} is not f32`);
      offsets.push(bytes);
      bytes += Math.ceil(t.byteLength / align) * align;
    }
    const flat = Tensor.zeros([bytes / 4], { device });
    tensors.forEach((t, i) => {
      device.copy(t, { buffer: flat.buffer, byteOffset: offsets[i], byteLength: t.byteLength });
      t.storage.release();
      t.storage = flat.storage.retain();
      t.offset = offsets[i];
    });
    return { flat, offsets };
  }

  backward(grad?: Tensor): void {
    runBackward(this, grad);
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.node = null;
    this.storage.release();
  }

  toString(): string {
    return `Tensor(${shapeStr(this.shape)}, ${this.dtype}${this.requiresGrad ? ', requiresGrad' : ''})`;
  }
}

function resolveShape(shape: Shape, numel: number): number[] {
  const out = [...shape];
  const free = out.indexOf(-1);
  if (free >= 0) {
    const rest = numelOf(out.filter((_, i) => i !== free));
    if (rest === 0 || numel % rest !== 0) throw new Error(`cannot reshape ${numel} elements to ${shapeStr(shape)}`);
    out[free] = numel / rest;
  }
  if (numelOf(out) !== numel) throw new Error(`cannot reshape ${numel} elements to ${shapeStr(shape)}`);
  return out;
}

function bitsOf(value: number, dtype: DType): number {
  const buf = new DataView(new ArrayBuffer(4));
  if (dtype === 'f32') buf.setFloat32(0, value, true);
  else if (dtype === 'i32') buf.setInt32(0, value, true);
  else buf.setUint32(0, value, true);
  return buf.getUint32(0, true);
}

// Free-function aliases in PyTorch's style.
export const tensor = Tensor.fromArray;
export const empty = Tensor.empty;
export const zeros = Tensor.zeros;
export const ones = Tensor.ones;
export const full = Tensor.full;
export const rand = Tensor.rand;
export const randn = Tensor.randn;
