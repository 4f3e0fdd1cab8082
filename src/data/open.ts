// Datasets by name, as the CLI and the trainer ask for them.
import { FashionMnist, FASHION_MNIST_CLASSES, FASHION_MNIST_DIR, FASHION_MNIST_MEAN, FASHION_MNIST_STD } from './fashion-mnist.js';
import { Food11, FOOD11_CLASSES, IMAGENET_MEAN, IMAGENET_STD } from './food11.js';
import { fingerprintOf, type Dataset } from './dataset.js';

export type DatasetName = 'fashion-mnist' | 'food11';
/** Role of a split in training: fit on `train`, pick checkpoints on `validation`, report on `test`. */
export type SplitRole = 'train' | 'validation' | 'test';

export interface OpenOptions {
  data?: string; // folder: Fashion-MNIST IDX files, or the Food-11 root
  size?: number; // Food-11 crop size (default 64)
  cacheDir?: string;
  validationSize?: number; // Fashion-MNIST hold-out (default 5000)
  onProgress?: (done: number, total: number) => void;
}

/** Food-11 folders per role: test is the labelled hold-out we report on; `evaluation` is Kaggle's unlabelled set. */
const FOOD11_SPLIT: Record<SplitRole | 'evaluation', string> = { train: 'training', validation: 'validation', test: 'validation', evaluation: 'evaluation' };

/** What a dataset's images mean without opening its files: class names and the normalisation of x / 255. */
export function datasetInfo(name: string): { channels: number; classNames: readonly string[]; mean: readonly number[]; std: readonly number[] } {
  if (name === 'fashion-mnist') return { channels: 1, classNames: FASHION_MNIST_CLASSES, mean: FASHION_MNIST_MEAN, std: FASHION_MNIST_STD };
  if (name === 'food11') return { channels: 3, classNames: FOOD11_CLASSES, mean: IMAGENET_MEAN, std: IMAGENET_STD };
  throw new Error(`unknown dataset '${name}' (fashion-mnist, food11)`);
}

export async function openDataset(name: string, role: SplitRole | 'evaluation', options: OpenOptions = {}): Promise<Dataset> {
  if (name === 'fashion-mnist') {
    if (role === 'evaluation') throw new Error('fashion-mnist has no unlabelled evaluation split (use test)');
    return FashionMnist.open(role, { dir: options.data ?? FASHION_MNIST_DIR, validationSize: options.validationSize });
  }
  if (name === 'food11') {
    if (!options.data) throw new Error('food11 needs --data DIR (the folder with training/, validation/, evaluation/)');
    return Food11.open(options.data, FOOD11_SPLIT[role] as 'training', { size: options.size ?? 64, cacheDir: options.cacheDir, onProgress: options.onProgress });
  }
  throw new Error(`unknown dataset '${name}' (fashion-mnist, food11)`);
}

/** The first `count` samples of a dataset. Sample i is the parent's sample i, so teacher rows still line up. */
export class Prefix implements Dataset {
  readonly length: number;
  readonly labels: Int32Array | null;
  readonly fingerprint: string;
  constructor(readonly parent: Dataset, count: number) {
    this.length = Math.min(count, parent.length);
    this.labels = parent.labels ? parent.labels.subarray(0, this.length) : null;
    this.fingerprint = fingerprintOf([parent.fingerprint, `prefix:${this.length}`]);
  }
  get name() { return this.parent.name; }
  get split() { return this.parent.split; }
  get numClasses() { return this.parent.numClasses; }
  get channels() { return this.parent.channels; }
  get height() { return this.parent.height; }
  get width() { return this.parent.width; }
  get classNames() { return this.parent.classNames; }
  get mean() { return this.parent.mean; }
  get std() { return this.parent.std; }
  image(i: number): Uint8Array {
    if (i >= this.length) throw new Error(`sample ${i} out of range (${this.length})`);
    return this.parent.image(i);
  }
}

/** The dataset a teacher-output file must match: the parent of a prefix. */
export function rootDataset(ds: Dataset): Dataset {
  return ds instanceof Prefix ? rootDataset(ds.parent) : ds;
}
