// The profiler: FLOP and byte accounting of conv (regular, depthwise, pointwise), GEMM and batchnorm against
// numbers worked out by hand; a profile of the demo's training step (every dispatch once, timed, labelled; its
// Chrome trace matches its table; the dispatch times add up to the step's GPU time); the roofline micro-kernels.
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SHIPPED_TEACHER, Tensor, batchNorm2d, conv2d, matmul, relu, scope } from '../src/index.js';
import { PROFILING_DAWN_FLAGS, profile } from '../src/profile/profile.js';
import { profileTraining } from '../src/profile/run.js';
import { measureRoofline, roofline } from '../src/profile/roofline.js';
import { formatReport, rooflinePct } from '../src/profile/report.js';
import { useDevice } from './helpers/device.js';

const device = useDevice({ dawnFlags: PROFILING_DAWN_FLAGS });
const F32 = 4;

/** The dispatches `op` records on inputs made beforehand (their fills are not the op's), with FLOPs and bytes. */
async function dispatchesOf(shapes: number[][], op: (...inputs: Tensor[]) => void, options: { requiresGrad?: boolean } = {}) {
  const inputs = shapes.map((s) => Tensor.zeros(s, options));
  await device().sync();
  const p = await profile(device(), () => scope(() => op(...inputs)));
  inputs.forEach((t) => t.dispose());
  return p.dispatches;
}

describe('FLOP and byte accounting (by hand: one multiply-add = 2 FLOPs; bytes = each distinct bound range once)', () => {
  it('regular conv2d, stride 1 and 2: 2 * N * O * OH * OW * C/groups * KH * KW, forward, dX and dW alike', async () => {
    // The general kernels (few weights would take the stem path on its own: checked below to count the same).
    const [fwd] = await dispatchesOf([[2, 3, 5, 5], [4, 3, 3, 3]], (x, w) => void conv2d(x, w, null, { padding: 1, impl: 'general' }));
    expect(fwd.entry).toBe('conv_forward');
    expect(fwd.flops).toBe(2 * 2 * 4 * 5 * 5 * 3 * 3 * 3); // 10,800
    expect(fwd.bytes).toBe((2 * 3 * 25 + 4 * 27 + 2 * 4 * 25) * F32); // x, weight, out (the bias slot re-binds the weight)
    const [stem] = await dispatchesOf([[2, 3, 5, 5], [4, 3, 3, 3]], (x, w) => void conv2d(x, w, null, { padding: 1 }));
    expect(stem.entry).toMatch(/^conv_forward_stem/);
    expect(stem.flops).toBe(fwd.flops);
    const [strided] = await dispatchesOf([[1, 3, 7, 7], [5, 3, 3, 3], [5]], (x, w, b) => void conv2d(x, w, b, { stride: 2, padding: 1, impl: 'general' }));
    expect(strided.flops).toBe(2 * 1 * 5 * 4 * 4 * 27); // out 4x4: 4,320
    expect(strided.bytes).toBe((147 + 135 + 5 + 80) * F32);
    const grads = await dispatchesOf([[2, 3, 5, 5], [4, 3, 3, 3], [2, 4, 5, 5]], (x, w, g) => conv2d(x, w, null, { padding: 1, impl: 'general' }).backward(g), { requiresGrad: true });
    const backward = grads.filter((d) => d.phase === 'backward' && d.shader === 'conv' && d.flops === 10_800);
    expect(backward.map((d) => d.entry).sort()).toEqual(['conv_backward_input_tiles', 'conv_backward_weight']);
  });

  it('depthwise conv2d: 2 * N * C * OH * OW * KH * KW', async () => {
    const [d] = await dispatchesOf([[2, 6, 5, 5], [6, 1, 3, 3]], (x, w) => void conv2d(x, w, null, { padding: 1, groups: 6 }));
    expect(d.entry).toBe('depthwise_forward');
    expect(d.flops).toBe(2 * 2 * 6 * 25 * 9); // 5,400
    expect(d.bytes).toBe((300 + 54 + 300) * F32);
  });

  it('pointwise conv2d is a GEMM per image: 2 * N * O * HW * C', async () => {
    const [d] = await dispatchesOf([[2, 6, 4, 4], [8, 6, 1, 1]], (x, w) => void conv2d(x, w));
    expect(d.shader).toMatch(/^matmul/);
    expect(d.flops).toBe(2 * 2 * 8 * 16 * 6); // 3,072
    expect(d.bytes).toBe((48 + 192 + 256) * F32); // weight, x, out
  });

  it('GEMM: 2 * M * N * K', async () => {
    const [d] = await dispatchesOf([[5, 7], [7, 3]], (a, b) => void matmul(a, b));
    expect(d.flops).toBe(2 * 5 * 3 * 7);
    expect(d.bytes).toBe((35 + 21 + 15) * F32);
  });

  it('records each dispatch\'s pipeline constants (which variant ran: bench/cold-start.ts keys compiles by them)', async () => {
    const [gemm] = await dispatchesOf([[5, 7], [7, 3]], (a, b) => void matmul(a, b));
    if (gemm.shader === 'matmul_subgroups') expect(gemm.constants).toMatchObject({ LANES: 32, ROW_GROUPS: 1, COLS: 1 });
    else expect(gemm.constants).toEqual({}); // the adapter has no subgroups: matmul.wgsl's kernels have none
    const bn = await dispatchesOf([[2, 3, 4, 4]], (x) => void batchNorm2d(x, null, null, null, null, { training: true, relu: true }));
    expect(bn.find((d) => d.entry.startsWith('normalize'))?.constants).toEqual({ RELU: 1 });
    expect(bn.find((d) => d.entry.startsWith('stats_partials'))?.constants).toEqual({}); // a kernel without constants
  });

  it('batchnorm (training): 3 FLOPs an element for the statistics, 4 to normalise, 1 more with the fused ReLU', async () => {
    const ds = await dispatchesOf([[2, 3, 4, 4]], (x) => void batchNorm2d(x, null, null, null, null, { training: true, relu: true }));
    const byEntry = Object.fromEntries(ds.map((d) => [d.entry, d]));
    const elements = 2 * 3 * 16;
    expect(byEntry.stats_partials_vec4.flops).toBe(3 * elements);
    expect(byEntry.normalize_vec4.flops).toBe(5 * elements);
    // statistics: x, then [C, partials * 64, 3] floats of partial moments (one partial per channel here)
    expect(byEntry.stats_partials_vec4.bytes).toBe((elements + 3 * 64 * 3) * F32);
    expect(byEntry.normalize_vec4.bytes).toBe((elements + 5 * 3 + elements) * F32); // x, the [5, C] constants, out
    // the finalize pass reads the partials and one pivot per channel, not all of x
    expect(byEntry.stats_finalize.bytes).toBe((3 * 64 * 3 + 5 * 3 + 5 * 3) * F32);
  });

  it('% of roofline is the time the ceilings allow over the time taken', () => {
    const r = { fmaF32Gflops: 100, copyKernelGBs: 4 } as Parameters<typeof rooflinePct>[3];
    expect(rooflinePct(1e6, 0, 20, r)).toBeCloseTo(50); // 1 MFLOP at 100 GFLOP/s = 10 µs, took 20
    expect(rooflinePct(null, 4e4, 20, r)).toBeCloseTo(50); // 40 kB at 4 GB/s = 10 µs
    expect(rooflinePct(1e6, 8e4, 40, r)).toBeCloseTo(50); // memory-bound: 20 µs of 40
    expect(rooflinePct(1e6, 0, 20, null)).toBeNull();
  });
});

describe('wgkd profile on the demo settings (dwpw, kd+rkd, shipped teacher, batch 64)', () => {
  it('--first-step profiles the run\'s very first step (no warm-up, no unprofiled step)', async () => {
    let steps = 0;
    const result = await profileTraining(
      device(),
      { dataset: 'fashion-mnist', model: 'dwpw', recipe: 'kd', teacher: SHIPPED_TEACHER.outputs, batch: 8, lr: 6e-3 },
      { steps: 3, warmup: 2, firstStep: true, roofline: false, log: (l) => { if (/^step /.test(l)) steps++; } },
    );
    expect(steps).toBe(1); // steps and warmup are ignored: one step ran, and it was profiled
    expect(result.profiled.length).toBe(1);
    expect(Number.isNaN(result.unprofiledStepMs)).toBe(true);
    expect(result.text).toMatch(/profile of the first training step/);
    expect(result.step.dispatches.length).toBeGreaterThan(50);
  });

  it('times every dispatch of a step once, labels it, and its trace matches its table', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'wgkd-profile-test-'));
    const tracePath = join(dir, 'trace.json');
    const timelinePath = join(dir, 'timeline.png');
    const result = await profileTraining(
      device(),
      { dataset: 'fashion-mnist', model: 'dwpw', recipe: 'kd+rkd', teacher: SHIPPED_TEACHER.outputs, batch: 64, lr: 6e-3 },
      { steps: 1, warmup: 1, trace: tracePath, timeline: timelinePath, roofline: false },
    );
    const step = result.step;
    expect(step.timing).toBe('timestamp-query');
    expect(step.submits).toBe(1);
    expect(step.buffersCreated).toBe(0); // steady state: the warm-up step made every buffer and pipeline
    expect(step.pipelinesCreated).toBe(0);

    const trace = JSON.parse(readFileSync(tracePath, 'utf8')) as { traceEvents: { ph: string; tid: number; dur?: number; args?: Record<string, unknown> }[] };
    const slices = trace.traceEvents.filter((e) => e.ph === 'X' && e.tid === 1);
    expect(slices.length).toBe(step.dispatches.length);
    expect(new Set(slices.map((s) => s.args!.index)).size).toBe(slices.length); // each dispatch once
    for (const s of slices) {
      expect(s.dur!).toBeGreaterThan(0);
      expect(['forward', 'loss', 'backward', 'optimizer']).toContain(s.args!.phase);
      expect(typeof s.args!.bytes).toBe('number');
      expect(s.args!.flops === null || (s.args!.flops as number) > 0).toBe(true);
    }
    // The table: one row per dispatch, and the phase totals count the same dispatches.
    const rows = result.text.split('\n').filter((l) => /^\s*\d+\s+(forward|loss|backward|optimizer)\s/.test(l));
    expect(rows.length).toBe(slices.length);
    for (const phase of ['forward', 'loss', 'backward', 'optimizer']) {
      const total = result.text.match(new RegExp(`^${phase}\\s+(\\d+)\\s`, 'm'));
      expect(Number(total![1]), phase).toBe(slices.filter((s) => s.args!.phase === phase).length);
    }
    expect(result.text).toMatch(/(\d+) dispatches, 1 submits/);

    // Attribution: module names in forward and backward, loss terms, the optimizer's parts.
    const modules = (phase: string) => new Set(step.dispatches.filter((d) => d.phase === phase).map((d) => d.module));
    expect([...modules('forward')]).toEqual(expect.arrayContaining(['stem.0', 'stem.1', 'stage1.0', 'stage4.4', 'fc']));
    expect([...modules('backward')]).toEqual(expect.arrayContaining(['stem.0', 'stage2.3', 'fc']));
    const terms = new Set(step.dispatches.filter((d) => d.phase === 'loss').map((d) => d.term));
    expect([...terms]).toEqual(expect.arrayContaining(['ce', 'kd', 'rkd_distance', 'rkd_angle']));
    expect(new Set(step.dispatches.filter((d) => d.phase === 'optimizer').map((d) => d.term))).toEqual(new Set(['clip', 'step', 'zero_grad', 'nonfinite_check']));

    // The dispatches' GPU times add up to the step's GPU time (first start to last end) within 25%.
    expect(step.gpuSumUs).toBeGreaterThan(0.75 * step.gpuSpanUs);
    expect(step.gpuSumUs).toBeLessThanOrEqual(step.gpuSpanUs * 1.0001);
    expect(readFileSync(timelinePath).subarray(1, 4).toString()).toBe('PNG');
  });
});

describe('the wall-clock fallback (adapters without timestamp-query)', () => {
  it('submits each dispatch alone, times it on the host, and the report says so', async () => {
    const [a, b] = [Tensor.rand([64, 64]), Tensor.rand([64, 64])];
    await device().sync();
    const p = await profile(device(), () => scope(() => void matmul(relu(matmul(a, b)), b)), { timing: 'wall-clock' });
    expect(p.timing).toBe('wall-clock');
    expect(p.dispatches.length).toBe(3);
    expect(p.submits).toBe(3); // one per dispatch
    for (const d of p.dispatches) expect(d.gpuUs).toBeGreaterThan(0);
    expect(formatReport(p, { roofline: null })).toMatch(/wall clock per dispatch: this adapter has no timestamp-query/);
  });
});

describe('wgkd roofline', () => {
  it('measures positive ceilings with its micro-kernels and caches them per adapter', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'wgkd-roofline-test-'));
    const measured = await roofline(device(), { cacheDir: dir, minSeconds: 0.002 });
    for (const key of ['fmaF32Gflops', 'copyKernelGBs', 'copyBufferGBs', 'dispatchUs', 'submitUs', 'readbackUs'] as const) {
      expect(measured[key], key).toBeGreaterThan(0);
    }
    expect(measured.fmaF16Gflops === null).toBe(!device().device.features.has('shader-f16'));
    const again = await roofline(device(), { cacheDir: dir });
    expect(again.measuredAt).toBe(measured.measuredAt); // from the cache, not measured again
    expect((await measureRoofline(device(), () => {}, 0.001)).adapter).toBe(device().summary.description);
  });
});
