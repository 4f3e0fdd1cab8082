import { describe, expect, it } from 'vitest';
import { Tensor, mean, sum } from '../src/index.js';
import { checkOp } from './helpers/check.js';
import { useDevice } from './helpers/device.js';
import { sumAxes } from './reference/reduce.js';
import { expand } from './reference/elementwise.js';

useDevice();

const cases: [number[], number[] | undefined, boolean][] = [
  [[1], undefined, false],
  [[7], [0], false],
  [[3, 5], [1], false],
  [[3, 5], [0], true],
  [[2, 3, 5, 7], [0, 2, 3], true], // per-channel statistics of NCHW
  [[2, 3, 5, 7], [1], false],
  [[13, 1, 29], [-1], false],
  [[4, 6, 5], undefined, false], // everything
  [[64, 84], [0], false],
];

describe('sum / mean over axes (tolerance: rel 1e-5)', () => {
  for (const op of ['sum', 'mean'] as const) {
    for (const [shape, dim, keepdim] of cases) {
      it(`${op}([${shape}], dim=${dim === undefined ? 'all' : `[${dim}]`}, keepdim=${keepdim})`, async () => {
        const axes = (dim ?? shape.map((_, i) => i)).map((a) => (a < 0 ? a + shape.length : a));
        const keptShape = shape.map((d, i) => (axes.includes(i) ? 1 : d));
        const count = axes.reduce((n, a) => n * shape[a], 1);
        await checkOp({
          name: op,
          inputs: { x: { shape } },
          gpu: (t) => (op === 'sum' ? sum : mean)(t.x, dim, keepdim),
          ref: (x) => sumAxes(x.x, shape, axes, op === 'mean'),
          refBackward: (_x, g) => ({ x: expand(g, keptShape, shape).map((v) => (op === 'mean' ? v / count : v)) }),
          tol: { fwd: 1e-5, bwd: 1e-5 },
        });
      });
    }
  }

  it('output shapes follow torch (keepdim or not)', () => {
    const x = Tensor.zeros([2, 3, 4]);
    expect(sum(x, 1).shape).toEqual([2, 4]);
    expect(sum(x, [0, 2], true).shape).toEqual([1, 3, 1]);
    expect(mean(x).shape).toEqual([]);
  });

  it('more than 65,535 output elements (one workgroup each)', async () => {
    const rows = 70_001;
    const x = Tensor.ones([rows, 3]);
    const out = await sum(x, 1).toArray();
    expect(out.length).toBe(rows);
    expect(out.every((v) => v === 3)).toBe(true);
  });

  it('rejects an axis out of range', () => {
    expect(() => sum(Tensor.zeros([2, 3]), 2)).toThrow(/axis 2 out of range for shape \[2, 3\]/);
  });
});
