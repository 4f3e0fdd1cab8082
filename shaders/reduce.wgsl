// Sum over a set of axes (mean = sum with s = 1/count). One workgroup per output element; its 64 invocations
// stride over the reduced elements, then combine in a fixed-order tree: deterministic, no atomics.

struct Reduce {
  n_out: u32,        // output elements
  count: u32,        // reduced elements per output
  kept_rank: u32,
  red_rank: u32,
  s: f32,            // scale applied to the sum
  kept_shape: array<vec4<u32>, 2>,
  kept_strides: array<vec4<u32>, 2>,  // input strides of the kept dims
  red_shape: array<vec4<u32>, 2>,
  red_strides: array<vec4<u32>, 2>,   // input strides of the reduced dims
}

@group(0) @binding(0) var<uniform> p: Reduce;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

const WG: u32 = 64u;
var<workgroup> partial: array<f32, WG>;

fn dim(v: array<vec4<u32>, 2>, d: u32) -> u32 {
  return v[d / 4u][d % 4u];
}

// Input offset of element `index` of a (shape, strides) sub-space.
fn offset_of(index: u32, rank: u32, shape: array<vec4<u32>, 2>, strides: array<vec4<u32>, 2>) -> u32 {
  var rest = index;
  var off = 0u;
  for (var d = i32(rank) - 1; d >= 0; d--) {
    let size = dim(shape, u32(d));
    off += (rest % size) * dim(strides, u32(d));
    rest = rest / size;
  }
  return off;
}

@compute @workgroup_size(64)
fn sum_axes(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
  let o = wid.x + wid.y * nwg.x;  // uniform across the workgroup, so the barriers below are legal
  let in_range = o < p.n_out;
  var acc = 0.0;
  if (in_range) {
    let base = offset_of(o, p.kept_rank, p.kept_shape, p.kept_strides);
    for (var r = lid; r < p.count; r += WG) {
      acc += x[base + offset_of(r, p.red_rank, p.red_shape, p.red_strides)];
    }
  }
  partial[lid] = acc;
  workgroupBarrier();
  for (var stride = WG / 2u; stride > 0u; stride = stride / 2u) {
    if (lid < stride) { partial[lid] += partial[lid + stride]; }
    workgroupBarrier();
  }
  if (in_range && lid == 0u) { out[o] = partial[0] * p.s; }
}
