// Runs a teacher model over a dataset in its fixed sample order, for each view, and streams logits, the pooled
// embedding and chosen feature maps (hints) into a teacher-outputs file. No PyTorch needed.
import { Tensor, scope } from '../tensor.js';
import { noGrad } from '../autograd/tape.js';
import type { Classifier } from '../models/classifier.js';
import type { Dataset } from '../data/dataset.js';
import { DataLoader } from '../data/loader.js';
import { TeacherOutputsWriter } from './outputs.js';

export interface ExportOptions {
  path: string;
  teacherName: string;
  teacherAccuracy?: number | null;
  views?: string[]; // default ['identity']
  hints?: string[]; // feature-map names of the teacher (e.g. 'layer2')
  dtype?: 'F32' | 'F16';
  batchSize?: number;
  onProgress?: (done: number, total: number) => void;
}

export async function exportTeacherOutputs(teacher: Classifier, dataset: Dataset, options: ExportOptions): Promise<void> {
  const views = options.views ?? ['identity'];
  const hintNames = options.hints ?? [];
  for (const h of hintNames) {
    if (!teacher.mapNames.includes(h)) throw new Error(`teacher export: the teacher has no feature map '${h}' (has: ${teacher.mapNames.join(', ')})`);
  }
  const wasTraining = teacher.training;
  teacher.eval();
  // One probe forward gives the embedding size and the hint shapes.
  const shapes = noGrad(() =>
    scope(() => {
      const f = teacher.forwardFeatures(Tensor.zeros([1, dataset.channels, dataset.height, dataset.width]));
      return { dim: f.embedding.shape[1], hints: Object.fromEntries(hintNames.map((h) => [h, f.maps[h].shape.slice(1) as unknown as [number, number, number]])) };
    }),
  );
  const writer = TeacherOutputsWriter.create(options.path, {
    dataset: dataset.name,
    split: dataset.split,
    fingerprint: dataset.fingerprint,
    count: dataset.length,
    numClasses: teacher.numClasses,
    teacher: options.teacherName,
    teacherAccuracy: options.teacherAccuracy ?? null,
    views,
    embeddingDim: shapes.dim,
    hints: shapes.hints,
    dtype: options.dtype ?? 'F32',
    extraMetadata: { image_size: `${dataset.channels}x${dataset.height}x${dataset.width}` },
  });
  try {
    let done = 0;
    const total = views.length * dataset.length;
    for (let v = 0; v < views.length; v++) {
      // A single-view loader applies exactly that view's transform to every sample, in dataset order.
      const loader = new DataLoader(dataset, { batchSize: options.batchSize ?? 128, shuffle: false, seed: 0, views: [views[v]] });
      for await (const batch of loader.epoch(0)) {
        const b = batch.indices.length;
        const read = await scope(async () => {
          const x = Tensor.fromArray(batch.x, [b, dataset.channels, dataset.height, dataset.width]);
          const f = noGrad(() => teacher.forwardFeatures(x));
          const bytes = await x.device.read([f.logits, f.embedding, ...hintNames.map((h) => f.maps[h])]);
          return bytes.map((buf) => new Float32Array(buf));
        });
        writer.write(batch.indices[0], v, {
          logits: read[0],
          embedding: read[1],
          hints: Object.fromEntries(hintNames.map((h, i) => [h, read[2 + i]])),
        });
        done += b;
        options.onProgress?.(done, total);
      }
    }
    writer.finish();
  } catch (err) {
    writer.abort();
    throw err;
  } finally {
    teacher.train(wasTraining);
  }
}
