// GEMM family: the strided batched gemm() primitive (used by linear, matmul and pointwise conv), and the matmul
// and linear ops built on it, forward and backward side by side.
import type { BufferLike, Device } from '../gpu/device.js';
import { record } from '../autograd/tape.js';
import { Tensor, shapeStr } from '../tensor.js';
import { sum } from './reduce.js';
import { tunedChoice, type TuneJob } from '../gpu/autotune.js';

export interface GemmArgs {
  a: BufferLike;
  b: BufferLike;
  out: BufferLike; // contiguous [batch, m, n]
  batch: number;
  m: number;
  n: number;
  k: number;
  /** Element strides of A over (batch, m, k); batch stride 0 broadcasts A over the batch. */
  aStrides: [number, number, number];
  /** Element strides of B over (batch, k, n). */
  bStrides: [number, number, number];
  alpha?: number;
  /** Bias added after alpha: one value per row (m) or per column (n). */
  bias?: { values: BufferLike; along: 'm' | 'n' };
  /** out += result instead of out = result. */
  accumulate?: boolean;
}

/**
 * The GEMM kernels (shaders/matmul.wgsl and, on devices with subgroups, shaders/matmul_subgroups.wgsl):
 * - 'subgroup': the fast kernel; a row of invocations shares up to 64 output rows whose A values are loaded once per
 *   8 rows and handed around with subgroupBroadcast. Needs the 'subgroups' feature and subgroups of 8 or more. Its
 *   tile (subgroupTiles()) is the autotuner's measured choice per adapter and shape (src/gpu/autotune.ts), else
 *   the fixed default of tileCost.
 * - 'tiled': an 8x8 register block per invocation, for devices without subgroups.
 * - 'naive': one invocation per output (the reference the others are measured against).
 * - 'plain': the subgroup kernel built for contiguous row-major A [m, k] and B [k, n] with compile-time strides
 *   (the "best plain matmul" reference for benchmarks; the strided kernel measures the same, so auto never picks it).
 */
export type GemmKernel = 'subgroup' | 'tiled' | 'naive' | 'plain';

const subgroupSupport = new WeakMap<Device, boolean>();

/** Whether `device` can run the subgroup kernel (its shader loaded, the feature on, subgroups of 8 or more). */
export function hasSubgroupGemm(device: Device): boolean {
  let ok = subgroupSupport.get(device);
  if (ok === undefined) {
    const minSize = (device.adapter.info as { subgroupMinSize?: number }).subgroupMinSize ?? 0;
    ok = device.shaders.has('matmul_subgroups') && device.device.features.has('subgroups') && minSize >= 8;
    subgroupSupport.set(device, ok);
  }
  return ok;
}

/** Records out[b] = alpha * A[b] @ B[b] (+ bias) (+ out). Shapes are not checked here: callers own them. */
export function gemm(device: Device, g: GemmArgs): void {
  gemmWith(device, g, hasSubgroupGemm(device) ? 'subgroup' : 'tiled');
}

/** gemm() with an explicit kernel (tests and benchmarks; 'plain' needs contiguous row-major A and B). */
export function gemmWith(device: Device, g: GemmArgs, kernel: GemmKernel, tile?: SubgroupTile): void {
  if (g.batch * g.m * g.n === 0) return;
  if (g.k === 0) {
    // Nothing to multiply (and A, B may be empty buffers that cannot be bound): out = bias (+ out).
    const zero = Tensor.zeros([1], { device });
    gemmWith(device, { ...g, a: zero, b: zero, k: 1, aStrides: [0, 0, 0], bStrides: [0, 0, 0] }, kernel === 'plain' ? 'subgroup' : kernel);
    zero.dispose();
    return;
  }
  if (kernel === 'plain' && !isPlain(g)) throw new Error("gemm: the 'plain' kernel needs contiguous row-major A and B");
  for (const part of batchChunks(device, g)) dispatchGemm(device, part, kernel, tile);
}

/**
 * Splits the batch so that every binding fits maxStorageBufferBindingSize and the grid's z limit: each chunk
 * binds the byte range its batches read (chunk starts keep the storage offset alignment). One chunk when it fits.
 */
function batchChunks(device: Device, g: GemmArgs): GemmArgs[] {
  const { maxStorageBufferBindingSize: maxBytes, minStorageBufferOffsetAlignment: align, maxComputeWorkgroupsPerDimension: maxGrid } =
    device.device.limits;
  const operands = [
    { key: 'a' as const, stride: g.aStrides[0], extent: (g.m - 1) * g.aStrides[1] + (g.k - 1) * g.aStrides[2] + 1 },
    { key: 'b' as const, stride: g.bStrides[0], extent: (g.k - 1) * g.bStrides[1] + (g.n - 1) * g.bStrides[2] + 1 },
    { key: 'out' as const, stride: g.m * g.n, extent: g.m * g.n },
  ];
  if (g.batch <= maxGrid && operands.every((o) => g[o.key].byteLength <= maxBytes)) return [g];
  // A chunk binds only the range its batches read (a shared operand: one batch's range).
  const bytes = (o: (typeof operands)[number], count: number) => 4 * (o.stride === 0 ? o.extent : (count - 1) * o.stride + o.extent);
  const fits = (count: number) => count <= maxGrid && operands.every((o) => bytes(o, count) <= maxBytes);
  // Chunk sizes are multiples of `quantum` batches, so every chunk starts on an aligned byte offset.
  let quantum = 1;
  for (const o of operands) {
    if (o.stride !== 0) quantum = lcm(quantum, align / gcd(4 * o.stride, align));
  }
  let count = Math.floor(Math.min(g.batch, maxGrid) / quantum) * quantum;
  while (count > 0 && !fits(count)) count -= quantum;
  if (count <= 0) {
    throw new Error(`gemm: one batch of [${g.m}x${g.k}] @ [${g.k}x${g.n}] does not fit a ${maxBytes}-byte storage binding`);
  }
  const parts: GemmArgs[] = [];
  for (let b0 = 0; b0 < g.batch; b0 += count) {
    const c = Math.min(count, g.batch - b0);
    const slice = (o: (typeof operands)[number]): BufferLike => {
      const whole = g[o.key];
      return { buffer: whole.buffer, byteOffset: whole.byteOffset + 4 * b0 * o.stride, byteLength: bytes(o, c), dtype: whole.dtype };
    };
    parts.push({ ...g, batch: c, a: slice(operands[0]), b: slice(operands[1]), out: slice(operands[2]) });
  }
  return parts;
}

function gcd(x: number, y: number): number {
  return y === 0 ? x : gcd(y, x % y);
}

function lcm(x: number, y: number): number {
  return (x / gcd(x, y)) * y;
}

/** FLOPs of a GEMM: one multiply-add per (row, column, k), per batch entry. */
export function gemmFlops(g: Pick<GemmArgs, 'batch' | 'm' | 'n' | 'k'>): number {
  return 2 * g.batch * g.m * g.n * g.k;
}

function dispatchGemm(device: Device, g: GemmArgs, kernel: GemmKernel, explicitTile?: SubgroupTile): void {
  const cost = { flops: gemmFlops(g) };
  const bindings = { a: g.a, b: g.b, bias: g.bias?.values ?? g.a, out: g.out };
  const base = {
    batch: g.batch,
    k: g.k, // always >= 1 here
    alpha: g.alpha ?? 1,
    accumulate: g.accumulate ? 1 : 0,
  };
  if (kernel === 'naive' || kernel === 'tiled') {
    device.dispatch('matmul', `gemm_${kernel}`, {
      bindings,
      params: { ...base, ...problemParams(g, false) },
      workgroups: kernel === 'naive' ? [Math.ceil(g.n / 8), Math.ceil(g.m / 8), g.batch] : [Math.ceil(g.n / 64), Math.ceil(g.m / 64), g.batch],
      cost,
    });
    return;
  }
  const maxGrid = device.device.limits.maxComputeWorkgroupsPerDimension;
  // 'plain' is gemm_sg's compile-time-stride build: never the vec4 entry point.
  const tile = explicitTile ?? (kernel === 'plain' ? { ...defaultTile(g, false, maxGrid), vec: false } : chooseTile(device, g, maxGrid));
  const params = { ...base, ...problemParams(g, tile.swap) };
  const fold = tile.fold && canFold(g, tile.swap);
  const vec = tile.vec ? vecLoads(g, tile) : null;
  const columns = fold ? g.batch * params.n : params.n;
  const grid: [number, number, number] = [Math.ceil(columns / (tile.lanes * tile.cols)), Math.ceil(params.m / (8 * tile.rowGroups)), fold ? 1 : g.batch];
  if (grid[0] > maxGrid || grid[1] > maxGrid) throw new Error(`gemm: tile ${JSON.stringify(tile)} needs a ${grid.join('x')} grid (limit ${maxGrid})`);
  const operands = tile.swap ? { ...bindings, a: g.b, b: g.a } : bindings;
  device.dispatch('matmul_subgroups', vec ? 'gemm_sg4' : 'gemm_sg', {
    bindings: vec ? { ...operands, a_vec4: operands.a, b_vec4: operands.b } : operands,
    params: { ...params, fold: fold ? 1 : 0, a_vec: vec?.a ? 1 : 0 },
    workgroups: grid,
    constants: {
      LANES: tile.lanes, ROW_GROUPS: tile.rowGroups, COLS: tile.cols,
      BIAS_MODE: params.bias_mode, ACCUMULATE: base.accumulate,
      ...(vec ? { B_VEC: vec.b } : { KU: tile.ku }),
      ...(kernel === 'plain' ? { PLAIN: 1 } : {}),
    },
    cost,
  });
}

/**
 * Which operands a vec tile can load as vec4s (gemm_sg4), on the problem as the kernel sees it (after the swap):
 * A along k when its k stride is 1; B along n when its n stride is 1 and the tile owns 4 adjacent columns, else
 * along k when its k stride is 1. Every other stride, the batch strides and the bound ranges must keep vec4s
 * aligned, and k must be a multiple of 4. Null when neither applies (the tile then runs as gemm_sg, ku 4).
 */
export function vecLoads(g: GemmArgs, tile: Pick<SubgroupTile, 'swap' | 'cols'>): { a: boolean; b: 0 | 1 | 2 } | null {
  const p = problemParams(g, tile.swap);
  const [aBuf, bBuf] = tile.swap ? [g.b, g.a] : [g.a, g.b];
  if (g.k % 4 !== 0) return null;
  const aligned = (...v: number[]) => v.every((x) => x % 4 === 0);
  const a = p.a_col === 1 && aligned(p.a_row, p.a_batch, aBuf.byteOffset / 4);
  let b: 0 | 1 | 2 = 0;
  if (p.b_col === 1 && tile.cols === 4 && aligned(p.n, p.b_row, p.b_batch, bBuf.byteOffset / 4)) b = 1;
  else if (p.b_row === 1 && aligned(p.b_col, p.b_batch, bBuf.byteOffset / 4)) b = 2;
  return a || b ? { a, b } : null;
}

function isPlain(g: GemmArgs): boolean {
  const [aBatch, aRow, aCol] = g.aStrides;
  const [bBatch, bRow, bCol] = g.bStrides;
  return aRow === g.k && aCol === 1 && (aBatch === 0 || aBatch === g.m * g.k) && bRow === g.n && bCol === 1 && (bBatch === 0 || bBatch === g.k * g.n);
}

/**
 * The uniform fields that describe the problem. Swapped, the kernel computes outᵀ = Bᵀ Aᵀ: Bᵀ plays A (its rows
 * are the original columns), Aᵀ plays B, and the output is written transposed through (o_row, o_col).
 */
function problemParams(g: GemmArgs, swap: boolean) {
  const biasMode = g.bias ? ((g.bias.along === 'm') !== swap ? 1 : 2) : 0;
  if (!swap) {
    const [a_batch, a_row, a_col] = g.aStrides;
    const [b_batch, b_row, b_col] = g.bStrides;
    return { m: g.m, n: g.n, a_batch, a_row, a_col, b_batch, b_row, b_col, o_row: g.n, o_col: 1, bias_mode: biasMode };
  }
  const [b_batch, b_col, b_row] = g.aStrides; // Aᵀ as the new B: its k stride was A's column stride
  const [a_batch, a_col, a_row] = g.bStrides; // Bᵀ as the new A: its rows are B's columns
  return { m: g.n, n: g.m, a_batch, a_row, a_col, b_batch, b_row, b_col, o_row: 1, o_col: g.n, bias_mode: biasMode };
}

/** A variant of the subgroup kernel (shaders/matmul_subgroups.wgsl). */
export interface SubgroupTile {
  lanes: 32 | 64; // invocations per workgroup, along the output columns
  rowGroups: 1 | 2 | 4 | 8; // 8 output rows each
  cols: 1 | 2 | 4; // output columns per invocation
  ku: 1 | 4; // steps of k per loop iteration
  swap: boolean; // run the transposed problem
  /** Fold the batch into the columns (taken only where A, after the swap, is shared by the batch). */
  fold: boolean;
  /** Load whole vec4s where the problem's strides allow (gemm_sg4; see vecLoads()). */
  vec: boolean;
}

/** Whether the batch can fold into the columns: more than one batch and the kernel's A (after the swap) shared. */
export function canFold(g: Pick<GemmArgs, 'batch' | 'aStrides' | 'bStrides'>, swap: boolean): boolean {
  return g.batch > 1 && (swap ? g.bStrides[0] : g.aStrides[0]) === 0;
}

type TileShape = Pick<SubgroupTile, 'rowGroups' | 'cols'>;

/**
 * The register blocks the kernel is built for (rows = 8 * rowGroups, columns per invocation), largest first: on
 * equal cost the bigger block wins. Up to 128 accumulators per invocation: past that, on lavapipe, the unrolled
 * body no longer fits and the accumulators spill to memory (rg8 c4: ~4x the instructions of rg4 c4).
 */
const TILE_SHAPES: TileShape[] = [
  { rowGroups: 8, cols: 2 }, { rowGroups: 4, cols: 4 }, { rowGroups: 4, cols: 2 },
  { rowGroups: 2, cols: 4 }, { rowGroups: 4, cols: 1 }, { rowGroups: 2, cols: 2 },
];

/**
 * The register blocks of the step-by-step build (one step of k per iteration, no folding): smaller blocks, fewer
 * accumulators; on lavapipe they beat the unrolled tiles at some shapes (per-image weight gradients with short k,
 * 8x8 images), lose at others. Only the autotuner picks them.
 */
const STEPWISE_SHAPES: TileShape[] = [
  { rowGroups: 4, cols: 2 }, { rowGroups: 2, cols: 2 }, { rowGroups: 1, cols: 2 },
  { rowGroups: 4, cols: 1 }, { rowGroups: 2, cols: 1 }, { rowGroups: 1, cols: 1 },
];

/** Every tile the subgroup kernel can run (the autotuner's candidates; the tests run each). */
export function subgroupTiles(): SubgroupTile[] {
  const tiles: SubgroupTile[] = [];
  // 32 lanes first: on equal modelled cost the fixed default takes them (more, smaller workgroups: the autotuner
  // picked 32 lanes for 27 of the 33 demo and hw13-64 shapes on lavapipe); 64 fill a subgroup of 64 on GPUs.
  for (const lanes of [32, 64] as const) {
    for (const swap of [false, true]) {
      for (const t of TILE_SHAPES) tiles.push({ lanes, rowGroups: t.rowGroups, cols: t.cols, ku: 4, swap, fold: true, vec: true });
      for (const t of TILE_SHAPES) tiles.push({ lanes, rowGroups: t.rowGroups, cols: t.cols, ku: 4, swap, fold: true, vec: false });
      for (const t of STEPWISE_SHAPES) tiles.push({ lanes, rowGroups: t.rowGroups, cols: t.cols, ku: 1, swap, fold: false, vec: false });
    }
  }
  return tiles;
}

export function tileName(t: SubgroupTile): string {
  return `l${t.lanes} rg${t.rowGroups} c${t.cols} ku${t.ku}${t.swap ? ' swap' : ''}${t.fold ? ' fold' : ''}${t.vec ? ' v4' : ''}`;
}

/**
 * Work of a tile choice in "load-equivalents": the padded output area times the loads each multiply-add costs
 * (per step of k an invocation loads rowGroups values of A and cols values of B for 8 * rowGroups * cols
 * multiply-adds), plus the broadcasts: each A value reaches its 8 rows through subgroupBroadcast, one per cols
 * multiply-adds, at BROADCAST_COST loads each. Loads dominate the cost on every device measured, so this ranks
 * tiles well enough.
 */
// A broadcast in load-equivalents, from lavapipe's counts where loads alone ranked wrongly (pw-fwd 64x128x49x128:
// rg8 c2 103.3M, rg4 c4 90.1M; 64x192x49x128: 154.8M, 135.3M). Anywhere in 0.04-0.1 it changes only those picks
// among the demo's and hw13-64's 33 GEMM shapes.
const BROADCAST_COST = 1 / 16;

function tileCost(g: GemmArgs, t: SubgroupTile): number {
  const p = problemParams(g, t.swap);
  const columns = t.fold && canFold(g, t.swap) ? g.batch * p.n : p.n;
  const slices = t.fold && canFold(g, t.swap) ? 1 : g.batch;
  const tileRows = 8 * t.rowGroups;
  const tileCols = t.lanes * t.cols;
  const padded = slices * Math.ceil(p.m / tileRows) * tileRows * Math.ceil(columns / tileCols) * tileCols;
  const vec = t.vec ? vecLoads(g, t) : null; // a vec4 load fetches 4 steps of k (A, B along k) or 4 columns (B along n)
  const loads = t.rowGroups / (vec?.a ? 4 : 1) + t.cols / (vec?.b ? 4 : 1);
  return (padded * loads) / (tileRows * t.cols) + (padded * BROADCAST_COST) / t.cols;
}

function gridFits(g: GemmArgs, t: SubgroupTile, maxGrid: number): boolean {
  const p = problemParams(g, t.swap);
  const columns = t.fold && canFold(g, t.swap) ? g.batch * p.n : p.n;
  return Math.ceil(columns / (t.lanes * t.cols)) <= maxGrid && Math.ceil(p.m / (8 * t.rowGroups)) <= maxGrid && g.batch <= maxGrid;
}

/** The fixed default: the cheapest tile by tileCost whose grid fits (orientation too, when allowed). */
function defaultTile(g: GemmArgs, allowSwap: boolean, maxGrid: number): SubgroupTile {
  let best: SubgroupTile | null = null;
  let bestCost = Infinity;
  for (const t of subgroupTiles()) {
    // The fixed default comes from the unrolled, folding tiles (the model does not see what makes the stepwise
    // ones win where they do).
    if (t.ku === 1 || (t.swap && !allowSwap) || !gridFits(g, t, maxGrid)) continue;
    const cost = tileCost(g, t);
    if (cost < bestCost) {
      bestCost = cost;
      best = t;
    }
  }
  if (!best) throw new Error(`gemm: a [${g.m}x${g.n}] output needs more workgroups than the device's grid allows`);
  return best;
}

/**
 * GEMMs this small (a classifier head: 64 x 10 x 192) take the smallest tile and are never tuned: any tile runs
 * them in well under a millisecond, and a large unrolled tile's compile (lavapipe compiles at the first dispatch:
 * 1-2 s for l32 rg4 c4 against ~0.2 s for this one) would be most of what they ever cost. Small tiles also keep
 * more workgroups busy on a GPU.
 */
const SMALL_GEMM_FLOPS = 2 ** 22;
const SMALL_TILE: SubgroupTile = { lanes: 32, rowGroups: 1, cols: 1, ku: 1, swap: false, fold: false, vec: false };

/**
 * The tile for this GEMM: the autotuner's measured choice for its shape on this adapter when there is one, else
 * the fixed default (and the shape waits for autotunePending()). Candidates within 2x of the default's modelled
 * cost are measured; the rest pad far too much to win.
 */
function chooseTile(device: Device, g: GemmArgs, maxGrid: number): SubgroupTile {
  if (gemmFlops(g) <= SMALL_GEMM_FLOPS && gridFits(g, SMALL_TILE, maxGrid)) return SMALL_TILE;
  const fallback = defaultTile(g, true, maxGrid);
  const limit = 2 * tileCost(g, fallback);
  const candidates = subgroupTiles().filter((t) => gridFits(g, t, maxGrid) && tileCost(g, t) <= limit);
  const shapeClass = `batch ${g.batch} m ${g.m} n ${g.n} k ${g.k} a [${g.aStrides}] b [${g.bStrides}]`;
  const tuned = tunedChoice(device, 'gemm_sg', shapeClass, tuneJob(g, candidates));
  return candidates.find((t) => tileName(t) === tuned) ?? fallback;
}

/** Scratch operands of g's shape and strides, to time the candidates on (values do not change the time). */
function tuneJob(problem: GemmArgs, candidates: SubgroupTile[]): TuneJob {
  // Only the shape is kept (the job may wait a while): not the caller's operands.
  const { a: _a, b: _b, out: _out, bias: biasArgs, ...shape } = problem;
  const biasAlong = biasArgs?.along;
  const extent = (strides: [number, number, number], rows: number, cols: number) =>
    (shape.batch - 1) * strides[0] + (rows - 1) * strides[1] + (cols - 1) * strides[2] + 1;
  return {
    candidates: candidates.map(tileName),
    setup(dev) {
      const a = Tensor.zeros([extent(shape.aStrides, shape.m, shape.k)], { device: dev });
      const b = Tensor.zeros([extent(shape.bStrides, shape.k, shape.n)], { device: dev });
      const out = Tensor.zeros([shape.batch * shape.m * shape.n], { device: dev });
      const bias = biasAlong ? Tensor.zeros([biasAlong === 'm' ? shape.m : shape.n], { device: dev }) : null;
      const args: GemmArgs = { ...shape, a, b, out, bias: bias && biasAlong ? { values: bias, along: biasAlong } : undefined };
      return {
        run: (name) => gemmWith(dev, args, 'subgroup', candidates.find((t) => tileName(t) === name)),
        dispose: () => [a, b, out, bias].forEach((t) => t?.dispose()),
      };
    },
  };
}

// ---- matmul ------------------------------------------------------------------------------------------------

/** How matmul(a, b) maps onto strided batched GEMMs. */
interface MatmulPlan {
  batch: number;
  m: number;
  k: number;
  n: number;
  outShape: number[];
  /**
   * 'batched': both sides have the batch (or there is none); 'shared-b': B (2-D or a batch of 1) is shared by every
   * batch of A, so the batch folds into the rows; 'shared-a': A is shared by every batch of B.
   */
  layout: 'batched' | 'shared-b' | 'shared-a';
}

function planMatmul(a: Tensor, b: Tensor): MatmulPlan {
  const fail = (why: string) => new Error(`matmul: ${shapeStr(a.shape)} @ ${shapeStr(b.shape)}: ${why}`);
  if (a.ndim < 2 || a.ndim > 3 || b.ndim < 2 || b.ndim > 3) throw fail('only 2-D and 3-D operands are supported');
  const [m, k] = a.shape.slice(-2);
  const [kb, n] = b.shape.slice(-2);
  if (k !== kb) throw fail(`inner dimensions differ (${k} vs ${kb})`);
  const batchA = a.ndim === 3 ? a.shape[0] : 1;
  const batchB = b.ndim === 3 ? b.shape[0] : 1;
  if (batchA !== batchB && batchA !== 1 && batchB !== 1) throw fail(`batch dimensions do not broadcast (${batchA} vs ${batchB})`);
  const batch = Math.max(batchA, batchB);
  const outShape = a.ndim === 2 && b.ndim === 2 ? [m, n] : [batch, m, n];
  const layout = batchA === batchB ? 'batched' : batchB === 1 ? 'shared-b' : 'shared-a';
  return { batch, m, k, n, outShape, layout };
}

/**
 * torch.matmul for 2-D @ 2-D, batched 3-D @ 3-D, and 3-D @ 2-D / 2-D @ 3-D (the 2-D side, or a batch of 1, is
 * broadcast over the batch). Backward: dA = g @ Bᵀ and dB = Aᵀ @ g, the transposes read through gemm strides,
 * summed over the batch for a broadcast operand.
 */
export function matmul(a: Tensor, b: Tensor): Tensor {
  const plan = planMatmul(a, b);
  const { batch, m, k, n, layout } = plan;
  const device = a.device;
  const out = Tensor.empty(plan.outShape, { device });
  if (layout === 'shared-b') {
    // One [batch*m, k] @ [k, n] GEMM.
    gemm(device, { a, b, out, batch: 1, m: batch * m, n, k, aStrides: [0, k, 1], bStrides: [0, n, 1] });
  } else {
    const aBatch = layout === 'shared-a' ? 0 : m * k;
    gemm(device, { a, b, out, batch, m, n, k, aStrides: [aBatch, k, 1], bStrides: [k * n, n, 1] });
  }
  return record(out, 'matmul', [a, b], (g) => [
    a.requiresGrad ? matmulGradA(g, a, b, plan) : null,
    b.requiresGrad ? matmulGradB(g, a, b, plan) : null,
  ]);
}

/** dA = g @ Bᵀ. */
function matmulGradA(g: Tensor, a: Tensor, b: Tensor, plan: MatmulPlan): Tensor {
  const { batch, m, k, n, layout } = plan;
  const device = g.device;
  if (layout === 'shared-b') {
    const da = Tensor.empty(a.shape, { device });
    gemm(device, { a: g, b, out: da, batch: 1, m: batch * m, n: k, k: n, aStrides: [0, n, 1], bStrides: [0, 1, n] });
    return da;
  }
  const perBatch = Tensor.empty(layout === 'batched' ? a.shape : [batch, m, k], { device });
  gemm(device, { a: g, b, out: perBatch, batch, m, n: k, k: n, aStrides: [m * n, n, 1], bStrides: [k * n, 1, n] });
  if (layout === 'batched') return perBatch;
  // A was shared by every batch: its gradient is the fixed-order sum of the per-batch products.
  const da = sum(perBatch, 0);
  perBatch.dispose();
  return da;
}

/** dB = Aᵀ @ g. */
function matmulGradB(g: Tensor, a: Tensor, b: Tensor, plan: MatmulPlan): Tensor {
  const { batch, m, k, n, layout } = plan;
  const device = g.device;
  const db = Tensor.empty(b.shape, { device });
  if (layout === 'shared-b') {
    // B was shared by every batch: the batch folds into the reduction, one [k, batch*m] @ [batch*m, n] GEMM.
    gemm(device, { a, b: g, out: db, batch: 1, m: k, n, k: batch * m, aStrides: [0, 1, k], bStrides: [0, n, 1] });
  } else {
    const aBatch = layout === 'shared-a' ? 0 : m * k;
    gemm(device, { a, b: g, out: db, batch, m: k, n, k: m, aStrides: [aBatch, 1, k], bStrides: [m * n, n, 1] });
  }
  return db;
}

// ---- linear ------------------------------------------------------------------------------------------------

/**
 * torch.nn.functional.linear: y = x @ weightᵀ + bias, x [..., in], weight [out, in], bias [out].
 * Backward: dx = g @ weight, dweight = gᵀ @ x (a GEMM whose reduction runs over the batch), dbias = column sums of g.
 */
export function linear(x: Tensor, weight: Tensor, bias?: Tensor | null): Tensor {
  if (weight.ndim !== 2) throw new Error(`linear: weight must be [out, in], got ${shapeStr(weight.shape)}`);
  const [outFeatures, inFeatures] = weight.shape;
  if (x.ndim < 1 || x.shape[x.ndim - 1] !== inFeatures) {
    throw new Error(`linear: input ${shapeStr(x.shape)} does not end in ${inFeatures} features (weight ${shapeStr(weight.shape)})`);
  }
  if (bias && (bias.ndim !== 1 || bias.shape[0] !== outFeatures)) {
    throw new Error(`linear: bias must be [${outFeatures}], got ${shapeStr(bias.shape)}`);
  }
  const rows = x.numel / inFeatures; // every leading dimension folds into the GEMM rows
  const device = x.device;
  const out = Tensor.empty([...x.shape.slice(0, -1), outFeatures], { device });
  gemm(device, {
    a: x, b: weight, out, batch: 1, m: rows, n: outFeatures, k: inFeatures,
    aStrides: [0, inFeatures, 1],
    bStrides: [0, 1, inFeatures], // weightᵀ
    bias: bias ? { values: bias, along: 'n' } : undefined,
  });
  const inputs = bias ? [x, weight, bias] : [x, weight];
  return record(out, 'linear', inputs, (g) => {
    let dx: Tensor | null = null;
    let dw: Tensor | null = null;
    if (x.requiresGrad) {
      dx = Tensor.empty(x.shape, { device });
      gemm(device, { a: g, b: weight, out: dx, batch: 1, m: rows, n: inFeatures, k: outFeatures, aStrides: [0, outFeatures, 1], bStrides: [0, inFeatures, 1] });
    }
    if (weight.requiresGrad) {
      dw = Tensor.empty(weight.shape, { device });
      gemm(device, { a: g, b: x, out: dw, batch: 1, m: outFeatures, n: inFeatures, k: rows, aStrides: [0, 1, outFeatures], bStrides: [0, inFeatures, 1] });
    }
    const grads = [dx, dw];
    if (bias) {
      if (!bias.requiresGrad) grads.push(null);
      else {
        const g2 = g.reshape([rows, outFeatures]);
        grads.push(sum(g2, 0));
        g2.dispose();
      }
    }
    return grads;
  });
}
