// Optimiser steps over whole parameter lists (multi-tensor: a few dispatches per step whatever the tensor count):
// the task's sample student (59,723 parameters in 18 tensors) and a ResNet-18-size list (11.69M in 62 tensors).
// Bytes are the minimum traffic of each pass over the parameters (padding excluded):
//   norm 4 B/param (read g), Adam 28 (read p, g, m, v; write p, m, v), SGD+momentum 20, zeroGrad 4.
import { Tensor, type Device } from '../../src/index.js';
import { Adam, SGD } from '../../src/train/optim.js';
import { timeGpu, type Row } from '../harness.js';

type ParamList = { name: string; shapes: number[][] };

function conv(cout: number, cin: number, k: number, bias = true): number[][] {
  return bias ? [[cout, cin, k, k], [cout]] : [[cout, cin, k, k]];
}
const batchNorm = (c: number): number[][] => [[c], [c]];

/** task.md's sample student: 4 x (conv with bias, BN), linear 84 -> 11. */
const sampleStudent: ParamList = {
  name: 'sample student',
  shapes: [
    ...conv(4, 3, 3), ...batchNorm(4),
    ...conv(16, 4, 3), ...batchNorm(16),
    ...conv(64, 16, 3), ...batchNorm(64),
    ...conv(84, 64, 3), ...batchNorm(84),
    [11, 84], [11],
  ],
};

/** torchvision's resnet18 parameters (convs without bias, BN affine, fc 512 -> 1000). */
function resnet18(): ParamList {
  const shapes: number[][] = [...conv(64, 3, 7, false), ...batchNorm(64)];
  let cin = 64;
  for (const [cout, stride] of [[64, 1], [128, 2], [256, 2], [512, 2]]) {
    for (let block = 0; block < 2; block++) {
      const first = block === 0;
      shapes.push(...conv(cout, first ? cin : cout, 3, false), ...batchNorm(cout), ...conv(cout, cout, 3, false), ...batchNorm(cout));
      if (first && (stride !== 1 || cin !== cout)) shapes.push(...conv(cout, cin, 1, false), ...batchNorm(cout));
    }
    cin = cout;
  }
  shapes.push([1000, 512], [1000]);
  return { name: 'resnet18-size', shapes };
}

export async function run(dev: Device): Promise<Row[]> {
  const rows: Row[] = [];
  for (const list of [sampleStudent, resnet18()]) {
    const params = list.shapes.map((s, i) => Tensor.randn(s, { device: dev, seed: i, std: 0.1, requiresGrad: true }));
    const n = params.reduce((sum, p) => sum + p.numel, 0);
    const shape = `${n.toLocaleString('en-US')} params / ${params.length} tensors`;
    const big = n > 1e6;
    const opts = big ? { warmup: 1, repeats: 5, inner: 3 } : { warmup: 2, repeats: 7, inner: 20 };

    const adam = new Adam(params, { lr: 3e-4, weightDecay: 1e-5 });
    adam.step(); // creates the moment buffers
    rows.push({ name: 'optim adam step + clip', shape, ms: (await timeGpu(dev, () => { adam.clipGradNorm(10); adam.step(); }, opts)).medianMs, bytes: 32 * n });
    rows.push({ name: 'optim adam step', shape, ms: (await timeGpu(dev, () => adam.step(), opts)).medianMs, bytes: 28 * n });
    rows.push({ name: 'optim clip grad norm', shape, ms: (await timeGpu(dev, () => adam.clipGradNorm(10), opts)).medianMs, bytes: 4 * n });
    rows.push({ name: 'optim zero grad', shape, ms: (await timeGpu(dev, () => adam.zeroGrad(), opts)).medianMs, bytes: 4 * n });
    adam.dispose();

    const sgd = new SGD(params, { lr: 0.1, momentum: 0.9 });
    sgd.step();
    rows.push({ name: 'optim sgd momentum step', shape, ms: (await timeGpu(dev, () => sgd.step(), opts)).medianMs, bytes: 20 * n });
    sgd.dispose();
    for (const p of params) {
      p.grad?.dispose();
      p.dispose();
    }
    await dev.sync();
  }
  return rows;
}
