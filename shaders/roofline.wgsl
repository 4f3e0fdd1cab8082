// Micro-kernels that measure the adapter's ceilings (wgkd roofline): FMA throughput and copy bandwidth. The FMA
// chains are independent (12 accumulators per invocation, 4 steps unrolled) so a deep pipeline never waits on one;
// the multiplier and addend come from a uniform, so the compiler cannot fold the loop away.

struct Fma { iterations: u32, mul: f32, add: f32 }
struct Copy { n4: u32 }

@group(0) @binding(0) var<uniform> fma_params: Fma;
@group(0) @binding(0) var<uniform> copy_params: Copy;
@group(0) @binding(1) var<storage, read_write> sink: array<f32>;
@group(0) @binding(1) var<storage, read> src4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> dst4: array<vec4<f32>>;

@compute @workgroup_size(64)
fn fma_f32(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 64u;
  let m = fma_params.mul;
  let c = fma_params.add;
  var a = array<f32, 12>();
  for (var k = 0u; k < 12u; k++) { a[k] = f32(i + k) * 1e-9; }
  for (var it = 0u; it < fma_params.iterations; it++) {
    // 4 steps of 12 independent FMAs (a constant trip count the compiler unrolls): 48 FMAs, 96 FLOPs.
    for (var s = 0u; s < 4u; s++) {
      a[0] = fma(a[0], m, c); a[1] = fma(a[1], m, c); a[2] = fma(a[2], m, c); a[3] = fma(a[3], m, c);
      a[4] = fma(a[4], m, c); a[5] = fma(a[5], m, c); a[6] = fma(a[6], m, c); a[7] = fma(a[7], m, c);
      a[8] = fma(a[8], m, c); a[9] = fma(a[9], m, c); a[10] = fma(a[10], m, c); a[11] = fma(a[11], m, c);
    }
  }
  var total = 0.0;
  for (var k = 0u; k < 12u; k++) { total += a[k]; }
  sink[i] = total;
}

// One vec4 per invocation: the best case for a memory-bound kernel (16 bytes read, 16 written).
@compute @workgroup_size(64)
fn copy_vec4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 64u;
  if (i < copy_params.n4) { dst4[i] = src4[i]; }
}

// An empty kernel: what one dispatch costs on its own.
@compute @workgroup_size(64)
fn empty(@builtin(global_invocation_id) gid: vec3<u32>) {
  if (gid.x == 0xffffffffu) { sink[0] = 0.0; }
}
