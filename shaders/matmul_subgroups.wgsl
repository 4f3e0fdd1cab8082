// The fast strided batched GEMM for devices with subgroups (same problem and uniform layout as matmul.wgsl).
//
// A workgroup is one row of LANES invocations that share 8 * ROW_GROUPS output rows; each invocation owns COLS
// output columns (interleaved with stride LANES, so neighbouring invocations read neighbouring addresses of B).
// Per step of k, lane l of every subgroup loads A for row (l % 8) of each group of 8 rows, and subgroupBroadcast
// hands that value to the whole subgroup: one load per 8 rows instead of one per row per invocation. Each
// invocation then does 8 * ROW_GROUPS * COLS multiply-adds for ROW_GROUPS + COLS loads. Any subgroup size
// that is at least 8 works (the host checks subgroupMinSize); larger subgroups just repeat lanes 0..7's loads.
// No shared memory and no barriers (barriers are expensive on the software adapter; the broadcast is a register
// shuffle everywhere). On lavapipe every storage load whose address is not a constant is a per-lane scalar load
// with a bounds check (~9 instructions a lane), so the tile sizes trade those loads against accumulators: the host
// (src/ops/matmul.ts) lists the tiles, and the autotuner picks one per adapter and shape.
enable subgroups;

struct Gemm {
  batch: u32, m: u32, n: u32, k: u32,
  a_batch: u32, a_row: u32, a_col: u32,   // strides of A over (b, m, k)
  b_batch: u32, b_row: u32, b_col: u32,   // strides of B over (b, k, n)
  o_row: u32, o_col: u32,                 // strides of out over (m, n) within one batch slice of m * n
  alpha: f32,
  bias_mode: u32,                         // 0 none, 1 per row (m), 2 per column (n)
  accumulate: u32,                        // 1: out += result
  // 1: the columns run over (batch, n) jointly, so a batch of short rows (a 7x7 image is 49 pixels) fills whole
  // workgroups. Only when A is shared by the batch (a_batch = 0): the A loads stay the same for every column.
  // A uniform, not a pipeline constant: it only changes where an invocation starts, and folded and unfolded
  // problems then share one compiled pipeline (lavapipe compiles each at its first dispatch: ~1 s for rg4 c4).
  fold: u32,
  a_vec: u32,                             // gemm_sg4: 1 loads A as vec4s along k (0 in gemm_sg)
}

@group(0) @binding(0) var<uniform> p: Gemm;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

override LANES: u32 = 64u;      // invocations per workgroup (32 or 64), all along n
override ROW_GROUPS: u32 = 4u;  // output rows per workgroup = 8 * ROW_GROUPS (1, 2, 4 or 8)
override COLS: u32 = 2u;        // output columns per invocation (1, 2 or 4)
// Steps of k per loop iteration (1 or 4): the loop's own bookkeeping (and, on SIMD-over-invocations drivers, the
// masking of every accumulator write) is paid once per KU steps. Steps past k multiply zeros.
override KU: u32 = 1u;
// The "plain matmul" build of the same kernel: contiguous row-major A [m, k] and B [k, n] with compile-time strides
// (the reference point that shows what the runtime strides cost).
override PLAIN: bool = false;

// The epilogue's choices as pipeline constants (the uniform's bias_mode and accumulate are ignored here): on
// SIMD-over-invocations drivers a uniform branch per output still costs its mask bookkeeping.
override BIAS_MODE: u32 = 0u;
override ACCUMULATE: bool = false;

fn store_result(batch: u32, row: u32, col: u32, dot: f32) {
  var v = dot * p.alpha;
  if (BIAS_MODE == 1u) { v += bias[row]; } else if (BIAS_MODE == 2u) { v += bias[col]; }
  let o = batch * p.m * p.n + row * p.o_row + col * p.o_col;
  if (ACCUMULATE) { v += out[o]; }
  out[o] = v;
}

// gemm_sg4's load modes (see the vec4 build below; gemm_sg runs with both off). A's is the uniform p.a_vec, not a
// pipeline constant: layouts that differ only there share a pipeline (the branch is uniform, and the demo's GEMMs
// count the same instructions or fewer). B's changes which columns an invocation owns: a constant (as a uniform,
// up to 15% more instructions).
override B_VEC: u32 = 0u;   // 0: scalar B loads, 1: vec4 along n, 2: vec4 along k

// Column j of this invocation: adjacent columns when B is loaded along n, else interleaved with stride LANES.
fn vec_column(wg: vec3<u32>, lid: u32, j: u32) -> u32 {
  if (B_VEC == 1u) { return (wg.x * LANES + lid) * 4u + j; }
  return wg.x * COLS * LANES + j * LANES + lid;
}

// Where an invocation's columns and rows start. Column j: its batch, its index within the batch, and B's element
// for k = 0; A's element for k = 0 of this lane's row in each group of 8 rows (a_batch = 0 when folding).
// Out-of-range rows and columns read a clamped (valid) address and are dropped at the store; along n (B_VEC == 1)
// the 4 columns stay one aligned vec4 (n % 4 == 0, so they never straddle two batches).
struct TileStart { col_batch: array<u32, 4>, col_at: array<u32, 4>, b_at: array<u32, 4>, a_at: array<u32, 8> }

fn tile_start(wg: vec3<u32>, lid: u32, lane: u32, row0: u32, columns: u32, a_row: u32, b_col: u32) -> TileStart {
  var t: TileStart;
  for (var j = 0u; j < COLS; j++) {
    let c = select(min(vec_column(wg, lid, j), columns - 1u), min(vec_column(wg, lid, 0u), columns - 4u) + j, B_VEC == 1u);
    t.col_batch[j] = select(wg.z, c / p.n, p.fold == 1u);
    t.col_at[j] = select(c, c % p.n, p.fold == 1u);
    t.b_at[j] = t.col_batch[j] * p.b_batch + t.col_at[j] * b_col;
  }
  for (var g = 0u; g < ROW_GROUPS; g++) {
    t.a_at[g] = wg.z * p.a_batch + min(row0 + g * 8u + lane % 8u, p.m - 1u) * a_row;
  }
  return t;
}

alias Accumulators = array<array<f32, 4>, 64>; // [row in the workgroup's rows][column]

// acc[r + i][j] += (lane i's av) * bv[j] for the 8 rows i of a group: subgroupBroadcast takes a constant lane, so
// the 8 rows are spelled out. One load of A per lane serves 8 rows.
fn add_group_products(r: u32, av: f32, bv: array<f32, 4>, acc: ptr<function, Accumulators>) {
  let a0 = subgroupBroadcast(av, 0u);
  let a1 = subgroupBroadcast(av, 1u);
  let a2 = subgroupBroadcast(av, 2u);
  let a3 = subgroupBroadcast(av, 3u);
  let a4 = subgroupBroadcast(av, 4u);
  let a5 = subgroupBroadcast(av, 5u);
  let a6 = subgroupBroadcast(av, 6u);
  let a7 = subgroupBroadcast(av, 7u);
  for (var j = 0u; j < COLS; j++) {
    (*acc)[r + 0u][j] = fma(a0, bv[j], (*acc)[r + 0u][j]);
    (*acc)[r + 1u][j] = fma(a1, bv[j], (*acc)[r + 1u][j]);
    (*acc)[r + 2u][j] = fma(a2, bv[j], (*acc)[r + 2u][j]);
    (*acc)[r + 3u][j] = fma(a3, bv[j], (*acc)[r + 3u][j]);
    (*acc)[r + 4u][j] = fma(a4, bv[j], (*acc)[r + 4u][j]);
    (*acc)[r + 5u][j] = fma(a5, bv[j], (*acc)[r + 5u][j]);
    (*acc)[r + 6u][j] = fma(a6, bv[j], (*acc)[r + 6u][j]);
    (*acc)[r + 7u][j] = fma(a7, bv[j], (*acc)[r + 7u][j]);
  }
}

// Writes the invocation's block: columns past the end are dropped; rows are tested only in the last row of tiles.
fn store_tile(wg: vec3<u32>, lid: u32, row0: u32, columns: u32, col_batch: array<u32, 4>, col_at: array<u32, 4>,
              acc: ptr<function, Accumulators>) {
  let full_rows = row0 + 8u * ROW_GROUPS <= p.m; // uniform over the workgroup
  for (var j = 0u; j < COLS; j++) {
    if (vec_column(wg, lid, j) >= columns) { continue; }
    if (full_rows) {
      for (var i = 0u; i < 8u * ROW_GROUPS; i++) { store_result(col_batch[j], row0 + i, col_at[j], (*acc)[i][j]); }
    } else {
      for (var i = 0u; i < 8u * ROW_GROUPS; i++) {
        if (row0 + i < p.m) { store_result(col_batch[j], row0 + i, col_at[j], (*acc)[i][j]); }
      }
    }
  }
}

@compute @workgroup_size(LANES)
fn gemm_sg(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
           @builtin(subgroup_invocation_id) lane: u32) {
  let a_row = select(p.a_row, p.k, PLAIN);
  let a_col = select(p.a_col, 1u, PLAIN);
  let b_row = select(p.b_row, p.n, PLAIN);
  let b_col = select(p.b_col, 1u, PLAIN);
  let row0 = wg.y * 8u * ROW_GROUPS;
  let columns = select(p.n, p.batch * p.n, p.fold == 1u); // the column index space of this dispatch
  let t = tile_start(wg, lid.x, lane, row0, columns, a_row, b_col);
  let col_batch = t.col_batch;
  let col_at = t.col_at;
  let b_at = t.b_at;
  let a_at = t.a_at;
  var acc: Accumulators;
  for (var kk = 0u; kk < p.k; kk += KU) {
    for (var u = 0u; u < KU; u++) {
      let kv = min(kk + u, p.k - 1u);
      let live = kk + u < p.k; // false only in the last iteration's padding steps (KU > 1)
      var bv: array<f32, 4>;
      for (var j = 0u; j < COLS; j++) { bv[j] = select(0.0, b[b_at[j] + kv * b_row], live); }
      for (var g = 0u; g < ROW_GROUPS; g++) {
        let av = select(0.0, a[a_at[g] + kv * a_col], live);
        add_group_products(g * 8u, av, bv, &acc);
      }
    }
  }
  store_tile(wg, lid.x, row0, columns, col_batch, col_at, &acc);
}

// ---- the vec4 build ---------------------------------------------------------------------------------------------

// The same tiles, k stepped by 4 (k % 4 == 0), for problems whose strides let the loads fetch whole vec4s: A along
// k (a_vec: a_col == 1, 16-byte-aligned rows), B along n (B_VEC == 1: b_col == 1, each invocation owns COLS == 4
// adjacent columns) or along k (B_VEC == 2: b_row == 1). On lavapipe a vec4 load costs what a scalar load does, so
// a step of 4 k costs ROW_GROUPS + 4 (or COLS) loads instead of 4 * (ROW_GROUPS + COLS); on GPUs the wider loads
// are the usual vectorised access. a_vec4 and b_vec4 are a and b seen as vec4s (the host binds the same ranges).
@group(0) @binding(5) var<storage, read> a_vec4: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read> b_vec4: array<vec4<f32>>;

@compute @workgroup_size(LANES)
fn gemm_sg4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
            @builtin(subgroup_invocation_id) lane: u32) {
  let row0 = wg.y * 8u * ROW_GROUPS;
  let columns = select(p.n, p.batch * p.n, p.fold == 1u);
  let t = tile_start(wg, lid.x, lane, row0, columns, p.a_row, p.b_col);
  let col_batch = t.col_batch;
  let col_at = t.col_at;
  let b_at = t.b_at;
  let a_at = t.a_at;
  var acc: Accumulators;
  for (var kk = 0u; kk < p.k; kk += 4u) {
    var av: array<vec4<f32>, 8>;   // [group]: A at steps kk..kk+3 of this lane's row
    for (var g = 0u; g < ROW_GROUPS; g++) {
      if (p.a_vec == 1u) {
        av[g] = a_vec4[(a_at[g] + kk) / 4u];
      } else {
        let at = a_at[g] + kk * p.a_col;
        av[g] = vec4<f32>(a[at], a[at + p.a_col], a[at + 2u * p.a_col], a[at + 3u * p.a_col]);
      }
    }
    var bk: array<vec4<f32>, 4>;   // [column]: B at steps kk..kk+3 (B_VEC == 2)
    if (B_VEC == 2u) {
      for (var j = 0u; j < COLS; j++) { bk[j] = b_vec4[(b_at[j] + kk) / 4u]; }
    }
    for (var u = 0u; u < 4u; u++) {
      var bv: array<f32, 4>;
      if (B_VEC == 1u) {
        let v = b_vec4[(b_at[0] + (kk + u) * p.b_row) / 4u];
        bv = array<f32, 4>(v.x, v.y, v.z, v.w);
      } else if (B_VEC == 2u) {
        for (var j = 0u; j < COLS; j++) { bv[j] = bk[j][u]; }
      } else {
        for (var j = 0u; j < COLS; j++) { bv[j] = b[b_at[j] + (kk + u) * p.b_row]; }
      }
      for (var g = 0u; g < ROW_GROUPS; g++) {
        add_group_products(g * 8u, av[g][u], bv, &acc);
      }
    }
  }
  store_tile(wg, lid.x, row0, columns, col_batch, col_at, &acc);
}
