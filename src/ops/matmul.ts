// GEMM family: the strided batched gemm() primitive (used by linear, matmul and pointwise conv), and the matmul
// and linear ops built on it, forward and backward side by side.
import type { BufferLike, Device } from '../gpu/device.js';
import { record } from '../autograd/tape.js';
import { Tensor, shapeStr } from '../tensor.js';
import { sum } from './reduce.js';

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
 * - 'subgroup': the fast kernel; a row of invocations shares up to 32 output rows whose A values are loaded once per
 *   8 rows and handed around with subgroupBroadcast. Needs the 'subgroups' feature and subgroups of 8 or more.
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
export function gemmWith(device: Device, g: GemmArgs, kernel: GemmKernel): void {
  if (g.batch * g.m * g.n === 0) return;
  if (g.k === 0) {
    // Nothing to multiply (and A, B may be empty buffers that cannot be bound): out = bias (+ out).
    const zero = Tensor.zeros([1], { device });
    gemmWith(device, { ...g, a: zero, b: zero, k: 1, aStrides: [0, 0, 0], bStrides: [0, 0, 0] }, kernel === 'plain' ? 'subgroup' : kernel);
    zero.dispose();
    return;
  }
  if (kernel === 'plain' && !isPlain(g)) throw new Error("gemm: the 'plain' kernel needs contiguous row-major A and B");
  for (const part of batchChunks(device, g)) dispatchGemm(device, part, kernel);
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

function dispatchGemm(device: Device, g: GemmArgs, kernel: GemmKernel): void {
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
  const tile = subgroupTile(g.m, g.n, kernel !== 'plain', device.device.limits.maxComputeWorkgroupsPerDimension);
  const rows = tile.swap ? g.n : g.m;
  const cols = tile.swap ? g.m : g.n;
  device.dispatch('matmul_subgroups', 'gemm_sg', {
    bindings: tile.swap ? { ...bindings, a: g.b, b: g.a } : bindings,
    params: { ...base, ...problemParams(g, tile.swap) },
    workgroups: [Math.ceil(cols / (tile.lanes * tile.cols)), Math.ceil(rows / (8 * tile.rowGroups)), g.batch],
    constants: { LANES: tile.lanes, ROW_GROUPS: tile.rowGroups, COLS: tile.cols, ...(kernel === 'plain' ? { PLAIN: 1 } : {}) },
    cost,
  });
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

interface SubgroupTile {
  lanes: 32 | 64; // invocations per workgroup, along the output columns
  rowGroups: 1 | 2 | 4; // 8 output rows each
  cols: 1 | 2; // output columns per invocation
  swap: boolean; // run the transposed problem
}

const SUBGROUP_TILES: Omit<SubgroupTile, 'swap'>[] = [];
// Largest first: on equal cost the bigger tile wins (fewer workgroups, more reuse).
for (const lanes of [64, 32] as const) {
  for (const rowGroups of [4, 2, 1] as const) for (const cols of [2, 1] as const) SUBGROUP_TILES.push({ lanes, rowGroups, cols });
}

/**
 * Work of a tile choice in "load-equivalents": the padded output area times the loads each multiply-add costs
 * (per step of k an invocation loads rowGroups values of A and cols values of B for 8 * rowGroups * cols
 * multiply-adds). Loads dominate the cost on every device measured, so this ranks tiles well enough.
 */
function tileCost(rows: number, cols: number, t: Omit<SubgroupTile, 'swap'>): number {
  const tileRows = 8 * t.rowGroups;
  const tileCols = t.lanes * t.cols;
  const padded = Math.ceil(rows / tileRows) * tileRows * Math.ceil(cols / tileCols) * tileCols;
  return (padded * (t.rowGroups + t.cols)) / (tileRows * t.cols);
}

/** The cheapest tile (and orientation, when allowed) whose grid fits the device's per-dimension limit. */
function subgroupTile(m: number, n: number, allowSwap: boolean, maxGrid: number): SubgroupTile {
  let best: SubgroupTile | null = null;
  let bestCost = Infinity;
  for (const swap of allowSwap ? [false, true] : [false]) {
    const [rows, cols] = swap ? [n, m] : [m, n];
    for (const t of SUBGROUP_TILES) {
      if (Math.ceil(rows / (8 * t.rowGroups)) > maxGrid || Math.ceil(cols / (t.lanes * t.cols)) > maxGrid) continue;
      const cost = tileCost(rows, cols, t);
      if (cost < bestCost) {
        bestCost = cost;
        best = { ...t, swap };
      }
    }
  }
  if (!best) throw new Error(`gemm: a [${m}x${n}] output needs more workgroups than the device's grid allows`);
  return best;
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
