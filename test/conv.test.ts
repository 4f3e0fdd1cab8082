import { describe, expect, it } from 'vitest';
import { Device, Tensor } from '../src/index.js';
import { conv2d, type Conv2dOptions } from '../src/ops/conv.js';
import { checkOp, expectClose, type InputSpec } from './helpers/check.js';
import { useDevice } from './helpers/device.js';
import * as ref from './reference/conv.js';

useDevice();

type Shape4 = [number, number, number, number];

interface Case {
  name: string;
  x: Shape4;
  weight: Shape4;
  bias: boolean;
  stride?: [number, number];
  padding?: [number, number];
  dilation?: [number, number];
  groups?: number;
  fdSamples?: number;
}

function specOf(c: Case): ref.ConvSpec {
  return { x: c.x, weight: c.weight, stride: c.stride, padding: c.padding, dilation: c.dilation, groups: c.groups };
}

function optionsOf(c: Case, impl: Conv2dOptions['impl'] = 'auto'): Conv2dOptions {
  return { stride: c.stride, padding: c.padding, dilation: c.dilation, groups: c.groups, impl };
}

async function checkCase(c: Case, impl: Conv2dOptions['impl'] = 'auto', tol: { fwd: number; bwd: number; fd?: number } = { fwd: 2e-5, bwd: 2e-5 }): Promise<void> {
  const spec = specOf(c);
  const inputs: Record<string, InputSpec> = { x: { shape: c.x }, weight: { shape: c.weight } };
  if (c.bias) inputs.bias = { shape: [c.weight[0]] };
  await checkOp({
    name: `${c.name} (${impl})`,
    inputs,
    gpu: (t) => conv2d(t.x, t.weight, t.bias ?? null, optionsOf(c, impl)),
    ref: (v) => ref.conv2d(spec, v.x, v.weight, v.bias ?? null),
    refBackward: (v, g) => {
      const grads = ref.conv2dBackward(spec, v.x, v.weight, g);
      return c.bias ? grads : { x: grads.x, weight: grads.weight };
    },
    tol,
    fdSamples: c.fdSamples ?? 24,
  });
}

// General path: every stride / padding / dilation / group combination the fast paths do not take.
const generalCases: Case[] = [
  { name: 'batch 1, 1->4 channels, 7x7, 3x3 (sample student stem, no padding)', x: [1, 1, 7, 7], weight: [4, 1, 3, 3], bias: true },
  { name: 'batch 2, 3->5, 13x13, 3x3, padding 1', x: [2, 3, 13, 13], weight: [5, 3, 3, 3], bias: true, padding: [1, 1] },
  { name: 'batch 2, 3->16, 29x13, 3x3, stride 2, padding 1 (stem)', x: [2, 3, 29, 13], weight: [16, 3, 3, 3], bias: true, stride: [2, 2], padding: [1, 1] },
  { name: 'batch 1, 5->3, 13x7, 5x5, no bias', x: [1, 5, 13, 7], weight: [3, 5, 5, 5], bias: false },
  { name: 'batch 2, 5->16, 13x13, 3x3, dilation 2, padding 1', x: [2, 5, 13, 13], weight: [16, 5, 3, 3], bias: true, dilation: [2, 2], padding: [1, 1] },
  { name: 'batch 2, 4->6, groups 2, 7x9, 3x3, padding 1', x: [2, 4, 7, 9], weight: [6, 2, 3, 3], bias: true, groups: 2, padding: [1, 1] },
  { name: 'batch 3, 6->4, groups 2, 13x7, 5x5, stride 2, padding 1, no bias', x: [3, 6, 13, 7], weight: [4, 3, 5, 5], bias: false, groups: 2, stride: [2, 2], padding: [1, 1] },
  { name: 'batch 2, 3->5, 13x7, 1x1, stride 2 (not pointwise)', x: [2, 3, 13, 7], weight: [5, 3, 1, 1], bias: true, stride: [2, 2] },
  { name: 'batch 2, 3->5, 7x13, 3x1, stride [2, 1], padding [1, 0], dilation [1, 2]', x: [2, 3, 7, 13], weight: [5, 3, 3, 1], bias: true, stride: [2, 1], padding: [1, 0], dilation: [1, 2] },
  { name: 'batch 1, 16->16, 7x7, 3x3, padding 1, groups 4', x: [1, 16, 7, 7], weight: [16, 4, 3, 3], bias: true, groups: 4, padding: [1, 1] },
  { name: 'batch 2, 1->1, 13x13, 5x5, stride 2, padding 1', x: [2, 1, 13, 13], weight: [1, 1, 5, 5], bias: true, stride: [2, 2], padding: [1, 1] },
  // Few input channels take the tile input-gradient kernel; these pin dilation along H there, and stride 2
  // through the phase kernel that more channels take.
  { name: 'batch 2, 3->8, 13x11, 3x3, stride 2, padding 2, dilation 2 (tile dX)', x: [2, 3, 13, 11], weight: [8, 3, 3, 3], bias: true, stride: [2, 2], padding: [2, 2], dilation: [2, 2] },
  { name: 'batch 2, 5->7, 13x11, 3x3, stride 2, padding 1 (phase dX)', x: [2, 5, 13, 11], weight: [7, 5, 3, 3], bias: true, stride: [2, 2], padding: [1, 1] },
];

// Depthwise path (groups == C): channel multiplier 1 and 2, strides, padding, dilation, 5x5 and 1x1. Rows of at
// most 32 columns take the sliding kernels: float and vec4 rows (W, OW multiples of 4: vec4 loads and stores),
// bands of one row up to whole planes (bands split planes until there are 512), dX one and two input rows per
// step (stride 1, 2); the multiplier-2 cases' dX and the wider rows take the row-block kernels.
const depthwiseCases: Case[] = [
  { name: 'depthwise batch 2, 5 channels, 13x13, 3x3, padding 1', x: [2, 5, 13, 13], weight: [5, 1, 3, 3], bias: true, groups: 5, padding: [1, 1] },
  { name: 'depthwise batch 1, 16 channels, 13x29, 3x3, stride 2, padding 1', x: [1, 16, 13, 29], weight: [16, 1, 3, 3], bias: true, groups: 16, stride: [2, 2], padding: [1, 1] },
  { name: 'depthwise batch 2, 3 channels x multiplier 2, 7x13, 3x3, no padding, no bias', x: [2, 3, 7, 13], weight: [6, 1, 3, 3], bias: false, groups: 3 },
  { name: 'depthwise batch 2, 3 channels, 29x13, 5x5, dilation 2, padding 1', x: [2, 3, 29, 13], weight: [3, 1, 5, 5], bias: true, groups: 3, dilation: [2, 2], padding: [1, 1] },
  { name: 'depthwise batch 1, 5 channels x multiplier 2, 13x7, 3x3, stride 2, no padding', x: [1, 5, 13, 7], weight: [10, 1, 3, 3], bias: true, groups: 5, stride: [2, 2] },
  { name: 'depthwise batch 2, 4 channels, 16x16, 3x3, padding 1 (vec4 rows in and out)', x: [2, 4, 16, 16], weight: [4, 1, 3, 3], bias: true, groups: 4, padding: [1, 1] },
  { name: 'depthwise batch 1, 3 channels, 12x8, 3x3, stride 2, padding 1 (vec4 rows, 4-wide outputs)', x: [1, 3, 12, 8], weight: [3, 1, 3, 3], bias: true, groups: 3, stride: [2, 2], padding: [1, 1] },
  { name: 'depthwise batch 2, 256 channels, 5x6, 3x3, padding 2 (one band per plane)', x: [2, 256, 5, 6], weight: [256, 1, 3, 3], bias: true, groups: 256, padding: [2, 2], fdSamples: 6 },
  { name: 'depthwise batch 1, 4 channels, 11x12, 5x5, stride 2, padding 2, no bias', x: [1, 4, 11, 12], weight: [4, 1, 5, 5], bias: false, groups: 4, stride: [2, 2], padding: [2, 2] },
  { name: 'depthwise batch 2, 6 channels, 9x10, 1x1, stride 2 (a window of one row)', x: [2, 6, 9, 10], weight: [6, 1, 1, 1], bias: true, groups: 6, stride: [2, 2] },
  { name: 'depthwise batch 2, 3 channels, 10x9, 3x3, stride [1, 2], padding [2, 0], dilation [1, 2]', x: [2, 3, 10, 9], weight: [3, 1, 3, 3], bias: true, groups: 3, stride: [1, 2], padding: [2, 0], dilation: [1, 2] },
  { name: 'depthwise batch 1, 3 channels, 5x37, 3x3, padding 1 (rows past 32 columns: row-block kernels)', x: [1, 3, 5, 37], weight: [3, 1, 3, 3], bias: true, groups: 3, padding: [1, 1] },
  { name: 'depthwise batch 1, 5 channels, 7x40, 3x3, stride 2, padding 1 (row-block kernels)', x: [1, 5, 7, 40], weight: [5, 1, 3, 3], bias: true, groups: 5, stride: [2, 2], padding: [1, 1] },
];

// Stem kernels (groups 1, few weights: forward and weight gradient), forced: vec4 rows (W and OW multiples of 4)
// and float rows, 8- and 4-pixel blocks, blocks past the row end, weight-gradient channel blocks that do and do
// not divide O, 1, 2 and 3 input channels, channels not a multiple of 4, stride 2, padding 0-2, dilation, 5x5
// and 3x1 kernels. (Their input gradient is the general path's tile kernel.)
const stemCases: Case[] = [
  { name: 'stem batch 1, 1->5, 7x7, 3x3, no padding (float rows, 8-pixel blocks past the row end)', x: [1, 1, 7, 7], weight: [5, 1, 3, 3], bias: true },
  { name: 'stem batch 2, 3->16, 16x16, 3x3, padding 1 (vec4 rows; forward 4-pixel blocks, dW 4 channels x 8 pixels)', x: [2, 3, 16, 16], weight: [16, 3, 3, 3], bias: true, padding: [1, 1] },
  { name: 'stem batch 2, 1->32, 12x20, 3x3, padding 1 (vec4 rows, the demo stem; dW blocks of 8 channels x 8 pixels, a divisor of 32)', x: [2, 1, 12, 20], weight: [32, 1, 3, 3], bias: true, padding: [1, 1] },
  { name: 'stem batch 1, 3->7, 13x11, 3x3, stride 2, padding 1, no bias (float rows; dW blocks of 4 and 3: 7 is prime)', x: [1, 3, 13, 11], weight: [7, 3, 3, 3], bias: false, stride: [2, 2], padding: [1, 1] },
  { name: 'stem batch 2, 3->6, 16x16, 3x3, stride 2, padding 1 (vec4 rows of 8 outputs)', x: [2, 3, 16, 16], weight: [6, 3, 3, 3], bias: true, stride: [2, 2], padding: [1, 1] },
  { name: 'stem batch 2, 2->3, 20x24, 5x5, padding 2 (vec4 rows, window 2 into a vec4)', x: [2, 2, 20, 24], weight: [3, 2, 5, 5], bias: true, padding: [2, 2] },
  { name: 'stem batch 2, 3->9, 15x13, 3x3, dilation 2, padding 2 (float rows)', x: [2, 3, 15, 13], weight: [9, 3, 3, 3], bias: true, dilation: [2, 2], padding: [2, 2] },
  { name: 'stem batch 3, 1->27, 9x3, 3x1, stride [2, 1], padding [1, 0] (4-pixel blocks past the row end, dW blocks of 9, a divisor of 27)', x: [3, 1, 9, 3], weight: [27, 1, 3, 1], bias: true, stride: [2, 1], padding: [1, 0] },
];

// Pointwise path (1x1, stride 1, no padding, groups 1): GEMMs.
const pointwiseCases: Case[] = [
  { name: 'pointwise batch 2, 16->5, 7x13', x: [2, 16, 7, 13], weight: [5, 16, 1, 1], bias: true },
  { name: 'pointwise batch 1, 3->16, 13x13, no bias', x: [1, 3, 13, 13], weight: [16, 3, 1, 1], bias: false },
  { name: 'pointwise batch 3, 5->3, 29x7', x: [3, 5, 29, 7], weight: [3, 5, 1, 1], bias: true },
];

// 84 channels (the sample student's widest layer): few finite-difference probes, the reference is slow.
const wideCases: Case[] = [
  { name: 'batch 2, 84->84, 7x7, 3x3, padding 1', x: [2, 84, 7, 7], weight: [84, 84, 3, 3], bias: true, padding: [1, 1], fdSamples: 6 },
  { name: 'depthwise batch 2, 84 channels, 9x9, 3x3, padding 1', x: [2, 84, 9, 9], weight: [84, 1, 3, 3], bias: true, groups: 84, padding: [1, 1], fdSamples: 6 },
  { name: 'pointwise batch 2, 84->84, 7x9', x: [2, 84, 7, 9], weight: [84, 84, 1, 1], bias: true, fdSamples: 6 },
];

describe('conv2d general path vs float64 reference (tolerance: forward and backward rel 2e-5; reference vs FD 1e-6)', () => {
  for (const c of generalCases) it(c.name, () => checkCase(c));
});

describe('conv2d depthwise path vs float64 reference (tolerance: forward and backward rel 2e-5; reference vs FD 1e-6)', () => {
  for (const c of depthwiseCases) it(c.name, () => checkCase(c, 'depthwise'));
});

describe('conv2d stem forward vs float64 reference (tolerance: forward and backward rel 2e-5; reference vs FD 1e-6)', () => {
  for (const c of stemCases) it(c.name, () => checkCase(c, 'stem'));
});

describe('conv2d pointwise path vs float64 reference (tolerance: forward and backward rel 2e-5; reference vs FD 1e-6)', () => {
  for (const c of pointwiseCases) it(c.name, () => checkCase(c, 'pointwise'));
});

describe('conv2d with 84 channels, every path (tolerance: forward and backward rel 5e-5; reference vs FD 1e-5, the float64 FD noise of larger sums)', () => {
  for (const c of wideCases) it(c.name, () => checkCase(c, 'auto', { fwd: 5e-5, bwd: 5e-5, fd: 1e-5 }));
});

/** Forward output and every gradient of one case through one path. */
async function runPath(c: Case, impl: Conv2dOptions['impl'], seed: number): Promise<Float32Array[]> {
  const x = Tensor.randn(c.x, { seed, requiresGrad: true });
  const weight = Tensor.randn(c.weight, { seed: seed + 1, requiresGrad: true });
  const bias = c.bias ? Tensor.randn([c.weight[0]], { seed: seed + 2, requiresGrad: true }) : null;
  const out = conv2d(x, weight, bias, optionsOf(c, impl));
  const gOut = Tensor.randn(out.shape, { seed: seed + 3 });
  const y = (await out.toArray()) as Float32Array;
  out.backward(gOut);
  const grads = [x.grad!, weight.grad!, ...(bias ? [bias.grad!] : [])];
  const arrays = [y, ...((await Promise.all(grads.map((g) => g.toArray()))) as Float32Array[])];
  for (const t of [x, weight, bias, out, gOut, ...grads]) t?.dispose();
  return arrays;
}

describe('fast paths agree with the general path on the same inputs (tolerance: rel 3e-5)', () => {
  const names = ['output', 'dx', 'dweight', 'dbias'];
  for (const [impl, cases] of [['depthwise', depthwiseCases], ['pointwise', pointwiseCases], ['stem', stemCases]] as const) {
    for (const c of cases) {
      it(`${impl}: ${c.name}`, async () => {
        const fast = await runPath(c, impl, 7);
        const general = await runPath(c, 'general', 7);
        fast.forEach((got, i) => expectClose(got, general[i], 3e-5, `${c.name}: ${impl} vs general ${names[i]}`));
      });
    }
  }
});

describe('conv2d gradients for some inputs only (tolerance: rel 2e-5)', () => {
  const c: Case = { name: 'batch 2, 3->4, 9x7, 3x3, padding 1', x: [2, 3, 9, 7], weight: [4, 3, 3, 3], bias: true, padding: [1, 1] };
  for (const impl of ['general', 'depthwise', 'pointwise'] as const) {
    it(`bias only, then weight only (${impl} path)`, async () => {
      const cc: Case =
        impl === 'depthwise' ? { ...c, weight: [3, 1, 3, 3], groups: 3 } : impl === 'pointwise' ? { ...c, weight: [4, 3, 1, 1], padding: [0, 0] } : c;
      const spec = specOf(cc);
      for (const wanted of ['bias', 'weight'] as const) {
        await checkOp({
          name: `${cc.name} ${impl}, d${wanted} only`,
          inputs: {
            x: { shape: cc.x, requiresGrad: false },
            weight: { shape: cc.weight, requiresGrad: wanted === 'weight' },
            bias: { shape: [cc.weight[0]], requiresGrad: wanted === 'bias' },
          },
          gpu: (t) => conv2d(t.x, t.weight, t.bias, optionsOf(cc, impl)),
          ref: (v) => ref.conv2d(spec, v.x, v.weight, v.bias),
          refBackward: (v, g) => ref.conv2dBackward(spec, v.x, v.weight, g),
          tol: { fwd: 2e-5, bwd: 2e-5 },
        });
      }
    });
  }
});

describe('conv2d past the storage binding limit (tolerance: rel 1e-4 on sampled outputs and input gradients; dW, db within 1e-5 of the sum of |terms|, the sums cancel heavily)', () => {
  it('splits the batch into slices whose bindings fit (2 images of 4100x4096, 134.3 MB > 128 MiB)', async () => {
    // A device of its own that binds WebGPU's default 128 MiB, whatever more the adapter allows (SwiftShader's 1 GiB
    // would need 8 GB of test data).
    const limit = 128 << 20;
    const dev = await Device.open({ limits: { maxStorageBufferBindingSize: limit }, makeCurrent: false });
    // An image is a multiple of 256 bytes, so each slice starts at an offset every adapter can bind.
    const [h, w] = [4100, 4096];
    const plane = h * w;
    expect(dev.device.limits.maxStorageBufferBindingSize).toBe(limit);
    expect(2 * plane * 4).toBeGreaterThan(limit); // one image fits a binding, the batch does not
    const pattern = (n: number, seed: number) => {
      const a = new Float32Array(n);
      for (let i = 0; i < n; i++) a[i] = (((i * 2654435761 + seed) >>> 0) % 2001) / 1000 - 1;
      return a;
    };
    const xData = pattern(2 * plane, 1);
    const gData = pattern(2 * plane, 2);
    const wData = Float32Array.from([0.3, -0.2, 0.5, 0.1, 0.9, -0.4, 0.25, 0.6, -0.7]);
    const x = Tensor.fromArray(xData, [2, 1, h, w], { requiresGrad: true, device: dev });
    const weight = Tensor.fromArray(wData, [1, 1, 3, 3], { requiresGrad: true, device: dev });
    const bias = Tensor.fromArray([0.5], [1], { requiresGrad: true, device: dev });
    const out = conv2d(x, weight, bias, { padding: 1 });
    const y = await out.toArray();
    out.backward(Tensor.fromArray(gData, out.shape, { device: dev }));
    const [dx, dw, db] = await Promise.all([x.grad!.toArray(), weight.grad!.toArray(), bias.grad!.toArray()]);
    const at = (a: Float32Array, n: number, i: number, j: number) => (i < 0 || j < 0 || i >= h || j >= w ? 0 : a[n * plane + i * w + j]);
    // Sampled outputs and input gradients (both images, the edges and the interior), against float64 sums.
    const samples = [[0, 0, 0], [0, h - 1, w - 1], [1, 0, w - 1], [1, h - 1, 0], [1, 2049, 17], [0, 1234, 4095], [1, 4099, 2]];
    const [yGot, yWant, dxGot, dxWant]: number[][] = [[], [], [], []];
    for (const [n, i, j] of samples) {
      let s = 0.5;
      let t = 0;
      for (let ky = 0; ky < 3; ky++) {
        for (let kx = 0; kx < 3; kx++) {
          s += at(xData, n, i + ky - 1, j + kx - 1) * wData[ky * 3 + kx];
          t += at(gData, n, i - ky + 1, j - kx + 1) * wData[ky * 3 + kx];
        }
      }
      yGot.push(y[n * plane + i * w + j]);
      yWant.push(s);
      dxGot.push(dx[n * plane + i * w + j]);
      dxWant.push(t);
    }
    expectClose(yGot, yWant, 1e-4, 'sampled outputs');
    expectClose(dxGot, dxWant, 1e-4, 'sampled input gradients');
    // Full weight and bias gradients: sums over both images' 33.6 M pixels.
    // 33.6 M terms of both signs cancel to sums far smaller than the terms: the error is measured against the
    // sum of |terms| (float32 chunked sums stay near 1e-6 of it; a lost or doubled slice would be off by ~50%).
    const dwWant = new Float64Array(9);
    const dwMagnitude = new Float64Array(9);
    let dbWant = 0;
    let dbMagnitude = 0;
    for (let n = 0; n < 2; n++) {
      for (let i = 0; i < h; i++) {
        for (let j = 0; j < w; j++) {
          const g = gData[n * plane + i * w + j];
          dbWant += g;
          dbMagnitude += Math.abs(g);
          for (let ky = 0; ky < 3; ky++) {
            for (let kx = 0; kx < 3; kx++) {
              const term = g * at(xData, n, i + ky - 1, j + kx - 1);
              dwWant[ky * 3 + kx] += term;
              dwMagnitude[ky * 3 + kx] += Math.abs(term);
            }
          }
        }
      }
    }
    dwWant.forEach((want, k) => expect(Math.abs(dw[k] - want), `dW[${k}]: got ${dw[k]}, want ${want}`).toBeLessThan(1e-5 * dwMagnitude[k]));
    expect(Math.abs(db[0] - dbWant), `db: got ${db[0]}, want ${dbWant}`).toBeLessThan(1e-5 * dbMagnitude);
    for (const t of [x, weight, bias, out, x.grad!, weight.grad!, bias.grad!]) t.dispose();
    dev.destroy();
  });
});

describe('conv2d determinism and errors', () => {
  it('same inputs give the same bits, forward and backward, on every path', async () => {
    for (const [impl, c] of [['general', generalCases[2]], ['stem', stemCases[1]], ['depthwise', depthwiseCases[1]], ['pointwise', pointwiseCases[0]]] as const) {
      const first = await runPath(c, impl, 3);
      const second = await runPath(c, impl, 3);
      first.forEach((a, i) => expect(Buffer.from(a.buffer).equals(Buffer.from(second[i].buffer)), `${impl} tensor ${i}`).toBe(true));
    }
  });

  it('rejects bad shapes, naming the argument and what was expected', () => {
    const x = Tensor.zeros([2, 6, 9, 9]);
    expect(() => conv2d(x, Tensor.zeros([4, 4, 3, 3]), null, { groups: 2 })).toThrow(/weight \[4, 4, 3, 3\].*expected C\/groups = 6\/2 = 3/);
    expect(() => conv2d(x, Tensor.zeros([5, 3, 3, 3]), null, { groups: 2 })).toThrow(/out-channels O=5 are not divisible by groups=2/);
    expect(() => conv2d(x, Tensor.zeros([4, 2, 3, 3]), null, { groups: 4 })).toThrow(/C=6 are not divisible by groups=4/);
    expect(() => conv2d(x, Tensor.zeros([4, 6, 3, 3]), Tensor.zeros([5]))).toThrow(/bias must be \[4\].*got \[5\]/);
    expect(() => conv2d(Tensor.zeros([6, 9, 9]), Tensor.zeros([4, 6, 3, 3]))).toThrow(/input must be \[N, C, H, W\], got \[6, 9, 9\]/);
    expect(() => conv2d(x, Tensor.zeros([4, 6, 11, 3]))).toThrow(/smaller than the dilated kernel \[11, 3\]/);
    expect(() => conv2d(x, Tensor.zeros([4, 6, 3, 3]), null, { stride: 0 })).toThrow(/stride must be >= 1/);
    expect(() => conv2d(Tensor.zeros([1, 1, 1, 40]), Tensor.zeros([1, 1, 1, 33]))).toThrow(/kernel width 33 with dilation 1 spans 33 columns; at most 32/);
    expect(() => conv2d(x, Tensor.zeros([4, 6, 3, 3]), null, { impl: 'pointwise' })).toThrow(/impl "pointwise" needs a 1x1 kernel/);
    expect(() => conv2d(x, Tensor.zeros([4, 6, 3, 3]), null, { impl: 'depthwise' })).toThrow(/impl "depthwise" needs groups == C/);
    expect(() => conv2d(x, Tensor.zeros([16, 6, 3, 3]), null, { impl: 'stem' })).toThrow(/impl "stem" needs groups 1 and at most 432 weights/);
  });
});
