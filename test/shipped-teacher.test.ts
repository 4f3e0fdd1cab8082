// The Fashion-MNIST teacher shipped in data/fashion-mnist/ (data/README.md): its weights load into wgkd's
// resnet-small, its outputs file is aligned with Debian's Fashion-MNIST train split, and the outputs are what the
// weights compute in wgkd (rows spread over the file, F16 storage: error <= 2e-3 under check.ts's measure); for
// other data fashionMnistTeacher() produces outputs from the weights (wgkd or PyTorch, which agree) and caches them.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Tensor, noGrad, scope } from '../src/index.js';
import { createModel } from '../src/models/registry.js';
import { loadTorchWeights } from '../src/teacher/torch.js';
import { openTeacherOutputs } from '../src/teacher/outputs.js';
import { SafetensorsFile } from '../src/teacher/safetensors.js';
import { SHIPPED_TEACHER, fashionMnistTeacher } from '../src/teacher/shipped.js';
import { datasetIdentity } from '../src/data/dataset.js';
import { openDataset } from '../src/data/open.js';
import { writeIdx } from '../src/data/idx.js';
import { maxRelError } from './helpers/check.js';
import { useDevice } from './helpers/device.js';

const device = useDevice();

describe('shipped Fashion-MNIST teacher (data/fashion-mnist)', () => {
  it('weights: resnet-small, test accuracy >= 0.94 recorded, every tensor loads', () => {
    const file = SafetensorsFile.open(SHIPPED_TEACHER.weights);
    const meta = file.metadata;
    file.close();
    expect(meta.model).toBe('resnet-small');
    expect(Number(meta.test_accuracy)).toBeGreaterThanOrEqual(0.94);
    expect(meta.epochs_done).toBe(meta.epochs);
    const model = createModel('resnet-small', { inChannels: 1, numClasses: 10, inputSize: 28 });
    expect(model.numParameters()).toBe(Number(meta.parameters));
    const summary = loadTorchWeights(model, SHIPPED_TEACHER.weights);
    expect(summary.loaded.length).toBeGreaterThan(0);
    model.dispose();
  });

  it('outputs: aligned with the train split, F16 logits and 128-d embeddings, what wgkd computes from the weights', async () => {
    device();
    const train = await openDataset('fashion-mnist', 'train');
    const outputs = openTeacherOutputs(SHIPPED_TEACHER.outputs);
    try {
      outputs.checkAlignment(datasetIdentity(train));
      expect(outputs.count).toBe(55000);
      expect(outputs.embeddingDim).toBe(128);
      expect(outputs.hintNames).toEqual([]);
      const file = SafetensorsFile.open(SHIPPED_TEACHER.weights);
      expect(outputs.metadata.teacherAccuracy).toBeCloseTo(Number(file.metadata.test_accuracy), 6);
      file.close();

      // The teacher agrees with the labels on the training images (it was trained on them).
      const all = outputs.readBatch(Array.from({ length: train.length }, (_, i) => i), 0);
      let agree = 0;
      for (let r = 0; r < train.length; r++) {
        let best = 0;
        for (let c = 1; c < 10; c++) if (all.logits[r * 10 + c] > all.logits[r * 10 + best]) best = c;
        if (best === train.labels![r]) agree++;
      }
      expect(agree / train.length).toBeGreaterThan(0.94);

      // wgkd's resnet-small with the shipped weights reproduces 40 rows spread over the file.
      const rows = Array.from({ length: 40 }, (_, i) => Math.floor((i * train.length) / 40) + (i % 7));
      const model = createModel('resnet-small', { inChannels: 1, numClasses: 10, inputSize: 28 });
      loadTorchWeights(model, SHIPPED_TEACHER.weights);
      model.eval();
      const x = new Float32Array(rows.length * 784);
      rows.forEach((row, r) => {
        const image = train.image(row);
        for (let p = 0; p < 784; p++) x[r * 784 + p] = (image[p] / 255 - train.mean[0]) / train.std[0];
      });
      const [logits, embedding] = await noGrad(() =>
        scope(async () => {
          const f = model.forwardFeatures(Tensor.fromArray(x, [rows.length, 1, 28, 28]));
          return [await f.logits.toArray(), await f.embedding.toArray()];
        }),
      );
      model.dispose();
      const stored = outputs.readBatch(rows, 0, { embedding: true });
      expect(maxRelError(logits, stored.logits).err).toBeLessThan(2e-3);
      expect(maxRelError(embedding, stored.embedding!).err).toBeLessThan(2e-3);
    } finally {
      outputs.close();
    }
  });

  it('fashionMnistTeacher() hands out the shipped file for the standard train split', async () => {
    const train = await openDataset('fashion-mnist', 'train');
    const teacher = await fashionMnistTeacher(train);
    expect(teacher.source).toBe('shipped');
    expect(teacher.outputs).toBe(SHIPPED_TEACHER.outputs);
    expect(teacher.testAccuracy).toBeGreaterThanOrEqual(0.94);
    const validation = await openDataset('fashion-mnist', 'validation');
    await expect(fashionMnistTeacher(validation)).rejects.toThrow(/for fashion-mnist\/train, not fashion-mnist\/validation/);
  });

  it('for other data, produces outputs from the shipped weights (PyTorch or wgkd), aligned, and caches them', async () => {
    device();
    // A 5,400-image "train" set (the first test images): after the 5,000-image hold-out, 400 training images.
    const dir = mkdtempSync(join(tmpdir(), 'wgkd-fmnist-'));
    const cacheDir = join(dir, 'cache');
    try {
      const source = await openDataset('fashion-mnist', 'test');
      const n = 5400;
      const pixels = new Uint8Array(n * 784);
      for (let i = 0; i < n; i++) pixels.set(source.image(i), i * 784);
      for (const prefix of ['train', 't10k']) {
        writeIdx(join(dir, `${prefix}-images-idx3-ubyte`), [n, 28, 28], pixels);
        writeIdx(join(dir, `${prefix}-labels-idx1-ubyte`), [n], Uint8Array.from(source.labels!.subarray(0, n)));
      }
      const train = await openDataset('fashion-mnist', 'train', { data: dir });
      expect(train.length).toBe(400);
      const byWgkd = await fashionMnistTeacher(train, { data: dir, cacheDir, preferPython: false });
      expect(byWgkd.source).toBe('produced');
      const again = await fashionMnistTeacher(train, { data: dir, cacheDir });
      expect(again).toEqual({ ...byWgkd, source: 'cache' });
      const byPython = await fashionMnistTeacher(train, { data: dir, cacheDir: join(dir, 'cache-python'), hints: ['layer3'] });
      expect(byPython.source).toBe('produced');
      // Both routes hold the same outputs (F16 storage), and the PyTorch file has the hint.
      const [a, b] = [openTeacherOutputs(byWgkd.outputs), openTeacherOutputs(byPython.outputs)];
      try {
        a.checkAlignment(datasetIdentity(train));
        b.checkAlignment(datasetIdentity(train));
        expect(b.hintShapes.layer3).toEqual([128, 7, 7]);
        const rows = Array.from({ length: 400 }, (_, i) => i);
        const [ra, rb] = [a.readBatch(rows, 0, { embedding: true }), b.readBatch(rows, 0, { embedding: true })];
        expect(maxRelError(ra.logits, rb.logits).err).toBeLessThan(2e-3);
        expect(maxRelError(ra.embedding!, rb.embedding!).err).toBeLessThan(2e-3);
      } finally {
        a.close();
        b.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
