// Evaluation: accuracy, per-class accuracy, confusion matrix and predictions of a classifier on a dataset.
import { Tensor, scope } from '../tensor.js';
import { noGrad } from '../autograd/tape.js';
import type { Classifier } from '../models/classifier.js';
import type { Dataset } from '../data/dataset.js';
import { DataLoader } from '../data/loader.js';

export interface EvalResult {
  count: number;
  accuracy: number | null; // null for unlabelled data
  perClass: number[];
  confusion: number[][]; // [true][predicted]
  predictions: Int32Array;
  /** Logits of every sample (row-major [count, classes]) when asked for. */
  logits?: Float32Array;
}

export async function evaluate(
  model: Classifier,
  dataset: Dataset,
  options: { batchSize?: number; keepLogits?: boolean; onProgress?: (done: number, total: number) => void } = {},
): Promise<EvalResult> {
  const k = model.numClasses;
  const predictions = new Int32Array(dataset.length);
  const logitsAll = options.keepLogits ? new Float32Array(dataset.length * k) : undefined;
  const wasTraining = model.training;
  model.eval();
  const loader = new DataLoader(dataset, { batchSize: options.batchSize ?? 256, shuffle: false, seed: 0, dropLast: false });
  let done = 0;
  try {
    for await (const batch of loader.epoch(0)) {
      const b = batch.indices.length;
      const logits = await scope(async () => {
        const x = Tensor.fromArray(batch.x, [b, dataset.channels, dataset.height, dataset.width]);
        const out = noGrad(() => model.forward(x));
        return out.toArray();
      });
      for (let r = 0; r < b; r++) {
        let best = 0;
        for (let c = 1; c < k; c++) if (logits[r * k + c] > logits[r * k + best]) best = c;
        predictions[batch.indices[r]] = best;
      }
      logitsAll?.set(logits, done * k);
      done += b;
      options.onProgress?.(done, dataset.length);
    }
  } finally {
    model.train(wasTraining);
  }
  const confusion = Array.from({ length: k }, () => new Array<number>(k).fill(0));
  let correct = 0;
  if (dataset.labels) {
    dataset.labels.forEach((y, i) => {
      confusion[y][predictions[i]]++;
      if (y === predictions[i]) correct++;
    });
  }
  const perClass = confusion.map((row, c) => {
    const n = row.reduce((s, v) => s + v, 0);
    return n ? row[c] / n : 0;
  });
  return {
    count: dataset.length,
    accuracy: dataset.labels ? correct / dataset.length : null,
    perClass,
    confusion,
    predictions,
    logits: logitsAll,
  };
}
