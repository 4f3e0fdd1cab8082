// Relational family: pairwise euclidean distances (cdist), the RKD distance and angle structures, and L2
// normalisation. Forward and backward side by side. Every reduction runs in a fixed order (per-thread strided
// partial sums, then a fixed tree); every gradient is a gather (one invocation owns one output), never atomics.
//
// Zero distances: a pair at distance 0 (the diagonal, identical rows) contributes exactly 0 to every gradient:
// its weight g/d is replaced by 0 (cdist) and its inverse norm by 0 (angle), so nothing divides by zero.

struct Cdist { m: u32, n: u32, d: u32 }
// out[r, k] = sum_j w(r, j) * (x[r, k] - y[j, k]) with w(r, j) = grad[o] / dist[o] (0 where dist[o] == 0) and
// o = r * w_row + j * w_col: the strides read w transposed for the gradient of cdist's second argument.
struct CdistBackward { rows: u32, cols: u32, inner: u32, w_row: u32, w_col: u32 }
struct Total { count: u32 }
struct RkdDistance { count: u32, b: u32, pairs: f32, eps: f32 }
struct Pairs { b: u32, d: u32, eps: f32 }
struct Cube { b: u32 }
struct L2 { rows: u32, n: u32, inner: u32, eps: f32 }
struct PdistClamp { count: u32, b: u32, floor: f32 }

@group(0) @binding(0) var<uniform> cd: Cdist;
@group(0) @binding(0) var<uniform> cb: CdistBackward;
@group(0) @binding(0) var<uniform> tot: Total;
@group(0) @binding(0) var<uniform> rkd: RkdDistance;
@group(0) @binding(0) var<uniform> pr: Pairs;
@group(0) @binding(0) var<uniform> cube: Cube;
@group(0) @binding(0) var<uniform> l2: L2;
@group(0) @binding(0) var<uniform> pc: PdistClamp;

@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> grad: array<f32>;
@group(0) @binding(4) var<storage, read> dist: array<f32>;
@group(0) @binding(5) var<storage, read> x: array<f32>;
@group(0) @binding(6) var<storage, read> y: array<f32>;
@group(0) @binding(7) var<storage, read> total: array<f32>;     // [1]: sum of the distances
@group(0) @binding(8) var<storage, read> dots: array<f32>;      // [1]: sum of grad * distance
@group(0) @binding(9) var<storage, read> e: array<f32>;         // embeddings [B, D]
@group(0) @binding(10) var<storage, read> u: array<f32>;        // unit differences [B, B, D]
@group(0) @binding(11) var<storage, read> norms: array<f32>;    // ||e_j - e_i|| [B, B]
@group(0) @binding(12) var<storage, read> dv: array<f32>;       // gradient w.r.t. e_j - e_i [B, B, D]
@group(0) @binding(13) var<storage, read_write> out: array<f32>;
@group(0) @binding(14) var<storage, read_write> norms_out: array<f32>;
@group(0) @binding(15) var<storage, read_write> gu: array<f32>; // gradient w.r.t. u, turned into dv in place

const WG: u32 = 256u;     // 1-D elementwise kernels and single-workgroup reductions
const ROW_WG: u32 = 64u;  // one workgroup per pair / row

var<workgroup> partial: array<f32, 256>;
var<workgroup> partial2: array<f32, 256>;

// Sums partial[0..n) into partial[0] with a fixed tree (n a power of two). Call from uniform control flow.
fn tree_sum(lid: u32, n: u32) {
  workgroupBarrier();
  for (var stride = n / 2u; stride > 0u; stride = stride / 2u) {
    if (lid < stride) { partial[lid] += partial[lid + stride]; }
    workgroupBarrier();
  }
}

// Same, for partial and partial2 together.
fn tree_sum2(lid: u32, n: u32) {
  workgroupBarrier();
  for (var stride = n / 2u; stride > 0u; stride = stride / 2u) {
    if (lid < stride) {
      partial[lid] += partial[lid + stride];
      partial2[lid] += partial2[lid + stride];
    }
    workgroupBarrier();
  }
}

// ---- cdist ---------------------------------------------------------------------------------------------------
// No shared memory and no barriers: on drivers that run invocations as SIMD lanes a barrier splits the shader into
// coroutines (compile time and run time). Each invocation owns four neighbouring outputs of one row, so every
// value it loads serves up to four of them. Out-of-range outputs read clamped (valid) rows and are dropped.

// Invocation index over a 1-D grid folded over y past 65,535 workgroups (Device.dispatch splits it).
fn invocation(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
  return (wid.x + wid.y * nwg.x) * ROW_WG + lid;
}

// first, first + 1, first + 2, first + 3, each at most last (the clamped indices of an invocation's four outputs).
fn clamped4(first: u32, last: u32) -> vec4<u32> {
  return min(vec4<u32>(first) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(last));
}

// out[i, j] = ||a_i - b_j||, a [m, d], b [n, d]: an invocation takes row i of a against rows j0..j0+3 of b.
// The differences are squared directly (no ||a||^2 + ||b||^2 - 2ab), so identical rows give exactly 0.
@compute @workgroup_size(64)
fn cdist_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
  let blocks = (cd.n + 3u) / 4u;
  let t = invocation(wid, nwg, lid);
  if (t >= cd.m * blocks) { return; }
  let i = t / blocks;
  let j0 = (t % blocks) * 4u;
  let b_rows = clamped4(j0, cd.n - 1u) * cd.d;
  let a_row = i * cd.d;
  var acc = vec4<f32>(0.0);
  for (var k = 0u; k < cd.d; k++) {
    let diff = a[a_row + k] - vec4<f32>(b[b_rows.x + k], b[b_rows.y + k], b[b_rows.z + k], b[b_rows.w + k]);
    acc += diff * diff;
  }
  let dists = sqrt(acc);
  for (var q = 0u; q < 4u; q++) {
    if (j0 + q < cd.n) { out[i * cd.n + j0 + q] = dists[q]; }
  }
}

// Gradient of cdist for one argument (see CdistBackward): out [rows, cols], x [rows, cols], y [inner, cols]. An
// invocation takes columns c0..c0+3 of row r and walks j in order: a deterministic gather.
@compute @workgroup_size(64)
fn cdist_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
  let blocks = (cb.cols + 3u) / 4u;
  let t = invocation(wid, nwg, lid);
  if (t >= cb.rows * blocks) { return; }
  let r = t / blocks;
  let c0 = (t % blocks) * 4u;
  let cols = clamped4(c0, cb.cols - 1u);
  let x_row = r * cb.cols;
  let xv = vec4<f32>(x[x_row + cols.x], x[x_row + cols.y], x[x_row + cols.z], x[x_row + cols.w]);
  var acc = vec4<f32>(0.0);
  for (var j = 0u; j < cb.inner; j++) {
    let o = r * cb.w_row + j * cb.w_col;
    let dval = dist[o];
    let w = select(0.0, grad[o] / dval, dval > 0.0);
    let y_row = j * cb.cols;
    acc += w * (xv - vec4<f32>(y[y_row + cols.x], y[y_row + cols.y], y[y_row + cols.z], y[y_row + cols.w]));
  }
  for (var q = 0u; q < 4u; q++) {
    if (c0 + q < cb.cols) { out[x_row + c0 + q] = acc[q]; }
  }
}

// ---- RKD distance --------------------------------------------------------------------------------------------

// out[0] = sum of x[0..count) (one workgroup).
@compute @workgroup_size(256)
fn sum_all(@builtin(local_invocation_index) lid: u32) {
  var acc = 0.0;
  for (var i = lid; i < tot.count; i += WG) { acc += x[i]; }
  partial[lid] = acc;
  tree_sum(lid, WG);
  if (lid == 0u) { out[0] = partial[0]; }
}

// out[0] = sum of x[i] * y[i] over [0, count) (one workgroup).
@compute @workgroup_size(256)
fn sum_products(@builtin(local_invocation_index) lid: u32) {
  var acc = 0.0;
  for (var i = lid; i < tot.count; i += WG) { acc += x[i] * y[i]; }
  partial[lid] = acc;
  tree_sum(lid, WG);
  if (lid == 0u) { out[0] = partial[0]; }
}

// psi = dist / max(mu, eps), mu = total / pairs.
@compute @workgroup_size(256)
fn rkd_distance_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= rkd.count) { return; }
  let mu = total[0] / rkd.pairs;
  out[i] = dist[i] / max(mu, rkd.eps);
}

// Gradient w.r.t. the distances, symmetrised (out[i, j] = gd[i, j] + gd[j, i]) so that one cdist_backward
// with x = y = e gives the whole gradient of e. gd = g / den - s / (den^2 * pairs) with s = sum(g * dist):
// the second term is the path through mu, cut when the eps clamp is active (mu < eps).
@compute @workgroup_size(256)
fn rkd_distance_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let o = gid.x + gid.y * nwg.x * WG;
  if (o >= rkd.count) { return; }
  let i = o / rkd.b;
  let j = o % rkd.b;
  let mu = total[0] / rkd.pairs;
  let den = max(mu, rkd.eps);
  var through_mu = 0.0;
  if (mu >= rkd.eps) { through_mu = dots[0] / (den * den * rkd.pairs); }
  out[o] = (grad[o] + grad[j * rkd.b + i]) / den - 2.0 * through_mu;
}

// The RKD authors' pdist, in place on the [B, B] distances: off the diagonal, a distance below floor becomes
// floor (their code clamps the squared distance at floor^2 before the square root; the diagonal stays 0).
@compute @workgroup_size(256)
fn pdist_clamp(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let o = gid.x + gid.y * nwg.x * WG;
  if (o >= pc.count) { return; }
  if (o / pc.b != o % pc.b && out[o] < pc.floor) { out[o] = pc.floor; }
}

// The clamp's gradient, in place on the distance gradient: 0 where the clamp is active (off the diagonal,
// dist == floor), so pairs closer than floor carry no gradient, as through torch.clamp.
@compute @workgroup_size(256)
fn pdist_clamp_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let o = gid.x + gid.y * nwg.x * WG;
  if (o >= pc.count) { return; }
  if (o / pc.b != o % pc.b && dist[o] <= pc.floor) { out[o] = 0.0; }
}

// ---- RKD angle -----------------------------------------------------------------------------------------------

// One invocation per pair p = i * B + j: v = e_j - e_i, norms_out[p] = ||v||, out[p, :] = v / max(||v||, eps)
// (so u = 0 when v = 0). Lanes run over pairs, each walking its own D values: on SIMD-over-invocations drivers a
// workgroup tree per pair (six barriers) cost more than the loads; a D of a few hundred is a short loop anywhere.
@compute @workgroup_size(64)
fn angle_unit_diffs(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let p = gid.x + gid.y * nwg.x * ROW_WG;
  if (p >= pr.b * pr.b) { return; }
  let ei = (p / pr.b) * pr.d;
  let ej = (p % pr.b) * pr.d;
  var acc = 0.0;
  for (var t = 0u; t < pr.d; t++) {
    let v = e[ej + t] - e[ei + t];
    acc += v * v;
  }
  let norm = sqrt(acc);
  let den = max(norm, pr.eps);
  // A division, not a multiply by 1/den: at D = 1 that keeps u exactly +-1, so its exact-zero gradient stays 0.
  for (var t = 0u; t < pr.d; t++) { out[p * pr.d + t] = (e[ej + t] - e[ei + t]) / den; }
  norms_out[p] = norm;
}

// out[i, j, k] = grad[i, j, k] + grad[i, k, j]: an angle's gradient reaches u_ij from both of its slots.
@compute @workgroup_size(256)
fn angle_symmetrize(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let o = gid.x + gid.y * nwg.x * WG;
  let n = cube.b;
  if (o >= n * n * n) { return; }
  let k = o % n;
  let ij = o / n;
  let j = ij % n;
  let i = ij / n;
  out[o] = grad[o] + grad[(i * n + k) * n + j];
}

// One invocation per pair p (as angle_unit_diffs): turns the gradient w.r.t. u_p into the gradient w.r.t.
// v_p = e_j - e_i, in place: dv = (gu - u <u, gu>) / ||v||, and 0 where ||v|| < eps (the pair is degenerate: u is
// held at 0 there).
@compute @workgroup_size(64)
fn angle_pair_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let p = gid.x + gid.y * nwg.x * ROW_WG;
  if (p >= pr.b * pr.b) { return; }
  let base = p * pr.d;
  var c = 0.0;
  for (var t = 0u; t < pr.d; t++) { c += u[base + t] * gu[base + t]; }
  let norm = norms[p];
  var inv = 0.0;
  if (norm >= pr.eps) { inv = 1.0 / norm; }
  for (var t = 0u; t < pr.d; t++) { gu[base + t] = (gu[base + t] - u[base + t] * c) * inv; }
}

// out[m, t] = sum_i dv[i, m, t] - dv[m, i, t]: e_m enters v_im = e_m - e_i with + and v_mi = e_i - e_m with -.
@compute @workgroup_size(256)
fn angle_gather(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let o = gid.x + gid.y * nwg.x * WG;
  if (o >= pr.b * pr.d) { return; }
  let m = o / pr.d;
  let t = o % pr.d;
  var acc = 0.0;
  for (var i = 0u; i < pr.b; i++) {
    acc += dv[(i * pr.b + m) * pr.d + t] - dv[(m * pr.b + i) * pr.d + t];
  }
  out[o] = acc;
}

// ---- L2 normalisation (F.normalize) --------------------------------------------------------------------------

// The tensor is viewed as [outer, n, inner]; one workgroup per (outer, inner) row, whose n elements are
// inner apart. Returns the element offset of the row's first element.
fn l2_row_base(row: u32) -> u32 {
  return (row / l2.inner) * l2.n * l2.inner + row % l2.inner;
}

// out = x / max(||x||, eps) along the row.
@compute @workgroup_size(64)
fn l2norm_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
  let row = wid.x + wid.y * nwg.x;
  let in_range = row < l2.rows;
  let base = l2_row_base(row);
  var acc = 0.0;
  if (in_range) {
    for (var t = lid; t < l2.n; t += ROW_WG) {
      let v = x[base + t * l2.inner];
      acc += v * v;
    }
  }
  partial[lid] = acc;
  tree_sum(lid, ROW_WG);
  if (in_range) {
    let den = max(sqrt(partial[0]), l2.eps);
    for (var t = lid; t < l2.n; t += ROW_WG) {
      let o = base + t * l2.inner;
      out[o] = x[o] / den;
    }
  }
}

// gx = g / den - x <x, g> / (den^2 ||x||) where ||x|| >= eps; gx = g / eps where the clamp is active (PyTorch's
// gradient of x / clamp_min(||x||, eps)).
@compute @workgroup_size(64)
fn l2norm_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
  let row = wid.x + wid.y * nwg.x;
  let in_range = row < l2.rows;
  let base = l2_row_base(row);
  var sq = 0.0;
  var xg = 0.0;
  if (in_range) {
    for (var t = lid; t < l2.n; t += ROW_WG) {
      let o = base + t * l2.inner;
      sq += x[o] * x[o];
      xg += x[o] * grad[o];
    }
  }
  partial[lid] = sq;
  partial2[lid] = xg;
  tree_sum2(lid, ROW_WG);
  if (in_range) {
    let norm = sqrt(partial[0]);
    let den = max(norm, l2.eps);
    var radial = 0.0;
    if (norm >= l2.eps) { radial = partial2[0] / (den * den * norm); }
    for (var t = lid; t < l2.n; t += ROW_WG) {
      let o = base + t * l2.inner;
      out[o] = grad[o] / den - x[o] * radial;
    }
  }
}
