// Losses with PyTorch semantics: cross_entropy (fused with log-softmax, label smoothing), Hinton KD (kdKL), F.kl_div,
// mse_loss, smooth_l1_loss and Decoupled KD. Forward and backward side by side; backward kernels are fused (one
// dispatch writes the whole logits gradient). Scalar losses are reduced deterministically: one workgroup folds a
// fixed block of rows/elements in a fixed-order tree, then `sum_partials` folds the partials. No readback anywhere.
import { record } from '../autograd/tape.js';
import { Tensor, shapeStr, type Shape } from '../tensor.js';
import type { Device } from '../gpu/device.js';

export type Reduction = 'mean' | 'sum' | 'none';
export type KLReduction = 'batchmean' | 'mean' | 'sum' | 'none';

const WG = 256; // rows per workgroup (row losses) and invocations per workgroup
// Elements per invocation in the pointwise reductions: a workgroup folds WG * ITEMS = 8192 elements, so a FitNet
// hint [64, 32, 28, 28] gives 196 partials (enough workgroups to fill a GPU, few barriers per element).
const ITEMS = 32;
const POINTWISE = { mse: 0, smoothL1: 1, klDiv: 2 } as const;

// ---- shared helpers ------------------------------------------------------------------------------------------

function sameShape(a: Shape, b: Shape): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

function checkLogits(op: string, logits: Tensor, name = 'logits'): { rows: number; k: number } {
  if (logits.dtype !== 'f32') throw new Error(`${op}: ${name} must be f32, got ${logits}`);
  if (logits.ndim !== 2) {
    throw new Error(`${op}: ${name} must be [B, K] (classes along the last dim), got ${shapeStr(logits.shape)}`);
  }
  const [rows, k] = logits.shape;
  if (rows === 0 || k === 0) throw new Error(`${op}: ${name} ${shapeStr(logits.shape)} is empty`);
  return { rows, k };
}

function checkLabels(op: string, labels: Tensor, rows: number): void {
  if (labels.dtype !== 'i32') throw new Error(`${op}: labels must be an i32 tensor (class indices), got ${labels}`);
  if (labels.ndim !== 1 || labels.shape[0] !== rows) {
    throw new Error(`${op}: labels must be [${rows}] (one class index per row), got ${shapeStr(labels.shape)}`);
  }
}

function checkPair(op: string, student: Tensor, teacher: Tensor): { rows: number; k: number } {
  const dims = checkLogits(op, student, 'studentLogits');
  checkLogits(op, teacher, 'teacherLogits');
  if (!sameShape(student.shape, teacher.shape)) {
    throw new Error(`${op}: student ${shapeStr(student.shape)} and teacher ${shapeStr(teacher.shape)} logits differ in shape`);
  }
  return dims;
}

function checkReduction(op: string, reduction: string, allowed: string[]): void {
  if (!allowed.includes(reduction)) throw new Error(`${op}: reduction must be one of ${allowed.join(', ')}, got '${reduction}'`);
}

function checkTemperature(op: string, T: number): void {
  if (!(T > 0) || !Number.isFinite(T)) throw new Error(`${op}: temperature T must be finite and > 0, got ${T}`);
}

/**
 * A scalar from a kernel that leaves one partial sum per workgroup: `firstPass(dst, scale)` writes `blocks`
 * partials (each times `scale`) into dst. With one block it writes the scalar directly; otherwise `sum_partials`
 * folds the partials in a fixed order in one workgroup. Same inputs, same bits.
 */
function scalarFromBlocks(device: Device, blocks: number, scale: number, firstPass: (dst: Tensor, scale: number) => void): Tensor {
  const out = Tensor.empty([], { device });
  if (blocks === 1) {
    firstPass(out, scale);
    return out;
  }
  const partials = Tensor.empty([blocks], { device });
  firstPass(partials, 1);
  device.dispatch('loss', 'sum_partials', { bindings: { values: partials, out }, params: { n: blocks, scale }, workgroups: 1 });
  partials.dispose();
  return out;
}

interface RowParams {
  rows: number;
  k: number;
  scale: number;
  inv_t?: number;
  smoothing?: number;
  alpha?: number;
  beta?: number;
}

function rowUniforms(p: RowParams, perSample: boolean) {
  return {
    rows: p.rows,
    k: p.k,
    per_sample: perSample ? 1 : 0,
    scale: p.scale,
    inv_t: p.inv_t ?? 1,
    smoothing: p.smoothing ?? 0,
    alpha: p.alpha ?? 0,
    beta: p.beta ?? 0,
  };
}

/** Runs a row-loss forward entry: per-row losses [B] (reduction 'none') or the scaled sum as a scalar. */
function rowLossForward(entry: string, bindings: Record<string, Tensor>, p: RowParams, perSample: boolean): Tensor {
  const device = bindings.logits.device;
  const blocks = Math.ceil(p.rows / WG);
  if (perSample) {
    const out = Tensor.empty([p.rows], { device });
    device.dispatch('loss', entry, { bindings: { ...bindings, out }, params: rowUniforms(p, true), workgroups: blocks });
    return out;
  }
  return scalarFromBlocks(device, blocks, p.scale, (dst, scale) => {
    device.dispatch('loss', entry, { bindings: { ...bindings, out: dst }, params: rowUniforms({ ...p, scale }, false), workgroups: blocks });
  });
}

/** Runs a row-loss backward entry: the [B, K] logits gradient in one fused dispatch. */
function rowLossBackward(entry: string, bindings: Record<string, Tensor>, g: Tensor, p: RowParams, perSample: boolean): Tensor {
  const logits = bindings.logits;
  const grad = Tensor.empty(logits.shape, { device: logits.device });
  logits.device.dispatch('loss', entry, {
    bindings: { ...bindings, grad_out: g, grad },
    params: rowUniforms(p, perSample),
    workgroups: Math.ceil(p.rows / WG),
  });
  return grad;
}

// ---- cross-entropy -------------------------------------------------------------------------------------------

export interface CrossEntropyOptions {
  /** torch's label_smoothing: the target is (1 - eps) * onehot + eps / K. Default 0. */
  labelSmoothing?: number;
  reduction?: Reduction;
}

/**
 * torch.nn.functional.cross_entropy(logits, labels, label_smoothing=, reduction=) for logits [B, K] and i32 labels [B],
 * fused with a stable log-softmax. Labels outside [0, K) are clamped to the nearest class inside the kernel (they
 * cannot be validated without a readback); there is no ignore_index. Gradient: logits only.
 */
export function crossEntropy(logits: Tensor, labels: Tensor, options: CrossEntropyOptions = {}): Tensor {
  const op = 'crossEntropy';
  const { labelSmoothing = 0, reduction = 'mean' } = options;
  const { rows, k } = checkLogits(op, logits);
  checkLabels(op, labels, rows);
  if (!(labelSmoothing >= 0 && labelSmoothing <= 1)) throw new Error(`${op}: labelSmoothing must be in [0, 1], got ${labelSmoothing}`);
  checkReduction(op, reduction, ['mean', 'sum', 'none']);
  const perSample = reduction === 'none';
  const scale = reduction === 'mean' ? 1 / rows : 1;
  const bindings = { logits, labels };
  const out = rowLossForward('cross_entropy_forward', bindings, { rows, k, scale, smoothing: labelSmoothing }, perSample);
  return record(out, 'cross_entropy', [logits, labels], (g) => [
    logits.requiresGrad ? rowLossBackward('cross_entropy_backward', bindings, g, { rows, k, scale, smoothing: labelSmoothing }, perSample) : null,
    null,
  ]);
}

// ---- knowledge distillation ----------------------------------------------------------------------------------

/**
 * Hinton KD: T^2 * KL(p_t^T || p_s^T) with batchmean reduction, a scalar, where p^T = softmax(z / T). Equals
 * T^2 * F.kl_div(F.log_softmax(z_s / T), F.softmax(z_t / T), reduction='batchmean'). The teacher is treated as a
 * constant (never gets a gradient); d/dz_s = (T / B) * (p_s^T - p_t^T).
 */
export function kdKL(studentLogits: Tensor, teacherLogits: Tensor, T: number): Tensor {
  const op = 'kdKL';
  const { rows, k } = checkPair(op, studentLogits, teacherLogits);
  checkTemperature(op, T);
  const bindings = { logits: studentLogits, teacher: teacherLogits };
  const out = rowLossForward('kd_forward', bindings, { rows, k, scale: (T * T) / rows, inv_t: 1 / T }, false);
  return record(out, 'kd_kl', [studentLogits, teacherLogits], (g) => [
    studentLogits.requiresGrad ? rowLossBackward('kd_backward', bindings, g, { rows, k, scale: T / rows, inv_t: 1 / T }, false) : null,
    null, // the teacher is a fixed target
  ]);
}

export interface DKDOptions {
  /** Weight of the target-class term (TCKD). Default 1. */
  alpha?: number;
  /** Weight of the non-target term (NCKD). Default 8. */
  beta?: number;
  /** Temperature. Default 4. */
  T?: number;
}

/**
 * Decoupled KD (Zhao et al. 2022): alpha * T^2 * TCKD + beta * T^2 * NCKD, batchmean, a scalar, WITHOUT the
 * cross-entropy term (the recipe adds it). TCKD = KL([p_t(y), 1 - p_t(y)] || [p_s(y), 1 - p_s(y)]) and NCKD is the KL
 * between the softmaxes over the non-target classes (the target removed exactly; the reference code's -1000 mask
 * approximates that). Labels outside [0, K) are clamped in the kernel. Gradient: student logits only. Needs K >= 2.
 */
export function dkdLoss(studentLogits: Tensor, teacherLogits: Tensor, labels: Tensor, options: DKDOptions = {}): Tensor {
  const op = 'dkdLoss';
  const { alpha = 1, beta = 8, T = 4 } = options;
  const { rows, k } = checkPair(op, studentLogits, teacherLogits);
  checkLabels(op, labels, rows);
  checkTemperature(op, T);
  if (k < 2) throw new Error(`${op}: needs at least 2 classes (the non-target distribution is empty), got K=${k}`);
  const bindings = { logits: studentLogits, teacher: teacherLogits, labels };
  const weights = { alpha, beta, inv_t: 1 / T };
  const out = rowLossForward('dkd_forward', bindings, { rows, k, scale: (T * T) / rows, ...weights }, false);
  return record(out, 'dkd', [studentLogits, teacherLogits, labels], (g) => [
    studentLogits.requiresGrad ? rowLossBackward('dkd_backward', bindings, g, { rows, k, scale: T / rows, ...weights }, false) : null,
    null,
    null,
  ]);
}

// ---- pointwise losses ----------------------------------------------------------------------------------------

function pointwiseLoss(
  op: string,
  loss: keyof typeof POINTWISE,
  input: Tensor,
  target: Tensor,
  reduction: KLReduction,
  beta = 0,
): Tensor {
  if (input.dtype !== 'f32' || target.dtype !== 'f32') throw new Error(`${op}: input and target must be f32, got ${input} and ${target}`);
  if (!sameShape(input.shape, target.shape)) {
    throw new Error(`${op}: input ${shapeStr(input.shape)} and target ${shapeStr(target.shape)} must have the same shape`);
  }
  const n = input.numel;
  if (n === 0) throw new Error(`${op}: empty input ${shapeStr(input.shape)}`);
  const device = input.device;
  const constants = { LOSS: POINTWISE[loss] };
  const scale = reduction === 'mean' ? 1 / n : reduction === 'batchmean' ? 1 / (input.ndim > 0 ? input.shape[0] : 1) : 1;
  const bindings = { inputs: input, targets: target };
  let out: Tensor;
  if (reduction === 'none') {
    out = Tensor.empty(input.shape, { device });
    device.dispatch('loss', 'pointwise_elementwise', {
      bindings: { ...bindings, out },
      params: { n, per_element: 1, scale: 1, beta, items: 1 },
      workgroups: Math.ceil(n / WG),
      constants,
    });
  } else {
    const blocks = Math.ceil(n / (WG * ITEMS));
    out = scalarFromBlocks(device, blocks, scale, (dst, s) => {
      device.dispatch('loss', 'pointwise_blocks', {
        bindings: { ...bindings, out: dst },
        params: { n, per_element: 0, scale: s, beta, items: ITEMS },
        workgroups: blocks,
        constants,
      });
    });
  }
  const gradWrt = (wrt: 0 | 1, g: Tensor): Tensor => {
    const grad = Tensor.empty(input.shape, { device });
    device.dispatch('loss', 'pointwise_backward', {
      bindings: { ...bindings, grad_out: g, grad },
      params: { n, per_element: reduction === 'none' ? 1 : 0, scale, beta, items: 1 },
      workgroups: Math.ceil(n / WG),
      constants: { ...constants, WRT: wrt },
    });
    return grad;
  };
  return record(out, op, [input, target], (g) => [
    input.requiresGrad ? gradWrt(0, g) : null,
    target.requiresGrad ? gradWrt(1, g) : null,
  ]);
}

/** torch.nn.functional.mse_loss: (input - target)^2, reduced. Gradients for both sides. Shapes must match. */
export function mseLoss(input: Tensor, target: Tensor, options: { reduction?: Reduction } = {}): Tensor {
  const { reduction = 'mean' } = options;
  checkReduction('mseLoss', reduction, ['mean', 'sum', 'none']);
  return pointwiseLoss('mse_loss', 'mse', input, target, reduction);
}

/**
 * torch.nn.functional.smooth_l1_loss: 0.5 d^2 / beta where |d| < beta, else |d| - 0.5 beta (d = input - target;
 * beta = 0 is the L1 loss). Gradients for both sides.
 */
export function smoothL1Loss(input: Tensor, target: Tensor, options: { beta?: number; reduction?: Reduction } = {}): Tensor {
  const { beta = 1, reduction = 'mean' } = options;
  if (!(beta >= 0) || !Number.isFinite(beta)) throw new Error(`smoothL1Loss: beta must be finite and >= 0, got ${beta}`);
  checkReduction('smoothL1Loss', reduction, ['mean', 'sum', 'none']);
  return pointwiseLoss('smooth_l1_loss', 'smoothL1', input, target, reduction, beta);
}

/**
 * torch.nn.functional.kl_div(input, target, reduction=) with log_target=False: input holds log-probabilities,
 * target probabilities; the pointwise loss is target * (log target - input), 0 where target == 0. Reduction defaults
 * to 'mean' (over all elements) as in torch; KD wants 'batchmean' (sum / batch size = input.shape[0]). Gradients:
 * input -target; target log(target) + 1 - input (0 where target == 0).
 */
export function klDiv(input: Tensor, target: Tensor, options: { reduction?: KLReduction } = {}): Tensor {
  const { reduction = 'mean' } = options;
  checkReduction('klDiv', reduction, ['batchmean', 'mean', 'sum', 'none']);
  return pointwiseLoss('kl_div', 'klDiv', input, target, reduction);
}
