// Softmax and log-softmax along the last dim at temperature T (softmax(z / T), as KD uses it). Forward and
// backward side by side; the backward reads the forward output, so it never recomputes the row statistics.
import { record } from '../autograd/tape.js';
import { Tensor, shapeStr } from '../tensor.js';

export interface SoftmaxOptions {
  /** The dim the distribution runs along. Only the last one is supported (-1, the default, or ndim - 1). */
  dim?: number;
  /** Temperature: the op computes softmax(z / T). Default 1; must be finite and > 0. */
  T?: number;
}

/** Rows and row length for an op along the last dim; a clear error for any other dim or a bad T. */
function rowLayout(z: Tensor, options: SoftmaxOptions, op: string): { rows: number; k: number; T: number } {
  const { dim = -1, T = 1 } = options;
  if (z.dtype !== 'f32') throw new Error(`${op}: expects a f32 tensor, got ${z}`);
  if (z.ndim === 0) throw new Error(`${op}: needs at least one dim, got a scalar`);
  const resolved = dim < 0 ? dim + z.ndim : dim;
  if (resolved !== z.ndim - 1) {
    throw new Error(`${op}: only the last dim is supported (dim=-1 or ${z.ndim - 1}), got dim=${dim} for shape ${shapeStr(z.shape)}`);
  }
  if (!(T > 0) || !Number.isFinite(T)) throw new Error(`${op}: temperature T must be finite and > 0, got ${T}`);
  const k = z.shape[z.ndim - 1];
  return { rows: k === 0 ? 0 : z.numel / k, k, T };
}

function rowwise(kind: 'softmax' | 'log_softmax', z: Tensor, options: SoftmaxOptions): Tensor {
  const op = kind === 'softmax' ? 'softmax' : 'logSoftmax';
  const { rows, k, T } = rowLayout(z, options, op);
  const params = { rows, k, inv_t: 1 / T };
  const out = Tensor.empty(z.shape, { device: z.device });
  if (out.numel > 0) {
    z.device.dispatch('softmax', `${kind}_forward`, { bindings: { z, out }, params, workgroups: rows });
  }
  return record(out, op, [z], (g) => {
    const gz = Tensor.empty(z.shape, { device: z.device });
    if (gz.numel > 0) {
      z.device.dispatch('softmax', `${kind}_backward`, { bindings: { y: out, grad_out: g, grad_z: gz }, params, workgroups: rows });
    }
    return [gz];
  });
}

/** softmax(z / T) along the last dim (torch.softmax(z / T, dim=-1)). */
export function softmax(z: Tensor, options: SoftmaxOptions = {}): Tensor {
  return rowwise('softmax', z, options);
}

/** log_softmax(z / T) along the last dim, computed as (z - max)/T - log(sum exp((z - max)/T)). */
export function logSoftmax(z: Tensor, options: SoftmaxOptions = {}): Tensor {
  return rowwise('log_softmax', z, options);
}
