// Fashion-MNIST (10 classes, 28x28 grayscale) from the four standard IDX files (Debian: dataset-fashion-mnist).
// Splits: 'train' = the 60k training set minus a seeded hold-out, 'validation' = that hold-out (5,000 by default),
// 'test' = the 10k t10k set, untouched. Samples keep the files' order within each split.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { checkIndex, fingerprintOf, type Dataset } from './dataset.js';
import { seededPermutation } from '../random.js';
import { readIdx, type IdxArray } from './idx.js';

export const FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist';
export const FASHION_MNIST_CLASSES = [
  'T-shirt/top',
  'Trouser',
  'Pullover',
  'Dress',
  'Coat',
  'Sandal',
  'Shirt',
  'Sneaker',
  'Bag',
  'Ankle boot',
] as const;
export const FASHION_MNIST_MEAN = [0.286];
export const FASHION_MNIST_STD = [0.353];

export type FashionMnistSplit = 'train' | 'validation' | 'test';

export interface FashionMnistOptions {
  /** Folder with the IDX files (.gz or not); default /usr/share/datasets/fashion-mnist. */
  dir?: string;
  /** Size of the validation hold-out taken from the 60k training set (default 5000). */
  validationSize?: number;
  /** Seed of the hold-out selection (default 0). Changing it changes the splits and their fingerprints. */
  holdoutSeed?: number;
}

const SIDE = 28;
const IMAGE_BYTES = SIDE * SIDE;

function findFile(dir: string, base: string): string {
  for (const candidate of [`${base}.gz`, base]) {
    const p = path.join(dir, candidate);
    if (fs.existsSync(p)) return p;
  }
  throw new Error(
    `Fashion-MNIST: neither ${base}.gz nor ${base} in ${dir} (install the Debian package dataset-fashion-mnist, or pass dir)`,
  );
}

// Parsed files, shared by the splits of one process (train and validation come from the same 47 MB file).
const parsed = new Map<string, IdxArray>();

function readCached(file: string): IdxArray {
  const stat = fs.statSync(file);
  const key = `${path.resolve(file)}:${stat.mtimeMs}:${stat.size}`;
  let idx = parsed.get(key);
  if (!idx) {
    idx = readIdx(file);
    parsed.set(key, idx);
  }
  return idx;
}

function loadPair(dir: string, prefix: 'train' | 't10k'): { images: Uint8Array; labels: Uint8Array } {
  const imageFile = findFile(dir, `${prefix}-images-idx3-ubyte`);
  const labelFile = findFile(dir, `${prefix}-labels-idx1-ubyte`);
  const images = readCached(imageFile);
  const labels = readCached(labelFile);
  if (images.dtype !== 'u8' || images.dims.length !== 3 || images.dims[1] !== SIDE || images.dims[2] !== SIDE) {
    throw new Error(`Fashion-MNIST: ${imageFile} holds ${images.dtype} [${images.dims.join(', ')}], expected u8 [N, 28, 28]`);
  }
  if (labels.dtype !== 'u8' || labels.dims.length !== 1) {
    throw new Error(`Fashion-MNIST: ${labelFile} holds ${labels.dtype} [${labels.dims.join(', ')}], expected u8 [N]`);
  }
  if (labels.dims[0] !== images.dims[0]) {
    throw new Error(`Fashion-MNIST: ${labelFile} has ${labels.dims[0]} labels but ${imageFile} has ${images.dims[0]} images`);
  }
  const labelValues = labels.data as Uint8Array;
  for (let i = 0; i < labelValues.length; i++) {
    if (labelValues[i] >= FASHION_MNIST_CLASSES.length) throw new Error(`Fashion-MNIST: ${labelFile} label ${labelValues[i]} at ${i} is not in 0..9`);
  }
  return { images: images.data as Uint8Array, labels: labelValues };
}

/** Indices (ascending) of the train and validation splits within the 60k training file. */
export function fashionMnistHoldout(total: number, validationSize: number, seed: number): { train: Int32Array; validation: Int32Array } {
  if (!Number.isInteger(validationSize) || validationSize < 0 || validationSize >= total) {
    throw new Error(`Fashion-MNIST: validationSize ${validationSize} must be in [0, ${total})`);
  }
  const order = seededPermutation(total, seed);
  const validation = order.slice(0, validationSize).sort();
  const train = order.slice(validationSize).sort();
  return { train, validation };
}

export class FashionMnist implements Dataset {
  readonly name = 'fashion-mnist';
  readonly numClasses = 10;
  readonly channels = 1;
  readonly height = SIDE;
  readonly width = SIDE;
  readonly classNames = FASHION_MNIST_CLASSES;
  readonly mean = FASHION_MNIST_MEAN;
  readonly std = FASHION_MNIST_STD;
  readonly length: number;
  readonly labels: Int32Array;
  readonly fingerprint: string;

  private constructor(
    readonly split: FashionMnistSplit,
    private readonly pixels: Uint8Array,
    /** Position of each sample in its source file. */
    readonly sourceIndices: Int32Array,
    sourceLabels: Uint8Array,
  ) {
    this.length = sourceIndices.length;
    this.labels = Int32Array.from(sourceIndices, (s) => sourceLabels[s]);
    this.fingerprint = fingerprintOf([this.name, String(this.length), this.labels]);
  }

  /** Reads (once per process) and splits the files. Synchronous: about a second for the training file. */
  static open(split: FashionMnistSplit, options: FashionMnistOptions = {}): FashionMnist {
    const dir = options.dir ?? FASHION_MNIST_DIR;
    if (split === 'test') {
      const { images, labels } = loadPair(dir, 't10k');
      return new FashionMnist(split, images, Int32Array.from({ length: labels.length }, (_, i) => i), labels);
    }
    if (split !== 'train' && split !== 'validation') throw new Error(`Fashion-MNIST: unknown split '${split}' (train, validation, test)`);
    const { images, labels } = loadPair(dir, 'train');
    const holdout = fashionMnistHoldout(labels.length, options.validationSize ?? 5000, options.holdoutSeed ?? 0);
    return new FashionMnist(split, images, holdout[split], labels);
  }

  image(i: number): Uint8Array {
    checkIndex(this, i);
    const s = this.sourceIndices[i];
    return this.pixels.subarray(s * IMAGE_BYTES, (s + 1) * IMAGE_BYTES);
  }
}
