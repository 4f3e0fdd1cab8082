// Elementwise ops with numpy/PyTorch broadcasting: add, sub, mul, scale, plus the helpers the tape needs
// (clone, accumulateInto, expand, sumTo). Forward and backward side by side.
import { record } from '../autograd/tape.js';
import { Tensor, shapeStr, type Shape } from '../tensor.js';
import { sum } from './reduce.js';

const WG = 256;
const MAX_RANK = 8;

/** Contiguous strides of a shape. */
export function stridesOf(shape: Shape): number[] {
  const strides = new Array<number>(shape.length);
  let s = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    strides[d] = s;
    s *= shape[d];
  }
  return strides;
}

/** numpy broadcasting: the output shape, or an error naming both shapes. */
export function broadcastShapes(a: Shape, b: Shape, op = 'broadcast'): number[] {
  const rank = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < rank; i++) {
    const da = a[a.length - rank + i] ?? 1;
    const db = b[b.length - rank + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) {
      throw new Error(`${op}: shapes ${shapeStr(a)} and ${shapeStr(b)} do not broadcast (dim ${i}: ${da} vs ${db})`);
    }
    out.push(da === 1 ? db : da);
  }
  return out;
}

/** Strides that read `shape` as if broadcast to `outShape` (0 along broadcast dims). */
function broadcastStrides(shape: Shape, outShape: Shape): number[] {
  const own = stridesOf(shape);
  const offset = outShape.length - shape.length;
  return outShape.map((d, i) => (i < offset || shape[i - offset] === 1 ? 0 : own[i - offset]));
}

function sameShape(a: Shape, b: Shape): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

const OPS = { add: 0, sub: 1, mul: 2 } as const;

function binary(op: keyof typeof OPS, a: Tensor, b: Tensor): Tensor {
  const shape = sameShape(a.shape, b.shape) ? [...a.shape] : broadcastShapes(a.shape, b.shape, op);
  if (shape.length > MAX_RANK) throw new Error(`${op}: rank ${shape.length} > ${MAX_RANK}`);
  const out = Tensor.empty(shape, { device: a.device });
  if (out.numel === 0) return out;
  const constants = { OP: OPS[op] };
  const workgroups = Math.ceil(out.numel / WG);
  if (sameShape(a.shape, b.shape)) {
    a.device.dispatch('elementwise', 'binary_same', { bindings: { a, b, out }, params: { n: out.numel }, workgroups, constants });
  } else {
    a.device.dispatch('elementwise', 'binary_broadcast', {
      bindings: { a, b, out },
      params: {
        n: out.numel,
        rank: shape.length,
        shape,
        a_strides: broadcastStrides(a.shape, shape),
        b_strides: broadcastStrides(b.shape, shape),
      },
      workgroups,
      constants,
    });
  }
  return out;
}

export function add(a: Tensor, b: Tensor): Tensor {
  return record(binary('add', a, b), 'add', [a, b], (g) => [sumTo(g, a.shape), sumTo(g, b.shape)]);
}

export function sub(a: Tensor, b: Tensor): Tensor {
  return record(binary('sub', a, b), 'sub', [a, b], (g) => [sumTo(g, a.shape), b.requiresGrad ? sumTo(scale(g, -1), b.shape) : null]);
}

export function mul(a: Tensor, b: Tensor): Tensor {
  return record(binary('mul', a, b), 'mul', [a, b], (g) => [
    a.requiresGrad ? sumTo(binary('mul', g, b), a.shape) : null,
    b.requiresGrad ? sumTo(binary('mul', g, a), b.shape) : null,
  ]);
}

/** a * s for a scalar s. */
export function scale(a: Tensor, s: number): Tensor {
  const out = Tensor.empty(a.shape, { device: a.device });
  if (out.numel > 0) {
    a.device.dispatch('elementwise', 'scale', { bindings: { a, out }, params: { n: a.numel, s }, workgroups: Math.ceil(a.numel / WG) });
  }
  return record(out, 'scale', [a], (g) => [scale(g, s)]);
}

export function neg(a: Tensor): Tensor {
  return scale(a, -1);
}

/** A copy with its own storage (off the tape). */
export function clone(a: Tensor): Tensor {
  const out = Tensor.empty(a.shape, { device: a.device, dtype: a.dtype });
  if (out.numel > 0) a.device.copy(a, out);
  return out;
}

/** dst += src in place (gradient accumulation; not recorded). */
export function accumulateInto(dst: Tensor, src: Tensor): void {
  if (dst.numel !== src.numel) throw new Error(`accumulateInto: ${dst} += ${src}`);
  if (dst.numel === 0) return;
  dst.knownZero = false;
  dst.device.dispatch('elementwise', 'accumulate', { bindings: { a: src, out: dst }, params: { n: dst.numel }, workgroups: Math.ceil(dst.numel / WG) });
}

/** Broadcasts a to `shape` (numpy rules), times s; the backward sums back. */
export function expand(a: Tensor, shape: Shape, s = 1): Tensor {
  const target = broadcastShapes(a.shape, shape, 'expand');
  if (!sameShape(target, shape)) throw new Error(`expand: ${shapeStr(a.shape)} cannot expand to ${shapeStr(shape)}`);
  const out = Tensor.empty(shape, { device: a.device });
  if (out.numel > 0) {
    a.device.dispatch('elementwise', 'expand', {
      bindings: { a, out },
      params: { n: out.numel, rank: shape.length, s, shape, a_strides: broadcastStrides(a.shape, shape) },
      workgroups: Math.ceil(out.numel / WG),
    });
  }
  return record(out, 'expand', [a], (g) => [sumTo(s === 1 ? g : scale(g, s), a.shape)]);
}

/** Sums g over the axes along which `shape` was broadcast to g's shape (the backward of broadcasting). */
export function sumTo(g: Tensor, shape: Shape): Tensor {
  if (sameShape(g.shape, shape)) return g;
  const offset = g.shape.length - shape.length;
  const axes: number[] = [];
  for (let d = 0; d < g.shape.length; d++) {
    if (d < offset || (shape[d - offset] === 1 && g.shape[d] !== 1)) axes.push(d);
  }
  const summed = sum(g, axes, true);
  const shaped = summed.reshape(shape);
  summed.dispose(); // the view keeps the storage alive
  return shaped;
}
