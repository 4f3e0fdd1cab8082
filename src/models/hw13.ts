// The ML2023 HW13 sample student, exactly (59,723 parameters at 3 input channels and 11 classes):
// Conv(3->4,3x3)-BN-ReLU, Conv(4->16,3x3)-BN-ReLU-MaxPool2, Conv(16->64,3x3)-BN-ReLU-MaxPool2,
// Conv(64->84,3x3)-BN-ReLU-MaxPool2, global average pool, Linear(84->11). No padding anywhere; convs have bias.
import type { Tensor } from '../tensor.js';
import { AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Linear, MaxPool2d, ReLU, Sequential } from '../nn/layers.js';
import { Classifier, type Features } from './classifier.js';

export class Hw13Sample extends Classifier {
  readonly mapNames = ['stage1', 'stage2', 'stage3', 'stage4'];
  readonly cnn: Sequential;
  readonly pool: AdaptiveAvgPool2d;
  readonly fc: Sequential;
  constructor(readonly inChannels = 3, readonly numClasses = 11) {
    super();
    this.cnn = this.child(
      'cnn',
      new Sequential(
        new Conv2d(inChannels, 4, 3), new BatchNorm2d(4), new ReLU(),
        new Conv2d(4, 16, 3), new BatchNorm2d(16), new ReLU(), new MaxPool2d(2, 2, 0),
        new Conv2d(16, 64, 3), new BatchNorm2d(64), new ReLU(), new MaxPool2d(2, 2, 0),
        new Conv2d(64, 84, 3), new BatchNorm2d(84), new ReLU(), new MaxPool2d(2, 2, 0),
      ),
    );
    this.pool = this.child('pool', new AdaptiveAvgPool2d(1));
    this.fc = this.child('fc', new Sequential(new Linear(84, numClasses)));
  }

  forwardFeatures(x: Tensor): Features {
    const maps: Record<string, Tensor> = {};
    const stageEnds: Record<number, string> = { 2: 'stage1', 6: 'stage2', 10: 'stage3', 14: 'stage4' };
    const h = this.cnn.forwardEach(
      x,
      (i, out) => {
        if (stageEnds[i]) maps[stageEnds[i]] = out;
      },
      (i) => i in stageEnds, // the other outputs may stay unbuilt (BN-ReLU-pool runs fused)
    );
    const embedding = this.pool.forward(h).reshape([h.shape[0], -1]);
    return { logits: this.fc.forward(embedding), embedding, maps };
  }
}
