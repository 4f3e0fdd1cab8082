// Pooling benchmarks at batch 64 on the student's activations (S = 28, 32, 112 for 28x28, 64x64, 224x224 inputs):
// max-pool 2x2 stride 2 on [64, 32, S, S], and the global average pool on the last block's [64, 256, S/4, S/4].
// GB/s counts the kernels' real traffic (input read once, output written; the arg-max indices where saved).
import { Tensor, type Device } from '../../src/index.js';
import { adaptiveAvgPool2d, maxPool2dBackward, maxPool2dForward } from '../../src/ops/pool.js';
import { timeGpu, type Row } from '../harness.js';

const BATCH = 64;
const SIZES = [
  { input: 28, s: 28 },
  { input: 64, s: 32 },
  { input: 224, s: 112 },
];

function optsFor(numel: number) {
  return numel > 4_000_000 ? { warmup: 1, repeats: 3, inner: 1 } : {};
}

export async function run(dev: Device): Promise<Row[]> {
  const rows: Row[] = [];
  for (const { input, s } of SIZES) {
    // Max pool 2x2, stride 2.
    {
      const shape = [BATCH, 32, s, s];
      const numel = shape.reduce((a, b) => a * b, 1);
      const outNumel = numel / 4;
      const pool = { kernelSize: 2, stride: 2 };
      const x = Tensor.rand(shape, { device: dev, seed: 1 });
      const label = `[${shape.join(', ')}] (input ${input})`;
      const opts = optsFor(numel);
      const inference = await timeGpu(dev, () => void maxPool2dForward(x, pool, false), opts);
      rows.push({ name: 'maxPool2d 2x2 forward', shape: label, ms: inference.medianMs, bytes: (numel + outNumel) * 4 });
      const training = await timeGpu(dev, () => void maxPool2dForward(x, pool, true), opts);
      rows.push({ name: 'maxPool2d 2x2 forward + argmax', shape: label, ms: training.medianMs, bytes: (numel + 2 * outNumel) * 4 });
      const { out, argmax } = maxPool2dForward(x, pool, true);
      const dy = Tensor.rand(out.shape, { device: dev, seed: 2 });
      const bwd = await timeGpu(dev, () => void maxPool2dBackward(dy, argmax!, x, pool), opts);
      rows.push({ name: 'maxPool2d 2x2 backward', shape: label, ms: bwd.medianMs, bytes: (numel + 2 * outNumel) * 4 });
      for (const t of [x, out, argmax!, dy]) t.dispose();
    }
    // Global average pool.
    {
      const shape = [BATCH, 256, s / 4, s / 4];
      const numel = shape.reduce((a, b) => a * b, 1);
      const planes = BATCH * 256;
      const x = Tensor.rand(shape, { device: dev, seed: 3, requiresGrad: true });
      const label = `[${shape.join(', ')}] (input ${input})`;
      const opts = optsFor(numel);
      const fwd = await timeGpu(dev, () => void adaptiveAvgPool2d(x, 1), opts);
      rows.push({ name: 'global avg pool forward', shape: label, ms: fwd.medianMs, bytes: (numel + planes) * 4 });
      // The recorded backward closure does not consume anything, so it can be timed on its own repeatedly.
      const y = adaptiveAvgPool2d(x, 1);
      const node = y.node!;
      const dy = Tensor.rand(y.shape, { device: dev, seed: 4 });
      const bwd = await timeGpu(dev, () => void node.backward(dy), opts);
      rows.push({ name: 'global avg pool backward', shape: label, ms: bwd.medianMs, bytes: (numel + planes) * 4 });
      for (const t of [x, y, dy]) t.dispose();
    }
    await dev.sync();
  }
  return rows;
}
