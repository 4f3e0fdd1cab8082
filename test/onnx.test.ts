// ONNX export checked by onnxruntime: dwpw, hw13-sample and a JSON student, trained a few steps on real
// Fashion-MNIST (so BatchNorm's running statistics are not the identity), exported by `wgkd export`, run by
// onnxruntime-node on 48 real test images fed as pixel / 255. Its logits match wgkd's eval-mode logits and its
// predictions equal `wgkd predict`'s.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { beforeAll, describe, expect, it } from 'vitest';
import { BatchNorm2d, FASHION_MNIST_CLASSES, FOOD11_CLASSES, FashionMnist, IMAGENET_MEAN, IMAGENET_STD, Tensor, createModel, evaluate, exportOnnx, modelFromCheckpoint, noGrad, readOnnxSummary, rng, saveCheckpoint, scope, train, writeIdx } from '../src/index.js';
import { useDevice } from './helpers/device.js';

useDevice();
const COUNT = 48;
let work: string;
let testDir: string; // a Fashion-MNIST folder with the first COUNT real test images
let pixels: Float32Array; // those images as x / 255, [COUNT, 1, 28, 28]
let calibration: Float32Array; // the next 64 test images as x / 255 (BatchNorm statistics)

const JSON_STUDENT = {
  layers: [
    { conv: { out: 12, k: 3, stride: 2, padding: 1, bias: false } },
    { bn: {} },
    { relu: { name: 'stem' } },
    { dwpw: { out: 24, name: 'stage1' } },
    { avgpool: { k: 3, stride: 2, padding: 1 } },
    { residual: { out: 32, stride: 2, name: 'stage2' } },
    { conv: { out: 32, k: 3, padding: 1, groups: 4 } },
    { relu: {} },
    { maxpool: { k: 2, stride: 1 } },
    { gap: {} },
    { linear: {} },
  ],
};

/**
 * The checkpoint with distinct BatchNorm tensors: scale and shift redrawn per channel, then the running statistics
 * set to those of one batch of real images (momentum 1). Ten training steps leave scale ~1, shift ~0 and running
 * statistics near their initial 0 and 1 (which wash the image out of the logits); here an export that swapped
 * two of BatchNormalization's inputs, or ignored the running statistics, fails, and predictions vary by image.
 */
async function withDistinctBatchNorm(file: string, out: string, images: Float32Array): Promise<string> {
  const { ckpt, model } = await modelFromCheckpoint(file);
  const random = rng(7);
  const batchNorms = model.namedModules().filter(([, m]) => m instanceof BatchNorm2d) as [string, BatchNorm2d][];
  for (const [, bn] of batchNorms) {
    bn.weight.write(Float32Array.from({ length: bn.numFeatures }, () => 0.5 + random()));
    bn.bias.write(Float32Array.from({ length: bn.numFeatures }, () => random() - 0.5));
    (bn.options as { momentum?: number }).momentum = 1;
  }
  model.train();
  const n = images.length / 784;
  const normalised = Float32Array.from(images, (p) => (p - 0.286) / 0.353);
  noGrad(() => scope(() => void model.forward(Tensor.fromArray(normalised, [n, 1, 28, 28]))));
  model.eval();
  saveCheckpoint(out, { ...ckpt, model: await model.stateDict() });
  model.dispose();
  return out;
}

function wgkd(...args: string[]): string {
  return execFileSync(process.execPath, ['bin/wgkd.js', ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'wgkd-onnx-'));
  const test = await FashionMnist.open('test');
  testDir = join(work, 'fashion-mnist');
  mkdirSync(testDir);
  const images = new Uint8Array(COUNT * 784);
  for (let i = 0; i < COUNT; i++) images.set(test.image(i), i * 784);
  writeIdx(join(testDir, 't10k-images-idx3-ubyte'), [COUNT, 28, 28], images);
  writeIdx(join(testDir, 't10k-labels-idx1-ubyte'), [COUNT], Uint8Array.from(test.labels!.slice(0, COUNT)));
  pixels = Float32Array.from(images, (v) => v / 255);
  calibration = new Float32Array(64 * 784);
  for (let i = 0; i < 64; i++) calibration.set(Float32Array.from(test.image(COUNT + i), (v) => v / 255), i * 784);
  writeFileSync(join(work, 'student.json'), JSON.stringify(JSON_STUDENT));
});

const students: [string, () => string][] = [
  ['dwpw', () => 'dwpw'],
  ['hw13-sample', () => 'hw13-sample'],
  ['a JSON student', () => join(work, 'student.json')],
];

describe('wgkd export --onnx, run by onnxruntime', () => {
  for (const [label, modelOf] of students) {
    it(`${label}: logits match wgkd's (rel <= 1e-4), predictions equal wgkd predict's`, async () => {
      const out = join(work, label.replace(/\W+/g, '-'));
      // Ten Adam steps on 320 real training images: weights and BN statistics move, predictions spread over classes.
      await train({ model: modelOf(), trainLimit: 320, valLimit: 32, batch: 32, epochs: 1, lr: 3e-3, quiet: true, out });
      const checkpoint = await withDistinctBatchNorm(join(out, 'best.safetensors'), join(out, 'distinct-bn.safetensors'), calibration);
      const onnxFile = join(out, 'model.onnx');
      expect(wgkd('export', '--checkpoint', checkpoint, '--onnx', onnxFile)).toMatch(/^wrote .*model\.onnx: .*input pixels \[N, 1, 28, 28\]/);

      const summary = readOnnxSummary(readFileSync(onnxFile));
      expect(summary.inputs).toEqual([{ name: 'pixels', shape: ['N', 1, 28, 28] }]);
      expect(summary.outputs).toEqual([{ name: 'logits', shape: ['N', 10] }]);
      expect(JSON.parse(summary.metadata.class_names)).toEqual(FASHION_MNIST_CLASSES);
      expect(JSON.parse(summary.metadata.preprocessing).normalisation).toMatchObject({ mean: [0.286], std: [0.353] });
      expect(summary.ops.slice(0, 2)).toEqual(['Sub', 'Div']);
      expect(summary.ops).toContain('BatchNormalization');
      expect(summary.ops.slice(-3)).toEqual(['GlobalAveragePool', 'Flatten', 'Gemm']);

      // wgkd's eval-mode logits of the same images (the DataLoader normalises them as in training).
      const { model } = await modelFromCheckpoint(checkpoint);
      const subset = await FashionMnist.open('test', { dir: testDir });
      const ours = await evaluate(model, subset, { keepLogits: true });
      model.dispose();

      const session = await ort.InferenceSession.create(onnxFile);
      const run = async (n: number) => (await session.run({ pixels: new ort.Tensor('float32', pixels.subarray(0, n * 784), [n, 1, 28, 28]) })).logits.data as Float32Array;
      const theirs = await run(COUNT);
      expect(theirs.length).toBe(COUNT * 10);
      // Relative to the largest logit: elementwise relative error is meaningless for logits near zero.
      const scale = Math.max(...ours.logits!.map(Math.abs));
      const worst = Math.max(...theirs.map((v, i) => Math.abs(v - ours.logits![i])));
      expect(worst / scale).toBeLessThanOrEqual(1e-4);
      // And relative to how much the logits vary from image to image (the part that depends on the pixels).
      const classMean = Array.from({ length: 10 }, (_, c) => ours.logits!.filter((_, i) => i % 10 === c).reduce((a, b) => a + b, 0) / COUNT);
      const spread = Math.max(...ours.logits!.map((v, i) => Math.abs(v - classMean[i % 10])));
      expect(spread).toBeGreaterThan(0.1 * scale);
      expect(worst / spread).toBeLessThanOrEqual(1e-4);
      // The batch dimension is dynamic: one image gives the first row.
      expect(Array.from(await run(1))).toEqual(Array.from(theirs.subarray(0, 10)));

      const csv = join(out, 'submission.csv');
      wgkd('predict', '--checkpoint', checkpoint, '--split', 'test', '--data', testDir, '--out', csv);
      const predicted = readFileSync(csv, 'utf8').trim().split('\n').slice(1).map((l) => Number(l.split(',')[1]));
      const argmax = Array.from({ length: COUNT }, (_, r) => {
        const row = Array.from(theirs.subarray(r * 10, r * 10 + 10));
        return row.indexOf(Math.max(...row));
      });
      expect(new Set(predicted).size).toBeGreaterThanOrEqual(4); // the images, not a constant, decide the class
      expect(argmax).toEqual(predicted);
      expect(Array.from(ours.predictions)).toEqual(predicted);
    });
  }

  it('dwpw exports its depthwise convolutions as Conv with group = channels', async () => {
    const summary = readOnnxSummary(readFileSync(join(work, 'dwpw', 'model.onnx')));
    expect(summary.opset).toBe(13);
    expect(summary.ops.filter((op) => op === 'Conv').length).toBe(9); // stem + 4 x (depthwise + pointwise)
    const onnxProto = (await import('onnx-proto')).default;
    const model = onnxProto.onnx.ModelProto.decode(readFileSync(join(work, 'dwpw', 'model.onnx')));
    const convs = (model.graph?.node ?? []).filter((n) => n.opType === 'Conv');
    const groups = convs.map((n) => Number((n.attribute ?? []).find((a) => a.name === 'group')?.i));
    expect(groups).toEqual([1, 32, 1, 64, 1, 128, 1, 128, 1]);
  });

  it('three channels: the graph normalises each with its own mean and std (Food-11, ImageNet statistics)', async () => {
    const size = 32;
    const model = createModel('dwpw', { inChannels: 3, numClasses: 11, inputSize: size, seed: 5 }).eval();
    const file = join(work, 'dwpw-rgb.onnx');
    await exportOnnx(model, file, { channels: 3, height: size, width: size, mean: IMAGENET_MEAN, std: IMAGENET_STD, classNames: FOOD11_CLASSES, modelName: 'dwpw', dataset: 'food11' });
    const random = rng(11);
    const n = 4;
    const rgb = Float32Array.from({ length: n * 3 * size * size }, () => Math.floor(random() * 256) / 255);
    // wgkd's input: each channel c normalised as (x - mean[c]) / std[c].
    const plane = size * size;
    const normalised = rgb.map((v, i) => (v - IMAGENET_MEAN[Math.floor(i / plane) % 3]) / IMAGENET_STD[Math.floor(i / plane) % 3]);
    const ours = await scope(async () => noGrad(() => model.forward(Tensor.fromArray(normalised, [n, 3, size, size]))).toArray());
    const session = await ort.InferenceSession.create(file);
    const theirs = (await session.run({ pixels: new ort.Tensor('float32', rgb, [n, 3, size, size]) })).logits.data as Float32Array;
    const scale = Math.max(...ours.map(Math.abs));
    const worst = Math.max(...theirs.map((v, i) => Math.abs(v - ours[i])));
    expect(worst / scale).toBeLessThanOrEqual(1e-4);
    model.dispose();
  });
});
