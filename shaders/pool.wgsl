// 2-D pooling over NCHW planes (a plane = one (n, c) pair): max, average and adaptive average, forward and
// backward. Every backward is a gather: one invocation per input element sums, in a fixed order, the gradients of
// the output windows that read it. Deterministic, no atomics.

struct Window {
  n: u32,          // elements this dispatch computes: outputs (forward) or inputs (backward)
  in_h: i32,
  in_w: i32,
  out_h: i32,
  out_w: i32,
  kernel_h: i32,
  kernel_w: i32,
  stride_h: i32,
  stride_w: i32,
  pad_h: i32,
  pad_w: i32,
  count_include_pad: u32,
}
struct Adaptive { n: u32, in_h: u32, in_w: u32, out_h: u32, out_w: u32 }
struct Global { n: u32, planes: u32, hw: u32 }

@group(0) @binding(0) var<uniform> wp: Window;
@group(0) @binding(0) var<uniform> ap: Adaptive;
@group(0) @binding(0) var<uniform> gp: Global;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> grad_out: array<f32>;
@group(0) @binding(3) var<storage, read> argmax_in: array<i32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<storage, read_write> argmax: array<i32>;

const WG: u32 = 256u;
const GLOBAL_WG: u32 = 64u;

fn linear_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
  return gid.x + gid.y * nwg.x * WG;
}

// Output windows along one axis that contain input coordinate i: [first, last] (empty when first > last).
fn windows_containing(i: i32, pad: i32, kernel: i32, stride: i32, out_size: i32) -> vec2<i32> {
  let lowest_start = i + pad - kernel + 1;  // a window starting at o * stride - pad must have start > i - kernel
  var first = 0;
  if (lowest_start > 0) { first = (lowest_start + stride - 1) / stride; }
  let last = min((i + pad) / stride, out_size - 1);
  return vec2<i32>(first, last);
}

// Input element i of the backward passes: its position h * in_w + w in its plane, the output rows and columns
// whose windows contain it, and where its plane's outputs start.
struct InputSite { position: i32, rows: vec2<i32>, cols: vec2<i32>, out_base: u32 }

fn input_site(i: u32) -> InputSite {
  let in_plane = u32(wp.in_h * wp.in_w);
  let plane = i / in_plane;
  let position = i32(i - plane * in_plane);
  let h = position / wp.in_w;
  let w = position - h * wp.in_w;
  return InputSite(
    position,
    windows_containing(h, wp.pad_h, wp.kernel_h, wp.stride_h, wp.out_h),
    windows_containing(w, wp.pad_w, wp.kernel_w, wp.stride_w, wp.out_w),
    plane * u32(wp.out_h * wp.out_w),
  );
}

// ---- max pool --------------------------------------------------------------------------------------------------

// The max of output element o's window and its position h * in_w + w within the plane. Padding counts as -inf,
// i.e. only the window's in-bounds part is scanned (never empty: padding <= kernel / 2). The first maximum in
// row-major order wins ties (PyTorch's rule): the scan starts from the first in-bounds element and the comparison
// is strict.
struct WindowMax { value: f32, at: i32 }

fn window_max(o: u32) -> WindowMax {
  let plane_size = u32(wp.out_h * wp.out_w);
  let plane = o / plane_size;
  let rest = i32(o - plane * plane_size);
  let oy = rest / wp.out_w;
  let ox = rest - oy * wp.out_w;
  let h0 = oy * wp.stride_h - wp.pad_h;
  let w0 = ox * wp.stride_w - wp.pad_w;
  let base = plane * u32(wp.in_h * wp.in_w);
  var best_at = max(h0, 0) * wp.in_w + max(w0, 0);
  var best = x[base + u32(best_at)];
  for (var h = max(h0, 0); h < min(h0 + wp.kernel_h, wp.in_h); h++) {
    for (var w = max(w0, 0); w < min(w0 + wp.kernel_w, wp.in_w); w++) {
      let v = x[base + u32(h * wp.in_w + w)];
      if (v > best) {
        best = v;
        best_at = h * wp.in_w + w;
      }
    }
  }
  return WindowMax(best, best_at);
}

@compute @workgroup_size(256)
fn max_pool_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let o = linear_index(gid, nwg);
  if (o >= wp.n) { return; }
  out[o] = window_max(o).value;
}

// Also saves the arg-max positions for the backward.
@compute @workgroup_size(256)
fn max_pool_forward_argmax(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let o = linear_index(gid, nwg);
  if (o >= wp.n) { return; }
  let m = window_max(o);
  out[o] = m.value;
  argmax[o] = m.at;
}

// dx at (plane, h, w) = sum of dy over the windows whose arg-max is (h, w). Any kernel and stride.
@compute @workgroup_size(256)
fn max_pool_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = linear_index(gid, nwg);
  if (i >= wp.n) { return; }
  let site = input_site(i);
  let position = site.position;
  let rows = site.rows;
  let cols = site.cols;
  let out_base = site.out_base;
  var acc = 0.0;
  for (var oy = rows.x; oy <= rows.y; oy++) {
    for (var ox = cols.x; ox <= cols.y; ox++) {
      let o = out_base + u32(oy * wp.out_w + ox);
      if (argmax_in[o] == position) { acc += grad_out[o]; }
    }
  }
  out[i] = acc;
}

// Non-overlapping windows (kernel <= stride), the common 2x2/stride-2 case: an input lies in at most one window,
// so one invocation per output writes the whole stride cell around its window, dy at the arg-max and 0 elsewhere.
// The cells [o * stride - pad, (o + 1) * stride - pad) tile the input (the last row and column of cells extend to
// its edge), so every dx element is written exactly once. Cheaper than the gather: no per-input window search.
@compute @workgroup_size(256)
fn max_pool_backward_cells(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let o = linear_index(gid, nwg);
  if (o >= wp.n) { return; }
  let plane_size = u32(wp.out_h * wp.out_w);
  let plane = o / plane_size;
  let rest = i32(o - plane * plane_size);
  let oy = rest / wp.out_w;
  let ox = rest - oy * wp.out_w;
  var h1 = (oy + 1) * wp.stride_h - wp.pad_h;
  if (oy == wp.out_h - 1) { h1 = wp.in_h; }
  var w1 = (ox + 1) * wp.stride_w - wp.pad_w;
  if (ox == wp.out_w - 1) { w1 = wp.in_w; }
  let winner = argmax_in[o];
  let dy = grad_out[o];
  let base = plane * u32(wp.in_h * wp.in_w);
  for (var h = max(oy * wp.stride_h - wp.pad_h, 0); h < h1; h++) {
    for (var w = max(ox * wp.stride_w - wp.pad_w, 0); w < w1; w++) {
      let position = h * wp.in_w + w;
      out[base + u32(position)] = select(0.0, dy, position == winner);
    }
  }
}

// ---- average pool ----------------------------------------------------------------------------------------------

// PyTorch's divisor: the window clipped to the padded input (count_include_pad) or to the input itself.
fn avg_divisor(oy: i32, ox: i32) -> f32 {
  let h0 = oy * wp.stride_h - wp.pad_h;
  let w0 = ox * wp.stride_w - wp.pad_w;
  let h1 = min(h0 + wp.kernel_h, wp.in_h + wp.pad_h);
  let w1 = min(w0 + wp.kernel_w, wp.in_w + wp.pad_w);
  if (wp.count_include_pad != 0u) { return f32((h1 - h0) * (w1 - w0)); }
  return f32((min(h1, wp.in_h) - max(h0, 0)) * (min(w1, wp.in_w) - max(w0, 0)));
}

@compute @workgroup_size(256)
fn avg_pool_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let o = linear_index(gid, nwg);
  if (o >= wp.n) { return; }
  let plane_size = u32(wp.out_h * wp.out_w);
  let plane = o / plane_size;
  let rest = i32(o - plane * plane_size);
  let oy = rest / wp.out_w;
  let ox = rest - oy * wp.out_w;
  let h0 = oy * wp.stride_h - wp.pad_h;
  let w0 = ox * wp.stride_w - wp.pad_w;
  let base = plane * u32(wp.in_h * wp.in_w);
  var acc = 0.0;
  for (var h = max(h0, 0); h < min(h0 + wp.kernel_h, wp.in_h); h++) {
    for (var w = max(w0, 0); w < min(w0 + wp.kernel_w, wp.in_w); w++) {
      acc += x[base + u32(h * wp.in_w + w)];
    }
  }
  out[o] = acc / avg_divisor(oy, ox);
}

@compute @workgroup_size(256)
fn avg_pool_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = linear_index(gid, nwg);
  if (i >= wp.n) { return; }
  let site = input_site(i);
  let rows = site.rows;
  let cols = site.cols;
  let out_base = site.out_base;
  var acc = 0.0;
  for (var oy = rows.x; oy <= rows.y; oy++) {
    for (var ox = cols.x; ox <= cols.y; ox++) {
      acc += grad_out[out_base + u32(oy * wp.out_w + ox)] / avg_divisor(oy, ox);
    }
  }
  out[i] = acc;
}

// ---- adaptive average pool -------------------------------------------------------------------------------------

// PyTorch's adaptive windows along one axis: [floor(o * in / out), ceil((o + 1) * in / out)).
fn adaptive_start(o: u32, in_size: u32, out_size: u32) -> u32 {
  return (o * in_size) / out_size;
}
fn adaptive_end(o: u32, in_size: u32, out_size: u32) -> u32 {
  return ((o + 1u) * in_size + out_size - 1u) / out_size;
}

@compute @workgroup_size(256)
fn adaptive_avg_pool_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let o = linear_index(gid, nwg);
  if (o >= ap.n) { return; }
  let plane_size = ap.out_h * ap.out_w;
  let plane = o / plane_size;
  let oy = (o % plane_size) / ap.out_w;
  let ox = o % ap.out_w;
  let h0 = adaptive_start(oy, ap.in_h, ap.out_h);
  let h1 = adaptive_end(oy, ap.in_h, ap.out_h);
  let w0 = adaptive_start(ox, ap.in_w, ap.out_w);
  let w1 = adaptive_end(ox, ap.in_w, ap.out_w);
  let base = plane * ap.in_h * ap.in_w;
  var acc = 0.0;
  for (var h = h0; h < h1; h++) {
    for (var w = w0; w < w1; w++) { acc += x[base + h * ap.in_w + w]; }
  }
  out[o] = acc / f32((h1 - h0) * (w1 - w0));
}

@compute @workgroup_size(256)
fn adaptive_avg_pool_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = linear_index(gid, nwg);
  if (i >= ap.n) { return; }
  let in_plane = ap.in_h * ap.in_w;
  let plane = i / in_plane;
  let h = (i % in_plane) / ap.in_w;
  let w = i % ap.in_w;
  let out_base = plane * ap.out_h * ap.out_w;
  var acc = 0.0;
  // The first window containing h is floor(h * out / in); windows keep containing it while they start at or before h.
  for (var oy = (h * ap.out_h) / ap.in_h; oy < ap.out_h && adaptive_start(oy, ap.in_h, ap.out_h) <= h; oy++) {
    let rows = f32(adaptive_end(oy, ap.in_h, ap.out_h) - adaptive_start(oy, ap.in_h, ap.out_h));
    for (var ox = (w * ap.out_w) / ap.in_w; ox < ap.out_w && adaptive_start(ox, ap.in_w, ap.out_w) <= w; ox++) {
      let cols = f32(adaptive_end(ox, ap.in_w, ap.out_w) - adaptive_start(ox, ap.in_w, ap.out_w));
      acc += grad_out[out_base + oy * ap.out_w + ox] / (rows * cols);
    }
  }
  out[i] = acc;
}

// Global average pool over large planes: one workgroup per plane, a strided sum then a fixed-order tree.
var<workgroup> wg_sum: array<f32, GLOBAL_WG>;

@compute @workgroup_size(64)
fn global_avg_pool_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                           @builtin(local_invocation_index) lid: u32) {
  let plane = wid.x + wid.y * nwg.x;  // uniform across the workgroup, so the barriers below are legal
  let in_range = plane < gp.planes;
  var acc = 0.0;
  if (in_range) {
    let base = plane * gp.hw;
    for (var k = lid; k < gp.hw; k += GLOBAL_WG) { acc += x[base + k]; }
  }
  wg_sum[lid] = acc;
  workgroupBarrier();
  for (var stride = GLOBAL_WG / 2u; stride > 0u; stride = stride / 2u) {
    if (lid < stride) { wg_sum[lid] += wg_sum[lid + stride]; }
    workgroupBarrier();
  }
  if (in_range && lid == 0u) { out[plane] = wg_sum[0] / f32(gp.hw); }
}

// Its backward (any plane size): every element of a plane gets the plane's dy / HW.
@compute @workgroup_size(256)
fn global_avg_pool_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = linear_index(gid, nwg);
  if (i >= gp.n) { return; }
  out[i] = grad_out[i / gp.hw] / f32(gp.hw);
}
