// Reductions over axes: sum and mean (PyTorch's `dim` and `keepdim`). Forward and backward side by side.
import { record } from '../autograd/tape.js';
import { Tensor, shapeStr, type Shape } from '../tensor.js';
import { expand, stridesOf } from './elementwise.js';

const MAX_RANK = 8;

function normaliseAxes(shape: Shape, axes: number | number[] | undefined, op: string): number[] {
  const list = axes === undefined ? shape.map((_, i) => i) : Array.isArray(axes) ? axes : [axes];
  const out = list.map((a) => (a < 0 ? a + shape.length : a));
  for (const a of out) {
    if (!Number.isInteger(a) || a < 0 || a >= shape.length) {
      throw new Error(`${op}: axis ${a} out of range for shape ${shapeStr(shape)}`);
    }
  }
  if (new Set(out).size !== out.length) throw new Error(`${op}: repeated axis in [${list.join(', ')}]`);
  return out.sort((x, y) => x - y);
}

function reduceShape(shape: Shape, axes: number[], keepdim: boolean): number[] {
  return keepdim ? shape.map((d, i) => (axes.includes(i) ? 1 : d)) : shape.filter((_, i) => !axes.includes(i));
}

/** Scaled sum over `axes` (all axes when omitted): the kernel behind sum and mean. */
function reduceSum(x: Tensor, axes: number[], keepdim: boolean, s: number): Tensor {
  if (x.ndim > MAX_RANK) throw new Error(`sum: rank ${x.ndim} > ${MAX_RANK}`);
  const strides = stridesOf(x.shape);
  const kept = x.shape.map((_, i) => i).filter((i) => !axes.includes(i));
  const outShape = reduceShape(x.shape, axes, keepdim);
  const out = Tensor.empty(outShape, { device: x.device });
  const nOut = out.numel;
  if (nOut === 0) return out;
  x.device.dispatch('reduce', 'sum_axes', {
    bindings: { x, out },
    params: {
      n_out: nOut,
      count: axes.reduce((n, a) => n * x.shape[a], 1),
      kept_rank: kept.length,
      red_rank: axes.length,
      s,
      kept_shape: kept.map((i) => x.shape[i]),
      kept_strides: kept.map((i) => strides[i]),
      red_shape: axes.map((i) => x.shape[i]),
      red_strides: axes.map((i) => strides[i]),
    },
    workgroups: nOut,
  });
  return out;
}

function reduceOp(op: 'sum' | 'mean', x: Tensor, dim: number | number[] | undefined, keepdim: boolean): Tensor {
  const axes = normaliseAxes(x.shape, dim, op);
  const count = axes.reduce((n, a) => n * x.shape[a], 1);
  const s = op === 'mean' ? 1 / count : 1;
  const out = reduceSum(x, axes, keepdim, s);
  return record(out, op, [x], (g) => {
    const kept = g.reshape(reduceShape(x.shape, axes, true));
    const gx = expand(kept, x.shape, s);
    kept.dispose();
    return [gx];
  });
}

/** Sum over `dim` (one axis, a list, or all when omitted), like torch.sum. */
export function sum(x: Tensor, dim?: number | number[], keepdim = false): Tensor {
  return reduceOp('sum', x, dim, keepdim);
}

/** Mean over `dim` (one axis, a list, or all when omitted), like torch.mean. */
export function mean(x: Tensor, dim?: number | number[], keepdim = false): Tensor {
  return reduceOp('mean', x, dim, keepdim);
}
