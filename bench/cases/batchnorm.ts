// BatchNorm2d benchmarks on the depthwise-separable student's activations at batch 64: 32 channels at S, 64 at
// S/2, 128 at S/4, with S = 28 (28x28 input), 32 (64x64 input, stride-2 stem) and 112 (224x224 input).
// GB/s counts the kernels' real traffic: the forward reads x twice (statistics, then normalise) and writes y; the
// backward reads x and dy twice (per-channel sums, then dx) and writes dx.
import { Tensor, type Device } from '../../src/index.js';
import { batchNorm2d, batchNormBackward, batchNormStats } from '../../src/ops/batchnorm.js';
import { timeGpu, type Row } from '../harness.js';

const BATCH = 64;
const INPUTS = [
  { input: 28, s: 28 },
  { input: 64, s: 32 },
  { input: 224, s: 112 },
];

export async function run(dev: Device): Promise<Row[]> {
  const rows: Row[] = [];
  for (const { input, s } of INPUTS) {
    for (const [channels, size] of [
      [32, s],
      [64, s / 2],
      [128, s / 4],
    ]) {
      const shape = [BATCH, channels, size, size];
      const numel = shape.reduce((a, b) => a * b, 1);
      // The largest activations take long on a software adapter: fewer repeats, same shape.
      const opts = numel > 4_000_000 ? { warmup: 1, repeats: 3, inner: 1 } : {};
      const x = Tensor.rand(shape, { device: dev, seed: 1, low: -2, high: 2 });
      const dy = Tensor.rand(shape, { device: dev, seed: 2, low: -1, high: 1 });
      const weight = Tensor.rand([channels], { device: dev, seed: 3 });
      const bias = Tensor.rand([channels], { device: dev, seed: 4 });
      const runningMean = Tensor.zeros([channels], { device: dev });
      const runningVar = Tensor.ones([channels], { device: dev });
      const label = `[${shape.join(', ')}] (input ${input})`;

      const fwd = await timeGpu(
        dev,
        () => {
          batchNorm2d(x, runningMean, runningVar, weight, bias, { training: true });
        },
        opts,
      );
      rows.push({ name: 'batchNorm2d forward (train)', shape: label, ms: fwd.medianMs, bytes: 3 * numel * 4 });

      const evalFwd = await timeGpu(
        dev,
        () => {
          batchNorm2d(x, runningMean, runningVar, weight, bias, { training: false });
        },
        opts,
      );
      rows.push({ name: 'batchNorm2d forward (eval)', shape: label, ms: evalFwd.medianMs, bytes: 2 * numel * 4 });

      const stats = batchNormStats(x, null, null, { training: true });
      const bwd = await timeGpu(
        dev,
        () => {
          batchNormBackward(x, stats, weight, dy, true, { x: true, weight: true, bias: true });
        },
        opts,
      );
      rows.push({ name: 'batchNorm2d backward (train)', shape: label, ms: bwd.medianMs, bytes: 5 * numel * 4 });

      for (const t of [x, dy, weight, bias, runningMean, runningVar, stats]) t.dispose();
      await dev.sync();
    }
  }
  return rows;
}
