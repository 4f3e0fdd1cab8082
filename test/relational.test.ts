import { describe, expect, it } from 'vitest';
import { Tensor, rng } from '../src/index.js';
import { cdist, l2Normalize, rkdAngle, rkdDistance } from '../src/ops/relational.js';
import { checkOp, expectClose } from './helpers/check.js';
import { useDevice } from './helpers/device.js';
import * as ref from './reference/relational.js';

useDevice();

/** Seeded normal rows; rows listed in `copies` as [to, from] are duplicates of earlier rows. */
function rowsWithCopies(rows: number, d: number, copies: [number, number][], seed = 7): Float32Array {
  const next = rng(seed);
  const data = new Float32Array(rows * d);
  for (let i = 0; i < data.length; i++) data[i] = Math.sqrt(-2 * Math.log(1 - next())) * Math.cos(2 * Math.PI * next());
  for (const [to, from] of copies) data.copyWithin(to * d, from * d, from * d + d);
  return data;
}

async function values(t: Tensor): Promise<Float32Array> {
  return (await t.toArray()) as Float32Array;
}

function expectAllFinite(v: ArrayLike<number>, what: string): void {
  for (let i = 0; i < v.length; i++) if (!Number.isFinite(v[i])) expect.fail(`${what}: [${i}] = ${v[i]}`);
}

// Reference vs finite differences: 1e-6, or 3e-5 at D >= 84 where rounding in the probe's large output sum
// (h = 1e-6) dominates the finite-difference error.
const fdTol = (d: number) => (d >= 84 ? 3e-5 : 1e-6);

describe('cdist (tolerance: forward rel 1e-5, backward rel 1e-4; reference vs FD 1e-6, 3e-5 at D >= 84)', () => {
  // [M, N, D]: batch 1, M != N, odd sizes, D = 1, 3, 84, 512, and 128 rows (fewer FD probes).
  const cases: [number, number, number, number?][] = [
    [1, 1, 1],
    [1, 5, 3],
    [7, 5, 3],
    [2, 13, 1],
    [5, 7, 84],
    [29, 13, 84],
    [16, 16, 512],
    [7, 29, 512],
    [128, 96, 84, 6],
    [128, 128, 3, 6],
  ];
  for (const [m, n, d, fdSamples] of cases) {
    it(`[${m}, ${d}] x [${n}, ${d}]`, async () => {
      await checkOp({
        name: `cdist [${m},${d}] [${n},${d}]`,
        inputs: { a: { shape: [m, d] }, b: { shape: [n, d] } },
        gpu: (t) => cdist(t.a, t.b),
        ref: (x) => ref.cdist(x.a, x.b, m, n, d),
        refBackward: (x, g) => ref.cdistBackward(x.a, x.b, m, n, d, g),
        tol: { fwd: 1e-5, bwd: 1e-4, fd: fdTol(d) },
        fdSamples,
      });
    });
  }

  it('identical rows (d = 0 entries): gradient contributions exactly 0, no NaN', async () => {
    // b holds copies of a's rows 0 and 3, and a row 2 repeated inside a.
    const d = 5;
    const a = rowsWithCopies(6, d, [[2, 4]], 11);
    const bRows = rowsWithCopies(4, d, [], 12);
    bRows.set(a.subarray(0, d), 0);
    bRows.set(a.subarray(3 * d, 4 * d), 2);
    await checkOp({
      name: 'cdist with identical rows',
      inputs: { a: { shape: [6, d], data: a }, b: { shape: [4, d], data: bRows } },
      gpu: (t) => cdist(t.a, t.b),
      ref: (x) => ref.cdist(x.a, x.b, 6, 4, d),
      refBackward: (x, g) => ref.cdistBackward(x.a, x.b, 6, 4, d, g),
      tol: { fwd: 1e-5, bwd: 1e-4 },
    });
  });

  it('cdist(e, e) (the distance-metric KD use): diagonal exactly 0, both gradients accumulate into e', async () => {
    const [batch, d] = [13, 84];
    await checkOp({
      name: 'cdist(e, e)',
      inputs: { e: { shape: [batch, d] } },
      gpu: (t) => cdist(t.e, t.e),
      ref: (x) => ref.cdist(x.e, x.e, batch, batch, d),
      refBackward: (x, g) => {
        const { a, b } = ref.cdistBackward(x.e, x.e, batch, batch, d, g);
        return { e: a.map((v, i) => v + b[i]) };
      },
      tol: { fwd: 1e-5, bwd: 1e-4, fd: fdTol(d) },
    });
    const out = await values(cdist(Tensor.randn([batch, d], { seed: 4 }), Tensor.randn([batch, d], { seed: 4 })));
    for (let i = 0; i < batch; i++) expect(out[i * batch + i]).toBe(0);
  });

  it('all rows equal: distances and gradients exactly 0', async () => {
    const a = Tensor.full([5, 3], 0.75, { requiresGrad: true });
    const b = Tensor.full([4, 3], 0.75, { requiresGrad: true });
    const out = cdist(a, b);
    expect([...(await values(out))].every((v) => v === 0)).toBe(true);
    out.backward(Tensor.ones([5, 4]));
    expect([...(await values(a.grad!))].every((v) => v === 0)).toBe(true);
    expect([...(await values(b.grad!))].every((v) => v === 0)).toBe(true);
  });

  it('rejects mismatched feature sizes and non-2-D inputs', () => {
    expect(() => cdist(Tensor.zeros([3, 4]), Tensor.zeros([3, 5]))).toThrow(/cdist: a \[3, 4\] and b \[3, 5\] differ/);
    expect(() => cdist(Tensor.zeros([2, 3, 4]), Tensor.zeros([3, 4]))).toThrow(/cdist: a must be 2-D/);
  });
});

describe('rkdDistance (tolerance: forward rel 1e-5, backward rel 1e-4; reference vs FD 1e-6, 3e-5 at D >= 84)', () => {
  // [B, D]
  const cases: [number, number, number?][] = [
    [5, 3],
    [7, 1],
    [7, 84],
    [16, 512],
    [16, 3],
    [128, 84, 4],
  ];
  for (const [batch, d, fdSamples] of cases) {
    it(`B = ${batch}, D = ${d}`, async () => {
      await checkOp({
        name: `rkdDistance [${batch},${d}]`,
        inputs: { e: { shape: [batch, d] } },
        gpu: (t) => rkdDistance(t.e),
        ref: (x) => ref.rkdDistance(x.e, batch, d),
        refBackward: (x, g) => ({ e: ref.rkdDistanceBackward(x.e, batch, d, g) }),
        tol: { fwd: 1e-5, bwd: 1e-4, fd: fdTol(d) },
        fdSamples,
      });
    });
  }

  it('B = 2: psi = [[0, 1], [1, 0]] whatever e is, so the gradient vanishes (|grad| < 1e-6)', async () => {
    for (const d of [1, 3, 84]) {
      const e = Tensor.randn([2, d], { seed: d, requiresGrad: true });
      const psi = rkdDistance(e);
      const x = Float64Array.from(await values(e));
      expectClose(await values(psi), ref.rkdDistance(x, 2, d), 1e-6, `rkdDistance [2,${d}] forward`);
      psi.backward(Tensor.randn([2, 2], { seed: 8 }));
      expect(Math.max(...(await values(e.grad!)).map(Math.abs))).toBeLessThan(1e-6);
    }
  });

  it('B = 1: psi = 0 (mu = 0 is guarded), gradient exactly 0', async () => {
    const e = Tensor.randn([1, 3], { seed: 3, requiresGrad: true });
    const psi = rkdDistance(e);
    expect([...(await values(psi))]).toEqual([0]);
    psi.backward(Tensor.ones([1, 1]));
    expect([...(await values(e.grad!))].every((v) => v === 0)).toBe(true);
  });

  it('all rows equal (every distance 0): psi = 0, gradient exactly 0, no NaN', async () => {
    const e = Tensor.full([6, 84], -1.25, { requiresGrad: true });
    const psi = rkdDistance(e);
    expect([...(await values(psi))].every((v) => v === 0)).toBe(true);
    psi.backward(Tensor.randn([6, 6], { seed: 5 }));
    expect([...(await values(e.grad!))].every((v) => v === 0)).toBe(true);
  });

  it('duplicated samples in the batch (rows 3 = 0, 5 = 2 = 6)', async () => {
    const d = 7;
    const data = rowsWithCopies(8, d, [[3, 0], [5, 2], [6, 2]], 21);
    await checkOp({
      name: 'rkdDistance with duplicates',
      inputs: { e: { shape: [8, d], data } },
      gpu: (t) => rkdDistance(t.e),
      ref: (x) => ref.rkdDistance(x.e, 8, d),
      refBackward: (x, g) => ({ e: ref.rkdDistanceBackward(x.e, 8, d, g) }),
      tol: { fwd: 1e-5, bwd: 1e-4 },
    });
  });

  it('the eps guard can be set (eps above mu: psi = d / eps, no gradient through mu)', async () => {
    await checkOp({
      name: 'rkdDistance eps = 10',
      inputs: { e: { shape: [5, 3], std: 0.5 } },
      gpu: (t) => rkdDistance(t.e, { eps: 10 }),
      ref: (x) => ref.rkdDistance(x.e, 5, 3, 10),
      refBackward: (x, g) => ({ e: ref.rkdDistanceBackward(x.e, 5, 3, g, 10) }),
      tol: { fwd: 1e-5, bwd: 1e-4 },
    });
  });
});

describe('rkdAngle, vertex-first layout (tolerance: forward rel 2e-4 at D = 512 else 1e-4, backward rel 1e-4; reference vs FD 1e-6, 3e-5 at D >= 84)', () => {
  // [B, D]
  const cases: [number, number, number?][] = [
    [5, 3],
    [7, 1],
    [7, 84],
    [16, 512],
    [16, 3],
    [128, 3, 4],
    [128, 84, 2],
  ];
  for (const [batch, d, fdSamples] of cases) {
    it(`B = ${batch}, D = ${d}`, async () => {
      await checkOp({
        name: `rkdAngle [${batch},${d}]`,
        inputs: { e: { shape: [batch, d] } },
        gpu: (t) => rkdAngle(t.e),
        ref: (x) => ref.rkdAngle(x.e, batch, d),
        refBackward: (x, g) => ({ e: ref.rkdAngleBackward(x.e, batch, d, g) }),
        tol: { fwd: d >= 512 ? 2e-4 : 1e-4, bwd: 1e-4, fd: fdTol(d) },
        fdSamples,
      });
    });
  }

  it('B = 2: every angle is 0 or 1 whatever e is, so the gradient vanishes (|grad| < 1e-6)', async () => {
    for (const d of [1, 3, 84]) {
      const e = Tensor.randn([2, d], { seed: d, requiresGrad: true });
      const angle = rkdAngle(e);
      const x = Float64Array.from(await values(e));
      expectClose(await values(angle), ref.rkdAngle(x, 2, d), 1e-6, `rkdAngle [2,${d}] forward`);
      angle.backward(Tensor.randn([2, 2, 2], { seed: 8 }));
      expect(Math.max(...(await values(e.grad!)).map(Math.abs))).toBeLessThan(1e-6);
    }
  });

  it('layout: angle[i][j][k] is the cosine of the angle at vertex e_i between e_j and e_k', async () => {
    // A right isosceles triangle: 90 degrees at e0, 45 degrees at e1 and e2.
    const angle = await values(rkdAngle(Tensor.fromArray([0, 0, 2, 0, 0, 2], [3, 2])));
    const at = (i: number, j: number, k: number) => angle[(i * 3 + j) * 3 + k];
    expect(at(0, 1, 2)).toBeCloseTo(Math.cos(Math.PI / 2), 6);
    expect(at(1, 0, 2)).toBeCloseTo(Math.cos(Math.PI / 4), 6);
    expect(at(2, 0, 1)).toBeCloseTo(Math.cos(Math.PI / 4), 6);
    expect(at(1, 2, 2)).toBeCloseTo(1, 6); // the same edge twice
    expect(at(1, 1, 2)).toBe(0); // u = 0 on the diagonal
  });

  it('B = 1: output 0, gradient exactly 0', async () => {
    const e = Tensor.randn([1, 5], { seed: 9, requiresGrad: true });
    const angle = rkdAngle(e);
    expect([...(await values(angle))]).toEqual([0]);
    angle.backward(Tensor.ones([1, 1, 1]));
    expect([...(await values(e.grad!))].every((v) => v === 0)).toBe(true);
  });

  it('all rows equal: output 0, gradient exactly 0, no NaN', async () => {
    const e = Tensor.full([5, 84], 0.5, { requiresGrad: true });
    const angle = rkdAngle(e);
    expect([...(await values(angle))].every((v) => v === 0)).toBe(true);
    angle.backward(Tensor.randn([5, 5, 5], { seed: 4 }));
    expect([...(await values(e.grad!))].every((v) => v === 0)).toBe(true);
  });

  it('duplicated samples (rows 4 = 1, 6 = 2): degenerate pairs carry no gradient, the rest is exact', async () => {
    // The angle is not differentiable where two samples coincide (finite differences blow up there), so the
    // backward is checked against the reference backward, which masks exactly those pairs.
    const [batch, d] = [7, 5];
    const data = rowsWithCopies(batch, d, [[4, 1], [6, 2]], 31);
    const x = Float64Array.from(data);
    const e = Tensor.fromArray(data, [batch, d], { requiresGrad: true });
    const angle = rkdAngle(e);
    const got = await values(angle);
    expectClose(got, ref.rkdAngle(x, batch, d), 1e-4, 'rkdAngle forward with duplicates');
    const g = Float64Array.from(rowsWithCopies(batch ** 3, 1, [], 32));
    angle.backward(Tensor.fromArray(g, [batch, batch, batch]));
    const grad = await values(e.grad!);
    expectAllFinite(grad, 'rkdAngle gradient with duplicates');
    expectClose(grad, ref.rkdAngleBackward(x, batch, d, g), 1e-4, 'rkdAngle backward with duplicates');
  });

  it('is deterministic: the same inputs give the same bits', async () => {
    const run = async () => {
      const e = Tensor.randn([16, 84], { seed: 2, requiresGrad: true });
      const angle = rkdAngle(e);
      angle.backward(Tensor.randn([16, 16, 16], { seed: 3 }));
      return [await values(angle), await values(e.grad!)];
    };
    const [first, second] = [await run(), await run()];
    expect(second[0]).toEqual(first[0]);
    expect(second[1]).toEqual(first[1]);
  });
});

describe('l2Normalize = F.normalize (tolerance: forward rel 1e-6, backward rel 1e-5; reference vs FD 1e-6)', () => {
  const cases: [number[], number][] = [
    [[1, 1], 1],
    [[7, 3], 1],
    [[5, 84], 1],
    [[16, 512], 1],
    [[13, 5], 0],
    [[2, 16, 5, 7], 1], // NCHW, across channels
    [[3, 4, 29], -1],
  ];
  for (const [shape, dim] of cases) {
    it(`[${shape}] dim ${dim}`, async () => {
      const axis = dim < 0 ? dim + shape.length : dim;
      await checkOp({
        name: `l2Normalize [${shape}] dim ${dim}`,
        inputs: { x: { shape } },
        gpu: (t) => l2Normalize(t.x, { dim }),
        ref: (x) => ref.l2Normalize(x.x, shape, axis),
        refBackward: (x, g) => ({ x: ref.l2NormalizeBackward(x.x, shape, axis, g) }),
        tol: { fwd: 1e-6, bwd: 1e-5 },
      });
    });
  }

  it('rows below eps are divided by eps (clamp active, eps = 1)', async () => {
    await checkOp({
      name: 'l2Normalize eps = 1',
      inputs: { x: { shape: [6, 5], std: 0.05 } },
      gpu: (t) => l2Normalize(t.x, { eps: 1 }),
      ref: (x) => ref.l2Normalize(x.x, [6, 5], 1, 1),
      refBackward: (x, g) => ({ x: ref.l2NormalizeBackward(x.x, [6, 5], 1, g, 1) }),
      tol: { fwd: 1e-6, bwd: 1e-5 },
    });
  });

  it('a zero row: output 0 and PyTorch gradient g / eps, finite', async () => {
    const data = new Float32Array([0, 0, 0, 0, 3, 4]);
    const x = Tensor.fromArray(data, [2, 3], { requiresGrad: true });
    const y = l2Normalize(x);
    expectClose(await values(y), ref.l2Normalize(Float64Array.from(data), [2, 3], 1), 1e-6, 'forward');
    const g = Float64Array.from([0.5, -1, 2, 1, 1, 1]);
    y.backward(Tensor.fromArray(g, [2, 3]));
    const grad = await values(x.grad!);
    expectAllFinite(grad, 'gradient');
    const want = ref.l2NormalizeBackward(Float64Array.from(data), [2, 3], 1, g);
    expectClose(grad.subarray(0, 3), want.subarray(0, 3), 1e-6, 'zero row gradient');
    expectClose(grad.subarray(3), want.subarray(3), 1e-5, 'other row gradient');
  });

  it('rejects an out-of-range dim', () => {
    expect(() => l2Normalize(Tensor.zeros([2, 3]), { dim: 2 })).toThrow(/l2Normalize: dim 2 out of range/);
  });
});
