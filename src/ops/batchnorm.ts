// BatchNorm2d (PyTorch's F.batch_norm on NCHW input), forward and backward side by side.
//
// Training mode normalises with the batch mean and biased variance over (N, H, W) and updates the running
// statistics in place (unbiased variance); evaluation mode normalises with the running statistics. The
// per-channel reductions over N * H * W are two-pass parallel reductions (partials, then a fixed-order combine);
// see shaders/batchnorm.wgsl for the layout of the saved statistics and why they stay precise for large means.
import { record } from '../autograd/tape.js';
import { Tensor, shapeStr } from '../tensor.js';

export interface BatchNormOptions {
  training: boolean;
  /** Weight of the batch statistic in the running-average update (default 0.1). */
  momentum?: number;
  eps?: number; // default 1e-5
}

const WG = 256; // invocations of the partial kernels
const ELEMENTWISE_WG = 64; // invocations of the elementwise kernels, which run on a [ceil(HW / 64), C, N] grid
const ITEMS_PER_INVOCATION = 32; // elements each invocation of a partial kernel reduces
const CHUNK = WG * ITEMS_PER_INVOCATION; // elements per partial

interface Layout {
  batch: number;
  channels: number;
  hw: number;
  count: number; // elements per channel, N * H * W
  partials: number; // partials per channel
}

function layoutOf(x: Tensor): Layout {
  const [batch, channels, h, w] = x.shape;
  const count = batch * h * w;
  return { batch, channels, hw: h * w, count, partials: Math.max(1, Math.ceil(count / CHUNK)) };
}

function elementwiseGrid(l: Layout): [number, number, number] {
  return [Math.ceil(l.hw / ELEMENTWISE_WG), l.channels, l.batch];
}

function reduceParams(l: Layout, eps = 0, momentum = 0) {
  return { count: l.count, hw: l.hw, channels: l.channels, chunk: CHUNK, partials: l.partials, eps, momentum };
}

function checkPerChannel(name: string, t: Tensor | null, channels: number): void {
  if (t && (t.numel !== channels || t.dtype !== 'f32')) {
    throw new Error(`batchNorm2d: ${name} must be an f32 tensor of ${channels} values (one per channel), got ${t}`);
  }
}

/**
 * The statistics batchNorm2d normalises with, as a [3, C] tensor (rows: pivot, mean - pivot, 1/std). Training:
 * the batch's, and runningMean/runningVar (when given) are updated in place. Evaluation: from the running
 * statistics. Exported for the benchmarks; use batchNorm2d.
 */
export function batchNormStats(x: Tensor, runningMean: Tensor | null, runningVar: Tensor | null, options: BatchNormOptions): Tensor {
  const { training, momentum = 0.1, eps = 1e-5 } = options;
  const l = layoutOf(x);
  const dev = x.device;
  const stats = Tensor.empty([3, l.channels], { device: dev });
  if (!training) {
    dev.dispatch('batchnorm', 'stats_from_running', {
      bindings: { running_mean: runningMean!, running_var: runningVar!, stats },
      params: { channels: l.channels, eps },
      workgroups: Math.ceil(l.channels / 64),
    });
    return stats;
  }
  const partials = Tensor.empty([l.channels, l.partials, 3], { device: dev });
  dev.dispatch('batchnorm', 'stats_partials', {
    bindings: { x, partials },
    params: reduceParams(l),
    workgroups: [l.partials, l.channels],
  });
  const params = reduceParams(l, eps, momentum);
  if (runningMean && runningVar) {
    dev.dispatch('batchnorm', 'stats_finalize_update_running', {
      bindings: { x, partials_in: partials, stats, running_mean: runningMean, running_var: runningVar },
      params,
      workgroups: l.channels,
    });
  } else {
    dev.dispatch('batchnorm', 'stats_finalize', { bindings: { x, partials_in: partials, stats }, params, workgroups: l.channels });
  }
  partials.dispose();
  return stats;
}

export interface BatchNormGrads {
  gradX: Tensor | null;
  gradWeight: Tensor | null;
  gradBias: Tensor | null;
}

/**
 * Gradients of batchNorm2d given the saved statistics (from batchNormStats) and the output gradient. Exported for
 * the benchmarks; batchNorm2d records it on the tape.
 */
export function batchNormBackward(
  x: Tensor,
  stats: Tensor,
  weight: Tensor | null,
  gradOut: Tensor,
  training: boolean,
  wanted: { x: boolean; weight: boolean; bias: boolean },
): BatchNormGrads {
  const l = layoutOf(x);
  const dev = x.device;
  // Training needs the per-channel sums for dx too; evaluation only for the weight and bias gradients.
  const needSums = wanted.weight || wanted.bias || (training && wanted.x);
  let sumDyXhat: Tensor | null = null; // = grad of weight
  let sumDy: Tensor | null = null; // = grad of bias
  if (needSums) {
    const partials = Tensor.empty([l.channels, l.partials, 2], { device: dev });
    dev.dispatch('batchnorm', 'grad_partials', {
      bindings: { x, grad_out: gradOut, stats_in: stats, partials },
      params: reduceParams(l),
      workgroups: [l.partials, l.channels],
    });
    sumDyXhat = Tensor.empty([l.channels], { device: dev });
    sumDy = Tensor.empty([l.channels], { device: dev });
    dev.dispatch('batchnorm', 'grad_finalize', {
      bindings: { partials_in: partials, grad_weight: sumDyXhat, grad_bias: sumDy },
      params: reduceParams(l),
      workgroups: l.channels,
    });
    partials.dispose();
  }
  let gradX: Tensor | null = null;
  if (wanted.x) {
    gradX = Tensor.empty(x.shape, { device: dev });
    // Unused bindings (no weight; evaluation mode's sums) are filled with `stats`, which the kernel never reads then.
    dev.dispatch('batchnorm', 'grad_input', {
      bindings: {
        x,
        grad_out: gradOut,
        stats_in: stats,
        weight: weight ?? stats,
        sum_dy: sumDy ?? stats,
        sum_dy_xhat: sumDyXhat ?? stats,
        out: gradX,
      },
      params: {
        n: x.numel,
        hw: l.hw,
        channels: l.channels,
        count: l.count,
        has_weight: weight ? 1 : 0,
        has_bias: 0,
        training: training ? 1 : 0,
      },
      workgroups: elementwiseGrid(l),
    });
  }
  if (!wanted.weight) sumDyXhat?.dispose();
  if (!wanted.bias) sumDy?.dispose();
  return { gradX, gradWeight: wanted.weight ? sumDyXhat : null, gradBias: wanted.bias ? sumDy : null };
}

/**
 * F.batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps) for x [N, C, H, W].
 * runningMean/runningVar [C] are required in evaluation mode; in training mode they are optional and, when given,
 * updated in place on the GPU. weight (gamma) and bias (beta) [C] are optional (identity affine map).
 */
export function batchNorm2d(
  x: Tensor,
  runningMean: Tensor | null,
  runningVar: Tensor | null,
  weight: Tensor | null,
  bias: Tensor | null,
  options: BatchNormOptions,
): Tensor {
  if (x.ndim !== 4) throw new Error(`batchNorm2d: expected input [N, C, H, W], got ${shapeStr(x.shape)}`);
  const l = layoutOf(x);
  checkPerChannel('runningMean', runningMean, l.channels);
  checkPerChannel('runningVar', runningVar, l.channels);
  checkPerChannel('weight', weight, l.channels);
  checkPerChannel('bias', bias, l.channels);
  if (!runningMean !== !runningVar) throw new Error('batchNorm2d: give both runningMean and runningVar, or neither');
  if (!options.training && !runningMean) throw new Error('batchNorm2d: runningMean and runningVar are required in evaluation mode');
  if (options.training && l.count < 2) {
    throw new Error(`batchNorm2d: expected more than 1 value per channel when training, got input ${shapeStr(x.shape)}`);
  }
  const out = Tensor.empty(x.shape, { device: x.device });
  if (x.numel === 0) return out;

  const stats = batchNormStats(x, runningMean, runningVar, options);
  // Unused weight/bias bindings are filled with `stats`, which the kernel never reads then.
  x.device.dispatch('batchnorm', 'normalize', {
    bindings: { x, stats_in: stats, weight: weight ?? stats, bias: bias ?? stats, out },
    params: {
      n: x.numel,
      hw: l.hw,
      channels: l.channels,
      count: l.count,
      has_weight: weight ? 1 : 0,
      has_bias: bias ? 1 : 0,
      training: options.training ? 1 : 0,
    },
    workgroups: elementwiseGrid(l),
  });

  const inputs = [x, ...(weight ? [weight] : []), ...(bias ? [bias] : [])];
  record(out, 'batch_norm', inputs, (g) => {
    const grads = batchNormBackward(x, stats, weight, g, options.training, {
      x: x.requiresGrad,
      weight: !!weight?.requiresGrad,
      bias: !!bias?.requiresGrad,
    });
    stats.dispose(); // the graph is used once
    return [grads.gradX, ...(weight ? [grads.gradWeight] : []), ...(bias ? [grads.gradBias] : [])];
  });
  if (!out.node) stats.dispose(); // nothing will run the backward
  return out;
}
