// The step health check (shaders/optim.wgsl count_nonfinite): exact NaN and Inf counts of a flat gradient buffer
// and its parameters against a CPU count, on values at the edges of f32 (largest finite, subnormals, -0, NaNs
// with other payloads), and through an optimiser whose step overflows.
import { describe, expect, it } from 'vitest';
import { Tensor, rng } from '../src/index.js';
import { countNonFinite } from '../src/ops/optim.js';
import { SGD } from '../src/train/optim.js';
import { useDevice } from './helpers/device.js';

useDevice();

/** f32 values from bit patterns (NaN payloads survive in a Float32Array written from a Uint32Array). */
function fromBits(bits: number[]): Float32Array {
  return new Float32Array(Uint32Array.from(bits).buffer);
}

function cpuCounts(values: Float32Array): [number, number] {
  let nan = 0;
  let inf = 0;
  for (const v of values) {
    if (Number.isNaN(v)) nan++;
    else if (!Number.isFinite(v)) inf++;
  }
  return [nan, inf];
}

/** `n` seeded normal values with the special ones scattered at seeded positions. */
function scattered(n: number, specials: Float32Array, seed: number): Float32Array {
  const next = rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = next() * 2 - 1;
  for (const v of specials) out[Math.floor(next() * n)] = v;
  return out;
}

describe('countNonFinite', () => {
  // NaN (quiet, signalling, negative, all payload bits), +Inf, -Inf, then finite edge cases that must not count.
  const nans = fromBits([0x7fc00000, 0x7f800001, 0xffc00000, 0x7fffffff, 0xffffffff]);
  const infs = fromBits([0x7f800000, 0xff800000]);
  const finite = fromBits([0x7f7fffff, 0xff7fffff, 0x00000001, 0x80000001, 0x80000000, 0x00800000, 0x3f800000]);

  it('counts NaN and Inf exactly in gradients and parameters, over many workgroup strides', async () => {
    for (const n of [4, 1024, 256 * 4 * 37 + 12]) {
      const grad = scattered(n, new Float32Array([...nans, ...infs, ...finite, ...infs]), n);
      const param = scattered(n, new Float32Array([...finite, ...nans, ...nans]), n + 1);
      const counts = countNonFinite(Tensor.fromArray(grad), Tensor.fromArray(param));
      const got = Array.from(await counts.toUint32Array());
      expect(got, `n = ${n}`).toEqual([...cpuCounts(grad), ...cpuCounts(param)]);
      expect(got[0] + got[1] + got[2] + got[3], `n = ${n}: some specials must land`).toBeGreaterThan(0);
    }
  });

  it('finite edge values count as finite', async () => {
    const values = new Float32Array(16);
    values.set(finite);
    const counts = countNonFinite(Tensor.fromArray(values), Tensor.fromArray(values));
    expect(Array.from(await counts.toUint32Array())).toEqual([0, 0, 0, 0]);
  });

  it('Optimizer.nonFiniteCounts sees weights an overflowing step made infinite, with finite gradients', async () => {
    const p = Tensor.fromArray([1, -2, 3, 0.5, 4], [5], { requiresGrad: true });
    // p - lr * (g + wd * p) with lr * wd * p beyond f32: every non-zero weight becomes infinite.
    const opt = new SGD([p], { lr: 1e30, weightDecay: 1e30 });
    p.grad!.write([0.1, 0.1, 0.1, 0.1, 0.1]);
    opt.step();
    const counts = Array.from(await opt.nonFiniteCounts().toUint32Array());
    expect(counts).toEqual([0, 0, 0, 5]);
    p.grad!.write([NaN, 1, 1, Infinity, 1]);
    expect(Array.from(await opt.nonFiniteCounts().toUint32Array()).slice(0, 2)).toEqual([1, 1]);
    opt.dispose();
  });
});
