// Float64 references for the GEMM family: the strided gemm primitive, matmul (with batch broadcasting) and linear,
// forward and backward. Plain loops, written for clarity.

export interface GemmRefArgs {
  batch: number;
  m: number;
  n: number;
  k: number;
  aStrides: readonly [number, number, number];
  bStrides: readonly [number, number, number];
  alpha?: number;
  bias?: { values: ArrayLike<number>; along: 'm' | 'n' };
  /** The output's prior contents, added when given (gemm's accumulate). */
  accumulateInto?: ArrayLike<number>;
}

/** out[b, i, j] = alpha * sum_k A[b, i, k] * B[b, k, j] (+ bias) (+ prior out), A and B read through strides. */
export function gemm(a: ArrayLike<number>, b: ArrayLike<number>, g: GemmRefArgs): Float64Array {
  const { batch, m, n, k, aStrides, bStrides, alpha = 1 } = g;
  const out = new Float64Array(batch * m * n);
  for (let bi = 0; bi < batch; bi++) {
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let dot = 0;
        for (let kk = 0; kk < k; kk++) {
          dot += a[bi * aStrides[0] + i * aStrides[1] + kk * aStrides[2]] * b[bi * bStrides[0] + kk * bStrides[1] + j * bStrides[2]];
        }
        let v = alpha * dot;
        if (g.bias) v += g.bias.values[g.bias.along === 'm' ? i : j];
        const o = (bi * m + i) * n + j;
        if (g.accumulateInto) v += g.accumulateInto[o];
        out[o] = v;
      }
    }
  }
  return out;
}

/** Batch count and broadcast flags of matmul(A, B) for 2-D / 3-D shapes (torch.matmul rules). */
function matmulDims(aShape: readonly number[], bShape: readonly number[]) {
  const [m, k] = aShape.slice(-2);
  const n = bShape[bShape.length - 1];
  const batchA = aShape.length === 3 ? aShape[0] : 1;
  const batchB = bShape.length === 3 ? bShape[0] : 1;
  const batch = Math.max(batchA, batchB);
  return { m, k, n, batch, aShared: batchA === 1, bShared: batchB === 1 };
}

/** torch.matmul for 2-D and 3-D operands (a batch of 1, or a 2-D operand, is shared by every batch). */
export function matmul(a: ArrayLike<number>, aShape: readonly number[], b: ArrayLike<number>, bShape: readonly number[]): Float64Array {
  const { m, k, n, batch, aShared, bShared } = matmulDims(aShape, bShape);
  const out = new Float64Array(batch * m * n);
  for (let bi = 0; bi < batch; bi++) {
    const a0 = aShared ? 0 : bi * m * k;
    const b0 = bShared ? 0 : bi * k * n;
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let dot = 0;
        for (let kk = 0; kk < k; kk++) dot += a[a0 + i * k + kk] * b[b0 + kk * n + j];
        out[(bi * m + i) * n + j] = dot;
      }
    }
  }
  return out;
}

/** Gradients of sum(matmul(A, B) * g): dA = g @ Bᵀ, dB = Aᵀ @ g, summed over the batch for a shared operand. */
export function matmulBackward(
  a: ArrayLike<number>,
  aShape: readonly number[],
  b: ArrayLike<number>,
  bShape: readonly number[],
  g: ArrayLike<number>,
): { a: Float64Array; b: Float64Array } {
  const { m, k, n, batch, aShared, bShared } = matmulDims(aShape, bShape);
  const da = new Float64Array(a.length);
  const db = new Float64Array(b.length);
  for (let bi = 0; bi < batch; bi++) {
    const a0 = aShared ? 0 : bi * m * k;
    const b0 = bShared ? 0 : bi * k * n;
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        const gij = g[(bi * m + i) * n + j];
        for (let kk = 0; kk < k; kk++) {
          da[a0 + i * k + kk] += gij * b[b0 + kk * n + j];
          db[b0 + kk * n + j] += gij * a[a0 + i * k + kk];
        }
      }
    }
  }
  return { a: da, b: db };
}

/** torch.nn.functional.linear on x [rows, in]: y = x @ weightᵀ + bias. */
export function linear(x: ArrayLike<number>, weight: ArrayLike<number>, bias: ArrayLike<number> | null, rows: number, inF: number, outF: number): Float64Array {
  const y = new Float64Array(rows * outF);
  for (let r = 0; r < rows; r++) {
    for (let o = 0; o < outF; o++) {
      let v = bias ? bias[o] : 0;
      for (let i = 0; i < inF; i++) v += x[r * inF + i] * weight[o * inF + i];
      y[r * outF + o] = v;
    }
  }
  return y;
}

/** Gradients of sum(linear(x, weight, bias) * g). */
export function linearBackward(
  x: ArrayLike<number>,
  weight: ArrayLike<number>,
  g: ArrayLike<number>,
  rows: number,
  inF: number,
  outF: number,
): { x: Float64Array; weight: Float64Array; bias: Float64Array } {
  const dx = new Float64Array(rows * inF);
  const dw = new Float64Array(outF * inF);
  const db = new Float64Array(outF);
  for (let r = 0; r < rows; r++) {
    for (let o = 0; o < outF; o++) {
      const gro = g[r * outF + o];
      db[o] += gro;
      for (let i = 0; i < inF; i++) {
        dx[r * inF + i] += gro * weight[o * inF + i];
        dw[o * inF + i] += gro * x[r * inF + i];
      }
    }
  }
  return { x: dx, weight: dw, bias: db };
}
