// BatchNorm2d (PyTorch's F.batch_norm on NCHW input), forward and backward side by side, with an optional fused
// ReLU (F.relu(F.batch_norm(...)) in the same kernels), and batchNormReluMaxPool2d: F.max_pool2d(F.relu(
// F.batch_norm(...)), 2) without the full-size activation or an arg-max (the backward recomputes the winners).
//
// Training mode normalises with the batch mean and biased variance over (N, H, W) and updates the running
// statistics in place (unbiased variance); evaluation mode normalises with the running statistics. Every
// per-element pass runs one workgroup per (chunk of a channel), so per-channel constants are loaded once per
// invocation; the per-channel reductions over N * H * W are two-pass parallel reductions (partials, then a
// fixed-order combine, one invocation per channel). See shaders/batchnorm.wgsl for the layout of the saved statistics and why they stay
// precise for large means.
import { record } from '../autograd/tape.js';
import { Tensor, shapeStr } from '../tensor.js';

export interface BatchNormOptions {
  training: boolean;
  /** Weight of the batch statistic in the running-average update (default 0.1). */
  momentum?: number;
  eps?: number; // default 1e-5
  /**
   * Fused ReLU (not a PyTorch option): returns max(batch_norm(x), 0), exactly F.relu(F.batch_norm(...)), in the
   * same kernel; the backward masks the output gradient with (output > 0) as relu's does. Default false.
   */
  relu?: boolean;
}

const CHUNK = 8192; // elements of one channel each workgroup of a per-element pass covers (a multiple of 4)
const WG = 64; // invocations of a per-element pass (WG in the shader); each writes its own reduction partial

interface Layout {
  batch: number;
  channels: number;
  hw: number;
  count: number; // elements per channel, N * H * W
  partials: number; // workgroups per channel (per group of 4 channels on the grouped path)
  /** How the per-element passes load: 4 values of one channel (`_vec4` entries, H * W % 4 == 0), 4 values across
   * the planes of 4 consecutive channels (`_grouped`, otherwise when C % 4 == 0), or one value. */
  path: 'vec4' | 'grouped' | 'scalar';
}

function layoutOf(x: Tensor): Layout {
  const [batch, channels, h, w] = x.shape;
  const count = batch * h * w;
  // Grouped also where a channel is smaller than a workgroup's chunk (small planes): a workgroup then covers four.
  const grouped = channels % 4 === 0 && ((h * w) % 4 !== 0 || count < CHUNK);
  const path = grouped ? 'grouped' : (h * w) % 4 === 0 ? 'vec4' : 'scalar';
  // A grouped workgroup covers whole batches of a group's blocks (4 * H * W elements each), at most one batch.
  const partials = path === 'grouped' ? Math.min(batch, Math.ceil((count * 4) / CHUNK)) : Math.ceil(count / CHUNK);
  return { batch, channels, hw: h * w, count, partials: Math.max(1, partials), path };
}

// The vec4 and grouped entries see the same tensors through these bindings.
const VEC4_BINDING: Record<string, string> = { x: 'x4', grad_out: 'grad_out4', out: 'out4' };

/** Arithmetic per element of each per-element pass, as the scalar kernel writes it (ReLU's max or mask adds one;
 * evaluation-mode grad_input is a single multiply): the profiler's FLOP count. */
const FLOPS_PER_ELEMENT: Record<string, number> = {
  stats_partials: 3, // d = x - pivot, then the running sums of d and of d * d
  normalize: 4, // ((x - pivot) - offset) * scale + shift
  grad_partials: 5, // sum += g; sum_gx += g * ((x - pivot) - offset)
  grad_input: 6, // scale * g + k_centred * ((x - pivot) - offset) + k_const
};

function passFlops(l: Layout, entry: string, variant?: Record<string, number>): number {
  const perElement = entry === 'grad_input' && variant?.TRAINING === 0 ? 1 : FLOPS_PER_ELEMENT[entry];
  return l.count * l.channels * (perElement + (variant?.RELU ? 1 : 0));
}

/**
 * Dispatches a per-element pass (`entry`, `entry_vec4` or `entry_grouped`) on the [partials, channels (or groups of
 * 4)] grid. `variant` sets the entry's pipeline constants (RELU, TRAINING): 0 or 1.
 */
function dispatchChunked(l: Layout, entry: string, bindings: Record<string, Tensor>, variant?: Record<string, number>): void {
  const named = l.path === 'scalar' ? bindings : Object.fromEntries(Object.entries(bindings).map(([k, t]) => [VEC4_BINDING[k] ?? k, t]));
  const dev = bindings.x.device;
  // Units: an element, a vec4 of a plane (H * W / 4 per plane), or (grouped) a batch of a group's blocks.
  const grid = {
    scalar: { hw: l.hw, channels: l.channels, count: l.count, chunk: CHUNK },
    vec4: { hw: l.hw / 4, channels: l.channels, count: l.count / 4, chunk: CHUNK / 4 },
    grouped: { hw: l.hw, channels: l.channels / 4, count: l.batch, chunk: Math.ceil(l.batch / l.partials) }, // in batches
  }[l.path];
  dev.dispatch('batchnorm', l.path === 'scalar' ? entry : `${entry}_${l.path}`, {
    bindings: named,
    params: { ...grid, partials: l.partials },
    workgroups: [l.partials, grid.channels],
    constants: variant,
    cost: { flops: passFlops(l, entry, variant) },
  });
}

function perChannelParams(l: Layout, weight: Tensor | null, bias: Tensor | null, eps = 0, momentum = 0) {
  return {
    channels: l.channels,
    hw: l.hw,
    count: l.count,
    partials: l.partials,
    has_weight: weight ? 1 : 0,
    has_bias: bias ? 1 : 0,
    eps,
    momentum,
  };
}

function checkPerChannel(op: string, name: string, t: Tensor | null, channels: number): void {
  if (t && (t.numel !== channels || t.dtype !== 'f32')) {
    throw new Error(`${op}: ${name} must be an f32 tensor of ${channels} values (one per channel), got ${t}`);
  }
}

function checkBatchNormArgs(
  op: string,
  x: Tensor,
  runningMean: Tensor | null,
  runningVar: Tensor | null,
  weight: Tensor | null,
  bias: Tensor | null,
  options: { training: boolean },
): void {
  if (x.ndim !== 4) throw new Error(`${op}: expected input [N, C, H, W], got ${shapeStr(x.shape)}`);
  const l = layoutOf(x);
  checkPerChannel(op, 'runningMean', runningMean, l.channels);
  checkPerChannel(op, 'runningVar', runningVar, l.channels);
  checkPerChannel(op, 'weight', weight, l.channels);
  checkPerChannel(op, 'bias', bias, l.channels);
  if (!runningMean !== !runningVar) throw new Error(`${op}: give both runningMean and runningVar, or neither`);
  if (!options.training && !runningMean) throw new Error(`${op}: runningMean and runningVar are required in evaluation mode`);
  if (options.training && l.count < 2) {
    throw new Error(`${op}: expected more than 1 value per channel when training, got input ${shapeStr(x.shape)}`);
  }
}

/**
 * The per-channel constants batchNorm2d normalises with, as a [5, C] tensor (rows: pivot, mean - pivot, 1/std,
 * scale = weight/std, shift = bias; see shaders/batchnorm.wgsl). Training: the batch's statistics, and
 * runningMean/runningVar (when given) are updated in place. Evaluation: from the running statistics. Exported for
 * the benchmarks; use batchNorm2d.
 */
export function batchNormStats(
  x: Tensor,
  runningMean: Tensor | null,
  runningVar: Tensor | null,
  weight: Tensor | null,
  bias: Tensor | null,
  options: BatchNormOptions,
): Tensor {
  const { training, momentum = 0.1, eps = 1e-5 } = options;
  const l = layoutOf(x);
  const dev = x.device;
  const stats = Tensor.empty([5, l.channels], { device: dev });
  // Absent weight/bias bindings are filled with x, which the kernels never read through them then.
  const affine = { weight: weight ?? x, bias: bias ?? x };
  const params = perChannelParams(l, weight, bias, eps, momentum);
  if (!training) {
    dev.dispatch('batchnorm', 'stats_from_running', {
      bindings: { running_mean: runningMean!, running_var: runningVar!, ...affine, stats },
      params,
      workgroups: Math.ceil(l.channels / 64),
    });
    return stats;
  }
  const partials = Tensor.empty([l.channels, l.partials * WG, 3], { device: dev });
  dispatchChunked(l, 'stats_partials', { x, partials });
  // The finalize pass reads one pivot per channel through x, not all of x.
  const finalizeCost = { bytes: partials.byteLength + stats.byteLength + 4 * 5 * l.channels };
  if (runningMean && runningVar) {
    dev.dispatch('batchnorm', 'stats_finalize_update_running', {
      bindings: { x, partials_in: partials, ...affine, stats, running_mean: runningMean, running_var: runningVar },
      params,
      workgroups: Math.ceil(l.channels / 64),
      cost: finalizeCost,
    });
  } else {
    dev.dispatch('batchnorm', 'stats_finalize', { bindings: { x, partials_in: partials, ...affine, stats }, params, workgroups: Math.ceil(l.channels / 64), cost: finalizeCost });
  }
  partials.dispose();
  return stats;
}

/** y = (x - mean) / std * weight + bias (and max(y, 0) with relu) from the per-channel constants of batchNormStats. */
export function batchNormApply(x: Tensor, stats: Tensor, relu = false): Tensor {
  const out = Tensor.empty(x.shape, { device: x.device });
  dispatchChunked(layoutOf(x), 'normalize', { x, stats_in: stats, out }, { RELU: relu ? 1 : 0 });
  return out;
}

export interface BatchNormGrads {
  gradX: Tensor | null;
  gradWeight: Tensor | null;
  gradBias: Tensor | null;
}

/**
 * Gradients of batchNorm2d given the per-channel constants (from batchNormStats) and the output gradient (with the
 * fused ReLU, the mask is recomputed from x). Exported for the benchmarks; batchNorm2d records it on the tape.
 */
export function batchNormBackward(
  x: Tensor,
  stats: Tensor,
  gradOut: Tensor,
  options: { training: boolean; relu?: boolean },
  wanted: { x: boolean; weight: boolean; bias: boolean },
): BatchNormGrads {
  const l = layoutOf(x);
  const dev = x.device;
  const { training, relu = false } = options;
  const common = { x, grad_out: gradOut, stats_in: stats };
  // Training needs the per-channel sums for dx too; evaluation only for the weight and bias gradients.
  const needSums = wanted.weight || wanted.bias || (training && wanted.x);
  let gradWeight: Tensor | null = null; // = sum of g * x_hat
  let gradBias: Tensor | null = null; // = sum of g
  let dxCoef: Tensor | null = null;
  if (needSums) {
    const partials = Tensor.empty([l.channels, l.partials * WG, 2], { device: dev });
    dispatchChunked(l, 'grad_partials', { ...common, partials }, { RELU: relu ? 1 : 0 });
    ({ gradWeight, gradBias, dxCoef } = finalizeGradSums(partials, stats, perChannelParams(l, null, null)));
  }
  let gradX: Tensor | null = null;
  if (wanted.x) {
    gradX = Tensor.empty(x.shape, { device: dev });
    // Evaluation mode never reads dx_coef_in (filled with stats then).
    dispatchChunked(l, 'grad_input', { ...common, dx_coef_in: dxCoef ?? stats, out: gradX }, {
      RELU: relu ? 1 : 0,
      TRAINING: training ? 1 : 0,
    });
  }
  dxCoef?.dispose();
  return wantedGrads(gradX, gradWeight, gradBias, wanted);
}

/** grad_finalize: the weight and bias gradients and dx's per-channel coefficients from the sums' partials
 * (disposed here). */
function finalizeGradSums(partials: Tensor, stats: Tensor, params: ReturnType<typeof perChannelParams>): { gradWeight: Tensor; gradBias: Tensor; dxCoef: Tensor } {
  const dev = partials.device;
  const channels = params.channels;
  const gradWeight = Tensor.empty([channels], { device: dev });
  const gradBias = Tensor.empty([channels], { device: dev });
  const dxCoef = Tensor.empty([2, channels], { device: dev });
  dev.dispatch('batchnorm', 'grad_finalize', {
    bindings: { partials_in: partials, stats_in: stats, grad_weight: gradWeight, grad_bias: gradBias, dx_coef: dxCoef },
    params,
    workgroups: Math.ceil(channels / 64),
  });
  partials.dispose();
  return { gradWeight, gradBias, dxCoef };
}

/** The gradients asked for; the others are disposed. */
function wantedGrads(gradX: Tensor | null, gradWeight: Tensor | null, gradBias: Tensor | null, wanted: { weight: boolean; bias: boolean }): BatchNormGrads {
  if (!wanted.weight) gradWeight?.dispose();
  if (!wanted.bias) gradBias?.dispose();
  return { gradX, gradWeight: wanted.weight ? gradWeight : null, gradBias: wanted.bias ? gradBias : null };
}

/**
 * F.batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps) for x [N, C, H, W], or with
 * options.relu F.relu(F.batch_norm(...)) fused. runningMean/runningVar [C] are required in evaluation mode; in
 * training mode they are optional and, when given, updated in place on the GPU. weight (gamma) and bias (beta) [C]
 * are optional (identity affine map).
 */
export function batchNorm2d(
  x: Tensor,
  runningMean: Tensor | null,
  runningVar: Tensor | null,
  weight: Tensor | null,
  bias: Tensor | null,
  options: BatchNormOptions,
): Tensor {
  checkBatchNormArgs('batchNorm2d', x, runningMean, runningVar, weight, bias, options);
  if (x.numel === 0) return Tensor.empty(x.shape, { device: x.device });

  const stats = batchNormStats(x, runningMean, runningVar, weight, bias, options);
  const out = batchNormApply(x, stats, options.relu);

  const inputs = [x, ...(weight ? [weight] : []), ...(bias ? [bias] : [])];
  record(
    out,
    options.relu ? 'batch_norm_relu' : 'batch_norm',
    inputs,
    (g) => {
      const grads = batchNormBackward(x, stats, g, options, {
        x: x.requiresGrad,
        weight: !!weight?.requiresGrad,
        bias: !!bias?.requiresGrad,
      });
      stats.dispose(); // the graph is used once
      return [grads.gradX, ...(weight ? [grads.gradWeight] : []), ...(bias ? [grads.gradBias] : [])];
    },
    [stats],
  );
  if (!out.node) stats.dispose(); // nothing will run the backward
  return out;
}

// ---- fused with ReLU and a 2x2 / stride-2 max pool ----------------------------------------------------------------

interface PooledLayout {
  bn: Layout; // the batch norm's view of x (statistics pass, grad_finalize)
  outH: number;
  outW: number;
  path: 'scalar' | 'vec4' | 'wide'; // a unit: one window; two (W % 4 == 0, one vec4 per row); four (W % 8 == 0)
  rowUnits: number; // units per pooled row
  count: number; // units per channel
  chunk: number; // units per workgroup
  partials: number;
}

function pooledLayoutOf(x: Tensor): PooledLayout {
  const [batch, , h, w] = x.shape;
  const bn = layoutOf(x);
  const outH = Math.floor(h / 2);
  const outW = Math.floor(w / 2);
  const path = w % 8 === 0 ? 'wide' : w % 4 === 0 ? 'vec4' : 'scalar';
  const windows = { scalar: 1, vec4: 2, wide: 4 }[path]; // per unit
  const rowUnits = outW / windows;
  const count = batch * outH * rowUnits;
  const chunk = CHUNK / (4 * windows); // the same number of input elements per workgroup as the chunked passes
  return { bn, outH, outW, path, rowUnits, count, chunk, partials: Math.max(1, Math.ceil(count / chunk)) };
}

// How each path's entries see the tensors: x and dx as vec4s, the pooled ones as vec2s (_vec4) or vec4s (_wide).
const POOLED_BINDING: Record<PooledLayout['path'], Record<string, string>> = {
  scalar: { pooled_out: 'out' },
  vec4: { x: 'x4', out: 'out4', grad_out: 'grad_out2', pooled_out: 'out2' },
  wide: { x: 'x4', out: 'out4', grad_out: 'grad_out4', pooled_out: 'out4' },
};

/** Arithmetic per input element of each pooled pass: bn + relu (5), the window's compares (3 per 4), and the
 * gradient sums (2 per window) / dx (5): the profiler's FLOP count. */
const POOLED_FLOPS_PER_ELEMENT: Record<string, number> = {
  relu_max_pool: 5.75,
  relu_max_pool_grad_partials: 6.5,
  relu_max_pool_grad_input: 10.75,
};

function dispatchPooled(p: PooledLayout, entry: string, bindings: Record<string, Tensor>, variant?: Record<string, number>): void {
  const table = POOLED_BINDING[p.path];
  const named = Object.fromEntries(Object.entries(bindings).map(([k, t]) => [table[k] ?? k, t]));
  const [, , h, w] = bindings.x.shape;
  bindings.x.device.dispatch('batchnorm', p.path === 'scalar' ? entry : `${entry}_${p.path}`, {
    bindings: named,
    params: {
      channels: p.bn.channels,
      in_h: h,
      in_w: w,
      out_h: p.outH,
      row_units: p.rowUnits,
      count: p.count,
      chunk: p.chunk,
      partials: p.partials,
    },
    workgroups: [p.partials, p.bn.channels],
    constants: variant,
    cost: { flops: Math.round(bindings.x.numel * POOLED_FLOPS_PER_ELEMENT[entry]) },
  });
}

/** F.max_pool2d(F.relu(y), 2) for y = batch_norm(x) with the per-channel constants of batchNormStats: one pass over
 * x, only the pooled output written. */
export function batchNormReluMaxPoolApply(x: Tensor, stats: Tensor): Tensor {
  const p = pooledLayoutOf(x);
  const out = Tensor.empty([x.shape[0], x.shape[1], p.outH, p.outW], { device: x.device });
  dispatchPooled(p, 'relu_max_pool', { x, stats_in: stats, pooled_out: out });
  return out;
}

/**
 * Gradients of batchNormReluMaxPool2d from x, the per-channel constants and the pooled output's gradient: each
 * window's winner is recomputed from x, no activation or arg-max is saved. Exported for the benchmarks.
 */
export function batchNormReluMaxPoolBackward(
  x: Tensor,
  stats: Tensor,
  gradOut: Tensor,
  options: { training: boolean },
  wanted: { x: boolean; weight: boolean; bias: boolean },
): BatchNormGrads {
  const p = pooledLayoutOf(x);
  const dev = x.device;
  const { training } = options;
  const common = { x, grad_out: gradOut, stats_in: stats };
  const needSums = wanted.weight || wanted.bias || (training && wanted.x);
  let gradWeight: Tensor | null = null;
  let gradBias: Tensor | null = null;
  let dxCoef: Tensor | null = null;
  if (needSums) {
    const partials = Tensor.empty([p.bn.channels, p.partials * WG, 2], { device: dev });
    dispatchPooled(p, 'relu_max_pool_grad_partials', { ...common, partials });
    ({ gradWeight, gradBias, dxCoef } = finalizeGradSums(partials, stats, { ...perChannelParams(p.bn, null, null), partials: p.partials }));
  }
  let gradX: Tensor | null = null;
  if (wanted.x) {
    gradX = Tensor.empty(x.shape, { device: dev });
    // Evaluation mode never reads dx_coef_in (filled with stats then).
    dispatchPooled(p, 'relu_max_pool_grad_input', { ...common, dx_coef_in: dxCoef ?? stats, out: gradX }, { TRAINING: training ? 1 : 0 });
  }
  dxCoef?.dispose();
  return wantedGrads(gradX, gradWeight, gradBias, wanted);
}

/**
 * F.max_pool2d(F.relu(F.batch_norm(x, ...)), kernel_size=2, stride=2) in fewer passes: the statistics pass, then
 * one kernel that writes only the pooled output. Same arguments and modes as batchNorm2d (running statistics
 * updated in training mode); the pool's tie rule is max_pool2d's (the first maximum in row-major order). H and W
 * must be at least 2; an odd last row or column is dropped by the pool (floor mode) but still normalised with
 * the batch (and gets the statistics' gradient).
 */
export function batchNormReluMaxPool2d(
  x: Tensor,
  runningMean: Tensor | null,
  runningVar: Tensor | null,
  weight: Tensor | null,
  bias: Tensor | null,
  options: Omit<BatchNormOptions, 'relu'>,
): Tensor {
  checkBatchNormArgs('batchNormReluMaxPool2d', x, runningMean, runningVar, weight, bias, options);
  if (x.shape[2] < 2 || x.shape[3] < 2) {
    throw new Error(`batchNormReluMaxPool2d: input ${shapeStr(x.shape)} is too small for a 2x2 max pool`);
  }
  if (x.numel === 0) return Tensor.empty([x.shape[0], x.shape[1], Math.floor(x.shape[2] / 2), Math.floor(x.shape[3] / 2)], { device: x.device });

  const stats = batchNormStats(x, runningMean, runningVar, weight, bias, options);
  const out = batchNormReluMaxPoolApply(x, stats);
  const inputs = [x, ...(weight ? [weight] : []), ...(bias ? [bias] : [])];
  record(
    out,
    'batch_norm_relu_max_pool2d',
    inputs,
    (g) => {
      const grads = batchNormReluMaxPoolBackward(x, stats, g, options, {
        x: x.requiresGrad,
        weight: !!weight?.requiresGrad,
        bias: !!bias?.requiresGrad,
      });
      stats.dispose(); // the graph is used once
      return [grads.gradX, ...(weight ? [grads.gradWeight] : []), ...(bias ? [grads.gradBias] : [])];
    },
    [stats],
  );
  if (!out.node) stats.dispose(); // nothing will run the backward
  return out;
}
