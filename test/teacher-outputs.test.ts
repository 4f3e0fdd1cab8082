import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { InMemoryDataset, datasetIdentity } from '../src/data/dataset.js';
import { rng } from '../src/random.js';
import { DataLoader } from '../src/data/loader.js';
import {
  TeacherAlignmentError,
  TeacherOutputsWriter,
  openTeacherOutputs,
  writeTeacherOutputs,
  type TeacherOutputsData,
} from '../src/teacher/outputs.js';
import { writeSafetensors } from '../src/teacher/safetensors.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wgkd-teacher-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
let counter = 0;
const fresh = (): string => path.join(dir, `t-${counter++}.safetensors`);

// Values that encode where they came from: view v, sample n, element e -> distinct and checkable.
const code = (tensor: number, v: number, n: number, e: number): number => tensor * 1e6 + v * 1e5 + n * 100 + e;

function sample(options: { views: string[]; viewsAxis?: boolean; n: number; k: number; d?: number; hint?: [number, number, number] }): TeacherOutputsData {
  const { views, n, k, d, hint } = options;
  const fill = (tensor: number, rowSize: number) =>
    Float32Array.from({ length: views.length * n * rowSize }, (_, i) => {
      const v = Math.floor(i / (n * rowSize));
      const r = i % (n * rowSize);
      return code(tensor, v, Math.floor(r / rowSize), r % rowSize);
    });
  const hintSize = hint ? hint[0] * hint[1] * hint[2] : 0;
  return {
    dataset: 'toy',
    split: 'train',
    fingerprint: 'abc123',
    count: n,
    numClasses: k,
    teacher: 'resnet18 test',
    teacherAccuracy: 0.9,
    views,
    viewsAxis: options.viewsAxis,
    logits: fill(1, k),
    embeddingDim: d,
    embedding: d ? fill(2, d) : undefined,
    hints: hint ? { layer2: hint } : undefined,
    hintData: hint ? { layer2: fill(3, hintSize) } : undefined,
  };
}

function expectRows(got: Float32Array, tensor: number, rowSize: number, rows: [v: number, n: number][]): void {
  expect(got.length).toBe(rows.length * rowSize);
  rows.forEach(([v, n], i) => {
    for (let e = 0; e < rowSize; e++) {
      if (got[i * rowSize + e] !== code(tensor, v, n, e)) throw new Error(`row ${i} (view ${v}, sample ${n}) element ${e}: ${got[i * rowSize + e]}`);
    }
  });
}

describe('teacher outputs: write, open, readBatch', () => {
  it('single view without a views axis: metadata, shapes, random-access rows', () => {
    const file = fresh();
    writeTeacherOutputs(file, sample({ views: ['identity'], n: 37, k: 11, d: 6, hint: [3, 2, 2] }));
    const t = openTeacherOutputs(file);
    expect(t.hasViewsAxis).toBe(false);
    expect(t.views).toEqual(['identity']);
    expect(t.count).toBe(37);
    expect(t.numClasses).toBe(11);
    expect(t.embeddingDim).toBe(6);
    expect(t.hintShapes).toEqual({ layer2: [3, 2, 2] });
    expect(t.tensors).toEqual({ logits: [37, 11], embedding: [37, 6], 'hint.layer2': [37, 3, 2, 2] });
    expect(t.metadata).toMatchObject({ dataset: 'toy', split: 'train', count: 37, fingerprint: 'abc123', numClasses: 11, teacher: 'resnet18 test', teacherAccuracy: 0.9, formatVersion: 1 });
    const indices = [5, 6, 7, 0, 36, 36, 12, 11];
    const batch = t.readBatch(indices, 0);
    expectRows(batch.logits, 1, 11, indices.map((n) => [0, n]));
    expectRows(batch.embedding!, 2, 6, indices.map((n) => [0, n]));
    expectRows(batch.hints!.layer2, 3, 12, indices.map((n) => [0, n]));
    const slim = t.readBatch(Int32Array.from([3]), 0, { embedding: false, hints: false });
    expect(slim.embedding).toBeUndefined();
    expect(slim.hints).toBeUndefined();
    expect(() => t.readBatch([37], 0)).toThrow(/sample index 37 outside \[0, 37\)/);
    expect(() => t.readBatch([0], 1)).toThrow(/view 1 outside \[0, 1\)/);
    expect(() => t.readBatch([0], 0, { hints: ['layer9'] })).toThrow(/no hint 'layer9' \(hints: layer2\)/);
    t.close();
  });

  it('views axis [V, N, ...]: one view per batch or one per sample', () => {
    const file = fresh();
    const views = ['identity', 'hflip', 'crop(0.1,0.1,0.8,0.8)'];
    writeTeacherOutputs(file, sample({ views, n: 20, k: 4, d: 3, hint: [2, 1, 3] }));
    const t = openTeacherOutputs(file);
    expect(t.hasViewsAxis).toBe(true);
    expect(t.views).toEqual(views);
    expect(t.tensors.logits).toEqual([3, 20, 4]);
    const indices = Int32Array.from([19, 0, 1, 2, 7, 7]);
    expectRows(t.readBatch(indices, 2).logits, 1, 4, Array.from(indices, (n) => [2, n]));
    const perSample = Int32Array.from([0, 1, 1, 1, 2, 0]);
    const batch = t.readBatch(indices, perSample);
    const rows = Array.from(indices, (n, i) => [perSample[i], n] as [number, number]);
    expectRows(batch.logits, 1, 4, rows);
    expectRows(batch.embedding!, 2, 3, rows);
    expectRows(batch.hints!.layer2, 3, 6, rows);
    expect(() => t.readBatch(indices, [0, 1])).toThrow(/6 indices but 2 views/);
    t.close();
  });

  it('a single view may also be stored with a views axis; F16 storage reads back rounded', () => {
    const file = fresh();
    const data = sample({ views: ['identity'], viewsAxis: true, n: 5, k: 3 });
    data.logits = Float32Array.from({ length: 15 }, (_, i) => i / 3);
    writeTeacherOutputs(file, { ...data, dtype: 'F16' });
    const t = openTeacherOutputs(file);
    expect(t.hasViewsAxis).toBe(true);
    expect(t.tensors.logits).toEqual([1, 5, 3]);
    const got = t.readBatch([0, 1, 2, 3, 4], 0).logits;
    for (let i = 0; i < 15; i++) expect(Math.abs(got[i] - i / 3)).toBeLessThanOrEqual((i / 3) * 2 ** -11 + 1e-12);
    t.close();
  });

  it('the streaming writer assembles batches per view, and refuses undeclared or missing parts', () => {
    const file = fresh();
    const w = TeacherOutputsWriter.create(file, { dataset: 'toy', split: 'train', fingerprint: 'f', count: 4, numClasses: 2, teacher: 't', views: ['identity', 'hflip'], hints: { h: [1, 1, 1] } });
    expect(() => w.write(0, 0, { logits: new Float32Array(4) })).toThrow(/hint 'h' missing/);
    expect(() => w.write(0, 0, { logits: new Float32Array(4), embedding: new Float32Array(2), hints: { h: new Float32Array(2) } })).toThrow(/embedding given but not declared/);
    expect(() => w.write(3, 0, { logits: new Float32Array(4), hints: { h: new Float32Array(2) } })).toThrow(/samples \[3, 5\) outside \[0, 4\)/);
    expect(() => w.write(0, 2, { logits: new Float32Array(2), hints: { h: new Float32Array(1) } })).toThrow(/view 2 outside/);
    expect(() => w.write(0, 0, { logits: new Float32Array(4), hints: { h: new Float32Array(2), g: new Float32Array(2) } })).toThrow(/hint 'g' not declared/);
    for (const v of [1, 0]) {
      for (const start of [2, 0]) {
        w.write(start, v, { logits: Float32Array.from([v, start, v, start + 1]), hints: { h: Float32Array.from([10 * v + start, 10 * v + start + 1]) } });
      }
    }
    w.finish();
    const t = openTeacherOutputs(file);
    const batch = t.readBatch([3, 0], [1, 0]);
    expect(Array.from(batch.logits)).toEqual([1, 3, 0, 0]);
    expect(Array.from(batch.hints!.h)).toEqual([13, 0]);
    expect(t.metadata.teacherAccuracy).toBeNull();
    t.close();

    const partial = TeacherOutputsWriter.create(fresh(), { dataset: 'toy', split: 'train', fingerprint: 'f', count: 4, numClasses: 2, teacher: 't' });
    partial.write(0, 0, { logits: new Float32Array(4) });
    expect(() => partial.finish()).toThrow(/'logits': elements from 4 of 8 never written/);
  });

  it('writeTeacherOutputs checks array lengths against V x N x row', () => {
    const data = sample({ views: ['identity', 'hflip'], n: 4, k: 3, d: 2 });
    expect(() => writeTeacherOutputs(fresh(), { ...data, logits: new Float32Array(12) })).toThrow(/logits has 12 values, expected 2 x 4 x 3/);
    expect(() => writeTeacherOutputs(fresh(), { ...data, embedding: new Float32Array(3) })).toThrow(/embedding has 3 values/);
    expect(() => writeTeacherOutputs(fresh(), { ...data, views: ['identity', 'hflip'], viewsAxis: false })).toThrow(/2 views need a views axis/);
  });
});

describe('teacher outputs: malformed files', () => {
  const meta = { format: 'wgkd-teacher-outputs', format_version: '1', dataset: 'toy', split: 'train', count: '4', fingerprint: 'f', num_classes: '3', teacher: 't', views: '["identity"]' };
  const logits = { shape: [4, 3], data: new Float32Array(12) };
  const cases: [string, Parameters<typeof writeSafetensors>[1], Record<string, string>, RegExp][] = [
    ['no logits', { embedding: { shape: [4, 2], data: new Float32Array(8) } }, meta, /no 'logits' tensor/],
    ['logits rank 1', { logits: { shape: [12], data: new Float32Array(12) } }, meta, /neither \[N, K\] nor \[V, N, K\]/],
    ['integer logits', { logits: { shape: [4, 3], data: new Int32Array(12) } }, meta, /'logits' is I32; expected F32 or F16/],
    ['count disagrees', { logits }, { ...meta, count: '5' }, /metadata count 5 disagrees with logits \[4,3\]/],
    ['num_classes disagrees', { logits }, { ...meta, num_classes: '4' }, /num_classes 4 disagrees/],
    ['views count disagrees', { logits }, { ...meta, views: '["identity","hflip"]' }, /lists 2 views .* hold 1/],
    ['views not a list', { logits }, { ...meta, views: '{"a":1}' }, /not a JSON list of strings/],
    ['embedding leading dims', { logits, embedding: { shape: [5, 2], data: new Float32Array(10) } }, meta, /'embedding' leading dims \[5\] differ from the logits' \[4\]/],
    ['hint rank', { logits, 'hint.a': { shape: [4, 2, 2], data: new Float32Array(16) } }, meta, /'hint.a' has shape \[4,2,2\]; expected rank 4/],
    ['no format_version', { logits }, { ...meta, format_version: undefined as unknown as string }, /no format_version/],
    ['future format_version', { logits }, { ...meta, format_version: '2' }, /format_version 2 is not supported/],
    ['foreign format', { logits }, { ...meta, format: 'other' }, /format is 'other'/],
    ['missing fingerprint', { logits }, { ...meta, fingerprint: undefined as unknown as string }, /has no 'fingerprint'/],
  ];
  for (const [title, tensors, metadata, problem] of cases) {
    it(title, () => {
      const file = fresh();
      const clean = Object.fromEntries(Object.entries(metadata).filter(([, v]) => v !== undefined));
      writeSafetensors(file, tensors, clean);
      let message = '';
      try {
        openTeacherOutputs(file).close();
      } catch (err) {
        message = (err as Error).message;
      }
      expect(message).toContain(file);
      expect(message).toMatch(problem);
    });
  }
});

describe('teacher outputs: alignment with the dataset', () => {
  const file = path.join(dir, 'aligned.safetensors');
  const identity = { name: 'toy', split: 'train', count: 6, fingerprint: 'abc123', numClasses: 11 };
  writeTeacherOutputs(file, sample({ views: ['identity'], n: 6, k: 11 }));

  it('matches its own dataset', () => {
    const t = openTeacherOutputs(file);
    expect(() => t.checkAlignment(identity)).not.toThrow();
    t.close();
  });

  const mismatches: [string, Partial<typeof identity>, RegExp][] = [
    ['dataset', { name: 'fashion-mnist' }, /dataset: expected "fashion-mnist" \(dataset\), got "toy" \(teacher file\)/],
    ['split', { split: 'validation' }, /split: expected "validation" \(dataset\), got "train" \(teacher file\)/],
    ['N', { count: 7 }, /N \(number of samples\): expected 7 \(dataset\), got 6 \(teacher file\)/],
    ['K', { numClasses: 10 }, /K \(number of classes\): expected 10 \(dataset\), got 11 \(teacher file\)/],
    ['fingerprint', { fingerprint: 'ffff' }, /fingerprint: expected "ffff" \(dataset\), got "abc123" \(teacher file\)/],
  ];
  for (const [field, change, message] of mismatches) {
    it(`names a differing ${field}, and only it`, () => {
      const t = openTeacherOutputs(file);
      let error: unknown = null;
      try {
        t.checkAlignment({ ...identity, ...change });
      } catch (err) {
        error = err;
      }
      t.close();
      expect(error).toBeInstanceOf(TeacherAlignmentError);
      expect((error as TeacherAlignmentError).mismatches.map((m) => m.field)).toEqual([field]);
      expect((error as Error).message).toMatch(message);
      expect((error as Error).message).toContain(file);
    });
  }

  it('lists every differing field at once', () => {
    const t = openTeacherOutputs(file);
    expect(() => t.checkAlignment({ name: 'x', split: 'y', count: 1, fingerprint: 'z', numClasses: 2 })).toThrow(
      /dataset: .*\n.*split: .*\n.*N \(number of samples\): .*\n.*K \(number of classes\): .*\n.*fingerprint: /,
    );
    t.close();
  });
});

describe('teacher views and the DataLoader', () => {
  it('each sample is shown exactly the view whose teacher outputs the batch reads', () => {
    const n = 24;
    const [c, h, w] = [2, 3, 5];
    const random = rng(5);
    const images = Uint8Array.from({ length: n * c * h * w }, () => Math.floor(random() * 256));
    const ds = new InMemoryDataset({ name: 'toy', split: 'train', channels: c, height: h, width: w, images, labels: Int32Array.from({ length: n }, (_, i) => i % 3), numClasses: 3, mean: [0, 0], std: [1 / 255, 1 / 255] });
    const file = fresh();
    const views = ['identity', 'hflip'];
    // Teacher "logits" = the first row of the view's image, so a mismatch between view and image is visible.
    const logits = new Float32Array(views.length * n * w);
    for (let v = 0; v < views.length; v++) {
      for (let s = 0; s < n; s++) {
        for (let x = 0; x < w; x++) logits[(v * n + s) * w + x] = ds.image(s)[v === 0 ? x : w - 1 - x];
      }
    }
    const id = datasetIdentity(ds);
    writeTeacherOutputs(file, { dataset: id.name, split: id.split, fingerprint: id.fingerprint, count: n, numClasses: w, teacher: 'row', views, logits });
    const teacher = openTeacherOutputs(file);
    const loader = new DataLoader(ds, { batchSize: 7, shuffle: true, seed: 3, views: teacher.views });
    const seen = new Set<number>();
    for (let k = 0; k < loader.batchesPerEpoch; k++) {
      const batch = loader.batch(0, k);
      const targets = teacher.readBatch(batch.indices, batch.view!);
      for (let s = 0; s < batch.indices.length; s++) {
        seen.add(batch.view![s]);
        for (let x = 0; x < w; x++) expect(batch.x[s * c * h * w + x]).toBeCloseTo(targets.logits[s * w + x], 3);
      }
    }
    expect([...seen].sort()).toEqual([0, 1]);
    teacher.close();
  });

  it('random batches of 64 from a file with hints: rows equal the stored rows', () => {
    const file = fresh();
    const n = 3000;
    writeTeacherOutputs(file, sample({ views: ['identity', 'hflip'], n, k: 11, d: 16, hint: [8, 4, 4] }));
    const t = openTeacherOutputs(file);
    const random = rng(9);
    for (let b = 0; b < 50; b++) {
      const indices = Array.from({ length: 64 }, () => Math.floor(random() * n));
      const view = Array.from({ length: 64 }, () => Math.floor(random() * 2));
      const batch = t.readBatch(indices, view);
      const rows = indices.map((i, s) => [view[s], i] as [number, number]);
      expectRows(batch.logits, 1, 11, rows);
      expectRows(batch.embedding!, 2, 16, rows);
      expectRows(batch.hints!.layer2, 3, 128, rows);
    }
    t.close();
  });
});
