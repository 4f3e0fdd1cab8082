// GEMM family: the strided batched gemm() primitive (used by linear, matmul and pointwise conv).
import type { BufferLike, Device } from '../gpu/device.js';

export interface GemmArgs {
  a: BufferLike;
  b: BufferLike;
  out: BufferLike; // contiguous [batch, m, n]
  batch: number;
  m: number;
  n: number;
  k: number;
  /** Element strides of A over (batch, m, k); batch stride 0 broadcasts A over the batch. */
  aStrides: [number, number, number];
  /** Element strides of B over (batch, k, n). */
  bStrides: [number, number, number];
  alpha?: number;
  /** Bias added after alpha: one value per row (m) or per column (n). */
  bias?: { values: BufferLike; along: 'm' | 'n' };
  /** out += result instead of out = result. */
  accumulate?: boolean;
}

/** Records out[b] = alpha * A[b] @ B[b] (+ bias) (+ out). Shapes are not checked here: callers own them. */
export function gemm(device: Device, g: GemmArgs): void {
  if (g.batch * g.m * g.n === 0) return;
  device.dispatch('matmul', 'gemm_naive', {
    bindings: { a: g.a, b: g.b, bias: g.bias?.values ?? g.a, out: g.out },
    params: {
      batch: g.batch,
      m: g.m,
      n: g.n,
      k: g.k,
      a_batch: g.aStrides[0],
      a_row: g.aStrides[1],
      a_col: g.aStrides[2],
      b_batch: g.bStrides[0],
      b_row: g.bStrides[1],
      b_col: g.bStrides[2],
      alpha: g.alpha ?? 1,
      bias_mode: g.bias ? (g.bias.along === 'm' ? 1 : 2) : 0,
      accumulate: g.accumulate ? 1 : 0,
    },
    workgroups: [Math.ceil(g.n / 8), Math.ceil(g.m / 8), g.batch],
  });
}
