// Food-11 (NTU ML HW13): <root>/training/, <root>/validation/ with files '<label>_<n>.jpg', and
// <root>/evaluation/ (or test/) with unlabelled files; every split is sorted by file name (the Kaggle Id of an
// evaluation image is its zero-padded position in that order). Images are decoded with sharp like the course's
// torchvision pipeline: resize the shorter side to round(size * 256 / 224) (bilinear), center crop size x size, RGB;
// normalised later with the ImageNet mean/std. Decoded images are cached on disk (cache.ts), so only the first open
// of a (root, split, size) decodes JPEGs.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { roundHalfEven } from './augment.js';
import { defaultCacheDir, openCachedImageSet, type CachedImageSet } from './cache.js';
import { checkIndex, fingerprintOf, type Dataset } from './dataset.js';

export const FOOD11_CLASSES = [
  'Bread',
  'Dairy product',
  'Dessert',
  'Egg',
  'Fried food',
  'Meat',
  'Noodles/Pasta',
  'Rice',
  'Seafood',
  'Soup',
  'Vegetable/Fruit',
] as const;
export const IMAGENET_MEAN = [0.485, 0.456, 0.406];
export const IMAGENET_STD = [0.229, 0.224, 0.225];

export type Food11Split = 'training' | 'validation' | 'evaluation';

const SPLIT_ALIASES: Record<string, Food11Split> = {
  training: 'training',
  train: 'training',
  validation: 'validation',
  val: 'validation',
  evaluation: 'evaluation',
  eval: 'evaluation',
  test: 'evaluation',
};

/** Canonical split name for 'training'/'train', 'validation'/'val', 'evaluation'/'eval'/'test'. */
export function food11Split(split: string): Food11Split {
  const canonical = SPLIT_ALIASES[split];
  if (!canonical) throw new Error(`Food-11: unknown split '${split}' (training, validation, evaluation)`);
  return canonical;
}

/** Kaggle submission Id of evaluation image i: its 4-digit zero-padded index in the sorted file list. */
export function kaggleId(i: number): string {
  return String(i).padStart(4, '0');
}

export interface Food11File {
  /** File name within the split folder. */
  name: string;
  path: string;
  /** Class index, or null in the evaluation split. */
  label: number | null;
  mtimeMs: number;
  bytes: number;
}

const IMAGE_EXTENSION = /\.(jpe?g|png)$/i;
const LABELLED_NAME = /^(\d+)_[^/\\]*\.(jpe?g|png)$/i;

/** Code-unit order (Python's sorted() for these ASCII names). */
function byName(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Lists and validates a split's files (sorted by name), without decoding anything. */
export function listFood11(root: string, split: string): { folder: string; split: Food11Split; files: Food11File[] } {
  const canonical = food11Split(split);
  const candidates = canonical === 'evaluation' ? ['evaluation', 'test'] : [canonical];
  const folder = candidates.map((c) => path.join(root, c)).find((p) => fs.existsSync(p) && fs.statSync(p).isDirectory());
  if (!folder) {
    throw new Error(`Food-11: no ${candidates.map((c) => `${c}/`).join(' or ')} folder in ${root} (expected training/, validation/, evaluation/)`);
  }
  const files: Food11File[] = [];
  const names = fs
    .readdirSync(folder)
    .filter((n) => !n.startsWith('.'))
    .sort(byName);
  for (const name of names) {
    const file = path.join(folder, name);
    const stat = fs.statSync(file);
    if (!stat.isFile()) continue;
    let label: number | null = null;
    if (canonical === 'evaluation') {
      if (!IMAGE_EXTENSION.test(name)) throw new Error(`Food-11: cannot use ${file}: expected an image named '<name>.jpg'`);
    } else {
      const m = LABELLED_NAME.exec(name);
      if (!m) throw new Error(`Food-11: cannot parse the label of ${file}: expected '<label>_<n>.jpg' with <label> in 0..10`);
      label = Number(m[1]);
      if (label > 10) throw new Error(`Food-11: label ${label} of ${file} is not in 0..10 (expected '<label>_<n>.jpg')`);
    }
    files.push({ name, path: file, label, mtimeMs: stat.mtimeMs, bytes: stat.size });
  }
  if (files.length === 0) throw new Error(`Food-11: no images in ${folder}`);
  return { folder, split: canonical, files };
}

/** Output size of the shorter-side resize for crop `size` (256 for 224, like the course). */
export function food11ResizeShort(size: number): number {
  return Math.round((size * 256) / 224);
}

/**
 * Decodes one image like torchvision Resize(round(size*256/224)) + CenterCrop(size) on a PIL RGB image:
 * shorter side to S, longer side to floor(S * long / short), crop offsets round((dim - size) / 2).
 * Returns uint8 [3, size, size] (CHW).
 */
export async function decodeFood11Image(file: string, size: number): Promise<Uint8Array> {
  // Loaded on first use, so importing wgkd does not load libvips unless Food-11 images are decoded.
  const sharp = (await import('sharp')).default;
  try {
    const meta = await sharp(file).metadata();
    const width = meta.width;
    const height = meta.height;
    if (!width || !height) throw new Error('no image dimensions');
    const short = food11ResizeShort(size);
    const [rw, rh] = width <= height ? [short, Math.floor((short * height) / width)] : [Math.floor((short * width) / height), short];
    const { data, info } = await sharp(file)
      .resize(rw, rh, { fit: 'fill', kernel: 'linear' })
      .extract({ left: roundHalfEven((rw - size) / 2), top: roundHalfEven((rh - size) / 2), width: size, height: size })
      .removeAlpha()
      .toColourspace('srgb')
      .raw()
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 3 || info.width !== size || info.height !== size) {
      throw new Error(`decoded to ${info.width}x${info.height}x${info.channels}, expected ${size}x${size}x3`);
    }
    // HWC -> CHW
    const plane = size * size;
    const chw = new Uint8Array(3 * plane);
    for (let p = 0; p < plane; p++) {
      chw[p] = data[3 * p];
      chw[plane + p] = data[3 * p + 1];
      chw[2 * plane + p] = data[3 * p + 2];
    }
    return chw;
  } catch (err) {
    throw new Error(`Food-11: cannot decode ${file}: ${(err as Error).message}`);
  }
}

export interface Food11Options {
  /** Crop size (224 like the course; 64 for quick runs). Default 224. */
  size?: number;
  /** Decoded-image cache folder (default .cache/wgkd/ in the current directory). */
  cacheDir?: string;
  /** Called as images become ready (decoded or read from the cache). */
  onProgress?: (done: number, total: number, info: { decoded: number; reused: number }) => void;
  /** Images decoded at once (default 2). */
  concurrency?: number;
  /** Replaces the sharp decoder (tests count decodes with it). */
  decode?: (file: string, size: number) => Promise<Uint8Array>;
  /** Held in memory up to this many bytes, else read per image from the cache file (default 1 GiB). */
  memoryLimitBytes?: number;
}

export class Food11 implements Dataset {
  readonly name = 'food11';
  readonly numClasses = 11;
  readonly channels = 3;
  readonly classNames = FOOD11_CLASSES;
  readonly mean = IMAGENET_MEAN;
  readonly std = IMAGENET_STD;
  readonly height: number;
  readonly width: number;
  readonly length: number;
  readonly labels: Int32Array | null;
  readonly fingerprint: string;
  /** File names (within the split folder) in sample order. */
  readonly files: readonly string[];
  /** Images this open had to decode (0 when everything came from the cache). */
  readonly decodedCount: number;

  private constructor(
    readonly root: string,
    readonly split: Food11Split,
    readonly folder: string,
    list: Food11File[],
    private readonly images: CachedImageSet,
    size: number,
  ) {
    this.height = size;
    this.width = size;
    this.length = list.length;
    this.files = list.map((f) => f.name);
    this.labels = split === 'evaluation' ? null : Int32Array.from(list, (f) => f.label!);
    this.fingerprint = fingerprintOf(['food11', split, ...this.files]);
    this.decodedCount = images.decodedCount;
  }

  /** Lists the split, decodes what the cache lacks (async), then serves images synchronously. */
  static async open(root: string, split: string, options: Food11Options = {}): Promise<Food11> {
    const size = options.size ?? 224;
    if (!Number.isInteger(size) || size < 1) throw new Error(`Food-11: size ${size} must be a positive integer`);
    const listing = listFood11(root, split);
    const decode = options.decode ?? decodeFood11Image;
    const cacheDir = options.cacheDir ?? defaultCacheDir();
    const rootKey = createHash('sha256').update(path.resolve(root)).digest('hex').slice(0, 12);
    const images = await openCachedImageSet({
      file: path.join(cacheDir, `food11-${rootKey}-${listing.split}-${size}.safetensors`),
      sources: listing.files.map((f) => ({ name: f.name, mtimeMs: f.mtimeMs, bytes: f.bytes })),
      shape: [3, size, size],
      decode: (i) => decode(listing.files[i].path, size),
      concurrency: options.concurrency ?? 2,
      memoryLimitBytes: options.memoryLimitBytes,
      onProgress: options.onProgress && ((p) => options.onProgress!(p.done, p.total, { decoded: p.decoded, reused: p.reused })),
      metadata: { dataset: 'food11', root: path.resolve(root), split: listing.split, size: String(size) },
    });
    return new Food11(root, listing.split, listing.folder, listing.files, images, size);
  }

  image(i: number): Uint8Array {
    checkIndex(this, i);
    return this.images.image(i);
  }

  /** Kaggle Id of sample i (meaningful for the evaluation split). */
  kaggleId(i: number): string {
    return kaggleId(i);
  }

  close(): void {
    this.images.close();
  }
}
