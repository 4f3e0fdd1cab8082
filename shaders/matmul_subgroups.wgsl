// The fast strided batched GEMM for devices with subgroups (same problem and uniform layout as matmul.wgsl).
//
// A workgroup is one row of LANES invocations that share 8 * ROW_GROUPS output rows; each invocation owns COLS
// output columns (interleaved with stride LANES, so neighbouring invocations read neighbouring addresses of B).
// Per step of k, lane l of every subgroup loads A for row (l % 8) of each group of 8 rows, and subgroupBroadcast
// hands that value to the whole subgroup: one load per 8 rows instead of one per row per invocation. Each
// invocation then does 8 * ROW_GROUPS * COLS multiply-adds for ROW_GROUPS + COLS loads. Any subgroup size
// that is at least 8 works (the host checks subgroupMinSize); larger subgroups just repeat lanes 0..7's loads.
// No shared memory and no barriers (barriers are expensive on the software adapter; the broadcast is a register
// shuffle everywhere).
enable subgroups;

struct Gemm {
  batch: u32, m: u32, n: u32, k: u32,
  a_batch: u32, a_row: u32, a_col: u32,   // strides of A over (b, m, k)
  b_batch: u32, b_row: u32, b_col: u32,   // strides of B over (b, k, n)
  o_row: u32, o_col: u32,                 // strides of out over (m, n) within one batch slice of m * n
  alpha: f32,
  bias_mode: u32,                         // 0 none, 1 per row (m), 2 per column (n)
  accumulate: u32,                        // 1: out += result
}

@group(0) @binding(0) var<uniform> p: Gemm;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

override LANES: u32 = 64u;      // invocations per workgroup (32 or 64), all along n
override ROW_GROUPS: u32 = 4u;  // output rows per workgroup = 8 * ROW_GROUPS (1, 2 or 4)
override COLS: u32 = 2u;        // output columns per invocation (1 or 2)
// The "plain matmul" build of the same kernel: contiguous row-major A [m, k] and B [k, n] with compile-time strides
// (the reference point that shows what the runtime strides cost).
override PLAIN: bool = false;

fn store_result(batch: u32, row: u32, col: u32, dot: f32) {
  var v = dot * p.alpha;
  if (p.bias_mode == 1u) { v += bias[row]; } else if (p.bias_mode == 2u) { v += bias[col]; }
  let o = batch * p.m * p.n + row * p.o_row + col * p.o_col;
  if (p.accumulate == 1u) { v += out[o]; }
  out[o] = v;
}

@compute @workgroup_size(LANES)
fn gemm_sg(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
           @builtin(subgroup_invocation_id) lane: u32) {
  let batch = wg.z;
  let a_row = select(p.a_row, p.k, PLAIN);
  let a_col = select(p.a_col, 1u, PLAIN);
  let b_row = select(p.b_row, p.n, PLAIN);
  let b_col = select(p.b_col, 1u, PLAIN);
  let row0 = wg.y * 8u * ROW_GROUPS;
  let col0 = wg.x * COLS * LANES + lid.x;
  let col1 = col0 + LANES;
  // Out-of-range rows and columns read a clamped (valid) address and are dropped at the store.
  var a_at: array<u32, 4>;
  for (var g = 0u; g < ROW_GROUPS; g++) {
    a_at[g] = batch * p.a_batch + min(row0 + g * 8u + lane % 8u, p.m - 1u) * a_row;
  }
  let b0_at = batch * p.b_batch + min(col0, p.n - 1u) * b_col;
  let b1_at = batch * p.b_batch + min(col1, p.n - 1u) * b_col;
  var acc: array<vec2<f32>, 32>; // [row in the workgroup's rows][column]
  var ka = 0u;
  var kb = 0u;
  for (var kk = 0u; kk < p.k; kk++) {
    var bv = vec2<f32>(b[b0_at + kb], 0.0);
    if (COLS == 2u) { bv.y = b[b1_at + kb]; }
    for (var g = 0u; g < ROW_GROUPS; g++) {
      let av = a[a_at[g] + ka];
      let r = g * 8u;
      acc[r + 0u] = fma(vec2<f32>(subgroupBroadcast(av, 0u)), bv, acc[r + 0u]);
      acc[r + 1u] = fma(vec2<f32>(subgroupBroadcast(av, 1u)), bv, acc[r + 1u]);
      acc[r + 2u] = fma(vec2<f32>(subgroupBroadcast(av, 2u)), bv, acc[r + 2u]);
      acc[r + 3u] = fma(vec2<f32>(subgroupBroadcast(av, 3u)), bv, acc[r + 3u]);
      acc[r + 4u] = fma(vec2<f32>(subgroupBroadcast(av, 4u)), bv, acc[r + 4u]);
      acc[r + 5u] = fma(vec2<f32>(subgroupBroadcast(av, 5u)), bv, acc[r + 5u]);
      acc[r + 6u] = fma(vec2<f32>(subgroupBroadcast(av, 6u)), bv, acc[r + 6u]);
      acc[r + 7u] = fma(vec2<f32>(subgroupBroadcast(av, 7u)), bv, acc[r + 7u]);
    }
    ka += a_col;
    kb += b_row;
  }
  for (var i = 0u; i < 8u * ROW_GROUPS; i++) {
    let row = row0 + i;
    if (row < p.m && col0 < p.n) { store_result(batch, row, col0, acc[i].x); }
    if (COLS == 2u && row < p.m && col1 < p.n) { store_result(batch, row, col1, acc[i].y); }
  }
}
