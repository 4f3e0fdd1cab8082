// Strided batched GEMM: out[b, m, n] = alpha * sum_k A[b, m, k] * B[b, k, n] (+ bias) (+ out if accumulate).
// A and B are read through element strides, so transposes and batch broadcasting (batch stride 0) cost nothing.
// This is the kernel behind linear, matmul and the pointwise (1x1) convolution.

struct Gemm {
  batch: u32, m: u32, n: u32, k: u32,
  a_batch: u32, a_row: u32, a_col: u32,   // strides of A over (b, m, k)
  b_batch: u32, b_row: u32, b_col: u32,   // strides of B over (b, k, n)
  alpha: f32,
  bias_mode: u32,                         // 0 none, 1 per row (m), 2 per column (n)
  accumulate: u32,                        // 1: out += result
}

@group(0) @binding(0) var<uniform> p: Gemm;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

// Reference kernel: one invocation per output element. (Replaced by a register-blocked kernel.)
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
  acc *= p.alpha;
  if (p.bias_mode == 1u) { acc += bias[row]; }
  if (p.bias_mode == 2u) { acc += bias[col]; }
  let o = (batch * p.m + row) * p.n + col;
  if (p.accumulate == 1u) { acc += out[o]; }
  out[o] = acc;
}
