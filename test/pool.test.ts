import { describe, expect, it } from 'vitest';
import { Tensor, rng } from '../src/index.js';
import { adaptiveAvgPool2d, avgPool2d, maxPool2d } from '../src/ops/pool.js';
import { checkOp, expectClose } from './helpers/check.js';
import { useDevice } from './helpers/device.js';
import * as ref from './reference/pool.js';

useDevice();

const numelOf = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

/** Distinct values (a seeded permutation of 0..n-1, spaced 0.01): no near-ties, so FD never crosses a kink. */
function distinctValues(n: number, seed: number, offset = -n / 2): Float64Array {
  const next = rng(seed);
  const perm = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    [perm[i], perm[j]] = [perm[j], perm[i]];
  }
  return Float64Array.from(perm, (v) => (v + offset) * 0.01);
}

interface Case {
  shape: number[];
  kernel: [number, number];
  stride: [number, number];
  padding: [number, number];
}

// Batch 1, odd and non-square sizes, channels 1/3/5/16/84, kernel 2 and 3 (and 2x3), stride 1/2, padding 0/1,
// overlapping windows (kernel 3 stride 2, kernel 3 stride 1; the backward gathers) and non-overlapping ones (kernel <=
// stride, including gaps and ragged edges; the backward fills one cell per output).
const cases: Case[] = [
  { shape: [1, 1, 7, 7], kernel: [2, 2], stride: [2, 2], padding: [0, 0] },
  { shape: [2, 3, 13, 13], kernel: [3, 3], stride: [2, 2], padding: [1, 1] },
  { shape: [1, 5, 29, 13], kernel: [3, 3], stride: [1, 1], padding: [1, 1] },
  { shape: [2, 16, 7, 13], kernel: [2, 2], stride: [1, 1], padding: [0, 0] },
  { shape: [1, 84, 6, 7], kernel: [2, 2], stride: [2, 2], padding: [1, 0] },
  { shape: [2, 3, 13, 29], kernel: [2, 3], stride: [1, 2], padding: [1, 1] },
  { shape: [3, 1, 29, 29], kernel: [3, 3], stride: [2, 2], padding: [0, 0] },
  { shape: [2, 3, 13, 13], kernel: [2, 2], stride: [3, 3], padding: [1, 1] }, // gaps between windows
];

const label = (c: Case) => `[${c.shape}] kernel [${c.kernel}] stride [${c.stride}] padding [${c.padding}]`;
const options = (c: Case) => ({ kernelSize: c.kernel, stride: c.stride, padding: c.padding });

describe('maxPool2d on distinct values (tolerance: forward exact up to rel 1e-7, backward rel 1e-5 (overlapping windows sum several f32 gradients), reference vs FD 1e-6)', () => {
  for (const c of cases) {
    it(label(c), async () => {
      await checkOp({
        name: `maxPool2d ${label(c)}`,
        inputs: { x: { shape: c.shape, data: distinctValues(numelOf(c.shape), 3) } },
        gpu: (t) => maxPool2d(t.x, options(c)),
        ref: (x) => ref.maxPool2d(x.x, c.shape, c),
        refBackward: (x, g) => ({ x: ref.maxPool2dBackward(x.x, c.shape, g, c) }),
        tol: { fwd: 1e-7, bwd: 1e-5 },
      });
    });
  }

  it('padding is -inf: all-negative input with padding 1 never yields 0', async () => {
    const c: Case = { shape: [2, 3, 7, 13], kernel: [3, 3], stride: [2, 2], padding: [1, 1] };
    const data = distinctValues(numelOf(c.shape), 4, 1); // -0.01 * (1 .. n): all negative
    data.forEach((v, i) => (data[i] = -Math.abs(v) - 0.01));
    await checkOp({
      name: 'maxPool2d negative input',
      inputs: { x: { shape: c.shape, data } },
      gpu: (t) => maxPool2d(t.x, options(c)),
      ref: (x) => ref.maxPool2d(x.x, c.shape, c),
      refBackward: (x, g) => ({ x: ref.maxPool2dBackward(x.x, c.shape, g, c) }),
      tol: { fwd: 1e-7, bwd: 1e-5 },
    });
  });
});

describe('maxPool2d ties: the gradient goes to the first maximum in row-major order (tolerance: forward rel 1e-7, backward rel 1e-5)', () => {
  // No finite differences here (max is not differentiable at ties); the GPU is compared with the reference's
  // first-arg-max routing, and the all-equal case is also checked structurally.
  const tieCases: Case[] = [
    { shape: [2, 3, 7, 7], kernel: [2, 2], stride: [2, 2], padding: [0, 0] },
    { shape: [1, 5, 13, 13], kernel: [3, 3], stride: [2, 2], padding: [1, 1] }, // overlapping windows
    { shape: [2, 2, 13, 29], kernel: [3, 3], stride: [1, 1], padding: [1, 1] },
  ];
  for (const c of tieCases) {
    for (const kind of ['all equal', 'three levels'] as const) {
      it(`${kind}: ${label(c)}`, async () => {
        const n = numelOf(c.shape);
        const next = rng(9);
        const data = kind === 'all equal' ? new Float64Array(n).fill(0.5) : Float64Array.from({ length: n }, () => Math.floor(next() * 3));
        const g = Float64Array.from({ length: numelOf([c.shape[0], c.shape[1], ...ref.poolOutputSize(c.shape, c)]) }, () => next() - 0.5);
        const x = Tensor.fromArray(data, c.shape, { requiresGrad: true });
        const y = maxPool2d(x, options(c));
        expectClose(await y.toArray(), ref.maxPool2d(data, c.shape, c), 1e-7, 'forward');
        y.backward(Tensor.fromArray(g, y.shape));
        const dx = await x.grad!.toArray();
        const want = ref.maxPool2dBackward(data, c.shape, g, c);
        expectClose(dx, want, 1e-5, 'backward');
        if (kind === 'all equal') {
          // Every window's first in-bounds element takes its whole gradient: the gradient mass is conserved and
          // only window-start positions receive any.
          const [, , h, w] = c.shape;
          let total = 0;
          for (const v of dx) total += v;
          expect(total).toBeCloseTo(g.reduce((a, b) => a + b, 0), 4);
          dx.forEach((v, i) => {
            if (v === 0) return;
            const yy = Math.floor(i / w) % h;
            const xx = i % w;
            const isStart = (p: number, pad: number, s: number) => p === 0 || (p + pad) % s === 0;
            expect(isStart(yy, c.padding[0], c.stride[0]) && isStart(xx, c.padding[1], c.stride[1]), `gradient at a non-start position ${i}`).toBe(true);
          });
        }
      });
    }
  }
});

describe('avgPool2d (tolerance: forward and backward rel 1e-5, reference vs FD 1e-6)', () => {
  for (const c of cases) {
    for (const countIncludePad of [true, false]) {
      if (!countIncludePad && c.padding[0] === 0 && c.padding[1] === 0) continue; // identical without padding
      it(`${label(c)} countIncludePad ${countIncludePad}`, async () => {
        const o = { ...c, countIncludePad };
        await checkOp({
          name: `avgPool2d ${label(c)} countIncludePad ${countIncludePad}`,
          inputs: { x: { shape: c.shape } },
          gpu: (t) => avgPool2d(t.x, { ...options(c), countIncludePad }),
          ref: (x) => ref.avgPool2d(x.x, c.shape, o),
          refBackward: (_x, g) => ({ x: ref.avgPool2dBackward(c.shape, g, o) }),
          tol: { fwd: 1e-5, bwd: 1e-5 },
        });
      });
    }
  }
});

describe('adaptiveAvgPool2d (tolerance: forward and backward rel 1e-5, reference vs FD 1e-6)', () => {
  const adaptive: { shape: number[]; out: [number, number] }[] = [
    { shape: [2, 3, 7, 7], out: [1, 1] }, // global, one invocation per plane
    { shape: [1, 5, 29, 13], out: [1, 1] }, // global, 377 elements: one workgroup per plane
    { shape: [2, 16, 56, 56], out: [1, 1] }, // global, large planes
    { shape: [3, 84, 7, 7], out: [1, 1] },
    { shape: [2, 3, 13, 29], out: [3, 5] }, // general windows, uneven
    { shape: [1, 3, 7, 7], out: [3, 3] }, // overlapping windows (7 / 3)
    { shape: [1, 2, 3, 5], out: [4, 7] }, // output larger than input
    { shape: [1, 1, 13, 7], out: [13, 7] }, // identity
  ];
  for (const { shape, out } of adaptive) {
    it(`[${shape}] -> [${out}]`, async () => {
      await checkOp({
        name: `adaptiveAvgPool2d [${shape}] -> [${out}]`,
        inputs: { x: { shape } },
        gpu: (t) => adaptiveAvgPool2d(t.x, out),
        ref: (x) => ref.adaptiveAvgPool2d(x.x, shape, out[0], out[1]),
        refBackward: (_x, g) => ({ x: ref.adaptiveAvgPool2dBackward(shape, g, out[0], out[1]) }),
        tol: { fwd: 1e-5, bwd: 1e-5 },
      });
    });
  }

  it('global pool over more than 65,535 planes (workgroups split over two dimensions)', async () => {
    const shape = [1040, 64, 16, 16]; // 66,560 planes of 256 elements
    const n = numelOf(shape);
    const next = rng(17);
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = next() * 2 - 1;
    const y = adaptiveAvgPool2d(Tensor.fromArray(data, shape), 1);
    expectClose(await y.toArray(), ref.adaptiveAvgPool2d(Float64Array.from(data), shape, 1, 1), 1e-5, 'forward');
  });
});

describe('pooling argument checks', () => {
  it('rejects too much padding, too-small inputs and non-4-D inputs', () => {
    const x = Tensor.zeros([1, 1, 4, 4]);
    expect(() => maxPool2d(x, { kernelSize: 2, padding: 2 })).toThrow(/at most half of kernelSize/);
    expect(() => avgPool2d(x, { kernelSize: 5 })).toThrow(/too small/);
    expect(() => maxPool2d(Tensor.zeros([4, 4]), { kernelSize: 2 })).toThrow(/expected input \[N, C, H, W\]/);
    expect(() => adaptiveAvgPool2d(x, 0)).toThrow(/outputSize must be positive/);
  });

  it('stride defaults to kernelSize', async () => {
    const x = Tensor.randn([1, 2, 8, 6], { seed: 2 });
    expect(maxPool2d(x, { kernelSize: 2 }).shape).toEqual([1, 2, 4, 3]);
    expect(avgPool2d(x, { kernelSize: [4, 3] }).shape).toEqual([1, 2, 2, 2]);
  });
});
