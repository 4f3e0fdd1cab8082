import { describe, expect, it } from 'vitest';
import { Tensor, rng } from '../src/index.js';
import { batchNorm2d, batchNormReluMaxPool2d } from '../src/ops/batchnorm.js';
import { maxPool2d } from '../src/ops/pool.js';
import { BatchNorm2d, Conv2d, MaxPool2d, ReLU, Sequential } from '../src/nn/layers.js';
import { checkOp, expectClose } from './helpers/check.js';
import { useDevice } from './helpers/device.js';
import * as ref from './reference/batchnorm.js';
import * as poolRef from './reference/pool.js';

useDevice();

function normal(n: number, seed: number, mean = 0, std = 1): Float64Array {
  const next = rng(seed);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = mean + std * Math.sqrt(-2 * Math.log(1 - next())) * Math.cos(2 * Math.PI * next());
  return out;
}

function uniform(n: number, seed: number, low: number, high: number): Float64Array {
  const next = rng(seed);
  return Float64Array.from({ length: n }, () => low + (high - low) * next());
}

const numelOf = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

// Batch 1, odd and non-square sizes, channels 1/3/5/16/84, and sizes whose N*H*W spans several partials (8192
// elements each). The finite-difference loss sums every output, so its rounding noise grows with the tensor: the
// reference-vs-FD bound is 1e-5 up to a few thousand elements and looser for the two large shapes.
const shapes: { shape: number[]; fd: number }[] = [
  { shape: [1, 1, 7, 7], fd: 1e-5 },
  { shape: [2, 3, 13, 7], fd: 1e-5 },
  { shape: [1, 5, 29, 13], fd: 1e-5 },
  { shape: [3, 16, 7, 7], fd: 1e-5 },
  { shape: [2, 84, 5, 3], fd: 1e-5 },
  { shape: [4, 3, 45, 47], fd: 1e-4 }, // 8460 per channel: 2 partials (8192 each), the last one short
  { shape: [8, 5, 64, 64], fd: 3e-4 }, // 32768 per channel: 4 full partials
];

describe('batchNorm2d training mode (tolerance: forward rel 1e-5, backward rel 1e-4, reference vs FD 1e-5 / 1e-4 / 3e-4 by size)', () => {
  for (const { shape, fd } of shapes) {
    it(`[${shape}] with weight and bias`, async () => {
      const c = shape[1];
      await checkOp({
        name: `batchNorm2d train [${shape}]`,
        inputs: { x: { shape, std: 2 }, weight: { shape: [c] }, bias: { shape: [c] } },
        gpu: (t) => batchNorm2d(t.x, null, null, t.weight, t.bias, { training: true }),
        ref: (x) => ref.batchNorm2d(x.x, shape, { training: true, weight: x.weight, bias: x.bias }),
        refBackward: (x, g) => ref.batchNorm2dBackward(x.x, shape, g, { training: true, weight: x.weight, bias: x.bias }),
        tol: { fwd: 1e-5, bwd: 1e-4, fd },
      });
    });
  }

  it('two values per channel [2, 1, 1, 1] (eps 0.5: with a tiny eps both x_hat are +-1 and dx cancels to ~eps)', async () => {
    const shape = [2, 1, 1, 1];
    const o = { training: true, eps: 0.5 };
    await checkOp({
      name: 'batchNorm2d train [2, 1, 1, 1]',
      inputs: { x: { shape }, weight: { shape: [1] }, bias: { shape: [1] } },
      gpu: (t) => batchNorm2d(t.x, null, null, t.weight, t.bias, o),
      ref: (x) => ref.batchNorm2d(x.x, shape, { ...o, weight: x.weight, bias: x.bias }),
      refBackward: (x, g) => ref.batchNorm2dBackward(x.x, shape, g, { ...o, weight: x.weight, bias: x.bias }),
      tol: { fwd: 1e-5, bwd: 1e-4, fd: 1e-5 },
    });
  });

  it('without weight and bias (identity affine map)', async () => {
    const shape = [3, 5, 13, 7];
    await checkOp({
      name: 'batchNorm2d train, no affine',
      inputs: { x: { shape } },
      gpu: (t) => batchNorm2d(t.x, null, null, null, null, { training: true }),
      ref: (x) => ref.batchNorm2d(x.x, shape, { training: true }),
      refBackward: (x, g) => ({ x: ref.batchNorm2dBackward(x.x, shape, g, { training: true }).x }),
      tol: { fwd: 1e-5, bwd: 1e-4, fd: 1e-5 },
    });
  });

  it('custom eps', async () => {
    const shape = [2, 3, 7, 5];
    await checkOp({
      name: 'batchNorm2d train, eps 0.1',
      inputs: { x: { shape, std: 0.3 }, weight: { shape: [3] }, bias: { shape: [3] } },
      gpu: (t) => batchNorm2d(t.x, null, null, t.weight, t.bias, { training: true, eps: 0.1 }),
      ref: (x) => ref.batchNorm2d(x.x, shape, { training: true, eps: 0.1, weight: x.weight, bias: x.bias }),
      refBackward: (x, g) => ref.batchNorm2dBackward(x.x, shape, g, { training: true, eps: 0.1, weight: x.weight, bias: x.bias }),
      tol: { fwd: 1e-5, bwd: 1e-4, fd: 1e-5 },
    });
  });
});

describe('batchNorm2d with a large mean, values 1000 + N(0, 1) (tolerance: forward rel 1e-5, backward rel 1e-4, reference vs FD 1e-5)', () => {
  // A naive E[x^2] - E[x]^2 in f32 loses every significant digit of the variance here; the FD step is 1e-3
  // (relative to |x| = 1000), hence the looser reference-vs-FD bound.
  for (const shape of [
    [2, 3, 29, 13],
    [4, 2, 45, 47],
  ]) {
    it(`[${shape}]`, async () => {
      const c = shape[1];
      await checkOp({
        name: `batchNorm2d large mean [${shape}]`,
        inputs: { x: { shape, data: normal(numelOf(shape), 7, 1000, 1) }, weight: { shape: [c] }, bias: { shape: [c] } },
        gpu: (t) => batchNorm2d(t.x, null, null, t.weight, t.bias, { training: true }),
        ref: (x) => ref.batchNorm2d(x.x, shape, { training: true, weight: x.weight, bias: x.bias }),
        refBackward: (x, g) => ref.batchNorm2dBackward(x.x, shape, g, { training: true, weight: x.weight, bias: x.bias }),
        tol: { fwd: 1e-5, bwd: 1e-4, fd: 1e-5 },
      });
    });
  }
});

describe('batchNorm2d evaluation mode (tolerance: forward and backward rel 1e-5, reference vs FD 1e-6)', () => {
  for (const shape of [
    [1, 3, 7, 7],
    [2, 5, 13, 29],
    [3, 84, 3, 5],
  ]) {
    it(`[${shape}] uses the running statistics; the backward is the affine map`, async () => {
      const c = shape[1];
      await checkOp({
        name: `batchNorm2d eval [${shape}]`,
        inputs: {
          x: { shape, std: 3 },
          runningMean: { shape: [c], requiresGrad: false },
          runningVar: { shape: [c], data: uniform(c, 3, 0.2, 4), requiresGrad: false },
          weight: { shape: [c] },
          bias: { shape: [c] },
        },
        gpu: (t) => batchNorm2d(t.x, t.runningMean, t.runningVar, t.weight, t.bias, { training: false }),
        ref: (x) =>
          ref.batchNorm2d(x.x, shape, { training: false, runningMean: x.runningMean, runningVar: x.runningVar, weight: x.weight, bias: x.bias }),
        refBackward: (x, g) =>
          ref.batchNorm2dBackward(x.x, shape, g, {
            training: false,
            runningMean: x.runningMean,
            runningVar: x.runningVar,
            weight: x.weight,
            bias: x.bias,
          }),
        tol: { fwd: 1e-5, bwd: 1e-5 },
      });
    });
  }

  it('only weight and bias need gradients (frozen input)', async () => {
    const shape = [2, 3, 5, 7];
    await checkOp({
      name: 'batchNorm2d eval, x frozen',
      inputs: {
        x: { shape, requiresGrad: false },
        runningMean: { shape: [3], requiresGrad: false },
        runningVar: { shape: [3], data: [0.5, 1, 2], requiresGrad: false },
        weight: { shape: [3] },
        bias: { shape: [3] },
      },
      gpu: (t) => batchNorm2d(t.x, t.runningMean, t.runningVar, t.weight, t.bias, { training: false }),
      ref: (x) => ref.batchNorm2d(x.x, shape, { training: false, runningMean: x.runningMean, runningVar: x.runningVar, weight: x.weight, bias: x.bias }),
      refBackward: (x, g) => {
        const o = { training: false, runningMean: x.runningMean, runningVar: x.runningVar, weight: x.weight, bias: x.bias };
        const grads = ref.batchNorm2dBackward(x.x, shape, g, o);
        return { weight: grads.weight, bias: grads.bias };
      },
      tol: { fwd: 1e-5, bwd: 1e-5 },
    });
  });
});

describe('batchNorm2d running statistics, updated in place in training mode (tolerance: rel 1e-5)', () => {
  const cases: { shape: number[]; momentum?: number; mean: number }[] = [
    { shape: [2, 3, 13, 7], mean: 0 },
    { shape: [1, 5, 29, 13], momentum: 0.3, mean: 0.5 },
    { shape: [4, 2, 45, 47], mean: 1000 }, // several partials and a large mean
    { shape: [2, 1, 1, 1], mean: 0 }, // two values per channel: unbiased variance divides by 1
  ];
  for (const { shape, momentum, mean } of cases) {
    it(`[${shape}], momentum ${momentum ?? 'default 0.1'}, data mean ${mean}`, async () => {
      const c = shape[1];
      const xData = Float64Array.from(Float32Array.from(normal(numelOf(shape), 11, mean, 1.5)));
      const oldMean = Float64Array.from(Float32Array.from(normal(c, 12)));
      const oldVar = Float64Array.from(Float32Array.from(uniform(c, 13, 0.5, 2)));
      const x = Tensor.fromArray(xData, shape);
      const runningMean = Tensor.fromArray(oldMean, [c]);
      const runningVar = Tensor.fromArray(oldVar, [c]);
      const y = batchNorm2d(x, runningMean, runningVar, null, null, { training: true, momentum });
      expectClose(await y.toArray(), ref.batchNorm2d(xData, shape, { training: true }), 1e-5, 'output');
      const want = ref.updatedRunningStats(xData, shape, oldMean, oldVar, momentum);
      expectClose(await runningMean.toArray(), want.mean, 1e-5, 'running mean');
      expectClose(await runningVar.toArray(), want.variance, 1e-5, 'running var');
    });
  }

  it('evaluation mode leaves the running statistics alone', async () => {
    const shape = [2, 3, 5, 5];
    const runningMean = Tensor.fromArray([0.1, -0.2, 0.3], [3]);
    const runningVar = Tensor.fromArray([1.5, 0.5, 2], [3]);
    batchNorm2d(Tensor.randn(shape, { seed: 5 }), runningMean, runningVar, null, null, { training: false });
    expect(Array.from(await runningMean.toArray())).toEqual(Array.from(Float32Array.from([0.1, -0.2, 0.3])));
    expect(Array.from(await runningVar.toArray())).toEqual([1.5, 0.5, 2]);
  });
});

describe('batchNorm2d with more partials per channel than the combining workgroup has invocations (tolerance: forward and running stats rel 1e-5, backward rel 1e-4)', () => {
  it('[2, 2, 520, 520]: 540,800 values per channel in 67 partials, large mean', async () => {
    // Checked against the reference directly (its backward is proven against finite differences above; FD on
    // half a million values per channel would be slow and noisy).
    const shape = [2, 2, 520, 520];
    const xData = Float64Array.from(Float32Array.from(normal(numelOf(shape), 31, 50, 2)));
    const gData = Float64Array.from(Float32Array.from(normal(numelOf(shape), 32)));
    const weightData = [1.5, -0.5];
    const biasData = [0.25, 2];
    const x = Tensor.fromArray(xData, shape, { requiresGrad: true });
    const weight = Tensor.fromArray(weightData, [2], { requiresGrad: true });
    const bias = Tensor.fromArray(biasData, [2], { requiresGrad: true });
    const runningMean = Tensor.fromArray([0, 0], [2]);
    const runningVar = Tensor.fromArray([1, 1], [2]);
    const y = batchNorm2d(x, runningMean, runningVar, weight, bias, { training: true });
    const o = { training: true, weight: Float64Array.from(weightData), bias: Float64Array.from(biasData) };
    expectClose(await y.toArray(), ref.batchNorm2d(xData, shape, o), 1e-5, 'forward');
    const want = ref.updatedRunningStats(xData, shape, new Float64Array(2), Float64Array.from([1, 1]));
    expectClose(await runningMean.toArray(), want.mean, 1e-5, 'running mean');
    expectClose(await runningVar.toArray(), want.variance, 1e-5, 'running var');
    y.backward(Tensor.fromArray(gData, shape));
    const grads = ref.batchNorm2dBackward(xData, shape, gData, o);
    expectClose(await x.grad!.toArray(), grads.x, 1e-4, 'd/dx');
    expectClose(await weight.grad!.toArray(), grads.weight, 1e-4, 'd/dweight');
    expectClose(await bias.grad!.toArray(), grads.bias, 1e-4, 'd/dbias');
  });
});

// One checkOp for train or eval mode, with or without the affine map and the fused ReLU.
async function checkBatchNorm(c: {
  shape: number[];
  training: boolean;
  relu?: boolean;
  affine?: boolean;
  x?: { std?: number; data?: Float64Array };
  weight?: number[];
  bias?: number[];
  tol: { fwd: number; bwd: number; fd?: number };
}): Promise<void> {
  const { shape, training, relu = false, affine = true } = c;
  const ch = shape[1];
  const inputs: Record<string, { shape: number[]; std?: number; data?: ArrayLike<number>; requiresGrad?: boolean }> = {
    x: { shape, ...c.x },
  };
  if (!training) {
    inputs.runningMean = { shape: [ch], requiresGrad: false };
    inputs.runningVar = { shape: [ch], data: uniform(ch, 3, 0.2, 4), requiresGrad: false };
  }
  if (affine) {
    inputs.weight = { shape: [ch], data: c.weight };
    inputs.bias = { shape: [ch], data: c.bias };
  }
  const refOptions = (x: Record<string, Float64Array>) => ({
    training,
    relu,
    runningMean: x.runningMean,
    runningVar: x.runningVar,
    weight: x.weight,
    bias: x.bias,
  });
  await checkOp({
    name: `batchNorm2d ${training ? 'train' : 'eval'}${relu ? ' + relu' : ''} [${shape}]`,
    inputs,
    gpu: (t) => batchNorm2d(t.x, t.runningMean ?? null, t.runningVar ?? null, t.weight ?? null, t.bias ?? null, { training, relu }),
    ref: (x) => ref.batchNorm2d(x.x, shape, refOptions(x)),
    refBackward: (x, g) => {
      const grads = ref.batchNorm2dBackward(x.x, shape, g, refOptions(x));
      return affine ? grads : { x: grads.x };
    },
    tol: c.tol,
  });
}

describe('batchNorm2d, 4 values per load where H * W % 4 == 0 (tolerance: forward rel 1e-5, backward rel 1e-4 (train) / 1e-5 (eval), reference vs FD 1e-5 / 1e-4 by size, 1e-6 eval)', () => {
  // H * W of 4 (one vec4 per plane), 16, 48 (non-square), 320 (80 vec4s, more than a workgroup's 64 invocations),
  // batch 1, channels 1/3/5/16/84, and 2112 * 4 = 8448 per channel: 2 partials, the last one short.
  const trainShapes: { shape: number[]; fd: number }[] = [
    { shape: [1, 1, 2, 2], fd: 1e-5 },
    { shape: [2, 3, 4, 4], fd: 1e-5 },
    { shape: [3, 5, 8, 6], fd: 1e-5 },
    { shape: [1, 84, 2, 4], fd: 1e-5 },
    { shape: [2, 16, 16, 20], fd: 1e-4 },
    { shape: [4, 3, 44, 48], fd: 1e-4 },
  ];
  for (const { shape, fd } of trainShapes) {
    it(`training [${shape}]`, async () => {
      await checkBatchNorm({ shape, training: true, x: { std: 2 }, tol: { fwd: 1e-5, bwd: 1e-4, fd } });
    });
  }

  it('training with a large mean, values 1000 + N(0, 1) [4, 2, 44, 48]', async () => {
    const shape = [4, 2, 44, 48];
    await checkBatchNorm({ shape, training: true, x: { data: normal(numelOf(shape), 8, 1000, 1) }, tol: { fwd: 1e-5, bwd: 1e-4, fd: 1e-5 } });
  });

  for (const shape of [
    [1, 16, 4, 4],
    [2, 5, 8, 12],
  ]) {
    it(`evaluation [${shape}]`, async () => {
      await checkBatchNorm({ shape, training: false, x: { std: 3 }, tol: { fwd: 1e-5, bwd: 1e-5 } });
    });
  }
});

describe('batchNorm2d, 4 values per load across 4 channels where C % 4 == 0 and H * W % 4 != 0 or a channel is under one chunk (tolerance: forward rel 1e-5, backward rel 1e-4 (train) / 1e-5 (eval), reference vs FD 1e-5 / 1e-4 by size, 1e-6 eval)', () => {
  // H * W odd (49, 15, 3, 1: a load then spans four channels), 6 (= 2 mod 4), batch 1, one group and several, and
  // 4 * 2115 = 8460 units per group: 5 partials, the last one short.
  const trainShapes: { shape: number[]; fd: number }[] = [
    { shape: [1, 4, 7, 7], fd: 1e-5 },
    { shape: [2, 8, 5, 3], fd: 1e-5 },
    { shape: [3, 12, 3, 2], fd: 1e-5 },
    { shape: [5, 4, 1, 1], fd: 1e-5 },
    { shape: [2, 4, 1, 3], fd: 1e-5 },
    { shape: [2, 20, 13, 7], fd: 1e-5 },
    { shape: [4, 4, 45, 47], fd: 1e-4 },
    // Small planes with H * W % 4 == 0 (a channel under one chunk): 16 and 4 units per block (4 and 16 invocations
    // per unit), and 960 (more than a workgroup) in 4 partials of 2 batches, the last one short (1).
    { shape: [2, 8, 4, 4], fd: 1e-5 },
    { shape: [3, 4, 2, 2], fd: 1e-5 },
    { shape: [5, 12, 1, 4], fd: 1e-5 },
    { shape: [7, 4, 24, 40], fd: 1e-4 },
  ];
  for (const { shape, fd } of trainShapes) {
    it(`training [${shape}], and with the fused ReLU`, async () => {
      await checkBatchNorm({ shape, training: true, x: { std: 2 }, tol: { fwd: 1e-5, bwd: 1e-4, fd } });
      await checkBatchNorm({ shape, training: true, relu: true, x: { std: 2 }, tol: { fwd: 1e-5, bwd: 1e-4, fd } });
    });
  }

  it('training without weight and bias [3, 8, 13, 7], with the fused ReLU', async () => {
    await checkBatchNorm({ shape: [3, 8, 13, 7], training: true, relu: true, affine: false, tol: { fwd: 1e-5, bwd: 1e-4, fd: 1e-5 } });
  });

  it('training with a large mean, values 1000 + N(0, 1) [2, 4, 29, 13]', async () => {
    const shape = [2, 4, 29, 13];
    await checkBatchNorm({ shape, training: true, x: { data: normal(numelOf(shape), 21, 1000, 1) }, tol: { fwd: 1e-5, bwd: 1e-4, fd: 1e-5 } });
  });

  it('channels of very different spreads in one load (std 1e-3 next to 1e3) [3, 4, 5, 5]', async () => {
    const shape = [3, 4, 5, 5];
    const data = normal(numelOf(shape), 22);
    const spread = [1e-3, 1e3, 1, 1e3];
    for (let i = 0; i < data.length; i++) data[i] *= spread[Math.floor(i / 25) % 4];
    await checkBatchNorm({ shape, training: true, relu: true, x: { data }, tol: { fwd: 1e-5, bwd: 1e-4 } });
  });

  it('a channel the ReLU cuts entirely (bias -20) gets exactly zero gradients; the others do not [2, 4, 13, 7]', async () => {
    await checkBatchNorm({ shape: [2, 4, 13, 7], training: true, relu: true, weight: [1, 0.5, -1.5, 2], bias: [0.3, -20, 0, 0.1], tol: { fwd: 1e-5, bwd: 1e-4, fd: 1e-5 } });
  });

  for (const shape of [
    [1, 8, 7, 7],
    [3, 4, 3, 5],
    [2, 8, 4, 4],
  ]) {
    it(`evaluation [${shape}], and with the fused ReLU`, async () => {
      await checkBatchNorm({ shape, training: false, x: { std: 3 }, tol: { fwd: 1e-5, bwd: 1e-5 } });
      await checkBatchNorm({ shape, training: false, relu: true, x: { std: 3 }, tol: { fwd: 1e-5, bwd: 1e-5 } });
    });
  }

  it('updates the running statistics (tolerance: rel 1e-5) [2, 8, 7, 7]', async () => {
    const shape = [2, 8, 7, 7];
    const xData = Float64Array.from(Float32Array.from(normal(numelOf(shape), 23, 0.5, 1.5)));
    const mean0 = Float64Array.from(Float32Array.from(uniform(8, 24, -1, 1)));
    const var0 = Float64Array.from(Float32Array.from(uniform(8, 25, 0.5, 2)));
    const runningMean = Tensor.fromArray(mean0, [8]);
    const runningVar = Tensor.fromArray(var0, [8]);
    const y = batchNorm2d(Tensor.fromArray(xData, shape), runningMean, runningVar, null, null, { training: true, relu: true });
    expectClose(await y.toArray(), ref.batchNorm2d(xData, shape, { training: true, relu: true }), 1e-5, 'output');
    const want = ref.updatedRunningStats(xData, shape, mean0, var0);
    expectClose(await runningMean.toArray(), want.mean, 1e-5, 'running mean');
    expectClose(await runningVar.toArray(), want.variance, 1e-5, 'running var');
  });
});

describe('batchNorm2d with the fused ReLU = relu(batch_norm(x)), both paths (tolerance: forward rel 1e-5, backward rel 1e-4 (train) / 1e-5 (eval), reference vs FD 1e-5 / 1e-4 by size, 1e-6 eval)', () => {
  // Scalar path (H * W odd) and 4-value path (H * W % 4 == 0); the bias spreads the ReLU's cut over the range.
  const trainShapes: { shape: number[]; fd: number }[] = [
    { shape: [1, 1, 7, 7], fd: 1e-5 },
    { shape: [2, 3, 13, 7], fd: 1e-5 },
    { shape: [3, 16, 7, 7], fd: 1e-5 },
    { shape: [2, 84, 5, 3], fd: 1e-5 },
    { shape: [3, 5, 8, 6], fd: 1e-5 },
    { shape: [4, 3, 45, 47], fd: 1e-4 },
    { shape: [4, 3, 44, 48], fd: 1e-4 },
  ];
  for (const { shape, fd } of trainShapes) {
    it(`training [${shape}]`, async () => {
      await checkBatchNorm({ shape, training: true, relu: true, x: { std: 2 }, tol: { fwd: 1e-5, bwd: 1e-4, fd } });
    });
  }

  it('training without weight and bias [3, 5, 13, 7] and [2, 3, 4, 4]', async () => {
    await checkBatchNorm({ shape: [3, 5, 13, 7], training: true, relu: true, affine: false, tol: { fwd: 1e-5, bwd: 1e-4, fd: 1e-5 } });
    await checkBatchNorm({ shape: [2, 3, 4, 4], training: true, relu: true, affine: false, tol: { fwd: 1e-5, bwd: 1e-4, fd: 1e-5 } });
  });

  it('training with a large mean, values 1000 + N(0, 1) [2, 3, 29, 13]', async () => {
    const shape = [2, 3, 29, 13];
    await checkBatchNorm({ shape, training: true, relu: true, x: { data: normal(numelOf(shape), 9, 1000, 1) }, tol: { fwd: 1e-5, bwd: 1e-4, fd: 1e-5 } });
  });

  it('a channel the ReLU cuts entirely (bias -20) gets exactly zero gradients; the others do not', async () => {
    for (const shape of [
      [2, 3, 13, 7],
      [2, 3, 4, 8],
    ]) {
      await checkBatchNorm({ shape, training: true, relu: true, weight: [1, 0.5, -1.5], bias: [0.3, -20, 0], tol: { fwd: 1e-5, bwd: 1e-4, fd: 1e-5 } });
    }
  });

  for (const shape of [
    [1, 3, 7, 7],
    [2, 5, 13, 29],
    [3, 84, 3, 5],
    [2, 5, 8, 12],
  ]) {
    it(`evaluation [${shape}]`, async () => {
      await checkBatchNorm({ shape, training: false, relu: true, x: { std: 3 }, tol: { fwd: 1e-5, bwd: 1e-5 } });
    });
  }

  it('evaluation, only weight and bias need gradients (frozen input) [2, 3, 5, 7] and [2, 3, 4, 4]', async () => {
    for (const shape of [
      [2, 3, 5, 7],
      [2, 3, 4, 4],
    ]) {
      const o = { training: false, relu: true };
      await checkOp({
        name: `batchNorm2d eval + relu, x frozen [${shape}]`,
        inputs: {
          x: { shape, requiresGrad: false },
          runningMean: { shape: [3], requiresGrad: false },
          runningVar: { shape: [3], data: [0.5, 1, 2], requiresGrad: false },
          weight: { shape: [3] },
          bias: { shape: [3] },
        },
        gpu: (t) => batchNorm2d(t.x, t.runningMean, t.runningVar, t.weight, t.bias, o),
        ref: (x) => ref.batchNorm2d(x.x, shape, { ...o, runningMean: x.runningMean, runningVar: x.runningVar, weight: x.weight, bias: x.bias }),
        refBackward: (x, g) => {
          const grads = ref.batchNorm2dBackward(x.x, shape, g, { ...o, runningMean: x.runningMean, runningVar: x.runningVar, weight: x.weight, bias: x.bias });
          return { weight: grads.weight, bias: grads.bias };
        },
        tol: { fwd: 1e-5, bwd: 1e-5 },
      });
    }
  });

  it('updates the running statistics exactly as without the ReLU (tolerance: rel 1e-5)', async () => {
    for (const shape of [
      [2, 3, 13, 7],
      [2, 3, 4, 8],
    ]) {
      const xData = Float64Array.from(Float32Array.from(normal(numelOf(shape), 14, 0.5, 1.5)));
      const x = Tensor.fromArray(xData, shape);
      const runningMean = Tensor.fromArray([0.1, 0.2, 0.3], [3]);
      const runningVar = Tensor.fromArray([1, 2, 0.5], [3]);
      const y = batchNorm2d(x, runningMean, runningVar, null, null, { training: true, relu: true });
      expectClose(await y.toArray(), ref.batchNorm2d(xData, shape, { training: true, relu: true }), 1e-5, 'output');
      const want = ref.updatedRunningStats(xData, shape, Float64Array.from(Float32Array.from([0.1, 0.2, 0.3])), Float64Array.from([1, 2, 0.5]));
      expectClose(await runningMean.toArray(), want.mean, 1e-5, 'running mean');
      expectClose(await runningVar.toArray(), want.variance, 1e-5, 'running var');
    }
  });
});

describe('batchNorm2d determinism and argument checks', () => {
  it('same input, same bits (forward and all gradients)', async () => {
    const shape = [4, 16, 29, 29];
    const run = async () => {
      const x = Tensor.randn(shape, { seed: 21, requiresGrad: true });
      const weight = Tensor.rand([16], { seed: 22, requiresGrad: true });
      const bias = Tensor.rand([16], { seed: 23, requiresGrad: true });
      const y = batchNorm2d(x, null, null, weight, bias, { training: true });
      const yData = await y.toArray();
      y.backward(Tensor.randn(shape, { seed: 24 }));
      return [yData, await x.grad!.toArray(), await weight.grad!.toArray(), await bias.grad!.toArray()];
    };
    const first = await run();
    const second = await run();
    first.forEach((a, k) => expect(Buffer.from(a.buffer).equals(Buffer.from(second[k].buffer)), `output ${k}`).toBe(true));
  });

  it('same input, same bits with 4 values per load and the fused ReLU [4, 16, 28, 28]', async () => {
    const shape = [4, 16, 28, 28];
    const run = async () => {
      const x = Tensor.randn(shape, { seed: 21, requiresGrad: true });
      const weight = Tensor.rand([16], { seed: 22, requiresGrad: true });
      const bias = Tensor.rand([16], { seed: 23, low: -0.5, high: 0.5, requiresGrad: true });
      const y = batchNorm2d(x, null, null, weight, bias, { training: true, relu: true });
      const yData = await y.toArray();
      y.backward(Tensor.randn(shape, { seed: 24 }));
      return [yData, await x.grad!.toArray(), await weight.grad!.toArray(), await bias.grad!.toArray()];
    };
    const first = await run();
    const second = await run();
    first.forEach((a, k) => expect(Buffer.from(a.buffer).equals(Buffer.from(second[k].buffer)), `output ${k}`).toBe(true));
  });

  it('rejects one value per channel in training, missing running stats in evaluation, and wrong shapes', () => {
    const one = Tensor.zeros([1, 3, 1, 1]);
    expect(() => batchNorm2d(one, null, null, null, null, { training: true })).toThrow(/more than 1 value per channel/);
    const x = Tensor.zeros([2, 3, 4, 4]);
    expect(() => batchNorm2d(x, null, null, null, null, { training: false })).toThrow(/required in evaluation mode/);
    expect(() => batchNorm2d(x, null, null, Tensor.zeros([4]), null, { training: true })).toThrow(/weight must be an f32 tensor of 3 values/);
    expect(() => batchNorm2d(Tensor.zeros([2, 3, 4]), null, null, null, null, { training: true })).toThrow(/expected input \[N, C, H, W\]/);
  });
});

// ---- batchNormReluMaxPool2d = max_pool2d(relu(batch_norm(x)), 2) ------------------------------------------------

const POOL2 = { kernel: [2, 2] as [number, number], stride: [2, 2] as [number, number], padding: [0, 0] as [number, number] };

/** The float64 composition: max_pool2d(relu(batch_norm(x)), 2), and its backward through the three ops. */
function refBnReluPool(x: Float64Array, shape: number[], o: ref.BatchNormRefOptions): Float64Array {
  return poolRef.maxPool2d(ref.batchNorm2d(x, shape, { ...o, relu: true }), shape, POOL2);
}
function refBnReluPoolBackward(x: Float64Array, shape: number[], g: Float64Array, o: ref.BatchNormRefOptions) {
  const y = ref.batchNorm2d(x, shape, { ...o, relu: true });
  return ref.batchNorm2dBackward(x, shape, poolRef.maxPool2dBackward(y, shape, g, POOL2), { ...o, relu: true });
}

async function checkBnReluPool(c: { shape: number[]; training: boolean; affine?: boolean; x?: { std?: number; data?: Float64Array }; tol: { fwd: number; bwd: number; fd?: number } }): Promise<void> {
  const { shape, training, affine = true } = c;
  const ch = shape[1];
  const inputs: Record<string, { shape: number[]; std?: number; data?: ArrayLike<number>; requiresGrad?: boolean }> = { x: { shape, ...c.x } };
  if (affine) Object.assign(inputs, { weight: { shape: [ch], data: normal(ch, 41, 1, 0.5) }, bias: { shape: [ch], data: normal(ch, 42, 0, 0.5) } });
  if (!training) {
    Object.assign(inputs, {
      runningMean: { shape: [ch], data: normal(ch, 43, 0, 0.5), requiresGrad: false },
      runningVar: { shape: [ch], data: uniform(ch, 44, 0.5, 2), requiresGrad: false },
    });
  }
  const refOptions = (x: Record<string, Float64Array>): ref.BatchNormRefOptions => ({
    training,
    weight: x.weight,
    bias: x.bias,
    runningMean: x.runningMean,
    runningVar: x.runningVar,
  });
  await checkOp({
    name: `batchNormReluMaxPool2d ${training ? 'train' : 'eval'} [${shape}]`,
    inputs,
    gpu: (t) => batchNormReluMaxPool2d(t.x, t.runningMean ?? null, t.runningVar ?? null, t.weight ?? null, t.bias ?? null, { training }),
    ref: (x) => refBnReluPool(x.x, shape, refOptions(x)),
    refBackward: (x, g) => {
      const grads = refBnReluPoolBackward(x.x, shape, g, refOptions(x));
      return affine ? grads : { x: grads.x };
    },
    tol: c.tol,
  });
}

// All three paths: `_wide` (W % 8 == 0, four windows per unit), `_vec4` (W % 4 == 0, two) and scalar (any W, one);
// odd H and W (floor mode: the last row or column is in no window), batch 1, channels 1/3/5/16/84, several partials
// per channel (8192 input elements each: 2048 windows scalar, 1024 window pairs vec4, 512 window quads wide). The
// reference-vs-FD bound grows with the tensor: the FD loss sums every output,
// and most sampled dx are the small statistics-only gradients of elements that lost their window.
const pooledShapes: { shape: number[]; fd: number; path: string }[] = [
  { shape: [1, 1, 2, 2], fd: 1e-5, path: 'scalar' },
  { shape: [2, 3, 7, 5], fd: 1e-5, path: 'scalar, odd H and W' },
  { shape: [2, 5, 6, 6], fd: 1e-5, path: 'scalar, W % 4 == 2' },
  { shape: [1, 84, 3, 9], fd: 1e-5, path: 'scalar, odd H and W' },
  { shape: [1, 5, 9, 12], fd: 1e-5, path: 'vec4, odd H' },
  { shape: [3, 16, 8, 8], fd: 1e-5, path: 'wide' },
  { shape: [1, 3, 7, 16], fd: 1e-5, path: 'wide, odd H' },
  { shape: [2, 3, 5, 4], fd: 1e-5, path: 'vec4, odd H, one unit per row' },
  { shape: [4, 2, 63, 61], fd: 1e-4, path: 'scalar, 2 partials, odd H and W' },
  { shape: [8, 3, 64, 64], fd: 1e-3, path: 'wide, 4 partials' },
  { shape: [5, 2, 41, 56], fd: 3e-4, path: 'wide, 2 partials (the last short), odd H' },
  { shape: [6, 2, 41, 36], fd: 3e-4, path: 'vec4, 2 partials (the last short), odd H' },
];

describe('batchNormReluMaxPool2d = max_pool2d(relu(batch_norm(x)), 2) against the float64 composition (tolerance: forward rel 1e-5, backward rel 1e-4 (train) / 1e-5 (eval), reference vs FD 1e-5 / 1e-4 / 3e-4 / 1e-3 by size, 1e-6 eval)', () => {
  for (const { shape, fd, path } of pooledShapes) {
    it(`training [${shape}] (${path})`, async () => {
      await checkBnReluPool({ shape, training: true, x: { std: 2 }, tol: { fwd: 1e-5, bwd: 1e-4, fd } });
    });
  }
  for (const shape of [[2, 3, 7, 5], [1, 5, 9, 12], [3, 16, 8, 8]]) { // scalar, vec4, wide
    it(`evaluation [${shape}] (running statistics; dx = scale * routed gradient, 0 outside the windows)`, async () => {
      await checkBnReluPool({ shape, training: false, x: { std: 2 }, tol: { fwd: 1e-5, bwd: 1e-5, fd: 1e-6 } });
    });
  }
  it('training without weight and bias [2, 3, 7, 5], [2, 3, 4, 12] and [2, 3, 4, 8]', async () => {
    for (const shape of [[2, 3, 7, 5], [2, 3, 4, 12], [2, 3, 4, 8]]) {
      await checkBnReluPool({ shape, training: true, affine: false, tol: { fwd: 1e-5, bwd: 1e-4, fd: 1e-5 } });
    }
  });
  it('training with a large mean, values 1000 + N(0, 1) [2, 3, 9, 7], [2, 3, 9, 4] and [2, 3, 9, 8]', async () => {
    for (const shape of [[2, 3, 9, 7], [2, 3, 9, 4], [2, 3, 9, 8]]) {
      await checkBnReluPool({ shape, training: true, x: { data: normal(numelOf(shape), 9, 1000, 1) }, tol: { fwd: 1e-5, bwd: 1e-4, fd: 1e-5 } });
    }
  });
  it('rejects inputs smaller than one window and the arguments batchNorm2d rejects', () => {
    expect(() => batchNormReluMaxPool2d(Tensor.zeros([2, 3, 1, 4]), null, null, null, null, { training: true })).toThrow(/too small for a 2x2 max pool/);
    expect(() => batchNormReluMaxPool2d(Tensor.zeros([2, 3, 4, 4]), null, null, null, null, { training: false })).toThrow(/required in evaluation mode/);
    expect(() => batchNormReluMaxPool2d(Tensor.zeros([2, 3, 4, 4]), null, null, Tensor.zeros([4]), null, { training: true })).toThrow(/weight must be an f32 tensor of 3 values/);
  });
  it('updates the running statistics exactly as batchNorm2d (tolerance: rel 1e-5)', async () => {
    for (const shape of [[2, 3, 7, 5], [2, 3, 6, 8]]) {
      const xData = Float64Array.from(Float32Array.from(normal(numelOf(shape), 11, 0.5, 1.5)));
      const runningMean = Tensor.fromArray([0.1, -0.2, 0.3], [3]);
      const runningVar = Tensor.fromArray([1.5, 0.5, 2], [3]);
      batchNormReluMaxPool2d(Tensor.fromArray(xData, shape), runningMean, runningVar, null, null, { training: true, momentum: 0.3 });
      const want = ref.updatedRunningStats(xData, shape, Float64Array.from([0.1, -0.2, 0.3]), Float64Array.from([1.5, 0.5, 2]), 0.3);
      expectClose(await runningMean.toArray(), want.mean, 1e-5, `running mean [${shape}]`);
      expectClose(await runningVar.toArray(), want.variance, 1e-5, `running var [${shape}]`);
    }
  });
});

/** Values on a coarse grid (-2..2 in steps of 1): windows full of equal values, and (with a negative bias) of zeros
 * after the ReLU. */
function coarse(n: number, seed: number): Float64Array {
  const next = rng(seed);
  return Float64Array.from({ length: n }, () => Math.floor(next() * 5) - 2);
}

async function grads(parts: Tensor[]): Promise<Float32Array[]> {
  return Promise.all(parts.map((t) => t.grad!.toArray()));
}

describe('batchNormReluMaxPool2d with ties: the same winner as maxPool2d(batchNorm2d(x, relu)) and the reference (first maximum wins; tolerance: forward exact, backward rel 1e-5 vs unfused, 1e-4 vs the reference)', () => {
  for (const shape of [[3, 4, 7, 9], [2, 4, 6, 8], [2, 3, 6, 12], [1, 3, 10, 10]]) {
    it(`[${shape}], values in {-2, ..., 2}, biases cut most of one channel to zero`, async () => {
      const c = shape[1];
      const xData = coarse(numelOf(shape), 51);
      const weightData = Float64Array.from({ length: c }, (_, k) => [1, -0.5, 2, 0.75][k % 4]);
      const biasData = Float64Array.from({ length: c }, (_, k) => [0, -2, 0.5, -0.25][k % 4]);
      const gData = Float64Array.from(Float32Array.from(normal(numelOf(shape) / 4 + 64, 52)));
      const run = async (fused: boolean) => {
        const x = Tensor.fromArray(xData, shape, { requiresGrad: true });
        const weight = Tensor.fromArray(weightData, [c], { requiresGrad: true });
        const bias = Tensor.fromArray(biasData, [c], { requiresGrad: true });
        const out = fused
          ? batchNormReluMaxPool2d(x, null, null, weight, bias, { training: true })
          : maxPool2d(batchNorm2d(x, null, null, weight, bias, { training: true, relu: true }), { kernelSize: 2 });
        const g = gData.subarray(0, out.numel);
        const outData = await out.toArray();
        out.backward(Tensor.fromArray(g, out.shape));
        return { out: outData, g, grads: await grads([x, weight, bias]) };
      };
      const fused = await run(true);
      const unfused = await run(false);
      expect(Array.from(fused.out)).toEqual(Array.from(unfused.out));
      const o = { training: true, weight: weightData, bias: biasData };
      expectClose(fused.out, refBnReluPool(xData, shape, o), 1e-5, 'forward vs reference');
      const want = refBnReluPoolBackward(xData, shape, Float64Array.from(fused.g), o);
      ['x', 'weight', 'bias'].forEach((name, k) => {
        expectClose(fused.grads[k], unfused.grads[k], 1e-5, `d/d${name} vs unfused`);
        expectClose(fused.grads[k], want[name as 'x'], 1e-4, `d/d${name} vs reference`);
      });
    });
  }

  it('windows of equal positive values route their gradient to the top-left element only, all paths (evaluation: dx = scale * g exactly there, exactly 0 elsewhere)', async () => {
    // One channel, batch 2: x constant inside each 2x2 window, distinct between windows; the odd last row is in no window.
    for (const shape of [[2, 1, 5, 4], [2, 1, 5, 6], [2, 1, 5, 8]]) {
      const [n, , h, w] = shape;
      const xData = Float64Array.from({ length: numelOf(shape) }, (_, i) => {
        const [b, r, col] = [Math.floor(i / (h * w)), Math.floor((i % (h * w)) / w), i % w];
        return r === h - 1 ? 5 : 1 + b * 10 + Math.floor(r / 2) * 3 + Math.floor(col / 2);
      });
      const x = Tensor.fromArray(xData, shape, { requiresGrad: true });
      const out = batchNormReluMaxPool2d(x, Tensor.fromArray([0], [1]), Tensor.fromArray([1], [1]), null, null, { training: false });
      const gData = Float64Array.from({ length: out.numel }, (_, k) => k + 1);
      out.backward(Tensor.fromArray(gData, out.shape));
      const dx = await x.grad!.toArray();
      const scale = Math.fround(1 / Math.sqrt(1 + 1e-5));
      const ow = Math.floor(w / 2);
      for (let i = 0; i < dx.length; i++) {
        const [b, r, col] = [Math.floor(i / (h * w)), Math.floor((i % (h * w)) / w), i % w];
        const topLeft = r < h - 1 && r % 2 === 0 && col % 2 === 0;
        const want = topLeft ? scale * gData[(b * Math.floor(h / 2) + r / 2) * ow + col / 2] : 0;
        expect(Math.abs(dx[i] - want), `[${shape}] dx[${i}] = ${dx[i]}, want ${want}`).toBeLessThanOrEqual(1e-6 * Math.abs(want));
      }
      void n;
    }
  });
});

describe('Sequential runs BatchNorm2d, ReLU, MaxPool2d(2) fused, with the results of the unfused modules (tolerance: forward exact, gradients and running statistics rel 1e-4: the sums run in another order)', () => {
  // Two identical stacks: `fused` through Sequential (a direct triple, and a block conv, BN, ReLU followed by a pool
  // as the dw/pw student's), `plain` op by op. The 1x1 conv mixes channels: without it the first BN's weight
  // gradient would cancel to rounding noise (the second BN's training dx is orthogonal to its input per channel).
  const build = () => {
    const bn1 = new BatchNorm2d(3);
    const bn2 = new BatchNorm2d(3);
    const conv = new Conv2d(3, 3, 1, { bias: false });
    conv.weight.write([0.9, -0.4, 0.3, 0.2, 1.1, -0.6, -0.5, 0.7, 0.8]);
    for (const [k, bn] of [bn1, bn2].entries()) {
      bn.weight.write([1.5, -0.5, 0.8]);
      bn.bias.write([0.1, -0.3, 0.2 * k]);
    }
    return { bn1, bn2, conv, net: new Sequential(bn1, new ReLU(), new MaxPool2d(2), new Sequential(conv, bn2, new ReLU()), new MaxPool2d(2, 2, 0)) };
  };
  const unfused = (s: ReturnType<typeof build>, x: Tensor) => {
    const pool = (t: Tensor) => maxPool2d(t, { kernelSize: 2 });
    const bn = (m: BatchNorm2d, t: Tensor) => batchNorm2d(t, m.runningMean, m.runningVar, m.weight, m.bias, { training: m.training });
    return pool(new ReLU().forward(bn(s.bn2, s.conv.forward(pool(new ReLU().forward(bn(s.bn1, x)))))));
  };
  for (const training of [true, false]) {
    it(`${training ? 'training' : 'evaluation'} [3, 3, 11, 13], [2, 3, 24, 20] and [2, 3, 16, 16] (all paths)`, async () => {
      for (const shape of [[3, 3, 11, 13], [2, 3, 24, 20], [2, 3, 16, 16]]) {
        const xData = normal(numelOf(shape), 61, 0.5, 2);
        const results: { out: Float32Array; tensors: Float32Array[] }[] = [];
        for (const fused of [true, false]) {
          const s = build();
          s.net.train(training);
          const x = Tensor.fromArray(xData, shape, { requiresGrad: true });
          const out = fused ? s.net.forward(x) : unfused(s, x);
          if (fused) expect(out.node?.op).toBe('batch_norm_relu_max_pool2d');
          const outData = await out.toArray();
          out.backward(Tensor.fromArray(normal(out.numel, 62), out.shape));
          results.push({
            out: outData,
            tensors: await Promise.all([x.grad!, s.conv.weight.grad!, s.bn1.weight.grad!, s.bn1.bias.grad!, s.bn2.weight.grad!, s.bn2.bias.grad!, s.bn1.runningMean, s.bn1.runningVar, s.bn2.runningMean, s.bn2.runningVar].map((t) => t.toArray())),
          });
        }
        expect(Array.from(results[0].out), `[${shape}] forward`).toEqual(Array.from(results[1].out));
        results[0].tensors.forEach((t, k) => expectClose(t, results[1].tensors[k], 1e-4, `[${shape}] tensor ${k}`));
      }
    });
  }

  it('forwardEach: a wanted ReLU output is visited (no triple fusion); unwanted, the pool\'s output is visited', async () => {
    const net = new Sequential(new BatchNorm2d(2), new ReLU(), new MaxPool2d(2));
    const x = Tensor.randn([2, 2, 6, 6], { seed: 63 });
    const seen: [number, number[]][] = [];
    net.forwardEach(x, (i, t) => seen.push([i, [...t.shape]]));
    expect(seen).toEqual([[1, [2, 2, 6, 6]], [2, [2, 2, 3, 3]]]);
    seen.length = 0;
    const out = net.forwardEach(x, (i, t) => seen.push([i, [...t.shape]]), (i) => i === 2);
    expect(seen).toEqual([[2, [2, 2, 3, 3]]]);
    expect(Array.from(await out.toArray())).toEqual(Array.from(await net.forward(x).toArray()));
  });

  it('pools other than 2x2 / stride 2 / no padding run unfused, with the same results as the modules one by one', async () => {
    for (const pool of [new MaxPool2d(3, 2, 1), new MaxPool2d(2, 1), new MaxPool2d([2, 3])]) {
      const bn = new BatchNorm2d(2);
      const x = Tensor.randn([2, 2, 7, 8], { seed: 64 });
      const got = new Sequential(bn, new ReLU(), pool).forward(x);
      bn.train(false); // the running statistics moved once; compare in evaluation mode on the same statistics
      const want = pool.forward(bn.forwardWithRelu(x));
      expect(Array.from(await new Sequential(bn, new ReLU(), pool).forward(x).toArray())).toEqual(Array.from(await want.toArray()));
      expect(got.shape).toEqual(want.shape);
    }
  });
});
