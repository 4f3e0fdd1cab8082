// The training-step workloads of `npm run bench:train` (bench/README.md describes each), built with wgkd's public
// API: a student, a KD recipe, an optimiser, and one batch of inputs with its teacher outputs.
import {
  AdaptiveAvgPool2d, AdamW, Adam, BatchNorm2d, Classifier, Conv2d, DataLoader, DepthwiseSeparable, Linear, MaxPool2d,
  ReLU, Recipe, Sequential, Tensor, createModel, keep, openDataset, openTeacherOutputs, parseRecipe, rng, scope,
  type Device, type Features, type Optimizer, type RecipeConfig, type TeacherTensors,
} from '../src/index.js';

/**
 * The HW13 shape as a depthwise-separable student (50,411 parameters at 3x64x64, 11 classes): stem conv 3x3
 * 3->16 + BN + ReLU + max-pool 2, four dw/pw blocks 16->32->64->128->256 with a max-pool 2 after the first three,
 * global average pool, linear. No biases before BN.
 */
export class Hw13Dwpw extends Classifier {
  readonly mapNames = ['features'];
  readonly numClasses: number;
  readonly features: Sequential;
  readonly pool: AdaptiveAvgPool2d;
  readonly fc: Linear;
  constructor(inChannels = 3, numClasses = 11) {
    super();
    this.numClasses = numClasses;
    this.features = this.child(
      'features',
      new Sequential(
        new Conv2d(inChannels, 16, 3, { padding: 1, bias: false }), new BatchNorm2d(16), new ReLU(), new MaxPool2d(2, 2, 0),
        new DepthwiseSeparable(16, 32), new MaxPool2d(2, 2, 0),
        new DepthwiseSeparable(32, 64), new MaxPool2d(2, 2, 0),
        new DepthwiseSeparable(64, 128), new MaxPool2d(2, 2, 0),
        new DepthwiseSeparable(128, 256),
      ),
    );
    this.pool = this.child('pool', new AdaptiveAvgPool2d(1));
    this.fc = this.child('fc', new Linear(256, numClasses));
  }
  forwardFeatures(x: Tensor): Features {
    const h = this.features.forward(x);
    const embedding = this.pool.forward(h).reshape([h.shape[0], -1]);
    return { logits: this.fc.forward(embedding), embedding, maps: { features: h } };
  }
}

export interface WorkloadSpec {
  name: string;
  description: string;
  batch: number;
  channels: number;
  size: number;
  classes: number;
  recipe: RecipeConfig;
  optimizer: 'adam' | 'adamw';
  lr: number;
  teacherDim: number; // teacher embedding width (0: the recipe needs none)
}

export const WORKLOADS: WorkloadSpec[] = [
  {
    name: 'demo',
    description: "npm run demo's step: dwpw on Fashion-MNIST 1x28x28, batch 64, kd+rkd with the shipped teacher, Adam",
    batch: 64, channels: 1, size: 28, classes: 10,
    recipe: { ce: 0.5, kd: { weight: 0.5, T: 4 }, rkd: { distance: 25, angle: 50 } },
    optimizer: 'adam', lr: 6e-3, teacherDim: 128,
  },
  {
    name: 'hw13-64',
    description: 'HW13 shape at 3x64x64: the 50,411-parameter dw/pw student, batch 64, 0.5 KD (T=4) + 0.5 CE + 25 RKD distance vs a 512-d teacher embedding, AdamW',
    batch: 64, channels: 3, size: 64, classes: 11,
    recipe: { ce: 0.5, kd: { weight: 0.5, T: 4 }, rkd: { distance: 25 } },
    optimizer: 'adamw', lr: 1e-3, teacherDim: 512,
  },
  {
    name: 'hw13-224',
    description: "the course's input size, 3x224x224: the same student and recipe, batch 16",
    batch: 16, channels: 3, size: 224, classes: 11,
    recipe: { ce: 0.5, kd: { weight: 0.5, T: 4 }, rkd: { distance: 25 } },
    optimizer: 'adamw', lr: 1e-3, teacherDim: 512,
  },
];

export interface Workload {
  spec: WorkloadSpec;
  model: Classifier;
  recipe: Recipe;
  optimizer: Optimizer;
  x: Tensor;
  y: Tensor;
  teacher: TeacherTensors;
}

/** One real batch of Fashion-MNIST and its rows of the shipped teacher outputs (the demo's data). */
async function demoBatch(spec: WorkloadSpec, teacherPath: string): Promise<{ x: Float32Array; y: Int32Array; logits: Float32Array; embedding: Float32Array }> {
  const train = await openDataset('fashion-mnist', 'train', {});
  const loader = new DataLoader(train, { batchSize: spec.batch, shuffle: true, seed: 0, dropLast: true });
  const outputs = openTeacherOutputs(teacherPath);
  for await (const batch of loader.epoch(0)) {
    const rows = outputs.readBatch(batch.indices, 0, { embedding: true });
    outputs.close();
    return { x: Float32Array.from(batch.x), y: Int32Array.from(batch.y!), logits: rows.logits, embedding: rows.embedding! };
  }
  throw new Error('bench: Fashion-MNIST gave no batch');
}

/** Seeded stand-ins for images and teacher outputs (their values do not change a step's cost). */
function syntheticBatch(spec: WorkloadSpec): { x: Float32Array; y: Int32Array; logits: Float32Array; embedding: Float32Array } {
  const next = rng(7);
  const normal = (n: number, scale: number) => Float32Array.from({ length: n }, () => scale * (next() + next() + next() - 1.5) * 2);
  return {
    x: normal(spec.batch * spec.channels * spec.size * spec.size, 1),
    y: Int32Array.from({ length: spec.batch }, () => Math.floor(next() * spec.classes)),
    logits: normal(spec.batch * spec.classes, 3),
    embedding: normal(spec.batch * spec.teacherDim, 1),
  };
}

export async function buildWorkload(spec: WorkloadSpec, teacherPath: string): Promise<Workload> {
  const model = spec.name === 'demo'
    ? createModel('dwpw', { inChannels: spec.channels, numClasses: spec.classes, inputSize: spec.size, seed: 0 })
    : new Hw13Dwpw(spec.channels, spec.classes);
  const data = spec.name === 'demo' ? await demoBatch(spec, teacherPath) : syntheticBatch(spec);
  const recipe = new Recipe(parseRecipe(spec.recipe), {}, { hasLogits: true, hasEmbedding: true, hints: {} });
  const params = model.parameters();
  const optimizer = spec.optimizer === 'adamw' ? new AdamW(params, { lr: spec.lr, weightDecay: 0.01 }) : new Adam(params, { lr: spec.lr });
  return {
    spec,
    model,
    recipe,
    optimizer,
    x: keep(Tensor.fromArray(data.x, [spec.batch, spec.channels, spec.size, spec.size])),
    y: keep(Tensor.fromArray(data.y, [spec.batch], { dtype: 'i32' })),
    teacher: {
      logits: keep(Tensor.fromArray(data.logits, [spec.batch, spec.classes])),
      embedding: keep(Tensor.fromArray(data.embedding, [spec.batch, spec.teacherDim])),
    },
  };
}

/** One training step, as src/train/step.ts runs it: forward, recipe, backward, clip, update, the non-finite
 * check, zeroing the gradients, one readback (loss, logits, check counts). */
export async function trainStep(dev: Device, w: Workload): Promise<number> {
  return scope(async () => {
    const features = w.model.forwardFeatures(w.x);
    const terms = w.recipe.compute(features, w.y, w.teacher);
    terms.total.backward();
    w.optimizer.clipGradNorm(10);
    w.optimizer.step();
    const health = w.optimizer.nonFiniteCounts();
    w.optimizer.zeroGrad();
    const [total] = await dev.read([terms.total, features.logits, health]);
    return new Float32Array(total)[0];
  });
}
