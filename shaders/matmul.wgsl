// Strided batched GEMM: out[b, m, n] = alpha * sum_k A[b, m, k] * B[b, k, n] (+ bias) (+ out if accumulate).
// A and B are read through element strides, so transposes and batch broadcasting (batch stride 0) cost nothing.
// The output is written through (o_row, o_col) strides inside each contiguous [m, n] batch slice, so a caller can
// run the transposed problem (outᵀ = Bᵀ Aᵀ) when that maps better onto the kernel's tile.
// This is the kernel behind linear, matmul and the pointwise (1x1) convolution. The fastest kernel on devices with
// subgroups lives in matmul_subgroups.wgsl; the entries here need no optional feature.

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

/** alpha, bias and accumulation for one finished dot product, then the store. */
fn store_result(batch: u32, row: u32, col: u32, dot: f32) {
  var v = dot * p.alpha;
  if (p.bias_mode == 1u) { v += bias[row]; } else if (p.bias_mode == 2u) { v += bias[col]; }
  let o = batch * p.m * p.n + row * p.o_row + col * p.o_col;
  if (p.accumulate == 1u) { v += out[o]; }
  out[o] = v;
}

// Reference kernel: one invocation per output element (the baseline the fast kernels are measured against).
@compute @workgroup_size(8, 8)
fn gemm_naive(@builtin(global_invocation_id) gid: vec3<u32>) {
  let col = gid.x;
  let row = gid.y;
  let batch = gid.z;
  if (col >= p.n || row >= p.m) { return; }
  let a0 = batch * p.a_batch + row * p.a_row;
  let b0 = batch * p.b_batch + col * p.b_col;
  var acc = 0.0;
  for (var kk = 0u; kk < p.k; kk++) {
    acc += a[a0 + kk * p.a_col] * b[b0 + kk * p.b_row];
  }
  store_result(batch, row, col, acc);
}

// Register-blocked kernel for devices without subgroups: each invocation keeps an 8x8 block of outputs in
// registers, so every loaded value feeds 8 multiply-adds. A workgroup of 8x8 invocations covers a 64x64 tile; an
// invocation's rows and columns are interleaved with stride 8 so neighbouring invocations read neighbouring
// addresses. No shared memory: on the software adapter barriers cost more than the reuse they buy.
const BLOCK = 8u;   // rows and columns per invocation
const SPREAD = 8u;  // invocations per workgroup along each axis

@compute @workgroup_size(8, 8)
fn gemm_tiled(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let batch = wg.z;
  let row0 = wg.y * BLOCK * SPREAD + lid.y;
  let col0 = wg.x * BLOCK * SPREAD + lid.x;
  // Out-of-range rows and columns read a clamped (valid) address and are dropped at the store.
  var a_at: array<u32, 8>;
  var b_at: array<u32, 8>;
  for (var i = 0u; i < BLOCK; i++) {
    a_at[i] = batch * p.a_batch + min(row0 + i * SPREAD, p.m - 1u) * p.a_row;
    b_at[i] = batch * p.b_batch + min(col0 + i * SPREAD, p.n - 1u) * p.b_col;
  }
  var acc: array<array<f32, 8>, 8>;
  var ka = 0u;
  var kb = 0u;
  for (var kk = 0u; kk < p.k; kk++) {
    var av: array<f32, 8>;
    var bv: array<f32, 8>;
    for (var i = 0u; i < BLOCK; i++) {
      av[i] = a[a_at[i] + ka];
      bv[i] = b[b_at[i] + kb];
    }
    for (var i = 0u; i < BLOCK; i++) {
      for (var j = 0u; j < BLOCK; j++) {
        acc[i][j] = fma(av[i], bv[j], acc[i][j]);
      }
    }
    ka += p.a_col;
    kb += p.b_row;
  }
  for (var i = 0u; i < BLOCK; i++) {
    let row = row0 + i * SPREAD;
    for (var j = 0u; j < BLOCK; j++) {
      let col = col0 + j * SPREAD;
      if (row < p.m && col < p.n) { store_result(batch, row, col, acc[i][j]); }
    }
  }
}
