// convTranspose2d (torch's conv_transpose2d) against the float64 scatter-form reference; the reference backward
// against finite differences (checkOp). Its kernels are conv2d's, so these cases cover both paths it takes
// (general, pointwise) and the shapes FitNet's ConvReg uses (4x4, stride 2, padding 1: doubles the map). Few cases:
// each new shape compiles new pipelines, which takes seconds on a software adapter.
import { describe, expect, it } from 'vitest';
import { Tensor } from '../src/index.js';
import { convTranspose2d } from '../src/ops/conv.js';
import { checkOp, type InputSpec } from './helpers/check.js';
import { useDevice } from './helpers/device.js';
import * as ref from './reference/conv.js';

useDevice();

type Shape4 = [number, number, number, number];
interface Case {
  name: string;
  x: Shape4;
  weight: Shape4;
  bias: boolean;
  stride?: [number, number];
  padding?: [number, number];
  dilation?: [number, number];
}

const cases: Case[] = [
  { name: 'ConvReg half-size hint: 3->5, 4x4 kernel, stride 2, padding 1 (3x3 -> 6x6)', x: [2, 3, 3, 3], weight: [3, 5, 4, 4], bias: true, stride: [2, 2], padding: [1, 1] },
  { name: '3x3, stride 2, no padding (odd output), few output channels, no bias', x: [2, 5, 4, 3], weight: [5, 2, 3, 3], bias: false, stride: [2, 2] },
  { name: '1x1, stride 1 (the pointwise path)', x: [2, 6, 4, 4], weight: [6, 5, 1, 1], bias: true },
];

describe('convTranspose2d (tolerance: forward rel 2e-5, backward rel 2e-5; reference vs FD 1e-6)', () => {
  for (const c of cases) {
    it(c.name, async () => {
      const spec: ref.ConvTransposeSpec = { x: c.x, weight: c.weight, stride: c.stride, padding: c.padding, dilation: c.dilation };
      const inputs: Record<string, InputSpec> = { x: { shape: c.x }, weight: { shape: c.weight } };
      if (c.bias) inputs.bias = { shape: [c.weight[1]] };
      await checkOp({
        name: c.name,
        inputs,
        gpu: (t) => {
          const out = convTranspose2d(t.x, t.weight, t.bias ?? null, { stride: c.stride, padding: c.padding, dilation: c.dilation });
          expect(out.shape).toEqual(ref.convTransposeOutputShape(spec));
          return out;
        },
        ref: (v) => ref.convTranspose2d(spec, v.x, v.weight, v.bias ?? null),
        refBackward: (v, g) => {
          const grads = ref.convTranspose2dBackward(spec, v.x, v.weight, g);
          return c.bias ? grads : { x: grads.x, weight: grads.weight };
        },
        tol: { fwd: 2e-5, bwd: 2e-5 },
        fdSamples: 24,
      });
    });
  }

  it('rejects a weight for other input channels and a bad bias, naming the shapes', () => {
    const x = Tensor.zeros([1, 3, 4, 4]);
    expect(() => convTranspose2d(x, Tensor.zeros([4, 2, 3, 3]))).toThrow(/weight \[4, 2, 3, 3\] is for 4 input channels, the input \[1, 3, 4, 4\] has 3/);
    expect(() => convTranspose2d(x, Tensor.zeros([3, 2, 3, 3]), Tensor.zeros([3]))).toThrow(/bias must be f32 \[2\]/);
  });
});
