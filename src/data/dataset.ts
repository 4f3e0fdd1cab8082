// The dataset interface every data source implements, plus helpers shared by them.
// Images are uint8, CHW order; normalisation ((x / 255 - mean[c]) / std[c]) happens when batching (loader.ts).
import { createHash } from 'node:crypto';

export interface Dataset {
  /** Dataset family, e.g. 'fashion-mnist', 'food11' (recorded in teacher-output files). */
  readonly name: string;
  readonly split: string;
  readonly length: number;
  readonly numClasses: number;
  readonly channels: number;
  readonly height: number;
  readonly width: number;
  readonly classNames: readonly string[];
  /** Identifies the exact ordered sample list; teacher outputs are matched against it. */
  readonly fingerprint: string;
  /** One label per sample, or null for an unlabelled split (Kaggle evaluation). */
  readonly labels: Int32Array | null;
  /** Sample i as uint8 [C * H * W] (CHW). May be a view into shared storage: do not modify it. */
  image(i: number): Uint8Array;
  /** Per-channel normalisation of x / 255. */
  readonly mean: readonly number[];
  readonly std: readonly number[];
}

/** What teacher-output files record about their dataset (see checkAlignment in src/teacher/outputs.ts). */
export function datasetIdentity(ds: Dataset): { name: string; split: string; count: number; fingerprint: string; numClasses: number } {
  return { name: ds.name, split: ds.split, count: ds.length, fingerprint: ds.fingerprint, numClasses: ds.numClasses };
}

/** sha256 over length-prefixed pieces (so ['ab','c'] and ['a','bc'] differ), first 16 hex digits. */
export function fingerprintOf(pieces: readonly (string | ArrayBufferView)[]): string {
  const hash = createHash('sha256');
  for (const piece of pieces) {
    const bytes = typeof piece === 'string' ? Buffer.from(piece, 'utf8') : new Uint8Array(piece.buffer, piece.byteOffset, piece.byteLength);
    const length = Buffer.alloc(8);
    length.writeBigUInt64LE(BigInt(bytes.byteLength));
    hash.update(length);
    hash.update(bytes);
  }
  return hash.digest('hex').slice(0, 16);
}

export interface InMemoryDatasetOptions {
  name: string;
  split: string;
  channels: number;
  height: number;
  width: number;
  /** uint8 [N * C * H * W] */
  images: Uint8Array;
  labels: Int32Array | null;
  numClasses: number;
  classNames?: readonly string[];
  mean?: readonly number[];
  std?: readonly number[];
  /** Default: hash of the name, split, shape, labels and pixels. */
  fingerprint?: string;
}

/** A dataset held in one uint8 array: synthetic data, tests, small custom sets. */
export class InMemoryDataset implements Dataset {
  readonly name: string;
  readonly split: string;
  readonly length: number;
  readonly numClasses: number;
  readonly channels: number;
  readonly height: number;
  readonly width: number;
  readonly classNames: readonly string[];
  readonly fingerprint: string;
  readonly labels: Int32Array | null;
  readonly mean: readonly number[];
  readonly std: readonly number[];
  private readonly images: Uint8Array;
  private readonly imageSize: number;

  constructor(o: InMemoryDatasetOptions) {
    this.imageSize = o.channels * o.height * o.width;
    if (this.imageSize <= 0 || o.images.length % this.imageSize !== 0) {
      throw new Error(`dataset ${o.name}/${o.split}: ${o.images.length} bytes is not a whole number of ${o.channels}x${o.height}x${o.width} images`);
    }
    this.length = o.images.length / this.imageSize;
    if (o.labels && o.labels.length !== this.length) throw new Error(`dataset ${o.name}/${o.split}: ${o.labels.length} labels for ${this.length} images`);
    if (o.labels) {
      for (let i = 0; i < o.labels.length; i++) {
        if (o.labels[i] < 0 || o.labels[i] >= o.numClasses) throw new Error(`dataset ${o.name}/${o.split}: label ${o.labels[i]} of sample ${i} outside [0, ${o.numClasses})`);
      }
    }
    this.name = o.name;
    this.split = o.split;
    this.numClasses = o.numClasses;
    this.channels = o.channels;
    this.height = o.height;
    this.width = o.width;
    this.images = o.images;
    this.labels = o.labels;
    this.classNames = o.classNames ?? Array.from({ length: o.numClasses }, (_, k) => String(k));
    this.mean = o.mean ?? new Array(o.channels).fill(0.5);
    this.std = o.std ?? new Array(o.channels).fill(0.5);
    if (this.mean.length !== o.channels || this.std.length !== o.channels) throw new Error(`dataset ${o.name}/${o.split}: mean/std need ${o.channels} values`);
    this.fingerprint =
      o.fingerprint ??
      fingerprintOf([o.name, o.split, `${this.length}x${o.channels}x${o.height}x${o.width}`, o.labels ?? new Int32Array(0), o.images]);
  }

  image(i: number): Uint8Array {
    checkIndex(this, i);
    return this.images.subarray(i * this.imageSize, (i + 1) * this.imageSize);
  }
}

export function checkIndex(ds: Dataset, i: number): void {
  if (!Number.isInteger(i) || i < 0 || i >= ds.length) throw new Error(`dataset ${ds.name}/${ds.split}: sample ${i} outside [0, ${ds.length})`);
}

// ---- seeded randomness for the data pipeline (CPU-only; independent of the GPU runtime) -----------------------
