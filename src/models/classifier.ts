// What KD needs from a model: logits, the pooled embedding, and named intermediate feature maps (hint layers).
import type { Tensor } from '../tensor.js';
import { Module } from '../nn/module.js';

export interface Features {
  logits: Tensor; // [N, classes]
  embedding: Tensor; // [N, D], the input of the final linear layer
  maps: Record<string, Tensor>; // stage outputs by name, e.g. 'stage2' -> [N, C, H, W]
}

export abstract class Classifier extends Module {
  abstract readonly numClasses: number;
  /** Names of the feature maps forwardFeatures() returns (candidate FitNet guided layers). */
  abstract readonly mapNames: string[];
  abstract forwardFeatures(x: Tensor): Features;
  forward(x: Tensor): Tensor {
    return this.forwardFeatures(x).logits;
  }
}
