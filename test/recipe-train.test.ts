// Recipes end to end (issue 13): a spec naming some parts trains only those (progress line, metrics.jsonl), the
// expanded recipe is printed at the start and stored in config.json and the checkpoint, and FitNet's ConvReg
// regressor trains with the transposed conv on a half-size student map. Tiny runs: 32 images, 2 steps each.
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { createModel, expandRecipe, exportTeacherOutputs, loadCheckpoint, openDataset, train, type RecipeConfig } from '../src/index.js';
import { useDevice } from './helpers/device.js';
import { makeFood11, type Food11Fixture } from './helpers/food11-fixture.js';

useDevice();
const SIZE = 24; // dwpw at 24x24 ends at 6x6 maps; the teacher's layer2 hint is 12x12
let fixture: Food11Fixture;
let work: string;
let teacherFile: string;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'wgkd-recipe-train-'));
  fixture = await makeFood11(join(work, 'food11'), { perClass: 3, validationPerClass: 1, size: 32, evaluation: 2 });
  const trainSet = await openDataset('food11', 'train', { data: fixture.root, size: SIZE, cacheDir: join(work, 'cache') });
  const teacher = createModel('resnet-small', { inChannels: 3, numClasses: 11, inputSize: SIZE, seed: 3 });
  teacherFile = join(work, 'teacher.safetensors');
  await exportTeacherOutputs(teacher, trainSet, { path: teacherFile, teacherName: 'resnet-small (random)', views: ['identity'], hints: ['layer2'] });
  teacher.dispose();
});

afterEach(() => vi.restoreAllMocks());

/** Trains 2 steps (32 images, batch 16, one epoch) with the progress output captured. */
async function run(name: string, recipe: RecipeConfig) {
  const stderr: string[] = [];
  vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
    stderr.push(String(chunk));
    return true;
  });
  const out = join(work, name);
  const r = await train({
    dataset: 'food11', data: fixture.root, size: SIZE, cacheDir: join(work, 'cache'), model: 'dwpw', teacher: teacherFile,
    recipe, batch: 16, trainLimit: 32, valLimit: 11, epochs: 1, lr: 1e-3, logSteps: true, quiet: false, out,
  });
  vi.restoreAllMocks();
  const records = readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  return { r, out, log: stderr.join(''), steps: records.filter((x) => x.type === 'step'), epochs: records.filter((x) => x.type === 'epoch') };
}

describe('a recipe trains exactly what it says', () => {
  it('{"rkd": {"distance": 1}}: no angle part in the progress line or metrics.jsonl; the expanded spec is printed and stored', async () => {
    const spec = { rkd: { distance: 1 } };
    const expanded = expandRecipe(spec);
    const { r, out, log, steps, epochs } = await run('rkd-distance', spec);
    expect(log).toContain(`recipe ${JSON.stringify(expanded)}`);
    expect(log).toContain('"angle":0');
    expect(log).not.toContain('rkd_angle');
    expect(steps.length).toBe(2);
    for (const s of steps) expect(Object.keys(s.parts)).toEqual(['rkd_distance']);
    expect(Object.keys(epochs[0].loss).sort()).toEqual(['rkd_distance', 'total']);
    expect(epochs[0].loss.total).toBeCloseTo(epochs[0].loss.rkd_distance, 6); // the total is the distance part alone
    expect(JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')).recipe).toEqual(expanded);
    expect(loadCheckpoint(join(out, 'last.safetensors')).state.config.recipe).toEqual(expanded);
    r.model.dispose();
  });

  it('{"ce": 1, "rkd": {"distance": 1}}: the progress line lists ce and rkd_distance, and nothing else', async () => {
    const { r, log, steps } = await run('ce-rkd-distance', { ce: 1, rkd: { distance: 1 } });
    // Progress lines, plain when stderr is not a terminal (as here), a redrawn bar when it is.
    const progress = log.split(/[\r\n]/).filter((l) => l.startsWith('epoch 1/1 ') && l.includes('ETA'));
    expect(progress.length).toBeGreaterThan(0);
    for (const line of progress) expect(line).toMatch(/loss \d+\.\d{4} \(ce \d+\.\d{4} rkd_distance \d+\.\d{4}\) ETA/);
    for (const s of steps) expect(Object.keys(s.parts)).toEqual(['ce', 'rkd_distance']);
    r.model.dispose();
  });

  it('FitNet with the ConvReg regressor: a transposed conv from the 6x6 student map to the 12x12 hint, trains, is training-only', async () => {
    const { r, log, steps } = await run('fitnet-convreg', { ce: 1, fitnet: { weight: 1, regressor: 'convreg' } });
    expect(log).toMatch(/fitnet: student map '\w+' -> teacher hint 'layer2' by transposed conv 4x4 stride 2 \(bias\) \+ BN \+ ReLU/);
    expect(steps.every((s) => Number.isFinite(s.loss) && Object.keys(s.parts).join() === 'ce,fitnet')).toBe(true);
    expect(r.extraParams).toBeGreaterThan(0);
    r.model.dispose();
  });
});
