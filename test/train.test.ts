// End to end on a generated Food-11 folder: a teacher exported by wgkd itself (two views, a hint map), then every
// recipe trains a few steps (loss goes down), checkpoints round-trip, predict writes the Kaggle CSV, resume is exact.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { PRESETS, createModel, evaluate, exportTeacherOutputs, loadCheckpoint, openDataset, openTeacherOutputs, train } from '../src/index.js';
import { useDevice } from './helpers/device.js';
import { makeFood11, type Food11Fixture } from './helpers/food11-fixture.js';

const device = useDevice();
const SIZE = 24; // dwpw at 24x24 downsamples to 6x6: small enough for CI on a software adapter
let fixture: Food11Fixture;
let work: string;
let teacherFile: string;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'wgkd-train-'));
  fixture = await makeFood11(join(work, 'food11'), { perClass: 8, validationPerClass: 3, size: 40, evaluation: 12 });
  const trainSet = await openDataset('food11', 'train', { data: fixture.root, size: SIZE, cacheDir: join(work, 'cache') });
  const teacher = createModel('resnet-small', { inChannels: 3, numClasses: 11, inputSize: SIZE, seed: 3 });
  teacherFile = join(work, 'teacher.safetensors');
  await exportTeacherOutputs(teacher, trainSet, { path: teacherFile, teacherName: 'resnet-small (random)', views: ['identity', 'hflip'], hints: ['layer2'] });
  teacher.dispose();
});

function base(name: string) {
  return { dataset: 'food11', data: fixture.root, size: SIZE, cacheDir: join(work, 'cache'), model: 'dwpw', batch: 16, lr: 3e-3, quiet: true, out: join(work, name) };
}

const mean = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;

describe('teacher export', () => {
  it('writes logits, embedding and hints for every view, aligned with the dataset', async () => {
    const t = openTeacherOutputs(teacherFile);
    expect(t.views).toEqual(['identity', 'hflip']);
    expect(t.count).toBe(88);
    expect(t.tensors.logits).toEqual([2, 88, 11]);
    expect(t.tensors.embedding).toEqual([2, 88, 128]);
    expect(t.tensors['hint.layer2']).toEqual([2, 88, 64, 12, 12]);
    expect(t.hintNames).toEqual(['layer2']);
    const ds = await openDataset('food11', 'train', { data: fixture.root, size: SIZE, cacheDir: join(work, 'cache') });
    expect(() => t.checkAlignment({ name: ds.name, split: ds.split, count: ds.length, fingerprint: ds.fingerprint, numClasses: ds.numClasses })).not.toThrow();
    const val = await openDataset('food11', 'validation', { data: fixture.root, size: SIZE, cacheDir: join(work, 'cache') });
    expect(() => t.checkAlignment({ name: val.name, split: val.split, count: val.length, fingerprint: val.fingerprint, numClasses: val.numClasses })).toThrow(/split|N|fingerprint/);
    t.close();
  });
});

describe('every recipe trains end to end (loss goes down)', () => {
  for (const recipe of Object.keys(PRESETS)) {
    it(recipe, async () => {
      const r = await train({ ...base(`recipe-${recipe}`), recipe, teacher: recipe === 'ce' ? undefined : teacherFile, epochs: 4 });
      expect(r.stepLosses.length).toBe(4 * 5); // 88 images, batch 16, last partial batch dropped
      expect(r.stepLosses.every(Number.isFinite)).toBe(true);
      expect(mean(r.stepLosses.slice(-5))).toBeLessThan(mean(r.stepLosses.slice(0, 5)));
      expect(r.history.length).toBe(4);
      expect(r.history[0].loss).toHaveProperty('total');
      const lines = readFileSync(join(r.runDir, 'metrics.jsonl'), 'utf8').trim().split('\n');
      expect(lines.length).toBe(4);
      if (recipe === 'fitnet') expect(r.extraParams).toBeGreaterThan(0);
      r.model.dispose();
    });
  }

  it('a two-stage FitNet trains only the hint in its first epoch', async () => {
    const r = await train({ ...base('fitnet2'), teacher: teacherFile, epochs: 2, recipe: { ce: 1, fitnet: { weight: 1, student: 'auto', teacher: 'layer2', stages: 'two-stage', hintEpochs: 1 } } });
    expect(Object.keys(r.history[0].loss).sort()).toEqual(['fitnet', 'total']);
    expect(Object.keys(r.history[1].loss).sort()).toEqual(['ce', 'fitnet', 'total']);
    r.model.dispose();
  });
});

describe('fractional epochs', () => {
  it('--epochs 1.5 runs round(1.5 x steps per epoch) steps, validates after the partial epoch, and anneals to the end', async () => {
    // 88 images, batch 16, last partial batch dropped: 5 steps per epoch, so 1.5 epochs = 8 steps (5 + 3).
    const r = await train({ ...base('fractional'), epochs: 1.5, schedule: 'cosine', logSteps: true });
    r.model.dispose();
    const records = readFileSync(join(r.runDir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    const steps = records.filter((m) => m.type === 'step');
    const epochs = records.filter((m) => m.type === 'epoch');
    expect(steps.map((m) => m.step)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(epochs.map((m) => [m.epoch, m.step])).toEqual([[1, 5], [2, 8]]);
    expect(r.history).toHaveLength(2);
    // Cosine over 8 steps: the last step runs at lr * (1 + cos(pi * 7 / 8)) / 2.
    expect(steps[7].lr).toBeCloseTo(3e-3 * (1 + Math.cos((Math.PI * 7) / 8)) / 2, 9);
  });
});

describe('checkpoints, predict, resume', () => {
  let ckptRun = '';
  it('best.safetensors round-trips: the reloaded model scores what training recorded', async () => {
    const r = await train({ ...base('ckpt'), epochs: 2 });
    ckptRun = r.runDir;
    const ckpt = loadCheckpoint(join(r.runDir, 'best.safetensors'));
    expect(ckpt.state.bestAccuracy).toBe(r.bestAccuracy);
    const model = createModel(ckpt.state.model, ckpt.state.modelSpec);
    model.loadStateDict(ckpt.model);
    const val = await openDataset('food11', 'validation', { data: fixture.root, size: SIZE, cacheDir: join(work, 'cache') });
    const e = await evaluate(model, val);
    expect(e.accuracy).toBe(ckpt.state.valAccuracy);
    model.dispose();
    r.model.dispose();
  });

  it('wgkd predict writes Id,Category for the sorted evaluation files', async () => {
    expect(ckptRun).not.toBe(''); // uses the run of the test above
    const out = join(work, 'submission.csv');
    execFileSync(process.execPath, ['bin/wgkd.js', 'predict', '--checkpoint', join(ckptRun, 'best.safetensors'), '--data', fixture.root, '--out', out], { stdio: 'pipe' });
    const lines = readFileSync(out, 'utf8').trim().split('\n');
    expect(lines[0]).toBe('Id,Category');
    expect(lines.length).toBe(1 + fixture.files.evaluation.length);
    lines.slice(1).forEach((line, i) => {
      const [id, category] = line.split(',');
      expect(id).toBe(String(i).padStart(4, '0'));
      expect(Number(category)).toBeGreaterThanOrEqual(0);
      expect(Number(category)).toBeLessThan(11);
    });
  });

  it('resume is exact: 2 steps, stop, resume -> step 3 equals the uninterrupted run (kd with views)', async () => {
    const cfg = { recipe: 'kd', teacher: teacherFile, epochs: 2 };
    const straight = await train({ ...base('straight'), ...cfg, maxSteps: 7 });
    const first = await train({ ...base('resumed'), ...cfg, maxSteps: 2 });
    expect(first.stoppedEarly).toBe(true);
    const second = await train({ ...base('resumed'), ...cfg, maxSteps: 5, resume: true });
    expect(first.stepLosses).toEqual(straight.stepLosses.slice(0, 2));
    expect(second.stepLosses[0]).toBe(straight.stepLosses[2]); // bit-exact
    expect(second.stepLosses).toEqual(straight.stepLosses.slice(2)); // across the epoch boundary too
    for (const r of [straight, first, second]) r.model.dispose();
  });
});

describe('refusals that say why', () => {
  it('a student over the parameter budget', async () => {
    await expect(train({ ...base('budget'), maxParams: 50_000 })).rejects.toThrow(/59,147 parameters, over the budget of 50,000/);
  });
  it('a KD recipe without a teacher file', async () => {
    await expect(train({ ...base('noteacher'), recipe: 'kd' })).rejects.toThrow(/needs teacher outputs \(for kd\): pass --teacher FILE/);
  });
  it('random augmentation with a teacher-matching loss', async () => {
    await expect(train({ ...base('aug'), recipe: 'kd', teacher: teacherFile, augment: 'flip' })).rejects.toThrow(/mismatch the precomputed teacher outputs/);
  });
  it('a teacher file made for another dataset', async () => {
    const fm = join(work, 'fm');
    await expect(train({ ...base('mismatch'), dataset: 'fashion-mnist', data: undefined, recipe: 'kd', teacher: teacherFile, out: fm })).rejects.toThrow(/dataset|fingerprint/);
  });
});
