// Fused multi-tensor optimiser kernels. Every parameter of a model lives in ONE flat buffer (Tensor.pack), with
// its gradient and optimiser state in flat buffers of the same layout, so one dispatch updates all of them.
// The flat buffers hold a multiple of 4 floats (pack aligns every tensor to >= 16 bytes and zero-fills the
// padding), so the kernels work on vec4s; padding stays zero through every update (zero grad, zero param).
//
// Global-norm clipping is two deterministic passes (fixed partition, fixed-order sums, no atomics):
// sum_squares_partials writes one partial sum per workgroup, clip_coefficient reduces them in one workgroup and
// writes the total norm and the clip coefficient min(1, max_norm / (norm + 1e-6)) to GPU buffers. The update
// kernels read that coefficient (grad_scale[0]; a buffer holding 1.0 when no clipping is pending): no readback.

const WG: u32 = 256u;

struct SumSquares { n4: u32, partial_count: u32 }
struct ClipCoefficient { partial_count: u32, max_norm: f32 }
struct ZeroFill { n4: u32 }
struct CountNonFinite { n4: u32 }
// SGD (torch.optim.SGD): first_step selects the momentum buffer initialisation (buf = d_p, no dampening).
struct Sgd { n4: u32, first_step: u32, nesterov: u32, lr: f32, momentum: f32, dampening: f32, weight_decay: f32 }
// Adam / AdamW. Scalars derived in float64 on the CPU, as torch does in Python:
//   step_size = lr / (1 - beta1^t), bias_correction2_sqrt = sqrt(1 - beta2^t),
//   decay_factor = 1 - lr * weight_decay (AdamW; 1 for Adam), l2 = weight_decay (Adam; 0 for AdamW).
struct Adam {
  n4: u32,
  one_minus_beta1: f32,
  beta2: f32,
  one_minus_beta2: f32,
  eps: f32,
  step_size: f32,
  bias_correction2_sqrt: f32,
  decay_factor: f32,
  l2: f32,
}

@group(0) @binding(0) var<uniform> sum_squares_params: SumSquares;
@group(0) @binding(0) var<uniform> clip_params: ClipCoefficient;
@group(0) @binding(0) var<uniform> zero_params: ZeroFill;
@group(0) @binding(0) var<uniform> sgd: Sgd;
@group(0) @binding(0) var<uniform> adam: Adam;
@group(0) @binding(0) var<uniform> nonfinite_params: CountNonFinite;

@group(0) @binding(1) var<storage, read_write> param: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> target_buf: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> partials: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> partials_in: array<f32>;
@group(0) @binding(3) var<storage, read> grad_scale: array<f32>;
@group(0) @binding(3) var<storage, read_write> total_norm: array<f32>;
@group(0) @binding(4) var<storage, read_write> momentum_buf: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> exp_avg: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> clip_coef: array<f32>;
@group(0) @binding(5) var<storage, read_write> exp_avg_sq: array<vec4<f32>>;
// count_nonfinite: the parameters (read only) and the four counts it writes.
@group(0) @binding(1) var<storage, read> checked_param: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> nonfinite_counts: array<u32>;

var<workgroup> scratch: array<f32, WG>;
var<workgroup> wg_counts: array<atomic<u32>, 4>;

fn linear_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
  return gid.x + gid.y * nwg.x * WG;
}

// Sum of the workgroup's 256 scratch values in a fixed order: 16 invocations each add a run of 16, then every
// invocation adds the 16 run sums. Two barriers instead of a log2(256) = 8-level tree: barriers are what
// software adapters pay for, and 16-long serial sums cost a GPU next to nothing. Every invocation must call it.
fn workgroup_sum(lid: u32) -> f32 {
  workgroupBarrier();
  if (lid < 16u) {
    var run = 0.0;
    for (var k = 0u; k < 16u; k++) { run += scratch[lid * 16u + k]; }
    scratch[lid * 16u] = run;
  }
  workgroupBarrier();
  var total = 0.0;
  for (var k = 0u; k < 16u; k++) { total += scratch[k * 16u]; }
  return total;
}

// Pass 1 of the gradient norm: workgroup w sums g^2 over vec4 elements w*WG + lid + k*(partial_count*WG).
@compute @workgroup_size(256)
fn sum_squares_partials(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let stride = sum_squares_params.partial_count * WG;
  var acc = 0.0;
  for (var i = wid.x * WG + lid; i < sum_squares_params.n4; i += stride) {
    let g = grad[i];
    acc += dot(g, g);
  }
  scratch[lid] = acc;
  let total = workgroup_sum(lid);
  if (lid == 0u) { partials[wid.x] = total; }
}

// Pass 2 (one workgroup): total norm and clip coefficient, as torch.nn.utils.clip_grad_norm_.
@compute @workgroup_size(256)
fn clip_coefficient(@builtin(local_invocation_index) lid: u32) {
  var acc = 0.0;
  for (var i = lid; i < clip_params.partial_count; i += WG) { acc += partials_in[i]; }
  scratch[lid] = acc;
  let sum_sq = workgroup_sum(lid);
  if (lid == 0u) {
    let norm = sqrt(sum_sq);
    total_norm[0] = norm;
    clip_coef[0] = min(clip_params.max_norm / (norm + 1e-6), 1.0);
  }
}

@compute @workgroup_size(256)
fn zero_fill(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = linear_index(gid, nwg);
  if (i >= zero_params.n4) { return; }
  target_buf[i] = vec4<f32>(0.0);
}

// torch.optim.SGD with momentum: d_p = g + wd*p; buf = first ? d_p : momentum*buf + (1-dampening)*d_p;
// d_p = nesterov ? d_p + momentum*buf : buf; p -= lr*d_p.
@compute @workgroup_size(256)
fn sgd_momentum_step(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = linear_index(gid, nwg);
  if (i >= sgd.n4) { return; }
  let p = param[i];
  var d_p = grad[i] * grad_scale[0] + sgd.weight_decay * p;
  var buf = d_p;
  if (sgd.first_step == 0u) { buf = sgd.momentum * momentum_buf[i] + (1.0 - sgd.dampening) * d_p; }
  momentum_buf[i] = buf;
  if (sgd.nesterov == 1u) { d_p = d_p + sgd.momentum * buf; } else { d_p = buf; }
  param[i] = p - sgd.lr * d_p;
}

// torch.optim.SGD without momentum (no buffer): p -= lr * (g + wd*p).
@compute @workgroup_size(256)
fn sgd_step(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = linear_index(gid, nwg);
  if (i >= sgd.n4) { return; }
  let p = param[i];
  param[i] = p - sgd.lr * (grad[i] * grad_scale[0] + sgd.weight_decay * p);
}

// torch.optim.Adam / AdamW (amsgrad=False): AdamW first decays p *= 1 - lr*wd; Adam adds wd*p to the gradient.
// m = lerp(m, g, 1-beta1); v = beta2*v + (1-beta2)*g*g; p -= step_size * m / (sqrt(v)/sqrt(bc2) + eps).
@compute @workgroup_size(256)
fn adam_step(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = linear_index(gid, nwg);
  if (i >= adam.n4) { return; }
  let p_old = param[i];
  let g = grad[i] * grad_scale[0] + adam.l2 * p_old;
  let p = p_old * adam.decay_factor;
  let m_old = exp_avg[i];
  let m = m_old + adam.one_minus_beta1 * (g - m_old);
  let v = adam.beta2 * exp_avg_sq[i] + adam.one_minus_beta2 * (g * g);
  exp_avg[i] = m;
  exp_avg_sq[i] = v;
  let denom = sqrt(v) / adam.bias_correction2_sqrt + adam.eps;
  param[i] = p - adam.step_size * (m / denom);
}

// NaN: exponent bits all ones and a non-zero mantissa; infinity: exponent all ones, mantissa zero. Tested on the
// bits, since WGSL lets compilers assume floats are finite (x != x may be folded away).
fn nan_count(v: vec4<f32>) -> u32 {
  let bits = bitcast<vec4<u32>>(v);
  let special = (bits & vec4<u32>(0x7f800000u)) == vec4<u32>(0x7f800000u);
  let mantissa = (bits & vec4<u32>(0x007fffffu)) != vec4<u32>(0u);
  return dot(select(vec4<u32>(0u), vec4<u32>(1u), special & mantissa), vec4<u32>(1u));
}
fn inf_count(v: vec4<f32>) -> u32 {
  let bits = bitcast<vec4<u32>>(v);
  let special = (bits & vec4<u32>(0x7f800000u)) == vec4<u32>(0x7f800000u);
  let mantissa = (bits & vec4<u32>(0x007fffffu)) != vec4<u32>(0u);
  return dot(select(vec4<u32>(0u), vec4<u32>(1u), special & !mantissa), vec4<u32>(1u));
}

// The health check of a training step (one workgroup): counts of NaN and infinite values in the gradients and
// the parameters, nonfinite_counts = [grad NaN, grad Inf, param NaN, param Inf]. Exact integer counts, so the
// result does not depend on the order of the atomic adds. Overwrites the counts: no clearing pass needed.
@compute @workgroup_size(256)
fn count_nonfinite(@builtin(local_invocation_index) lid: u32) {
  var counts = vec4<u32>(0u);
  for (var i = lid; i < nonfinite_params.n4; i += WG) {
    let g = grad[i];
    let p = checked_param[i];
    counts += vec4<u32>(nan_count(g), inf_count(g), nan_count(p), inf_count(p));
  }
  for (var k = 0u; k < 4u; k++) {
    if (counts[k] != 0u) { atomicAdd(&wg_counts[k], counts[k]); }
  }
  workgroupBarrier();
  if (lid < 4u) { nonfinite_counts[lid] = atomicLoad(&wg_counts[lid]); }
}
