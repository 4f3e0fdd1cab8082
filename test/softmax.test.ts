import { describe, expect, it } from 'vitest';
import { Tensor, rng } from '../src/index.js';
import { logSoftmax, softmax } from '../src/ops/softmax.js';
import { checkOp, expectClose } from './helpers/check.js';
import { useDevice } from './helpers/device.js';
import * as ref from './reference/softmax.js';

useDevice();

// Rows along the last dim: batch 1, odd sizes, K = 1, 2, 10, 11, 100, a row longer than the 64-wide workgroup,
// and a rank-3 input (leading dims are rows).
const shapes = [[1, 1], [1, 7], [7, 2], [13, 11], [64, 10], [128, 100], [3, 5, 29], [2, 300]];
const temperatures = [1, 2, 4, 10];

describe('softmax / logSoftmax along the last dim (tolerance: forward rel 1e-5, backward rel 1e-5; reference vs FD 1e-5)', () => {
  for (const kind of ['softmax', 'logSoftmax'] as const) {
    const op = kind === 'softmax' ? softmax : logSoftmax;
    const refFwd = kind === 'softmax' ? ref.softmax : ref.logSoftmax;
    const refBwd = kind === 'softmax' ? ref.softmaxBackward : ref.logSoftmaxBackward;
    shapes.forEach((shape, i) => {
      const T = temperatures[i % temperatures.length];
      const k = shape[shape.length - 1];
      it(`${kind} [${shape}] T=${T}`, async () => {
        await checkOp({
          name: `${kind}([${shape}], T=${T})`,
          inputs: { z: { shape, std: 3 } },
          gpu: (t) => op(t.z, { T }),
          ref: (x) => refFwd(x.z, k, T),
          refBackward: (x, g) => ({ z: refBwd(x.z, k, T, g) }),
          tol: { fwd: 1e-5, bwd: 1e-5, fd: 1e-5 },
        });
      });
    });
  }
});

describe('softmax / logSoftmax edge cases (tolerance: forward rel 1e-6 (1e-5 for 1e4-shifted rows), backward rel 1e-5 or tighter; reference vs FD 1e-5 (1e-4 at |x| = 1e4))', () => {
  it('all-equal logits give exactly the uniform distribution', async () => {
    const z = Tensor.full([3, 11], 7.25);
    const p = await softmax(z).toArray();
    const logp = await logSoftmax(z, { T: 4 }).toArray();
    expectClose(p, new Array(33).fill(1 / 11), 1e-6, 'softmax of equal logits');
    expectClose(logp, new Array(33).fill(-Math.log(11)), 1e-6, 'logSoftmax of equal logits');
  });

  it('1e4-scale logits stay finite and exact (row max subtracted; log-softmax never takes log of 0)', async () => {
    const data = [1e4, 0, -1e4, -1e4, 1e4, 1e4 - 1];
    const z = Tensor.fromArray(data, [2, 3]);
    for (const T of temperatures) {
      const p = await softmax(z, { T }).toArray();
      const logp = await logSoftmax(z, { T }).toArray();
      expect(p.every(Number.isFinite) && logp.every(Number.isFinite), `finite at T=${T}`).toBe(true);
      expectClose(p, ref.softmax(Float64Array.from(data), 3, T), 1e-6, `softmax T=${T}`);
      expectClose(logp, ref.logSoftmax(Float64Array.from(data), 3, T), 1e-6, `logSoftmax T=${T}`);
    }
    // Spot values: log p of a logit 2e4 below the max is -2e4 / T, not -inf.
    expect((await logSoftmax(z).toArray())[2]).toBe(-2e4);
  });

  it('logits shifted by 1e4 (the row max must be subtracted before exp): forward and backward', async () => {
    const next = rng(5);
    const data = Array.from({ length: 7 * 11 }, () => 1e4 + 6 * (next() - 0.5));
    for (const kind of ['softmax', 'logSoftmax'] as const) {
      await checkOp({
        name: `${kind} of 1e4 + U(-3, 3) logits`,
        inputs: { z: { shape: [7, 11], data } },
        gpu: (t) => (kind === 'softmax' ? softmax : logSoftmax)(t.z, { T: 2 }),
        ref: (x) => (kind === 'softmax' ? ref.softmax : ref.logSoftmax)(x.z, 11, 2),
        refBackward: (x, g) => ({ z: (kind === 'softmax' ? ref.softmaxBackward : ref.logSoftmaxBackward)(x.z, 11, 2, g) }),
        // The FD step is 1e-6 * |x| = 0.01 at x = 1e4, so the reference-vs-FD check is coarser here.
        tol: { fwd: 1e-5, bwd: 1e-5, fd: 1e-4 },
      });
    }
  });

  it('logits spread over +-1e4 (near one-hot rows): logSoftmax forward/backward, softmax forward', async () => {
    await checkOp({
      name: 'logSoftmax of N(0, 1e4) logits',
      inputs: { z: { shape: [7, 11], std: 1e4 } },
      gpu: (t) => logSoftmax(t.z, { T: 4 }),
      ref: (x) => ref.logSoftmax(x.z, 11, 4),
      refBackward: (x, g) => ({ z: ref.logSoftmaxBackward(x.z, 11, 4, g) }),
      tol: { fwd: 1e-6, bwd: 1e-6, fd: 1e-5 },
    });
    // softmax's gradient is ~1e-300 here (one-hot rows), below f32: only its forward is meaningful.
    await checkOp({
      name: 'softmax of N(0, 1e4) logits',
      inputs: { z: { shape: [7, 11], std: 1e4 } },
      gpu: (t) => softmax(t.z, { T: 4 }),
      ref: (x) => ref.softmax(x.z, 11, 4),
      forwardOnly: true,
      tol: { fwd: 1e-6 },
    });
  });

  it('more than 65,535 rows (one workgroup each, folded over x and y)', async () => {
    const rows = 70_001;
    const data = new Float32Array(rows * 3);
    for (let r = 0; r < rows; r++) data.set([r % 5, 0, -(r % 3)], r * 3);
    const p = await softmax(Tensor.fromArray(data, [rows, 3])).toArray();
    expectClose(p, ref.softmax(Float64Array.from(data), 3), 1e-6, 'softmax over 70,001 rows');
  });

  it('the dim option: dim=-1 and dim=ndim-1 agree; any other dim is a clear error', async () => {
    const z = Tensor.randn([4, 6], { seed: 3 });
    expect(await softmax(z, { dim: 1 }).toArray()).toEqual(await softmax(z, { dim: -1 }).toArray());
    expect(() => softmax(z, { dim: 0 })).toThrow(/softmax: only the last dim is supported .*got dim=0 for shape \[4, 6\]/);
    expect(() => logSoftmax(z, { dim: -2 })).toThrow(/logSoftmax: only the last dim is supported/);
    expect(() => softmax(z, { T: 0 })).toThrow(/temperature T must be finite and > 0, got 0/);
    expect(() => softmax(Tensor.fromArray([1], []))).toThrow(/needs at least one dim/);
  });

  it('same inputs, same bits (deterministic)', async () => {
    const z = Tensor.randn([128, 100], { seed: 9 });
    const a = await logSoftmax(z, { T: 4 }).toArray();
    const b = await logSoftmax(z, { T: 4 }).toArray();
    expect(Buffer.from(a.buffer).equals(Buffer.from(b.buffer))).toBe(true);
  });
});
