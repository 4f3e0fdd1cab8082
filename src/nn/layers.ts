// Layers in PyTorch's image: same constructor arguments, parameter names and default initialisation.
import { Tensor } from '../tensor.js';
import { relu } from '../ops/activation.js';
import { conv2d } from '../ops/conv.js';
import { batchNorm2d, batchNormReluMaxPool2d } from '../ops/batchnorm.js';
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
  /**
   * relu(bn(x)) in one kernel (Sequential uses it for a BatchNorm2d followed by ReLU); with maxPool2x2,
   * max_pool2d(relu(bn(x)), 2) without the full-size activation (for BatchNorm2d, ReLU, MaxPool2d(2)).
   */
  forwardWithRelu(x: Tensor, maxPool2x2 = false): Tensor {
    if (maxPool2x2) return batchNormReluMaxPool2d(x, this.runningMean, this.runningVar, this.weight, this.bias, this.modeOptions());
    return this.run(x, true);
  }
  private run(x: Tensor, relu: boolean): Tensor {
    return batchNorm2d(x, this.runningMean, this.runningVar, this.weight, this.bias, { ...this.modeOptions(), relu });
  }
  private modeOptions() {
    return { training: this.training, momentum: this.options.momentum ?? 0.1, eps: this.options.eps ?? 1e-5 };
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
  /** 2x2 windows, stride 2, no padding: the pool batchNormReluMaxPool2d fuses. */
  get isPlain2x2(): boolean {
    const two = (v: Pair | undefined) => v === 2 || (Array.isArray(v) && v[0] === 2 && v[1] === 2);
    const zero = (v: Pair) => v === 0 || (Array.isArray(v) && v[0] === 0 && v[1] === 0);
    return two(this.kernelSize) && (this.stride === undefined || two(this.stride)) && zero(this.padding);
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
   * Runs the layers in order, calling visit(i, output) after layer i. Fusions (fewer passes over the activations):
   *  - BatchNorm2d, ReLU: one kernel; visit sees the ReLU's output (never the BatchNorm2d's).
   *  - BatchNorm2d, ReLU, MaxPool2d(2): one kernel writing only the pooled output, when `wanted(i)` is false for
   *    the ReLU's index i (its output is then never built). Without `wanted`: when no visit is given.
   *  - a Sequential (one that keeps this forward) whose last layers are BatchNorm2d, ReLU, followed by MaxPool2d(2)
   *    (a block, then a pool): the same, when `wanted` is false for the Sequential's index.
   */
  forwardEach(x: Tensor, visit?: (index: number, output: Tensor) => void, wanted: (index: number) => boolean = () => !!visit): Tensor {
    return this.run(x, visit, wanted, null);
  }
  /** The layers, then `tail` (a 2x2 max pool) fused into the last BatchNorm2d, ReLU pair where there is one. */
  private run(x: Tensor, visit: ((index: number, output: Tensor) => void) | undefined, wanted: (index: number) => boolean, tail: MaxPool2d | null): Tensor {
    const n = this.layers.length;
    const at = (j: number): Module | null => (j < n ? this.layers[j] : j === n ? tail : null);
    const fusablePool = (j: number) => {
      const m = at(j);
      return m instanceof MaxPool2d && m.isPlain2x2 ? m : null;
    };
    let h = x;
    let tailDone = false;
    for (let i = 0; i < n; i++) {
      const layer = this.layers[i];
      if (layer instanceof BatchNorm2d && at(i + 1) instanceof ReLU) {
        if (fusablePool(i + 2) && !wanted(i + 1)) {
          h = layer.forwardWithRelu(h, true);
          i += 2;
        } else {
          h = layer.forwardWithRelu(h);
          i++;
        }
      } else if (isPlainSequential(layer) && fusablePool(i + 1) && !wanted(i)) {
        h = layer.run(h, undefined, () => false, fusablePool(i + 1));
        i++;
      } else {
        h = layer.forward(h);
      }
      if (i >= n) tailDone = true; // the tail ran fused
      else visit?.(i, h);
    }
    return tail && !tailDone ? tail.forward(h) : h;
  }
}

/** A Sequential whose class keeps Sequential's forward (an instance wrapper, e.g. the profiler's label, is fine). */
const isPlainSequential = (m: Module): m is Sequential =>
  m instanceof Sequential && (m.constructor as typeof Sequential).prototype.forward === Sequential.prototype.forward;

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
