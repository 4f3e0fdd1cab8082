// One helper proves an op: the GPU forward against a float64 reference, the GPU backward against the
// reference backward (or against finite differences when the op has no analytic reference backward), and the
// reference backward against central finite differences of the reference forward.
//
// Error measure (stated once, used everywhere): for each element, |got - want| / (|want| + 0.01 * max|want|),
// i.e. relative error with a floor of 1% of the tensor's scale so values near zero from cancellation do not
// dominate. A check fails when the largest such error exceeds its tolerance.
import { expect } from 'vitest';
import { Tensor, rng, type DType } from '../../src/index.js';
import { numel, type Shape } from '../reference/common.js';

export type Arrays = Record<string, Float64Array>;

export interface InputSpec {
  shape: Shape;
  /** Explicit values (rounded to the dtype); otherwise seeded normal(0, 1) values. */
  data?: ArrayLike<number>;
  dtype?: DType;
  /** Default: true for f32 inputs. */
  requiresGrad?: boolean;
  /** Scale of the random values (default 1). */
  std?: number;
}

export interface OpCheck {
  name: string;
  inputs: Record<string, InputSpec>;
  /** The op on the GPU. May return extra tensors; the first (or only) one is checked. */
  gpu: (t: Record<string, Tensor>) => Tensor;
  /** Float64 forward; returns the output values (flat, same order as the GPU output). */
  ref: (x: Arrays) => Float64Array;
  /** Float64 analytic backward: gradient of sum(out * gOut) for each differentiable input. */
  refBackward?: (x: Arrays, gOut: Float64Array) => Arrays;
  /**
   * Tolerances: forward (default 1e-4), GPU backward (default 1e-4), reference vs finite differences (1e-6);
   * `terms`: an output element also passes when its error is within `terms` of refTerms' magnitude for it.
   */
  tol?: { fwd?: number; bwd?: number; fd?: number; terms?: number };
  /**
   * For outputs that are differences of nearly equal terms (a small KL): the sum of |terms| behind each output
   * element. float32 cannot do better than rounding those terms, so the forward error is also measured against it.
   */
  refTerms?: (x: Arrays) => Float64Array;
  /** Skip the backward check (ops that are not differentiable, e.g. argmax). */
  forwardOnly?: boolean;
  /** Finite-difference probes per input (all elements when the input is smaller). Default 48. */
  fdSamples?: number;
  seed?: number;
}

export function maxRelError(got: ArrayLike<number>, want: ArrayLike<number>): { err: number; at: number } {
  if (got.length !== want.length) throw new Error(`length ${got.length} vs ${want.length}`);
  let scale = 0;
  for (let i = 0; i < want.length; i++) scale = Math.max(scale, Math.abs(want[i]));
  const floor = 0.01 * scale || 1e-30;
  let err = 0;
  let at = -1;
  for (let i = 0; i < want.length; i++) {
    const e = Math.abs(got[i] - want[i]) / (Math.abs(want[i]) + floor);
    if (!(e <= err)) {
      err = Number.isNaN(e) ? Infinity : e;
      at = i;
    }
  }
  return { err, at };
}

/** Asserts got ≈ want under the module's error measure, with a message that says where it failed. */
export function expectClose(got: ArrayLike<number>, want: ArrayLike<number>, tol: number, what: string): void {
  const { err, at } = maxRelError(got, want);
  if (!(err <= tol)) {
    expect.fail(`${what}: max rel error ${err.toExponential(2)} > ${tol} at [${at}]: got ${got[at]}, want ${want[at]}`);
  }
}

/** Each element within `tol` (the module's error measure) or within `termsTol` of the sum of |terms| behind it. */
export function expectCloseOrWithinTerms(got: ArrayLike<number>, want: ArrayLike<number>, terms: ArrayLike<number>, tol: number, termsTol: number, what: string): void {
  const { err } = maxRelError(got, want);
  if (err <= tol) return;
  for (let i = 0; i < want.length; i++) {
    const abs = Math.abs(got[i] - want[i]);
    if (!(abs <= termsTol * terms[i]) && !(maxRelError([got[i]], [want[i]]).err <= tol)) {
      expect.fail(`${what}: at [${i}] got ${got[i]}, want ${want[i]}: error ${abs.toExponential(2)} > ${termsTol} x sum of |terms| ${terms[i].toExponential(3)}, and rel > ${tol}`);
    }
  }
}

function makeInput(spec: InputSpec, next: () => number): Float64Array {
  const n = numel(spec.shape);
  const out = new Float64Array(n);
  if (spec.data) {
    if (spec.data.length !== n) throw new Error(`input data has ${spec.data.length} values for shape [${spec.shape}]`);
    for (let i = 0; i < n; i++) out[i] = spec.data[i];
  } else {
    const std = spec.std ?? 1;
    for (let i = 0; i < n; i += 2) {
      const r = Math.sqrt(-2 * Math.log(1 - next()));
      const th = 2 * Math.PI * next();
      out[i] = std * r * Math.cos(th);
      if (i + 1 < n) out[i + 1] = std * r * Math.sin(th);
    }
  }
  // The reference sees exactly the values the GPU sees.
  const dtype = spec.dtype ?? 'f32';
  const rounded = dtype === 'f32' ? Float32Array.from(out) : Int32Array.from(out);
  return Float64Array.from(rounded);
}

/** Gradient of sum(ref(x) * gOut) w.r.t. x[name] by central differences, at `indices`. */
function finiteDifferences(c: OpCheck, x: Arrays, gOut: Float64Array, name: string, indices: number[]): Float64Array {
  const out = new Float64Array(indices.length);
  const probe = { ...x, [name]: Float64Array.from(x[name]) };
  const loss = () => {
    const y = c.ref(probe);
    let s = 0;
    for (let i = 0; i < y.length; i++) s += y[i] * gOut[i];
    return s;
  };
  indices.forEach((idx, k) => {
    const x0 = probe[name][idx];
    const h = 1e-6 * Math.max(1, Math.abs(x0));
    probe[name][idx] = x0 + h;
    const up = loss();
    probe[name][idx] = x0 - h;
    const down = loss();
    probe[name][idx] = x0;
    out[k] = (up - down) / (2 * h);
  });
  return out;
}

function sampleIndices(n: number, count: number, next: () => number): number[] {
  if (n <= count) return Array.from({ length: n }, (_, i) => i);
  const picked = new Set<number>([0, n - 1]); // the edges catch off-by-one indexing
  while (picked.size < count) picked.add(Math.floor(next() * n));
  return [...picked].sort((a, b) => a - b);
}

export async function checkOp(c: OpCheck): Promise<void> {
  const next = rng(c.seed ?? 1234);
  const tol = { fwd: 1e-4, bwd: 1e-4, fd: 1e-6, ...c.tol };
  const x: Arrays = {};
  const tensors: Record<string, Tensor> = {};
  const differentiable: string[] = [];
  for (const [name, spec] of Object.entries(c.inputs)) {
    x[name] = makeInput(spec, next);
    const dtype = spec.dtype ?? 'f32';
    const requiresGrad = !c.forwardOnly && (spec.requiresGrad ?? dtype === 'f32');
    tensors[name] = Tensor.fromArray(x[name], spec.shape, { dtype, requiresGrad });
    if (requiresGrad) differentiable.push(name);
  }

  const out = c.gpu(tensors);
  const want = c.ref(x);
  const got = await out.toArray();
  if (c.refTerms) expectCloseOrWithinTerms(got, want, c.refTerms(x), tol.fwd, tol.terms ?? 1e-6, `${c.name} forward`);
  else expectClose(got, want, tol.fwd, `${c.name} forward`);
  if (c.forwardOnly) return;

  const gOut = makeInput({ shape: out.shape }, next);
  out.backward(Tensor.fromArray(gOut, out.shape));
  const analytic = c.refBackward?.(x, gOut);
  for (const name of differentiable) {
    const grad = tensors[name].grad;
    expect(grad, `${c.name}: input '${name}' got no gradient`).not.toBeNull();
    const gpuGrad = await grad!.toArray();
    const indices = sampleIndices(x[name].length, c.fdSamples ?? 48, next);
    const fd = finiteDifferences(c, x, gOut, name, indices);
    if (analytic) {
      const ref = analytic[name];
      expect(ref, `${c.name}: refBackward gave nothing for '${name}'`).toBeDefined();
      expectClose(gpuGrad, ref, tol.bwd, `${c.name} backward d/d${name} (GPU vs reference)`);
      expectClose(indices.map((i) => ref[i]), fd, tol.fd, `${c.name} reference backward d/d${name} vs finite differences`);
    } else {
      // No analytic reference: the GPU gradient against float64 finite differences directly.
      expectClose(indices.map((i) => gpuGrad[i]), fd, tol.bwd, `${c.name} backward d/d${name} (GPU vs finite differences)`);
    }
  }
}
