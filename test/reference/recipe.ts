// Float64 references of the published formulas behind the recipe options (sources in docs/kd.md), written as the
// sources write them, independently of wgkd's GPU formulation:
// - the RKD authors' distance loss (their _pdist: ||e_i||^2 + ||e_j||^2 - 2 e_i.e_j clamped at eps, square root,
//   diagonal 0; psi = d / mean(d[d > 0]); smooth_l1_loss, mean);
// - mdistiller's DKD warm-up factor min(epoch / warmup, 1), epochs counted from 1;
// - FitNet's regressor heads after the convolution: ConvReg's BN + ReLU, wgkd's BN; then F.mse_loss (mean).
import { batchNorm2d } from './batchnorm.js';
import { pointwise } from './loss.js';
import type { Shape } from './common.js';

/**
 * The RKD authors' pdist (squared = False) for e [batch, d]. `clamp` null: the pdist without the clamp,
 * computed from the differences so duplicated rows are exactly 0 (what a mean over d > 0 would then drop).
 */
export function authorsPdist(e: Float64Array, batch: number, d: number, clamp: number | null = 1e-12): Float64Array {
  const out = new Float64Array(batch * batch);
  const sq = (i: number) => {
    let s = 0;
    for (let t = 0; t < d; t++) s += e[i * d + t] ** 2;
    return s;
  };
  for (let i = 0; i < batch; i++) {
    for (let j = 0; j < batch; j++) {
      if (i === j) continue; // res[range(B), range(B)] = 0
      if (clamp === null) {
        let s = 0;
        for (let t = 0; t < d; t++) s += (e[i * d + t] - e[j * d + t]) ** 2;
        out[i * batch + j] = Math.sqrt(s);
      } else {
        let dot = 0;
        for (let t = 0; t < d; t++) dot += e[i * d + t] * e[j * d + t];
        out[i * batch + j] = Math.sqrt(Math.max(sq(i) + sq(j) - 2 * dot, clamp));
      }
    }
  }
  return out;
}

/** psi = d / mean(d[d > 0]), the authors' RkdDistance normalisation. */
export function authorsRkdPsi(e: Float64Array, batch: number, d: number, clamp: number | null = 1e-12): Float64Array {
  const dist = authorsPdist(e, batch, d, clamp);
  const positive = Array.from(dist).filter((v) => v > 0);
  const mean = positive.reduce((s, v) => s + v, 0) / positive.length;
  return dist.map((v) => v / mean);
}

/** smooth_l1_loss(a, b), beta 1, reduction mean. */
export function smoothL1Mean(a: Float64Array, b: Float64Array): number {
  return pointwise('smoothL1', a, b, 'mean', 1, 1)[0];
}

/** The authors' RKD distance loss: smooth_l1(psi_s, psi_t), each side normalised by its own mean over d > 0. */
export function authorsRkdDistanceLoss(s: Float64Array, t: Float64Array, batch: number, ds: number, dt: number, clamp: number | null = 1e-12): number {
  return smoothL1Mean(authorsRkdPsi(s, batch, ds, clamp), authorsRkdPsi(t, batch, dt, clamp));
}

/** mdistiller's DKD warm-up: the DKD loss times min(epoch / warmup, 1), epoch counted from 1. */
export function dkdWarmupAsPublished(epochFromOne: number, warmup: number): number {
  return Math.min(epochFromOne / warmup, 1.0);
}

/**
 * A FitNet hint loss after the regressor's convolution: F.mse_loss(head(conv), hint) with head = BN (training
 * mode: batch statistics, biased variance, eps 1e-5, affine weight 1 and bias 0 as initialised) followed by ReLU
 * for ConvReg, or BN alone for wgkd's conv-bn regressor.
 */
export function hintLossAfterConv(conv: Float64Array, convShape: Shape, hint: Float64Array, relu: boolean): number {
  const head = batchNorm2d(conv, convShape, { training: true, eps: 1e-5, relu });
  return pointwise('mse', head, hint, 'mean', 1)[0];
}
