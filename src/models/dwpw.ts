// dwpw: a depthwise-separable student under 60k parameters (59,147 at 3 input channels and 11 classes).
//
//   layer   block                                   out ch   params (3 in, 11 classes)
//   stem    conv 3x3 pad 1 (no bias) + BN + ReLU     32          928
//   stage1  dw 3x3 + BN + ReLU, pw 1x1 + BN + ReLU   64        2,528
//   stage2  same                                     128       9,152
//   stage3  same                                     128      18,048
//   stage4  same                                     192      26,368
//   head    global average pool, linear 192 -> 11              2,123
//
// Strides adapt to the input so the last map is about 7x7: the number of stride-2 layers is round(log2(H/7))
// (at most 5), placed in the order stage1, stage3, stem, stage2, stage4 (downsampling early, as MobileNet does,
// halves the work at 28x28): 28x28 -> 7x7, 64x64 -> 8x8, 224x224 -> 7x7.
import type { Tensor } from '../tensor.js';
import { AdaptiveAvgPool2d, BatchNorm2d, Conv2d, DepthwiseSeparable, Linear, ReLU, Sequential } from '../nn/layers.js';
import { Classifier, type Features } from './classifier.js';

export interface DwpwOptions {
  inChannels?: number;
  numClasses?: number;
  inputSize?: number;
  widths?: [number, number, number, number, number]; // stem, stage1..stage4
  strides?: [number, number, number, number, number]; // overrides the automatic choice
}

export function dwpwStrides(inputSize: number): [number, number, number, number, number] {
  const downsamples = Math.max(0, Math.min(5, Math.round(Math.log2(inputSize / 7))));
  const order = [1, 3, 0, 2, 4]; // stage1, stage3, stem, stage2, stage4
  const strides: [number, number, number, number, number] = [1, 1, 1, 1, 1];
  for (const i of order.slice(0, downsamples)) strides[i] = 2;
  return strides;
}

export class Dwpw extends Classifier {
  readonly mapNames = ['stem', 'stage1', 'stage2', 'stage3', 'stage4'];
  readonly numClasses: number;
  readonly stem: Sequential;
  readonly stages: DepthwiseSeparable[];
  readonly pool: AdaptiveAvgPool2d;
  readonly fc: Linear;

  constructor(options: DwpwOptions = {}) {
    super();
    const inChannels = options.inChannels ?? 3;
    this.numClasses = options.numClasses ?? 11;
    const w = options.widths ?? [32, 64, 128, 128, 192];
    const s = options.strides ?? dwpwStrides(options.inputSize ?? 224);
    this.stem = this.child('stem', new Sequential(new Conv2d(inChannels, w[0], 3, { stride: s[0], padding: 1, bias: false }), new BatchNorm2d(w[0]), new ReLU()));
    this.stages = [1, 2, 3, 4].map((i) => this.child(`stage${i}`, new DepthwiseSeparable(w[i - 1], w[i], s[i])));
    this.pool = this.child('pool', new AdaptiveAvgPool2d(1));
    this.fc = this.child('fc', new Linear(w[4], this.numClasses));
  }

  forwardFeatures(x: Tensor): Features {
    const maps: Record<string, Tensor> = {};
    let h = (maps.stem = this.stem.forward(x));
    this.stages.forEach((stage, i) => {
      h = maps[`stage${i + 1}`] = stage.forward(h);
    });
    const embedding = this.pool.forward(h).reshape([h.shape[0], -1]);
    return { logits: this.fc.forward(embedding), embedding, maps };
  }
}
