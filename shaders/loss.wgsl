// Losses: cross-entropy (fused with log-softmax), Hinton KD, Decoupled KD, and the pointwise losses (MSE,
// smooth L1, KL divergence). Forward and backward side by side.
//
// Row losses ([B, K] logits): one invocation per row walks its K classes (class counts are small: 10, 11, 100),
// so a workgroup covers 256 rows and folds their losses in a fixed-order tree into one partial per workgroup;
// `sum_partials` then folds the partials (deterministic, no atomics). Every log-probability is computed in the log
// domain with the row max subtracted: log p = (z - max)/T - log(sum exp((z - max)/T)), never log(softmax).
//
// Pointwise losses: each workgroup folds a fixed chunk of WG * items elements (coalesced: invocation i takes
// i, i + 256, ...), then `sum_partials` folds the partials; large tensors (FitNet hints) are reduced in parallel.

const WG: u32 = 256u;
const FLT_LOWEST: f32 = -0x1.fffffep+127f;

var<workgroup> tree: array<f32, WG>;

// Fixed-order tree sum over the workgroup; every invocation gets the total. Call from uniform control flow.
fn workgroup_sum(lid: u32, value: f32) -> f32 {
  tree[lid] = value;
  workgroupBarrier();
  for (var stride = WG / 2u; stride > 0u; stride = stride / 2u) {
    if (lid < stride) { tree[lid] += tree[lid + stride]; }
    workgroupBarrier();
  }
  let total = tree[0];
  workgroupBarrier();
  return total;
}

fn thread_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
  return gid.x + gid.y * nwg.x * WG;
}

fn block_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
  return wid.x + wid.y * nwg.x;
}

// ---- bindings (names are matched by the host; one entry never uses two names on the same slot) -------------

struct RowLoss {
  rows: u32,
  k: u32,
  per_sample: u32,  // 1: write one loss per row to out[row]; 0: write scale * (sum over the workgroup) to out[part]
  scale: f32,       // forward: the reduction's factor; backward: multiplies grad_out
  inv_t: f32,       // 1 / T (KD losses)
  smoothing: f32,   // cross-entropy label smoothing
  alpha: f32,       // DKD weights
  beta: f32,
}

struct Pointwise {
  n: u32,
  per_element: u32, // backward: 1 when grad_out has one value per element (reduction 'none'), 0 for a scalar
  scale: f32,
  beta: f32,        // smooth L1 threshold
  items: u32,       // pointwise_blocks: elements per invocation
}

struct SumPartials { n: u32, scale: f32 }

@group(0) @binding(0) var<uniform> rp: RowLoss;
@group(0) @binding(0) var<uniform> pp: Pointwise;
@group(0) @binding(0) var<uniform> sp: SumPartials;

@group(0) @binding(1) var<storage, read> logits: array<f32>;    // student logits for the KD losses
@group(0) @binding(2) var<storage, read> teacher: array<f32>;   // teacher logits
@group(0) @binding(3) var<storage, read> labels: array<i32>;
@group(0) @binding(1) var<storage, read> inputs: array<f32>;    // pointwise: the prediction (kl_div: log-probs)
@group(0) @binding(2) var<storage, read> targets: array<f32>;   // pointwise: the target (kl_div: probs)
@group(0) @binding(1) var<storage, read> values: array<f32>;    // sum_partials
@group(0) @binding(4) var<storage, read> grad_out: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<storage, read_write> grad: array<f32>;

// Writes a row's loss (per_sample) or the scaled workgroup sum of the rows' losses. `per_sample` lives in a
// uniform, so the branch (and the barriers in it) is uniform.
fn emit_row_loss(row: u32, in_range: bool, loss: f32, lid: u32, part: u32) {
  if (rp.per_sample == 1u) {
    if (in_range) { out[row] = loss; }
  } else {
    let total = workgroup_sum(lid, select(0.0, loss, in_range));
    if (lid == 0u) { out[part] = total * rp.scale; }
  }
}

// Out-of-range labels are clamped to [0, K) so no kernel reads outside the row (no readback to validate them).
fn label_of(row: u32) -> u32 {
  return u32(clamp(labels[row], 0, i32(rp.k) - 1));
}

// ---- cross-entropy ----------------------------------------------------------------------------------------------
// loss = (1 - eps) * (-log p_y) + eps * mean_k(-log p_k), as torch.nn.functional.cross_entropy(label_smoothing=eps).
// With log Z = log sum exp(z - max):  -log p_k = log Z - (z_k - max).

@compute @workgroup_size(256)
fn cross_entropy_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>,
                         @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = thread_index(gid, nwg);
  let in_range = row < rp.rows;
  var loss = 0.0;
  if (in_range) {
    let base = row * rp.k;
    var row_max = FLT_LOWEST;
    for (var j = 0u; j < rp.k; j++) { row_max = max(row_max, logits[base + j]); }
    var sum_exp = 0.0;
    var sum_shifted = 0.0;
    for (var j = 0u; j < rp.k; j++) {
      let shifted = logits[base + j] - row_max;
      sum_exp += exp(shifted);
      sum_shifted += shifted;
    }
    let log_z = log(sum_exp);
    let nll = log_z - (logits[base + label_of(row)] - row_max);
    let uniform_nll = log_z - sum_shifted / f32(rp.k);
    loss = (1.0 - rp.smoothing) * nll + rp.smoothing * uniform_nll;
  }
  emit_row_loss(row, in_range, loss, lid, block_index(wid, nwg));
}

// d loss_b / d z_k = softmax_k - ((1 - eps) [k == y] + eps / K), times the row's output gradient and scale.
@compute @workgroup_size(256)
fn cross_entropy_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let row = thread_index(gid, nwg);
  if (row >= rp.rows) { return; }
  let base = row * rp.k;
  var row_max = FLT_LOWEST;
  for (var j = 0u; j < rp.k; j++) { row_max = max(row_max, logits[base + j]); }
  var sum_exp = 0.0;
  for (var j = 0u; j < rp.k; j++) { sum_exp += exp(logits[base + j] - row_max); }
  let log_z = log(sum_exp);
  let y = label_of(row);
  let g = grad_out[select(0u, row, rp.per_sample == 1u)] * rp.scale;
  let uniform_part = rp.smoothing / f32(rp.k);
  for (var j = 0u; j < rp.k; j++) {
    let prob = exp(logits[base + j] - row_max - log_z);
    let smoothed_onehot = select(0.0, 1.0 - rp.smoothing, j == y) + uniform_part;
    grad[base + j] = (prob - smoothed_onehot) * g;
  }
}

// ---- log-softmax statistics of a row at temperature T ------------------------------------------------------------
// (max over the row, log sum exp((z - max) / T)); `skip` excludes one class (DKD's non-target distribution).

fn student_stats(base: u32, skip: u32) -> vec2<f32> {
  var row_max = FLT_LOWEST;
  for (var j = 0u; j < rp.k; j++) { if (j != skip) { row_max = max(row_max, logits[base + j]); } }
  var sum_exp = 0.0;
  for (var j = 0u; j < rp.k; j++) { if (j != skip) { sum_exp += exp((logits[base + j] - row_max) * rp.inv_t); } }
  return vec2<f32>(row_max, log(sum_exp));
}

fn teacher_stats(base: u32, skip: u32) -> vec2<f32> {
  var row_max = FLT_LOWEST;
  for (var j = 0u; j < rp.k; j++) { if (j != skip) { row_max = max(row_max, teacher[base + j]); } }
  var sum_exp = 0.0;
  for (var j = 0u; j < rp.k; j++) { if (j != skip) { sum_exp += exp((teacher[base + j] - row_max) * rp.inv_t); } }
  return vec2<f32>(row_max, log(sum_exp));
}

const NO_SKIP: u32 = 0xffffffffu;

// ---- Hinton KD: T^2 * KL(p_t^T || p_s^T), batchmean -------------------------------------------------------------
// Row term: sum_k p_t[k] * (log p_t[k] - log p_s[k]). A teacher probability that underflows to 0 multiplies a
// finite log difference, so it contributes exactly 0.

@compute @workgroup_size(256)
fn kd_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>,
              @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = thread_index(gid, nwg);
  let in_range = row < rp.rows;
  var loss = 0.0;
  if (in_range) {
    let base = row * rp.k;
    let s = student_stats(base, NO_SKIP);
    let t = teacher_stats(base, NO_SKIP);
    for (var j = 0u; j < rp.k; j++) {
      let log_pt = (teacher[base + j] - t.x) * rp.inv_t - t.y;
      let log_ps = (logits[base + j] - s.x) * rp.inv_t - s.y;
      loss += exp(log_pt) * (log_pt - log_ps);
    }
  }
  emit_row_loss(row, in_range, loss, lid, block_index(wid, nwg));
}

// d/dz_s = (T / B) * (p_s - p_t) * g; scale = T / B. The teacher gets no gradient.
@compute @workgroup_size(256)
fn kd_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let row = thread_index(gid, nwg);
  if (row >= rp.rows) { return; }
  let base = row * rp.k;
  let s = student_stats(base, NO_SKIP);
  let t = teacher_stats(base, NO_SKIP);
  let g = grad_out[0] * rp.scale;
  for (var j = 0u; j < rp.k; j++) {
    let ps = exp((logits[base + j] - s.x) * rp.inv_t - s.y);
    let pt = exp((teacher[base + j] - t.x) * rp.inv_t - t.y);
    grad[base + j] = (ps - pt) * g;
  }
}

// ---- Decoupled KD (Zhao et al. 2022): alpha * T^2 * TCKD + beta * T^2 * NCKD, batchmean --------------------------
// With target class y:  b = [p_y, 1 - p_y];  TCKD = KL(b_t || b_s);  NCKD = KL(q_t || q_s) where q is the softmax
// over the non-target classes (the target removed exactly, which the reference code approximates by a -1000 mask).
// All in the log domain from two stats per side: the full row and the row without y.
//   log p_y     = (z_y - m) / T - L              with  L = log(exp((z_y - m)/T) + exp((m' - m)/T + L'))
//   log(1 - p_y) = (m' - m) / T + L' - L          (m, m' the full and non-target maxima; L' the non-target log-sum)
//   log q_k     = (z_k - m') / T - L'

struct Binary { log_b1: f32, log_b2: f32 }

fn binary_of(z_y: f32, full_max: f32, rest: vec2<f32>) -> Binary {
  let target_term = (z_y - full_max) * rp.inv_t;
  let rest_term = (rest.x - full_max) * rp.inv_t + rest.y;
  let hi = max(target_term, rest_term); // one of them is >= 0 in exact arithmetic; keep it stable anyway
  let log_all = hi + log(exp(target_term - hi) + exp(rest_term - hi));
  return Binary(target_term - log_all, rest_term - log_all);
}

fn student_max(base: u32) -> f32 {
  var m = FLT_LOWEST;
  for (var j = 0u; j < rp.k; j++) { m = max(m, logits[base + j]); }
  return m;
}

fn teacher_max(base: u32) -> f32 {
  var m = FLT_LOWEST;
  for (var j = 0u; j < rp.k; j++) { m = max(m, teacher[base + j]); }
  return m;
}

@compute @workgroup_size(256)
fn dkd_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = thread_index(gid, nwg);
  let in_range = row < rp.rows;
  var loss = 0.0;
  if (in_range) {
    let base = row * rp.k;
    let y = label_of(row);
    let s_rest = student_stats(base, y);
    let t_rest = teacher_stats(base, y);
    let bs = binary_of(logits[base + y], student_max(base), s_rest);
    let bt = binary_of(teacher[base + y], teacher_max(base), t_rest);
    let tckd = exp(bt.log_b1) * (bt.log_b1 - bs.log_b1) + exp(bt.log_b2) * (bt.log_b2 - bs.log_b2);
    var nckd = 0.0;
    for (var j = 0u; j < rp.k; j++) {
      if (j == y) { continue; }
      let log_qt = (teacher[base + j] - t_rest.x) * rp.inv_t - t_rest.y;
      let log_qs = (logits[base + j] - s_rest.x) * rp.inv_t - s_rest.y;
      nckd += exp(log_qt) * (log_qt - log_qs);
    }
    loss = rp.alpha * tckd + rp.beta * nckd;
  }
  emit_row_loss(row, in_range, loss, lid, block_index(wid, nwg));
}

// d/dz_k = (T / B) * g * [ alpha * dTCKD/ds_k + beta * dNCKD/ds_k ]   (s = z / T; scale = T / B)
//   k == y:  alpha * (b_s1 - b_t1)
//   k != y:  alpha * q_s[k] * (b_s2 - b_t2) + beta * (q_s[k] - q_t[k])
@compute @workgroup_size(256)
fn dkd_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let row = thread_index(gid, nwg);
  if (row >= rp.rows) { return; }
  let base = row * rp.k;
  let y = label_of(row);
  let s_rest = student_stats(base, y);
  let t_rest = teacher_stats(base, y);
  let bs = binary_of(logits[base + y], student_max(base), s_rest);
  let bt = binary_of(teacher[base + y], teacher_max(base), t_rest);
  let g = grad_out[0] * rp.scale;
  let rest_gap = exp(bs.log_b2) - exp(bt.log_b2);
  for (var j = 0u; j < rp.k; j++) {
    if (j == y) {
      grad[base + j] = rp.alpha * (exp(bs.log_b1) - exp(bt.log_b1)) * g;
    } else {
      let qs = exp((logits[base + j] - s_rest.x) * rp.inv_t - s_rest.y);
      let qt = exp((teacher[base + j] - t_rest.x) * rp.inv_t - t_rest.y);
      grad[base + j] = (rp.alpha * qs * rest_gap + rp.beta * (qs - qt)) * g;
    }
  }
}

// ---- pointwise losses ------------------------------------------------------------------------------------------
// LOSS 0: mse        (x - y)^2
// LOSS 1: smooth L1  0.5 d^2 / beta if |d| < beta else |d| - 0.5 beta   (d = x - y; beta = 0 is L1)
// LOSS 2: kl_div     y * (log y - x), 0 where y == 0   (x log-probs, y probs; torch's log_target=False)
override LOSS: u32 = 0u;
// Which argument the backward entry differentiates: 0 the input x, 1 the target y.
override WRT: u32 = 0u;

fn pointwise_value(x: f32, y: f32) -> f32 {
  switch LOSS {
    case 1u: {
      let d = abs(x - y);
      return select(d - 0.5 * pp.beta, 0.5 * d * d / pp.beta, d < pp.beta);
    }
    case 2u: { return select(y * (log(y) - x), 0.0, y == 0.0); }
    default: { let d = x - y; return d * d; }
  }
}

fn pointwise_grad_x(x: f32, y: f32) -> f32 {
  switch LOSS {
    case 1u: { let d = x - y; return select(sign(d), d / pp.beta, abs(d) < pp.beta); }
    case 2u: { return -y; }
    default: { return 2.0 * (x - y); }
  }
}

fn pointwise_grad_y(x: f32, y: f32) -> f32 {
  switch LOSS {
    // torch's kl_div target gradient, masked to 0 where the target is 0.
    case 2u: { return select(log(y) + 1.0 - x, 0.0, y == 0.0); }
    default: { return -pointwise_grad_x(x, y); }
  }
}

// reduction 'none': one loss per element.
@compute @workgroup_size(256)
fn pointwise_elementwise(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = thread_index(gid, nwg);
  if (i >= pp.n) { return; }
  out[i] = pointwise_value(inputs[i], targets[i]);
}

// Reductions: workgroup b folds elements [b * WG * items, (b + 1) * WG * items) into out[b] = scale * sum.
@compute @workgroup_size(256)
fn pointwise_blocks(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
  let part = block_index(wid, nwg);
  let start = part * WG * pp.items;
  var acc = 0.0;
  // A uniform trip count, not a pipeline constant: Mesa would unroll that many copies of the loss (smooth L1 at
  // 32: 0.75 s of cold compile against 0.13 s).
  for (var item = 0u; item < pp.items; item++) {
    let i = start + item * WG + lid;
    if (i < pp.n) { acc += pointwise_value(inputs[i], targets[i]); }
  }
  let total = workgroup_sum(lid, acc);
  if (lid == 0u) { out[part] = total * pp.scale; }
}

@compute @workgroup_size(256)
fn pointwise_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = thread_index(gid, nwg);
  if (i >= pp.n) { return; }
  let g = grad_out[select(0u, i, pp.per_element == 1u)] * pp.scale;
  let x = inputs[i];
  let y = targets[i];
  grad[i] = select(pointwise_grad_x(x, y), pointwise_grad_y(x, y), WRT == 1u) * g;
}

// ---- partial sums -> scalar --------------------------------------------------------------------------------------
// One workgroup: invocation i adds values[i], values[i + 256], ... in order, then the fixed tree; out[0] = scale * sum.
// Partials number n / (WG * items) (a few hundred for a FitNet hint), so one pass handles any realistic size.
@compute @workgroup_size(256)
fn sum_partials(@builtin(local_invocation_index) lid: u32) {
  var acc = 0.0;
  for (var i = lid; i < sp.n; i += WG) { acc += values[i]; }
  let total = workgroup_sum(lid, acc);
  if (lid == 0u) { out[0] = total * sp.scale; }
}
