// The GPU device: opens a Dawn adapter, records every dispatch into one open command encoder, and submits only at
// sync points (a readback, flush(), sync()). Buffers come from a pool; small parameters go through a uniform ring.
import { mkdirSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { create, globals } from 'webgpu';
import { BufferPool, type PoolStats } from './pool.js';
import { DEFAULT_SHADER_DIR, ShaderLibrary, type Scalar } from './shaders.js';
import { UniformRing, type Params } from './uniforms.js';
import { DispatchProfiler, type DispatchCost } from './profiler.js';
import { installGentlePolling } from './polling.js';
import { BindGroupCache } from './bindgroups.js';

Object.assign(globalThis, globals); // GPUBufferUsage, GPUMapMode, ... as in a browser
installGentlePolling();

/** Anything that can be bound to a storage binding: a Tensor, or a raw buffer range. */
export interface BufferLike {
  readonly buffer: GPUBuffer;
  readonly byteOffset: number;
  readonly byteLength: number;
  readonly dtype?: Scalar;
}

export interface DeviceOptions {
  /** Dawn backend: 'vulkan', 'metal', 'd3d12', 'd3d11', 'opengl', 'opengles', 'null'. Default: Dawn's choice. */
  backend?: string;
  /** Pick the adapter whose name contains this text (Dawn's `adapter=` option). */
  adapter?: string;
  powerPreference?: GPUPowerPreference;
  /** Extra Dawn flags, e.g. 'disable-dawn-features=timestamp_quantization'. */
  dawnFlags?: string[];
  /** More folders of .wgsl files to compile at open, besides the package's own shaders/ (your own kernels). */
  extraShaderDirs?: string[];
  /** Limits to ask for below the adapter's (default: the adapter's own), e.g. a small maxStorageBufferBindingSize. */
  limits?: Record<string, number>;
  /** Make it the device tensors are created on when none is named (default true). */
  makeCurrent?: boolean;
}

export interface AdapterSummary {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  backend: string;
  software: boolean;
  features: string[];
  limits: Record<string, number>;
}

export class NoAdapterError extends Error {}

export interface DispatchArgs {
  bindings: Record<string, BufferLike>;
  params?: Params;
  /** Total workgroups (split over x and y past 65,535; shaders fold `gid.y` back in) or an explicit [x, y, z]. */
  workgroups: number | [number, number?, number?];
  constants?: Record<string, number>;
  /** FLOPs (and bytes, when not the bound ranges) of this dispatch, for the profiler's GFLOP/s and roofline. */
  cost?: DispatchCost;
}

const TENSOR_USAGE = 0x80 /* STORAGE */ | 0x04 /* COPY_SRC */ | 0x08; /* COPY_DST */
const STAGING_USAGE = 0x01 /* MAP_READ */ | 0x08; /* COPY_DST */
const WANTED_FEATURES: GPUFeatureName[] = ['timestamp-query', 'shader-f16', 'subgroups' as GPUFeatureName];

let current: Device | null = null;

/** The device tensors are created on when none is named: the one opened last. */
export function getDevice(): Device {
  if (!current) throw new Error('no WebGPU device is open: call `await Device.open()` first');
  return current;
}

export class Device {
  readonly queue: GPUQueue;
  readonly shaders: ShaderLibrary;
  readonly pool: BufferPool;
  readonly counters = { submits: 0, dispatches: 0 };
  private staging: BufferPool;
  private ring: UniformRing;
  readonly bindGroups: BindGroupCache;
  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private submitted = 0; // serial of the last submit
  private completed = 0; // serial of the last submit known complete
  private lostMessage: string | null = null;
  private asyncError: GPUError | null = null;
  private gpu: GPU | null;
  /** Set while profiling (src/profile/): every dispatch is timed in a pass of its own. */
  profiler: DispatchProfiler | null = null;

  private constructor(
    gpu: GPU,
    readonly adapter: GPUAdapter,
    readonly device: GPUDevice,
    readonly summary: AdapterSummary,
  ) {
    this.gpu = gpu;
    this.queue = device.queue;
    this.shaders = new ShaderLibrary(device);
    this.pool = new BufferPool(device, TENSOR_USAGE, 'tensor');
    this.staging = new BufferPool(device, STAGING_USAGE, 'staging');
    const align = device.limits.minUniformBufferOffsetAlignment;
    this.ring = new UniformRing(device, 1 << 20, Math.max(align, 16));
    this.bindGroups = new BindGroupCache(device);
    device.lost.then((info) => {
      if (info.reason !== 'destroyed') this.lostMessage = `WebGPU device lost (${info.reason}): ${info.message}`;
    });
    device.onuncapturederror = (ev) => {
      this.asyncError ??= ev.error;
    };
  }

  static async open(options: DeviceOptions = {}): Promise<Device> {
    // The Vulkan loader wants a runtime dir; headless servers and CI often have none.
    if (!process.env.XDG_RUNTIME_DIR) {
      const dir = join(tmpdir(), `wgkd-xdg-${process.getuid?.() ?? 0}`);
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      process.env.XDG_RUNTIME_DIR = dir;
    }
    const flags = [...(options.dawnFlags ?? [])];
    if (options.backend) flags.push(`backend=${options.backend}`);
    if (options.adapter) flags.push(`adapter=${options.adapter}`);
    const gpu = create(flags);
    let adapter: GPUAdapter | null = null;
    let reason = '';
    try {
      adapter = await gpu.requestAdapter({ powerPreference: options.powerPreference });
    } catch (err) {
      reason = ` (${(err as Error).message.split('\n')[0]})`;
    }
    if (!adapter) {
      throw new NoAdapterError(
        `no WebGPU adapter found${flags.length ? ` for Dawn flags ${flags.join(' ')}` : ''}${reason}.\n` +
          `  On Debian/Ubuntu run \`npm run setup\` as root: it installs Mesa's lavapipe software Vulkan driver.\n` +
          `  Elsewhere install your GPU's Vulkan (Linux), Metal (macOS) or D3D12 (Windows) driver, ` +
          `then check with \`npx wgkd info\`.`,
      );
    }
    const limits: Record<string, number> = {};
    for (const key in adapter.limits) {
      const value = (adapter.limits as unknown as Record<string, unknown>)[key];
      if (typeof value === 'number') limits[key] = value;
    }
    for (const [key, value] of Object.entries(options.limits ?? {})) {
      if (!(key in limits)) throw new Error(`Device.open: unknown limit '${key}'`);
      if (!(value <= limits[key])) throw new Error(`Device.open: limit ${key} = ${value} is above the adapter's ${limits[key]}`);
      limits[key] = value;
    }
    const features = WANTED_FEATURES.filter((f) => adapter.features.has(f));
    const device = await adapter.requestDevice({ requiredLimits: limits, requiredFeatures: features });
    const info = adapter.info;
    const summary: AdapterSummary = {
      vendor: info.vendor,
      architecture: info.architecture,
      device: info.device,
      description: info.description,
      backend: options.backend ?? 'default',
      software:
        Boolean((info as { isFallbackAdapter?: boolean }).isFallbackAdapter) ||
        /llvmpipe|lavapipe|swiftshader|software|warp/i.test(`${info.architecture} ${info.device} ${info.description}`),
      features: [...device.features].sort(),
      limits,
    };
    const dev = new Device(gpu, adapter, device, summary);
    for (const dir of [DEFAULT_SHADER_DIR, ...(options.extraShaderDirs ?? [])]) await dev.shaders.loadDirectory(dir);
    if (options.makeCurrent !== false) current = dev;
    return dev;
  }

  // ---- buffers -------------------------------------------------------------------------------------------

  createBuffer(bytes: number): GPUBuffer {
    this.checkAlive();
    return this.pool.acquire(bytes);
  }

  releaseBuffer(buffer: GPUBuffer): void {
    // The open encoder may still read it: then it is free only after the next submit completes.
    const lastUse = this.encoder ? this.submitted + 1 : this.submitted;
    this.pool.release(buffer, lastUse, this.completed);
  }

  /** Uploads bytes into a fresh pooled buffer (never one the open encoder uses, so ordering is safe). */
  upload(data: ArrayBufferView): GPUBuffer {
    const buffer = this.createBuffer(Math.max(4, data.byteLength));
    this.queue.writeBuffer(buffer, 0, data.buffer, data.byteOffset, data.byteLength);
    return buffer;
  }

  poolStats(): PoolStats {
    return this.pool.stats();
  }

  // ---- recording -----------------------------------------------------------------------------------------

  dispatch(shader: string, entry: string, args: DispatchArgs): void {
    this.checkAlive();
    const { pipeline, layouts, info } = this.shaders.pipeline(shader, entry, args.constants);
    const where = `${info.file}:${entry}`;
    for (const name of Object.keys(args.bindings)) {
      if (!info.bindings.some((b) => b.name === name && b.kind === 'storage')) {
        const expected = info.bindings.filter((b) => b.kind === 'storage').map((b) => `${b.name} (${b.access})`);
        throw new Error(`${where}: no storage binding '${name}' (expects: ${expected.join(', ')})`);
      }
    }
    if (info.uniform && this.ring.wouldOverflow(info.uniform.size)) this.flush();
    const entriesByGroup: GPUBindGroupEntry[][] = [];
    for (const b of info.bindings) {
      let resource: GPUBufferBinding;
      if (b.kind === 'uniform') {
        const offset = this.ring.pack(info, args.params ?? {});
        resource = { buffer: this.ring.buffer, offset, size: b.size };
      } else {
        const given = args.bindings[b.name];
        if (!given) {
          throw new Error(`${where}: binding '${b.name}' (storage, ${b.access}, array<${b.element ?? '?'}>) not given`);
        }
        if (given.byteLength <= 0) throw new Error(`${where}: binding '${b.name}' is empty`);
        if (given.dtype && b.element && given.dtype !== b.element) {
          throw new Error(`${where}: binding '${b.name}' expects array<${b.element}>, got a ${given.dtype} tensor`);
        }
        if (b.access === 'read_write') this.checkNoAlias(where, b.name, given, args.bindings);
        resource = { buffer: given.buffer, offset: given.byteOffset, size: given.byteLength };
      }
      (entriesByGroup[b.group] ??= []).push({ binding: b.binding, resource });
    }
    const [x, y, z] = this.grid(args.workgroups, where);
    if (this.profiler?.full) this.flush();
    const timestampWrites = this.profiler?.dispatch(shader, entry, args.bindings, [x, y, z], args.cost, args.constants);
    if (this.profiler) this.endPass(); // a pass of its own, timed at its start and end
    const pass = this.computePass(timestampWrites);
    pass.setPipeline(pipeline);
    entriesByGroup.forEach((entries, group) => {
      pass.setBindGroup(group, this.bindGroups.get(layouts[group], entries));
    });
    pass.dispatchWorkgroups(x, y, z);
    this.counters.dispatches++;
    if (this.profiler) {
      this.endPass();
      if (this.profiler.timing === 'wall-clock') this.flush(); // each dispatch its own submit, timed by the host
    }
  }

  /** Records a buffer-to-buffer copy into the open encoder. */
  copy(src: BufferLike, dst: BufferLike): void {
    if (src.byteLength !== dst.byteLength) throw new Error(`copy: ${src.byteLength} bytes into ${dst.byteLength}`);
    this.endPass();
    this.commandEncoder().copyBufferToBuffer(src.buffer, src.byteOffset, dst.buffer, dst.byteOffset, src.byteLength);
    if (this.profiler) this.profiler.copies++;
  }

  /** Submits everything recorded so far (no wait). */
  flush(): void {
    if (!this.encoder) return;
    this.endPass();
    this.ring.upload(this.queue);
    const timestamps = this.profiler?.resolve(this.encoder) ?? null;
    const commands = this.encoder.finish();
    this.encoder = null;
    this.queue.submit([commands]);
    this.counters.submits++;
    this.profiler?.submitted(this.queue, timestamps);
    this.watchCompletion(++this.submitted);
  }

  /** Learns when submit `serial` is done: the buffers it used become reusable. (Waiting does not spin: polling.ts.) */
  private watchCompletion(serial: number): void {
    void this.queue.onSubmittedWorkDone().then(() => {
      if (serial > this.completed) this.completed = serial;
      this.pool.reclaim(serial);
    });
  }

  /** Submits and waits until the GPU finished everything; throws any validation error Dawn reported. */
  async sync(): Promise<void> {
    this.flush();
    await this.waitFor(this.queue.onSubmittedWorkDone());
    this.completed = this.submitted;
    this.pool.reclaim(this.submitted);
    this.throwAsyncErrors();
  }

  /** Reads several buffer ranges back with one submit. */
  async read(sources: BufferLike[]): Promise<ArrayBuffer[]> {
    this.checkAlive();
    this.endPass();
    const encoder = this.commandEncoder();
    const stagings = sources.map((src) => {
      const staging = this.staging.acquire(src.byteLength);
      encoder.copyBufferToBuffer(src.buffer, src.byteOffset, staging, 0, src.byteLength);
      return staging;
    });
    this.flush();
    const out = await this.waitFor(Promise.all(
      stagings.map(async (staging, i) => {
        await staging.mapAsync(GPUMapMode.READ, 0, sources[i].byteLength);
        const bytes = staging.getMappedRange(0, sources[i].byteLength).slice(0);
        staging.unmap();
        this.staging.release(staging, 0, 0);
        return bytes;
      }),
    ));
    this.throwAsyncErrors();
    return out;
  }

  /** Releases everything; Node can exit afterwards. */
  destroy(): void {
    this.encoder = null;
    this.pass = null;
    this.pool.destroy();
    this.staging.destroy();
    this.ring.destroy();
    this.device.destroy();
    this.gpu = null;
    if (current === this) current = null;
  }

  /** What measurements cached on disk are keyed by (roofline, autotuning): the adapter's name, vendor,
   * architecture and device (the driver and its version), the backend, and the host CPU (software adapters run on it). */
  get cacheKey(): string {
    const s = this.summary;
    const cpu = cpus();
    return `${s.description} | ${s.vendor} | ${s.architecture} | ${s.device} | ${s.backend} | ${cpu[0]?.model ?? '?'} x${cpu.length}`;
  }

  /** GPU buffers ever created for tensors and readbacks (steady-state training should add none). */
  get buffersCreated(): number {
    return this.pool.stats().created + this.staging.stats().created;
  }

  // ---- internals -----------------------------------------------------------------------------------------

  private waitFor<T>(wait: Promise<T>): Promise<T> {
    return this.profiler ? this.profiler.waitFor(wait) : wait;
  }

  private grid(workgroups: DispatchArgs['workgroups'], where: string): [number, number, number] {
    const max = this.device.limits.maxComputeWorkgroupsPerDimension;
    if (typeof workgroups === 'number') {
      if (workgroups <= max) return [Math.max(1, workgroups), 1, 1];
      const y = Math.ceil(workgroups / max);
      if (y > max) throw new Error(`${where}: ${workgroups} workgroups exceed ${max}x${max}`);
      return [max, y, 1];
    }
    const [x, y = 1, z = 1] = workgroups;
    for (const n of [x, y, z]) {
      if (n > max) throw new Error(`${where}: ${n} workgroups in one dimension exceed the limit ${max}`);
    }
    return [x, y, z];
  }

  private checkNoAlias(where: string, name: string, target: BufferLike, all: Record<string, BufferLike>): void {
    for (const [other, b] of Object.entries(all)) {
      if (other === name || b.buffer !== target.buffer) continue;
      const overlap = b.byteOffset < target.byteOffset + target.byteLength && target.byteOffset < b.byteOffset + b.byteLength;
      if (overlap) {
        throw new Error(`${where}: binding '${name}' (storage, read_write) aliases '${other}'; a written binding needs its own buffer`);
      }
    }
  }

  private commandEncoder(): GPUCommandEncoder {
    this.encoder ??= this.device.createCommandEncoder();
    return this.encoder;
  }

  private computePass(timestampWrites?: GPUComputePassTimestampWrites): GPUComputePassEncoder {
    this.pass ??= this.commandEncoder().beginComputePass(timestampWrites ? { timestampWrites } : undefined);
    return this.pass;
  }

  private endPass(): void {
    if (this.pass) {
      this.pass.end();
      this.pass = null;
    }
  }

  private checkAlive(): void {
    if (this.lostMessage) throw new Error(this.lostMessage);
    if (!this.gpu) throw new Error('device was destroyed');
  }

  private throwAsyncErrors(): void {
    if (this.lostMessage) throw new Error(this.lostMessage);
    if (this.asyncError) {
      const err = this.asyncError;
      this.asyncError = null;
      throw new Error(`WebGPU error: ${err.message}`);
    }
  }
}
