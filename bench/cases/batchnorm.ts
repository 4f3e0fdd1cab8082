// BatchNorm2d benchmarks on the depthwise-separable student's activations at batch 64: 32 channels at S, 64 at
// S/2, 128 at S/4, with S = 28 (28x28 input), 32 (64x64 input, stride-2 stem) and 112 (224x224 input). Rows for
// the plain op and the fused ReLU (batchNorm2d(..., { relu: true })), plus relu alone on the same tensor as the
// yardstick (one read, one write per element).
// GB/s counts the kernels' real traffic: the training forward reads x twice (statistics, then normalise) and
// writes y; evaluation reads x once; the training backward reads x and dy twice (per-channel sums, then dx; the
// fused ReLU's mask is recomputed from x), and writes dx. The note names the path: `vec4` where
// H * W % 4 == 0 (4 values per load), else `scalar`.
import { Tensor, type Device } from '../../src/index.js';
import { relu } from '../../src/ops/activation.js';
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
      const opts = numel > 4_000_000 ? { warmup: 1, repeats: 3, inner: 2 } : {};
      const x = Tensor.rand(shape, { device: dev, seed: 1, low: -2, high: 2 });
      const dy = Tensor.rand(shape, { device: dev, seed: 2, low: -1, high: 1 });
      const weight = Tensor.rand([channels], { device: dev, seed: 3 });
      const bias = Tensor.rand([channels], { device: dev, seed: 4, low: -0.5, high: 0.5 });
      const runningMean = Tensor.zeros([channels], { device: dev });
      const runningVar = Tensor.ones([channels], { device: dev });
      const label = `[${shape.join(', ')}] (input ${input})`;
      const path = (size * size) % 4 === 0 ? 'vec4' : 'scalar';
      const bytes = (perElement: number) => perElement * numel * 4;

      const reluTime = await timeGpu(dev, () => void relu(x), opts);
      rows.push({ name: 'relu forward (yardstick)', shape: label, ms: reluTime.medianMs, bytes: bytes(2) });

      for (const fused of [false, true]) {
        const name = fused ? 'batchNorm2d+relu' : 'batchNorm2d';
        const time = async (fn: () => void) => (await timeGpu(dev, fn, opts)).medianMs;
        const note = (ms: number) => `${path}, ${(ms / reluTime.medianMs).toFixed(1)}x relu`;

        const fwd = await time(() => void batchNorm2d(x, runningMean, runningVar, weight, bias, { training: true, relu: fused }));
        rows.push({ name: `${name} forward (train)`, shape: label, ms: fwd, bytes: bytes(3), note: note(fwd) });

        const evalFwd = await time(() => void batchNorm2d(x, runningMean, runningVar, weight, bias, { training: false, relu: fused }));
        rows.push({ name: `${name} forward (eval)`, shape: label, ms: evalFwd, bytes: bytes(2), note: note(evalFwd) });

        const stats = batchNormStats(x, null, null, weight, bias, { training: true });
        const options = { training: true, relu: fused };
        const bwd = await time(() => void batchNormBackward(x, stats, dy, options, { x: true, weight: true, bias: true }));
        rows.push({ name: `${name} backward (train)`, shape: label, ms: bwd, bytes: bytes(5), note: note(bwd) });
        stats.dispose();
      }

      for (const t of [x, dy, weight, bias, runningMean, runningVar]) t.dispose();
      await dev.sync();
    }
  }
  return rows;
}
