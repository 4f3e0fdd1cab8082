import { describe, expect, it } from 'vitest';
import { Tensor, add, expand, mul, scale, sub } from '../src/index.js';
import { checkOp } from './helpers/check.js';
import { useDevice } from './helpers/device.js';
import * as ref from './reference/elementwise.js';

useDevice();

const shapePairs: [number[], number[]][] = [
  [[1], [1]],
  [[7], [7]],
  [[3, 5], [3, 5]],
  [[2, 3, 5, 7], [1, 3, 1, 1]], // per-channel, NCHW
  [[1, 3, 1, 1], [2, 3, 5, 7]], // broadcast on the left operand
  [[4, 1, 6], [5, 1]], // both sides broadcast, ranks differ
  [[13, 29], [29]],
  [[1, 1, 1], [1]],
];

describe('binary ops with broadcasting (tolerance: forward and backward rel 1e-5; reference vs FD 1e-6)', () => {
  for (const op of ['add', 'sub', 'mul'] as const) {
    for (const [as, bs] of shapePairs) {
      it(`${op} [${as}] with [${bs}]`, async () => {
        const fn = { add, sub, mul }[op];
        await checkOp({
          name: `${op}([${as}], [${bs}])`,
          inputs: { a: { shape: as }, b: { shape: bs } },
          gpu: (t) => fn(t.a, t.b),
          ref: (x) => ref.binary(op, x.a, as, x.b, bs),
          refBackward: (x, g) => ref.binaryBackward(op, x.a, as, x.b, bs, g),
          tol: { fwd: 1e-5, bwd: 1e-5 },
        });
      });
    }
  }

  it('more than 65,535 workgroups in one dimension (17M elements)', async () => {
    const n = 65_536 * 256 + 37; // one more workgroup than fits in x, plus a ragged tail
    const a = Tensor.full([n], 1.5);
    const b = Tensor.full([n], 2);
    const out = await mul(a, b).toArray();
    expect(out.length).toBe(n);
    expect(out[0]).toBe(3);
    expect(out[65_535 * 256 + 5]).toBe(3);
    expect(out[n - 1]).toBe(3);
    expect(out.every((v) => v === 3)).toBe(true);
  });

  it('rejects shapes that do not broadcast, naming both', () => {
    const a = Tensor.zeros([2, 3]);
    const b = Tensor.zeros([4]);
    expect(() => add(a, b)).toThrow(/add: shapes \[2, 3\] and \[4\] do not broadcast/);
  });
});

describe('scale and expand', () => {
  it('scale', async () => {
    await checkOp({
      name: 'scale',
      inputs: { a: { shape: [5, 3] } },
      gpu: (t) => scale(t.a, -2.5),
      ref: (x) => x.a.map((v) => v * -2.5),
      refBackward: (_x, g) => ({ a: g.map((v) => v * -2.5) }),
      tol: { fwd: 1e-6, bwd: 1e-6 },
    });
  });
  for (const [from, to] of [
    [[3, 1], [2, 3, 4]],
    [[1], [5]],
    [[1, 16, 1, 1], [3, 16, 5, 5]],
  ]) {
    it(`expand [${from}] -> [${to}]`, async () => {
      await checkOp({
        name: 'expand',
        inputs: { a: { shape: from } },
        gpu: (t) => expand(t.a, to),
        ref: (x) => ref.expand(x.a, from, to),
        tol: { fwd: 1e-6, bwd: 1e-5 },
      });
    });
  }
});
