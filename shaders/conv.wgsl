// 2-D convolution (NCHW, PyTorch semantics), forward and backward side by side.
//
// general   any kernel/stride/padding/dilation/groups: implicit GEMM, no im2col buffer. Each invocation owns a
//           register block of OB channels x PB pixels of one row. The channel block comes from the workgroup id,
//           so weight loads are uniform (a broadcast on GPUs; still one load per invocation on lavapipe, which
//           only scalarises loads at constant addresses), and each row of input under the PB pixels is loaded
//           once into a register window that all KW kernel columns reuse.
// depthwise groups == C: rows of at most MAX_ROW columns slide a window of whole rows down each plane (see
//           'depthwise, sliding windows'); wider rows take the same windows as general, one channel per
//           workgroup row.
// stem      groups 1 and few weights (the first layer): the forward holds all output channels per invocation
//           and the weight gradient a tile of output channels x all taps, with the input rows spelled out so
//           weight loads (forward) and accumulators (weight gradient) have constant indices.
// (pointwise 1x1 convolutions go through the GEMM in matmul.wgsl.)
//
// Input gradients are gathers over output positions (each dx element written once, no atomics). With stride s
// the input pixels split into s x s phases that read disjoint kernel taps; the phase is part of the workgroup
// id, so the taps that do not apply are skipped uniformly instead of being masked per pixel. Few input channels
// per group (stems) go by 2-D tiles of input pixels instead, all phases and channels of a tile in one
// invocation, so each gy value and weight loaded serves many multiply-adds.
// Weight and bias gradients are parallel reductions over N*OH*OW: pass 1 splits the output pixels into chunks,
// each workgroup reduces one chunk for a block of outputs into partials[chunk][output], with lanes striding
// over the chunk's pixel blocks and a fixed-order shared-memory tree at the end; pass 2 (reduce_partials) sums
// the chunks in order. Every sum has a fixed order, so results are bit-reproducible.
//
// Kernels are specialised (override constants) on the register block sizes and on the kernel width, stride
// and dilation along W, so register arrays are indexed with constants once loops are unrolled.

struct Conv {
  n: u32, c: u32, h: u32, w: u32,         // input  [n, c, h, w] (n: images in this dispatch)
  o: u32, oh: u32, ow: u32,               // output [n, o, oh, ow]
  kh: u32,                                // kernel height (the width is the constant KW)
  sh: u32, ph: u32, pw: u32, dh: u32,     // stride, padding, dilation (stride/dilation along W: SW, DW)
  groups: u32, cg: u32, og: u32,          // groups; channels per group: in, out
  mult: u32,                              // depthwise channel multiplier (o / c)
  has_bias: u32,
  bpr: u32,                               // pixel blocks per row
  rows: u32,                              // rows per image the pixel blocks cover
  n_blocks: u32,                          // pixel blocks in total: n * rows * bpr
  blocks_per_chunk: u32,                  // reductions: pixel blocks (or elements) per chunk
  chunk_base: u32,                        // reductions: first partials row this dispatch writes
  n_chunks: u32,                          // reduce_partials: rows of partials
  n_outputs: u32,                         // reductions: outputs per partials row (weight grads, then bias)
  n_weight: u32,                          // reductions: how many of those are weight grads
  plane: u32,                             // bias_grad_partials: elements per (n, o) plane
  plane_chunks: u32,                      // bias_grad_partials: chunks per plane
}

@group(0) @binding(0) var<uniform> p: Conv;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> wt: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read> gy: array<f32>;          // gradient of the output
@group(0) @binding(5) var<storage, read> partials: array<f32>;
@group(0) @binding(6) var<storage, read_write> out: array<f32>;
@group(0) @binding(7) var<storage, read_write> out_bias: array<f32>;
// vec4 views of x, gy and out for kernels whose rows are whole aligned vec4s (VEC): one load or store per 4 floats.
@group(0) @binding(8) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(9) var<storage, read> gy4: array<vec4<f32>>;
@group(0) @binding(10) var<storage, read_write> out4: array<vec4<f32>>;

const WG: u32 = 64u;
const MAX_BLOCK: u32 = 32u;   // register block capacity: OB * PB
const MAX_WIN: u32 = 32u;     // row window capacity: SPAN
const MAX_ACC: u32 = 36u;     // depthwise weight-gradient accumulators: KH * KW
const MAX_OB: u32 = 8u;
const MAX_WACC: u32 = 72u;    // general weight gradient: OB * RB * KW accumulators
const TREE_ROWS: u32 = 40u;   // values one shared-memory tree reduces at a time
const MAX_TILE: u32 = 128u;   // tile input gradient: CB * TH * TW accumulators
const MAX_TILE_WIN: u32 = 64u; // tile input gradient: WR * WC window values
const MAX_STEM_ROWS: u32 = 12u;  // stem kernels: CG * KH input rows, spelled out
const MAX_STEM_FACC4: u32 = 32u; // stem forward: OC * PB / 4 vec4 accumulators
const MAX_STEM_ACC4: u32 = 216u; // stem weight gradient: OC * CG * KH * KW vec4 accumulators
const MAX_STEM_TOTALS: u32 = 232u; // stem weight gradient: those and OC bias sums
const MAX_STEM_GV4: u32 = 32u;  // stem weight gradient: OC * PB / 4 vec4s of gy
const MAX_STEM_OC: u32 = 16u;   // stem weight gradient: OC
const MAX_QUADS: u32 = 9u;    // vec4s under a row window: (XOFF + SPAN + 3) / 4

override OB: u32 = 4u;        // channels per invocation (output channels; input channels for dX)
override PB: u32 = 4u;        // pixels per invocation along a row
override RB: u32 = 1u;        // general weight gradient: kernel rows per invocation
override LANES: u32 = 64u;    // bias_grad_partials: invocations per workgroup (one output channel each)
override KH: u32 = 3u;        // depthwise and tile input gradient: kernel height
override KW: u32 = 3u;        // kernel width
override SW: u32 = 1u;        // stride along W
override DW: u32 = 1u;        // dilation along W
override SH: u32 = 1u;        // tile input gradient: stride along H
override PH: u32 = 0u;        // tile input gradient: padding along H and W
override PW: u32 = 0u;
override DH: u32 = 1u;        // tile input gradient: dilation along H
override CB: u32 = 1u;        // tile input gradient: input channels per invocation
override TH: u32 = 2u;        // tile input gradient: tile rows (a multiple of SH)
override TW: u32 = 8u;        // tile input gradient: tile columns (a multiple of SW)
override WR: u32 = 4u;        // tile input gradient: gy window rows and columns
override WC: u32 = 10u;
override WIN_OH: i32 = -1;    // tile input gradient: the window's first row and column, relative to ih0/SH, iw0/SW
override WIN_OW: i32 = -1;
override CG: u32 = 1u;        // stem kernels: input channels (groups 1)
override OC: u32 = 16u;       // stem kernels: output channels per invocation (forward: all of them)
override VEC: bool = false;   // rows of x and of out / gy are whole vec4s, and so are pixel blocks (PB % 4 == 0)
override XOFF: u32 = 0u;      // VEC: column of a row window's first input within its vec4 ((-pw) mod 4)
override SPAN: u32 = (PB - 1u) * SW + (KW - 1u) * DW + 1u;   // input columns under PB outputs

// Workgroup index over x, folded with z past 65,535 workgroups.
fn flat_group(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
  return wid.x + wid.z * nwg.x;
}

// Loads the SPAN input columns starting at iw0 of row ih of an input plane (zeros outside the image).
fn load_x_window(plane: u32, ih: i32, iw0: i32) -> array<f32, MAX_WIN> {
  var win: array<f32, MAX_WIN>;
  let row_ok = ih >= 0 && ih < i32(p.h);
  let row = i32(plane) + ih * i32(p.w);
  for (var q = 0u; q < SPAN; q++) {
    let iw = iw0 + i32(q);
    win[q] = select(0.0, x[u32(max(row + iw, 0))], row_ok && iw >= 0 && iw < i32(p.w));
  }
  return win;
}

// load_x_window, but through x4 when VEC: the window starts XOFF into a vec4 (iw0 = ow0*SW - pw with ow0 a
// multiple of 4), so it takes (XOFF + SPAN + 3) / 4 loads instead of SPAN; a row's vec4s never straddle its ends.
fn load_x_row(plane: u32, ih: i32, iw0: i32) -> array<f32, MAX_WIN> {
  if (!VEC) { return load_x_window(plane, ih, iw0); }
  var quads: array<vec4<f32>, MAX_QUADS>;
  let row_ok = ih >= 0 && ih < i32(p.h);
  let row = (i32(plane) + ih * i32(p.w)) / 4;   // exact: planes and rows are multiples of 4
  let q0 = (iw0 - i32(XOFF)) / 4;                // exact
  let quads_per_row = i32(p.w / 4u);
  for (var k = 0u; k < (XOFF + SPAN + 3u) / 4u; k++) {
    let q = q0 + i32(k);
    quads[k] = select(vec4<f32>(0.0), x4[u32(max(row + q, 0))], row_ok && q >= 0 && q < quads_per_row);
  }
  var win: array<f32, MAX_WIN>;
  for (var q = 0u; q < SPAN; q++) { win[q] = quads[(XOFF + q) / 4u][(XOFF + q) % 4u]; }
  return win;
}

// ---- general forward ------------------------------------------------------------------------------------------

// out[n, o, oh, ow] = bias[o] + sum_{cl, ky, kx} x[n, g*cg + cl, oh*sh - ph + ky*dh, ow*SW - pw + kx*DW]
//                                                * wt[o, cl, ky, kx]            (g = o / og)
// Grid: x (+z) over pixel blocks (n, oh, ow / PB), y over (group, block of OB output channels).
@compute @workgroup_size(64)
fn conv_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
  let pix = flat_group(wid, nwg) * WG + lid;
  if (pix >= p.n_blocks) { return; }
  let blocks_per_group = (p.og + OB - 1u) / OB;
  let grp = wid.y / blocks_per_group;
  let o0 = grp * p.og + (wid.y % blocks_per_group) * OB;
  let o_last = grp * p.og + p.og - 1u;
  let bx = pix % p.bpr;
  let oh = (pix / p.bpr) % p.oh;
  let n = pix / (p.bpr * p.oh);
  let ow0 = bx * PB;

  var acc: array<f32, MAX_BLOCK>;
  for (var i = 0u; i < OB; i++) {
    let b = select(0.0, bias[min(o0 + i, o_last)], p.has_bias == 1u);
    for (var j = 0u; j < PB; j++) { acc[i * PB + j] = b; }
  }
  let taps = p.kh * KW;
  let iw0 = i32(ow0 * SW) - i32(p.pw);
  for (var cl = 0u; cl < p.cg; cl++) {
    let plane = (n * p.c + grp * p.cg + cl) * p.h * p.w;
    for (var ky = 0u; ky < p.kh; ky++) {
      let win = load_x_window(plane, i32(oh * p.sh + ky * p.dh) - i32(p.ph), iw0);
      for (var kx = 0u; kx < KW; kx++) {
        let w_tap = cl * taps + ky * KW + kx;
        for (var i = 0u; i < OB; i++) {
          let wv = wt[min(o0 + i, o_last) * p.cg * taps + w_tap];
          for (var j = 0u; j < PB; j++) { acc[i * PB + j] = fma(wv, win[j * SW + kx * DW], acc[i * PB + j]); }
        }
      }
    }
  }
  for (var i = 0u; i < OB; i++) {
    let o = o0 + i;
    if (o > o_last) { break; }
    let base = ((n * p.o + o) * p.oh + oh) * p.ow;
    for (var j = 0u; j < PB; j++) {
      if (ow0 + j < p.ow) { out[base + ow0 + j] = acc[i * PB + j]; }
    }
  }
}

// The same sum for groups 1 and few weights (stems): each invocation owns all OC = O output channels of PB
// pixels (4 or 8, in vec4 accumulators), so each input row window it loads serves every output channel. The
// CG x KH input rows are spelled out (stem_forward_row(r) for r < MAX_STEM_ROWS, the extra calls empty), so
// every weight index is a constant once the short loops in a row unroll: the same for every invocation, a
// broadcast load even on drivers that turn a uniform load at a computed address into one load per invocation.
// Two entry points, as a written binding has one type: conv_forward_stem4 stores vec4s (VEC), conv_forward_stem
// floats. Grid: x (+z) over pixel blocks (n, oh, ow / PB).
struct StemBlock {
  n: u32,
  oh: u32,
  ow0: u32,
}

fn stem_block(pix: u32) -> StemBlock {
  return StemBlock(pix / (p.bpr * p.oh), (pix / p.bpr) % p.oh, (pix % p.bpr) * PB);
}

// acc[i * PB/4 + q][e] += sum over kx of x[n, cl, oh*sh - ph + ky*dh, (ow0 + 4q + e)*SW - pw + kx*DW]
//                                        * wt[i, cl, ky, kx]                  (row r = cl * KH + ky)
fn stem_forward_row(r: u32, b: StemBlock, acc: ptr<function, array<vec4<f32>, MAX_STEM_FACC4>>) {
  if (r >= CG * KH) { return; }
  let plane = (b.n * p.c + r / KH) * p.h * p.w;
  let win = load_x_row(plane, i32(b.oh * p.sh + (r % KH) * p.dh) - i32(p.ph), i32(b.ow0 * SW) - i32(p.pw));
  let quads = PB / 4u;
  for (var kx = 0u; kx < KW; kx++) {
    var xs: array<vec4<f32>, 2>;                  // the inputs under pixels 4q.. at kernel column kx
    for (var q = 0u; q < quads; q++) {
      let c = (4u * q) * SW + kx * DW;
      xs[q] = vec4<f32>(win[c], win[c + SW], win[c + 2u * SW], win[c + 3u * SW]);
    }
    for (var i = 0u; i < OC; i++) {
      let wv = vec4<f32>(wt[(i * CG * KH + r) * KW + kx]);
      for (var q = 0u; q < quads; q++) { (*acc)[i * quads + q] = fma(wv, xs[q], (*acc)[i * quads + q]); }
    }
  }
}

fn stem_forward_sums(b: StemBlock) -> array<vec4<f32>, MAX_STEM_FACC4> {
  var acc: array<vec4<f32>, MAX_STEM_FACC4>;
  for (var i = 0u; i < OC; i++) {
    let bv = vec4<f32>(select(0.0, bias[i], p.has_bias == 1u));
    for (var q = 0u; q < PB / 4u; q++) { acc[i * PB / 4u + q] = bv; }
  }
  stem_forward_row(0u, b, &acc);
  stem_forward_row(1u, b, &acc);
  stem_forward_row(2u, b, &acc);
  stem_forward_row(3u, b, &acc);
  stem_forward_row(4u, b, &acc);
  stem_forward_row(5u, b, &acc);
  stem_forward_row(6u, b, &acc);
  stem_forward_row(7u, b, &acc);
  stem_forward_row(8u, b, &acc);
  stem_forward_row(9u, b, &acc);
  stem_forward_row(10u, b, &acc);
  stem_forward_row(11u, b, &acc);
  return acc;
}

@compute @workgroup_size(64)
fn conv_forward_stem(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
  let pix = flat_group(wid, nwg) * WG + lid;
  if (pix >= p.n_blocks) { return; }
  let b = stem_block(pix);
  let acc = stem_forward_sums(b);
  for (var i = 0u; i < OC; i++) {
    let base = ((b.n * p.o + i) * p.oh + b.oh) * p.ow + b.ow0;
    for (var j = 0u; j < PB; j++) {
      if (b.ow0 + j < p.ow) { out[base + j] = acc[i * PB / 4u + j / 4u][j % 4u]; }
    }
  }
}

@compute @workgroup_size(64)
fn conv_forward_stem4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
  let pix = flat_group(wid, nwg) * WG + lid;
  if (pix >= p.n_blocks) { return; }
  let b = stem_block(pix);
  let acc = stem_forward_sums(b);
  for (var i = 0u; i < OC; i++) {
    let base = (((b.n * p.o + i) * p.oh + b.oh) * p.ow + b.ow0) / 4u;
    for (var q = 0u; q < PB / 4u; q++) {
      if (b.ow0 + q * 4u < p.ow) { out4[base + q] = acc[i * PB / 4u + q]; }
    }
  }
}

// ---- input gradients (general and depthwise) ------------------------------------------------------------------

// An input pixel block of one phase: rows ih = phase_h + r*sh, columns iw = phase_w + (bx*PB + j)*SW.
struct PhaseBlock {
  n: u32,
  ih: u32,
  row_ok: bool,
  bx: u32,
  phase_h: u32,
  phase_w: u32,
}

fn phase_block(pix: u32, phase: u32) -> PhaseBlock {
  var b: PhaseBlock;
  b.phase_h = phase / SW;
  b.phase_w = phase % SW;
  b.bx = pix % p.bpr;
  b.ih = b.phase_h + ((pix / p.bpr) % p.rows) * p.sh;
  b.row_ok = b.ih < p.h;
  b.n = pix / (p.bpr * p.rows);
  return b;
}

// Adds gy[n, o, :, :] * wt[o, channel, :, :] (transposed) into acc for one block: acc[i * PB + j] for channels
// i < count whose weights sit at w_base + i * w_stride + ky * KW + kx.
fn accumulate_input_grad(b: PhaseBlock, o: u32, w_base: u32, w_stride: u32, count: u32, acc: ptr<function, array<f32, MAX_BLOCK>>) {
  let g_plane = (b.n * p.o + o) * p.oh * p.ow;
  for (var ky = 0u; ky < p.kh; ky++) {
    // Rows: ih + ph - ky*dh must be a multiple of sh; that depends only on the phase (uniform).
    let th = i32(b.phase_h + p.ph) - i32(ky * p.dh);
    if (th % i32(p.sh) != 0) { continue; }
    let oh = i32(b.ih / p.sh) + th / i32(p.sh);   // (ih + ph - ky*dh) / sh, exact
    let row_ok = b.row_ok && oh >= 0 && oh < i32(p.oh);
    let g_row = i32(g_plane) + oh * i32(p.ow);
    if (SW == 1u) {
      // Output columns iw0 + j + pw - kx*DW for every (j, kx): SPAN of them from u0, loaded once.
      let u0 = i32(b.bx * PB + p.pw) - i32((KW - 1u) * DW);
      var win: array<f32, MAX_WIN>;
      for (var q = 0u; q < SPAN; q++) {
        let ow = u0 + i32(q);
        win[q] = select(0.0, gy[u32(max(g_row + ow, 0))], row_ok && ow >= 0 && ow < i32(p.ow));
      }
      for (var kx = 0u; kx < KW; kx++) {
        for (var i = 0u; i < count; i++) {
          let wv = wt[w_base + i * w_stride + ky * KW + kx];
          for (var j = 0u; j < PB; j++) { (*acc)[i * PB + j] = fma(wv, win[j + (KW - 1u - kx) * DW], (*acc)[i * PB + j]); }
        }
      }
    } else {
      for (var kx = 0u; kx < KW; kx++) {
        let tw = i32(b.phase_w + p.pw) - i32(kx * DW);
        if (tw % i32(SW) != 0) { continue; }
        let ow0 = i32(b.bx * PB) + tw / i32(SW);      // (iw + pw - kx*DW) / SW for j = 0, exact
        var gv: array<f32, MAX_BLOCK>;
        for (var j = 0u; j < PB; j++) {
          let ow = ow0 + i32(j);
          gv[j] = select(0.0, gy[u32(max(g_row + ow, 0))], row_ok && ow >= 0 && ow < i32(p.ow));
        }
        for (var i = 0u; i < count; i++) {
          let wv = wt[w_base + i * w_stride + ky * KW + kx];
          for (var j = 0u; j < PB; j++) { (*acc)[i * PB + j] = fma(wv, gv[j], (*acc)[i * PB + j]); }
        }
      }
    }
  }
}

fn store_input_grad(b: PhaseBlock, c: u32, acc_row: u32, acc: ptr<function, array<f32, MAX_BLOCK>>) {
  if (!b.row_ok) { return; }
  let base = ((b.n * p.c + c) * p.h + b.ih) * p.w;
  for (var j = 0u; j < PB; j++) {
    let iw = b.phase_w + (b.bx * PB + j) * SW;
    if (iw < p.w) { out[base + iw] = (*acc)[acc_row * PB + j]; }
  }
}

// dx[n, c, ih, iw] = sum_{ol, ky, kx} gy[n, o, oh, ow] * wt[o, cl, ky, kx] over the (oh, ow) that read (ih, iw).
// Grid: x (+z) over phase pixel blocks (n, r, bx), y over (group, block of OB input channels, phase).
@compute @workgroup_size(64)
fn conv_backward_input(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_index) lid: u32) {
  let pix = flat_group(wid, nwg) * WG + lid;
  if (pix >= p.n_blocks) { return; }
  let phases = p.sh * SW;
  let blocks_per_group = (p.cg + OB - 1u) / OB;
  let channel_block = wid.y / phases;
  let grp = channel_block / blocks_per_group;
  let cl0 = (channel_block % blocks_per_group) * OB;
  let count = min(OB, p.cg - cl0);
  let b = phase_block(pix, wid.y % phases);
  let taps = p.kh * KW;

  var acc: array<f32, MAX_BLOCK>;
  for (var k = 0u; k < OB * PB; k++) { acc[k] = 0.0; }
  for (var ol = 0u; ol < p.og; ol++) {
    let o = grp * p.og + ol;
    accumulate_input_grad(b, o, (o * p.cg + cl0) * taps, taps, count, &acc);
  }
  for (var i = 0u; i < count; i++) { store_input_grad(b, grp * p.cg + cl0 + i, i, &acc); }
}

// dx[n, c, ih, iw] = sum_{m, ky, kx} gy[n, c*mult + m, oh, ow] * wt[c*mult + m, 0, ky, kx], same gather.
// Grid: x (+z) over phase pixel blocks, y over (input channel, phase).
@compute @workgroup_size(64)
fn depthwise_backward_input_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                                 @builtin(local_invocation_index) lid: u32) {
  let pix = flat_group(wid, nwg) * WG + lid;
  if (pix >= p.n_blocks) { return; }
  let phases = p.sh * SW;
  let c = wid.y / phases;
  let b = phase_block(pix, wid.y % phases);
  var acc: array<f32, MAX_BLOCK>;
  for (var j = 0u; j < PB; j++) { acc[j] = 0.0; }
  for (var m = 0u; m < p.mult; m++) {
    let o = c * p.mult + m;
    accumulate_input_grad(b, o, o * p.kh * KW, 0u, 1u, &acc);
  }
  store_input_grad(b, c, 0u, &acc);
}

// dx for few input channels per group (stems), by tiles: each invocation owns TH x TW input pixels (all sh x sw
// phases) of CB channels. Per output channel o it loads the gy window under the tile once (WR x WC values, shared
// by all CB channels and every kernel tap) and the CB x KH x KW weights of o, then adds every
// (pixel, tap) pair that meets: with the geometry in constants and the tile aligned to the strides, which pairs
// meet is known at compile time, so the unrolled body is straight-line FMAs on registers.
// Window row r holds oh = ih0/SH + WIN_OH + r (WIN_OH: the lowest exact (py + PH - ky*DH)/SH); columns alike.
// Grid: x (+z) over tiles (n, tile row, tile column), y over (group, block of CB input channels).
@compute @workgroup_size(64)
fn conv_backward_input_tiles(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                             @builtin(local_invocation_index) lid: u32) {
  let tile = flat_group(wid, nwg) * WG + lid;
  if (tile >= p.n_blocks) { return; }
  let blocks_per_group = (p.cg + CB - 1u) / CB;
  let grp = wid.y / blocks_per_group;
  let cl0 = (wid.y % blocks_per_group) * CB;
  let ih0 = ((tile / p.bpr) % p.rows) * TH;
  let iw0 = (tile % p.bpr) * TW;
  let n = tile / (p.bpr * p.rows);
  let oh0 = i32(ih0 / SH) + WIN_OH;
  let ow0 = i32(iw0 / SW) + WIN_OW;

  var acc: array<f32, MAX_TILE>;
  for (var k = 0u; k < CB * TH * TW; k++) { acc[k] = 0.0; }
  for (var ol = 0u; ol < p.og; ol++) {
    let o = grp * p.og + ol;
    let g_plane = i32((n * p.o + o) * p.oh * p.ow);
    var win: array<f32, MAX_TILE_WIN>;
    for (var r = 0u; r < WR; r++) {
      let oh = oh0 + i32(r);
      let row_ok = oh >= 0 && oh < i32(p.oh);
      for (var q = 0u; q < WC; q++) {
        let ow = ow0 + i32(q);
        win[r * WC + q] = select(0.0, gy[u32(max(g_plane + oh * i32(p.ow) + ow, 0))], row_ok && ow >= 0 && ow < i32(p.ow));
      }
    }
    // Tile pixel (py, px) = (phy + my*SH, phx + mx*SW) meets tap (ky, kx) when SH divides phy + PH - ky*DH and
    // SW divides phx + PW - kx*DW: a test on constants, so only meeting pairs remain once the loops unroll.
    for (var c = 0u; c < CB; c++) {
      let w_base = (o * p.cg + min(cl0 + c, p.cg - 1u)) * KH * KW;
      for (var phy = 0u; phy < SH; phy++) {
        for (var ky = 0u; ky < KH; ky++) {
          let th = i32(phy + PH) - i32(ky * DH);
          if (th % i32(SH) != 0) { continue; }
          let r0 = u32(th / i32(SH) - WIN_OH);        // window row of my = 0
          for (var phx = 0u; phx < SW; phx++) {
            for (var kx = 0u; kx < KW; kx++) {
              let tw = i32(phx + PW) - i32(kx * DW);
              if (tw % i32(SW) != 0) { continue; }
              let w0 = r0 * WC + u32(tw / i32(SW) - WIN_OW);   // window index of (my, mx) = (0, 0)
              let wv = wt[w_base + ky * KW + kx];
              for (var my = 0u; my < TH / SH; my++) {
                for (var mx = 0u; mx < TW / SW; mx++) {
                  let k = (c * TH + phy + my * SH) * TW + phx + mx * SW;
                  acc[k] = fma(wv, win[w0 + my * WC + mx], acc[k]);
                }
              }
            }
          }
        }
      }
    }
  }
  for (var c = 0u; c < CB; c++) {
    let cl = cl0 + c;
    if (cl >= p.cg) { break; }
    let plane = (n * p.c + grp * p.cg + cl) * p.h * p.w;
    for (var py = 0u; py < TH; py++) {
      let ih = ih0 + py;
      if (ih >= p.h) { break; }
      for (var px = 0u; px < TW; px++) {
        if (iw0 + px < p.w) { out[plane + ih * p.w + iw0 + px] = acc[(c * TH + py) * TW + px]; }
      }
    }
  }
}

// ---- weight (and bias) gradients, pass 1 ----------------------------------------------------------------------

var<workgroup> tree: array<f32, 2560>;   // WG * TREE_ROWS lanes' values

// Sums tree[k * WG + lane] over the 64 lanes for k < count, leaving each total in tree[k * WG].
fn reduce_tree(lid: u32, count: u32) {
  for (var stride = WG / 2u; stride > 0u; stride = stride / 2u) {
    workgroupBarrier();
    if (lid < stride) {
      for (var k = 0u; k < count; k++) { tree[k * WG + lid] += tree[k * WG + lid + stride]; }
    }
  }
  workgroupBarrier();
}

// partials[chunk, o*cg*kh*KW + (cl*kh + ky)*KW + kx] = sum over the chunk's output pixels of
//     gy[n, o, oh, ow] * x[n, g*cg + cl, oh*sh - ph + ky*dh, ow*SW - pw + kx*DW]
// partials[chunk, n_weight + o] = sum over the chunk's output pixels of gy[n, o, oh, ow]          (bias)
// A job is (group, block of OB output channels, input channel cl, block of RB kernel rows): each invocation
// keeps OB x RB x KW accumulators over its share of the chunk's pixel blocks (loading gy once per block for all
// taps and one x row window per kernel row), then the workgroup combines its lanes in a fixed-order tree.
// Grid: x (+y) over jobs, z over chunks.
@compute @workgroup_size(64)
fn conv_backward_weight(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                        @builtin(local_invocation_index) lid: u32) {
  let row_blocks = p.kh / RB;                 // RB divides kh
  let o_blocks = (p.og + OB - 1u) / OB;
  let job = wid.x + wid.y * nwg.x;
  if (job >= p.groups * o_blocks * p.cg * row_blocks) { return; }   // uniform: the barriers below stay legal
  let ky0 = (job % row_blocks) * RB;
  let cl = (job / row_blocks) % p.cg;
  let grp = job / (row_blocks * p.cg * o_blocks);
  let o0 = grp * p.og + ((job / (row_blocks * p.cg)) % o_blocks) * OB;
  let o_last = grp * p.og + p.og - 1u;
  let chunk = wid.z;

  var acc: array<f32, MAX_WACC>;
  var acc_bias: array<f32, MAX_OB>;
  for (var k = 0u; k < OB * RB * KW; k++) { acc[k] = 0.0; }
  for (var i = 0u; i < OB; i++) { acc_bias[i] = 0.0; }
  let first = chunk * p.blocks_per_chunk;
  let end = min(first + p.blocks_per_chunk, p.n_blocks);
  for (var pix = first + lid; pix < end; pix += WG) {
    let bx = pix % p.bpr;
    let oh = (pix / p.bpr) % p.oh;
    let n = pix / (p.bpr * p.oh);
    let ow0 = bx * PB;
    var gv: array<f32, MAX_BLOCK>;
    for (var i = 0u; i < OB; i++) {
      let g_row = ((n * p.o + min(o0 + i, o_last)) * p.oh + oh) * p.ow;
      for (var j = 0u; j < PB; j++) {
        gv[i * PB + j] = select(0.0, gy[g_row + min(ow0 + j, p.ow - 1u)], o0 + i <= o_last && ow0 + j < p.ow);
        acc_bias[i] += gv[i * PB + j];
      }
    }
    let plane = (n * p.c + grp * p.cg + cl) * p.h * p.w;
    let iw0 = i32(ow0 * SW) - i32(p.pw);
    for (var r = 0u; r < RB; r++) {
      let win = load_x_window(plane, i32(oh * p.sh + (ky0 + r) * p.dh) - i32(p.ph), iw0);
      for (var kx = 0u; kx < KW; kx++) {
        for (var i = 0u; i < OB; i++) {
          var s = acc[(i * RB + r) * KW + kx];
          for (var j = 0u; j < PB; j++) { s = fma(gv[i * PB + j], win[j * SW + kx * DW], s); }
          acc[(i * RB + r) * KW + kx] = s;
        }
      }
    }
  }

  // Accumulators, then bias sums, through the tree TREE_ROWS at a time.
  let n_acc = OB * RB * KW;
  let n_values = n_acc + OB;
  let dst = (p.chunk_base + chunk) * p.n_outputs;
  for (var base = 0u; base < n_values; base += TREE_ROWS) {
    let count = min(TREE_ROWS, n_values - base);
    for (var k = 0u; k < count; k++) {
      let v = base + k;
      tree[k * WG + lid] = select(acc_bias[min(v - n_acc, MAX_OB - 1u)], acc[min(v, MAX_WACC - 1u)], v < n_acc);
    }
    reduce_tree(lid, count);
    let v = base + lid;
    if (lid < count && v < n_acc) {
      let o = o0 + v / (RB * KW);
      let tap = (cl * p.kh + ky0) * KW + v % (RB * KW);   // rows ky0.. are consecutive in the weight layout
      if (o <= o_last) { out[dst + o * p.cg * p.kh * KW + tap] = tree[lid * WG]; }
    } else if (lid < count && v < n_values) {
      let o = o0 + v - n_acc;
      if (p.has_bias == 1u && cl == 0u && ky0 == 0u && o <= o_last) { out[dst + p.n_weight + o] = tree[lid * WG]; }
    }
    workgroupBarrier();   // the totals are read before the next round overwrites the tree
  }
}

// partials as in conv_backward_weight but a row per invocation (partials[chunk * WG + lane, ...], as
// depthwise_backward_weight), for groups 1 and few weights (stems): a job is a block of OC output
// channels with every CG x KH x KW tap, so per block of PB pixels (4 or 8) each gy value loaded serves all the
// taps and each input row window all OC channels. Loads per lane are what cost on SIMD-over-invocations drivers,
// so the register tile is large: vec4 multiply-adds, 4 pixels at a time, whose 4 pixel lanes are summed at the
// end. The CG x KH input rows are spelled out (stem_weight_row(r) for r < MAX_STEM_ROWS, the extra calls empty):
// every accumulator index is then a constant without unrolling a loop over rows, a body too large for a
// compiler's unroller, so the accumulators stay registers (a variable index would put them in memory).
// Grid: x over blocks of OC output channels, z over chunks.
struct StemPixels {
  n: u32,
  oh: u32,
  iw0: i32,
}

// acc[i * CG*KH*KW + r * KW + kx] += gy[o0 + i] * x[cl][ky] windows at kernel column kx, for row r = cl * KH + ky.
fn stem_weight_row(r: u32, b: StemPixels, gv: ptr<function, array<vec4<f32>, MAX_STEM_GV4>>,
                   acc: ptr<function, array<vec4<f32>, MAX_STEM_ACC4>>) {
  if (r >= CG * KH) { return; }
  let plane = (b.n * p.c + r / KH) * p.h * p.w;
  let win = load_x_row(plane, i32(b.oh * p.sh + (r % KH) * p.dh) - i32(p.ph), b.iw0);
  for (var kx = 0u; kx < KW; kx++) {
    for (var q = 0u; q < PB / 4u; q++) {
      let c = (4u * q) * SW + kx * DW;
      let xs = vec4<f32>(win[c], win[c + SW], win[c + 2u * SW], win[c + 3u * SW]);
      for (var i = 0u; i < OC; i++) {
        let k = i * CG * KH * KW + r * KW + kx;
        (*acc)[k] = fma((*gv)[i * PB / 4u + q], xs, (*acc)[k]);
      }
    }
  }
}

// totals[i * CG*KH*KW + r * KW + kx]: the 4 pixel lanes of those accumulators summed.
fn stem_weight_totals(r: u32, acc: ptr<function, array<vec4<f32>, MAX_STEM_ACC4>>,
                      totals: ptr<function, array<f32, MAX_STEM_TOTALS>>) {
  if (r >= CG * KH) { return; }
  for (var kx = 0u; kx < KW; kx++) {
    for (var i = 0u; i < OC; i++) {
      let k = i * CG * KH * KW + r * KW + kx;
      (*totals)[k] = dot((*acc)[k], vec4<f32>(1.0));
    }
  }
}

@compute @workgroup_size(64)
fn conv_backward_weight_stem(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let o0 = wid.x * OC;
  let chunk = wid.z;
  let quads = PB / 4u;
  var acc: array<vec4<f32>, MAX_STEM_ACC4>;        // zeros
  var acc_bias: array<vec4<f32>, MAX_STEM_OC>;
  let first = chunk * p.blocks_per_chunk;
  let end = min(first + p.blocks_per_chunk, p.n_blocks);
  for (var pix = first + lid; pix < end; pix += WG) {
    let bx = pix % p.bpr;
    let b = StemPixels(pix / (p.bpr * p.oh), (pix / p.bpr) % p.oh, i32(bx * PB * SW) - i32(p.pw));
    let ow0 = bx * PB;
    var gv: array<vec4<f32>, MAX_STEM_GV4>;        // gv[i * quads + q]: gy at pixels ow0 + 4q ..
    for (var i = 0u; i < OC; i++) {
      let o_ok = o0 + i < p.o;
      let g_row = ((b.n * p.o + min(o0 + i, p.o - 1u)) * p.oh + b.oh) * p.ow;
      for (var q = 0u; q < quads; q++) {
        let ow = ow0 + 4u * q;
        var v: vec4<f32>;
        if (VEC) {
          v = select(vec4<f32>(0.0), gy4[(g_row + min(ow, p.ow - 4u)) / 4u], o_ok && ow < p.ow);
        } else {
          for (var e = 0u; e < 4u; e++) { v[e] = select(0.0, gy[g_row + min(ow + e, p.ow - 1u)], o_ok && ow + e < p.ow); }
        }
        gv[i * quads + q] = v;
        acc_bias[i] += v;
      }
    }
    stem_weight_row(0u, b, &gv, &acc);
    stem_weight_row(1u, b, &gv, &acc);
    stem_weight_row(2u, b, &gv, &acc);
    stem_weight_row(3u, b, &gv, &acc);
    stem_weight_row(4u, b, &gv, &acc);
    stem_weight_row(5u, b, &gv, &acc);
    stem_weight_row(6u, b, &gv, &acc);
    stem_weight_row(7u, b, &gv, &acc);
    stem_weight_row(8u, b, &gv, &acc);
    stem_weight_row(9u, b, &gv, &acc);
    stem_weight_row(10u, b, &gv, &acc);
    stem_weight_row(11u, b, &gv, &acc);
  }

  // The lane's totals (weights, then bias sums), written as this invocation's own partials row (no workgroup
  // tree: see depthwise_backward_weight).
  let taps = CG * KH * KW;
  let n_acc = OC * taps;
  var totals: array<f32, MAX_STEM_TOTALS>;
  stem_weight_totals(0u, &acc, &totals);
  stem_weight_totals(1u, &acc, &totals);
  stem_weight_totals(2u, &acc, &totals);
  stem_weight_totals(3u, &acc, &totals);
  stem_weight_totals(4u, &acc, &totals);
  stem_weight_totals(5u, &acc, &totals);
  stem_weight_totals(6u, &acc, &totals);
  stem_weight_totals(7u, &acc, &totals);
  stem_weight_totals(8u, &acc, &totals);
  stem_weight_totals(9u, &acc, &totals);
  stem_weight_totals(10u, &acc, &totals);
  stem_weight_totals(11u, &acc, &totals);
  let dst = ((p.chunk_base + chunk) * WG + lid) * p.n_outputs;
  for (var v = 0u; v < n_acc; v++) {
    let o = o0 + v / taps;
    if (o < p.o) { out[dst + o * taps + v % taps] = totals[v]; }
  }
  for (var i = 0u; i < OC; i++) {
    if (p.has_bias == 1u && o0 + i < p.o) { out[dst + p.n_weight + o0 + i] = dot(acc_bias[i], vec4<f32>(1.0)); }
  }
}

// partials[chunk * WG + lane, o*KH*KW + tap] and partials[chunk * WG + lane, n_weight + o] as above (a row per
// invocation), for a depthwise convolution: one output channel per workgroup, every invocation accumulating all
// KH*KW taps and the bias.
// Grid: x over output channels, z over chunks.
@compute @workgroup_size(64)
fn depthwise_backward_weight_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let o = wid.x;
  let chunk = wid.z;
  var acc: array<f32, MAX_ACC>;
  for (var k = 0u; k < KH * KW; k++) { acc[k] = 0.0; }
  var acc_bias = 0.0;
  let first = chunk * p.blocks_per_chunk;
  let end = min(first + p.blocks_per_chunk, p.n_blocks);
  for (var pix = first + lid; pix < end; pix += WG) {
    let bx = pix % p.bpr;
    let oh = (pix / p.bpr) % p.oh;
    let n = pix / (p.bpr * p.oh);
    let ow0 = bx * PB;
    let g_row = ((n * p.o + o) * p.oh + oh) * p.ow;
    var gv: array<f32, MAX_BLOCK>;
    for (var j = 0u; j < PB; j++) {
      gv[j] = select(0.0, gy[g_row + min(ow0 + j, p.ow - 1u)], ow0 + j < p.ow);
      acc_bias += gv[j];
    }
    let plane = (n * p.c + o / p.mult) * p.h * p.w;
    let iw0 = i32(ow0 * SW) - i32(p.pw);
    for (var ky = 0u; ky < KH; ky++) {
      let win = load_x_window(plane, i32(oh * p.sh + ky * p.dh) - i32(p.ph), iw0);
      for (var kx = 0u; kx < KW; kx++) {
        var s = acc[ky * KW + kx];
        for (var j = 0u; j < PB; j++) { s = fma(gv[j], win[j * SW + kx * DW], s); }
        acc[ky * KW + kx] = s;
      }
    }
  }
  // Each invocation writes its own partials row (no workgroup tree: barriers split the shader into coroutines on
  // SIMD-over-invocations drivers, which costs seconds of compile time and more than the loads at run time).
  let dst = ((p.chunk_base + chunk) * WG + lid) * p.n_outputs;
  for (var k = 0u; k < KH * KW; k++) { out[dst + o * KH * KW + k] = acc[k]; }
  if (p.has_bias == 1u) { out[dst + p.n_weight + o] = acc_bias; }
}

// partials[chunk, o] = sum of gy[n, o, :] over a segment of the plane (chunk = n * plane_chunks + segment), one
// output channel per lane (each lane streams its own plane: no shared-memory tree, few workgroups).
// (The bias gradient when no weight-gradient kernel runs alongside: the pointwise path, or weights frozen.)
// Grid: x over blocks of LANES output channels, z over chunks.
@compute @workgroup_size(LANES)
fn bias_grad_partials(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let o = wid.x * LANES + lid;
  if (o >= p.o) { return; }
  let chunk = wid.z;
  let n = chunk / p.plane_chunks;
  let first = (chunk % p.plane_chunks) * p.blocks_per_chunk;
  let end = min(first + p.blocks_per_chunk, p.plane);
  let base = (n * p.o + o) * p.plane;
  var s = 0.0;
  for (var e = first; e < end; e++) { s += gy[base + e]; }
  out[(p.chunk_base + chunk) * p.n_outputs + o] = s;
}

// ---- pass 2: partials -> gradients ----------------------------------------------------------------------------

// out[i] (weights, i < n_weight) or out_bias[i - n_weight] = sum over chunks, in chunk order, of partials[chunk, i].
@compute @workgroup_size(64)
fn reduce_partials(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= p.n_outputs) { return; }
  var s = 0.0;
  for (var k = 0u; k < p.n_chunks; k++) { s += partials[k * p.n_outputs + i]; }
  if (i < p.n_weight) { out[i] = s; } else { out_bias[i - p.n_weight] = s; }
}

// ---- depthwise forward, rows wider than the bands' registers ---------------------------------------------------

// out[n, o, oh, ow] = bias[o] + sum_{ky, kx} x[n, o / mult, oh*sh - ph + ky*dh, ow*SW - pw + kx*DW] * wt[o, 0, ky, kx]
// Grid: x (+z) over pixel blocks (n, oh, ow / PB), y over output channels.
@compute @workgroup_size(64)
fn depthwise_forward_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
  let pix = flat_group(wid, nwg) * WG + lid;
  if (pix >= p.n_blocks) { return; }
  let o = wid.y;
  let bx = pix % p.bpr;
  let oh = (pix / p.bpr) % p.oh;
  let n = pix / (p.bpr * p.oh);
  let ow0 = bx * PB;
  let b = select(0.0, bias[o], p.has_bias == 1u);
  var acc: array<f32, MAX_BLOCK>;
  for (var j = 0u; j < PB; j++) { acc[j] = b; }
  let plane = (n * p.c + o / p.mult) * p.h * p.w;
  let iw0 = i32(ow0 * SW) - i32(p.pw);
  for (var ky = 0u; ky < KH; ky++) {
    let win = load_x_window(plane, i32(oh * p.sh + ky * p.dh) - i32(p.ph), iw0);
    for (var kx = 0u; kx < KW; kx++) {
      let wv = wt[(o * KH + ky) * KW + kx];
      for (var j = 0u; j < PB; j++) { acc[j] = fma(wv, win[j * SW + kx * DW], acc[j]); }
    }
  }
  let base = ((n * p.o + o) * p.oh + oh) * p.ow;
  for (var j = 0u; j < PB; j++) {
    if (ow0 + j < p.ow) { out[base + ow0 + j] = acc[j]; }
  }
}


// ---- depthwise, sliding windows of whole rows -----------------------------------------------------------------

// For planes whose rows fit in registers (XW, YW <= MAX_ROW), each invocation slides down a band of rows of one
// (image, channel) plane, keeping a window of whole rows in registers: per step it loads only the rows entering
// the window (the forward and dW SH input rows per output row, dX one gy row per SH input rows), so each value is
// loaded once per band instead of once per kernel row, and the KH x KW weights once per band. With the plane
// geometry in override constants, which (input column, output column, tap) triples meet, and which taps fall on
// padding, is known at compile time, so a step's unrolled body is multiply-adds on registers. Loads per lane
// are what cost on SIMD-over-invocations drivers (lavapipe: a scalar load per lane whatever the address), and
// lavapipe's compile time grows with the square of the loads in a shader, so the body is one step and the loop
// over the band's rows stays a loop (its bound is a uniform, p.rows). Kernel rows are spelled out (calls with
// literal rows, the extra calls empty) so every register-array index is a constant without unrolling a loop
// over kernel rows (too large a body for Mesa's unroller, which would leave the arrays in memory).
// Geometry: output row oh reads input rows ih = oh*SH - PH + ky*DH, output column ow input columns
// iw = ow*SW - PW + kx*DW. A band is rows row0 .. row0 + p.rows - 1 of plane band / BANDS, row0 =
// (band % BANDS) * p.rows; each starts with warm-up steps that fill the window and store nothing.

const MAX_ROW: u32 = 32u;       // sliding kernels: columns of a row in registers (XW, YW)
const MAX_WIN_ROWS: u32 = 9u;   // sliding kernels: rows in the window (WIN; dX: GWIN)
const MAX_TAPS: u32 = 25u;      // sliding kernels: KH * KW weights, KH <= 5 (the spelled-out kernel rows)
const ROW_CHUNK: u32 = 8u;      // sliding kernels: columns per spelled-out chunk of a row (MAX_ROW / 4)

override XH: u32 = 1u;          // sliding kernels: input plane height and width
override XW: u32 = 1u;
override YH: u32 = 1u;          // sliding kernels: output plane height and width
override YW: u32 = 1u;
override BANDS: u32 = 1u;       // sliding kernels: bands per plane
override WIN: u32 = (KH - 1u) * DH + 1u;   // forward and dW: input rows in the window
override GLO: i32 = -1;         // dX: first gy row of the window, relative to the step (ih0 = step * SH)
override GWIN: u32 = 3u;        // dX: gy rows in the window
override X4_ROWS: bool = false; // sliding kernels: x rows are loaded as vec4s (XW a multiple of 4)
override GY4_ROWS: bool = false; // sliding kernels: gy rows are loaded as vec4s (YW a multiple of 4)

alias Row = array<f32, MAX_ROW>;
alias Window = array<Row, MAX_WIN_ROWS>;
alias Taps = array<f32, MAX_TAPS>;

// The KH x KW weights of channel o.
fn slide_weights(o: u32) -> Taps {
  var wv = Taps();
  for (var ky = 0u; ky < KH; ky++) {
    for (var kx = 0u; kx < KW; kx++) { wv[ky * KW + kx] = wt[(o * KH + ky) * KW + kx]; }
  }
  return wv;
}

// Row ih of the x plane at `plane` (zeros outside the image), through x4 when X4_ROWS.
fn slide_x_row(plane: u32, ih: i32) -> Row {
  var row = Row();
  if (ih >= 0 && ih < i32(XH)) {
    let start = plane + u32(ih) * XW;
    if (X4_ROWS) {
      for (var q = 0u; q < XW / 4u; q++) {
        let v = x4[start / 4u + q];
        for (var e = 0u; e < 4u; e++) { row[4u * q + e] = v[e]; }
      }
    } else {
      for (var iw = 0u; iw < XW; iw++) { row[iw] = x[start + iw]; }
    }
  }
  return row;
}

// Moves the x window to the next output row, whose first input row is ih0: rows move up SH places and the
// rows entering are loaded.
fn slide_x_window(win: ptr<function, Window>, plane: u32, ih0: i32) {
  for (var j = 0u; j + SH < WIN; j++) { (*win)[j] = (*win)[j + SH]; }
  for (var j = select(0u, WIN - SH, WIN > SH); j < WIN; j++) { (*win)[j] = slide_x_row(plane, ih0 + i32(j)); }
}

// Warm-up steps of a band: those that fill the window rows above its first row.
fn slide_warm_up() -> i32 {
  return i32((WIN + SH - 1u) / SH) - 1;
}

// Row oh of the gy plane at `plane` (zeros outside the plane), through gy4 when GY4_ROWS.
fn slide_gy_row(plane: u32, oh: i32) -> Row {
  var row = Row();
  if (oh >= 0 && oh < i32(YH)) {
    let start = plane + u32(oh) * YW;
    if (GY4_ROWS) {
      for (var q = 0u; q < YW / 4u; q++) {
        let v = gy4[start / 4u + q];
        for (var e = 0u; e < 4u; e++) { row[4u * q + e] = v[e]; }
      }
    } else {
      for (var ow = 0u; ow < YW; ow++) { row[ow] = gy[start + ow]; }
    }
  }
  return row;
}

// ---- forward

// acc[ow] += sum over kx of wv[ky, kx] * win[ky * DH][ow*SW - PW + kx*DW] for output columns ow of chunk c.
fn slide_forward_taps(ky: u32, c: u32, win: ptr<function, Window>, wv: ptr<function, Taps>, acc: ptr<function, Row>) {
  if (ky >= KH || c * ROW_CHUNK >= YW) { return; }
  for (var j = 0u; j < ROW_CHUNK; j++) {
    let ow = c * ROW_CHUNK + j;
    for (var kx = 0u; kx < KW; kx++) {
      let iw = i32(ow * SW + kx * DW) - i32(PW);
      if (ow < YW && iw >= 0 && iw < i32(XW)) { (*acc)[ow] = fma((*wv)[ky * KW + kx], (*win)[ky * DH][iw], (*acc)[ow]); }
    }
  }
}

// Kernel row ky of an output row, by chunks of columns (bodies small enough for Mesa's unroller).
fn slide_forward_row(ky: u32, win: ptr<function, Window>, wv: ptr<function, Taps>, acc: ptr<function, Row>) {
  slide_forward_taps(ky, 0u, win, wv, acc);
  slide_forward_taps(ky, 1u, win, wv, acc);
  slide_forward_taps(ky, 2u, win, wv, acc);
  slide_forward_taps(ky, 3u, win, wv, acc);
}

// A band of one plane: image, first row, end of its rows (past the plane clamped).
struct SlideBand {
  n: u32,
  row0: i32,
  row_end: i32,
}

fn slide_band(band: u32, plane_rows: u32) -> SlideBand {
  let row0 = i32((band % BANDS) * p.rows);
  return SlideBand(band / BANDS, row0, min(row0 + i32(p.rows), i32(plane_rows)));
}

// One step of the forward: the window moved to output row oh, and the row's sums (without the bias).
fn slide_forward_step(oh: i32, plane: u32, win: ptr<function, Window>, wv: ptr<function, Taps>) -> Row {
  slide_x_window(win, plane, oh * i32(SH) - i32(PH));
  var acc = Row();   // explicit: a declaration without initializer is not zeroed again on each call in a loop
  slide_forward_row(0u, win, wv, &acc);
  slide_forward_row(1u, win, wv, &acc);
  slide_forward_row(2u, win, wv, &acc);
  slide_forward_row(3u, win, wv, &acc);
  slide_forward_row(4u, win, wv, &acc);
  return acc;
}

// out[n, o, oh, ow] = bias[o] + sum_{ky, kx} x[n, o / mult, ih, iw] * wt[o, 0, ky, kx], sliding down bands of
// output rows. Two entry points, as a written binding has one type: depthwise_forward4 stores vec4s (YW a
// multiple of 4), depthwise_forward floats. Grid: x (+z) over bands (n, band), y over output channels.
@compute @workgroup_size(64)
fn depthwise_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
  let band = flat_group(wid, nwg) * WG + lid;
  if (band >= p.n_blocks) { return; }
  let o = wid.y;
  let b = slide_band(band, YH);
  var wv = slide_weights(o);
  let bv = select(0.0, bias[o], p.has_bias == 1u);
  let plane = (b.n * p.c + o / p.mult) * XH * XW;
  let out_plane = (b.n * p.o + o) * YH * YW;
  var win = Window();
  for (var oh = b.row0 - slide_warm_up(); oh < b.row_end; oh++) {
    let acc = slide_forward_step(oh, plane, &win, &wv);
    if (oh >= b.row0) {
      let start = out_plane + u32(oh) * YW;
      for (var ow = 0u; ow < YW; ow++) { out[start + ow] = acc[ow] + bv; }
    }
  }
}

@compute @workgroup_size(64)
fn depthwise_forward4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
  let band = flat_group(wid, nwg) * WG + lid;
  if (band >= p.n_blocks) { return; }
  let o = wid.y;
  let b = slide_band(band, YH);
  var wv = slide_weights(o);
  let bv = select(0.0, bias[o], p.has_bias == 1u);
  let plane = (b.n * p.c + o / p.mult) * XH * XW;
  let out_plane = (b.n * p.o + o) * YH * YW;
  var win = Window();
  for (var oh = b.row0 - slide_warm_up(); oh < b.row_end; oh++) {
    let acc = slide_forward_step(oh, plane, &win, &wv);
    if (oh >= b.row0) {
      let start = (out_plane + u32(oh) * YW) / 4u;
      for (var q = 0u; q < YW / 4u; q++) {
        out4[start + q] = vec4<f32>(acc[4u * q], acc[4u * q + 1u], acc[4u * q + 2u], acc[4u * q + 3u]) + bv;
      }
    }
  }
}

// ---- input gradient (channel multiplier 1, SH <= 2)

alias InputRows = array<f32, 2 * MAX_ROW>;   // the SH input rows of a step

// Moves the gy window to step `step` (input rows step*SH ..): rows move up one place and the row entering,
// oh = step + GLO + GWIN - 1, is loaded.
fn slide_gy_window(win: ptr<function, Window>, plane: u32, step: i32) {
  for (var j = 0u; j + 1u < GWIN; j++) { (*win)[j] = (*win)[j + 1u]; }
  (*win)[GWIN - 1u] = slide_gy_row(plane, step + GLO + i32(GWIN) - 1);
}

// acc[q * XW + iw] += sum over kx of wv[ky, kx] * gy[oh][ow] for input row q of the step, input columns iw of
// chunk c, kernel row ky: ih + PH - ky*DH = oh*SH and iw + PW - kx*DW = ow*SW (the pairs that meet).
fn slide_input_taps(q: u32, ky: u32, c: u32, win: ptr<function, Window>, wv: ptr<function, Taps>, acc: ptr<function, InputRows>) {
  let t = i32(q + PH) - i32(ky * DH);
  if (q >= SH || ky >= KH || t % i32(SH) != 0 || c * ROW_CHUNK >= XW) { return; }
  let j = t / i32(SH) - GLO;   // the window row of oh
  for (var e = 0u; e < ROW_CHUNK; e++) {
    let iw = c * ROW_CHUNK + e;
    for (var kx = 0u; kx < KW; kx++) {
      let u = i32(iw + PW) - i32(kx * DW);
      if (iw < XW && u >= 0 && u % i32(SW) == 0 && u / i32(SW) < i32(YW)) {
        (*acc)[q * XW + iw] = fma((*wv)[ky * KW + kx], (*win)[j][u / i32(SW)], (*acc)[q * XW + iw]);
      }
    }
  }
}

fn slide_input_row(q: u32, ky: u32, win: ptr<function, Window>, wv: ptr<function, Taps>, acc: ptr<function, InputRows>) {
  slide_input_taps(q, ky, 0u, win, wv, acc);
  slide_input_taps(q, ky, 1u, win, wv, acc);
  slide_input_taps(q, ky, 2u, win, wv, acc);
  slide_input_taps(q, ky, 3u, win, wv, acc);
}

// One step of dX: the window moved to step `step`, and the sums of its SH input rows.
fn slide_input_step(step: i32, plane: u32, win: ptr<function, Window>, wv: ptr<function, Taps>) -> InputRows {
  slide_gy_window(win, plane, step);
  var acc = InputRows();   // explicit: see slide_forward_step
  slide_input_row(0u, 0u, win, wv, &acc);
  slide_input_row(0u, 1u, win, wv, &acc);
  slide_input_row(0u, 2u, win, wv, &acc);
  slide_input_row(0u, 3u, win, wv, &acc);
  slide_input_row(0u, 4u, win, wv, &acc);
  slide_input_row(1u, 0u, win, wv, &acc);
  slide_input_row(1u, 1u, win, wv, &acc);
  slide_input_row(1u, 2u, win, wv, &acc);
  slide_input_row(1u, 3u, win, wv, &acc);
  slide_input_row(1u, 4u, win, wv, &acc);
  return acc;
}

// dx[n, c, ih, iw] = sum_{ky, kx} gy[n, c, oh, ow] * wt[c, 0, ky, kx] over the (oh, ow) that read (ih, iw),
// sliding down bands of input rows (p.rows, a multiple of SH), SH rows per step. Two entry points, as the
// forward's: depthwise_backward_input4 stores vec4s (XW a multiple of 4).
// Grid: x (+z) over bands (n, band), y over channels.
@compute @workgroup_size(64)
fn depthwise_backward_input(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                            @builtin(local_invocation_index) lid: u32) {
  let band = flat_group(wid, nwg) * WG + lid;
  if (band >= p.n_blocks) { return; }
  let c = wid.y;
  let b = slide_band(band, XH);
  var wv = slide_weights(c);
  let plane = (b.n * p.o + c) * YH * YW;
  let out_plane = (b.n * p.c + c) * XH * XW;
  var win = Window();
  let first = b.row0 / i32(SH);
  for (var step = first + 1 - i32(GWIN); step * i32(SH) < b.row_end; step++) {
    let acc = slide_input_step(step, plane, &win, &wv);
    if (step >= first) {
      for (var q = 0u; q < SH; q++) {
        let ih = step * i32(SH) + i32(q);
        if (ih < b.row_end) {
          let start = out_plane + u32(ih) * XW;
          for (var iw = 0u; iw < XW; iw++) { out[start + iw] = acc[q * XW + iw]; }
        }
      }
    }
  }
}

@compute @workgroup_size(64)
fn depthwise_backward_input4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                             @builtin(local_invocation_index) lid: u32) {
  let band = flat_group(wid, nwg) * WG + lid;
  if (band >= p.n_blocks) { return; }
  let c = wid.y;
  let b = slide_band(band, XH);
  var wv = slide_weights(c);
  let plane = (b.n * p.o + c) * YH * YW;
  let out_plane = (b.n * p.c + c) * XH * XW;
  var win = Window();
  let first = b.row0 / i32(SH);
  for (var step = first + 1 - i32(GWIN); step * i32(SH) < b.row_end; step++) {
    let acc = slide_input_step(step, plane, &win, &wv);
    if (step >= first) {
      for (var q = 0u; q < SH; q++) {
        let ih = step * i32(SH) + i32(q);
        if (ih < b.row_end) {
          let start = (out_plane + u32(ih) * XW) / 4u;
          for (var k = 0u; k < XW / 4u; k++) {
            let a = q * XW + 4u * k;
            out4[start + k] = vec4<f32>(acc[a], acc[a + 1u], acc[a + 2u], acc[a + 3u]);
          }
        }
      }
    }
  }
}

// ---- weight gradient

// acc[ky * KW + kx] += sum over output columns ow of chunk c of gv[ow] * win[ky * DH][ow*SW - PW + kx*DW].
fn slide_weight_taps(ky: u32, c: u32, win: ptr<function, Window>, gv: ptr<function, Row>, acc: ptr<function, Taps>) {
  if (ky >= KH || c * ROW_CHUNK >= YW) { return; }
  for (var kx = 0u; kx < KW; kx++) {
    var s = (*acc)[ky * KW + kx];
    for (var e = 0u; e < ROW_CHUNK; e++) {
      let ow = c * ROW_CHUNK + e;
      let iw = i32(ow * SW + kx * DW) - i32(PW);
      if (ow < YW && iw >= 0 && iw < i32(XW)) { s = fma((*gv)[ow], (*win)[ky * DH][iw], s); }
    }
    (*acc)[ky * KW + kx] = s;
  }
}

fn slide_weight_row(ky: u32, win: ptr<function, Window>, gv: ptr<function, Row>, acc: ptr<function, Taps>) {
  slide_weight_taps(ky, 0u, win, gv, acc);
  slide_weight_taps(ky, 1u, win, gv, acc);
  slide_weight_taps(ky, 2u, win, gv, acc);
  slide_weight_taps(ky, 3u, win, gv, acc);
}

// partials[chunk * WG + lane, o*KH*KW + tap] and partials[chunk * WG + lane, n_weight + o] (a row per
// invocation, as depthwise_backward_weight_rows), sliding down bands of output rows: per step one gy row and the
// SH x rows entering the window. One output channel per workgroup; lanes stride over the chunk's bands.
// Grid: x over output channels, z over chunks.
@compute @workgroup_size(64)
fn depthwise_backward_weight(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let o = wid.x;
  let chunk = wid.z;
  var acc = Taps();
  var acc_bias = 0.0;
  let first = chunk * p.blocks_per_chunk;
  let end = min(first + p.blocks_per_chunk, p.n_blocks);
  for (var band = first + lid; band < end; band += WG) {
    let b = slide_band(band, YH);
    let plane = (b.n * p.c + o / p.mult) * XH * XW;
    let g_plane = (b.n * p.o + o) * YH * YW;
    var win = Window();   // explicit: see slide_forward_step (warm-up steps multiply it by zeros)
    for (var oh = b.row0 - slide_warm_up(); oh < b.row_end; oh++) {
      slide_x_window(&win, plane, oh * i32(SH) - i32(PH));
      var gv = Row();
      if (oh >= b.row0) {
        gv = slide_gy_row(g_plane, oh);
        for (var ow = 0u; ow < YW; ow++) { acc_bias += gv[ow]; }
      }
      slide_weight_row(0u, &win, &gv, &acc);
      slide_weight_row(1u, &win, &gv, &acc);
      slide_weight_row(2u, &win, &gv, &acc);
      slide_weight_row(3u, &win, &gv, &acc);
      slide_weight_row(4u, &win, &gv, &acc);
    }
  }
  let dst = ((p.chunk_base + chunk) * WG + lid) * p.n_outputs;
  for (var ky = 0u; ky < KH; ky++) {
    for (var kx = 0u; kx < KW; kx++) { out[dst + (o * KH + ky) * KW + kx] = acc[ky * KW + kx]; }
  }
  if (p.has_bias == 1u) { out[dst + p.n_weight + o] = acc_bias; }
}
