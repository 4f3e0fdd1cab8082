// Float64 references for 2-D pooling (PyTorch semantics), NCHW. Plain loops over output windows; the backwards
// scatter each output gradient into its window (the GPU gathers instead, so the two are independent).
import type { Shape } from './common.js';

export interface PoolRefOptions {
  kernel: [number, number];
  stride: [number, number];
  padding: [number, number];
  countIncludePad?: boolean; // average pool only (default true)
}

export function poolOutputSize(shape: Shape, o: PoolRefOptions): [number, number] {
  const [, , h, w] = shape;
  return [
    Math.floor((h + 2 * o.padding[0] - o.kernel[0]) / o.stride[0]) + 1,
    Math.floor((w + 2 * o.padding[1] - o.kernel[1]) / o.stride[1]) + 1,
  ];
}

/** Calls visit(outIndex, inIndices, oy, ox) for every output window; inIndices are its in-bounds inputs, row-major. */
function forEachWindow(shape: Shape, o: PoolRefOptions, visit: (outIndex: number, inIndices: number[], oy: number, ox: number) => void): void {
  const [n, c, h, w] = shape;
  const [oh, ow] = poolOutputSize(shape, o);
  for (let plane = 0; plane < n * c; plane++) {
    for (let oy = 0; oy < oh; oy++) {
      for (let ox = 0; ox < ow; ox++) {
        const inIndices: number[] = [];
        for (let ky = 0; ky < o.kernel[0]; ky++) {
          for (let kx = 0; kx < o.kernel[1]; kx++) {
            const y = oy * o.stride[0] - o.padding[0] + ky;
            const x = ox * o.stride[1] - o.padding[1] + kx;
            if (y >= 0 && y < h && x >= 0 && x < w) inIndices.push(plane * h * w + y * w + x);
          }
        }
        visit((plane * oh + oy) * ow + ox, inIndices, oy, ox);
      }
    }
  }
}

/** Index of the first maximum among x[indices] (padding is -inf, so only in-bounds values compete). */
function firstArgMax(x: Float64Array, indices: number[]): number {
  let best = indices[0];
  for (const i of indices) if (x[i] > x[best]) best = i;
  return best;
}

export function maxPool2d(x: Float64Array, shape: Shape, o: PoolRefOptions): Float64Array {
  const [oh, ow] = poolOutputSize(shape, o);
  const out = new Float64Array(shape[0] * shape[1] * oh * ow);
  forEachWindow(shape, o, (k, idx) => {
    out[k] = x[firstArgMax(x, idx)];
  });
  return out;
}

export function maxPool2dBackward(x: Float64Array, shape: Shape, g: Float64Array, o: PoolRefOptions): Float64Array {
  const dx = new Float64Array(x.length);
  forEachWindow(shape, o, (k, idx) => {
    dx[firstArgMax(x, idx)] += g[k];
  });
  return dx;
}

/** PyTorch's divisor: the window clipped to the padded input (countIncludePad) or to the input itself. */
function avgDivisor(shape: Shape, o: PoolRefOptions, oy: number, ox: number, inBounds: number): number {
  if (o.countIncludePad === false) return inBounds;
  const [, , h, w] = shape;
  const y0 = oy * o.stride[0] - o.padding[0];
  const x0 = ox * o.stride[1] - o.padding[1];
  const y1 = Math.min(y0 + o.kernel[0], h + o.padding[0]);
  const x1 = Math.min(x0 + o.kernel[1], w + o.padding[1]);
  return (y1 - y0) * (x1 - x0);
}

export function avgPool2d(x: Float64Array, shape: Shape, o: PoolRefOptions): Float64Array {
  const [oh, ow] = poolOutputSize(shape, o);
  const out = new Float64Array(shape[0] * shape[1] * oh * ow);
  forEachWindow(shape, o, (k, idx, oy, ox) => {
    let s = 0;
    for (const i of idx) s += x[i];
    out[k] = s / avgDivisor(shape, o, oy, ox, idx.length);
  });
  return out;
}

export function avgPool2dBackward(shape: Shape, g: Float64Array, o: PoolRefOptions): Float64Array {
  const dx = new Float64Array(shape.reduce((a, b) => a * b, 1));
  forEachWindow(shape, o, (k, idx, oy, ox) => {
    const d = avgDivisor(shape, o, oy, ox, idx.length);
    for (const i of idx) dx[i] += g[k] / d;
  });
  return dx;
}

/** Adaptive windows: rows [floor(i * H / oh), ceil((i + 1) * H / oh)), columns likewise. */
function adaptiveWindows(shape: Shape, outH: number, outW: number, visit: (outIndex: number, inIndices: number[]) => void): void {
  const [n, c, h, w] = shape;
  for (let plane = 0; plane < n * c; plane++) {
    for (let oy = 0; oy < outH; oy++) {
      const y0 = Math.floor((oy * h) / outH);
      const y1 = Math.ceil(((oy + 1) * h) / outH);
      for (let ox = 0; ox < outW; ox++) {
        const x0 = Math.floor((ox * w) / outW);
        const x1 = Math.ceil(((ox + 1) * w) / outW);
        const idx: number[] = [];
        for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) idx.push(plane * h * w + y * w + x);
        visit((plane * outH + oy) * outW + ox, idx);
      }
    }
  }
}

export function adaptiveAvgPool2d(x: Float64Array, shape: Shape, outH: number, outW: number): Float64Array {
  const out = new Float64Array(shape[0] * shape[1] * outH * outW);
  adaptiveWindows(shape, outH, outW, (k, idx) => {
    let s = 0;
    for (const i of idx) s += x[i];
    out[k] = s / idx.length;
  });
  return out;
}

export function adaptiveAvgPool2dBackward(shape: Shape, g: Float64Array, outH: number, outW: number): Float64Array {
  const dx = new Float64Array(shape.reduce((a, b) => a * b, 1));
  adaptiveWindows(shape, outH, outW, (k, idx) => {
    for (const i of idx) dx[i] += g[k] / idx.length;
  });
  return dx;
}
