// Float64 references for the losses: plain loops, PyTorch semantics. Log-probabilities always come from a
// max-subtracted log-softmax (test/reference/softmax.ts), so 1e4-scale logits stay exact here too.
import { logSoftmax } from './softmax.js';

export type Reduction = 'none' | 'sum' | 'mean' | 'batchmean';

/** Applies a reduction to per-element (or per-row) losses; `batch` is the divisor of 'batchmean'. */
export function reduce(values: Float64Array, reduction: Reduction, batch = values.length): Float64Array {
  if (reduction === 'none') return values;
  let total = 0;
  for (const v of values) total += v;
  const divisor = reduction === 'sum' ? 1 : reduction === 'mean' ? values.length : batch;
  return Float64Array.of(total / divisor);
}

/** d reduced / d value_i times the output gradient g. */
function reducedGrad(i: number, n: number, g: Float64Array, reduction: Reduction, batch = n): number {
  if (reduction === 'none') return g[i];
  if (reduction === 'sum') return g[0];
  return g[0] / (reduction === 'mean' ? n : batch);
}

function logSumExp(values: number[]): number {
  const max = Math.max(...values);
  return max + Math.log(values.reduce((s, v) => s + Math.exp(v - max), 0));
}

/** The kernel's documented behaviour for labels outside [0, K): clamp to the nearest class. */
export function clampLabel(label: number, k: number): number {
  return Math.min(Math.max(label, 0), k - 1);
}

// ---- cross-entropy (torch.nn.functional.cross_entropy with label_smoothing) ----------------------------------

export function crossEntropy(logits: Float64Array, labels: Float64Array, k: number, smoothing: number, reduction: Reduction): Float64Array {
  const rows = labels.length;
  const logp = logSoftmax(logits, k);
  const losses = new Float64Array(rows);
  for (let b = 0; b < rows; b++) {
    const y = clampLabel(labels[b], k);
    let meanNll = 0;
    for (let j = 0; j < k; j++) meanNll -= logp[b * k + j] / k;
    losses[b] = (1 - smoothing) * -logp[b * k + y] + smoothing * meanNll;
  }
  return reduce(losses, reduction);
}

export function crossEntropyBackward(
  logits: Float64Array,
  labels: Float64Array,
  k: number,
  smoothing: number,
  reduction: Reduction,
  g: Float64Array,
): Float64Array {
  const rows = labels.length;
  const logp = logSoftmax(logits, k);
  const grad = new Float64Array(logits.length);
  for (let b = 0; b < rows; b++) {
    const y = clampLabel(labels[b], k);
    const gb = reducedGrad(b, rows, g, reduction);
    for (let j = 0; j < k; j++) {
      const smoothedTarget = (j === y ? 1 - smoothing : 0) + smoothing / k;
      grad[b * k + j] = (Math.exp(logp[b * k + j]) - smoothedTarget) * gb;
    }
  }
  return grad;
}

// ---- Hinton KD ------------------------------------------------------------------------------------------------

/** T^2 * (1/B) * sum_b sum_c p_t (log p_t - log p_s), at temperature T (kd-formulas.md). */
export function kdKL(student: Float64Array, teacher: Float64Array, k: number, T: number): Float64Array {
  const rows = student.length / k;
  const logPs = logSoftmax(student, k, T);
  const logPt = logSoftmax(teacher, k, T);
  let total = 0;
  for (let i = 0; i < student.length; i++) total += Math.exp(logPt[i]) * (logPt[i] - logPs[i]);
  return Float64Array.of((T * T * total) / rows);
}

/** The sum of |terms| kdKL's value is the difference of: T^2 / B * sum p_t (|log p_t| + |log p_s|). */
export function kdKLTerms(student: Float64Array, teacher: Float64Array, k: number, T: number): Float64Array {
  const rows = student.length / k;
  const logPs = logSoftmax(student, k, T);
  const logPt = logSoftmax(teacher, k, T);
  let total = 0;
  for (let i = 0; i < student.length; i++) total += Math.exp(logPt[i]) * (Math.abs(logPt[i]) + Math.abs(logPs[i]));
  return Float64Array.of((T * T * total) / rows);
}

/** (T / B) * (p_s - p_t) * g. */
export function kdKLBackward(student: Float64Array, teacher: Float64Array, k: number, T: number, g: Float64Array): Float64Array {
  const rows = student.length / k;
  const logPs = logSoftmax(student, k, T);
  const logPt = logSoftmax(teacher, k, T);
  return logPs.map((lps, i) => ((T / rows) * (Math.exp(lps) - Math.exp(logPt[i]))) * g[0]);
}

/**
 * The course-material formula kd-formulas.md warns about: T^2 * (p_t * (log p_t - p_s)).mean(), i.e. the student
 * PROBABILITY where its log belongs, and a mean over B*K instead of B. Only used to show kdKL differs from it.
 */
export function kdCourseMistake(student: Float64Array, teacher: Float64Array, k: number, T: number): number {
  const ps = logSoftmax(student, k, T).map(Math.exp);
  const logPt = logSoftmax(teacher, k, T);
  let total = 0;
  for (let i = 0; i < student.length; i++) total += Math.exp(logPt[i]) * (logPt[i] - ps[i]);
  return (T * T * total) / student.length;
}

// ---- Decoupled KD ---------------------------------------------------------------------------------------------

interface DKDRow {
  logB: [number, number]; // log [p(y), 1 - p(y)]
  logQ: number[]; // log softmax over the non-target classes, in class order without y
}

function dkdRow(z: Float64Array, base: number, k: number, y: number, T: number): DKDRow {
  const logp = Array.from(logSoftmax(z.subarray(base, base + k), k, T));
  const rest = logp.filter((_, j) => j !== y);
  const logQ = Array.from(logSoftmax(Float64Array.from(rest), rest.length)); // a shift by lse leaves it unchanged
  return { logB: [logp[y], logSumExp(rest)], logQ };
}

function klTerms(logTeacher: number[], logStudent: number[]): number {
  return logTeacher.reduce((s, lt, i) => s + Math.exp(lt) * (lt - logStudent[i]), 0);
}

/** alpha * T^2 * TCKD + beta * T^2 * NCKD, batchmean (target removed exactly from the non-target softmax). */
export function dkd(student: Float64Array, teacher: Float64Array, labels: Float64Array, k: number, alpha: number, beta: number, T: number): Float64Array {
  const rows = labels.length;
  let total = 0;
  for (let b = 0; b < rows; b++) {
    const y = clampLabel(labels[b], k);
    const s = dkdRow(student, b * k, k, y, T);
    const t = dkdRow(teacher, b * k, k, y, T);
    total += alpha * klTerms(t.logB, s.logB) + beta * klTerms(t.logQ, s.logQ);
  }
  return Float64Array.of((T * T * total) / rows);
}

/**
 * Analytic student gradient of dkd (s = z / T):  k == y: alpha (b_s1 - b_t1);  k != y: alpha q_s (b_s2 - b_t2)
 * + beta (q_s - q_t); all times (T / B) * g.
 */
export function dkdBackward(
  student: Float64Array,
  teacher: Float64Array,
  labels: Float64Array,
  k: number,
  alpha: number,
  beta: number,
  T: number,
  g: Float64Array,
): Float64Array {
  const rows = labels.length;
  const grad = new Float64Array(student.length);
  for (let b = 0; b < rows; b++) {
    const y = clampLabel(labels[b], k);
    const s = dkdRow(student, b * k, k, y, T);
    const t = dkdRow(teacher, b * k, k, y, T);
    const factor = (T / rows) * g[0];
    let r = 0; // index into the non-target lists
    for (let j = 0; j < k; j++) {
      if (j === y) {
        grad[b * k + j] = alpha * (Math.exp(s.logB[0]) - Math.exp(t.logB[0])) * factor;
      } else {
        const qs = Math.exp(s.logQ[r]);
        const qt = Math.exp(t.logQ[r]);
        grad[b * k + j] = (alpha * qs * (Math.exp(s.logB[1]) - Math.exp(t.logB[1])) + beta * (qs - qt)) * factor;
        r++;
      }
    }
  }
  return grad;
}

/**
 * DKD written the way the authors' code (mdistiller's dkd_loss) computes it: probabilities, log of the binary
 * probabilities, the target masked by subtracting 1000, F.kl_div(..., reduction='sum') * T^2 / B. Valid for
 * moderate logits (it takes logs of probabilities); used to show dkd matches the published formulation.
 */
export function dkdAsPublished(student: Float64Array, teacher: Float64Array, labels: Float64Array, k: number, alpha: number, beta: number, T: number): number {
  const rows = labels.length;
  const klDivSum = (logInput: number[], probs: number[]) => probs.reduce((s, p, i) => s + (p === 0 ? 0 : p * (Math.log(p) - logInput[i])), 0);
  let tckd = 0;
  let nckd = 0;
  for (let b = 0; b < rows; b++) {
    const y = labels[b];
    const row = (z: Float64Array) => Array.from(z.subarray(b * k, b * k + k));
    const ps = Array.from(logSoftmax(Float64Array.from(row(student)), k, T)).map(Math.exp);
    const pt = Array.from(logSoftmax(Float64Array.from(row(teacher)), k, T)).map(Math.exp);
    const binary = (p: number[]) => [p[y], p.reduce((s, v, j) => s + (j === y ? 0 : v), 0)];
    const bs = binary(ps);
    tckd += klDivSum(bs.map(Math.log), binary(pt));
    const masked = (z: Float64Array) => Float64Array.from(row(z).map((v, j) => v / T - (j === y ? 1000 : 0)));
    const logQs = Array.from(logSoftmax(masked(student), k));
    const qt = Array.from(logSoftmax(masked(teacher), k)).map(Math.exp);
    nckd += klDivSum(logQs, qt);
  }
  return (alpha * tckd * T * T) / rows + (beta * nckd * T * T) / rows;
}

// ---- pointwise losses -------------------------------------------------------------------------------------------

export type PointwiseLoss = 'mse' | 'smoothL1' | 'klDiv';

function pointwiseValue(loss: PointwiseLoss, x: number, y: number, beta: number): number {
  if (loss === 'mse') return (x - y) ** 2;
  if (loss === 'smoothL1') {
    const d = Math.abs(x - y);
    return d < beta ? (0.5 * d * d) / beta : d - 0.5 * beta;
  }
  return y === 0 ? 0 : y * (Math.log(y) - x); // F.kl_div, log_target=False
}

function pointwiseGrads(loss: PointwiseLoss, x: number, y: number, beta: number): [number, number] {
  if (loss === 'mse') return [2 * (x - y), -2 * (x - y)];
  if (loss === 'smoothL1') {
    const d = x - y;
    const gx = Math.abs(d) < beta ? d / beta : Math.sign(d);
    return [gx, -gx];
  }
  return [-y, y === 0 ? 0 : Math.log(y) + 1 - x];
}

/** The reduced pointwise loss; `batch` is input.shape[0] for 'batchmean'. */
export function pointwise(loss: PointwiseLoss, x: Float64Array, y: Float64Array, reduction: Reduction, batch: number, beta = 0): Float64Array {
  return reduce(x.map((xi, i) => pointwiseValue(loss, xi, y[i], beta)), reduction, batch);
}

export function pointwiseBackward(
  loss: PointwiseLoss,
  x: Float64Array,
  y: Float64Array,
  reduction: Reduction,
  batch: number,
  beta: number,
  g: Float64Array,
): { input: Float64Array; target: Float64Array } {
  const input = new Float64Array(x.length);
  const target = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const [gx, gy] = pointwiseGrads(loss, x[i], y[i], beta);
    const gi = reducedGrad(i, x.length, g, reduction, batch);
    input[i] = gx * gi;
    target[i] = gy * gi;
  }
  return { input, target };
}
