// Batches for training and evaluation: seeded order, seeded per-sample augmentation or teacher view, normalised
// float32 NCHW. Everything random is a function of (seed, epoch, position in the epoch) only, so an epoch is
// reproducible and can be resumed mid-way: epoch(e, { skip: k }) yields exactly the batches k, k+1, ... of epoch(e).
import {
  normalisation,
  parseView,
  randomTransform,
  transformInto,
  viewTransform,
  type AugmentOptions,
  type SampleTransform,
} from './augment.js';
import type { Dataset } from './dataset.js';
import { mixSeed, rng, seededPermutation } from '../random.js';

export interface DataLoaderOptions {
  batchSize: number;
  /** Reshuffle every epoch (default false: dataset order). */
  shuffle?: boolean;
  seed?: number;
  /** Drop the last incomplete batch (default false). */
  dropLast?: boolean;
  /** Random augmentation; exclusive with `views`. */
  augment?: AugmentOptions;
  /**
   * Teacher views, as listed in the teacher-output file (e.g. ['identity', 'hflip']; grammar in augment.ts): each
   * sample gets one view, drawn uniformly (seeded), and exactly that transform; batches report the view index so
   * the matching teacher outputs can be read. A number n is short for the first n of ['identity', 'hflip'].
   */
  views?: readonly string[] | number;
}

export interface Batch {
  /** Dataset indices of the samples. */
  indices: Int32Array;
  /** Normalised images [B * C * H * W]. */
  x: Float32Array;
  /** Labels, or null for an unlabelled dataset. */
  y: Int32Array | null;
  /** View index per sample when views are configured, else null. */
  view: Int32Array | null;
}

const ORDER_STREAM = 0x6f72646e;
const SAMPLE_STREAM = 0x73616d70;

export class DataLoader {
  readonly batchSize: number;
  readonly shuffle: boolean;
  readonly seed: number;
  readonly dropLast: boolean;
  readonly augment: AugmentOptions | null;
  readonly views: readonly string[] | null;
  private readonly viewTransforms: SampleTransform[] | null;
  private readonly scale: Float32Array;
  private readonly shift: Float32Array;
  private cachedOrder: { epoch: number; order: Int32Array } | null = null;
  /** Image buffers handed back by recycle(), reused by later batches (fresh memory costs page faults). */
  private readonly spare: Float32Array[] = [];

  constructor(
    readonly dataset: Dataset,
    options: DataLoaderOptions,
  ) {
    const { batchSize } = options;
    if (!Number.isInteger(batchSize) || batchSize < 1) throw new Error(`DataLoader: batchSize ${batchSize} must be a positive integer`);
    this.batchSize = batchSize;
    this.shuffle = options.shuffle ?? false;
    this.seed = options.seed ?? 0;
    this.dropLast = options.dropLast ?? false;
    const augment = options.augment && (options.augment.hflip || options.augment.randomResizedCrop) ? options.augment : null;
    let views: readonly string[] | null = null;
    if (typeof options.views === 'number') {
      if (!Number.isInteger(options.views) || options.views < 1 || options.views > 2) {
        throw new Error(`DataLoader: views = ${options.views}; pass the view descriptions from the teacher file for more than 2 views`);
      }
      views = ['identity', 'hflip'].slice(0, options.views);
    } else if (options.views) {
      views = [...options.views];
      if (views.length === 0) throw new Error('DataLoader: views must not be empty');
    }
    if (views && augment) {
      throw new Error(
        'DataLoader: augment and views are exclusive: with precomputed teacher outputs the student must see exactly the views the teacher saw',
      );
    }
    this.augment = augment;
    this.views = views;
    this.viewTransforms = views ? views.map((v) => viewTransform(parseView(v), dataset.height, dataset.width)) : null;
    ({ scale: this.scale, shift: this.shift } = normalisation(dataset.mean, dataset.std));
    if (this.scale.length !== dataset.channels) throw new Error(`DataLoader: dataset has ${dataset.channels} channels but ${this.scale.length} means`);
  }

  /** Batches per epoch (the last one may be smaller unless dropLast). */
  get batchesPerEpoch(): number {
    const n = this.dataset.length;
    return this.dropLast ? Math.floor(n / this.batchSize) : Math.ceil(n / this.batchSize);
  }

  /** Sample order of an epoch: a seeded permutation when shuffling, else 0..N-1. */
  order(epoch: number): Int32Array {
    if (this.cachedOrder?.epoch === epoch) return this.cachedOrder.order;
    const n = this.dataset.length;
    const order = this.shuffle ? seededPermutation(n, mixSeed(this.seed, epoch, ORDER_STREAM)) : Int32Array.from({ length: n }, (_, i) => i);
    this.cachedOrder = { epoch, order };
    return order;
  }

  /** Assembles batch k of epoch `epoch` (synchronously; the same result whenever it is called). */
  batch(epoch: number, k: number): Batch {
    const total = this.batchesPerEpoch;
    if (!Number.isInteger(k) || k < 0 || k >= total) throw new Error(`DataLoader: batch ${k} outside [0, ${total})`);
    const ds = this.dataset;
    const order = this.order(epoch);
    const start = k * this.batchSize;
    const b = Math.min(this.batchSize, ds.length - start);
    const imageSize = ds.channels * ds.height * ds.width;
    const indices = order.slice(start, start + b);
    const x = this.takeBuffer(b * imageSize);
    const y = ds.labels ? Int32Array.from(indices, (i) => ds.labels![i]) : null;
    const view = this.viewTransforms ? new Int32Array(b) : null;
    const identity: SampleTransform = { box: null, hflip: false };
    for (let s = 0; s < b; s++) {
      let t = identity;
      if (this.viewTransforms || this.augment) {
        // Position-keyed stream: independent of batch size boundaries, skips and prefetching.
        const random = rng(mixSeed(this.seed, epoch, start + s, SAMPLE_STREAM));
        if (this.viewTransforms) {
          const v = Math.min(this.viewTransforms.length - 1, Math.floor(random() * this.viewTransforms.length));
          view![s] = v;
          t = this.viewTransforms[v];
        } else {
          t = randomTransform(random, ds.height, ds.width, this.augment!);
        }
      }
      transformInto(ds.image(indices[s]), ds.channels, ds.height, ds.width, t, this.scale, this.shift, x, s * imageSize);
    }
    return { indices, x, y, view };
  }

  /**
   * Hands a batch's image buffer back for reuse by a later batch. Optional: call it once the batch's `x` has been
   * consumed (e.g. uploaded to the GPU) and will not be read again. At 224x224 a batch of 64 is 38 MB, and writing
   * fresh memory costs more than normalising it.
   */
  recycle(batch: Batch): void {
    if (this.spare.length < 4 && !this.spare.includes(batch.x)) this.spare.push(batch.x);
  }

  private takeBuffer(length: number): Float32Array {
    const i = this.spare.findIndex((buffer) => buffer.length === length);
    return i >= 0 ? this.spare.splice(i, 1)[0] : new Float32Array(length);
  }

  /**
   * The batches of epoch `epoch`, from batch `skip` on. While the consumer works on batch k (e.g. awaits the GPU),
   * batch k + 1 is assembled in a macrotask, so CPU assembly overlaps GPU work.
   */
  async *epoch(epoch: number, options: { skip?: number } = {}): AsyncGenerator<Batch, void, undefined> {
    const total = this.batchesPerEpoch;
    const skip = options.skip ?? 0;
    if (!Number.isInteger(skip) || skip < 0 || skip > total) throw new Error(`DataLoader: skip ${skip} outside [0, ${total}]`);
    const assembleSoon = (k: number): Promise<Batch> => {
      const pending = new Promise<Batch>((resolve, reject) =>
        setImmediate(() => {
          try {
            resolve(this.batch(epoch, k));
          } catch (err) {
            reject(err);
          }
        }),
      );
      pending.catch(() => undefined); // a consumer that stops early must not leave an unhandled rejection
      return pending;
    };
    let next = skip < total ? assembleSoon(skip) : null;
    for (let k = skip; k < total; k++) {
      const current = await next!;
      next = k + 1 < total ? assembleSoon(k + 1) : null;
      yield current;
    }
  }
}
