// The f16 FMA ceiling (wgkd roofline), on adapters with shader-f16: as roofline.wgsl's fma_f32, in vec4<f16>
// (12 independent vec4 accumulators, 4 steps unrolled: 384 FLOPs per iteration).
enable f16;

struct Fma { iterations: u32, mul: f32, add: f32 }

@group(0) @binding(0) var<uniform> fma_params: Fma;
@group(0) @binding(1) var<storage, read_write> sink: array<f32>;

@compute @workgroup_size(64)
fn fma_f16(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 64u;
  let m = vec4<f16>(f16(fma_params.mul));
  let c = vec4<f16>(f16(fma_params.add));
  var a = array<vec4<f16>, 12>();
  for (var k = 0u; k < 12u; k++) { a[k] = vec4<f16>(f16(k) * 0.01h); }
  for (var it = 0u; it < fma_params.iterations; it++) {
    for (var s = 0u; s < 4u; s++) {
      a[0] = fma(a[0], m, c); a[1] = fma(a[1], m, c); a[2] = fma(a[2], m, c); a[3] = fma(a[3], m, c);
      a[4] = fma(a[4], m, c); a[5] = fma(a[5], m, c); a[6] = fma(a[6], m, c); a[7] = fma(a[7], m, c);
      a[8] = fma(a[8], m, c); a[9] = fma(a[9], m, c); a[10] = fma(a[10], m, c); a[11] = fma(a[11], m, c);
    }
  }
  var total = vec4<f16>(0.0h);
  for (var k = 0u; k < 12u; k++) { total += a[k]; }
  sink[i] = f32(total.x + total.y + total.z + total.w);
}
