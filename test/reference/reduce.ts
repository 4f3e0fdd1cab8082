// Float64 references for reductions.
import { numel, unravel, type Shape } from './common.js';

/** Sum (or mean) over `axes`, keepdim layout (reduced dims become 1; the flat order is the same either way). */
export function sumAxes(x: Float64Array, shape: Shape, axes: number[], mean = false): Float64Array {
  const outShape = shape.map((d, i) => (axes.includes(i) ? 1 : d));
  const out = new Float64Array(numel(outShape));
  for (let i = 0; i < x.length; i++) {
    const c = unravel(i, shape).map((v, d) => (axes.includes(d) ? 0 : v));
    let o = 0;
    for (let d = 0; d < shape.length; d++) o = o * outShape[d] + c[d];
    out[o] += x[i];
  }
  if (mean) {
    const count = axes.reduce((n, a) => n * shape[a], 1);
    for (let i = 0; i < out.length; i++) out[i] /= count;
  }
  return out;
}
