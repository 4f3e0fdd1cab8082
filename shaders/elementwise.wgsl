// Elementwise ops: binary arithmetic (same shape, or numpy-style broadcasting), scale, in-place accumulate,
// fill and broadcast-expand. One invocation per output element; dispatches past 65,535 workgroups fold gid.y in.

// OP selects the binary operator: 0 add, 1 sub, 2 mul.
override OP: u32 = 0u;

struct Same { n: u32 }
struct Broadcast {
  n: u32,
  rank: u32,
  // Up to 8 dims, 4 per vec4 (uniform arrays need 16-byte elements). Broadcast dims have stride 0.
  shape: array<vec4<u32>, 2>,
  a_strides: array<vec4<u32>, 2>,
  b_strides: array<vec4<u32>, 2>,
}
struct Expand { n: u32, rank: u32, s: f32, shape: array<vec4<u32>, 2>, a_strides: array<vec4<u32>, 2> }
struct Scale { n: u32, s: f32 }
struct Fill { n: u32, bits: u32 }

@group(0) @binding(0) var<uniform> same: Same;
@group(0) @binding(0) var<uniform> bcast: Broadcast;
@group(0) @binding(0) var<uniform> expand_params: Expand;
@group(0) @binding(0) var<uniform> scale_params: Scale;
@group(0) @binding(0) var<uniform> fill_params: Fill;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<storage, read_write> out_bits: array<u32>;

fn linear_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
  return gid.x + gid.y * nwg.x * 256u;
}

fn apply(x: f32, y: f32) -> f32 {
  switch OP {
    case 1u: { return x - y; }
    case 2u: { return x * y; }
    default: { return x + y; }
  }
}

fn dim(v: array<vec4<u32>, 2>, d: u32) -> u32 {
  return v[d / 4u][d % 4u];
}

@compute @workgroup_size(256)
fn binary_same(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = linear_index(gid, nwg);
  if (i >= same.n) { return; }
  out[i] = apply(a[i], b[i]);
}

@compute @workgroup_size(256)
fn binary_broadcast(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = linear_index(gid, nwg);
  if (i >= bcast.n) { return; }
  var rest = i;
  var ia = 0u;
  var ib = 0u;
  for (var d = i32(bcast.rank) - 1; d >= 0; d--) {
    let size = dim(bcast.shape, u32(d));
    let coord = rest % size;
    rest = rest / size;
    ia += coord * dim(bcast.a_strides, u32(d));
    ib += coord * dim(bcast.b_strides, u32(d));
  }
  out[i] = apply(a[ia], b[ib]);
}

// out = a broadcast to out's shape, times s. The backward of sum/mean and of broadcasting.
@compute @workgroup_size(256)
fn expand(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = linear_index(gid, nwg);
  if (i >= expand_params.n) { return; }
  var rest = i;
  var ia = 0u;
  for (var d = i32(expand_params.rank) - 1; d >= 0; d--) {
    let size = dim(expand_params.shape, u32(d));
    ia += (rest % size) * dim(expand_params.a_strides, u32(d));
    rest = rest / size;
  }
  out[i] = a[ia] * expand_params.s;
}

@compute @workgroup_size(256)
fn scale(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = linear_index(gid, nwg);
  if (i >= scale_params.n) { return; }
  out[i] = a[i] * scale_params.s;
}

// out += a (gradient accumulation).
@compute @workgroup_size(256)
fn accumulate(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = linear_index(gid, nwg);
  if (i >= same.n) { return; }
  out[i] = out[i] + a[i];
}

// Writes a raw 32-bit pattern, so one kernel fills f32, i32 and u32 tensors.
@compute @workgroup_size(256)
fn fill(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = linear_index(gid, nwg);
  if (i >= fill_params.n) { return; }
  out_bits[i] = fill_params.bits;
}
