// Float64 references for softmax / log-softmax along the last dim at temperature T (rows of length k).

/** log_softmax(z / T) of each row: (z - max)/T - log(sum exp((z - max)/T)). */
export function logSoftmax(z: Float64Array, k: number, T = 1): Float64Array {
  const out = new Float64Array(z.length);
  for (let base = 0; base < z.length; base += k) {
    let max = -Infinity;
    for (let j = 0; j < k; j++) max = Math.max(max, z[base + j]);
    let sumExp = 0;
    for (let j = 0; j < k; j++) sumExp += Math.exp((z[base + j] - max) / T);
    const logSum = Math.log(sumExp);
    for (let j = 0; j < k; j++) out[base + j] = (z[base + j] - max) / T - logSum;
  }
  return out;
}

export function softmax(z: Float64Array, k: number, T = 1): Float64Array {
  return logSoftmax(z, k, T).map(Math.exp);
}

/** Gradient of sum(softmax(z / T) * g): y * (g - sum_j g_j y_j) / T per row. */
export function softmaxBackward(z: Float64Array, k: number, T: number, g: Float64Array): Float64Array {
  const y = softmax(z, k, T);
  const out = new Float64Array(z.length);
  for (let base = 0; base < z.length; base += k) {
    let dot = 0;
    for (let j = 0; j < k; j++) dot += g[base + j] * y[base + j];
    for (let j = 0; j < k; j++) out[base + j] = (y[base + j] * (g[base + j] - dot)) / T;
  }
  return out;
}

/** Gradient of sum(log_softmax(z / T) * g): (g - softmax * sum_j g_j) / T per row. */
export function logSoftmaxBackward(z: Float64Array, k: number, T: number, g: Float64Array): Float64Array {
  const y = softmax(z, k, T);
  const out = new Float64Array(z.length);
  for (let base = 0; base < z.length; base += k) {
    let sumG = 0;
    for (let j = 0; j < k; j++) sumG += g[base + j];
    for (let j = 0; j < k; j++) out[base + j] = (g[base + j] - y[base + j] * sumG) / T;
  }
  return out;
}
