// BatchNorm2d over NCHW tensors, forward and backward, with an optional fused ReLU, and fused with ReLU and a 2x2
// max pool (the relu_max_pool entries at the end).
//
// Layout. Channel c's elements are r = n * HW + s (batch n, spatial s), stored at x[(n * C + c) * HW + s]. Every
// per-element pass (statistics, normalise, gradient sums, input gradient) runs on the same grid: workgroup (p, c)
// walks the contiguous range r in [p * chunk, (p + 1) * chunk) of channel c, its WG invocations striding by WG.
// So the channel is uniform over a workgroup: its per-channel constants are loaded once per invocation (not per
// element), each invocation handles chunk / WG elements (few workgroups: software adapters pay per workgroup), and
// no element needs an integer division (a cursor steps through (n, s); see `Cursor`). Where HW % 4 == 0 the
// `_vec4` entries do the same in units of 4 elements (a plane then starts on a 16-byte boundary), so one load
// fetches 4 values; where C % 4 == 0 and either H * W % 4 != 0 or a channel is smaller than one chunk, the
// `_grouped` entries load 4 values that may span channels, a workgroup covering four (see there).
//
// Reductions run in two fixed-order passes: each invocation of workgroup (p, c) writes its own partial (no
// barrier in the per-element pass: on software adapters a workgroup tree costs as much as the loads), then one
// invocation per channel combines the channel's P * WG partials in a fixed order. Deterministic, no atomics.
//
// Statistics are numerically sound for data whose mean is large relative to its spread:
//  - every value is taken relative to a per-channel pivot, the channel's first element (so x - pivot is exact for
//    nearby values and the mean is stored as pivot + a small, precise offset), and
//  - each invocation sums d = x - pivot and d * d over its own few elements (chunk / WG: at most 128), turns them
//    into (count, mean, M2 = sum d^2 - (sum d)^2 / count) once, and these moments are merged with Chan's formula;
//    never sum(x^2) - sum(x)^2 / n over raw values. The shifted sums lose about log10(1 + (mean - pivot)^2 / var)
//    digits to cancellation, over few terms, and cost one add and one multiply-add per element (a Welford update
//    per element costs a division and a loop-carried chain of its latency).
//
// The saved statistics `stats` are five rows of C values:
//   [0, C) pivot, [C, 2C) offset = mean - pivot, [2C, 3C) inv_std = 1/std, [3C, 4C) scale = weight * inv_std,
//   [4C, 5C) shift = bias (0 without bias),
// so y = ((x - pivot) - offset) * scale + shift, the subtraction first so no precision is lost to a large mean.
// Training mode uses the batch statistics (biased variance); evaluation mode stores the running mean as the pivot,
// 0 as the offset and 1/sqrt(running_var + eps).
//
// Fused ReLU (override RELU): the forward writes max(y, 0); the backward uses g = (y > 0) ? dy : 0 as the gradient
// reaching the batch norm, recomputing y from x (which it reads anyway) with the forward's arithmetic instead of
// loading the saved output: one load fewer per element in both backward passes. RELU and TRAINING are pipeline
// constants, not uniforms, so each variant compiles without the other's branches and loads.

override RELU: bool = false;     // normalize, grad_partials, grad_input: the fused ReLU
override TRAINING: bool = false; // grad_input: include the batch statistics' own gradients

struct Chunked {
  hw: u32,        // H * W (in vec4s for the _vec4 entries)
  channels: u32,
  count: u32,     // N * HW, elements per channel (in vec4s for the _vec4 entries)
  chunk: u32,     // elements per workgroup (in vec4s for the _vec4 entries)
  partials: u32,  // workgroups per channel: ceil(count / chunk)
}
struct PerChannel {
  channels: u32,
  hw: u32,        // H * W, in elements
  count: u32,     // N * HW, in elements
  partials: u32,
  has_weight: u32,
  has_bias: u32,
  eps: f32,
  momentum: f32,
}

@group(0) @binding(0) var<uniform> cp: Chunked;
@group(0) @binding(0) var<uniform> pp: PerChannel;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> grad_out: array<f32>;
@group(0) @binding(4) var<storage, read> stats_in: array<f32>;
@group(0) @binding(5) var<storage, read> weight: array<f32>;
@group(0) @binding(6) var<storage, read> bias: array<f32>;
@group(0) @binding(7) var<storage, read> partials_in: array<f32>;
@group(0) @binding(8) var<storage, read> dx_coef_in: array<f32>;
@group(0) @binding(9) var<storage, read_write> out: array<f32>;
@group(0) @binding(10) var<storage, read_write> stats: array<f32>;
@group(0) @binding(11) var<storage, read_write> partials: array<f32>;
@group(0) @binding(12) var<storage, read_write> running_mean: array<f32>;
@group(0) @binding(13) var<storage, read_write> running_var: array<f32>;
@group(0) @binding(14) var<storage, read_write> grad_weight: array<f32>;
@group(0) @binding(15) var<storage, read_write> grad_bias: array<f32>;
@group(0) @binding(16) var<storage, read_write> dx_coef: array<f32>;
// The same tensors seen as vec4s (the _vec4 entries).
@group(0) @binding(17) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(18) var<storage, read> grad_out4: array<vec4<f32>>;
@group(0) @binding(20) var<storage, read_write> out4: array<vec4<f32>>;

const WG: u32 = 64u;        // invocations of the chunked kernels

// ---- walking a channel's range ---------------------------------------------------------------------------------

// Invocation lid of workgroup (p, c) visits r = p * chunk + lid, + WG, ... < end. `i` is r's index in the tensor
// (in vec4s for the _vec4 entries) and `s` its spatial offset; a step of WG adds `ds` = WG % hw to s and `step` =
// (WG / hw) planes of stride C * hw plus ds to i, and `wrap` (to the next plane) when s passes hw. One division
// per invocation, none per element.
struct Cursor { i: u32, s: u32, r: u32, end: u32, ds: u32, step: u32, wrap: u32 }

fn cursor_start(wid: vec3<u32>, lid: u32) -> Cursor {
  let hw = cp.hw;
  let plane_stride = cp.channels * hw;
  let begin = wid.x * cp.chunk;
  let r = begin + lid;
  let n = r / hw;
  let s = r - n * hw;
  let ds = WG % hw;
  return Cursor((n * cp.channels + wid.y) * hw + s, s, r, min(begin + cp.chunk, cp.count), ds,
                (WG / hw) * plane_stride + ds, plane_stride - hw);
}

fn advance(cur: ptr<function, Cursor>) {
  (*cur).r += WG;
  (*cur).s += (*cur).ds;
  (*cur).i += (*cur).step;
  if ((*cur).s >= cp.hw) {
    (*cur).s -= cp.hw;
    (*cur).i += (*cur).wrap;
  }
}

// Per-channel rows of the saved statistics: y = ((x - pivot) - offset) * scale + shift.
struct Affine { pivot: f32, offset: f32, scale: f32, shift: f32 }

fn chunked_affine_of(c: u32) -> Affine {
  return Affine(stats_in[c], stats_in[cp.channels + c], stats_in[3u * cp.channels + c], stats_in[4u * cp.channels + c]);
}

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

// ---- forward: batch statistics ---------------------------------------------------------------------------------

// Invocation lid of workgroup p of channel c: moments of x - pivot over its elements of the channel's p-th chunk
// -> partials[((c * P + p) * WG + lid) * 3 + {0, 1, 2}].
fn store_moments_partial(c: u32, wid: vec3<u32>, lid: u32, m: Moments) {
  let at = ((c * cp.partials + wid.x) * WG + lid) * 3u;
  partials[at] = m.n;
  partials[at + 1u] = m.mean;
  partials[at + 2u] = m.m2;
}

// How many elements invocation lid of workgroup p visits: r = p * chunk + lid, + WG, ... < min((p + 1) * chunk,
// count).
fn visits(wid: vec3<u32>, lid: u32) -> u32 {
  let first = wid.x * cp.chunk + lid;
  let end = min(wid.x * cp.chunk + cp.chunk, cp.count);
  return select(0u, (end - first + WG - 1u) / WG, first < end);
}

// The moments of `n` values from their shifted sums: sum d and sum d * d.
fn moments_of_sums(n: f32, sum_d: f32, sum_d2: f32) -> Moments {
  if (n == 0.0) { return Moments(0.0, 0.0, 0.0); }
  let mean = sum_d / n;
  return Moments(n, mean, max(sum_d2 - sum_d * mean, 0.0));
}

@compute @workgroup_size(WG)
fn stats_partials(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let pivot = x[wid.y * cp.hw];
  var sums = vec2<f32>(0.0, 0.0);
  for (var cur = cursor_start(wid, lid); cur.r < cur.end; advance(&cur)) {
    let d = x[cur.i] - pivot;
    sums += vec2<f32>(d, d * d);
  }
  store_moments_partial(wid.y, wid, lid, moments_of_sums(f32(visits(wid, lid)), sums.x, sums.y));
}

@compute @workgroup_size(WG)
fn stats_partials_vec4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let pivot = x4[wid.y * cp.hw].x;
  var sum_d = vec4<f32>(0.0);
  var sum_d2 = vec4<f32>(0.0);
  for (var cur = cursor_start(wid, lid); cur.r < cur.end; advance(&cur)) {
    let d = x4[cur.i] - pivot;
    sum_d += d;
    sum_d2 += d * d;
  }
  let n = 4.0 * f32(visits(wid, lid));
  store_moments_partial(wid.y, wid, lid, moments_of_sums(n, dot(sum_d, vec4<f32>(1.0)), dot(sum_d2, vec4<f32>(1.0))));
}

// The per-channel kernels run one invocation per channel: no workgroup tree, whose barriers cost a software adapter
// more (as coroutines, and in compile time) than the few partials each channel has. The channel's P * WG partials
// are combined in the order a 64-invocation tree would: slot l (of WG = 64) merges entries l, l + WG, ...; eight
// consecutive slots are merged, then the eight groups (so a chain is never longer than P + 16 merges).
fn finalize_moments(c: u32) -> Moments {
  let entries = pp.partials * WG;
  var total = Moments(0.0, 0.0, 0.0);
  for (var group = 0u; group < 8u; group++) {
    var t = Moments(0.0, 0.0, 0.0);
    for (var slot = 8u * group; slot < 8u * group + 8u; slot++) {
      var m = Moments(0.0, 0.0, 0.0);
      for (var k = slot; k < entries; k += WG) {
        let at = (c * entries + k) * 3u;
        m = merge(m, Moments(partials_in[at], partials_in[at + 1u], partials_in[at + 2u]));
      }
      t = merge(t, m);
    }
    total = merge(total, t);
  }
  return total;
}

fn write_stats(c: u32, pivot: f32, offset: f32, inv_std: f32) {
  var w = 1.0;
  if (pp.has_weight != 0u) { w = weight[c]; }
  var b = 0.0;
  if (pp.has_bias != 0u) { b = bias[c]; }
  stats[c] = pivot;
  stats[pp.channels + c] = offset;
  stats[2u * pp.channels + c] = inv_std;
  stats[3u * pp.channels + c] = w * inv_std;
  stats[4u * pp.channels + c] = b;
}

fn write_batch_stats(c: u32, m: Moments) {
  write_stats(c, x[c * pp.hw], m.mean, 1.0 / sqrt(m.m2 / m.n + pp.eps)); // biased variance normalises
}

@compute @workgroup_size(64)
fn stats_finalize(@builtin(global_invocation_id) gid: vec3<u32>) {
  let c = gid.x;
  if (c >= pp.channels) { return; }
  write_batch_stats(c, finalize_moments(c));
}

// Same, and updates the running statistics in place: running = (1 - momentum) * running + momentum * batch, with
// the unbiased variance M2 / (n - 1).
@compute @workgroup_size(64)
fn stats_finalize_update_running(@builtin(global_invocation_id) gid: vec3<u32>) {
  let c = gid.x;
  if (c >= pp.channels) { return; }
  let m = finalize_moments(c);
  write_batch_stats(c, m);
  let batch_mean = x[c * pp.hw] + m.mean;
  let unbiased_var = m.m2 / (m.n - 1.0);
  running_mean[c] = (1.0 - pp.momentum) * running_mean[c] + pp.momentum * batch_mean;
  running_var[c] = (1.0 - pp.momentum) * running_var[c] + pp.momentum * unbiased_var;
}

// ---- forward: evaluation-mode statistics ----------------------------------------------------------------------

@compute @workgroup_size(64)
fn stats_from_running(@builtin(global_invocation_id) gid: vec3<u32>) {
  let c = gid.x;
  if (c >= pp.channels) { return; }
  write_stats(c, running_mean[c], 0.0, 1.0 / sqrt(running_var[c] + pp.eps));
}

// ---- forward: normalise (and ReLU) ----------------------------------------------------------------------------

@compute @workgroup_size(WG)
fn normalize(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let k = chunked_affine_of(wid.y);
  for (var cur = cursor_start(wid, lid); cur.r < cur.end; advance(&cur)) {
    let y = ((x[cur.i] - k.pivot) - k.offset) * k.scale + k.shift;
    out[cur.i] = select(y, max(y, 0.0), RELU);
  }
}

@compute @workgroup_size(WG)
fn normalize_vec4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let k = chunked_affine_of(wid.y);
  for (var cur = cursor_start(wid, lid); cur.r < cur.end; advance(&cur)) {
    let y = ((x4[cur.i] - k.pivot) - k.offset) * k.scale + k.shift;
    out4[cur.i] = select(y, max(y, vec4<f32>(0.0)), RELU);
  }
}

// ---- backward -------------------------------------------------------------------------------------------------

// The gradient reaching the batch norm at x = v: dy, masked by (y > 0) when the ReLU is fused, y recomputed as
// `normalize` computes it.
fn bn_grad(dy: f32, v: f32, k: Affine) -> f32 {
  if (RELU) { return select(0.0, dy, ((v - k.pivot) - k.offset) * k.scale + k.shift > 0.0); }
  return dy;
}

fn bn_grad4(dy: vec4<f32>, v: vec4<f32>, k: Affine) -> vec4<f32> {
  if (RELU) { return select(vec4<f32>(0.0), dy, ((v - k.pivot) - k.offset) * k.scale + k.shift > vec4<f32>(0.0)); }
  return dy;
}

// Invocation lid of workgroup p of channel c: (sum of g, sum of g * (x - mean)) over its elements of the
// channel's p-th chunk -> partials[((c * P + p) * WG + lid) * 2 + {0, 1}]. x - mean is taken as (x - pivot) - offset;
// grad_finalize multiplies by inv_std (x_hat = (x - mean) * inv_std).
// (`per_channel`: workgroups per channel, from the entry's own uniform.)
fn store_sums_partial(c: u32, wid: vec3<u32>, lid: u32, acc: vec2<f32>, per_channel: u32) {
  let at = ((c * per_channel + wid.x) * WG + lid) * 2u;
  partials[at] = acc.x;
  partials[at + 1u] = acc.y;
}

@compute @workgroup_size(WG)
fn grad_partials(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let k = chunked_affine_of(wid.y);
  var acc = vec2<f32>(0.0, 0.0);
  for (var cur = cursor_start(wid, lid); cur.r < cur.end; advance(&cur)) {
    let v = x[cur.i];
    let g = bn_grad(grad_out[cur.i], v, k);
    acc += vec2<f32>(g, g * ((v - k.pivot) - k.offset));
  }
  store_sums_partial(wid.y, wid, lid, acc, cp.partials);
}

@compute @workgroup_size(WG)
fn grad_partials_vec4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let k = chunked_affine_of(wid.y);
  var acc = vec2<f32>(0.0, 0.0);
  for (var cur = cursor_start(wid, lid); cur.r < cur.end; advance(&cur)) {
    let v = x4[cur.i];
    let g = bn_grad4(grad_out4[cur.i], v, k);
    acc += vec2<f32>(g.x + g.y + g.z + g.w, dot(g, (v - k.pivot) - k.offset));
  }
  store_sums_partial(wid.y, wid, lid, acc, cp.partials);
}

// One invocation per channel: grad_bias = sum of g, grad_weight = sum of g * x_hat (fixed order), and the
// coefficients of the training-mode input gradient
//   dx = scale * (g - mean(g) - x_hat * mean(g * x_hat)) = scale * g + k_centred * (x - mean) + k_const,
//   k_centred = -scale * inv_std * mean(g * x_hat), k_const = -scale * mean(g)   -> dx_coef[c], dx_coef[C + c].
@compute @workgroup_size(64)
fn grad_finalize(@builtin(global_invocation_id) gid: vec3<u32>) {
  let c = gid.x;
  if (c >= pp.channels) { return; }
  let entries = pp.partials * WG;
  var total = vec2<f32>(0.0, 0.0);
  for (var group = 0u; group < 8u; group++) { // in finalize_moments' order
    var t = vec2<f32>(0.0, 0.0);
    for (var slot = 8u * group; slot < 8u * group + 8u; slot++) {
      var acc = vec2<f32>(0.0, 0.0);
      for (var k = slot; k < entries; k += WG) {
        let at = (c * entries + k) * 2u;
        acc += vec2<f32>(partials_in[at], partials_in[at + 1u]);
      }
      t += acc;
    }
    total += t;
  }
  let inv_std = stats_in[2u * pp.channels + c];
  let scale = stats_in[3u * pp.channels + c];
  let sum_g = total.x;
  let sum_g_xhat = total.y * inv_std;
  grad_bias[c] = sum_g;
  grad_weight[c] = sum_g_xhat;
  let inv_count = 1.0 / f32(pp.count);
  dx_coef[c] = -scale * inv_std * (sum_g_xhat * inv_count);
  dx_coef[pp.channels + c] = -scale * (sum_g * inv_count);
}

// Training: dx = scale * g + k_centred * ((x - pivot) - offset) + k_const, the batch statistics' own gradients
// included. Evaluation: the statistics are constants and the map is affine, dx = scale * g.
@compute @workgroup_size(WG)
fn grad_input(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let c = wid.y;
  let k = chunked_affine_of(c);
  if (!TRAINING) {
    for (var cur = cursor_start(wid, lid); cur.r < cur.end; advance(&cur)) {
      out[cur.i] = k.scale * bn_grad(grad_out[cur.i], x[cur.i], k);
    }
    return;
  }
  let k_centred = dx_coef_in[c];
  let k_const = dx_coef_in[cp.channels + c];
  for (var cur = cursor_start(wid, lid); cur.r < cur.end; advance(&cur)) {
    let v = x[cur.i];
    out[cur.i] = k.scale * bn_grad(grad_out[cur.i], v, k) + k_centred * ((v - k.pivot) - k.offset) + k_const;
  }
}

@compute @workgroup_size(WG)
fn grad_input_vec4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let c = wid.y;
  let k = chunked_affine_of(c);
  if (!TRAINING) {
    for (var cur = cursor_start(wid, lid); cur.r < cur.end; advance(&cur)) {
      out4[cur.i] = k.scale * bn_grad4(grad_out4[cur.i], x4[cur.i], k);
    }
    return;
  }
  let k_centred = dx_coef_in[c];
  let k_const = dx_coef_in[cp.channels + c];
  for (var cur = cursor_start(wid, lid); cur.r < cur.end; advance(&cur)) {
    let v = x4[cur.i];
    out4[cur.i] = k.scale * bn_grad4(grad_out4[cur.i], v, k) + k_centred * ((v - k.pivot) - k.offset) + k_const;
  }
}

// ---- C % 4 == 0 (and H * W % 4 != 0, or small planes): 4 values per load across four channels' planes ----------
//
// Channels 4g .. 4g + 3 of batch n are 4 * HW contiguous elements starting on a 16-byte boundary: HW vec4s, the
// "block" (n, g). Unit v of the block is x4[(n * C / 4 + g) * HW + v]; its component t is element 4v + t of the
// block, in channel 4g + k with k = (4v + t) / HW. Workgroup (p, g) covers the blocks of batches [p * chunk,
// (p + 1) * chunk) of group g (their uniform: hw = HW, channels = C / 4 groups, count = N, chunk in batches), and
// its invocations hold their unit v fixed while stepping through the batches: J = max(1, WG / HW) invocations per
// unit, invocation lid at v = lid % HW (and v + WG, ... when HW > WG) and batch j = lid / HW (+ J, ...); those with
// j >= J idle. So each component's channel, and the constants picked by it, stay fixed through the inner loop,
// which is as plain as the _vec4 entries' (4 values per load, far cheaper per value than scalar loads on a software
// adapter). One reduction partial per channel of the group and invocation, in the layout of the other entries
// (P = workgroups per group).

// Per component of unit v: k >= 1, k >= 2, k >= 3.
struct Group { ge1: vec4<bool>, ge2: vec4<bool>, ge3: vec4<bool> }

fn group_of(v: u32) -> Group {
  let e = vec4<u32>(4u * v) + vec4<u32>(0u, 1u, 2u, 3u);
  return Group(e >= vec4<u32>(cp.hw), e >= vec4<u32>(2u * cp.hw), e >= vec4<u32>(3u * cp.hw));
}

// Per component, its channel's value among the group's four (v.x for k = 0, ..., v.w for k = 3).
fn pick(v: vec4<f32>, m: Group) -> vec4<f32> {
  return select(select(select(vec4<f32>(v.x), vec4<f32>(v.y), m.ge1), vec4<f32>(v.z), m.ge2), vec4<f32>(v.w), m.ge3);
}

fn sum_where(v: vec4<f32>, m: vec4<bool>) -> f32 { return dot(select(vec4<f32>(0.0), v, m), vec4<f32>(1.0)); }

// The sums of v's components per channel of the group (x: k = 0, ..., w: k = 3): exact selections, no differences.
fn per_channel(v: vec4<f32>, m: Group) -> vec4<f32> {
  return vec4<f32>(sum_where(v, !m.ge1), sum_where(v, m.ge1 & !m.ge2), sum_where(v, m.ge2 & !m.ge3), sum_where(v, m.ge3));
}

// An invocation's walk: units v = v0, v0 + WG, ... < HW; for each, batches n = n0, n0 + J, ... < n_end, at tensor
// indices (n * groups + g) * HW + v in [walk_range(...).x, .y) stepping by `step` = J * groups * HW.
struct GroupWalk { v0: u32, n0: u32, n_end: u32, step: u32, visits: u32 }

fn group_walk(wid: vec3<u32>, lid: u32) -> GroupWalk {
  let per_unit = max(1u, WG / cp.hw); // J
  let j = lid / cp.hw;
  let n_begin = wid.x * cp.chunk;
  let n_end = min(n_begin + cp.chunk, cp.count);
  let n0 = select(n_end, n_begin + j, j < per_unit && n_begin + j < n_end); // idle: an empty batch range
  return GroupWalk(lid - j * cp.hw, n0, n_end, per_unit * cp.channels * cp.hw, (n_end - n0 + per_unit - 1u) / per_unit);
}

fn walk_range(w: GroupWalk, g: u32, v: u32) -> vec2<u32> {
  return vec2<u32>((w.n0 * cp.channels + g) * cp.hw + v, (w.n_end * cp.channels + g) * cp.hw + v);
}

// Row `row` of the saved statistics for the group's four channels.
fn group_row(row: u32, g: u32) -> vec4<f32> {
  let at = row * 4u * cp.channels + 4u * g;
  return vec4<f32>(stats_in[at], stats_in[at + 1u], stats_in[at + 2u], stats_in[at + 3u]);
}

struct Affine4 { pivot: vec4<f32>, offset: vec4<f32>, scale: vec4<f32>, shift: vec4<f32> }

fn group_affine_of(g: u32) -> Affine4 {
  return Affine4(group_row(0u, g), group_row(1u, g), group_row(3u, g), group_row(4u, g));
}

// The constants of unit v's components.
fn unit_affine(k: Affine4, m: Group) -> Affine4 {
  return Affine4(pick(k.pivot, m), pick(k.offset, m), pick(k.scale, m), pick(k.shift, m));
}

// x - mean as (x - pivot) - offset, and the gradient reaching the batch norm (bn_grad4 per component).
fn centred4(v: vec4<f32>, a: Affine4) -> vec4<f32> { return (v - a.pivot) - a.offset; }

fn unit_grad(dy: vec4<f32>, v: vec4<f32>, a: Affine4) -> vec4<f32> {
  if (RELU) { return select(vec4<f32>(0.0), dy, centred4(v, a) * a.scale + a.shift > vec4<f32>(0.0)); }
  return dy;
}

// Element i of x through its vec4 binding.
fn element4(i: u32) -> f32 { return x4[i / 4u][i % 4u]; }

@compute @workgroup_size(WG)
fn stats_partials_grouped(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let g = wid.y;
  // The pivots, as stats_finalize's: each channel's first element (batch 0), channel 4g + k's at (4g + k) * HW.
  let first = 4u * g * cp.hw;
  let pivot = vec4<f32>(element4(first), element4(first + cp.hw), element4(first + 2u * cp.hw), element4(first + 3u * cp.hw));
  let w = group_walk(wid, lid);
  var n = vec4<f32>(0.0);
  var sum_d = vec4<f32>(0.0);
  var sum_d2 = vec4<f32>(0.0);
  for (var v = w.v0; v < cp.hw; v += WG) {
    let m = group_of(v);
    let p = pick(pivot, m);
    var s = vec4<f32>(0.0);
    var q = vec4<f32>(0.0);
    let range = walk_range(w, g, v);
    for (var i = range.x; i < range.y; i += w.step) {
      let d = x4[i] - p;
      s += d;
      q += d * d;
    }
    n += per_channel(vec4<f32>(f32(w.visits)), m);
    sum_d += per_channel(s, m);
    sum_d2 += per_channel(q, m);
  }
  store_moments_partial(4u * g, wid, lid, moments_of_sums(n.x, sum_d.x, sum_d2.x));
  store_moments_partial(4u * g + 1u, wid, lid, moments_of_sums(n.y, sum_d.y, sum_d2.y));
  store_moments_partial(4u * g + 2u, wid, lid, moments_of_sums(n.z, sum_d.z, sum_d2.z));
  store_moments_partial(4u * g + 3u, wid, lid, moments_of_sums(n.w, sum_d.w, sum_d2.w));
}

@compute @workgroup_size(WG)
fn normalize_grouped(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let g = wid.y;
  let k = group_affine_of(g);
  let w = group_walk(wid, lid);
  for (var v = w.v0; v < cp.hw; v += WG) {
    let a = unit_affine(k, group_of(v));
    let range = walk_range(w, g, v);
    for (var i = range.x; i < range.y; i += w.step) {
      let y = centred4(x4[i], a) * a.scale + a.shift;
      out4[i] = select(y, max(y, vec4<f32>(0.0)), RELU);
    }
  }
}

@compute @workgroup_size(WG)
fn grad_partials_grouped(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let g = wid.y;
  let k = group_affine_of(g);
  let w = group_walk(wid, lid);
  var sum_g = vec4<f32>(0.0);
  var sum_gx = vec4<f32>(0.0);
  for (var v = w.v0; v < cp.hw; v += WG) {
    let m = group_of(v);
    let a = unit_affine(k, m);
    var s = vec4<f32>(0.0);
    var sx = vec4<f32>(0.0);
    let range = walk_range(w, g, v);
    for (var i = range.x; i < range.y; i += w.step) {
      let x_i = x4[i];
      let gr = unit_grad(grad_out4[i], x_i, a);
      s += gr;
      sx += gr * centred4(x_i, a);
    }
    sum_g += per_channel(s, m);
    sum_gx += per_channel(sx, m);
  }
  store_sums_partial(4u * g, wid, lid, vec2<f32>(sum_g.x, sum_gx.x), cp.partials);
  store_sums_partial(4u * g + 1u, wid, lid, vec2<f32>(sum_g.y, sum_gx.y), cp.partials);
  store_sums_partial(4u * g + 2u, wid, lid, vec2<f32>(sum_g.z, sum_gx.z), cp.partials);
  store_sums_partial(4u * g + 3u, wid, lid, vec2<f32>(sum_g.w, sum_gx.w), cp.partials);
}

@compute @workgroup_size(WG)
fn grad_input_grouped(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let g = wid.y;
  let k = group_affine_of(g);
  let w = group_walk(wid, lid);
  let at = 4u * g;
  let channels = 4u * cp.channels;
  var centred = vec4<f32>(0.0);
  var constant = vec4<f32>(0.0);
  if (TRAINING) {
    centred = vec4<f32>(dx_coef_in[at], dx_coef_in[at + 1u], dx_coef_in[at + 2u], dx_coef_in[at + 3u]);
    constant = vec4<f32>(dx_coef_in[channels + at], dx_coef_in[channels + at + 1u], dx_coef_in[channels + at + 2u],
                         dx_coef_in[channels + at + 3u]);
  }
  for (var v = w.v0; v < cp.hw; v += WG) {
    let m = group_of(v);
    let a = unit_affine(k, m);
    let c_centred = pick(centred, m);
    let c_const = pick(constant, m);
    let range = walk_range(w, g, v);
    for (var i = range.x; i < range.y; i += w.step) {
      let x_i = x4[i];
      let gr = a.scale * unit_grad(grad_out4[i], x_i, a);
      out4[i] = select(gr, gr + c_centred * centred4(x_i, a) + c_const, TRAINING);
    }
  }
}

// ---- fused with ReLU and a 2x2 / stride-2 max pool: maxpool2(relu(bn(x))) ------------------------------------
//
// The forward reads x once (after the statistics pass) and writes only the pooled output: no full-size
// activation, no arg-max. The backward recomputes each window's relu(bn(x)) from x and the saved statistics with
// the same functions as the forward (bn_relu, bn_relu4, pick_max), so it picks exactly the forward's winner, and
// routes the pooled gradient to it (masked by the winner's relu output > 0). Floor mode: with an odd H or W the
// last row or column lies in no window; it gets no pooled gradient but still the batch statistics' gradient.
//
// Grid as the chunked passes, in units of pooled outputs: workgroup (p, c) covers units [p * chunk, (p + 1) *
// chunk) of channel c. A unit is one window (scalar entries), two horizontally adjacent windows (the _vec4
// entries, W % 4 == 0: one vec4 from each of the two rows, a vec2 of pooled values) or four (the _wide entries,
// W % 8 == 0: two vec4s per row, a vec4 of pooled values).

struct Pooled {
  channels: u32,
  in_h: u32,
  in_w: u32,       // in elements
  out_h: u32,
  row_units: u32,  // units per pooled row: out_w (scalar), out_w / 2 (_vec4), out_w / 4 (_wide)
  count: u32,      // units per channel: N * out_h * row_units
  chunk: u32,      // units per workgroup
  partials: u32,   // workgroups per channel: ceil(count / chunk)
}

@group(0) @binding(0) var<uniform> qp: Pooled;
@group(0) @binding(21) var<storage, read> grad_out2: array<vec2<f32>>;
@group(0) @binding(22) var<storage, read_write> out2: array<vec2<f32>>;

// Unit r of channel c is (n, oy, u) with r = (n * out_h + oy) * row_units + u. A step of WG units adds whole
// planes, rows and units, with one carry each; the divisions happen once per invocation.
struct PoolCursor { r: u32, end: u32, n: u32, oy: u32, u: u32 }
struct PoolStep { planes: u32, rows: u32, units: u32 }

fn pool_step() -> PoolStep {
  let plane_units = qp.out_h * qp.row_units;
  let rest = WG % plane_units;
  return PoolStep(WG / plane_units, rest / qp.row_units, rest % qp.row_units);
}

fn pool_cursor_start(wid: vec3<u32>, lid: u32) -> PoolCursor {
  let plane_units = qp.out_h * qp.row_units;
  let begin = wid.x * qp.chunk;
  let r = begin + lid;
  let n = r / plane_units;
  let rest = r - n * plane_units;
  let oy = rest / qp.row_units;
  return PoolCursor(r, min(begin + qp.chunk, qp.count), n, oy, rest - oy * qp.row_units);
}

fn pool_advance(cur: ptr<function, PoolCursor>, st: PoolStep) {
  (*cur).r += WG;
  (*cur).u += st.units;
  if ((*cur).u >= qp.row_units) {
    (*cur).u -= qp.row_units;
    (*cur).oy += 1u;
  }
  (*cur).oy += st.rows;
  if ((*cur).oy >= qp.out_h) {
    (*cur).oy -= qp.out_h;
    (*cur).n += 1u;
  }
  (*cur).n += st.planes;
}

// Element index of the first input row of unit `cur`'s window(s) in channel c (the row's start, not the window's).
fn window_row(cur: PoolCursor, c: u32) -> u32 {
  return ((cur.n * qp.channels + c) * qp.in_h + 2u * cur.oy) * qp.in_w;
}

// Index of unit `cur`'s pooled output (a vec2 index for the _vec4 entries, a vec4 index for the _wide ones).
fn pooled_index(cur: PoolCursor, c: u32) -> u32 {
  return ((cur.n * qp.channels + c) * qp.out_h + cur.oy) * qp.row_units + cur.u;
}

// The pooled entries' per-channel constants (their uniform is qp).
fn affine_of(c: u32) -> Affine {
  return Affine(stats_in[c], stats_in[qp.channels + c], stats_in[3u * qp.channels + c], stats_in[4u * qp.channels + c]);
}

// relu(bn(v)), the same arithmetic as `normalize` with RELU.
fn bn_relu(v: f32, k: Affine) -> f32 { return max(((v - k.pivot) - k.offset) * k.scale + k.shift, 0.0); }
fn bn_relu4(v: vec4<f32>, k: Affine) -> vec4<f32> {
  return max(((v - k.pivot) - k.offset) * k.scale + k.shift, vec4<f32>(0.0));
}

// A window's max and where: 0, 1 the top row, 2, 3 the bottom row. The first maximum in row-major order wins ties
// (strict comparison), as max_pool_forward and PyTorch.
struct Pick { value: f32, at: u32 }

fn pick_max(top_left: f32, top_right: f32, bottom_left: f32, bottom_right: f32) -> Pick {
  var p = Pick(top_left, 0u);
  if (top_right > p.value) { p = Pick(top_right, 1u); }
  if (bottom_left > p.value) { p = Pick(bottom_left, 2u); }
  if (bottom_right > p.value) { p = Pick(bottom_right, 3u); }
  return p;
}

// The gradient reaching the batch norm at a window's four inputs (row-major): the pooled gradient at the winner
// when its relu output is positive (relu's mask), 0 elsewhere.
fn route(p: Pick, g: f32) -> vec4<f32> {
  let at_winner = vec4<u32>(0u, 1u, 2u, 3u) == vec4<u32>(p.at);
  return select(vec4<f32>(0.0), vec4<f32>(select(0.0, g, p.value > 0.0)), at_winner);
}

// Both windows of a _vec4 unit from its two rows.
struct PickPair { left: Pick, right: Pick }

fn pick_pair(top: vec4<f32>, bottom: vec4<f32>) -> PickPair {
  return PickPair(pick_max(top.x, top.y, bottom.x, bottom.y), pick_max(top.z, top.w, bottom.z, bottom.w));
}

// A _vec4 unit's routed gradients as its two rows.
struct RowPair { top: vec4<f32>, bottom: vec4<f32> }

fn route_pair(p: PickPair, g: vec2<f32>) -> RowPair {
  let l = route(p.left, g.x);
  let r = route(p.right, g.y);
  return RowPair(vec4<f32>(l.x, l.y, r.x, r.y), vec4<f32>(l.z, l.w, r.z, r.w));
}

@compute @workgroup_size(WG)
fn relu_max_pool(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let c = wid.y;
  let k = affine_of(c);
  let st = pool_step();
  let w = qp.in_w;
  for (var cur = pool_cursor_start(wid, lid); cur.r < cur.end; pool_advance(&cur, st)) {
    let i = window_row(cur, c) + 2u * cur.u;
    let p = pick_max(bn_relu(x[i], k), bn_relu(x[i + 1u], k), bn_relu(x[i + w], k), bn_relu(x[i + w + 1u], k));
    out[pooled_index(cur, c)] = p.value;
  }
}

// The pooled values of the two windows whose rows are x4[i] and x4[i + w4].
fn pooled_pair(i: u32, w4: u32, k: Affine) -> vec2<f32> {
  let p = pick_pair(bn_relu4(x4[i], k), bn_relu4(x4[i + w4], k));
  return vec2<f32>(p.left.value, p.right.value);
}

@compute @workgroup_size(WG)
fn relu_max_pool_vec4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let c = wid.y;
  let k = affine_of(c);
  let st = pool_step();
  let w4 = qp.in_w / 4u;
  for (var cur = pool_cursor_start(wid, lid); cur.r < cur.end; pool_advance(&cur, st)) {
    out2[pooled_index(cur, c)] = pooled_pair(window_row(cur, c) / 4u + cur.u, w4, k);
  }
}

// W % 8 == 0: a unit is four windows (two vec4s per row), its pooled values one vec4: fewer loads and stores of
// the pooled tensors per input element than two windows.
@compute @workgroup_size(WG)
fn relu_max_pool_wide(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let c = wid.y;
  let k = affine_of(c);
  let st = pool_step();
  let w4 = qp.in_w / 4u;
  for (var cur = pool_cursor_start(wid, lid); cur.r < cur.end; pool_advance(&cur, st)) {
    let i = window_row(cur, c) / 4u + 2u * cur.u;
    out4[pooled_index(cur, c)] = vec4<f32>(pooled_pair(i, w4, k), pooled_pair(i + 1u, w4, k));
  }
}

// Per-channel sums of g and g * (x - mean) over the windows' winners (elements outside every window and losers
// have g = 0), into the layout grad_finalize reads.
@compute @workgroup_size(WG)
fn relu_max_pool_grad_partials(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let c = wid.y;
  let k = affine_of(c);
  let st = pool_step();
  let w = qp.in_w;
  var acc = vec2<f32>(0.0, 0.0);
  for (var cur = pool_cursor_start(wid, lid); cur.r < cur.end; pool_advance(&cur, st)) {
    let i = window_row(cur, c) + 2u * cur.u;
    let v = vec4<f32>(x[i], x[i + 1u], x[i + w], x[i + w + 1u]);
    let g = route(pick_max(bn_relu(v.x, k), bn_relu(v.y, k), bn_relu(v.z, k), bn_relu(v.w, k)), grad_out[pooled_index(cur, c)]);
    acc += vec2<f32>(g.x + g.y + g.z + g.w, dot(g, (v - k.pivot) - k.offset));
  }
  store_sums_partial(wid.y, wid, lid, acc, qp.partials);
}

// (sum of g, sum of g * (x - mean)) over the two windows whose rows are x4[i] and x4[i + w4], pooled gradients g.
fn pair_sums(i: u32, w4: u32, k: Affine, g_pooled: vec2<f32>) -> vec2<f32> {
  let top = x4[i];
  let bottom = x4[i + w4];
  let g = route_pair(pick_pair(bn_relu4(top, k), bn_relu4(bottom, k)), g_pooled);
  let sum_g = g.top + g.bottom;
  return vec2<f32>(sum_g.x + sum_g.y + sum_g.z + sum_g.w,
                   dot(g.top, (top - k.pivot) - k.offset) + dot(g.bottom, (bottom - k.pivot) - k.offset));
}

@compute @workgroup_size(WG)
fn relu_max_pool_grad_partials_vec4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let c = wid.y;
  let k = affine_of(c);
  let st = pool_step();
  let w4 = qp.in_w / 4u;
  var acc = vec2<f32>(0.0, 0.0);
  for (var cur = pool_cursor_start(wid, lid); cur.r < cur.end; pool_advance(&cur, st)) {
    acc += pair_sums(window_row(cur, c) / 4u + cur.u, w4, k, grad_out2[pooled_index(cur, c)]);
  }
  store_sums_partial(wid.y, wid, lid, acc, qp.partials);
}

@compute @workgroup_size(WG)
fn relu_max_pool_grad_partials_wide(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let c = wid.y;
  let k = affine_of(c);
  let st = pool_step();
  let w4 = qp.in_w / 4u;
  var acc = vec2<f32>(0.0, 0.0);
  for (var cur = pool_cursor_start(wid, lid); cur.r < cur.end; pool_advance(&cur, st)) {
    let i = window_row(cur, c) / 4u + 2u * cur.u;
    let g = grad_out4[pooled_index(cur, c)];
    acc += pair_sums(i, w4, k, g.xy) + pair_sums(i + 1u, w4, k, g.zw);
  }
  store_sums_partial(wid.y, wid, lid, acc, qp.partials);
}

// dx as grad_input: scale * g + k_centred * ((x - pivot) - offset) + k_const in training, scale * g in evaluation.
struct DxCoef { scale: f32, centred: f32, constant: f32 }

fn dx_coef_of(c: u32, k: Affine) -> DxCoef {
  if (!TRAINING) { return DxCoef(k.scale, 0.0, 0.0); }
  return DxCoef(k.scale, dx_coef_in[c], dx_coef_in[qp.channels + c]);
}

fn dx_of(v: f32, g: f32, k: Affine, d: DxCoef) -> f32 {
  if (!TRAINING) { return d.scale * g; }
  return d.scale * g + d.centred * ((v - k.pivot) - k.offset) + d.constant;
}

fn dx_of4(v: vec4<f32>, g: vec4<f32>, k: Affine, d: DxCoef) -> vec4<f32> {
  if (!TRAINING) { return d.scale * g; }
  return d.scale * g + d.centred * ((v - k.pivot) - k.offset) + d.constant;
}

// Each unit writes its window's four dx, and the last window of a row (column) also the uncovered last column
// (row) beside it (g = 0 there), so every dx element is written exactly once.
@compute @workgroup_size(WG)
fn relu_max_pool_grad_input(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let c = wid.y;
  let k = affine_of(c);
  let d = dx_coef_of(c, k);
  let st = pool_step();
  let w = qp.in_w;
  let odd_col = (w & 1u) == 1u;
  let odd_row = (qp.in_h & 1u) == 1u;
  for (var cur = pool_cursor_start(wid, lid); cur.r < cur.end; pool_advance(&cur, st)) {
    let i = window_row(cur, c) + 2u * cur.u;
    let v = vec4<f32>(x[i], x[i + 1u], x[i + w], x[i + w + 1u]);
    let g = route(pick_max(bn_relu(v.x, k), bn_relu(v.y, k), bn_relu(v.z, k), bn_relu(v.w, k)), grad_out[pooled_index(cur, c)]);
    let dx = dx_of4(v, g, k, d);
    out[i] = dx.x;
    out[i + 1u] = dx.y;
    out[i + w] = dx.z;
    out[i + w + 1u] = dx.w;
    let last_col = odd_col && cur.u == qp.row_units - 1u;
    let last_row = odd_row && cur.oy == qp.out_h - 1u;
    if (last_col) {
      out[i + 2u] = dx_of(x[i + 2u], 0.0, k, d);
      out[i + w + 2u] = dx_of(x[i + w + 2u], 0.0, k, d);
    }
    if (last_row) {
      out[i + 2u * w] = dx_of(x[i + 2u * w], 0.0, k, d);
      out[i + 2u * w + 1u] = dx_of(x[i + 2u * w + 1u], 0.0, k, d);
    }
    if (last_col && last_row) { out[i + 2u * w + 2u] = dx_of(x[i + 2u * w + 2u], 0.0, k, d); }
  }
}

// dx of the two windows whose rows are x4[i] and x4[i + w4], pooled gradients g.
fn pair_dx(i: u32, w4: u32, k: Affine, d: DxCoef, g_pooled: vec2<f32>) {
  let top = x4[i];
  let bottom = x4[i + w4];
  let g = route_pair(pick_pair(bn_relu4(top, k), bn_relu4(bottom, k)), g_pooled);
  out4[i] = dx_of4(top, g.top, k, d);
  out4[i + w4] = dx_of4(bottom, g.bottom, k, d);
}

// dx of an uncovered last row's vec4 (no pooled gradient).
fn uncovered_dx4(i: u32, k: Affine, d: DxCoef) {
  out4[i] = dx_of4(x4[i], vec4<f32>(0.0), k, d);
}

@compute @workgroup_size(WG)
fn relu_max_pool_grad_input_vec4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let c = wid.y;
  let k = affine_of(c);
  let d = dx_coef_of(c, k);
  let st = pool_step();
  let w4 = qp.in_w / 4u;
  let odd_row = (qp.in_h & 1u) == 1u; // W % 4 == 0: no uncovered column
  for (var cur = pool_cursor_start(wid, lid); cur.r < cur.end; pool_advance(&cur, st)) {
    let i = window_row(cur, c) / 4u + cur.u;
    pair_dx(i, w4, k, d, grad_out2[pooled_index(cur, c)]);
    if (odd_row && cur.oy == qp.out_h - 1u) { uncovered_dx4(i + 2u * w4, k, d); }
  }
}

@compute @workgroup_size(WG)
fn relu_max_pool_grad_input_wide(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let c = wid.y;
  let k = affine_of(c);
  let d = dx_coef_of(c, k);
  let st = pool_step();
  let w4 = qp.in_w / 4u;
  let odd_row = (qp.in_h & 1u) == 1u;
  for (var cur = pool_cursor_start(wid, lid); cur.r < cur.end; pool_advance(&cur, st)) {
    let i = window_row(cur, c) / 4u + 2u * cur.u;
    let g = grad_out4[pooled_index(cur, c)];
    pair_dx(i, w4, k, d, g.xy);
    pair_dx(i + 1u, w4, k, d, g.zw);
    if (odd_row && cur.oy == qp.out_h - 1u) {
      uncovered_dx4(i + 2u * w4, k, d);
      uncovered_dx4(i + 2u * w4 + 1u, k, d);
    }
  }
}
