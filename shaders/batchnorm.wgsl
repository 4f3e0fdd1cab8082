// BatchNorm2d over NCHW tensors, forward and backward.
//
// A channel's elements are r = n * HW + s (batch n, spatial s), stored at x[(n * C + c) * HW + s]. Per-channel
// reductions over those `count` = N * HW elements run in two fixed-order passes: workgroup (p, c) reduces the
// contiguous range r in [p * chunk, (p + 1) * chunk) to one partial, then one workgroup per channel combines the
// partials. Deterministic, no atomics.
//
// Statistics are numerically sound for data whose mean is large relative to its spread:
//  - every value is taken relative to a per-channel pivot, the channel's first element (so x - pivot is exact for
//    nearby values and the mean is stored as pivot + a small, precise offset), and
//  - each invocation computes count, mean and M2 (sum of squared deviations) of its own few elements in two
//    passes (mean, then squared deviations from it), and these are merged with Chan's formula; never
//    sum(x^2) - sum(x)^2 / n.
//
// The saved statistics `stats` are three rows of C values: [0, C) pivot, [C, 2C) mean - pivot, [2C, 3C) 1/std.
// Training mode uses the batch statistics (biased variance); evaluation mode stores the running mean as the pivot,
// 0 as the offset and 1/sqrt(running_var + eps).

struct Reduce {
  count: u32,     // elements per channel: N * HW
  hw: u32,        // H * W
  channels: u32,
  chunk: u32,     // elements per partial
  partials: u32,  // partials per channel
  eps: f32,
  momentum: f32,
}
struct Elementwise {
  n: u32,         // N * C * HW
  hw: u32,
  channels: u32,
  count: u32,     // N * HW (the backward divides by it)
  has_weight: u32,
  has_bias: u32,
  training: u32,
}
struct RunningStats { channels: u32, eps: f32 }

@group(0) @binding(0) var<uniform> rp: Reduce;
@group(0) @binding(0) var<uniform> ep: Elementwise;
@group(0) @binding(0) var<uniform> sp: RunningStats;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> grad_out: array<f32>;
@group(0) @binding(3) var<storage, read> stats_in: array<f32>;
@group(0) @binding(4) var<storage, read> weight: array<f32>;
@group(0) @binding(5) var<storage, read> bias: array<f32>;
@group(0) @binding(6) var<storage, read> partials_in: array<f32>;
@group(0) @binding(7) var<storage, read_write> out: array<f32>;
@group(0) @binding(8) var<storage, read_write> stats: array<f32>;
@group(0) @binding(9) var<storage, read_write> partials: array<f32>;
@group(0) @binding(10) var<storage, read_write> running_mean: array<f32>;
@group(0) @binding(11) var<storage, read_write> running_var: array<f32>;
@group(0) @binding(12) var<storage, read_write> grad_weight: array<f32>;
@group(0) @binding(13) var<storage, read_write> grad_bias: array<f32>;
@group(0) @binding(14) var<storage, read> sum_dy: array<f32>;
@group(0) @binding(15) var<storage, read> sum_dy_xhat: array<f32>;

const WG: u32 = 256u;       // invocations of the partial (first-pass) kernels
const FINAL_WG: u32 = 64u;  // invocations of the per-channel (second-pass) kernels

// ---- moments: (count, mean, M2) with Chan's parallel merge -----------------------------------------------------

struct Moments { n: f32, mean: f32, m2: f32 }

fn merge(a: Moments, b: Moments) -> Moments {
  let n = a.n + b.n;
  if (b.n == 0.0) { return a; }
  if (a.n == 0.0) { return b; }
  let delta = b.mean - a.mean;
  let b_share = b.n / n;
  return Moments(n, a.mean + delta * b_share, a.m2 + b.m2 + delta * delta * a.n * b_share);
}

var<workgroup> wg_moments: array<Moments, WG>;
var<workgroup> wg_sums: array<vec2<f32>, WG>;

// Fixed-order tree over the first `size` entries of wg_moments; the result lands in entry 0.
fn merge_tree(lid: u32, size: u32) {
  for (var stride = size / 2u; stride > 0u; stride = stride / 2u) {
    if (lid < stride) { wg_moments[lid] = merge(wg_moments[lid], wg_moments[lid + stride]); }
    workgroupBarrier();
  }
}

fn sum_tree(lid: u32, size: u32) {
  for (var stride = size / 2u; stride > 0u; stride = stride / 2u) {
    if (lid < stride) { wg_sums[lid] = wg_sums[lid] + wg_sums[lid + stride]; }
    workgroupBarrier();
  }
}

// Walks a channel's elements r = begin + lid, begin + lid + WG, ... as (batch n, spatial s) without dividing
// per element (integer division is slow, and on CPU adapters it does not vectorise).
struct ChannelCursor { n: u32, s: u32 }

fn cursor_at(r: u32) -> ChannelCursor {
  let n = r / rp.hw;
  return ChannelCursor(n, r - n * rp.hw);
}

fn advance(cur: ChannelCursor) -> ChannelCursor {
  var next = ChannelCursor(cur.n + WG / rp.hw, cur.s + WG % rp.hw);
  if (next.s >= rp.hw) {
    next.s -= rp.hw;
    next.n += 1u;
  }
  return next;
}

fn element_index(c: u32, cur: ChannelCursor) -> u32 {
  return (cur.n * rp.channels + c) * rp.hw + cur.s;
}

// The elementwise kernels run on workgroups [ceil(HW / 64), C, N] of 64 invocations: the channel and batch
// index come from the grid, not from dividing a flat index. Returns the flat index, or ep.n when out of range.
const ELEMENTWISE_WG: u32 = 64u;

fn grid_element(wid: vec3<u32>, lid: u32) -> u32 {
  let s = wid.x * ELEMENTWISE_WG + lid;
  if (s >= ep.hw) { return ep.n; }
  return (wid.z * ep.channels + wid.y) * ep.hw + s;
}

// ---- forward: batch statistics ---------------------------------------------------------------------------------

// Workgroup (p, c): moments of x - pivot over the channel's p-th chunk -> partials[(c * P + p) * 3 + {0, 1, 2}].
@compute @workgroup_size(256)
fn stats_partials(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let p = wid.x;
  let c = wid.y;
  let pivot = x[c * rp.hw];
  let begin = p * rp.chunk;
  let end = min(begin + rp.chunk, rp.count);
  // Two passes over the invocation's own elements (chunk / WG of them, cached after the first): their mean, then
  // the squared deviations from it.
  var n = 0.0;
  var sum = 0.0;
  var cur = cursor_at(begin + lid);
  for (var r = begin + lid; r < end; r += WG) {
    sum += x[element_index(c, cur)] - pivot;
    n += 1.0;
    cur = advance(cur);
  }
  let mean = select(0.0, sum / n, n > 0.0);
  var m2 = 0.0;
  cur = cursor_at(begin + lid);
  for (var r = begin + lid; r < end; r += WG) {
    let d = (x[element_index(c, cur)] - pivot) - mean;
    m2 += d * d;
    cur = advance(cur);
  }
  wg_moments[lid] = Moments(n, mean, m2);
  workgroupBarrier();
  merge_tree(lid, WG);
  if (lid == 0u) {
    let at = (c * rp.partials + p) * 3u;
    partials[at] = wg_moments[0].n;
    partials[at + 1u] = wg_moments[0].mean;
    partials[at + 2u] = wg_moments[0].m2;
  }
}

// One workgroup per channel: merges the channel's partials (fixed order) into the saved statistics.
fn finalize_moments(c: u32, lid: u32) -> Moments {
  var m = Moments(0.0, 0.0, 0.0);
  for (var p = lid; p < rp.partials; p += FINAL_WG) {
    let at = (c * rp.partials + p) * 3u;
    m = merge(m, Moments(partials_in[at], partials_in[at + 1u], partials_in[at + 2u]));
  }
  wg_moments[lid] = m;
  workgroupBarrier();
  merge_tree(lid, FINAL_WG);
  return wg_moments[0];
}

fn write_stats(c: u32, m: Moments) {
  stats[c] = x[c * rp.hw];
  stats[rp.channels + c] = m.mean;
  stats[2u * rp.channels + c] = 1.0 / sqrt(m.m2 / m.n + rp.eps);  // biased variance normalises
}

@compute @workgroup_size(64)
fn stats_finalize(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let m = finalize_moments(wid.x, lid);
  if (lid == 0u) { write_stats(wid.x, m); }
}

// Same, and updates the running statistics in place: running = (1 - momentum) * running + momentum * batch, with
// the unbiased variance M2 / (n - 1).
@compute @workgroup_size(64)
fn stats_finalize_update_running(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let c = wid.x;
  let m = finalize_moments(c, lid);
  if (lid == 0u) {
    write_stats(c, m);
    let batch_mean = x[c * rp.hw] + m.mean;
    let unbiased_var = m.m2 / (m.n - 1.0);
    running_mean[c] = (1.0 - rp.momentum) * running_mean[c] + rp.momentum * batch_mean;
    running_var[c] = (1.0 - rp.momentum) * running_var[c] + rp.momentum * unbiased_var;
  }
}

// ---- forward: evaluation-mode statistics ----------------------------------------------------------------------

@compute @workgroup_size(64)
fn stats_from_running(@builtin(global_invocation_id) gid: vec3<u32>) {
  let c = gid.x;
  if (c >= sp.channels) { return; }
  stats[c] = running_mean[c];
  stats[sp.channels + c] = 0.0;
  stats[2u * sp.channels + c] = 1.0 / sqrt(running_var[c] + sp.eps);
}

// ---- forward: normalise ---------------------------------------------------------------------------------------

fn weight_of(c: u32) -> f32 {
  if (ep.has_weight != 0u) { return weight[c]; }
  return 1.0;
}

fn bias_of(c: u32) -> f32 {
  if (ep.has_bias != 0u) { return bias[c]; }
  return 0.0;
}

// (x - mean) / std, computed as ((x - pivot) - offset) * inv_std so no precision is lost to a large mean.
fn normalized(i: u32, c: u32) -> f32 {
  return ((x[i] - stats_in[c]) - stats_in[ep.channels + c]) * stats_in[2u * ep.channels + c];
}

@compute @workgroup_size(64)
fn normalize(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = grid_element(wid, lid);
  if (i >= ep.n) { return; }
  let c = wid.y;
  out[i] = normalized(i, c) * weight_of(c) + bias_of(c);
}

// ---- backward -------------------------------------------------------------------------------------------------

// Workgroup (p, c): (sum of dy, sum of dy * x_hat) over the channel's p-th chunk -> partials[(c * P + p) * 2 + {0, 1}].
@compute @workgroup_size(256)
fn grad_partials(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let p = wid.x;
  let c = wid.y;
  let pivot = stats_in[c];
  let offset = stats_in[rp.channels + c];
  let inv_std = stats_in[2u * rp.channels + c];
  let begin = p * rp.chunk;
  let end = min(begin + rp.chunk, rp.count);
  var acc = vec2<f32>(0.0, 0.0);
  var cur = cursor_at(begin + lid);
  for (var r = begin + lid; r < end; r += WG) {
    let i = element_index(c, cur);
    cur = advance(cur);
    let dy = grad_out[i];
    acc += vec2<f32>(dy, dy * ((x[i] - pivot) - offset) * inv_std);
  }
  wg_sums[lid] = acc;
  workgroupBarrier();
  sum_tree(lid, WG);
  if (lid == 0u) {
    let at = (c * rp.partials + p) * 2u;
    partials[at] = wg_sums[0].x;
    partials[at + 1u] = wg_sums[0].y;
  }
}

// One workgroup per channel: grad_bias = sum of dy, grad_weight = sum of dy * x_hat (fixed order).
@compute @workgroup_size(64)
fn grad_finalize(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let c = wid.x;
  var acc = vec2<f32>(0.0, 0.0);
  for (var p = lid; p < rp.partials; p += FINAL_WG) {
    let at = (c * rp.partials + p) * 2u;
    acc += vec2<f32>(partials_in[at], partials_in[at + 1u]);
  }
  wg_sums[lid] = acc;
  workgroupBarrier();
  sum_tree(lid, FINAL_WG);
  if (lid == 0u) {
    grad_bias[c] = wg_sums[0].x;
    grad_weight[c] = wg_sums[0].y;
  }
}

// Training: dx = weight * inv_std * (dy - mean(dy) - x_hat * mean(dy * x_hat)), the batch statistics' own
// gradients included. Evaluation: the statistics are constants and the map is affine, dx = weight * inv_std * dy.
// The per-channel sums are grad_finalize's outputs, read back here as sum_dy (= grad_bias) and
// sum_dy_xhat (= grad_weight).
@compute @workgroup_size(64)
fn grad_input(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = grid_element(wid, lid);
  if (i >= ep.n) { return; }
  let c = wid.y;
  let scale = weight_of(c) * stats_in[2u * ep.channels + c];
  var dy = grad_out[i];
  if (ep.training != 0u) {
    let inv_count = 1.0 / f32(ep.count);
    dy = dy - sum_dy[c] * inv_count - normalized(i, c) * sum_dy_xhat[c] * inv_count;
  }
  out[i] = scale * dy;
}
