// The tape: composed expressions, accumulation through shared inputs, noGrad, and what is kept after backward.
import { describe, expect, it } from 'vitest';
import { Tensor, add, maxPool2d, mean, mul, noGrad, relu, rkdAngle, rkdDistance, scale, scope, sub, sum, zeroGrad } from '../src/index.js';
import { checkOp } from './helpers/check.js';
import { useDevice } from './helpers/device.js';
import { broadcastIndex, unravel } from './reference/common.js';

useDevice();

describe('autograd tape (tolerance: rel 1e-5 vs finite differences of the float64 reference)', () => {
  it('composed expression: mean(relu((a + b) * a - 2c)) with broadcasting', async () => {
    const aS = [3, 4, 5];
    const bS = [4, 1];
    const cS = [5];
    await checkOp({
      name: 'composed',
      inputs: { a: { shape: aS }, b: { shape: bS }, c: { shape: cS } },
      gpu: (t) => mean(relu(sub(mul(add(t.a, t.b), t.a), scale(t.c, 2)))),
      ref: (x) => {
        let s = 0;
        for (let i = 0; i < 60; i++) {
          const co = unravel(i, aS);
          const v = (x.a[i] + x.b[broadcastIndex(co, bS)]) * x.a[i] - 2 * x.c[broadcastIndex(co, cS)];
          s += Math.max(v, 0);
        }
        return Float64Array.of(s / 60);
      },
      tol: { fwd: 1e-5, bwd: 1e-5 },
    });
  });

  it('a tensor feeding several ops accumulates its gradient: d/dx sum(x*x + x + relu(x)) = 2x + 1 + [x>0]', async () => {
    const data = [-1.5, -0.25, 0.5, 2, 3.25];
    const x = Tensor.fromArray(data, [5], { requiresGrad: true });
    const y = sum(add(add(mul(x, x), x), relu(x)));
    y.backward();
    const g = await x.grad!.toArray();
    data.forEach((v, i) => expect(g[i]).toBeCloseTo(2 * v + 1 + (v > 0 ? 1 : 0), 6));
  });

  it('gradients accumulate across backward calls until zeroGrad', async () => {
    const x = Tensor.fromArray([1, 2, 3], [3], { requiresGrad: true });
    sum(mul(x, x)).backward();
    sum(scale(x, 3)).backward();
    expect(Array.from(await x.grad!.toArray())).toEqual([5, 7, 9]);
    zeroGrad([x]);
    expect(Array.from(await x.grad!.toArray())).toEqual([0, 0, 0]);
    // After zeroGrad the first gradient is copied in (no accumulate dispatch), later ones are added.
    const dev = x.device;
    const dispatches = dev.counters.dispatches;
    sum(scale(x, 2)).backward();
    const accumulates = dev.counters.dispatches - dispatches;
    expect(Array.from(await x.grad!.toArray())).toEqual([2, 2, 2]);
    sum(scale(x, 2)).backward();
    expect(dev.counters.dispatches - dispatches - accumulates).toBe(accumulates + 1); // + the accumulate
    expect(Array.from(await x.grad!.toArray())).toEqual([4, 4, 4]);
  });

  it('only leaves keep .grad; the graph is freed after backward', async () => {
    const x = Tensor.fromArray([1, 2], [2], { requiresGrad: true });
    const h = mul(x, x);
    const y = sum(h);
    y.backward();
    expect(h.grad).toBeNull();
    expect(h.node).toBeNull();
    expect(x.grad).not.toBeNull();
    expect(() => y.backward()).toThrow(/graph of .* was already used by an earlier backward/);
  });

  it('noGrad records nothing; inputs without requiresGrad get no gradient', async () => {
    const x = Tensor.fromArray([1, 2], [2], { requiresGrad: true });
    const c = Tensor.fromArray([3, 4], [2]);
    const y = noGrad(() => mul(x, c));
    expect(y.requiresGrad).toBe(false);
    expect(y.node).toBeNull();
    const z = sum(mul(x, c));
    z.backward();
    expect(c.grad).toBeNull();
    expect(Array.from(await x.grad!.toArray())).toEqual([3, 4]);
  });

  it('a graph returned out of a scope can run backward later (inputs and saved tensors stay alive)', async () => {
    const build = (x: Tensor, e: Tensor) =>
      add(mean(maxPool2d(relu(mul(x, x)), { kernelSize: 2 })), add(mean(rkdDistance(e)), mean(rkdAngle(e))));
    const grads = async (inScope: boolean) => {
      const x = Tensor.randn([2, 3, 6, 6], { seed: 11, requiresGrad: true });
      const e = Tensor.randn([5, 4], { seed: 12, requiresGrad: true });
      if (inScope) {
        scope(() => build(x, e).backward());
      } else {
        const loss = scope(() => build(x, e)); // every intermediate would be freed here without the graph walk
        loss.backward();
      }
      return [await x.grad!.toArray(), await e.grad!.toArray()];
    };
    const [inside, outside] = [await grads(true), await grads(false)];
    expect(outside[0]).toEqual(inside[0]);
    expect(outside[1]).toEqual(inside[1]);
  });

  it('backward needs a scalar or an explicit gradient', () => {
    const x = Tensor.fromArray([1, 2], [2], { requiresGrad: true });
    expect(() => mul(x, x).backward()).toThrow(/only for a scalar output, got shape \[2\]/);
  });

  it('intermediate gradients are freed as soon as they are consumed', async () => {
    const x = Tensor.randn([64, 64], { seed: 5, requiresGrad: true });
    let h = x;
    for (let i = 0; i < 20; i++) h = relu(add(h, x));
    const loss = mean(h);
    const dev = x.device;
    await dev.sync();
    const liveBefore = dev.poolStats().live;
    loss.backward();
    // Without freeing, 20 layers would leave ~60 gradient buffers alive; with it, only x.grad and the seed's remnants.
    expect(dev.poolStats().live - liveBefore).toBeLessThan(4);
  });
});

describe('tensors', () => {
  it('seeded rand/randn are reproducible and have the right moments', async () => {
    const a = await Tensor.randn([10000], { seed: 7 }).toArray();
    const b = await Tensor.randn([10000], { seed: 7 }).toArray();
    const c = await Tensor.randn([10000], { seed: 8 }).toArray();
    expect(a).toEqual(b);
    expect(a).not.toEqual(c);
    const m = a.reduce((s, v) => s + v, 0) / a.length;
    const v = a.reduce((s, x) => s + (x - m) ** 2, 0) / a.length;
    expect(Math.abs(m)).toBeLessThan(0.05);
    expect(Math.abs(v - 1)).toBeLessThan(0.05);
    const u = await Tensor.rand([1000], { seed: 1, low: 2, high: 3 }).toArray();
    expect(u.every((x) => x >= 2 && x < 3)).toBe(true);
  });

  it('zeros/ones/full for every dtype, item()', async () => {
    expect(Array.from(await Tensor.full([3], -7, { dtype: 'i32' }).toInt32Array())).toEqual([-7, -7, -7]);
    expect(Array.from(await Tensor.full([2], 4000000000, { dtype: 'u32' }).toUint32Array())).toEqual([4000000000, 4000000000]);
    await expect(Tensor.zeros([1], { dtype: 'i32' }).toArray()).rejects.toThrow(/use toInt32Array/);
    expect(Array.from(await Tensor.zeros([2, 2]).toArray())).toEqual([0, 0, 0, 0]);
    expect(await Tensor.full([1, 1], 2.5).item()).toBe(2.5);
    await expect(Tensor.ones([2]).item()).rejects.toThrow(/one element/);
  });
});
