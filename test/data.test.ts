import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { gzipSync } from 'node:zlib';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  formatView,
  parseView,
  randomResizedCropBox,
  roundHalfEven,
  viewTransform,
  type SampleTransform,
} from '../src/data/augment.js';
import { InMemoryDataset, datasetIdentity, type Dataset } from '../src/data/dataset.js';
import { rng } from '../src/random.js';
import { FashionMnist, FASHION_MNIST_DIR, fashionMnistHoldout } from '../src/data/fashion-mnist.js';
import { Food11, decodeFood11Image, food11ResizeShort, kaggleId, listFood11 } from '../src/data/food11.js';
import { encodeIdx, parseIdx, readIdx, writeIdx } from '../src/data/idx.js';
import { DataLoader, type Batch } from '../src/data/loader.js';
import { makeFood11, type Food11Fixture } from './helpers/food11-fixture.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wgkd-data-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

// ---- IDX -------------------------------------------------------------------------------------------------------

describe('IDX files', () => {
  const dims = [3, 2, 5];
  const values = Uint8Array.from({ length: 30 }, (_, i) => (i * 37) % 256);

  it('reads generated u8 files, gzipped or not (gzip detected from content)', () => {
    writeIdx(path.join(dir, 'plain-idx3-ubyte'), dims, values);
    writeIdx(path.join(dir, 'zipped-idx3-ubyte.gz'), dims, values, { gzip: true });
    fs.writeFileSync(path.join(dir, 'zipped-no-suffix'), gzipSync(encodeIdx(dims, values)));
    for (const name of ['plain-idx3-ubyte', 'zipped-idx3-ubyte.gz', 'zipped-no-suffix']) {
      const idx = readIdx(path.join(dir, name));
      expect(idx.dtype).toBe('u8');
      expect(idx.dims).toEqual(dims);
      expect(idx.data).toEqual(values);
    }
  });

  it('reads big-endian i32 and f32 payloads', () => {
    const bytes = Buffer.alloc(4 + 4 + 12);
    bytes.set([0, 0, 0x0c, 1]);
    bytes.writeUInt32BE(3, 4);
    [-5, 70000, 2 ** 31 - 1].forEach((v, i) => bytes.writeInt32BE(v, 8 + 4 * i));
    expect(Array.from(parseIdx(bytes, 'i32').data)).toEqual([-5, 70000, 2 ** 31 - 1]);
    const floats = Buffer.alloc(4 + 8 + 16);
    floats.set([0, 0, 0x0d, 2]);
    floats.writeUInt32BE(2, 4);
    floats.writeUInt32BE(2, 8);
    [1.5, -2, 0.25, 8].forEach((v, i) => floats.writeFloatBE(v, 12 + 4 * i));
    const f = parseIdx(floats, 'f32');
    expect(f.dims).toEqual([2, 2]);
    expect(Array.from(f.data)).toEqual([1.5, -2, 0.25, 8]);
  });

  it('clear errors for bad magic, unknown type, zero dims, truncation, trailing bytes, corrupt gzip', () => {
    const good = Buffer.from(encodeIdx([2, 2], Uint8Array.from([1, 2, 3, 4])));
    const variant = (edit: (b: Buffer) => Buffer): Buffer => edit(Buffer.from(good));
    expect(() => parseIdx(variant((b) => ((b[0] = 1), b)), 'x.idx')).toThrow(/IDX file x.idx: bad magic number 0x01000802/);
    expect(() => parseIdx(variant((b) => ((b[2] = 0x07), b)), 'x.idx')).toThrow(/unknown type code 0x07/);
    expect(() => parseIdx(variant((b) => ((b[3] = 0), b)), 'x.idx')).toThrow(/zero dimensions/);
    expect(() => parseIdx(good.subarray(0, 14), 'x.idx')).toThrow(/14 bytes but dims \[2, 2\] of u8 need 16 \(truncated\)/);
    expect(() => parseIdx(Buffer.concat([good, Buffer.from([9])]), 'x.idx')).toThrow(/17 bytes .* need 16 \(trailing bytes\)/);
    expect(() => parseIdx(good.subarray(0, 6), 'x.idx')).toThrow(/too short for 2 dimension sizes/);
    expect(() => parseIdx(good.subarray(0, 2), 'x.idx')).toThrow(/too short for the 4-byte magic/);
    const corrupt = path.join(dir, 'corrupt.gz');
    const zipped = gzipSync(good);
    fs.writeFileSync(corrupt, zipped.subarray(0, zipped.length - 6));
    expect(() => readIdx(corrupt)).toThrow(new RegExp(`IDX file ${corrupt}: gzip data is corrupt`));
  });
});

// ---- Fashion-MNIST -------------------------------------------------------------------------------------------

describe('Fashion-MNIST (the real files, read-only)', () => {
  it('train 55000 / validation 5000 (disjoint, covering the 60k) / test 10000; labels 0..9', () => {
    const train = FashionMnist.open('train');
    const validation = FashionMnist.open('validation');
    const test = FashionMnist.open('test');
    expect([train.length, validation.length, test.length]).toEqual([55000, 5000, 10000]);
    const seen = new Uint8Array(60000);
    for (const i of train.sourceIndices) seen[i]++;
    for (const i of validation.sourceIndices) seen[i]++;
    expect(seen.every((c) => c === 1)).toBe(true);
    for (const ds of [train, validation, test]) {
      expect(ds.labels.every((l) => l >= 0 && l <= 9)).toBe(true);
      expect(new Set(ds.labels).size).toBe(10);
      expect(ds.image(0).length).toBe(784);
      expect(ds.image(ds.length - 1).length).toBe(784);
      expect(ds.fingerprint).toMatch(/^[0-9a-f]{16}$/);
      expect([ds.channels, ds.height, ds.width, ds.numClasses]).toEqual([1, 28, 28, 10]);
    }
    expect(Array.from(test.sourceIndices.subarray(0, 5))).toEqual([0, 1, 2, 3, 4]); // untouched order
    expect(new Set([train.fingerprint, validation.fingerprint, test.fingerprint]).size).toBe(3);
    // Train order is ascending in the source file; test images are the t10k file's, in order.
    for (let i = 1; i < train.length; i++) if (train.sourceIndices[i] <= train.sourceIndices[i - 1]) throw new Error('train order');
    const t10k = readIdx(path.join(FASHION_MNIST_DIR, 't10k-images-idx3-ubyte.gz')).data as Uint8Array;
    expect(test.image(9999)).toEqual(t10k.subarray(9999 * 784));
    expect(() => test.image(10000)).toThrow(/sample 10000 outside \[0, 10000\)/);
  });

  it('the hold-out is deterministic and depends on its seed', () => {
    const a = fashionMnistHoldout(60000, 5000, 0);
    const b = fashionMnistHoldout(60000, 5000, 0);
    const c = fashionMnistHoldout(60000, 5000, 1);
    expect(a.validation).toEqual(b.validation);
    expect(a.validation).not.toEqual(c.validation);
    const reopened = FashionMnist.open('validation');
    expect(reopened.sourceIndices).toEqual(a.validation);
    expect(FashionMnist.open('validation', { holdoutSeed: 1 }).fingerprint).not.toBe(reopened.fingerprint);
    expect(() => fashionMnistHoldout(100, 100, 0)).toThrow(/validationSize 100 must be in \[0, 100\)/);
  });

  it('tiny generated files (plain and gzipped), custom hold-out size, clear missing-file error', () => {
    const fm = path.join(dir, 'fm');
    fs.mkdirSync(fm);
    const n = 40;
    const images = Uint8Array.from({ length: n * 784 }, (_, i) => (i * 7) % 256);
    const labels = Uint8Array.from({ length: n }, (_, i) => i % 10);
    writeIdx(path.join(fm, 'train-images-idx3-ubyte'), [n, 28, 28], images);
    writeIdx(path.join(fm, 'train-labels-idx1-ubyte.gz'), [n], labels, { gzip: true });
    expect(() => FashionMnist.open('test', { dir: fm })).toThrow(/neither t10k-images-idx3-ubyte.gz nor t10k-images-idx3-ubyte in/);
    writeIdx(path.join(fm, 't10k-images-idx3-ubyte'), [3, 28, 28], images.subarray(0, 3 * 784));
    writeIdx(path.join(fm, 't10k-labels-idx1-ubyte'), [3], labels.subarray(0, 3));
    const train = FashionMnist.open('train', { dir: fm, validationSize: 8 });
    const validation = FashionMnist.open('validation', { dir: fm, validationSize: 8 });
    expect([train.length, validation.length]).toEqual([32, 8]);
    const i = 5;
    const s = validation.sourceIndices[i];
    expect(validation.labels[i]).toBe(labels[s]);
    expect(validation.image(i)).toEqual(images.subarray(s * 784, (s + 1) * 784));
    expect(FashionMnist.open('test', { dir: fm }).length).toBe(3);

    const bad = path.join(dir, 'fm-bad');
    fs.mkdirSync(bad);
    writeIdx(path.join(bad, 'train-images-idx3-ubyte'), [2, 28, 28], images.subarray(0, 2 * 784));
    writeIdx(path.join(bad, 'train-labels-idx1-ubyte'), [3], labels.subarray(0, 3));
    expect(() => FashionMnist.open('train', { dir: bad, validationSize: 1 })).toThrow(/has 3 labels but .* has 2 images/);
    writeIdx(path.join(bad, 'train-labels-idx1-ubyte'), [2], Uint8Array.from([1, 12]));
    expect(() => FashionMnist.open('train', { dir: bad, validationSize: 1 })).toThrow(/label 12 at 1 is not in 0..9/);
  });
});

// ---- Food-11 ---------------------------------------------------------------------------------------------------

describe('Food-11 (generated folder)', () => {
  let fixture: Food11Fixture;
  const root = path.join(dir, 'food11');
  const cacheDir = path.join(dir, 'cache');
  const counting = () => {
    const counter = { decodes: 0 };
    const decode = async (file: string, size: number) => {
      counter.decodes++;
      return decodeFood11Image(file, size);
    };
    return { counter, decode };
  };

  beforeAll(async () => {
    fixture = await makeFood11(root, { perClass: 2, validationPerClass: 1, evaluation: 12, size: 40 });
  });

  it('labels from the names, files sorted by name, unlabelled evaluation split with Kaggle ids', async () => {
    const { counter, decode } = counting();
    const progress: number[] = [];
    const train = await Food11.open(root, 'training', { size: 32, cacheDir, decode, onProgress: (done) => progress.push(done) });
    expect(train.length).toBe(22);
    expect(train.files).toEqual(fixture.files.training);
    expect(Array.from(train.labels!)).toEqual(fixture.labels.training);
    expect(train.files.slice(0, 4)).toEqual(['0_0.jpg', '0_11.jpg', '10_10.jpg', '10_21.jpg']); // Python sorted() order
    expect(counter.decodes).toBe(22);
    expect(progress.at(-1)).toBe(22);
    expect([train.channels, train.height, train.width, train.numClasses]).toEqual([3, 32, 32, 11]);
    for (let i = 0; i < train.length; i++) expect(train.image(i).length).toBe(3 * 32 * 32);

    const evaluation = await Food11.open(root, 'evaluation', { size: 32, cacheDir });
    expect(evaluation.labels).toBeNull();
    expect(evaluation.split).toBe('evaluation');
    expect(evaluation.files).toEqual(fixture.files.evaluation);
    expect(evaluation.files.map((_, i) => evaluation.kaggleId(i))).toEqual(evaluation.files.map((f) => f.replace('.jpg', '')));
    expect(kaggleId(7)).toBe('0007');
    expect(listFood11(root, 'test').split).toBe('evaluation');
    expect((await Food11.open(root, 'val', { size: 32, cacheDir })).length).toBe(11);
    expect(datasetIdentity(train)).toEqual({ name: 'food11', split: 'training', count: 22, fingerprint: train.fingerprint, numClasses: 11 });
  });

  it('class patterns survive decoding: mean colour per class is distinct', async () => {
    const train = await Food11.open(root, 'training', { size: 32, cacheDir });
    const means = new Map<number, number[]>();
    for (let i = 0; i < train.length; i++) {
      const img = train.image(i);
      const rgb = [0, 1, 2].map((c) => img.subarray(c * 1024, (c + 1) * 1024).reduce((a, b) => a + b, 0) / 1024);
      const previous = means.get(train.labels![i]);
      if (previous) for (let c = 0; c < 3; c++) expect(Math.abs(previous[c] - rgb[c])).toBeLessThan(25);
      else means.set(train.labels![i], rgb);
    }
    const list = [...means.values()];
    for (let a = 0; a < list.length; a++) {
      for (let b = a + 1; b < list.length; b++) expect(Math.max(...[0, 1, 2].map((c) => Math.abs(list[a][c] - list[b][c])))).toBeGreaterThan(20);
    }
  });

  it('a second open decodes nothing (cache hit) and gives identical pixels; a touched file alone is decoded again', async () => {
    const first = counting();
    const a = await Food11.open(root, 'validation', { size: 24, cacheDir, decode: first.decode });
    expect(first.counter.decodes).toBe(11);
    expect(a.decodedCount).toBe(11);
    const second = counting();
    const b = await Food11.open(root, 'validation', { size: 24, cacheDir, decode: second.decode });
    expect(second.counter.decodes).toBe(0);
    expect(b.decodedCount).toBe(0);
    for (let i = 0; i < a.length; i++) expect(b.image(i)).toEqual(a.image(i));

    // Serving from the cache file instead of memory gives the same pixels.
    const streamed = await Food11.open(root, 'validation', { size: 24, cacheDir, decode: second.decode, memoryLimitBytes: 0 });
    expect(second.counter.decodes).toBe(0);
    for (let i = 0; i < a.length; i++) expect(streamed.image(i)).toEqual(a.image(i));
    streamed.close();

    const touched = path.join(root, 'validation', fixture.files.validation[4]);
    const later = new Date(Date.now() + 5000);
    fs.utimesSync(touched, later, later);
    const third = counting();
    const c = await Food11.open(root, 'validation', { size: 24, cacheDir, decode: third.decode });
    expect(third.counter.decodes).toBe(1);
    for (let i = 0; i < a.length; i++) expect(c.image(i)).toEqual(a.image(i));

    // Another size is another cache entry.
    const fourth = counting();
    await Food11.open(root, 'validation', { size: 16, cacheDir, decode: fourth.decode });
    expect(fourth.counter.decodes).toBe(11);
    expect(fs.readdirSync(cacheDir).filter((n) => n.endsWith('.tmp'))).toEqual([]);
  });

  it('a decode failure leaves no cache behind and names the file', async () => {
    const broken = path.join(dir, 'food11-broken');
    await makeFood11(broken, { perClass: 1, validationPerClass: 1, evaluation: 2, size: 20, classes: 3 });
    fs.writeFileSync(path.join(broken, 'training', '1_1.jpg'), 'not a jpeg');
    const brokenCache = path.join(dir, 'cache-broken');
    await expect(Food11.open(broken, 'training', { size: 16, cacheDir: brokenCache })).rejects.toThrow(/Food-11: cannot decode .*1_1.jpg/);
    expect(fs.existsSync(brokenCache) ? fs.readdirSync(brokenCache) : []).toEqual([]);
  });

  it('a file name without a label is a clear error naming the file and the pattern; test/ is accepted', async () => {
    const other = path.join(dir, 'food11-other');
    await makeFood11(other, { perClass: 1, validationPerClass: 1, evaluation: 2, size: 20, classes: 2, evaluationFolder: 'test' });
    expect(listFood11(other, 'evaluation').files.map((f) => f.name)).toEqual(['0000.jpg', '0001.jpg']);
    fs.copyFileSync(path.join(other, 'training', '0_0.jpg'), path.join(other, 'training', 'bread.jpg'));
    const file = path.join(other, 'training', 'bread.jpg');
    expect(() => listFood11(other, 'training')).toThrow(`Food-11: cannot parse the label of ${file}: expected '<label>_<n>.jpg' with <label> in 0..10`);
    fs.renameSync(file, path.join(other, 'training', '11_3.jpg'));
    expect(() => listFood11(other, 'training')).toThrow(/label 11 of .*11_3.jpg is not in 0..10/);
    expect(() => listFood11(path.join(dir, 'nowhere'), 'training')).toThrow(/no training\/ folder in/);
    expect(() => listFood11(other, 'holdout')).toThrow(/unknown split 'holdout'/);
  });

  it('decoding: shorter side to round(size*256/224), center crop, RGB CHW (orientation checked with two-colour images)', async () => {
    expect(food11ResizeShort(224)).toBe(256);
    expect(food11ResizeShort(64)).toBe(73);
    // Wide image: left half red, right half blue -> after the center crop, left columns red, right columns blue.
    const [w, h] = [90, 40];
    const wide = new Uint8Array(w * h * 3);
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) wide.set(x < w / 2 ? [255, 0, 0] : [0, 0, 255], (y * w + x) * 3);
    const wideFile = path.join(dir, 'wide.png');
    await sharp(wide, { raw: { width: w, height: h, channels: 3 } }).png().toFile(wideFile);
    const size = 32;
    const out = await decodeFood11Image(wideFile, size);
    expect(out.length).toBe(3 * size * size);
    const at = (c: number, y: number, x: number) => out[c * size * size + y * size + x];
    for (const y of [0, 15, 31]) {
      expect([at(0, y, 0), at(1, y, 0), at(2, y, 0)]).toEqual([255, 0, 0]);
      expect([at(0, y, 31), at(1, y, 31), at(2, y, 31)]).toEqual([0, 0, 255]);
    }
    // Resized to 37 rows x floor(37*90/40) = 83 columns; crop left = round((83-32)/2) = 26: the edge sits at 41.5-26.
    const edge = [...Array(size).keys()].find((x) => at(2, 10, x) > 127)!;
    expect(edge).toBeGreaterThanOrEqual(15);
    expect(edge).toBeLessThanOrEqual(16);
    // Tall grayscale image with an alpha channel: top black, bottom white -> 3 equal channels, dark top, light bottom.
    const tall = new Uint8Array(30 * 70 * 2);
    for (let y = 0; y < 70; y++) for (let x = 0; x < 30; x++) tall.set([y < 35 ? 0 : 255, 255], (y * 30 + x) * 2);
    const tallFile = path.join(dir, 'tall.png');
    await sharp(tall, { raw: { width: 30, height: 70, channels: 2 } }).png().toFile(tallFile);
    const gray = await decodeFood11Image(tallFile, 16);
    const g = (c: number, y: number, x: number) => gray[c * 256 + y * 16 + x];
    for (let c = 0; c < 3; c++) {
      expect(g(c, 0, 8)).toBe(0);
      expect(g(c, 15, 8)).toBe(255);
    }
    expect(roundHalfEven(8.5)).toBe(8);
    expect(roundHalfEven(9.5)).toBe(10);
    expect(roundHalfEven(2.4)).toBe(2);
  });
});

// ---- augmentation ----------------------------------------------------------------------------------------------

/** Float64 reference of the sample transform: torch-style bilinear (align_corners=False) of the crop, then flip. */
function referenceTransform(img: Uint8Array, c: number, h: number, w: number, t: SampleTransform, mean: number[], std: number[]): number[] {
  const box = t.box ?? { x: 0, y: 0, w, h };
  const out: number[] = [];
  const sourceIndex = (o: number, inSize: number, outSize: number) => Math.max(0, ((o + 0.5) * inSize) / outSize - 0.5);
  for (let ch = 0; ch < c; ch++) {
    for (let y = 0; y < h; y++) {
      for (let xo = 0; xo < w; xo++) {
        const x = t.hflip ? w - 1 - xo : xo;
        const sy = sourceIndex(y, box.h, h);
        const sx = sourceIndex(x, box.w, w);
        const y0 = Math.min(Math.floor(sy), box.h - 1);
        const x0 = Math.min(Math.floor(sx), box.w - 1);
        const y1 = Math.min(y0 + 1, box.h - 1);
        const x1 = Math.min(x0 + 1, box.w - 1);
        const ly = sy - y0;
        const lx = sx - x0;
        const p = (yy: number, xx: number) => img[ch * h * w + (box.y + yy) * w + box.x + xx];
        const v = (1 - ly) * ((1 - lx) * p(y0, x0) + lx * p(y0, x1)) + ly * ((1 - lx) * p(y1, x0) + lx * p(y1, x1));
        out.push((v / 255 - mean[ch]) / std[ch]);
      }
    }
  }
  return out;
}

function toyDataset(n: number, c: number, h: number, w: number, labelled = true, seed = 1): InMemoryDataset {
  const random = rng(seed);
  return new InMemoryDataset({
    name: 'toy',
    split: 'train',
    channels: c,
    height: h,
    width: w,
    images: Uint8Array.from({ length: n * c * h * w }, () => Math.floor(random() * 256)),
    labels: labelled ? Int32Array.from({ length: n }, (_, i) => (i * 5) % 7) : null,
    numClasses: 7,
    mean: Array.from({ length: c }, (_, i) => 0.3 + 0.1 * i),
    std: Array.from({ length: c }, (_, i) => 0.2 + 0.05 * i),
  });
}

async function collect(loader: DataLoader, epoch: number, skip = 0): Promise<Batch[]> {
  const batches: Batch[] = [];
  for await (const b of loader.epoch(epoch, { skip })) batches.push(b);
  return batches;
}

describe('augmentation (bilinear resized crop and flip vs a float64 reference, abs 1e-4)', () => {
  const [c, h, w] = [3, 7, 13];
  const ds = toyDataset(1, c, h, w);
  const img = ds.image(0);
  const transforms: [string, SampleTransform][] = [
    ['identity', { box: null, hflip: false }],
    ['hflip', { box: null, hflip: true }],
    ['full box = identity', { box: { x: 0, y: 0, w, h }, hflip: false }],
    ['upsampling crop', { box: { x: 2, y: 1, w: 5, h: 4 }, hflip: false }],
    ['crop + flip', { box: { x: 6, y: 3, w: 7, h: 4 }, hflip: true }],
    ['1x1 crop', { box: { x: 12, y: 6, w: 1, h: 1 }, hflip: false }],
    ['non-square crop', { box: { x: 0, y: 0, w: 13, h: 2 }, hflip: true }],
  ];
  for (const [title, t] of transforms) {
    it(title, async () => {
      const { transformInto, normalisation } = await import('../src/data/augment.js');
      const { scale, shift } = normalisation(ds.mean, ds.std);
      const out = new Float32Array(c * h * w + 3);
      transformInto(img, c, h, w, t, scale, shift, out, 3);
      const want = referenceTransform(img, c, h, w, t, [...ds.mean], [...ds.std]);
      for (let i = 0; i < want.length; i++) expect(Math.abs(out[3 + i] - want[i])).toBeLessThan(1e-4);
    });
  }

  it('views: grammar, formatting, pixel boxes, errors', () => {
    expect(parseView('identity')).toEqual({ crop: null, hflip: false });
    expect(parseView('hflip')).toEqual({ crop: null, hflip: true });
    const spec = parseView('crop(0.125,0,0.75,0.5)+hflip');
    expect(spec).toEqual({ crop: { x: 0.125, y: 0, w: 0.75, h: 0.5 }, hflip: true });
    expect(formatView(spec)).toBe('crop(0.125,0,0.75,0.5)+hflip');
    expect(viewTransform(spec, 8, 16)).toEqual({ box: { x: 2, y: 0, w: 12, h: 4 }, hflip: true });
    expect(() => parseView('vflip')).toThrow(/view 'vflip': unknown part 'vflip'; expected 'identity', 'hflip'/);
    expect(() => parseView('crop(0.5,0,0.6,1)')).toThrow(/inside the image/);
    expect(() => parseView('crop(a,0,1,1)')).toThrow(/numbers in \[0, 1\]/);
    expect(() => parseView('hflip+hflip')).toThrow(/twice/);
  });

  it('random resized crop boxes: seeded, inside the image, area within the scale range', () => {
    const boxes = (seed: number) => {
      const random = rng(seed);
      return Array.from({ length: 200 }, () => randomResizedCropBox(random, 28, 40, [0.3, 1], [3 / 4, 4 / 3]));
    };
    expect(boxes(4)).toEqual(boxes(4));
    expect(boxes(4)).not.toEqual(boxes(5));
    for (const b of boxes(4)) {
      expect(b.x >= 0 && b.y >= 0 && b.x + b.w <= 40 && b.y + b.h <= 28).toBe(true);
      expect(b.w * b.h).toBeGreaterThanOrEqual(0.3 * 28 * 40 * 0.85); // rounding of w and h
      expect(b.w * b.h).toBeLessThanOrEqual(28 * 40);
    }
    // Impossible ratios fall back to the central crop with the ratio clamped.
    const fallback = randomResizedCropBox(rng(1), 10, 100, [0.9, 1], [1, 1]);
    expect(fallback).toEqual({ x: 45, y: 0, w: 10, h: 10 });
  });
});

// ---- loader ----------------------------------------------------------------------------------------------------

describe('DataLoader', () => {
  const ds = toyDataset(50, 3, 5, 6);

  it('unshuffled: dataset order, normalised pixels, labels, last partial batch (or dropped)', async () => {
    const loader = new DataLoader(ds, { batchSize: 16 });
    const batches = await collect(loader, 0);
    expect(batches.map((b) => b.indices.length)).toEqual([16, 16, 16, 2]);
    expect(Array.from(batches.flatMap((b) => Array.from(b.indices)))).toEqual([...Array(50).keys()]);
    const b = batches[3];
    expect(Array.from(b.y!)).toEqual([ds.labels![48], ds.labels![49]]);
    expect(b.view).toBeNull();
    const img = ds.image(49);
    for (let i = 0; i < 90; i++) {
      const ch = Math.floor(i / 30);
      expect(Math.abs(b.x[90 + i] - (img[i] / 255 - ds.mean[ch]) / ds.std[ch])).toBeLessThan(1e-5);
    }
    const dropping = new DataLoader(ds, { batchSize: 16, dropLast: true });
    expect(dropping.batchesPerEpoch).toBe(3);
    expect((await collect(dropping, 0)).map((x) => x.indices.length)).toEqual([16, 16, 16]);
  });

  it('shuffled: a permutation per epoch, reproducible for (seed, epoch), different across epochs and seeds', async () => {
    const make = (seed: number) => new DataLoader(ds, { batchSize: 8, shuffle: true, seed, augment: { hflip: true, randomResizedCrop: { scale: [0.5, 1], ratio: [0.75, 1.33] } } });
    const a = await collect(make(1), 2);
    const b = await collect(make(1), 2);
    const order = (bs: Batch[]) => bs.flatMap((x) => Array.from(x.indices));
    expect([...order(a)].sort((p, q) => p - q)).toEqual([...Array(50).keys()]);
    expect(order(a)).toEqual(order(b));
    for (let k = 0; k < a.length; k++) expect(a[k].x).toEqual(b[k].x);
    expect(order(await collect(make(1), 3))).not.toEqual(order(a));
    expect(order(await collect(make(2), 2))).not.toEqual(order(a));
  });

  it('skip k batches = the same later batches (resume mid-epoch), with augmentation and with views', async () => {
    for (const options of [
      { augment: { hflip: true, randomResizedCrop: { scale: [0.2, 1] as [number, number], ratio: [0.5, 2] as [number, number] } } },
      { views: ['identity', 'hflip', 'crop(0.2,0.2,0.6,0.6)'] },
    ]) {
      const loader = new DataLoader(ds, { batchSize: 7, shuffle: true, seed: 11, ...options });
      const all = await collect(loader, 4);
      const resumed = await collect(new DataLoader(ds, { batchSize: 7, shuffle: true, seed: 11, ...options }), 4, 3);
      expect(resumed.length).toBe(all.length - 3);
      resumed.forEach((r, i) => {
        expect(r.indices).toEqual(all[i + 3].indices);
        expect(r.x).toEqual(all[i + 3].x);
        expect(r.view).toEqual(all[i + 3].view);
      });
      expect(await collect(loader, 4, all.length)).toEqual([]);
      // batch(e, k) random access gives the same batch as the generator.
      expect(loader.batch(4, 5).x).toEqual(all[5].x);
    }
  });

  it('hflip augmentation is seeded, and each sample is either the plain or the mirrored image', async () => {
    const plain = await collect(new DataLoader(ds, { batchSize: 50 }), 0);
    const aug = (seed: number) => collect(new DataLoader(ds, { batchSize: 50, seed, augment: { hflip: true } }), 0);
    const [a, b, c] = [await aug(3), await aug(3), await aug(4)];
    expect(a[0].x).toEqual(b[0].x);
    expect(a[0].x).not.toEqual(c[0].x);
    const size = 90;
    let flipped = 0;
    for (let s = 0; s < 50; s++) {
      const got = a[0].x.subarray(s * size, (s + 1) * size);
      const base = plain[0].x.subarray(s * size, (s + 1) * size);
      const mirror = Float32Array.from(base, (_, i) => base[Math.floor(i / 6) * 6 + (5 - (i % 6))]);
      const isPlain = got.every((v, i) => v === base[i]);
      const isMirror = got.every((v, i) => v === mirror[i]);
      expect(isPlain || isMirror).toBe(true);
      if (isMirror && !isPlain) flipped++;
    }
    expect(flipped).toBeGreaterThan(10);
    expect(flipped).toBeLessThan(40);
  });

  it('views: a seeded view per sample, the image is exactly that view, every view used', async () => {
    const views = ['identity', 'hflip', 'crop(0.25,0.2,0.5,0.6)+hflip'];
    const loader = new DataLoader(ds, { batchSize: 10, shuffle: true, seed: 5, views });
    const batches = await collect(loader, 1);
    const counts = [0, 0, 0];
    for (const b of batches) {
      for (let s = 0; s < b.indices.length; s++) {
        const v = b.view![s];
        counts[v]++;
        const t = viewTransform(parseView(views[v]), ds.height, ds.width);
        const want = referenceTransform(ds.image(b.indices[s]), 3, 5, 6, t, [...ds.mean], [...ds.std]);
        for (let i = 0; i < 90; i++) expect(Math.abs(b.x[s * 90 + i] - want[i])).toBeLessThan(1e-4);
      }
    }
    expect(counts.every((n) => n > 5)).toBe(true);
    const again = await collect(new DataLoader(ds, { batchSize: 10, shuffle: true, seed: 5, views }), 1);
    expect(again.map((b) => Array.from(b.view!))).toEqual(batches.map((b) => Array.from(b.view!)));
    expect(new DataLoader(ds, { batchSize: 4, views: 2 }).views).toEqual(['identity', 'hflip']);
    expect(() => new DataLoader(ds, { batchSize: 4, views, augment: { hflip: true } })).toThrow(/augment and views are exclusive/);
    expect(() => new DataLoader(ds, { batchSize: 4, views: ['rotate(5)'] })).toThrow(/view 'rotate\(5\)'/);
    expect(() => new DataLoader(ds, { batchSize: 0 })).toThrow(/batchSize 0/);
  });

  it('recycled image buffers are reused and fully overwritten', async () => {
    const options = { batchSize: 8, shuffle: true, seed: 2, augment: { hflip: true } };
    const reference = await collect(new DataLoader(ds, options), 0);
    const loader = new DataLoader(ds, options);
    const buffers = new Set<Float32Array>();
    let k = 0;
    for await (const batch of loader.epoch(0)) {
      expect(batch.x).toEqual(reference[k++].x);
      buffers.add(batch.x);
      loader.recycle(batch);
    }
    expect(k).toBe(7);
    expect(buffers.size).toBeLessThan(5); // a couple of buffers cycle (prefetch depth 1), plus the smaller last batch
  });

  it('unlabelled datasets give y = null; the next batch is assembled while the consumer waits', async () => {
    const unlabelled: Dataset = toyDataset(9, 1, 2, 2, false);
    const loader = new DataLoader(unlabelled, { batchSize: 4 });
    let assembled = 0;
    const original = loader.batch.bind(loader);
    loader.batch = (e: number, k: number) => {
      assembled++;
      return original(e, k);
    };
    const iterator = loader.epoch(0);
    const first = await iterator.next();
    expect(first.value!.y).toBeNull();
    expect(assembled).toBe(1);
    await new Promise((resolve) => setImmediate(resolve)); // the consumer awaits something (the GPU)
    await new Promise((resolve) => setImmediate(resolve));
    expect(assembled).toBe(2); // batch 1 was prepared meanwhile
    const rest = [];
    for await (const b of { [Symbol.asyncIterator]: () => iterator }) rest.push(b);
    expect(rest.map((b) => b.indices.length)).toEqual([4, 1]);
  });
});
