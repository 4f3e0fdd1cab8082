// Float64 references for elementwise ops with broadcasting.
import { broadcastIndex, broadcastShape, numel, unravel, type Shape } from './common.js';

export type BinaryOp = 'add' | 'sub' | 'mul';
const apply = { add: (a: number, b: number) => a + b, sub: (a: number, b: number) => a - b, mul: (a: number, b: number) => a * b };

export function binary(op: BinaryOp, a: Float64Array, aShape: Shape, b: Float64Array, bShape: Shape): Float64Array {
  const shape = broadcastShape(aShape, bShape);
  const out = new Float64Array(numel(shape));
  for (let i = 0; i < out.length; i++) {
    const c = unravel(i, shape);
    out[i] = apply[op](a[broadcastIndex(c, aShape)], b[broadcastIndex(c, bShape)]);
  }
  return out;
}

/** Gradients of sum(binary(a, b) * g) for a and b. */
export function binaryBackward(op: BinaryOp, a: Float64Array, aShape: Shape, b: Float64Array, bShape: Shape, g: Float64Array) {
  const shape = broadcastShape(aShape, bShape);
  const ga = new Float64Array(a.length);
  const gb = new Float64Array(b.length);
  for (let i = 0; i < g.length; i++) {
    const c = unravel(i, shape);
    const ia = broadcastIndex(c, aShape);
    const ib = broadcastIndex(c, bShape);
    ga[ia] += op === 'mul' ? g[i] * b[ib] : g[i];
    gb[ib] += op === 'mul' ? g[i] * a[ia] : op === 'sub' ? -g[i] : g[i];
  }
  return { a: ga, b: gb };
}

export function expand(a: Float64Array, aShape: Shape, shape: Shape): Float64Array {
  const out = new Float64Array(numel(shape));
  for (let i = 0; i < out.length; i++) out[i] = a[broadcastIndex(unravel(i, shape), aShape)];
  return out;
}
