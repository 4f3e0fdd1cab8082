// Layers in PyTorch's image: same constructor arguments, parameter names and default initialisation.
import { Tensor } from '../tensor.js';
import { relu } from '../ops/activation.js';
import { conv2d } from '../ops/conv.js';
import { batchNorm2d } from '../ops/batchnorm.js';
import { adaptiveAvgPool2d, avgPool2d, maxPool2d } from '../ops/pool.js';
import { linear } from '../ops/matmul.js';
import { Module, uniformInit } from './module.js';

type Pair = number | [number, number];

export class Conv2d extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  constructor(
    readonly inChannels: number,
    readonly outChannels: number,
    readonly kernelSize: Pair,
    readonly options: { stride?: Pair; padding?: Pair; dilation?: Pair; groups?: number; bias?: boolean } = {},
  ) {
    super();
    const groups = options.groups ?? 1;
    if (inChannels % groups || outChannels % groups) {
      throw new Error(`Conv2d: in (${inChannels}) and out (${outChannels}) channels must be divisible by groups (${groups})`);
    }
    const [kh, kw] = typeof kernelSize === 'number' ? [kernelSize, kernelSize] : kernelSize;
    // torch: kaiming_uniform_(a=sqrt(5)) gives U(-1/sqrt(fan_in), 1/sqrt(fan_in)); the bias uses the same bound.
    const bound = 1 / Math.sqrt((inChannels / groups) * kh * kw);
    this.weight = this.param('weight', uniformInit([outChannels, inChannels / groups, kh, kw], bound));
    this.bias = options.bias === false ? null : this.param('bias', uniformInit([outChannels], bound));
  }
  forward(x: Tensor): Tensor {
    const { stride, padding, dilation, groups } = this.options;
    return conv2d(x, this.weight, this.bias, { stride, padding, dilation, groups });
  }
}

export class BatchNorm2d extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor;
  readonly runningMean: Tensor;
  readonly runningVar: Tensor;
  constructor(
    readonly numFeatures: number,
    readonly options: { eps?: number; momentum?: number } = {},
  ) {
    super();
    this.weight = this.param('weight', Tensor.ones([numFeatures]));
    this.bias = this.param('bias', Tensor.zeros([numFeatures]));
    this.runningMean = this.buffer('running_mean', Tensor.zeros([numFeatures]));
    this.runningVar = this.buffer('running_var', Tensor.ones([numFeatures]));
  }
  forward(x: Tensor): Tensor {
    return this.run(x, false);
  }
  /** relu(bn(x)) in one kernel (Sequential uses it for a BatchNorm2d followed by ReLU). */
  forwardWithRelu(x: Tensor): Tensor {
    return this.run(x, true);
  }
  private run(x: Tensor, relu: boolean): Tensor {
    return batchNorm2d(x, this.runningMean, this.runningVar, this.weight, this.bias, {
      training: this.training,
      momentum: this.options.momentum ?? 0.1,
      eps: this.options.eps ?? 1e-5,
      relu,
    });
  }
}

export class ReLU extends Module {
  forward(x: Tensor): Tensor {
    return relu(x);
  }
}

export class MaxPool2d extends Module {
  constructor(readonly kernelSize: Pair, readonly stride?: Pair, readonly padding: Pair = 0) {
    super();
  }
  forward(x: Tensor): Tensor {
    return maxPool2d(x, { kernelSize: this.kernelSize, stride: this.stride, padding: this.padding });
  }
}

export class AvgPool2d extends Module {
  constructor(readonly kernelSize: Pair, readonly stride?: Pair, readonly padding: Pair = 0) {
    super();
  }
  forward(x: Tensor): Tensor {
    return avgPool2d(x, { kernelSize: this.kernelSize, stride: this.stride, padding: this.padding });
  }
}

export class AdaptiveAvgPool2d extends Module {
  constructor(readonly outputSize: Pair) {
    super();
  }
  forward(x: Tensor): Tensor {
    return adaptiveAvgPool2d(x, this.outputSize);
  }
}

/** [N, ...] -> [N, prod(...)] (a view, no copy). */
export class Flatten extends Module {
  forward(x: Tensor): Tensor {
    return x.reshape([x.shape[0], -1]);
  }
}

export class Linear extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  constructor(readonly inFeatures: number, readonly outFeatures: number, options: { bias?: boolean } = {}) {
    super();
    const bound = 1 / Math.sqrt(inFeatures);
    this.weight = this.param('weight', uniformInit([outFeatures, inFeatures], bound));
    this.bias = options.bias === false ? null : this.param('bias', uniformInit([outFeatures], bound));
  }
  forward(x: Tensor): Tensor {
    return linear(x, this.weight, this.bias);
  }
}

/** Children named '0', '1', ... as torch.nn.Sequential. */
export class Sequential extends Module {
  readonly layers: Module[];
  constructor(...layers: Module[]) {
    super();
    this.layers = layers.map((m, i) => this.child(String(i), m));
  }
  forward(x: Tensor): Tensor {
    return this.forwardEach(x);
  }
  /**
   * Runs the layers in order, calling visit(i, output) after layer i. A BatchNorm2d directly followed by a ReLU
   * runs as one fused kernel (one pass over the activations instead of two); visit sees the ReLU's output.
   */
  forwardEach(x: Tensor, visit?: (index: number, output: Tensor) => void): Tensor {
    let h = x;
    for (let i = 0; i < this.layers.length; i++) {
      const layer = this.layers[i];
      if (layer instanceof BatchNorm2d && this.layers[i + 1] instanceof ReLU) {
        h = layer.forwardWithRelu(h);
        i++;
      } else {
        h = layer.forward(h);
      }
      visit?.(i, h);
    }
    return h;
  }
}

/** Depthwise 3x3 conv + BN + ReLU, then pointwise 1x1 conv + BN + ReLU (MobileNet v1's block). */
export class DepthwiseSeparable extends Sequential {
  constructor(readonly inChannels: number, readonly outChannels: number, readonly stride = 1) {
    super(
      new Conv2d(inChannels, inChannels, 3, { stride, padding: 1, groups: inChannels, bias: false }),
      new BatchNorm2d(inChannels),
      new ReLU(),
      new Conv2d(inChannels, outChannels, 1, { bias: false }),
      new BatchNorm2d(outChannels),
      new ReLU(),
    );
  }
}
