// 2-D pooling on NCHW tensors (PyTorch semantics): maxPool2d, avgPool2d, adaptiveAvgPool2d. Forward and
// backward side by side; every backward is a deterministic gather (see shaders/pool.wgsl).
import { isGradEnabled, record } from '../autograd/tape.js';
import { Tensor, shapeStr } from '../tensor.js';

const WG = 256;
/** Global average pooling switches from one invocation per plane to one workgroup per plane at this plane size. */
const GLOBAL_REDUCTION_MIN_HW = 256;

export type Size2 = number | [number, number];

export interface MaxPool2dOptions {
  kernelSize: Size2;
  /** Default: kernelSize. */
  stride?: Size2;
  /** Implicit -inf padding on both sides (default 0); at most half the kernel. */
  padding?: Size2;
}

export interface AvgPool2dOptions extends MaxPool2dOptions {
  /** Count the zero padding in the divisor (default true, as PyTorch). */
  countIncludePad?: boolean;
}

function pair(v: Size2, what: string, op: string): [number, number] {
  const p: [number, number] = typeof v === 'number' ? [v, v] : [v[0], v[1]];
  if (!p.every((d) => Number.isInteger(d) && d >= 0)) throw new Error(`${op}: ${what} must be non-negative integers, got ${v}`);
  return p;
}

interface Geometry {
  planes: number; // N * C
  inH: number;
  inW: number;
  outH: number;
  outW: number;
  kernel: [number, number];
  stride: [number, number];
  padding: [number, number];
}

function geometry(op: string, x: Tensor, o: MaxPool2dOptions): Geometry {
  if (x.ndim !== 4) throw new Error(`${op}: expected input [N, C, H, W], got ${shapeStr(x.shape)}`);
  const [n, c, inH, inW] = x.shape;
  const kernel = pair(o.kernelSize, 'kernelSize', op);
  const stride = pair(o.stride ?? o.kernelSize, 'stride', op);
  const padding = pair(o.padding ?? 0, 'padding', op);
  if (kernel.some((k) => k === 0) || stride.some((s) => s === 0)) throw new Error(`${op}: kernelSize and stride must be positive`);
  if (padding.some((p, d) => p > Math.floor(kernel[d] / 2))) {
    throw new Error(`${op}: padding [${padding}] should be at most half of kernelSize [${kernel}]`);
  }
  const outH = Math.floor((inH + 2 * padding[0] - kernel[0]) / stride[0]) + 1;
  const outW = Math.floor((inW + 2 * padding[1] - kernel[1]) / stride[1]) + 1;
  if (outH < 1 || outW < 1) {
    throw new Error(`${op}: input ${shapeStr(x.shape)} is too small for kernelSize [${kernel}] with padding [${padding}]`);
  }
  return { planes: n * c, inH, inW, outH, outW, kernel, stride, padding };
}

function windowParams(g: Geometry, n: number, countIncludePad = true) {
  return {
    n,
    in_h: g.inH,
    in_w: g.inW,
    out_h: g.outH,
    out_w: g.outW,
    kernel_h: g.kernel[0],
    kernel_w: g.kernel[1],
    stride_h: g.stride[0],
    stride_w: g.stride[1],
    pad_h: g.padding[0],
    pad_w: g.padding[1],
    count_include_pad: countIncludePad ? 1 : 0,
  };
}

function outShape(x: Tensor, outH: number, outW: number): number[] {
  return [x.shape[0], x.shape[1], outH, outW];
}

/**
 * maxPool2d's forward; with saveArgmax also the arg-max positions (h * W + w within each plane, i32, as PyTorch's
 * return_indices) that the backward needs. Not recorded on the tape. Exported for the benchmarks; use maxPool2d.
 */
export function maxPool2dForward(x: Tensor, options: MaxPool2dOptions, saveArgmax: boolean): { out: Tensor; argmax: Tensor | null } {
  const g = geometry('maxPool2d', x, options);
  const out = Tensor.empty(outShape(x, g.outH, g.outW), { device: x.device });
  if (out.numel === 0) return { out, argmax: null };
  const params = windowParams(g, out.numel);
  const workgroups = Math.ceil(out.numel / WG);
  if (!saveArgmax) {
    x.device.dispatch('pool', 'max_pool_forward', { bindings: { x, out }, params, workgroups });
    return { out, argmax: null };
  }
  const argmax = Tensor.empty(out.shape, { device: x.device, dtype: 'i32' });
  x.device.dispatch('pool', 'max_pool_forward_argmax', { bindings: { x, out, argmax }, params, workgroups });
  return { out, argmax };
}

/** Gradient of maxPool2d w.r.t. x [N, C, H, W] from the saved arg-max positions. Exported for the benchmarks. */
export function maxPool2dBackward(gradOut: Tensor, argmax: Tensor, x: Tensor, options: MaxPool2dOptions): Tensor {
  const g = geometry('maxPool2d', x, options);
  const gx = Tensor.empty(x.shape, { device: x.device });
  const bindings = { grad_out: gradOut, argmax_in: argmax, out: gx };
  if (g.kernel[0] <= g.stride[0] && g.kernel[1] <= g.stride[1]) {
    // Windows do not overlap: one invocation per output fills its own cell of dx.
    x.device.dispatch('pool', 'max_pool_backward_cells', {
      bindings,
      params: windowParams(g, gradOut.numel),
      workgroups: Math.ceil(gradOut.numel / WG),
    });
  } else {
    // Overlapping windows: one invocation per input gathers from every window that contains it.
    x.device.dispatch('pool', 'max_pool_backward', { bindings, params: windowParams(g, x.numel), workgroups: Math.ceil(x.numel / WG) });
  }
  return gx;
}

/** F.max_pool2d(x, kernel_size, stride, padding): -inf padding; the backward routes to the first arg-max. */
export function maxPool2d(x: Tensor, options: MaxPool2dOptions): Tensor {
  // Arg-max positions are saved only when a backward will need them.
  const { out, argmax } = maxPool2dForward(x, options, isGradEnabled() && x.requiresGrad);
  if (!argmax) return out;
  return record(
    out,
    'max_pool2d',
    [x],
    (gradOut) => {
      const gx = maxPool2dBackward(gradOut, argmax, x, options);
      argmax.dispose(); // the graph is used once
      return [gx];
    },
    [argmax],
  );
}

/** F.avg_pool2d(x, kernel_size, stride, padding, count_include_pad=True by default). */
export function avgPool2d(x: Tensor, options: AvgPool2dOptions): Tensor {
  const g = geometry('avgPool2d', x, options);
  const countIncludePad = options.countIncludePad ?? true;
  const out = Tensor.empty(outShape(x, g.outH, g.outW), { device: x.device });
  if (out.numel === 0) return out;
  x.device.dispatch('pool', 'avg_pool_forward', {
    bindings: { x, out },
    params: windowParams(g, out.numel, countIncludePad),
    workgroups: Math.ceil(out.numel / WG),
  });
  return record(out, 'avg_pool2d', [x], (gradOut) => {
    const gx = Tensor.empty(x.shape, { device: x.device });
    x.device.dispatch('pool', 'avg_pool_backward', {
      bindings: { grad_out: gradOut, out: gx },
      params: windowParams(g, x.numel, countIncludePad),
      workgroups: Math.ceil(x.numel / WG),
    });
    return [gx];
  });
}

/**
 * F.adaptive_avg_pool2d(x, output_size): output cell (i, j) averages rows [floor(i*H/oh), ceil((i+1)*H/oh)) and
 * columns likewise. outputSize 1 is global average pooling.
 */
export function adaptiveAvgPool2d(x: Tensor, outputSize: Size2): Tensor {
  if (x.ndim !== 4) throw new Error(`adaptiveAvgPool2d: expected input [N, C, H, W], got ${shapeStr(x.shape)}`);
  const [n, c, inH, inW] = x.shape;
  const [outH, outW] = pair(outputSize, 'outputSize', 'adaptiveAvgPool2d');
  if (outH === 0 || outW === 0) throw new Error(`adaptiveAvgPool2d: outputSize must be positive, got ${outputSize}`);
  if (inH === 0 || inW === 0) throw new Error(`adaptiveAvgPool2d: empty spatial size in ${shapeStr(x.shape)}`);
  const out = Tensor.empty([n, c, outH, outW], { device: x.device });
  if (out.numel === 0) return out;
  const params = { n: out.numel, in_h: inH, in_w: inW, out_h: outH, out_w: outW };
  if (outH === 1 && outW === 1 && inH * inW >= GLOBAL_REDUCTION_MIN_HW) {
    // Large planes: a workgroup-wide parallel sum per plane instead of one invocation looping over the plane.
    x.device.dispatch('pool', 'global_avg_pool_forward', {
      bindings: { x, out },
      params: { n: out.numel, planes: n * c, hw: inH * inW },
      workgroups: n * c,
    });
  } else {
    x.device.dispatch('pool', 'adaptive_avg_pool_forward', { bindings: { x, out }, params, workgroups: Math.ceil(out.numel / WG) });
  }
  return record(out, 'adaptive_avg_pool2d', [x], (gradOut) => {
    const gx = Tensor.empty(x.shape, { device: x.device });
    const workgroups = Math.ceil(x.numel / WG);
    if (outH === 1 && outW === 1) {
      x.device.dispatch('pool', 'global_avg_pool_backward', {
        bindings: { grad_out: gradOut, out: gx },
        params: { n: x.numel, planes: n * c, hw: inH * inW },
        workgroups,
      });
    } else {
      x.device.dispatch('pool', 'adaptive_avg_pool_backward', { bindings: { grad_out: gradOut, out: gx }, params: { ...params, n: x.numel }, workgroups });
    }
    return [gx];
  });
}
