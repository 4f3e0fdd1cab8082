import { describe, expect, it } from 'vitest';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  Tensor, gemm, gemmWith, hasSubgroupGemm, linear, matmul, rng, subgroupTiles, tileName, type GemmArgs, type GemmKernel, type SubgroupTile,
} from '../src/index.js';
import { vecLoads } from '../src/ops/matmul.js';
import { autotunePending, pendingTunes, resetAutotune } from '../src/gpu/autotune.js';
import { checkOp, expectClose } from './helpers/check.js';
import { useDevice } from './helpers/device.js';
import * as ref from './reference/matmul.js';

const device = useDevice();

function randomData(count: number, seed: number): Float32Array {
  const next = rng(seed);
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) out[i] = 2 * next() - 1;
  return out;
}

type Layout = 'rows' | 'transposed';

interface Case {
  batch: number;
  m: number;
  n: number;
  k: number;
  aLayout: Layout; // 'rows': A stored [m, k]; 'transposed': A stored [k, m] and read through strides
  bLayout: Layout; // 'rows': B stored [k, n]; 'transposed': B stored [n, k]
  shared: 'none' | 'a' | 'b'; // which operand has one batch, broadcast with batch stride 0
  /** Extra elements at the end of every stored row (a leading dimension larger than the row). */
  pad?: number;
  alpha?: number;
  bias?: 'm' | 'n';
  accumulate?: boolean;
}

/**
 * float32 dot products lose about sqrt(k) ulps of the running sum: 1e-5 holds for reductions up to ~100 terms,
 * longer ones get 5e-5 (still 20x below "aim at 1e-4").
 */
function tolFor(reductionLength: number): number {
  return reductionLength > 100 ? 5e-5 : 1e-5;
}

/** Stored shapes and strides of a case's operands (element strides over (batch, row, column) of the logical operand). */
function storage(c: Case) {
  const { m, n, k } = c;
  const pad = c.pad ?? 0;
  const aRows = c.aLayout === 'rows' ? m : k;
  const aLead = (c.aLayout === 'rows' ? k : m) + pad;
  const aStrides: [number, number, number] = [c.shared === 'a' ? 0 : aRows * aLead, c.aLayout === 'rows' ? aLead : 1, c.aLayout === 'rows' ? 1 : aLead];
  const bRows = c.bLayout === 'rows' ? k : n;
  const bLead = (c.bLayout === 'rows' ? n : k) + pad;
  const bStrides: [number, number, number] = [c.shared === 'b' ? 0 : bRows * bLead, c.bLayout === 'rows' ? bLead : 1, c.bLayout === 'rows' ? 1 : bLead];
  return { aRows, aLead, aStrides, bRows, bLead, bStrides };
}

/** The vec4 load modes a vec tile takes for a case (operands at offset 0, as checkGemm binds them). */
function vecModeOf(c: Case, tile: SubgroupTile) {
  const { aStrides, bStrides } = storage(c);
  const whole = { buffer: null as unknown as GPUBuffer, byteOffset: 0, byteLength: 4 };
  return vecLoads({ a: whole, b: whole, out: whole, batch: c.batch, m: c.m, n: c.n, k: c.k, aStrides, bStrides }, tile);
}

/** Runs one gemm case on `kernel` and checks it against the float64 reference. */
async function checkGemm(kernel: GemmKernel | 'auto', c: Case, tol = tolFor(c.k), tile?: SubgroupTile): Promise<void> {
  const { batch, m, n, k } = c;
  const { aRows, aLead, aStrides, bRows, bLead, bStrides } = storage(c);
  const aBatches = c.shared === 'a' ? 1 : batch;
  const bBatches = c.shared === 'b' ? 1 : batch;

  const aData = randomData(Math.max(1, aBatches * aRows * aLead), 11 + m + 3 * k);
  const bData = randomData(Math.max(1, bBatches * bRows * bLead), 17 + n + 5 * k);
  const biasData = c.bias ? randomData(c.bias === 'm' ? m : n, 23) : null;
  const prior = c.accumulate ? randomData(batch * m * n, 29) : null;

  const a = Tensor.fromArray(aData);
  const b = Tensor.fromArray(bData);
  const bias = biasData ? Tensor.fromArray(biasData) : null;
  const out = prior ? Tensor.fromArray(prior) : Tensor.full([batch * m * n], Number.NaN); // NaN: every element must be written
  const args: GemmArgs = {
    a, b, out, batch, m, n, k, aStrides, bStrides,
    alpha: c.alpha,
    bias: bias && c.bias ? { values: bias, along: c.bias } : undefined,
    accumulate: c.accumulate,
  };
  if (kernel === 'auto') gemm(device(), args);
  else gemmWith(device(), args, kernel, tile);
  const got = await out.toArray();
  const want = ref.gemm(aData, bData, {
    batch, m, n, k, aStrides, bStrides,
    alpha: c.alpha,
    bias: biasData && c.bias ? { values: biasData, along: c.bias } : undefined,
    accumulateInto: prior ?? undefined,
  });
  expectClose(got, want, tol, `${kernel}${tile ? ` (${tileName(tile)})` : ''} gemm ${JSON.stringify(c)}`);
  for (const t of [a, b, out, bias]) t?.dispose();
}

/** Odd sizes, sizes that are not multiples of any tile, degenerate 1s, and the student's 84/11/5. */
const SIZES: [number, number, number][] = [
  [1, 1, 1],
  [3, 7, 13],
  [13, 29, 7],
  [84, 11, 5],
  [7, 84, 3],
  [11, 1, 84],
  [1, 130, 29],
  [65, 33, 16],
];

function kernelsUnderTest(): GemmKernel[] {
  return hasSubgroupGemm(device()) ? ['naive', 'tiled', 'subgroup'] : ['naive', 'tiled'];
}

describe('gemm against the float64 reference (tolerance: rel 1e-5; 5e-5 for k > 100)', () => {
  it('the device offers the subgroup kernel when it has subgroups of 8 or more', () => {
    const dev = device();
    const minSize = (dev.adapter.info as { subgroupMinSize?: number }).subgroupMinSize ?? 0;
    expect(hasSubgroupGemm(dev)).toBe(dev.device.features.has('subgroups') && minSize >= 8);
  });

  for (const kernel of ['naive', 'tiled', 'subgroup'] as const) {
    it(`${kernel}: every stride combination (A, B transposed or not; batch shared by A, by B, or by none)`, async () => {
      // Only 'subgroup' can be missing (a device without subgroups); the first test checks that is right.
      if (!kernelsUnderTest().includes(kernel)) return expect(hasSubgroupGemm(device())).toBe(false);
      let index = 0;
      for (const [m, n, k] of SIZES) {
        for (const aLayout of ['rows', 'transposed'] as const) {
          for (const bLayout of ['rows', 'transposed'] as const) {
            for (const shared of ['none', 'a', 'b'] as const) {
              const batch = shared === 'none' ? 2 : 3;
              // Rotate bias / accumulate / alpha through the cases so each combination meets each size.
              const bias = (['m', 'n', undefined] as const)[index % 3];
              await checkGemm(kernel, { batch, m, n, k, aLayout, bLayout, shared, bias, accumulate: index % 4 === 1, alpha: index % 5 === 2 ? -0.75 : undefined });
              index++;
            }
          }
        }
      }
    });

    it(`${kernel}: bias per row and per column, alpha, accumulate`, async () => {
      if (!kernelsUnderTest().includes(kernel)) return expect(hasSubgroupGemm(device())).toBe(false);
      for (const bias of ['m', 'n', undefined] as const) {
        for (const accumulate of [false, true]) {
          await checkGemm(kernel, { batch: 2, m: 13, n: 29, k: 7, aLayout: 'rows', bLayout: 'transposed', shared: 'none', bias, accumulate, alpha: 0.5 });
          await checkGemm(kernel, { batch: 1, m: 84, n: 3, k: 11, aLayout: 'transposed', bLayout: 'rows', shared: 'a', bias, accumulate, alpha: -2 });
        }
      }
    });

    it(`${kernel}: leading dimensions larger than the rows, and tile edges`, async () => {
      if (!kernelsUnderTest().includes(kernel)) return expect(hasSubgroupGemm(device())).toBe(false);
      for (const [m, n, k] of [[31, 63, 9], [33, 65, 17], [64, 128, 8], [65, 129, 3], [8, 32, 5], [9, 257, 2]] as const) {
        await checkGemm(kernel, { batch: 2, m, n, k, aLayout: 'rows', bLayout: 'rows', shared: 'none', pad: 3, bias: 'n' });
        await checkGemm(kernel, { batch: 1, m, n, k, aLayout: 'transposed', bLayout: 'transposed', shared: 'b', pad: 1, accumulate: true });
      }
    });
  }

  it('plain (contiguous row-major A and B only) matches the reference, and refuses strided operands', async () => {
    if (!hasSubgroupGemm(device())) return expect(hasSubgroupGemm(device())).toBe(false);
    for (const [m, n, k] of [...SIZES, [64, 784, 32]] as [number, number, number][]) {
      await checkGemm('plain', { batch: 2, m, n, k, aLayout: 'rows', bLayout: 'rows', shared: 'none', bias: 'm' });
      await checkGemm('plain', { batch: 3, m, n, k, aLayout: 'rows', bLayout: 'rows', shared: 'a', accumulate: true });
    }
    const t = Tensor.zeros([16]);
    expect(() => gemmWith(device(), { a: t, b: t, out: Tensor.zeros([16]), batch: 1, m: 4, n: 4, k: 4, aStrides: [0, 1, 4], bStrides: [0, 4, 1] }, 'plain')).toThrow(/plain/);
  });

  it('subgroup: every tile the autotuner can pick (folded batch, batch grid, both orientations, tile edges)', async () => {
    if (!hasSubgroupGemm(device())) return expect(hasSubgroupGemm(device())).toBe(false);
    const tiles = subgroupTiles();
    expect(tiles.length).toBe(72);
    for (const tile of tiles) {
      // A shared by the batch (the pointwise-conv forward and input gradient): the batch folds into the columns;
      // 49 pixels per image, so folded columns cross image boundaries inside a workgroup. k = 13 leaves a partial
      // unrolled step (ku = 4).
      await checkGemm('subgroup', { batch: 3, m: 37, n: 49, k: 13, aLayout: 'rows', bLayout: 'rows', shared: 'a', bias: 'm' }, 1e-5, tile);
      await checkGemm('subgroup', { batch: 2, m: 19, n: 70, k: 6, aLayout: 'transposed', bLayout: 'rows', shared: 'a', accumulate: true, alpha: -0.5 }, 1e-5, tile);
      // B shared: folds only when swapped (Bᵀ plays A). Neither shared (the per-image weight gradient): batch grid.
      await checkGemm('subgroup', { batch: 2, m: 45, n: 21, k: 9, aLayout: 'rows', bLayout: 'transposed', shared: 'b', bias: 'n' }, 1e-5, tile);
      await checkGemm('subgroup', { batch: 2, m: 33, n: 17, k: 50, aLayout: 'rows', bLayout: 'transposed', shared: 'none', bias: 'n', pad: 1 }, 1e-5, tile);
    }
  }, 400_000); // 72 tiles x 4 cases, each a pipeline compiled at its first dispatch

  it('subgroup vec4 tiles: every load mode (A along k, B along n, B along k) at tile edges, and the scalar fallbacks', async () => {
    if (!hasSubgroupGemm(device())) return expect(hasSubgroupGemm(device())).toBe(false);
    const tiles = subgroupTiles().filter((t) => t.vec);
    expect(tiles.length).toBe(24);
    const modes = new Set<string>();
    const run = async (c: Case, tile: SubgroupTile) => {
      await checkGemm('subgroup', c, 1e-5, tile);
      modes.add(JSON.stringify(vecModeOf(c, tile)));
    };
    for (const tile of tiles) {
      // The pointwise-conv forward (A = W shared, rows; B = x rows, 28 pixels: the 4 adjacent columns of an
      // invocation end inside the batch), its input gradient (A = Wᵀ: scalar A, B along n) and the per-image
      // weight gradient (A = gy rows, B = xᵀ: along k); odd m and n leave partial tiles.
      await run({ batch: 3, m: 37, n: 28, k: 12, aLayout: 'rows', bLayout: 'rows', shared: 'a', bias: 'm' }, tile);
      await run({ batch: 2, m: 19, n: 36, k: 8, aLayout: 'transposed', bLayout: 'rows', shared: 'a', accumulate: true, alpha: -0.5 }, tile);
      await run({ batch: 2, m: 33, n: 17, k: 20, aLayout: 'rows', bLayout: 'transposed', shared: 'none', bias: 'n' }, tile);
      // Strides that break alignment (a row pad of 1; k not a multiple of 4): the scalar build runs instead.
      await run({ batch: 2, m: 9, n: 12, k: 8, aLayout: 'rows', bLayout: 'rows', shared: 'none', pad: 1 }, tile);
      await run({ batch: 1, m: 9, n: 12, k: 7, aLayout: 'rows', bLayout: 'rows', shared: 'none' }, tile);
    }
    // Every mode the vec tiles can take was exercised.
    for (const mode of ['null', '{"a":true,"b":1}', '{"a":false,"b":1}', '{"a":true,"b":2}', '{"a":true,"b":0}', '{"a":false,"b":2}']) {
      expect(modes, mode).toContain(mode);
    }
  }, 400_000);

  it('autotuner: a GEMM shape waits, is timed, cached on disk, and then picked; WGKD_AUTOTUNE=off uses the default', async () => {
    if (!hasSubgroupGemm(device())) return expect(hasSubgroupGemm(device())).toBe(false);
    const dir = mkdtempSync(join(tmpdir(), 'wgkd-autotune-'));
    const saved = { dir: process.env.WGKD_AUTOTUNE_DIR, mode: process.env.WGKD_AUTOTUNE };
    process.env.WGKD_AUTOTUNE_DIR = dir;
    delete process.env.WGKD_AUTOTUNE;
    resetAutotune(device());
    try {
      // A GEMM of at most 2^22 FLOPs takes the small tile and never waits for the tuner.
      await checkGemm('auto', { batch: 4, m: 40, n: 49, k: 24, aLayout: 'rows', bLayout: 'rows', shared: 'a', bias: 'm' });
      expect(pendingTunes(device())).toBe(0);
      const c: Case = { batch: 4, m: 40, n: 196, k: 72, aLayout: 'rows', bLayout: 'rows', shared: 'a', bias: 'm' }; // 4.5 MFLOP
      await checkGemm('auto', c); // the fixed default, and the shape now waits
      expect(pendingTunes(device())).toBe(1);
      expect(await autotunePending(device(), { rounds: 2 })).toBe(1);
      expect(pendingTunes(device())).toBe(0);
      const files = readdirSync(dir);
      expect(files.length).toBe(1);
      const cached = JSON.parse(readFileSync(join(dir, files[0]), 'utf8'));
      const [entry] = Object.values(cached.choices) as { choice: string; us: Record<string, number> }[];
      expect(subgroupTiles().map(tileName)).toContain(entry.choice);
      expect(Object.keys(entry.us).length).toBeGreaterThan(1);
      for (const us of Object.values(entry.us)) expect(us).toBeGreaterThan(0);
      // A fresh table reads the file back: the shape is answered, nothing waits.
      resetAutotune(device());
      await checkGemm('auto', c);
      expect(pendingTunes(device())).toBe(0);
      process.env.WGKD_AUTOTUNE = 'off';
      await checkGemm('auto', { ...c, n: 50 });
      expect(pendingTunes(device())).toBe(0);
      expect(await autotunePending(device())).toBe(0);
    } finally {
      for (const [key, value] of [['WGKD_AUTOTUNE_DIR', saved.dir], ['WGKD_AUTOTUNE', saved.mode]] as const) {
        if (value === undefined) delete process.env[key];
        else process.env[key] = value;
      }
      resetAutotune(device());
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('the automatic choice (including the transposed problem for tall, narrow outputs)', async () => {
    // Tall and narrow (linear's forward: batch x 11) and wide and flat shapes make the chooser pick both
    // orientations; the pointwise-conv pattern (A shared by the batch) too.
    for (const [m, n, k] of [[64, 11, 256], [300, 3, 5], [3, 300, 5], [11, 256, 64], [64, 49, 128]] as const) {
      await checkGemm('auto', { batch: 1, m, n, k, aLayout: 'rows', bLayout: 'transposed', shared: 'none', bias: 'n' });
      await checkGemm('auto', { batch: 2, m, n, k, aLayout: 'rows', bLayout: 'rows', shared: 'a', bias: 'm', accumulate: true });
    }
  });

  it('k = 0 gives bias (+ the prior output) without reading A or B', async () => {
    for (const kernel of [...kernelsUnderTest(), 'auto'] as const) {
      await checkGemm(kernel, { batch: 2, m: 5, n: 3, k: 0, aLayout: 'rows', bLayout: 'rows', shared: 'none', bias: 'm', accumulate: true });
    }
  });

  it('splits a batch beyond the grid limit (65,535) into aligned chunks', async () => {
    for (const kernel of kernelsUnderTest()) {
      await checkGemm(kernel, { batch: 70_001, m: 2, n: 3, k: 2, aLayout: 'rows', bLayout: 'transposed', shared: 'a', bias: 'n', accumulate: true });
    }
  });

  it('is deterministic: the same inputs give the same bits', async () => {
    const a = Tensor.randn([64, 96], { seed: 3 });
    const b = Tensor.randn([96, 200], { seed: 4 });
    const runs: Float32Array[] = [];
    for (let r = 0; r < 2; r++) runs.push((await matmul(a, b).toArray()) as Float32Array);
    expect(Buffer.from(runs[0].buffer).equals(Buffer.from(runs[1].buffer))).toBe(true);
  });
});

describe('matmul forward and backward (tolerance: rel 1e-5, 5e-5 for reductions > 100; reference vs FD 1e-6)', () => {
  const pairs: [number[], number[]][] = [
    [[7, 13], [13, 5]],
    [[1, 84], [84, 11]],
    [[1, 1], [1, 1]],
    [[3, 5, 7], [3, 7, 2]], // batched
    [[4, 3, 5], [5, 6]], // 3-D @ 2-D: B shared, the batch folds into the rows
    [[2, 3, 5], [1, 5, 6]], // B with a batch of 1
    [[3, 5], [4, 5, 7]], // 2-D @ 3-D: A shared, its gradient sums over the batch
    [[1, 29, 3], [5, 3, 13]], // A with a batch of 1
    [[1, 7, 13], [1, 13, 1]],
  ];
  for (const [as, bs] of pairs) {
    it(`[${as}] @ [${bs}]`, async () => {
      await checkOp({
        name: `matmul([${as}], [${bs}])`,
        inputs: { a: { shape: as }, b: { shape: bs } },
        gpu: (t) => matmul(t.a, t.b),
        ref: (x) => ref.matmul(x.a, as, x.b, bs),
        refBackward: (x, g) => ref.matmulBackward(x.a, as, x.b, bs, g),
        tol: { fwd: 1e-5, bwd: 1e-5 },
      });
    });
  }

  it('large forward: [256, 300] @ [300, 200]', async () => {
    await checkOp({
      name: 'matmul([256, 300], [300, 200])',
      inputs: { a: { shape: [256, 300] }, b: { shape: [300, 200] } },
      gpu: (t) => matmul(t.a, t.b),
      ref: (x) => ref.matmul(x.a, [256, 300], x.b, [300, 200]),
      forwardOnly: true,
      tol: { fwd: tolFor(300) },
    });
  });

  it('rejects shapes that do not multiply, naming both', () => {
    expect(() => matmul(Tensor.zeros([2, 3]), Tensor.zeros([4, 5]))).toThrow(/matmul: \[2, 3\] @ \[4, 5\]: inner dimensions differ/);
    expect(() => matmul(Tensor.zeros([2, 2, 3]), Tensor.zeros([3, 3, 5]))).toThrow(/batch dimensions do not broadcast/);
    expect(() => matmul(Tensor.zeros([3]), Tensor.zeros([3, 5]))).toThrow(/only 2-D and 3-D/);
  });
});

describe('linear forward and backward (tolerance: rel 1e-5, 5e-5 for reductions > 100; reference vs FD 1e-6)', () => {
  const cases: { rows: number[]; inF: number; outF: number; bias: boolean }[] = [
    { rows: [64], inF: 256, outF: 11, bias: true }, // the student's classifier head at batch 64
    { rows: [1], inF: 84, outF: 11, bias: true }, // the sample student's head, batch 1
    { rows: [7], inF: 5, outF: 3, bias: true },
    { rows: [13], inF: 84, outF: 11, bias: false },
    { rows: [2, 3], inF: 5, outF: 16, bias: true }, // leading dimensions fold into the rows
    { rows: [], inF: 5, outF: 1, bias: true }, // a single vector
  ];
  for (const c of cases) {
    const xShape = [...c.rows, c.inF];
    const rows = c.rows.reduce((p, d) => p * d, 1);
    it(`x [${xShape}], weight [${c.outF}, ${c.inF}]${c.bias ? ', bias' : ''}`, async () => {
      await checkOp({
        name: `linear([${xShape}] -> ${c.outF})`,
        inputs: c.bias
          ? { x: { shape: xShape }, weight: { shape: [c.outF, c.inF] }, bias: { shape: [c.outF] } }
          : { x: { shape: xShape }, weight: { shape: [c.outF, c.inF] } },
        gpu: (t) => {
          const y = linear(t.x, t.weight, t.bias);
          expect(y.shape).toEqual([...c.rows, c.outF]);
          return y;
        },
        ref: (x) => ref.linear(x.x, x.weight, c.bias ? x.bias : null, rows, c.inF, c.outF),
        refBackward: (x, g) => {
          const grads = ref.linearBackward(x.x, x.weight, g, rows, c.inF, c.outF);
          return c.bias ? grads : { x: grads.x, weight: grads.weight };
        },
        tol: { fwd: tolFor(c.inF), bwd: tolFor(Math.max(rows, c.outF)) },
      });
    });
  }

  it('only the inputs that require grad get a gradient', async () => {
    const x = Tensor.randn([4, 5], { seed: 1 });
    const weight = Tensor.randn([3, 5], { seed: 2, requiresGrad: true });
    const bias = Tensor.randn([3], { seed: 3 });
    linear(x, weight, bias).backward(Tensor.ones([4, 3]));
    expect(x.grad).toBeNull();
    expect(bias.grad).toBeNull();
    const xs = await x.toArray();
    const want = new Float64Array(15);
    for (let r = 0; r < 4; r++) for (let i = 0; i < 5; i++) for (let o = 0; o < 3; o++) want[o * 5 + i] += xs[r * 5 + i];
    expectClose(await weight.grad!.toArray(), want, 1e-6, 'dweight = gᵀ x with g = 1');
  });

  it('rejects mismatched shapes', () => {
    expect(() => linear(Tensor.zeros([2, 4]), Tensor.zeros([3, 5]))).toThrow(/linear: input \[2, 4\] does not end in 5 features/);
    expect(() => linear(Tensor.zeros([2, 5]), Tensor.zeros([3, 5]), Tensor.zeros([4]))).toThrow(/bias must be \[3\]/);
  });
});
