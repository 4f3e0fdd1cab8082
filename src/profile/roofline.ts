// The adapter's ceilings, measured with wgkd's own micro-kernels (shaders/roofline*.wgsl): f32 (and f16) FMA
// GFLOP/s, copy-kernel and copyBufferToBuffer GB/s, the cost of one dispatch in a pass, and the submit and
// readback round trips. Cached per adapter (its name and driver) and host CPU, so profiles and benchmarks print %
// of roofline without re-measuring. Kernel times come from GPU timestamps where the adapter has them.
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createHash } from 'node:crypto';
import type { Device } from '../gpu/device.js';
import { profile } from './profile.js';
import { defaultCacheDir } from '../data/cache.js';
import { writeFileAtomicSync } from '../io/atomic.js';

export interface Roofline {
  adapter: string;
  driverKey: string; // what the cache is keyed by
  measuredAt: string;
  timing: 'timestamp-query' | 'wall-clock';
  fmaF32Gflops: number;
  fmaF16Gflops: number | null; // null without shader-f16
  copyKernelGBs: number;
  copyBufferGBs: number; // copyBufferToBuffer
  dispatchUs: number; // one empty dispatch, recorded among many in one pass
  submitUs: number; // submit + wait for an almost empty command buffer
  readbackUs: number; // a 4-byte readback, submit to bytes on the host
}

const FMA_FLOPS_PER_ITERATION = { f32: 96, f16: 384 };
const FMA_WORKGROUPS = 1024; // 65,536 invocations: enough to fill any adapter's lanes
// Copies of several sizes: the best is the ceiling for kernels whose tensors stay in a cache, as a step's often do.
const COPY_SIZES = [2 << 20, 8 << 20, 32 << 20];

export function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

function cachePath(dev: Device, cacheDir: string): string {
  const hash = createHash('sha256').update(dev.cacheKey).digest('hex').slice(0, 16);
  return join(cacheDir, 'roofline', `${hash}.json`);
}

/** The cached roofline of this adapter, or a fresh measurement (then cached). */
export async function roofline(dev: Device, options: { cacheDir?: string; remeasure?: boolean; log?: (line: string) => void; minSeconds?: number } = {}): Promise<Roofline> {
  const path = cachePath(dev, options.cacheDir ?? defaultCacheDir());
  if (!options.remeasure && existsSync(path)) {
    try {
      const cached = JSON.parse(readFileSync(path, 'utf8')) as Roofline;
      if (cached.driverKey === dev.cacheKey && cached.fmaF32Gflops > 0) return cached;
    } catch {
      // a torn or foreign file: measure again
    }
  }
  const measured = await measureRoofline(dev, options.log, options.minSeconds);
  mkdirSync(dirname(path), { recursive: true });
  writeFileAtomicSync(path, `${JSON.stringify(measured, null, 2)}\n`);
  return measured;
}

/** Seconds the GPU spent in one dispatch (GPU timestamps, or the wall clock without them). */
async function timeDispatch(dev: Device, record: () => void): Promise<number> {
  const p = await profile(dev, async () => {
    record();
    await dev.sync();
  });
  return p.dispatches.reduce((t, d) => t + d.gpuUs, 0) / 1e6;
}

async function fmaGflops(dev: Device, shader: string, entry: string, flopsPerIteration: number, minSeconds: number): Promise<number> {
  const sink = dev.createBuffer(FMA_WORKGROUPS * 64 * 4);
  const run = (iterations: number) =>
    timeDispatch(dev, () =>
      dev.dispatch(shader, entry, { bindings: { sink: { buffer: sink, byteOffset: 0, byteLength: FMA_WORKGROUPS * 256 } }, params: { iterations, mul: 0.9999, add: 1e-6 }, workgroups: FMA_WORKGROUPS }),
    );
  // Grow the work until one dispatch takes >= minSeconds, so launch costs are noise; then the best of 3.
  let iterations = 16;
  await run(1); // compiles the pipeline
  while ((await run(iterations)) < minSeconds && iterations < 1 << 20) iterations *= 4;
  const seconds = Math.min(await run(iterations), await run(iterations), await run(iterations));
  dev.releaseBuffer(sink);
  return (FMA_WORKGROUPS * 64 * iterations * flopsPerIteration) / seconds / 1e9;
}

async function copyGBs(dev: Device, bytes: number): Promise<{ kernel: number; buffer: number }> {
  const src = { buffer: dev.createBuffer(bytes), byteOffset: 0, byteLength: bytes };
  const dst = { buffer: dev.createBuffer(bytes), byteOffset: 0, byteLength: bytes };
  const n4 = bytes / 16;
  const kernel = () => timeDispatch(dev, () => dev.dispatch('roofline', 'copy_vec4', { bindings: { src4: src, dst4: dst }, params: { n4 }, workgroups: Math.ceil(n4 / 64) }));
  await kernel();
  const kernelSeconds = Math.min(await kernel(), await kernel(), await kernel(), await kernel());
  const copySeconds: number[] = [];
  for (let r = 0; r < 5; r++) {
    await dev.sync();
    const t0 = performance.now();
    dev.copy(src, dst);
    await dev.sync();
    copySeconds.push((performance.now() - t0) / 1000);
  }
  dev.releaseBuffer(src.buffer);
  dev.releaseBuffer(dst.buffer);
  return { kernel: (2 * bytes) / kernelSeconds / 1e9, buffer: (2 * bytes) / Math.min(...copySeconds.slice(1)) / 1e9 };
}

/** GPU time per empty dispatch among many in one compute pass (timestamps at the pass's start and end). */
async function dispatchCostUs(dev: Device, sink: GPUBuffer, count: number): Promise<number> {
  const { pipeline, layouts } = dev.shaders.pipeline('roofline', 'empty');
  const bindGroup = dev.device.createBindGroup({ layout: layouts[0], entries: [{ binding: 1, resource: { buffer: sink } }] });
  const querySet = dev.device.createQuerySet({ type: 'timestamp', count: 2 });
  const resolved = dev.device.createBuffer({ size: 16, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
  const readback = dev.device.createBuffer({ size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  const encoder = dev.device.createCommandEncoder();
  const pass = encoder.beginComputePass({ timestampWrites: { querySet, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 } });
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, bindGroup);
  for (let k = 0; k < count; k++) pass.dispatchWorkgroups(1);
  pass.end();
  encoder.resolveQuerySet(querySet, 0, 2, resolved, 0);
  encoder.copyBufferToBuffer(resolved, 0, readback, 0, 16);
  dev.queue.submit([encoder.finish()]);
  await readback.mapAsync(GPUMapMode.READ);
  const [begin, end] = new BigUint64Array(readback.getMappedRange());
  const us = Number(end - begin) / 1000 / count;
  readback.unmap();
  for (const b of [readback, resolved]) b.destroy();
  querySet.destroy();
  return us;
}

async function overheads(dev: Device): Promise<{ dispatchUs: number; submitUs: number; readbackUs: number }> {
  const sink = { buffer: dev.createBuffer(256), byteOffset: 0, byteLength: 256 };
  const one = () => dev.dispatch('roofline', 'empty', { bindings: { sink }, workgroups: 1 });
  const submits: number[] = [];
  const reads: number[] = [];
  one();
  await dev.sync();
  for (let r = 0; r < 15; r++) {
    let t0 = performance.now();
    one();
    await dev.sync();
    submits.push((performance.now() - t0) * 1000);
    t0 = performance.now();
    await dev.read([sink]);
    reads.push((performance.now() - t0) * 1000);
  }
  let dispatchUs: number;
  if (dev.device.features.has('timestamp-query')) {
    const runs = [];
    for (let r = 0; r < 3; r++) runs.push(await dispatchCostUs(dev, sink.buffer, 500));
    dispatchUs = median(runs);
  } else {
    // Without timestamps: 500 dispatches in one pass, less one submit round trip, on the host's clock.
    const t0 = performance.now();
    for (let k = 0; k < 500; k++) one();
    await dev.sync();
    dispatchUs = Math.max(0, ((performance.now() - t0) * 1000 - median(submits)) / 500);
  }
  dev.releaseBuffer(sink.buffer);
  return { dispatchUs, submitUs: median(submits), readbackUs: median(reads) };
}

/** Measures every ceiling; `minSeconds` is how long one FMA dispatch must run (shorter: quicker, noisier). */
export async function measureRoofline(dev: Device, log: (line: string) => void = () => {}, minSeconds = 0.02): Promise<Roofline> {
  log('measuring f32 FMA throughput');
  const fmaF32Gflops = await fmaGflops(dev, 'roofline', 'fma_f32', FMA_FLOPS_PER_ITERATION.f32, minSeconds);
  const hasF16 = dev.shaders.has('roofline_f16');
  if (hasF16) log('measuring f16 FMA throughput');
  const fmaF16Gflops = hasF16 ? await fmaGflops(dev, 'roofline_f16', 'fma_f16', FMA_FLOPS_PER_ITERATION.f16, minSeconds) : null;
  log('measuring copy bandwidth');
  const copies = [];
  for (const bytes of COPY_SIZES) copies.push(await copyGBs(dev, bytes));
  const copy = { kernel: Math.max(...copies.map((c) => c.kernel)), buffer: Math.max(...copies.map((c) => c.buffer)) };
  log('measuring dispatch, submit and readback costs');
  const o = await overheads(dev);
  return {
    adapter: dev.summary.description,
    driverKey: dev.cacheKey,
    measuredAt: new Date().toISOString(),
    timing: dev.device.features.has('timestamp-query') ? 'timestamp-query' : 'wall-clock',
    fmaF32Gflops,
    fmaF16Gflops,
    copyKernelGBs: copy.kernel,
    copyBufferGBs: copy.buffer,
    ...o,
  };
}

/** The roofline as a few lines of text. */
export function formatRoofline(r: Roofline): string {
  const f = (v: number, d = 1) => v.toFixed(d);
  return [
    `adapter            ${r.adapter}`,
    `f32 FMA            ${f(r.fmaF32Gflops)} GFLOP/s`,
    `f16 FMA            ${r.fmaF16Gflops === null ? 'n/a (no shader-f16)' : `${f(r.fmaF16Gflops)} GFLOP/s`}`,
    `copy kernel        ${f(r.copyKernelGBs, 2)} GB/s (read + write)`,
    `copyBufferToBuffer ${f(r.copyBufferGBs, 2)} GB/s (read + write)`,
    `dispatch           ${f(r.dispatchUs)} µs each, in one pass`,
    `submit round trip  ${f(r.submitUs)} µs`,
    `readback (4 B)     ${f(r.readbackUs)} µs`,
    `timing             ${r.timing}; measured ${r.measuredAt}`,
  ].join('\n');
}
