// 2-D convolution (NCHW, PyTorch's conv2d semantics) with three paths, forward and backward side by side:
// - pointwise (1x1, stride 1, no padding, no dilation, groups 1): GEMMs through gemm() from matmul.ts;
// - depthwise (groups == C, more than one channel): direct kernels sliding windows of whole rows down the planes
//   (rows of at most 32 columns), or with register windows over row blocks (shaders/conv.wgsl);
// - general (anything else): implicit GEMM with register blocking, no im2col buffer; the input gradient of
//   convolutions with few input channels per group (stems) goes by 2-D tiles of input pixels instead, and the
//   forward and weight gradient of groups-1 convolutions with few weights (stems) by stem kernels with large
//   register tiles (all output channels per invocation; output channels x all taps).
// Weight and bias gradients are chunked parallel reductions with a fixed-order second pass: deterministic.
// convTranspose2d (torch's conv_transpose2d) runs on the same kernels: its forward is conv2d's input gradient.
import type { BufferLike, Device } from '../gpu/device.js';
import { record } from '../autograd/tape.js';
import { Tensor, shapeStr } from '../tensor.js';
import { gemm } from './matmul.js';
import { add } from './elementwise.js';

export interface Conv2dOptions {
  stride?: number | [number, number];
  padding?: number | [number, number];
  dilation?: number | [number, number];
  groups?: number;
  /** Testing/benchmarking only: force a path. Default 'auto'. */
  impl?: 'auto' | 'general' | 'stem' | 'depthwise' | 'pointwise';
}

// 'stem' is the general path with the stem kernels for the forward and the weight gradient (see isStem).
type Path = 'general' | 'stem' | 'depthwise' | 'pointwise';

/** Everything the kernels need to know about one convolution. */
interface Geometry {
  n: number;
  c: number;
  h: number;
  w: number;
  o: number;
  oh: number;
  ow: number;
  kh: number;
  kw: number;
  sh: number;
  sw: number;
  ph: number;
  pw: number;
  dh: number;
  dw: number;
  groups: number;
  cg: number; // input channels per group
  og: number; // output channels per group
  mult: number; // depthwise channel multiplier
}

const WG = 64; // workgroup size of every conv kernel
const MAX_GRID = 65_535;
// Capacities of the shader's register arrays (shaders/conv.wgsl: MAX_BLOCK, MAX_WIN, MAX_ACC).
const MAX_BLOCK = 32;
const MAX_WINDOW = 32;
const MAX_ACC = 36;
// Few input channels per group (stems: 1 or 3): dX through the tile kernel, dW with wider register blocks.
const MAX_TILE_CHANNELS = 4;
// Tile input-gradient kernel (shaders/conv.wgsl: MAX_TILE, MAX_TILE_WIN): accumulators and gy window values,
// and the unrolled body's size limits (see tilePlan).
const MAX_TILE = 128;
const MAX_TILE_WINDOW = 64;
const UNROLL_PAIRS_PER_LEVEL = 192;
const UNROLL_PAIRS = 256;
// General weight gradient (shaders/conv.wgsl: MAX_WACC): accumulators per invocation.
const MAX_WEIGHT_ACC = 72;
// Weight-gradient reductions split the output pixels into chunks: enough workgroups in total to fill a GPU, but
// at least MIN_CHUNK_PIXELS per chunk, since each workgroup ends in a shared-memory tree (on lavapipe, batch 64,
// depthwise 32ch at 32x32: 1,024 pixels per chunk 62 ms, 4,096: 47 ms, 16,384: 34 ms; stem 3->32 s2 at 64x64,
// batch 16: 4,096 pixels 160 M instructions, 16,384: 99 M).
const TARGET_WORKGROUPS = 512;
const MIN_CHUNK_PIXELS = 16384;
// The bias-only reduction has no tree: plane segments of this many pixels keep its workgroups many.
const BIAS_SEGMENT_PIXELS = 4096;
const MAX_CHUNKS = 256;
// Stem forward (shaders/conv.wgsl): accumulators per invocation (O x PB, 4 x MAX_STEM_FACC4); its unrolled body
// is O x cg x kH x kW x PB/4 vec4 multiply-adds, at most MAX_STEM_WEIGHTS (a cold lavapipe compile of the 3->16 3x3
// stem: 3.5 s at 432, 26 s at 864), and O x kW per input row at most MAX_STEM_ROW_WEIGHTS.
const MAX_STEM_ACC = 128;
const MAX_STEM_WEIGHTS = 432;
const MAX_STEM_ROW_WEIGHTS = 96;
// Stem weight gradient (conv.wgsl): output channels per job, vec4 accumulators, input rows spelled out. Its
// unrolled body, OC x cg x kH x kW x PB/4 vec4 multiply-adds with as many accumulators x PB/4, stays within
// MAX_STEM_WEIGHT_UNROLL (3->16 3x3 on lavapipe, cold compile and callgrind instructions at batch 8, 64x64:
// general kernel 57.5 M; OC 4, PB 8 (216): 4.4 s, 44.1 M; OC 8, PB 4 (216): 7.1 s, 39.5 M; OC 16, PB 8 (864):
// 89 s, 28.8 M).
const MAX_STEM_OC = 16;
const MAX_STEM_ROWS = 12;
const MAX_STEM_WEIGHT_UNROLL = 216;

// Depthwise sliding kernels (shaders/conv.wgsl: MAX_ROW, MAX_WIN_ROWS, MAX_TAPS and the spelled-out kernel rows):
// rows of at most MAX_SLIDE_ROW columns in registers, windows of at most MAX_SLIDE_WINDOW rows, kernels of at most
// MAX_SLIDE_KH rows. A kernel row's unrolled body is KW x row-width multiply-adds, at most MAX_SLIDE_PAIRS (within
// Mesa's unroller, see tilePlan); wider rows take the row-block kernels. Planes split into bands of rows until
// there are MIN_SLIDE_LANES bands (each starts with warm-up steps that reload the rows above it).
const MAX_SLIDE_ROW = 32;
const MAX_SLIDE_WINDOW = 9;
const MAX_SLIDE_KH = 5;
const MAX_SLIDE_TAPS = 25;
const MAX_SLIDE_PAIRS = 100;
const MIN_SLIDE_LANES = 512;

function pair(v: number | [number, number] | undefined, fallback: number, what: string): [number, number] {
  const p: [number, number] = v === undefined ? [fallback, fallback] : typeof v === 'number' ? [v, v] : [v[0], v[1]];
  if (!p.every((d) => Number.isInteger(d))) throw new Error(`conv2d: ${what} must be integers, got ${JSON.stringify(v)}`);
  return p;
}

function geometryOf(x: Tensor, weight: Tensor, bias: Tensor | null, options: Conv2dOptions): Geometry {
  if (x.ndim !== 4) throw new Error(`conv2d: input must be [N, C, H, W], got ${shapeStr(x.shape)}`);
  if (weight.ndim !== 4) throw new Error(`conv2d: weight must be [O, C/groups, kH, kW], got ${shapeStr(weight.shape)}`);
  if (x.dtype !== 'f32' || weight.dtype !== 'f32') throw new Error('conv2d: input and weight must be f32');
  const [n, c, h, w] = x.shape;
  const [o, cg, kh, kw] = weight.shape;
  const groups = options.groups ?? 1;
  const [sh, sw] = pair(options.stride, 1, 'stride');
  const [ph, pw] = pair(options.padding, 0, 'padding');
  const [dh, dw] = pair(options.dilation, 1, 'dilation');
  if (!Number.isInteger(groups) || groups < 1) throw new Error(`conv2d: groups must be a positive integer, got ${groups}`);
  if (sh < 1 || sw < 1) throw new Error(`conv2d: stride must be >= 1, got [${sh}, ${sw}]`);
  if (dh < 1 || dw < 1) throw new Error(`conv2d: dilation must be >= 1, got [${dh}, ${dw}]`);
  if (ph < 0 || pw < 0) throw new Error(`conv2d: padding must be >= 0, got [${ph}, ${pw}]`);
  if (c % groups !== 0) throw new Error(`conv2d: input channels C=${c} are not divisible by groups=${groups}`);
  if (cg * groups !== c) {
    throw new Error(
      `conv2d: weight ${shapeStr(weight.shape)} has ${cg} input channels per group; ` +
        `expected C/groups = ${c}/${groups} = ${c / groups} (weight in-channels * groups must equal C)`,
    );
  }
  if (o % groups !== 0) throw new Error(`conv2d: weight out-channels O=${o} are not divisible by groups=${groups}`);
  if (bias && (bias.ndim !== 1 || bias.shape[0] !== o)) {
    throw new Error(`conv2d: bias must be [${o}] (one value per output channel), got ${shapeStr(bias.shape)}`);
  }
  if (bias && bias.dtype !== 'f32') throw new Error('conv2d: bias must be f32');
  if (x.device !== weight.device || (bias && bias.device !== x.device)) throw new Error('conv2d: tensors are on different devices');
  const oh = Math.floor((h + 2 * ph - dh * (kh - 1) - 1) / sh) + 1;
  const ow = Math.floor((w + 2 * pw - dw * (kw - 1) - 1) / sw) + 1;
  if (oh < 1 || ow < 1 || kh < 1 || kw < 1) {
    throw new Error(
      `conv2d: input ${shapeStr(x.shape)} padded by [${ph}, ${pw}] is smaller than the dilated kernel ` +
        `[${dh * (kh - 1) + 1}, ${dw * (kw - 1) + 1}] (output would be ${oh}x${ow})`,
    );
  }
  if ((kw - 1) * dw + 1 > MAX_WINDOW || kw > MAX_ACC) {
    throw new Error(`conv2d: kernel width ${kw} with dilation ${dw} spans ${(kw - 1) * dw + 1} columns; at most ${MAX_WINDOW} are supported`);
  }
  return { n, c, h, w, o, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw, groups, cg, og: o / groups, mult: groups === c ? o / c : 1 };
}

function isPointwise(g: Geometry): boolean {
  return g.kh === 1 && g.kw === 1 && g.sh === 1 && g.sw === 1 && g.ph === 0 && g.pw === 0 && g.dh === 1 && g.dw === 1 && g.groups === 1;
}

/** Input columns under `pixels` consecutive outputs of a row. */
function span(g: Geometry, pixels: number): number {
  return (pixels - 1) * g.sw + (g.kw - 1) * g.dw + 1;
}

/** The widest pixel block (up to `want`) whose row window fits the register window. */
function pixelBlock(g: Geometry, want: number): number {
  let pb = want;
  while (pb > 1 && span(g, pb) > MAX_WINDOW) pb >>= 1;
  return pb;
}

function isDepthwise(g: Geometry): boolean {
  return g.groups === g.c && g.cg === 1 && g.kh * g.kw <= MAX_ACC;
}

function choosePath(g: Geometry, impl: Conv2dOptions['impl'] = 'auto'): Path {
  if (impl === 'general') return 'general';
  if (impl === 'stem') {
    if (!isStem(g)) throw new Error(`conv2d: impl "stem" needs groups 1 and at most ${MAX_STEM_WEIGHTS} weights`);
    return 'stem';
  }
  if (impl === 'pointwise') {
    if (!isPointwise(g)) throw new Error('conv2d: impl "pointwise" needs a 1x1 kernel, stride 1, padding 0, dilation 1, groups 1');
    return 'pointwise';
  }
  if (impl === 'depthwise') {
    if (!isDepthwise(g)) {
      throw new Error(`conv2d: impl "depthwise" needs groups == C (weight [C*mult, 1, kH, kW]) and kH*kW <= ${MAX_ACC}`);
    }
    return 'depthwise';
  }
  if (impl !== 'auto') throw new Error(`conv2d: unknown impl '${impl}'`);
  if (isPointwise(g)) return 'pointwise';
  // One channel (groups == C == 1) is better served by the general kernel, which reuses each input over 4 outputs.
  if (g.c > 1 && isDepthwise(g)) return 'depthwise';
  return isStem(g) ? 'stem' : 'general';
}

/**
 * Stems: groups 1 and few weights (O x cg x kH x kW <= MAX_STEM_WEIGHTS, e.g. 3->16 or 1->32 3x3, O <= 32, at
 * most MAX_STEM_ROWS input rows cg x kH). The forward holds every output channel in one invocation, so each input
 * window loaded serves all O channels, with the weights at constant addresses (the same for every invocation);
 * the weight gradient holds up to 16 output channels x every tap, so each gy value loaded serves all taps. Fewer
 * loads per multiply-add on any device, at a register cost that these bounds keep moderate. (x and y must hold a
 * vec4 per image: the kernels bind their vec4 views.)
 */
function isStem(g: Geometry): boolean {
  return g.groups === 1 && g.o * g.cg * g.kh * g.kw <= MAX_STEM_WEIGHTS &&
    g.o * 4 <= MAX_STEM_ACC && g.o * g.kw <= MAX_STEM_ROW_WEIGHTS && span(g, 4) <= MAX_WINDOW &&
    g.cg * g.kh <= MAX_STEM_ROWS && g.cg * g.kh * g.kw <= MAX_STEM_WEIGHT_UNROLL && g.c * g.h * g.w >= 4 && g.o * g.oh * g.ow >= 4;
}

/** Whether rows of x and y are whole aligned vec4s for pixel blocks of PB (shaders/conv.wgsl: load_x_row). */
function vecRows(g: Geometry, pb: number, x: BufferLike, y: BufferLike): boolean {
  return pb % 4 === 0 && g.w % 4 === 0 && g.ow % 4 === 0 && x.byteOffset % 16 === 0 && y.byteOffset % 16 === 0;
}

/** Override constants of the vec4 row windows: VEC, and XOFF = (-pw) mod 4. */
function vecConstants(vec: boolean, g: Geometry): Record<string, number> {
  return { VEC: vec ? 1 : 0, XOFF: (4 - (g.pw % 4)) % 4 };
}

/** Pixels per invocation of the stem forward: 8 or 4 (its vec4 accumulators), within the accumulator and unroll bounds. */
function stemForwardBlock(g: Geometry): number {
  const eight = g.o * 8 <= MAX_STEM_ACC && 2 * g.o * g.cg * g.kh * g.kw <= MAX_STEM_WEIGHTS && span(g, 8) <= MAX_WINDOW;
  return eight && g.ow > 4 ? 8 : 4;
}

/**
 * Output channels and pixels per job of the stem weight gradient: PB = 8 pixels (4 when 8 do not fit), and as
 * many output channels (at most MAX_STEM_OC) as keep the unrolled body within MAX_STEM_WEIGHT_UNROLL: the largest
 * divisor of O that fits, unless it is under half of what fits (then even blocks). The cold compile grows with the
 * body while the instructions per step barely move (1->32 3x3 at 28x28, batch 64: OC 11 (body 198) 3.8 s, 46.7 M;
 * OC 8 (144) 2.3 s, 48.7 M).
 */
function stemWeightBlocks(g: Geometry): { OC: number; PB: number } {
  const taps = g.cg * g.kh * g.kw;
  const PB = span(g, 8) <= MAX_WINDOW && g.ow > 4 && 2 * taps <= MAX_STEM_WEIGHT_UNROLL ? 8 : 4;
  const most = Math.max(1, Math.min(g.o, MAX_STEM_OC, Math.floor(MAX_STEM_WEIGHT_UNROLL / (taps * (PB / 4)))));
  let divisor = most;
  while (g.o % divisor !== 0) divisor--;
  const OC = 2 * divisor >= most ? divisor : Math.ceil(g.o / Math.ceil(g.o / most));
  return { OC, PB };
}

/** Whether a depthwise convolution's planes fit the sliding kernels' registers (dX: `input`, which also needs mult 1). */
function slides(g: Geometry, input: boolean): boolean {
  const width = input ? g.w : g.ow;
  const window = input ? gyWindow(g)[1] : (g.kh - 1) * g.dh + 1;
  return g.w <= MAX_SLIDE_ROW && g.ow <= MAX_SLIDE_ROW && g.kh <= MAX_SLIDE_KH && g.kh * g.kw <= MAX_SLIDE_TAPS && g.kw * width <= MAX_SLIDE_PAIRS &&
    window <= MAX_SLIDE_WINDOW && (!input || (g.mult === 1 && g.sh <= 2));
}

/** dX sliding kernel: the gy rows under the sh input rows of a step ih0 = step*sh: from step + first, count. */
function gyWindow(g: Geometry): [number, number] {
  const first = Math.ceil((g.ph - (g.kh - 1) * g.dh) / g.sh);
  return [first, Math.floor((g.sh - 1 + g.ph) / g.sh) - first + 1];
}

/** Bands of a sliding kernel over `planes` planes of `rows` rows: rows per band (a multiple of `multiple`) and bands per plane. */
function slideBands(planes: number, rows: number, multiple: number): { rows: number; bands: number } {
  const wanted = Math.min(Math.ceil(MIN_SLIDE_LANES / planes), Math.ceil(rows / multiple));
  const per = Math.ceil(Math.ceil(rows / wanted) / multiple) * multiple;
  return { rows: per, bands: Math.ceil(rows / per) };
}

/** Whether planes of rows `width` wide in binding b are whole aligned vec4 rows (the sliding kernels' vec4 loads and stores). */
function vecPlanes(width: number, b: BufferLike): boolean {
  return width % 4 === 0 && b.byteOffset % 16 === 0;
}

/** Override constants of a depthwise sliding kernel (dX: `input`, with its gy window). */
function slideConstants(g: Geometry, bands: number, input: boolean): Record<string, number> {
  const shared = { ...widthConstants(g), KH: g.kh, SH: g.sh, PH: g.ph, PW: g.pw, DH: g.dh, XH: g.h, XW: g.w, YH: g.oh, YW: g.ow, BANDS: bands };
  if (!input) return shared;
  const [GLO, GWIN] = gyWindow(g);
  return { ...shared, GLO, GWIN };
}

/** Uniform parameters: the geometry plus the per-dispatch fields, all given (the uniform packer wants every field). */
function params(g: Geometry, extra: Partial<Record<string, number>>): Record<string, number> {
  return {
    n: g.n, c: g.c, h: g.h, w: g.w, o: g.o, oh: g.oh, ow: g.ow, kh: g.kh,
    sh: g.sh, ph: g.ph, pw: g.pw, dh: g.dh,
    groups: g.groups, cg: g.cg, og: g.og, mult: g.mult,
    has_bias: 0, bpr: 0, rows: 0, n_blocks: 0, blocks_per_chunk: 0, chunk_base: 0, n_chunks: 0, n_outputs: 0, n_weight: 0,
    plane: 0, plane_chunks: 0,
    ...extra,
  } as Record<string, number>;
}

/** Override constants shared by every kernel: the kernel width, stride and dilation along W. */
function widthConstants(g: Geometry): Record<string, number> {
  return { KW: g.kw, SW: g.sw, DW: g.dw };
}

/** A grid of `blocks` pixel-block lanes (x, folded into z past 65,535 workgroups) by `y` channel workgroups. */
function pixelGrid(blocks: number, y: number): [number, number, number] {
  const groups = Math.ceil(blocks / WG);
  return [Math.min(groups, MAX_GRID), y, Math.ceil(groups / MAX_GRID)];
}

/** A grid of `jobs` workgroups (x, folded into y past 65,535) by `chunks` along z. */
function jobGrid(jobs: number, chunks: number): [number, number, number] {
  if (chunks > MAX_GRID) throw new Error(`conv2d: ${chunks} reduction chunks exceed ${MAX_GRID}`);
  return [Math.min(jobs, MAX_GRID), Math.ceil(jobs / MAX_GRID), chunks];
}

/**
 * Splits `units` pixel blocks of `unitPixels` output pixels each into chunks of at least MIN_CHUNK_PIXELS pixels
 * for `jobs` workgroups per chunk; chunk sizes are multiples of WG blocks (whole lane strides).
 */
function chunking(units: number, unitPixels: number, jobs: number, maxChunks: number): { blocksPerChunk: number; chunks: number } {
  const wanted = Math.min(maxChunks, Math.ceil(TARGET_WORKGROUPS / jobs));
  let perChunk = Math.max(Math.ceil(MIN_CHUNK_PIXELS / unitPixels), Math.ceil(units / wanted));
  perChunk = Math.ceil(perChunk / WG) * WG;
  return { blocksPerChunk: perChunk, chunks: Math.ceil(units / perChunk) };
}

// ---- batch slices: one binding may not exceed maxStorageBufferBindingSize -------------------------------------

interface Slice {
  first: number; // first image
  count: number; // images
}

/** Image ranges whose per-image tensors (`imageElems` floats each) fit one binding, at aligned offsets. */
function batchSlices(dev: Device, n: number, imageElems: number[]): Slice[] {
  const limits = dev.device.limits;
  const largest = Math.max(...imageElems) * 4;
  let perSlice = Math.floor(limits.maxStorageBufferBindingSize / largest);
  if (perSlice >= n) return [{ first: 0, count: n }];
  // Every slice must start at an offset the device accepts for a binding: a multiple of `step` images.
  const align = limits.minStorageBufferOffsetAlignment;
  let step = 1;
  while (!imageElems.every((e) => (step * e * 4) % align === 0)) step++;
  perSlice = Math.floor(perSlice / step) * step;
  if (perSlice === 0) {
    throw new Error(`conv2d: ${step} image(s) of ${largest} bytes exceed the device's storage binding limit (${limits.maxStorageBufferBindingSize} bytes)`);
  }
  const slices: Slice[] = [];
  for (let first = 0; first < n; first += perSlice) slices.push({ first, count: Math.min(perSlice, n - first) });
  return slices;
}

/** The images of a slice of an [N, ...] tensor, as a binding. */
function sliceOf(t: Tensor, s: Slice, imageElems: number): BufferLike {
  return { buffer: t.buffer, byteOffset: t.byteOffset + s.first * imageElems * 4, byteLength: s.count * imageElems * 4, dtype: 'f32' };
}

function imageSizes(g: Geometry): { xImage: number; yImage: number } {
  return { xImage: g.c * g.h * g.w, yImage: g.o * g.oh * g.ow };
}

/** FLOPs of a convolution over `images` images (one multiply-add per kernel tap and output value): the forward,
 * the input gradient and the weight gradient each do this many. */
export function convFlops(g: Geometry, images = g.n): number {
  return 2 * images * g.o * g.oh * g.ow * g.cg * g.kh * g.kw;
}

// ---- forward ---------------------------------------------------------------------------------------------------

function forward(dev: Device, path: Path, g: Geometry, x: Tensor, weight: Tensor, bias: Tensor | null, out: Tensor): void {
  const { xImage, yImage } = imageSizes(g);
  for (const s of batchSlices(dev, g.n, [xImage, yImage])) {
    const gs = { ...g, n: s.count };
    const xs = sliceOf(x, s, xImage);
    const ys = sliceOf(out, s, yImage);
    if (path === 'pointwise') {
      // out[n] (O x HW) = W (O x C) @ x[n] (C x HW), the weight broadcast over the batch.
      const hw = g.h * g.w;
      gemm(dev, {
        a: weight, b: xs, out: ys, batch: s.count, m: g.o, n: hw, k: g.c,
        aStrides: [0, g.c, 1],
        bStrides: [g.c * hw, hw, 1],
        bias: bias ? { values: bias, along: 'm' } : undefined,
      });
      continue;
    }
    if (path === 'stem') {
      const PB = stemForwardBlock(g);
      const bpr = Math.ceil(g.ow / PB);
      const blocks = s.count * g.oh * bpr;
      const vec = vecRows(g, PB, xs, ys);
      dev.dispatch('conv', vec ? 'conv_forward_stem4' : 'conv_forward_stem', {
        bindings: { x: xs, x4: xs, wt: weight, bias: bias ?? weight, ...(vec ? { out4: ys } : { out: ys }) },
        params: params(gs, { has_bias: bias ? 1 : 0, bpr, rows: g.oh, n_blocks: blocks }),
        workgroups: pixelGrid(blocks, 1),
        constants: { ...widthConstants(g), ...vecConstants(vec, g), PB, KH: g.kh, CG: g.cg, OC: g.o },
        cost: { flops: convFlops(g, s.count) },
      });
      continue;
    }
    if (path === 'depthwise' && slides(g, false)) {
      const band = slideBands(s.count * g.o, g.oh, 1);
      const blocks = s.count * band.bands;
      const vecOut = vecPlanes(g.ow, ys);
      dev.dispatch('conv', vecOut ? 'depthwise_forward4' : 'depthwise_forward', {
        bindings: { x: xs, x4: xs, wt: weight, bias: bias ?? weight, ...(vecOut ? { out4: ys } : { out: ys }) },
        params: params(gs, { has_bias: bias ? 1 : 0, rows: band.rows, n_blocks: blocks }),
        workgroups: pixelGrid(blocks, g.o),
        constants: { ...slideConstants(g, band.bands, false), X4_ROWS: vecPlanes(g.w, xs) ? 1 : 0 },
        cost: { flops: convFlops(g, s.count) },
      });
      continue;
    }
    const depthwise = path === 'depthwise';
    const OB = depthwise ? 1 : Math.min(4, g.og);
    // Depthwise: one channel per invocation, so up to 8 pixels (the row split evenly) amortise its 9 weight loads.
    const PB = depthwise ? rowBlock(g) : pixelBlock(g, 4);
    const bpr = Math.ceil(g.ow / PB);
    const blocks = s.count * g.oh * bpr;
    dev.dispatch('conv', depthwise ? 'depthwise_forward_rows' : 'conv_forward', {
      bindings: { x: xs, wt: weight, bias: bias ?? weight, out: ys },
      params: params(gs, { has_bias: bias ? 1 : 0, bpr, rows: g.oh, n_blocks: blocks }),
      workgroups: pixelGrid(blocks, depthwise ? g.o : g.groups * Math.ceil(g.og / OB)),
      constants: depthwise ? { ...widthConstants(g), PB, KH: g.kh } : { ...widthConstants(g), PB, OB },
      cost: { flops: convFlops(g, s.count) },
    });
  }
}

// ---- backward: input gradient ----------------------------------------------------------------------------------

interface TilePlan {
  TH: number;
  TW: number;
  WR: number;
  WC: number;
  WIN_OH: number;
  WIN_OW: number;
}

/**
 * The gy window under a tile of `tile` input pixels along one axis (tile a multiple of the stride): output
 * positions (t + pad - k*dilation) / stride, exact, for t < tile, k < kernel; first one and count.
 */
function tileWindow(tile: number, kernel: number, stride: number, pad: number, dilation: number): [number, number] {
  const first = Math.ceil((pad - (kernel - 1) * dilation) / stride);
  const last = Math.floor((tile - 1 + pad) / stride);
  return [first, last - first + 1];
}

/**
 * Tile sizes for the tile dX kernel: among tiles (multiples of the strides) whose accumulators and gy window fit,
 * the fewest loads per input pixel and output channel (the window plus the cg x kH x kW weights, every one a
 * per-lane load on SIMD-over-invocations drivers). Tiles stay small enough for a compiler to unroll the body:
 * Mesa's NIR unroller (lavapipe) gives up past about 192 kernel-tap x pixel pairs per stride row at one loop
 * level, or 256 meeting pairs in all; a body that stays a loop leaves the accumulators in memory, 3-5x slower.
 * Null when the convolution is not for it (many channels per group).
 */
function tilePlan(g: Geometry): TilePlan | null {
  if (g.cg > MAX_TILE_CHANNELS) return null;
  let best: TilePlan | null = null;
  let bestCost = Infinity;
  for (let th = g.sh; th * g.sw * g.cg <= MAX_TILE; th += g.sh) {
    for (let tw = g.sw; th * tw * g.cg <= MAX_TILE; tw += g.sw) {
      const [WIN_OH, WR] = tileWindow(th, g.kh, g.sh, g.ph, g.dh);
      const [WIN_OW, WC] = tileWindow(tw, g.kw, g.sw, g.pw, g.dw);
      if (WR * WC > MAX_TILE_WINDOW) continue;
      if ((g.kh * g.kw * th * tw) / g.sh > UNROLL_PAIRS_PER_LEVEL || g.cg * meetingPairs(g, th, tw) > UNROLL_PAIRS) continue;
      const cost = (WR * WC + g.cg * g.kh * g.kw) / (th * tw);
      if (cost < bestCost - 1e-9) {
        bestCost = cost;
        best = { TH: th, TW: tw, WR, WC, WIN_OH, WIN_OW };
      }
    }
  }
  return best;
}

/** (tile pixel, kernel tap) pairs of one channel where the pixel reads the tap: the tile kernel's multiply-adds. */
function meetingPairs(g: Geometry, th: number, tw: number): number {
  const along = (tile: number, kernel: number, stride: number, pad: number, dilation: number) => {
    let pairs = 0;
    for (let t = 0; t < tile; t++) for (let k = 0; k < kernel; k++) if ((t + pad - k * dilation) % stride === 0) pairs++;
    return pairs;
  };
  return along(th, g.kh, g.sh, g.ph, g.dh) * along(tw, g.kw, g.sw, g.pw, g.dw);
}

function inputGrad(dev: Device, path: Path, g: Geometry, gy: Tensor, weight: Tensor): Tensor {
  const dx = Tensor.empty([g.n, g.c, g.h, g.w], { device: dev });
  const { xImage, yImage } = imageSizes(g);
  for (const s of batchSlices(dev, g.n, [xImage, yImage])) {
    const gs = sliceOf(gy, s, yImage);
    const dxs = sliceOf(dx, s, xImage);
    if (path === 'pointwise') {
      // dx[n] (C x HW) = Wᵀ (C x O) @ gy[n] (O x HW): the transpose is a stride swap, no copy.
      const hw = g.h * g.w;
      gemm(dev, { a: weight, b: gs, out: dxs, batch: s.count, m: g.c, n: hw, k: g.o, aStrides: [0, 1, g.c], bStrides: [g.o * hw, hw, 1] });
      continue;
    }
    const tiles = path === 'general' || path === 'stem' ? tilePlan(g) : null;
    if (tiles) {
      const rows = Math.ceil(g.h / tiles.TH);
      const bpr = Math.ceil(g.w / tiles.TW);
      const blocks = s.count * rows * bpr;
      dev.dispatch('conv', 'conv_backward_input_tiles', {
        bindings: { gy: gs, wt: weight, out: dxs },
        params: params({ ...g, n: s.count }, { bpr, rows, n_blocks: blocks }),
        workgroups: pixelGrid(blocks, g.groups),
        constants: { ...widthConstants(g), KH: g.kh, SH: g.sh, PH: g.ph, PW: g.pw, DH: g.dh, CB: g.cg, ...tiles },
        cost: { flops: convFlops(g, s.count) },
      });
      continue;
    }
    if (path === 'depthwise' && slides(g, true)) {
      const band = slideBands(s.count * g.c, g.h, g.sh);
      const blocks = s.count * band.bands;
      const vecOut = vecPlanes(g.w, dxs);
      dev.dispatch('conv', vecOut ? 'depthwise_backward_input4' : 'depthwise_backward_input', {
        bindings: { gy: gs, gy4: gs, wt: weight, ...(vecOut ? { out4: dxs } : { out: dxs }) },
        params: params({ ...g, n: s.count }, { rows: band.rows, n_blocks: blocks }),
        workgroups: pixelGrid(blocks, g.c),
        constants: { ...slideConstants(g, band.bands, true), GY4_ROWS: vecPlanes(g.ow, gs) ? 1 : 0 },
        cost: { flops: convFlops(g, s.count) },
      });
      continue;
    }
    // Input pixels split into sh x sw phases (one per workgroup row); a block is PB pixels of one phase.
    const depthwise = path === 'depthwise';
    const OB = depthwise ? 1 : Math.min(4, g.cg);
    const PB = Math.min(MAX_BLOCK / OB, pixelBlock(g, OB < 3 ? 8 : 4));
    const rows = Math.ceil(g.h / g.sh);
    const bpr = Math.ceil(Math.ceil(g.w / g.sw) / PB);
    const blocks = s.count * rows * bpr;
    const phases = g.sh * g.sw;
    dev.dispatch('conv', depthwise ? 'depthwise_backward_input_rows' : 'conv_backward_input', {
      bindings: { gy: gs, wt: weight, out: dxs },
      params: params({ ...g, n: s.count }, { bpr, rows, n_blocks: blocks }),
      workgroups: pixelGrid(blocks, phases * (depthwise ? g.c : g.groups * Math.ceil(g.cg / OB))),
      constants: depthwise ? { ...widthConstants(g), PB } : { ...widthConstants(g), PB, OB },
      cost: { flops: convFlops(g, s.count) },
    });
  }
  return dx;
}

// ---- backward: weight and bias gradients -----------------------------------------------------------------------

/** Pass 2 of every weight/bias-gradient reduction: partials [chunks, nWeight + nBias] -> dW, db (fixed order). */
function reducePartials(dev: Device, g: Geometry, partials: Tensor, chunks: number, nWeight: number, dw: Tensor | null, db: Tensor | null): void {
  const nOutputs = nWeight + (db ? db.numel : 0);
  const scratch = !dw || !db ? Tensor.empty([1], { device: dev }) : null; // binds the output not wanted
  dev.dispatch('conv', 'reduce_partials', {
    bindings: { partials, out: dw ?? scratch!, out_bias: db ?? scratch! },
    params: params(g, { n_chunks: chunks, n_outputs: nOutputs, n_weight: nWeight }),
    workgroups: Math.ceil(nOutputs / WG),
    cost: { flops: chunks * nOutputs },
  });
  scratch?.dispose();
}

/**
 * Register blocking of the general weight-gradient kernel: output channels x kernel rows x KW taps. Few input
 * channels (stems) take 8 output channels per job, halving the input windows loaded per output channel (stem
 * 3->32 s2 at 64x64, batch 16, on lavapipe: 99 -> 72 M instructions; 64->84 3x3 at 14x14 got slower).
 */
function weightGradBlocks(g: Geometry): { OB: number; RB: number; PB: number } {
  const few = g.cg <= MAX_TILE_CHANNELS;
  const maxAcc = few ? MAX_WEIGHT_ACC : MAX_ACC;
  let OB = Math.min(few ? 8 : 4, g.og);
  while (OB > 1 && OB * g.kw > maxAcc) OB--;
  const RB = OB * g.kh * g.kw <= maxAcc ? g.kh : 1; // all kernel rows of one input channel when they fit
  const PB = Math.min(Math.floor(MAX_BLOCK / OB), pixelBlock(g, 4));
  return { OB, RB, PB };
}

/** Pixels per step along an output row for the depthwise weight gradient: up to 8, splitting the row evenly. */
function rowBlock(g: Geometry): number {
  return Math.min(Math.ceil(g.ow / Math.ceil(g.ow / 8)), pixelBlock(g, 8));
}

/** dW and db (when wanted) for the general and depthwise paths: chunked partial sums over output pixels. */
function weightGrad(dev: Device, path: 'general' | 'stem' | 'depthwise', g: Geometry, gy: Tensor, x: Tensor, wantBias: boolean): [Tensor, Tensor | null] {
  const { xImage, yImage } = imageSizes(g);
  const slices = batchSlices(dev, g.n, [xImage, yImage]);
  const stem = path === 'stem' ? stemWeightBlocks(g) : null;
  // Depthwise planes that fit the sliding kernel: units are bands of output rows (bpr 1, `rows` rows per band).
  const band = path === 'depthwise' && slides(g, false) ? slideBands(g.n * g.o, g.oh, 1) : null;
  const blocking = path === 'general' ? weightGradBlocks(g) : stem ? { OB: stem.OC, RB: g.kh, PB: stem.PB } : { OB: 1, RB: 1, PB: rowBlock(g) };
  const bpr = Math.ceil(g.ow / blocking.PB);
  const jobs = path === 'general' ? g.groups * Math.ceil(g.og / blocking.OB) * g.cg * (g.kh / blocking.RB) : stem ? Math.ceil(g.o / stem.OC) : g.o;
  const maxChunks = Math.ceil(MAX_CHUNKS / slices.length);
  const plan = slices.map((s) => ({
    s,
    ...(band ? chunking(s.count * band.bands, band.rows * g.ow, jobs, maxChunks) : chunking(s.count * g.oh * bpr, blocking.PB, jobs, maxChunks)),
  }));
  const totalChunks = plan.reduce((t, c) => t + c.chunks, 0);
  const nWeight = g.o * g.cg * g.kh * g.kw;
  const nOutputs = nWeight + (wantBias ? g.o : 0);
  const rowsPerChunk = path === 'general' ? 1 : WG; // the stem and depthwise kernels write a partials row per invocation
  const partials = Tensor.empty([totalChunks * rowsPerChunk, nOutputs], { device: dev });
  let chunkBase = 0;
  for (const { s, blocksPerChunk, chunks } of plan) {
    const p = params({ ...g, n: s.count }, {
      has_bias: wantBias ? 1 : 0, bpr, rows: g.oh, n_blocks: s.count * g.oh * bpr, blocks_per_chunk: blocksPerChunk,
      chunk_base: chunkBase, n_outputs: nOutputs, n_weight: nWeight,
    });
    const bindings = { gy: sliceOf(gy, s, yImage), x: sliceOf(x, s, xImage), out: partials };
    if (stem) {
      const vec = vecRows(g, stem.PB, bindings.x, bindings.gy);
      dev.dispatch('conv', 'conv_backward_weight_stem', {
        bindings: { ...bindings, x4: bindings.x, gy4: bindings.gy }, params: p, workgroups: jobGrid(jobs, chunks),
        constants: { ...widthConstants(g), ...vecConstants(vec, g), PB: stem.PB, KH: g.kh, CG: g.cg, OC: stem.OC },
        cost: { flops: convFlops(g, s.count) },
      });
    } else if (path === 'general') {
      const { OB, RB, PB } = blocking;
      dev.dispatch('conv', 'conv_backward_weight', {
        bindings, params: p, workgroups: jobGrid(jobs, chunks), constants: { ...widthConstants(g), OB, RB, PB }, cost: { flops: convFlops(g, s.count) },
      });
    } else if (band) {
      dev.dispatch('conv', 'depthwise_backward_weight', {
        bindings: { ...bindings, x4: bindings.x, gy4: bindings.gy },
        params: { ...p, rows: band.rows, n_blocks: s.count * band.bands },
        workgroups: jobGrid(jobs, chunks),
        constants: { ...slideConstants(g, band.bands, false), X4_ROWS: vecPlanes(g.w, bindings.x) ? 1 : 0, GY4_ROWS: vecPlanes(g.ow, bindings.gy) ? 1 : 0 },
        cost: { flops: convFlops(g, s.count) },
      });
    } else {
      dev.dispatch('conv', 'depthwise_backward_weight_rows', {
        bindings, params: p, workgroups: jobGrid(jobs, chunks), constants: { ...widthConstants(g), PB: blocking.PB, KH: g.kh }, cost: { flops: convFlops(g, s.count) },
      });
    }
    chunkBase += chunks;
  }
  const dw = Tensor.empty([g.o, g.cg, g.kh, g.kw], { device: dev });
  const db = wantBias ? Tensor.empty([g.o], { device: dev }) : null;
  reducePartials(dev, g, partials, totalChunks * rowsPerChunk, nWeight, dw, db);
  partials.dispose();
  return [dw, db];
}

function weightGradPointwise(dev: Device, g: Geometry, gy: Tensor, x: Tensor): Tensor {
  // Per image: dW[n] (O x C) = gy[n] (O x HW) @ x[n]ᵀ (HW x C) (the transpose is a stride swap); then the images'
  // partials are summed in order by reduce_partials (one invocation per weight, coalesced; measured 152 -> ~5 ms
  // against a generic sum over dim 0 for 128->256 at batch 64).
  const hw = g.h * g.w;
  const { xImage, yImage } = imageSizes(g);
  const perImage = Tensor.empty([g.n, g.o * g.c], { device: dev });
  for (const s of batchSlices(dev, g.n, [xImage, yImage, g.o * g.c])) {
    gemm(dev, {
      a: sliceOf(gy, s, yImage), b: sliceOf(x, s, xImage), out: sliceOf(perImage, s, g.o * g.c), batch: s.count, m: g.o, n: g.c, k: hw,
      aStrides: [g.o * hw, hw, 1],
      bStrides: [g.c * hw, 1, hw],
    });
  }
  const dw = Tensor.empty([g.o, g.c, 1, 1], { device: dev });
  reducePartials(dev, g, perImage, g.n, g.o * g.c, dw, null);
  perImage.dispose();
  return dw;
}

/** db alone: one output channel per lane, chunks of (image, plane segment), then the fixed-order pass 2. */
function biasGrad(dev: Device, g: Geometry, gy: Tensor): Tensor {
  const plane = g.oh * g.ow;
  const { yImage } = imageSizes(g);
  const lanes = Math.min(64, 1 << Math.ceil(Math.log2(Math.max(g.o, 8))));
  const segment = Math.max(BIAS_SEGMENT_PIXELS, Math.ceil((g.n * plane) / MAX_CHUNKS));
  const planeChunks = Math.ceil(plane / segment);
  const partials = Tensor.empty([g.n * planeChunks, g.o], { device: dev });
  for (const s of batchSlices(dev, g.n, [yImage])) {
    dev.dispatch('conv', 'bias_grad_partials', {
      bindings: { gy: sliceOf(gy, s, yImage), out: partials },
      params: params({ ...g, n: s.count }, { plane, plane_chunks: planeChunks, blocks_per_chunk: segment, chunk_base: s.first * planeChunks, n_outputs: g.o }),
      workgroups: jobGrid(Math.ceil(g.o / lanes), s.count * planeChunks),
      constants: { LANES: lanes },
      cost: { flops: s.count * g.o * plane },
    });
  }
  const db = Tensor.empty([g.o], { device: dev });
  reducePartials(dev, g, partials, g.n * planeChunks, 0, null, db);
  partials.dispose();
  return db;
}

// ---- the op ----------------------------------------------------------------------------------------------------

/**
 * 2-D convolution over an NCHW input, like torch.nn.functional.conv2d.
 * x: [N, C, H, W]; weight: [O, C/groups, kH, kW]; bias: [O] or null. Returns [N, O, OH, OW].
 */
export function conv2d(x: Tensor, weight: Tensor, bias?: Tensor | null, options: Conv2dOptions = {}): Tensor {
  const b = bias ?? null;
  const g = geometryOf(x, weight, b, options);
  const path = choosePath(g, options.impl);
  const dev = x.device;
  const out = Tensor.empty([g.n, g.o, g.oh, g.ow], { device: dev });
  forward(dev, path, g, x, weight, b, out);

  const inputs = b ? [x, weight, b] : [x, weight];
  return record(out, 'conv2d', inputs, (gy) => {
    const dx = x.requiresGrad ? inputGrad(dev, path, g, gy, weight) : null;
    const wantBias = b !== null && b.requiresGrad;
    let dw: Tensor | null = null;
    let db: Tensor | null = null;
    if (path === 'pointwise') {
      if (weight.requiresGrad) dw = weightGradPointwise(dev, g, gy, x);
      if (wantBias) db = biasGrad(dev, g, gy);
    } else if (weight.requiresGrad) {
      [dw, db] = weightGrad(dev, path, g, gy, x, wantBias); // db comes from the same pass over gy
    } else if (wantBias) {
      db = biasGrad(dev, g, gy);
    }
    return b ? [dx, dw, db] : [dx, dw];
  });
}

// ---- the transposed convolution --------------------------------------------------------------------------------

export interface ConvTranspose2dOptions {
  stride?: number | [number, number];
  padding?: number | [number, number];
  dilation?: number | [number, number];
}

/**
 * The geometry of the convolution whose input gradient is this transposed convolution: that convolution maps the
 * transposed output [N, Cout, OH, OW] to the transposed input [N, Cin, H, W] with the same weight [Cin, Cout, kH, kW].
 */
function transposedGeometry(x: Tensor, weight: Tensor, bias: Tensor | null, options: ConvTranspose2dOptions): Geometry {
  if (x.ndim !== 4) throw new Error(`conv_transpose2d: input must be [N, Cin, H, W], got ${shapeStr(x.shape)}`);
  if (weight.ndim !== 4) throw new Error(`conv_transpose2d: weight must be [Cin, Cout, kH, kW], got ${shapeStr(weight.shape)}`);
  if (x.dtype !== 'f32' || weight.dtype !== 'f32') throw new Error('conv_transpose2d: input and weight must be f32');
  const [n, cin, h, w] = x.shape;
  const [wcin, cout, kh, kw] = weight.shape;
  if (wcin !== cin) throw new Error(`conv_transpose2d: weight ${shapeStr(weight.shape)} is for ${wcin} input channels, the input ${shapeStr(x.shape)} has ${cin}`);
  if (bias && (bias.ndim !== 1 || bias.shape[0] !== cout || bias.dtype !== 'f32')) {
    throw new Error(`conv_transpose2d: bias must be f32 [${cout}] (one value per output channel), got ${shapeStr(bias.shape)}`);
  }
  if (x.device !== weight.device || (bias && bias.device !== x.device)) throw new Error('conv_transpose2d: tensors are on different devices');
  const [sh, sw] = pair(options.stride, 1, 'stride');
  const [ph, pw] = pair(options.padding, 0, 'padding');
  const [dh, dw] = pair(options.dilation, 1, 'dilation');
  if (sh < 1 || sw < 1 || dh < 1 || dw < 1 || ph < 0 || pw < 0) {
    throw new Error(`conv_transpose2d: stride and dilation must be >= 1 and padding >= 0, got stride [${sh}, ${sw}], dilation [${dh}, ${dw}], padding [${ph}, ${pw}]`);
  }
  // torch: (H - 1) * stride - 2 * padding + dilation * (kH - 1) + 1 (output_padding 0).
  const oh = (h - 1) * sh - 2 * ph + dh * (kh - 1) + 1;
  const ow = (w - 1) * sw - 2 * pw + dw * (kw - 1) + 1;
  if (oh < 1 || ow < 1) throw new Error(`conv_transpose2d: input ${shapeStr(x.shape)} with kernel [${kh}, ${kw}] and padding [${ph}, ${pw}] gives an empty ${oh}x${ow} output`);
  if ((kw - 1) * dw + 1 > MAX_WINDOW || kw > MAX_ACC) {
    throw new Error(`conv_transpose2d: kernel width ${kw} with dilation ${dw} spans ${(kw - 1) * dw + 1} columns; at most ${MAX_WINDOW} are supported`);
  }
  return { n, c: cout, h: oh, w: ow, o: cin, oh: h, ow: w, kh, kw, sh, sw, ph, pw, dh, dw, groups: 1, cg: cout, og: cin, mult: 1 };
}

/**
 * Transposed 2-D convolution, like torch.nn.functional.conv_transpose2d (groups 1, output_padding 0).
 * x: [N, Cin, H, W]; weight: [Cin, Cout, kH, kW]; bias: [Cout] or null. Returns [N, Cout, OH, OW] with
 * OH = (H - 1) * stride - 2 * padding + dilation * (kH - 1) + 1:
 *   out[n, co, y * s - p + ky * d, x * s - p + kx * d] += x[n, ci, y, x] * weight[ci, co, ky, kx].
 * That is the input gradient of conv2d with the same weight, so forward and backward reuse conv2d's kernels:
 * dx = conv2d(gy, weight), dW = conv2d's weight gradient with gy as its input and x as its output gradient.
 */
export function convTranspose2d(x: Tensor, weight: Tensor, bias?: Tensor | null, options: ConvTranspose2dOptions = {}): Tensor {
  const b = bias ?? null;
  const g = transposedGeometry(x, weight, b, options);
  const path: 'general' | 'pointwise' = isPointwise(g) ? 'pointwise' : 'general';
  const dev = x.device;
  const out = inputGrad(dev, path, g, x, weight);
  const y = record(out, 'conv_transpose2d', [x, weight], (gy) => {
    let dx: Tensor | null = null;
    if (x.requiresGrad) {
      dx = Tensor.empty([g.n, g.o, g.oh, g.ow], { device: dev });
      forward(dev, path, g, gy, weight, null, dx);
    }
    let dw: Tensor | null = null;
    if (weight.requiresGrad) dw = path === 'pointwise' ? weightGradPointwise(dev, g, x, gy) : weightGrad(dev, 'general', g, x, gy, false)[0];
    return [dx, dw];
  });
  return b ? add(y, b.reshape([1, g.c, 1, 1])) : y;
}
