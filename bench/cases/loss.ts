// Loss kernels: cross-entropy, Hinton KD (kdKL) and Decoupled KD at the classifier-head shapes [64, 11] (batch 64,
// Food-11) and [128, 100], and the FitNet hint loss (mse) on a [64, 32, 28, 28] feature map. Forward and backward
// are timed separately: the backward times the op's recorded backward closure alone (one fused dispatch per
// gradient), not the forward again.
// Counting convention: one flop per add, mul, max or exp; bytes = the distinct tensor bytes a pass must read and
// write (logits read once even though a row is walked two or three times: it stays in cache).
import type { Device } from '../../src/gpu/device.js';
import { Tensor, noGrad, rng } from '../../src/index.js';
import { crossEntropy, dkdLoss, kdKL, mseLoss } from '../../src/ops/loss.js';
import { timeGpu, type Row } from '../harness.js';

function labelsTensor(rows: number, k: number, dev: Device): Tensor {
  const next = rng(7);
  return Tensor.fromArray(Int32Array.from({ length: rows }, () => Math.floor(next() * k)), [rows], { dtype: 'i32', device: dev });
}

/** Times forward (no tape) and backward (the recorded closure alone) of one loss. */
async function timeLoss(
  dev: Device,
  name: string,
  shape: number[],
  forward: () => Tensor,
  cost: { fwdFlops: number; fwdBytes: number; bwdFlops: number; bwdBytes: number; note?: string },
): Promise<Row[]> {
  const shapeText = `[${shape.join(', ')}]`;
  const fwd = await timeGpu(dev, () => noGrad(forward));
  const loss = forward(); // recorded once; its backward closure is then timed on its own
  const seed = Tensor.ones([], { device: dev });
  const bwd = await timeGpu(dev, () => loss.node!.backward(seed));
  loss.dispose();
  seed.dispose();
  return [
    { name: `${name} forward`, shape: shapeText, ms: fwd.medianMs, flops: cost.fwdFlops, bytes: cost.fwdBytes, note: cost.note },
    { name: `${name} backward`, shape: shapeText, ms: bwd.medianMs, flops: cost.bwdFlops, bytes: cost.bwdBytes, note: cost.note },
  ];
}

export async function run(dev: Device): Promise<Row[]> {
  const rows: Row[] = [];
  for (const [b, k] of [
    [64, 11],
    [128, 100],
  ]) {
    const student = Tensor.randn([b, k], { seed: 1, std: 2, device: dev, requiresGrad: true });
    const teacher = Tensor.randn([b, k], { seed: 2, std: 4, device: dev });
    const labels = labelsTensor(b, k, dev);
    const n = b * k;
    rows.push(
      ...(await timeLoss(dev, 'crossEntropy', [b, k], () => crossEntropy(student, labels, { labelSmoothing: 0.1 }), {
        fwdFlops: 5 * n,
        fwdBytes: 4 * (n + b),
        bwdFlops: 9 * n,
        bwdBytes: 4 * (2 * n + b),
        note: 'label smoothing 0.1, mean',
      })),
      ...(await timeLoss(dev, 'kdKL', [b, k], () => kdKL(student, teacher, 4), {
        fwdFlops: 16 * n,
        fwdBytes: 4 * 2 * n,
        bwdFlops: 16 * n,
        bwdBytes: 4 * 3 * n,
        note: 'T=4, batchmean',
      })),
      ...(await timeLoss(dev, 'dkdLoss', [b, k], () => dkdLoss(student, teacher, labels), {
        fwdFlops: 24 * n,
        fwdBytes: 4 * (2 * n + b),
        bwdFlops: 24 * n,
        bwdBytes: 4 * (3 * n + b),
        note: 'alpha 1, beta 8, T 4',
      })),
    );
    for (const t of [student, teacher, labels]) t.dispose();
  }

  const hintShape = [64, 32, 28, 28];
  const regressed = Tensor.randn(hintShape, { seed: 3, device: dev, requiresGrad: true });
  const hint = Tensor.randn(hintShape, { seed: 4, device: dev });
  const n = regressed.numel;
  rows.push(
    ...(await timeLoss(dev, 'mseLoss', hintShape, () => mseLoss(regressed, hint), {
      fwdFlops: 3 * n,
      fwdBytes: 4 * 2 * n,
      bwdFlops: 3 * n,
      bwdBytes: 4 * 3 * n,
      note: 'mean; backward: input side (the FitNet regressor output)',
    })),
  );
  regressed.dispose();
  hint.dispose();
  return rows;
}
