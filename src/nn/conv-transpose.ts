// ConvTranspose2d in PyTorch's image (groups 1, output_padding 0): weight [in, out, kH, kW], bias [out], and
// torch's default initialisation. FitNet's ConvReg regressor uses it when the student map is half the hint's size.
import { Tensor } from '../tensor.js';
import { convTranspose2d } from '../ops/conv.js';
import { Module, uniformInit } from './module.js';

type Pair = number | [number, number];

export class ConvTranspose2d extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  constructor(
    readonly inChannels: number,
    readonly outChannels: number,
    readonly kernelSize: Pair,
    readonly options: { stride?: Pair; padding?: Pair; dilation?: Pair; bias?: boolean } = {},
  ) {
    super();
    const [kh, kw] = typeof kernelSize === 'number' ? [kernelSize, kernelSize] : kernelSize;
    // torch: kaiming_uniform_(a=sqrt(5)) with fan_in = weight.size(1) * kH * kW, which for a transposed conv is
    // the OUTPUT channel count; the bias uses the same bound.
    const bound = 1 / Math.sqrt(outChannels * kh * kw);
    this.weight = this.param('weight', uniformInit([inChannels, outChannels, kh, kw], bound));
    this.bias = options.bias === false ? null : this.param('bias', uniformInit([outChannels], bound));
  }
  forward(x: Tensor): Tensor {
    const { stride, padding, dilation } = this.options;
    return convTranspose2d(x, this.weight, this.bias, { stride, padding, dilation });
  }
}
