// Float64 references for BatchNorm2d (PyTorch semantics), NCHW. Plain loops, two-pass statistics. The fused ReLU
// option is the composition F.relu(F.batch_norm(...)): relu of the forward, and the output gradient masked by
// (output > 0) before the batch norm's backward.
import type { Shape } from './common.js';

export interface BatchNormRefOptions {
  training: boolean;
  eps?: number;
  momentum?: number;
  /** Evaluation mode's statistics. */
  runningMean?: Float64Array;
  runningVar?: Float64Array;
  /** Optional affine parameters (absent: 1 and 0). */
  weight?: Float64Array;
  bias?: Float64Array;
  /** Fused ReLU: relu(batchNorm2d(x)). */
  relu?: boolean;
}

/** Batch mean and biased variance per channel over (N, H, W). */
export function batchStats(x: Float64Array, shape: Shape): { mean: Float64Array; variance: Float64Array; count: number } {
  const [n, c, h, w] = shape;
  const hw = h * w;
  const count = n * hw;
  const mean = new Float64Array(c);
  const variance = new Float64Array(c);
  for (let ch = 0; ch < c; ch++) {
    let s = 0;
    for (let b = 0; b < n; b++) for (let k = 0; k < hw; k++) s += x[(b * c + ch) * hw + k];
    mean[ch] = s / count;
    let ss = 0;
    for (let b = 0; b < n; b++) {
      for (let k = 0; k < hw; k++) {
        const d = x[(b * c + ch) * hw + k] - mean[ch];
        ss += d * d;
      }
    }
    variance[ch] = ss / count;
  }
  return { mean, variance, count };
}

/** The mean and 1/std the op normalises with. */
function normalisation(x: Float64Array, shape: Shape, o: BatchNormRefOptions): { mean: Float64Array; invStd: Float64Array } {
  const eps = o.eps ?? 1e-5;
  const { mean, variance } = o.training ? batchStats(x, shape) : { mean: o.runningMean!, variance: o.runningVar! };
  return { mean, invStd: variance.map((v) => 1 / Math.sqrt(v + eps)) };
}

export function batchNorm2d(x: Float64Array, shape: Shape, o: BatchNormRefOptions): Float64Array {
  const [n, c, h, w] = shape;
  const hw = h * w;
  const { mean, invStd } = normalisation(x, shape, o);
  const out = new Float64Array(x.length);
  for (let b = 0; b < n; b++) {
    for (let ch = 0; ch < c; ch++) {
      const gamma = o.weight ? o.weight[ch] : 1;
      const beta = o.bias ? o.bias[ch] : 0;
      for (let k = 0; k < hw; k++) {
        const i = (b * c + ch) * hw + k;
        out[i] = (x[i] - mean[ch]) * invStd[ch] * gamma + beta;
      }
    }
  }
  if (o.relu) for (let i = 0; i < out.length; i++) out[i] = Math.max(out[i], 0);
  return out;
}

/**
 * Gradients of sum(batchNorm2d(x) * g). Training: the batch statistics depend on x,
 * dx = gamma * invStd * (g - mean(g) - xhat * mean(g * xhat)). Evaluation: dx = gamma * invStd * g.
 * Either way dweight = sum(g * xhat), dbias = sum(g) per channel. With the fused ReLU, g is first masked by
 * (output > 0), relu's backward.
 */
export function batchNorm2dBackward(
  x: Float64Array,
  shape: Shape,
  gOut: Float64Array,
  o: BatchNormRefOptions,
): { x: Float64Array; weight: Float64Array; bias: Float64Array } {
  const [n, c, h, w] = shape;
  const hw = h * w;
  const count = n * hw;
  const { mean, invStd } = normalisation(x, shape, o);
  const out = o.relu ? batchNorm2d(x, shape, o) : null;
  const g = out ? gOut.map((gi, i) => (out[i] > 0 ? gi : 0)) : gOut;
  const dx = new Float64Array(x.length);
  const dWeight = new Float64Array(c);
  const dBias = new Float64Array(c);
  for (let ch = 0; ch < c; ch++) {
    for (let b = 0; b < n; b++) {
      for (let k = 0; k < hw; k++) {
        const i = (b * c + ch) * hw + k;
        dBias[ch] += g[i];
        dWeight[ch] += g[i] * (x[i] - mean[ch]) * invStd[ch];
      }
    }
    const gamma = o.weight ? o.weight[ch] : 1;
    for (let b = 0; b < n; b++) {
      for (let k = 0; k < hw; k++) {
        const i = (b * c + ch) * hw + k;
        const xhat = (x[i] - mean[ch]) * invStd[ch];
        const centred = o.training ? g[i] - dBias[ch] / count - (xhat * dWeight[ch]) / count : g[i];
        dx[i] = gamma * invStd[ch] * centred;
      }
    }
  }
  return { x: dx, weight: dWeight, bias: dBias };
}

/** Running statistics after one training step: (1 - m) * old + m * batch, with the unbiased batch variance. */
export function updatedRunningStats(
  x: Float64Array,
  shape: Shape,
  runningMean: Float64Array,
  runningVar: Float64Array,
  momentum = 0.1,
): { mean: Float64Array; variance: Float64Array } {
  const { mean, variance, count } = batchStats(x, shape);
  return {
    mean: runningMean.map((r, ch) => (1 - momentum) * r + momentum * mean[ch]),
    variance: runningVar.map((r, ch) => (1 - momentum) * r + momentum * ((variance[ch] * count) / (count - 1))),
  };
}
