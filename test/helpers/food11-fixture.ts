// A small Food-11-layout folder for tests: training/ and validation/ with '<label>_<n>.jpg', evaluation/ (or test/)
// with unlabelled '<nnnn>.jpg'. Images have varied sizes (e.g. 40x52, 57x33 at size 40) and a class-dependent
// pattern (a colour per class plus stripes whose direction and period depend on the class) with seeded noise, so a
// tiny model can learn them. The hidden labels of the evaluation files are returned for checking predictions.
import * as fs from 'node:fs';
import * as path from 'node:path';
import sharp from 'sharp';
import { rng } from '../../src/random.js';

export interface Food11FixtureOptions {
  /** Labelled images per class in training/ (default 2); validation/ gets `validationPerClass` (default 1). */
  perClass?: number;
  validationPerClass?: number;
  /** Base image size; actual sizes vary around it (default 40). */
  size?: number;
  /** Unlabelled images in the evaluation folder (default 6). */
  evaluation?: number;
  /** 'evaluation' (2023 edition, default) or 'test' (older editions). */
  evaluationFolder?: 'evaluation' | 'test';
  /** Number of classes used (default 11). */
  classes?: number;
  seed?: number;
}

export interface Food11Fixture {
  root: string;
  /** File names per folder, sorted. */
  files: { training: string[]; validation: string[]; evaluation: string[] };
  /** Labels in sorted file order; evaluation: the hidden labels. */
  labels: { training: number[]; validation: number[]; evaluation: number[] };
}

/** Distinct colours for the 11 classes. */
const PALETTE: [number, number, number][] = [
  [220, 60, 50],
  [60, 200, 70],
  [50, 80, 220],
  [230, 210, 40],
  [200, 60, 200],
  [40, 200, 210],
  [240, 140, 30],
  [120, 60, 20],
  [150, 150, 150],
  [30, 30, 30],
  [250, 250, 250],
];

/** Image dimensions cycle through a few shapes around `size` (portrait, landscape, square). */
function dims(size: number, j: number): [number, number] {
  const shapes: [number, number][] = [
    [size, Math.round(size * 1.3)],
    [Math.round(size * 1.425), Math.round(size * 0.825)],
    [size + 7, size + 7],
    [Math.round(size * 0.9), Math.round(size * 1.6)],
  ];
  return shapes[j % shapes.length];
}

/** RGB (HWC) pixels of one sample of class k. */
export function classPattern(k: number, width: number, height: number, random: () => number): Uint8Array {
  const pixels = new Uint8Array(width * height * 3);
  const colour = PALETTE[k % PALETTE.length];
  const period = 4 + 2 * (k % 3);
  const vertical = k % 2 === 0;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const stripe = Math.floor((vertical ? x : y) / (period / 2)) % 2 === 0 ? 1 : 0.6;
      for (let c = 0; c < 3; c++) {
        const noise = (random() - 0.5) * 30;
        pixels[(y * width + x) * 3 + c] = Math.max(0, Math.min(255, Math.round(colour[c] * stripe + noise)));
      }
    }
  }
  return pixels;
}

async function writeJpeg(file: string, pixels: Uint8Array, width: number, height: number): Promise<void> {
  await sharp(pixels, { raw: { width, height, channels: 3 } }).jpeg({ quality: 92 }).toFile(file);
}

export async function makeFood11(dir: string, options: Food11FixtureOptions = {}): Promise<Food11Fixture> {
  const perClass = options.perClass ?? 2;
  const validationPerClass = options.validationPerClass ?? 1;
  const size = options.size ?? 40;
  const evaluation = options.evaluation ?? 6;
  const classes = options.classes ?? 11;
  const random = rng(options.seed ?? 1);
  const evaluationFolder = options.evaluationFolder ?? 'evaluation';
  const jobs: Promise<void>[] = [];
  const fixture: Food11Fixture = {
    root: dir,
    files: { training: [], validation: [], evaluation: [] },
    labels: { training: [], validation: [], evaluation: [] },
  };
  let j = 0;
  const labelled = (folder: 'training' | 'validation', count: number): void => {
    fs.mkdirSync(path.join(dir, folder), { recursive: true });
    const entries: [string, number][] = [];
    let n = 0;
    for (let i = 0; i < count; i++) {
      for (let k = 0; k < classes; k++) {
        const name = `${k}_${n++}.jpg`;
        const [w, h] = dims(size, j++);
        jobs.push(writeJpeg(path.join(dir, folder, name), classPattern(k, w, h, random), w, h));
        entries.push([name, k]);
      }
    }
    entries.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    fixture.files[folder] = entries.map((e) => e[0]);
    fixture.labels[folder] = entries.map((e) => e[1]);
  };
  labelled('training', perClass);
  labelled('validation', validationPerClass);
  fs.mkdirSync(path.join(dir, evaluationFolder), { recursive: true });
  for (let i = 0; i < evaluation; i++) {
    const k = (i * 7 + 3) % classes;
    const name = `${String(i).padStart(4, '0')}.jpg`;
    const [w, h] = dims(size, j++);
    jobs.push(writeJpeg(path.join(dir, evaluationFolder, name), classPattern(k, w, h, random), w, h));
    fixture.files.evaluation.push(name);
    fixture.labels.evaluation.push(k);
  }
  await Promise.all(jobs);
  return fixture;
}
