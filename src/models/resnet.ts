// Residual networks in torchvision's layout (parameter names match torchvision's ResNet: conv1, bn1,
// layer1.0.conv1, layer1.0.downsample.0, fc, ...). `resnet-small` is a compact teacher for small inputs.
import type { Tensor } from '../tensor.js';
import { add } from '../ops/elementwise.js';
import { relu } from '../ops/activation.js';
import { AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Linear, MaxPool2d, Sequential } from '../nn/layers.js';
import { Module } from '../nn/module.js';
import { Classifier, type Features } from './classifier.js';

/** conv3x3-BN-ReLU-conv3x3-BN plus the shortcut (1x1 conv + BN when the shape changes), then ReLU. */
export class BasicBlock extends Module {
  readonly conv1: Conv2d;
  readonly bn1: BatchNorm2d;
  readonly conv2: Conv2d;
  readonly bn2: BatchNorm2d;
  readonly downsample: Sequential | null;
  constructor(inChannels: number, outChannels: number, stride = 1) {
    super();
    this.conv1 = this.child('conv1', new Conv2d(inChannels, outChannels, 3, { stride, padding: 1, bias: false }));
    this.bn1 = this.child('bn1', new BatchNorm2d(outChannels));
    this.conv2 = this.child('conv2', new Conv2d(outChannels, outChannels, 3, { padding: 1, bias: false }));
    this.bn2 = this.child('bn2', new BatchNorm2d(outChannels));
    this.downsample =
      stride !== 1 || inChannels !== outChannels
        ? this.child('downsample', new Sequential(new Conv2d(inChannels, outChannels, 1, { stride, bias: false }), new BatchNorm2d(outChannels)))
        : null;
  }
  forward(x: Tensor): Tensor {
    const h = this.bn2.forward(this.conv2.forward(this.bn1.forwardWithRelu(this.conv1.forward(x))));
    return relu(add(h, this.downsample ? this.downsample.forward(x) : x));
  }
}

export interface ResNetOptions {
  inChannels?: number;
  numClasses?: number;
  widths?: number[]; // channels per stage
  blocks?: number[]; // blocks per stage
  /** 'imagenet': conv 7x7 stride 2 + max-pool (torchvision); 'small': conv 3x3 stride 1, no pool (28-64 px inputs). */
  stem?: 'imagenet' | 'small';
}

export class ResNet extends Classifier {
  readonly numClasses: number;
  readonly mapNames: string[];
  readonly conv1: Conv2d;
  readonly bn1: BatchNorm2d;
  readonly maxpool: MaxPool2d | null;
  readonly layers: Sequential[];
  readonly avgpool: AdaptiveAvgPool2d;
  readonly fc: Linear;

  constructor(options: ResNetOptions = {}) {
    super();
    const widths = options.widths ?? [64, 128, 256, 512];
    const blocks = options.blocks ?? [2, 2, 2, 2];
    const imagenet = (options.stem ?? 'imagenet') === 'imagenet';
    this.numClasses = options.numClasses ?? 11;
    this.conv1 = this.child('conv1', new Conv2d(options.inChannels ?? 3, widths[0], imagenet ? 7 : 3, { stride: imagenet ? 2 : 1, padding: imagenet ? 3 : 1, bias: false }));
    this.bn1 = this.child('bn1', new BatchNorm2d(widths[0]));
    this.maxpool = imagenet ? this.child('maxpool', new MaxPool2d(3, 2, 1)) : null;
    let inCh = widths[0];
    this.layers = widths.map((w, i) => {
      const stage = new Sequential(...Array.from({ length: blocks[i] }, (_, b) => new BasicBlock(b === 0 ? inCh : w, w, b === 0 && i > 0 ? 2 : 1)));
      inCh = w;
      return this.child(`layer${i + 1}`, stage);
    });
    this.mapNames = this.layers.map((_, i) => `layer${i + 1}`);
    this.avgpool = this.child('avgpool', new AdaptiveAvgPool2d(1));
    this.fc = this.child('fc', new Linear(inCh, this.numClasses));
  }

  forwardFeatures(x: Tensor): Features {
    let h = this.bn1.forwardWithRelu(this.conv1.forward(x));
    if (this.maxpool) h = this.maxpool.forward(h);
    const maps: Record<string, Tensor> = {};
    this.layers.forEach((layer, i) => {
      h = maps[`layer${i + 1}`] = layer.forward(h);
    });
    const embedding = this.avgpool.forward(h).reshape([h.shape[0], -1]);
    return { logits: this.fc.forward(embedding), embedding, maps };
  }
}
