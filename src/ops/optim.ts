// Fused multi-tensor optimiser kernels (shaders/optim.wgsl). They work on FLAT buffers: all parameters packed into
// one tensor by Tensor.pack, their gradients and optimiser state in flat tensors of the same layout, so a whole
// optimiser step is one dispatch (three with gradient clipping), whatever the number of parameter tensors.
// These are updates in place, not differentiable ops: nothing is recorded on the tape.
// The optimiser classes built on them are in src/train/optim.ts.
import { Tensor } from '../tensor.js';

const WG = 256;
/** The first pass of the gradient norm gives each invocation about this many vec4s (fewer, larger workgroups:
 * each workgroup's final sum has barriers, which software adapters pay dearly for)... */
const NORM_VEC4_PER_INVOCATION = 16;
/** ...using at most this many workgroups (partial sums). */
const MAX_NORM_PARTIALS = 1024;

/**
 * Workgroups (partial sums) of the first gradient-norm pass for a flat buffer of n4 vec4s. A function of the
 * size alone, so the summation order, and hence the bits, are the same on every run.
 */
export function normPartialCount(n4: number): number {
  return Math.max(1, Math.min(MAX_NORM_PARTIALS, Math.ceil(n4 / (WG * NORM_VEC4_PER_INVOCATION))));
}

function checkFlat(op: string, tensors: Record<string, Tensor | null | undefined>): number {
  let n4 = -1;
  for (const [name, t] of Object.entries(tensors)) {
    if (!t) continue;
    if (t.dtype !== 'f32') throw new Error(`${op}: '${name}' must be f32, got ${t}`);
    if (t.numel % 4 !== 0) throw new Error(`${op}: '${name}' holds ${t.numel} floats; flat buffers hold a multiple of 4 (Tensor.pack)`);
    if (n4 >= 0 && t.numel / 4 !== n4) throw new Error(`${op}: '${name}' holds ${t.numel} floats, expected ${n4 * 4}`);
    n4 = t.numel / 4;
  }
  return n4;
}

function checkScalar(op: string, name: string, t: Tensor): void {
  if (t.numel !== 1 || t.dtype !== 'f32') throw new Error(`${op}: '${name}' must be a 1-element f32 tensor, got ${t}`);
}

/** Sets a flat buffer (numel a multiple of 4) to zero in place: one dispatch. */
export function zeroFlat(target: Tensor): void {
  const n4 = checkFlat('zeroFlat', { target });
  if (n4 === 0) return;
  target.device.dispatch('optim', 'zero_fill', { bindings: { target_buf: target }, params: { n4 }, workgroups: Math.ceil(n4 / WG) });
}

/**
 * Global L2 norm of a flat gradient buffer and the clip coefficient of torch.nn.utils.clip_grad_norm_:
 * total = sqrt(sum g^2); `coefOut[0]` = min(1, maxNorm / (total + 1e-6)). Two deterministic passes, no readback.
 * Returns the total norm as a new 1-element tensor (the caller owns it).
 */
export function gradNormAndClipCoef(grad: Tensor, maxNorm: number, coefOut: Tensor): Tensor {
  const n4 = checkFlat('gradNormAndClipCoef', { grad });
  checkScalar('gradNormAndClipCoef', 'coefOut', coefOut);
  if (!(maxNorm > 0)) throw new Error(`clipGradNorm: maxNorm must be > 0, got ${maxNorm}`);
  const device = grad.device;
  const totalNorm = Tensor.empty([1], { device });
  const partialCount = normPartialCount(n4);
  // No gradients at all: norm 0, coefficient 1 (as torch with an empty list).
  const partials = n4 === 0 ? Tensor.zeros([1], { device }) : Tensor.empty([partialCount], { device });
  if (n4 > 0) {
    device.dispatch('optim', 'sum_squares_partials', {
      bindings: { grad, partials },
      params: { n4, partial_count: partialCount },
      workgroups: partialCount,
    });
  }
  device.dispatch('optim', 'clip_coefficient', {
    bindings: { partials_in: partials, total_norm: totalNorm, clip_coef: coefOut },
    params: { partial_count: partialCount, max_norm: maxNorm },
    workgroups: 1,
  });
  partials.dispose();
  return totalNorm;
}

export interface SgdUpdate {
  param: Tensor;
  grad: Tensor;
  /** 1-element tensor multiplying the gradient (the clip coefficient, or 1). */
  gradScale: Tensor;
  /** Flat momentum buffer; null when momentum is 0. */
  momentumBuffer: Tensor | null;
  lr: number;
  momentum: number;
  dampening: number;
  weightDecay: number;
  nesterov: boolean;
  /** The first step initialises the momentum buffer to the gradient (torch: buffer is None). */
  firstStep: boolean;
}

/** One torch.optim.SGD step over flat buffers, in place: one dispatch. */
export function sgdUpdate(u: SgdUpdate): void {
  const n4 = checkFlat('sgdUpdate', { param: u.param, grad: u.grad, momentumBuffer: u.momentumBuffer });
  checkScalar('sgdUpdate', 'gradScale', u.gradScale);
  if (u.momentum !== 0 && !u.momentumBuffer) throw new Error('sgdUpdate: momentum != 0 needs a momentum buffer');
  if (n4 === 0) return;
  const params = {
    n4,
    first_step: u.firstStep,
    nesterov: u.nesterov,
    lr: u.lr,
    momentum: u.momentum,
    dampening: u.dampening,
    weight_decay: u.weightDecay,
  };
  const workgroups = Math.ceil(n4 / WG);
  if (u.momentum !== 0) {
    u.param.device.dispatch('optim', 'sgd_momentum_step', {
      bindings: { param: u.param, grad: u.grad, grad_scale: u.gradScale, momentum_buf: u.momentumBuffer! },
      params,
      workgroups,
    });
  } else {
    u.param.device.dispatch('optim', 'sgd_step', { bindings: { param: u.param, grad: u.grad, grad_scale: u.gradScale }, params, workgroups });
  }
}

export interface AdamUpdate {
  param: Tensor;
  grad: Tensor;
  /** 1-element tensor multiplying the gradient (the clip coefficient, or 1). */
  gradScale: Tensor;
  expAvg: Tensor;
  expAvgSq: Tensor;
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** true: AdamW (p *= 1 - lr*wd before the step); false: Adam (wd*p added to the gradient). */
  decoupled: boolean;
  /** Step number, 1 for the first step (bias corrections). */
  step: number;
}

/** One torch.optim.Adam / AdamW step over flat buffers, in place: one dispatch. */
export function adamUpdate(u: AdamUpdate): void {
  const n4 = checkFlat('adamUpdate', { param: u.param, grad: u.grad, expAvg: u.expAvg, expAvgSq: u.expAvgSq });
  checkScalar('adamUpdate', 'gradScale', u.gradScale);
  if (!(u.step >= 1) || !Number.isInteger(u.step)) throw new Error(`adamUpdate: step must be an integer >= 1, got ${u.step}`);
  if (n4 === 0) return;
  // Bias corrections in float64, as torch computes them in Python from the step count.
  const biasCorrection1 = 1 - u.beta1 ** u.step;
  const biasCorrection2 = 1 - u.beta2 ** u.step;
  u.param.device.dispatch('optim', 'adam_step', {
    bindings: { param: u.param, grad: u.grad, grad_scale: u.gradScale, exp_avg: u.expAvg, exp_avg_sq: u.expAvgSq },
    params: {
      n4,
      one_minus_beta1: 1 - u.beta1,
      beta2: u.beta2,
      one_minus_beta2: 1 - u.beta2,
      eps: u.eps,
      step_size: u.lr / biasCorrection1,
      bias_correction2_sqrt: Math.sqrt(biasCorrection2),
      decay_factor: u.decoupled ? 1 - u.lr * u.weightDecay : 1,
      l2: u.decoupled ? 0 : u.weightDecay,
    },
    workgroups: Math.ceil(n4 / WG),
  });
}

/**
 * Counts the NaN and infinite values of a flat gradient buffer and its flat parameters, on the GPU, in one
 * dispatch: returns a new [4] u32 tensor [grad NaN, grad Inf, param NaN, param Inf] (the caller owns it; read it
 * with the step's other results, so the check costs no extra sync).
 */
export function countNonFinite(grad: Tensor, param: Tensor): Tensor {
  const n4 = checkFlat('countNonFinite', { grad, param });
  if (n4 === 0) return Tensor.zeros([4], { device: grad.device, dtype: 'u32' });
  const counts = Tensor.empty([4], { device: grad.device, dtype: 'u32' });
  grad.device.dispatch('optim', 'count_nonfinite', {
    bindings: { grad, checked_param: param, nonfinite_counts: counts },
    params: { n4 },
    workgroups: 1,
  });
  return counts;
}
