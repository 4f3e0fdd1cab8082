import { describe, expect, it } from 'vitest';
import { Tensor, rng } from '../src/index.js';
import { crossEntropy, dkdLoss, kdKL, klDiv, mseLoss, smoothL1Loss, type Reduction } from '../src/ops/loss.js';
import { logSoftmax, softmax } from '../src/ops/softmax.js';
import { checkOp, expectClose } from './helpers/check.js';
import { useDevice } from './helpers/device.js';
import * as ref from './reference/loss.js';

useDevice();

const batches = [1, 7, 64, 128, 300]; // 300 rows: two workgroups of rows, so the second reduction pass runs
const classes = [1, 2, 10, 11, 100];
const temperatures = [1, 2, 4, 10];

/**
 * Tolerance of the reference-backward-vs-finite-differences check. The helper's central differences use a fixed
 * step of 1e-6 * max(1, |x|), so float64 rounding of the loss adds noise of about 1e-16 * |loss| / 1e-6 to every
 * probe; summed over thousands of elements that noise reaches 1e-4..1e-3 of the small gradient entries. Small
 * inputs prove the reference formulas at 1e-4; the large ones only guard against gross errors.
 */
function fdTolerance(elements: number): number {
  return elements > 2000 ? 2e-3 : 1e-4;
}

/** Seeded class indices in [0, k). */
function randomLabels(rows: number, k: number, seed: number): number[] {
  const next = rng(seed);
  return Array.from({ length: rows }, () => Math.floor(next() * k));
}

/** Rows of probabilities (softmax of seeded logits) with some exact zeros, for kl_div targets. */
function probabilityRows(rows: number, k: number, seed: number, zeroEvery = 0): number[] {
  const next = rng(seed);
  const out: number[] = [];
  for (let r = 0; r < rows; r++) {
    const w = Array.from({ length: k }, (_, j) => (zeroEvery && (r * k + j) % zeroEvery === 0 ? 0 : Math.exp(3 * next())));
    const total = w.reduce((a, b) => a + b, 0);
    out.push(...w.map((v) => v / total));
  }
  return out;
}

// ---- cross-entropy --------------------------------------------------------------------------------------------

describe('crossEntropy (tolerance: forward rel 1e-5, backward rel 5e-5; reference vs FD 1e-4, 2e-3 past 2000 elements)', () => {
  let seed = 1;
  for (const rows of batches) {
    for (const k of classes) {
      const smoothing = (rows + k) % 2 === 0 ? 0 : 0.1;
      const reduction: Reduction = (['mean', 'sum', 'none'] as const)[(rows * 7 + k) % 3];
      const labels = randomLabels(rows, k, seed++);
      it(`[${rows}, ${k}] labelSmoothing=${smoothing} reduction=${reduction}`, async () => {
        await checkOp({
          name: `crossEntropy([${rows}, ${k}], eps=${smoothing}, ${reduction})`,
          inputs: { logits: { shape: [rows, k], std: 3 }, labels: { shape: [rows], data: labels, dtype: 'i32' } },
          gpu: (t) => crossEntropy(t.logits, t.labels, { labelSmoothing: smoothing, reduction }),
          ref: (x) => ref.crossEntropy(x.logits, x.labels, k, smoothing, reduction),
          refBackward: (x, g) => ({ logits: ref.crossEntropyBackward(x.logits, x.labels, k, smoothing, reduction, g) }),
          tol: { fwd: 1e-5, bwd: 5e-5, fd: fdTolerance(rows * k) },
          fdSamples: 24,
        });
      });
    }
  }

  for (const reduction of ['mean', 'sum', 'none'] as const) {
    for (const smoothing of [0, 0.25]) {
      it(`every reduction and smoothing: [13, 11] ${reduction} eps=${smoothing}`, async () => {
        const labels = randomLabels(13, 11, 77);
        await checkOp({
          name: `crossEntropy([13, 11], eps=${smoothing}, ${reduction})`,
          inputs: { logits: { shape: [13, 11], std: 2 }, labels: { shape: [13], data: labels, dtype: 'i32' } },
          gpu: (t) => crossEntropy(t.logits, t.labels, { labelSmoothing: smoothing, reduction }),
          ref: (x) => ref.crossEntropy(x.logits, x.labels, 11, smoothing, reduction),
          refBackward: (x, g) => ({ logits: ref.crossEntropyBackward(x.logits, x.labels, 11, smoothing, reduction, g) }),
          tol: { fwd: 1e-5, bwd: 5e-5, fd: 1e-4 },
        });
      });
    }
  }

  it('all-equal logits give log K; 1e4-scale logits stay finite and exact', async () => {
    const equal = crossEntropy(Tensor.full([5, 11], 3.5), Tensor.fromArray([0, 3, 10, 4, 7], [5], { dtype: 'i32' }));
    expectClose([await equal.item()], [Math.log(11)], 1e-6, 'CE of equal logits');
    // Hand-checkable: label on the max gives 0; label 1e4 below the max gives 1e4; 2e4 below gives 2e4.
    const big = [1e4, 0, -1e4, 1e4, 0, -1e4, 1e4, 0, -1e4];
    const out = crossEntropy(Tensor.fromArray(big, [3, 3]), Tensor.fromArray([0, 1, 2], [3], { dtype: 'i32' }), { reduction: 'none' });
    expect(Array.from(await out.toArray())).toEqual([0, 1e4, 2e4]);
    await checkOp({
      name: 'crossEntropy of N(0, 1e4) logits, eps=0.1',
      inputs: { logits: { shape: [7, 11], std: 1e4 }, labels: { shape: [7], data: randomLabels(7, 11, 5), dtype: 'i32' } },
      gpu: (t) => crossEntropy(t.logits, t.labels, { labelSmoothing: 0.1 }),
      ref: (x) => ref.crossEntropy(x.logits, x.labels, 11, 0.1, 'mean'),
      refBackward: (x, g) => ({ logits: ref.crossEntropyBackward(x.logits, x.labels, 11, 0.1, 'mean', g) }),
      tol: { fwd: 1e-6, bwd: 1e-6, fd: 1e-4 }, // FD step 1e-6 * |x| = 0.01 at |x| = 1e4
    });
  });

  it('labels outside [0, K) are clamped in the kernel (no out-of-bounds read), documented behaviour', async () => {
    const labels = [-1, 11, 5, 1000, -2147483648];
    await checkOp({
      name: 'crossEntropy with out-of-range labels',
      inputs: { logits: { shape: [5, 11] }, labels: { shape: [5], data: labels, dtype: 'i32' } },
      gpu: (t) => crossEntropy(t.logits, t.labels, { reduction: 'none' }),
      ref: (x) => ref.crossEntropy(x.logits, x.labels, 11, 0, 'none'),
      refBackward: (x, g) => ({ logits: ref.crossEntropyBackward(x.logits, x.labels, 11, 0, 'none', g) }),
      tol: { fwd: 1e-5, bwd: 5e-5, fd: 1e-4 },
    });
  });

  it('rejects bad shapes and dtypes with clear errors', () => {
    const logits = Tensor.zeros([4, 3]);
    expect(() => crossEntropy(Tensor.zeros([4, 3, 2]), Tensor.zeros([4], { dtype: 'i32' }))).toThrow(/logits must be \[B, K\]/);
    expect(() => crossEntropy(logits, Tensor.zeros([4]))).toThrow(/labels must be an i32 tensor/);
    expect(() => crossEntropy(logits, Tensor.zeros([5], { dtype: 'i32' }))).toThrow(/labels must be \[4\]/);
    expect(() => crossEntropy(logits, Tensor.zeros([4], { dtype: 'i32' }), { labelSmoothing: 1.5 })).toThrow(/labelSmoothing/);
    expect(() => crossEntropy(logits, Tensor.zeros([4], { dtype: 'i32' }), { reduction: 'batchmean' as Reduction })).toThrow(/reduction must be one of/);
  });
});

// ---- Hinton KD ------------------------------------------------------------------------------------------------

describe('kdKL: T^2 * KL(p_t^T || p_s^T), batchmean (tolerance: forward rel 1e-5 or 1e-6 of the sum of |terms| (a small KL is a difference of nearly equal terms), backward rel 1e-4 (p_s - p_t cancels in f32); reference vs FD 1e-4, 2e-3 past 2000 elements)', () => {
  let seed = 100;
  for (const rows of batches) {
    for (const k of classes) {
      const T = temperatures[(rows + k) % temperatures.length];
      it(`[${rows}, ${k}] T=${T}`, async () => {
        await checkOp({
          name: `kdKL([${rows}, ${k}], T=${T})`,
          inputs: { student: { shape: [rows, k], std: 2 }, teacher: { shape: [rows, k], std: 4, requiresGrad: false } },
          gpu: (t) => kdKL(t.student, t.teacher, T),
          ref: (x) => ref.kdKL(x.student, x.teacher, k, T),
          refBackward: (x, g) => ({ student: ref.kdKLBackward(x.student, x.teacher, k, T, g) }),
          refTerms: (x) => ref.kdKLTerms(x.student, x.teacher, k, T),
          tol: { fwd: 1e-5, bwd: 1e-4, fd: fdTolerance(rows * k), terms: 1e-6 },
          fdSamples: 24,
          seed: seed++,
        });
      });
    }
  }

  it('a hand-computable 2-class case: p_t = [3/4, 1/4], p_s = [1/2, 1/2]', async () => {
    for (const T of temperatures) {
      // At temperature T, teacher logits [T ln 3, 0] give p_t = [3/4, 1/4]; student [0, 0] gives [1/2, 1/2].
      // Two identical rows: batchmean divides by B = 2 (not by B*K = 4), so the value is that of one row.
      const student = Tensor.fromArray([0, 0, 0, 0], [2, 2], { requiresGrad: true });
      const teacher = Tensor.fromArray([T * Math.log(3), 0, T * Math.log(3), 0], [2, 2]);
      const loss = kdKL(student, teacher, T);
      const kl = 0.75 * Math.log(0.75 / 0.5) + 0.25 * Math.log(0.25 / 0.5); // 0.1308...
      expectClose([await loss.item()], [T * T * kl], 1e-6, `kdKL 2-class T=${T}`);
      loss.backward();
      // (T / B) * (p_s - p_t) = (T / 2) * [-1/4, 1/4] per row.
      expectClose(await student.grad!.toArray(), [-T / 8, T / 8, -T / 8, T / 8], 1e-6, `kdKL 2-class gradient T=${T}`);
    }
  });

  it('differs from the course-material mistake (student probability for its log, mean over B*K)', async () => {
    const rows = 64;
    const k = 11;
    const T = 4;
    const next = rng(31);
    const s = Array.from({ length: rows * k }, () => 2 * (next() - 0.5));
    const t = Array.from({ length: rows * k }, () => 8 * (next() - 0.5));
    const value = await kdKL(Tensor.fromArray(s, [rows, k]), Tensor.fromArray(t, [rows, k]), T).item();
    const correct = ref.kdKL(Float64Array.from(Float32Array.from(s)), Float64Array.from(Float32Array.from(t)), k, T)[0];
    const mistake = ref.kdCourseMistake(Float64Array.from(Float32Array.from(s)), Float64Array.from(Float32Array.from(t)), k, T);
    expectClose([value], [correct], 1e-5, 'kdKL vs the formula');
    // A regression to the mistaken formula would be off by far more than any tolerance.
    expect(Math.abs(value - mistake) / Math.abs(value)).toBeGreaterThan(0.5);
    // And a real divergence: 0 when the student matches the teacher, where the mistaken formula is not.
    const same = Tensor.fromArray(t, [rows, k]);
    expect(Math.abs(await kdKL(same, same, T).item())).toBeLessThan(1e-6);
    const tt = Float64Array.from(Float32Array.from(t));
    expect(Math.abs(ref.kdCourseMistake(tt, tt, k, T))).toBeGreaterThan(0.01);
  });

  it('equals T^2 * klDiv(logSoftmax(z_s / T), softmax(z_t / T), batchmean) composed from the other ops', async () => {
    const T = 2;
    const student = Tensor.randn([7, 11], { seed: 4, std: 2 });
    const teacher = Tensor.randn([7, 11], { seed: 5, std: 3 });
    const composed = klDiv(logSoftmax(student, { T }), softmax(teacher, { T }), { reduction: 'batchmean' });
    expectClose([await kdKL(student, teacher, T).item()], [T * T * (await composed.item())], 1e-5, 'kdKL vs composed');
  });

  it('the teacher gets no gradient even when it requires one', async () => {
    const student = Tensor.randn([7, 11], { seed: 1, requiresGrad: true });
    const teacher = Tensor.randn([7, 11], { seed: 2, requiresGrad: true });
    kdKL(student, teacher, 4).backward();
    expect(student.grad).not.toBeNull();
    expect(teacher.grad).toBeNull();
  });

  it('1e4-scale logits (both sides) stay finite and match the reference', async () => {
    for (const T of temperatures) {
      await checkOp({
        name: `kdKL of N(0, 1e4) logits, T=${T}`,
        inputs: { student: { shape: [7, 11], std: 1e4 }, teacher: { shape: [7, 11], std: 1e4, requiresGrad: false } },
        gpu: (t) => kdKL(t.student, t.teacher, T),
        ref: (x) => ref.kdKL(x.student, x.teacher, 11, T),
        refBackward: (x, g) => ({ student: ref.kdKLBackward(x.student, x.teacher, 11, T, g) }),
        tol: { fwd: 1e-6, bwd: 1e-6, fd: 1e-4 }, // FD step 0.01 at |x| = 1e4
        seed: T,
      });
    }
  });

  it('rejects mismatched shapes and a bad T', () => {
    expect(() => kdKL(Tensor.zeros([4, 3]), Tensor.zeros([4, 5]), 2)).toThrow(/kdKL: student \[4, 3\] and teacher \[4, 5\] logits differ/);
    expect(() => kdKL(Tensor.zeros([4, 3]), Tensor.zeros([4, 3]), -1)).toThrow(/temperature T must be finite and > 0/);
  });
});

// ---- Decoupled KD ---------------------------------------------------------------------------------------------

describe('dkdLoss: alpha*T^2*TCKD + beta*T^2*NCKD, batchmean (tolerance: forward rel 5e-5 (KL of close binary distributions cancels in f32), backward rel 1e-4; reference vs FD 1e-4, 2e-3 past 2000 elements)', () => {
  let seed = 200;
  for (const rows of batches) {
    for (const k of classes.filter((c) => c >= 2)) {
      const T = temperatures[(rows + k) % temperatures.length];
      const [alpha, beta] = rows % 2 === 0 ? [1, 8] : [0.5, 2];
      const labels = randomLabels(rows, k, seed);
      it(`[${rows}, ${k}] T=${T} alpha=${alpha} beta=${beta}`, async () => {
        await checkOp({
          name: `dkdLoss([${rows}, ${k}], T=${T})`,
          inputs: {
            student: { shape: [rows, k], std: 2 },
            teacher: { shape: [rows, k], std: 4, requiresGrad: false },
            labels: { shape: [rows], data: labels, dtype: 'i32' },
          },
          gpu: (t) => dkdLoss(t.student, t.teacher, t.labels, { alpha, beta, T }),
          ref: (x) => ref.dkd(x.student, x.teacher, x.labels, k, alpha, beta, T),
          refBackward: (x, g) => ({ student: ref.dkdBackward(x.student, x.teacher, x.labels, k, alpha, beta, T, g) }),
          tol: { fwd: 5e-5, bwd: 1e-4, fd: fdTolerance(rows * k) },
          fdSamples: 24,
          seed: seed++,
        });
      });
    }
  }

  it('defaults alpha=1, beta=8, T=4 and agreement with the published formulation (mdistiller dkd_loss)', async () => {
    const rows = 64;
    const k = 11;
    const labels = randomLabels(rows, k, 9);
    const s = Tensor.randn([rows, k], { seed: 10, std: 2 });
    const t = Tensor.randn([rows, k], { seed: 11, std: 4 });
    const sv = Float64Array.from(await s.toArray());
    const tv = Float64Array.from(await t.toArray());
    const value = await dkdLoss(s, t, Tensor.fromArray(labels, [rows], { dtype: 'i32' })).item();
    const published = ref.dkdAsPublished(sv, tv, Float64Array.from(labels), k, 1, 8, 4);
    expectClose([value], [published], 5e-5, 'dkdLoss vs the published formulation');
    expectClose([value], ref.dkd(sv, tv, Float64Array.from(labels), k, 1, 8, 4), 5e-5, 'dkdLoss defaults');
  });

  it('1e4-scale logits stay finite (target removed exactly, not by a -1000 mask) and match the reference', async () => {
    for (const T of temperatures) {
      await checkOp({
        name: `dkdLoss of N(0, 1e4) logits, T=${T}`,
        inputs: {
          student: { shape: [7, 11], std: 1e4 },
          teacher: { shape: [7, 11], std: 1e4, requiresGrad: false },
          labels: { shape: [7], data: randomLabels(7, 11, T), dtype: 'i32' },
        },
        gpu: (t) => dkdLoss(t.student, t.teacher, t.labels, { T }),
        ref: (x) => ref.dkd(x.student, x.teacher, x.labels, 11, 1, 8, T),
        refBackward: (x, g) => ({ student: ref.dkdBackward(x.student, x.teacher, x.labels, 11, 1, 8, T, g) }),
        tol: { fwd: 1e-6, bwd: 1e-6, fd: 1e-4 }, // FD step 0.01 at |x| = 1e4
        seed: 40 + T,
      });
    }
  });

  it('equal student and teacher give 0; the teacher gets no gradient; K = 1 is a clear error', async () => {
    const z = Tensor.randn([7, 11], { seed: 12, requiresGrad: true });
    const teacher = Tensor.randn([7, 11], { seed: 12, requiresGrad: true });
    const labels = Tensor.fromArray(randomLabels(7, 11, 13), [7], { dtype: 'i32' });
    const loss = dkdLoss(z, teacher, labels);
    expect(Math.abs(await loss.item())).toBeLessThan(1e-5);
    loss.backward();
    expect(teacher.grad).toBeNull();
    expect(z.grad).not.toBeNull();
    expect(() => dkdLoss(Tensor.zeros([3, 1]), Tensor.zeros([3, 1]), Tensor.zeros([3], { dtype: 'i32' }))).toThrow(/at least 2 classes/);
  });

  it('labels outside [0, K) are clamped like crossEntropy', async () => {
    const labels = [-5, 11, 3];
    await checkOp({
      name: 'dkdLoss with out-of-range labels',
      inputs: {
        student: { shape: [3, 11] },
        teacher: { shape: [3, 11], std: 3, requiresGrad: false },
        labels: { shape: [3], data: labels, dtype: 'i32' },
      },
      gpu: (t) => dkdLoss(t.student, t.teacher, t.labels),
      ref: (x) => ref.dkd(x.student, x.teacher, x.labels, 11, 1, 8, 4),
      refBackward: (x, g) => ({ student: ref.dkdBackward(x.student, x.teacher, x.labels, 11, 1, 8, 4, g) }),
      tol: { fwd: 5e-5, bwd: 1e-4, fd: 1e-4 },
    });
  });
});

// ---- pointwise losses ------------------------------------------------------------------------------------------

const pointwiseShapes = [[1], [7], [64, 10], [3, 5, 7, 2], [2, 16, 13, 29]];

describe('mseLoss and smoothL1Loss, gradients for both sides (tolerance: forward rel 1e-5, backward rel 1e-5; reference vs FD 1e-4, 2e-3 past 2000 elements)', () => {
  for (const shape of pointwiseShapes) {
    for (const reduction of ['mean', 'sum', 'none'] as const) {
      it(`mseLoss [${shape}] ${reduction}`, async () => {
        await checkOp({
          name: `mseLoss([${shape}], ${reduction})`,
          inputs: { input: { shape }, target: { shape } },
          gpu: (t) => mseLoss(t.input, t.target, { reduction }),
          ref: (x) => ref.pointwise('mse', x.input, x.target, reduction, shape[0]),
          refBackward: (x, g) => ref.pointwiseBackward('mse', x.input, x.target, reduction, shape[0], 0, g),
          tol: { fwd: 1e-5, bwd: 1e-5, fd: fdTolerance(shape.reduce((a, b) => a * b, 1)) },
          fdSamples: 24,
        });
      });
      for (const beta of [1, 0.5, 0]) {
        it(`smoothL1Loss [${shape}] ${reduction} beta=${beta}`, async () => {
          await checkOp({
            name: `smoothL1Loss([${shape}], ${reduction}, beta=${beta})`,
            inputs: { input: { shape }, target: { shape } },
            gpu: (t) => smoothL1Loss(t.input, t.target, { beta, reduction }),
            ref: (x) => ref.pointwise('smoothL1', x.input, x.target, reduction, shape[0], beta),
            refBackward: (x, g) => ref.pointwiseBackward('smoothL1', x.input, x.target, reduction, shape[0], beta, g),
            tol: { fwd: 1e-5, bwd: 1e-5, fd: fdTolerance(shape.reduce((a, b) => a * b, 1)) },
            fdSamples: 24,
          });
        });
      }
    }
  }

  it('FitNet hint size [64, 32, 28, 28] (1.6M elements, parallel two-pass reduction)', async () => {
    const shape = [64, 32, 28, 28];
    for (const loss of ['mse', 'smoothL1'] as const) {
      await checkOp({
        name: `${loss} on [${shape}]`,
        inputs: { input: { shape }, target: { shape } },
        gpu: (t) => (loss === 'mse' ? mseLoss(t.input, t.target) : smoothL1Loss(t.input, t.target)),
        ref: (x) => ref.pointwise(loss, x.input, x.target, 'mean', 64, 1),
        refBackward: (x, g) => ref.pointwiseBackward(loss, x.input, x.target, 'mean', 64, 1, g),
        tol: { fwd: 1e-5, bwd: 1e-5, fd: fdTolerance(64 * 32 * 28 * 28) },
        fdSamples: 4,
      });
    }
  });

  it('a ragged size (5 full chunks of 8192 elements plus 77), sum and mean', async () => {
    const n = 5 * 8192 + 77;
    for (const reduction of ['sum', 'mean'] as const) {
      await checkOp({
        name: `mseLoss ${reduction} over ${n} elements`,
        inputs: { input: { shape: [n] }, target: { shape: [n] } },
        gpu: (t) => mseLoss(t.input, t.target, { reduction }),
        ref: (x) => ref.pointwise('mse', x.input, x.target, reduction, n),
        refBackward: (x, g) => ref.pointwiseBackward('mse', x.input, x.target, reduction, n, 0, g),
        tol: { fwd: 1e-5, bwd: 1e-5, fd: fdTolerance(n) },
        fdSamples: 8,
      });
    }
  });

  it('same inputs, same bits (deterministic reductions)', async () => {
    const a = Tensor.randn([64, 32, 28, 28], { seed: 1 });
    const b = Tensor.randn([64, 32, 28, 28], { seed: 2 });
    const first = await mseLoss(a, b).item();
    const second = await mseLoss(a, b).item();
    expect(Object.is(first, second)).toBe(true);
    const logits = Tensor.randn([300, 100], { seed: 3 });
    const labels = Tensor.fromArray(randomLabels(300, 100, 4), [300], { dtype: 'i32' });
    expect(await crossEntropy(logits, labels).item()).toBe(await crossEntropy(logits, labels).item());
  });

  it('rejects mismatched shapes', () => {
    expect(() => mseLoss(Tensor.zeros([2, 3]), Tensor.zeros([3, 2]))).toThrow(/mse_loss: input \[2, 3\] and target \[3, 2\] must have the same shape/);
    expect(() => smoothL1Loss(Tensor.zeros([2]), Tensor.zeros([2]), { beta: -1 })).toThrow(/beta must be finite and >= 0/);
  });
});

describe('klDiv (F.kl_div, log_target=False), gradients for both sides (tolerance: forward rel 1e-5, backward rel 1e-5; reference vs FD 1e-4)', () => {
  const shapes = [[1, 1], [7, 11], [64, 10], [3, 5, 7]];
  for (const shape of shapes) {
    for (const reduction of ['batchmean', 'mean', 'sum', 'none'] as const) {
      it(`[${shape}] ${reduction}`, async () => {
        const k = shape[shape.length - 1];
        const rows = shape.reduce((a, b) => a * b, 1) / k;
        await checkOp({
          name: `klDiv([${shape}], ${reduction})`,
          inputs: { input: { shape }, target: { shape, data: probabilityRows(rows, k, rows + k) } },
          gpu: (t) => klDiv(t.input, t.target, { reduction }),
          ref: (x) => ref.pointwise('klDiv', x.input, x.target, reduction, shape[0]),
          refBackward: (x, g) => ref.pointwiseBackward('klDiv', x.input, x.target, reduction, shape[0], 0, g),
          tol: { fwd: 1e-5, bwd: 1e-5, fd: 1e-4 },
          fdSamples: 24,
        });
      });
    }
  }

  it('a teacher distribution with exact zeros: those terms are 0 (no NaN), target gradient 0 there', async () => {
    const rows = 13;
    const k = 11;
    const target = probabilityRows(rows, k, 3, 4); // every 4th entry exactly 0
    const input = Tensor.randn([rows, k], { seed: 6, requiresGrad: true });
    // Input log-probs with -inf would make 0 * -inf; the kernel's mask keeps the zero-target terms at exactly 0.
    await checkOp({
      name: 'klDiv with zero targets (input gradient)',
      inputs: { input: { shape: [rows, k] }, target: { shape: [rows, k], data: target, requiresGrad: false } },
      gpu: (t) => klDiv(t.input, t.target, { reduction: 'batchmean' }),
      ref: (x) => ref.pointwise('klDiv', x.input, x.target, 'batchmean', rows),
      refBackward: (x, g) => ({ input: ref.pointwiseBackward('klDiv', x.input, x.target, 'batchmean', rows, 0, g).input }),
      tol: { fwd: 1e-5, bwd: 1e-5, fd: 1e-4 },
    });
    // The target gradient (log t + 1 - x where t > 0, 0 where t == 0) is checked against the reference; finite
    // differences cannot probe t = 0 (log of a negative number).
    const targetTensor = Tensor.fromArray(target, [rows, k], { requiresGrad: true });
    klDiv(input, targetTensor, { reduction: 'none' }).backward(Tensor.ones([rows, k]));
    const got = await targetTensor.grad!.toArray();
    const want = ref.pointwiseBackward('klDiv', Float64Array.from(await input.toArray()), Float64Array.from(Float32Array.from(target)), 'none', rows, 0, new Float64Array(rows * k).fill(1)).target;
    expect(got.every(Number.isFinite)).toBe(true);
    target.forEach((v, i) => v === 0 && expect(got[i]).toBe(0));
    expectClose(got, want, 1e-5, 'klDiv target gradient with zeros');
    const perElement = await klDiv(input, targetTensor, { reduction: 'none' }).toArray();
    target.forEach((v, i) => v === 0 && expect(perElement[i]).toBe(0));
  });
});
