// Convolution kernels for devices with subgroups (same uniform layout and binding numbers as conv.wgsl).
//
// Stem forward (groups 1, few weights): each invocation owns all OC = O output channels of PB pixels of a row,
// so each input row window it loads serves every output channel. The weights are the same for every invocation:
// per (input channel, kernel row) the OC x KW weights are loaded WL at a time, lane l of each WL lanes taking
// every WL-th one, and subgroupShuffle hands each weight to the whole subgroup (a register operation on SIMD
// drivers, where a uniform load at a computed address is still one load per invocation). The shuffle lanes
// are constants once the channel and column loops unroll; the input-channel and kernel-row loops may stay loops.
// Subgroup operations need uniform control flow: no early return, out-of-range blocks only skip their stores.
// Two entry points, as a written binding has one type: conv_forward_stem4 stores vec4s (VEC), conv_forward_stem
// floats.

enable subgroups;

struct Conv {
  n: u32, c: u32, h: u32, w: u32,
  o: u32, oh: u32, ow: u32,
  kh: u32,
  sh: u32, ph: u32, pw: u32, dh: u32,
  groups: u32, cg: u32, og: u32,
  mult: u32,
  has_bias: u32,
  bpr: u32,
  rows: u32,
  n_blocks: u32,
  blocks_per_chunk: u32,
  chunk_base: u32,
  n_chunks: u32,
  n_outputs: u32,
  n_weight: u32,
  plane: u32,
  plane_chunks: u32,
}

@group(0) @binding(0) var<uniform> p: Conv;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> wt: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(6) var<storage, read_write> out: array<f32>;
@group(0) @binding(8) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(10) var<storage, read_write> out4: array<vec4<f32>>;

const WG: u32 = 64u;
const MAX_WIN: u32 = 32u;       // row window capacity: SPAN
const MAX_QUADS: u32 = 9u;      // vec4s under a row window: (XOFF + SPAN + 3) / 4
const MAX_STEM_ACC4: u32 = 32u; // OC * PB / 4 vec4 accumulators
const MAX_CHUNKS: u32 = 64u;    // weight chunks per kernel row: OC * KW / WL

override PB: u32 = 4u;        // pixels per invocation along a row: 4 or 8
override KH: u32 = 3u;        // kernel height and width
override KW: u32 = 3u;
override SW: u32 = 1u;        // stride and dilation along W
override DW: u32 = 1u;
override CG: u32 = 1u;        // input channels
override OC: u32 = 16u;       // output channels: all of them
override WL: u32 = 8u;        // lanes that load one chunk of weights (at most the subgroup size)
override VEC: bool = false;   // rows of x and out are whole vec4s, and so are pixel blocks (PB % 4 == 0)
override XOFF: u32 = 0u;      // VEC: column of a row window's first input within its vec4 ((-pw) mod 4)
override SPAN: u32 = (PB - 1u) * SW + (KW - 1u) * DW + 1u;   // input columns under PB outputs

// As in conv.wgsl: the SPAN input columns from iw0 of row ih of a plane, zeros outside the image; through x4
// when VEC (the window starts XOFF into a vec4; a row's vec4s never straddle its ends).
fn load_x_row(plane: u32, ih: i32, iw0: i32) -> array<f32, MAX_WIN> {
  var win: array<f32, MAX_WIN>;
  let row_ok = ih >= 0 && ih < i32(p.h);
  if (!VEC) {
    let row = i32(plane) + ih * i32(p.w);
    for (var q = 0u; q < SPAN; q++) {
      let iw = iw0 + i32(q);
      win[q] = select(0.0, x[u32(max(row + iw, 0))], row_ok && iw >= 0 && iw < i32(p.w));
    }
    return win;
  }
  var quads: array<vec4<f32>, MAX_QUADS>;
  let row = (i32(plane) + ih * i32(p.w)) / 4;   // exact: planes and rows are multiples of 4
  let q0 = (iw0 - i32(XOFF)) / 4;                // exact
  let quads_per_row = i32(p.w / 4u);
  for (var k = 0u; k < (XOFF + SPAN + 3u) / 4u; k++) {
    let q = q0 + i32(k);
    quads[k] = select(vec4<f32>(0.0), x4[u32(max(row + q, 0))], row_ok && q >= 0 && q < quads_per_row);
  }
  for (var q = 0u; q < SPAN; q++) { win[q] = quads[(XOFF + q) / 4u][(XOFF + q) % 4u]; }
  return win;
}

struct StemBlock {
  n: u32,
  oh: u32,
  ow0: u32,
}

fn stem_block(pix: u32) -> StemBlock {
  return StemBlock(pix / (p.bpr * p.oh), (pix / p.bpr) % p.oh, (pix % p.bpr) * PB);
}

// acc[i * PB / 4 + q][e] = out[n, i, oh, ow0 + 4q + e] for i < OC, 4q + e < PB: bias[i] + sum over (cl, ky, kx)
// of x[n, cl, oh*sh - ph + ky*dh, (ow0 + 4q + e)*SW - pw + kx*DW] * wt[i, cl, ky, kx]. vec4 accumulators: one
// vector multiply-add per 4 pixels keeps the unrolled body small enough for a compiler to unroll it all.
fn stem_forward_sums(b: StemBlock, lane: u32) -> array<vec4<f32>, MAX_STEM_ACC4> {
  var acc: array<vec4<f32>, MAX_STEM_ACC4>;
  let quads = PB / 4u;
  for (var i = 0u; i < OC; i++) {
    let bv = vec4<f32>(select(0.0, bias[i], p.has_bias == 1u));
    for (var q = 0u; q < quads; q++) { acc[i * quads + q] = bv; }
  }
  let iw0 = i32(b.ow0 * SW) - i32(p.pw);
  let row_weights = OC * KW;                       // weight e = i * KW + kx of the kernel row
  for (var cl = 0u; cl < CG; cl++) {
    let plane = (b.n * p.c + cl) * p.h * p.w;
    for (var ky = 0u; ky < KH; ky++) {
      let win = load_x_row(plane, i32(b.oh * p.sh + ky * p.dh) - i32(p.ph), iw0);
      var chunks: array<f32, MAX_CHUNKS>;          // chunks[e / WL] holds weight e on lane e % WL
      for (var k = 0u; k < (row_weights + WL - 1u) / WL; k++) {
        let e = min(k * WL + lane % WL, row_weights - 1u);
        chunks[k] = wt[((e / KW * CG + cl) * KH + ky) * KW + e % KW];
      }
      for (var kx = 0u; kx < KW; kx++) {
        var xs: array<vec4<f32>, MAX_QUADS>;       // the inputs under pixel 4q + e at kernel column kx
        for (var q = 0u; q < quads; q++) {
          let c = (4u * q) * SW + kx * DW;
          xs[q] = vec4<f32>(win[c], win[c + SW], win[c + 2u * SW], win[c + 3u * SW]);
        }
        for (var i = 0u; i < OC; i++) {
          let e = i * KW + kx;
          let wv = vec4<f32>(subgroupShuffle(chunks[e / WL], e % WL));
          for (var q = 0u; q < quads; q++) { acc[i * quads + q] = fma(wv, xs[q], acc[i * quads + q]); }
        }
      }
    }
  }
  return acc;
}

// Grid: x (+z) over pixel blocks (n, oh, ow / PB).
@compute @workgroup_size(64)
fn conv_forward_stem(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) lane: u32) {
  let pix = (wid.x + wid.z * nwg.x) * WG + lid;
  let b = stem_block(min(pix, p.n_blocks - 1u));
  let acc = stem_forward_sums(b, lane);
  if (pix >= p.n_blocks) { return; }
  for (var i = 0u; i < OC; i++) {
    let base = ((b.n * p.o + i) * p.oh + b.oh) * p.ow + b.ow0;
    for (var j = 0u; j < PB; j++) {
      if (b.ow0 + j < p.ow) { out[base + j] = acc[i * PB / 4u + j / 4u][j % 4u]; }
    }
  }
}

@compute @workgroup_size(64)
fn conv_forward_stem4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) lane: u32) {
  let pix = (wid.x + wid.z * nwg.x) * WG + lid;
  let b = stem_block(min(pix, p.n_blocks - 1u));
  let acc = stem_forward_sums(b, lane);
  if (pix >= p.n_blocks) { return; }
  for (var i = 0u; i < OC; i++) {
    let base = (((b.n * p.o + i) * p.oh + b.oh) * p.ow + b.ow0) / 4u;
    for (var q = 0u; q < PB / 4u; q++) {
      if (b.ow0 + q * 4u < p.ow) { out4[base + q] = acc[i * PB / 4u + q]; }
    }
  }
}
