// Softmax and log-softmax along the last dim, at temperature T: softmax(z / T). One workgroup per row; its 64
// invocations stride over the row's K entries, then combine in a fixed-order tree (deterministic, no atomics).
// Numerically stable: the row max is subtracted before exp, and log-softmax is (z - max)/T - log(sum exp(...)),
// never the log of a softmax (which underflows to log(0) = -inf).

struct Rows {
  rows: u32,   // number of rows (product of the leading dims)
  k: u32,      // row length (the last dim)
  inv_t: f32,  // 1 / T
}

@group(0) @binding(0) var<uniform> p: Rows;
@group(0) @binding(1) var<storage, read> z: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
// Backward: the forward output y (softmax or log-softmax), the output gradient, and the input gradient.
@group(0) @binding(1) var<storage, read> y: array<f32>;
@group(0) @binding(3) var<storage, read> grad_out: array<f32>;
@group(0) @binding(2) var<storage, read_write> grad_z: array<f32>;

const WG: u32 = 64u;
var<workgroup> tree: array<f32, WG>;

// Fixed-order tree over the workgroup; every invocation gets the result. Call from uniform control flow.
fn workgroup_max(lid: u32, value: f32) -> f32 {
  tree[lid] = value;
  workgroupBarrier();
  for (var stride = WG / 2u; stride > 0u; stride = stride / 2u) {
    if (lid < stride) { tree[lid] = max(tree[lid], tree[lid + stride]); }
    workgroupBarrier();
  }
  let result = tree[0];
  workgroupBarrier(); // everyone has read tree[0] before the next reduction overwrites it
  return result;
}

fn workgroup_sum(lid: u32, value: f32) -> f32 {
  tree[lid] = value;
  workgroupBarrier();
  for (var stride = WG / 2u; stride > 0u; stride = stride / 2u) {
    if (lid < stride) { tree[lid] += tree[lid + stride]; }
    workgroupBarrier();
  }
  let result = tree[0];
  workgroupBarrier();
  return result;
}

fn row_of(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
  return wid.x + wid.y * nwg.x; // uniform across the workgroup, so the barriers are legal
}

// Row max and log of the row's sum of exp((z - max) / T). Rows past the end give harmless values.
fn row_stats(row: u32, in_range: bool, lid: u32) -> vec2<f32> {
  let base = row * p.k;
  var local_max = -0x1.fffffep+127f;
  if (in_range) {
    for (var j = lid; j < p.k; j += WG) { local_max = max(local_max, z[base + j]); }
  }
  let row_max = workgroup_max(lid, local_max);
  var local_sum = 0.0;
  if (in_range) {
    for (var j = lid; j < p.k; j += WG) { local_sum += exp((z[base + j] - row_max) * p.inv_t); }
  }
  let log_sum = log(workgroup_sum(lid, local_sum));
  return vec2<f32>(row_max, log_sum);
}

@compute @workgroup_size(64)
fn softmax_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
  let row = row_of(wid, nwg);
  let in_range = row < p.rows;
  let stats = row_stats(row, in_range, lid);
  if (!in_range) { return; }
  let base = row * p.k;
  for (var j = lid; j < p.k; j += WG) { out[base + j] = exp((z[base + j] - stats.x) * p.inv_t - stats.y); }
}

@compute @workgroup_size(64)
fn log_softmax_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_index) lid: u32) {
  let row = row_of(wid, nwg);
  let in_range = row < p.rows;
  let stats = row_stats(row, in_range, lid);
  if (!in_range) { return; }
  let base = row * p.k;
  for (var j = lid; j < p.k; j += WG) { out[base + j] = (z[base + j] - stats.x) * p.inv_t - stats.y; }
}

// y = softmax(z / T):  dz = y * (g - sum_j g_j y_j) / T.
@compute @workgroup_size(64)
fn softmax_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
  let row = row_of(wid, nwg);
  let in_range = row < p.rows;
  let base = row * p.k;
  var local_dot = 0.0;
  if (in_range) {
    for (var j = lid; j < p.k; j += WG) { local_dot += grad_out[base + j] * y[base + j]; }
  }
  let dot_gy = workgroup_sum(lid, local_dot);
  if (!in_range) { return; }
  for (var j = lid; j < p.k; j += WG) {
    grad_z[base + j] = y[base + j] * (grad_out[base + j] - dot_gy) * p.inv_t;
  }
}

// y = log_softmax(z / T):  dz = (g - exp(y) * sum_j g_j) / T  (exp(y) is the softmax, computed without underflow
// trouble: y <= 0 is finite).
@compute @workgroup_size(64)
fn log_softmax_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                        @builtin(local_invocation_index) lid: u32) {
  let row = row_of(wid, nwg);
  let in_range = row < p.rows;
  let base = row * p.k;
  var local_sum = 0.0;
  if (in_range) {
    for (var j = lid; j < p.k; j += WG) { local_sum += grad_out[base + j]; }
  }
  let sum_g = workgroup_sum(lid, local_sum);
  if (!in_range) { return; }
  for (var j = lid; j < p.k; j += WG) {
    grad_z[base + j] = (grad_out[base + j] - exp(y[base + j]) * sum_g) * p.inv_t;
  }
}
