// Bad inputs and numerical blow-ups get a clear error and lose nothing (docs/reliability.md lists them all):
// non-finite weights never reach a checkpoint, config files and flags are checked against one schema, checkpoint
// problems name the file and what is wrong, a fresh run does not replace an earlier one unasked, teacher files
// with NaN/Inf are refused when opened.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { checkTrainOptions, closeRun, getDevice, loadCheckpoint, runStep, setUpRun, modelFromCheckpoint, openTeacherOutputs, readConfigFile, saveCheckpoint, train, writeTeacherOutputs } from '../src/index.js';
import { readSafetensors, writeSafetensors } from '../src/teacher/safetensors.js';
import { useDevice } from './helpers/device.js';
import { makeFood11, type Food11Fixture } from './helpers/food11-fixture.js';

useDevice();
const SIZE = 24;
let fixture: Food11Fixture;
let work: string;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'wgkd-reliability-'));
  fixture = await makeFood11(join(work, 'food11'), { perClass: 3, validationPerClass: 1, size: 32, evaluation: 4 });
});

/** 33 training images, batch 16: 2 steps per epoch. */
function base(name: string) {
  return { dataset: 'food11', data: fixture.root, size: SIZE, cacheDir: join(work, 'cache'), model: 'dwpw', batch: 16, lr: 3e-3, quiet: true, out: join(work, name) };
}

function wgkd(...args: string[]) {
  return spawnSync(process.execPath, ['bin/wgkd.js', ...args], { encoding: 'utf8' });
}

/** Rewrites a checkpoint file with some tensors or metadata changed (what a damaged or foreign file looks like). */
function rewrite(from: string, to: string, edit: (t: ReturnType<typeof readSafetensors>) => void): string {
  const file = readSafetensors(from);
  edit(file);
  writeSafetensors(to, Object.fromEntries(Object.entries(file.tensors).map(([n, t]) => [n, { shape: t.shape, data: t.data as Float32Array }])), file.metadata);
  return to;
}

describe('numerical blow-ups', () => {
  it('weights that become non-finite stop the run at that step, naming the cause and the last good checkpoint', async () => {
    // The 'step' schedule multiplies lr by 1e41 at epoch 2: an lr of 1e39 overflows f32, so the optimizer step
    // writes Inf/NaN into the weights while loss and gradients are still finite.
    const cfg = { ...base('blowup'), optimizer: 'sgd' as const, lr: 0.01, momentum: 0, schedule: 'step' as const, stepEvery: 1, gamma: 1e41, epochs: 3 };
    const last = join(cfg.out, 'last.safetensors');
    const lastGood = new RegExp(`; last good checkpoint: ${last.replace(/[.\\/]/g, '\\$&')} \\(epoch 1\\)$`);
    const err = await train(cfg).then(() => null, (e: Error) => e);
    expect(err?.message).toMatch(/^weights became (NaN|Inf) at epoch 2, step 1 after the optimizer step \([\d,]+ of 59,147 values; lower --lr\)/);
    expect(err?.message).toMatch(lastGood);
    // Both checkpoints are the good ones of epoch 1, and load.
    for (const f of ['last', 'best']) expect(loadCheckpoint(join(cfg.out, `${f}.safetensors`)).state.epoch).toBe(1);
  });

  it('Adam with lr 1e30: the step after the blow-up stops the run (no checkpoint written yet, none claimed)', async () => {
    // Step 1 moves the weights by about lr (finite, ~1e30); step 2's forward or backward overflows.
    const err = await train({ ...base('adam-blowup'), lr: 1e30, epochs: 1 }).then(() => null, (e: Error) => e);
    expect(err?.message).toMatch(/^(loss became (NaN|Infinity|-Infinity) at epoch 1, step 2 in the forward pass|gradients became (NaN|Inf) at epoch 1, step 2 in the backward pass) .*; no checkpoint was written before it$/);
    expect(existsSync(join(work, 'adam-blowup', 'last.safetensors'))).toBe(false);
  });

  it('a checkpoint is never written with NaN or Inf in it; loading one (eval, predict) names the tensor', async () => {
    const r = await train({ ...base('nan-ckpt'), epochs: 1 });
    r.model.dispose();
    const good = join(r.runDir, 'last.safetensors');
    const ckpt = loadCheckpoint(good);
    const name = Object.keys(ckpt.model)[2];
    const poisoned = { ...ckpt, model: { ...ckpt.model, [name]: { shape: ckpt.model[name].shape, data: ckpt.model[name].data.map((v, i) => (i === 3 ? NaN : v)) } } };
    const before = readFileSync(good);
    expect(() => saveCheckpoint(good, poisoned)).toThrow(new RegExp(`refusing to write a checkpoint with non-finite values: tensor 'model\\.${name.replace(/\./g, '\\.')}' holds 1 non-finite value\\(s\\) of [\\d,]+ \\(first: NaN at element 3\\)`));
    expect(readFileSync(good).equals(before)).toBe(true);
    // A file written by other means (an older wgkd): eval and predict refuse it.
    const bad = rewrite(good, join(work, 'poisoned.safetensors'), (f) => ((f.tensors[`model.${name}`].data as Float32Array)[5] = Infinity));
    for (const command of ['eval', 'predict']) {
      const run = wgkd(command, '--checkpoint', bad, '--data', fixture.root, ...(command === 'predict' ? ['--out', join(work, 'p.csv')] : []));
      expect(run.status, command).toBe(1);
      expect(run.stderr, command).toMatch(new RegExp(`poisoned\\.safetensors: the checkpoint is unusable .*tensor 'model\\.${name.replace(/\./g, '\\.')}' holds 1 non-finite value\\(s\\)`));
    }
  });
});

describe('config files and flags: one schema', () => {
  const config = (name: string, text: string) => {
    const path = join(work, name);
    writeFileSync(path, text);
    return path;
  };
  it('unknown keys (did you mean), wrong types, ranges and enums name the file and the key', () => {
    expect(() => readConfigFile(config('typo.json', '{"epochz": 1}'))).toThrow(/^config file .*typo\.json: 'epochz' is not a train option \(did you mean 'epochs'\?\)$/);
    expect(() => readConfigFile(config('string.json', '{"batch": "16"}'))).toThrow(/string\.json: 'batch' must be a number, got the string "16"$/);
    expect(() => readConfigFile(config('enum.json', '{"augment": "flip+crap"}'))).toThrow(/enum\.json: 'augment' "flip\+crap" is not one of auto, none, flip, flip\+crop \(did you mean flip\+crop\?\)$/);
    expect(() => readConfigFile(config('many.json', '{"lr": -1, "batch": 2.5, "resume": "yes", "recipe": 3}'))).toThrow(
      /many\.json: 4 problems:\n {2}'lr' must be >= 0, got -1\n {2}'batch' must be a whole number, got 2\.5\n {2}'resume' must be true or false, got "yes"\n {2}'recipe' must be a recipe/,
    );
    // A misspelt key deep in the recipe: the file, then where in the spec (strict recipe specs, src/kd/spec.ts).
    expect(() => readConfigFile(config('recipe.json', '{"recipe": {"ce": 0.5, "kd": {"temperature": 8}}}'))).toThrow(
      /^config file .*recipe\.json: recipe\.kd\.temperature: unknown key \(did you mean 'T'\? keys of kd: weight, T\)$/,
    );
    expect(() => readConfigFile(config('list.json', '[{"epochs": 1}]'))).toThrow(/^config file .*list\.json must hold a JSON object of train options .*got a list$/);
    expect(() => readConfigFile(config('broken.json', '{"epochs": 1,'))).toThrow(/^config file .*broken\.json is not valid JSON: /);
    expect(() => readConfigFile(join(work, 'absent.json'))).toThrow(/^config file .*absent\.json: cannot read it \(ENOENT\)$/);
    expect(readConfigFile(config('ok.json', '{"epochs": 2, "recipe": {"ce": 1}, "trainLimit": 10}'))).toEqual({ epochs: 2, recipe: { ce: 1 }, trainLimit: 10 });
  });
  it('train() arguments are checked against the same schema', async () => {
    expect(() => checkTrainOptions({ optimizer: 'adamm' }, 'train config')).toThrow(/^train config: 'optimizer' "adamm" is not one of adam, adamw, sgd \(did you mean adam\?\)$/);
    await expect(train({ ...base('badcfg'), epochz: 1 } as never)).rejects.toThrow(/'epochz' is not a train option \(did you mean 'epochs'\?\)/);
  });
  it('the CLI: --config errors name the file; enumerated flags list their allowed values', () => {
    const typo = wgkd('train', '--config', config('cli-typo.json', '{"trainLimit": 8, "epochz": 1}'));
    expect(typo.status).toBe(1);
    expect(typo.stderr).toMatch(/config file .*cli-typo\.json: 'epochz' is not a train option \(did you mean 'epochs'\?\)/);
    expect(wgkd('train', '--augment', 'bogus').stderr).toMatch(/train: --augment "bogus" is not one of auto, none, flip, flip\+crop/);
    expect(wgkd('train', '--batch', '0').stderr).toMatch(/train: --batch must be >= 1, got 0/);
    expect(wgkd('train', '--chekpoint-every', '9').stderr).toMatch(/unknown option --chekpoint-every .*; did you mean --checkpoint-every\?/);
    expect(wgkd('eval', '--checkpoint', 'x', '--split', 'tset').stderr).toMatch(/eval: --split "tset" is not one of test, validation, train \(did you mean test\?\)/);
    expect(wgkd('info', '--power', 'max').stderr).toMatch(/--power "max" is not one of low-power, high-performance/);
  });
});

describe('checkpoints that do not fit say what is wrong', () => {
  let last = '';
  beforeAll(async () => {
    const r = await train({ ...base('fit'), maxSteps: 1 });
    r.model.dispose();
    last = join(r.runDir, 'last.safetensors');
  });
  it('--resume with another --model names the file and both models', async () => {
    await expect(train({ ...base('fit'), model: 'hw13-sample', resume: true })).rejects.toThrow(
      /fit[\\/]last\.safetensors holds dwpw \(3x24x24, 11 classes\); this run asks for hw13-sample \(3x24x24, 11 classes\): use another --out or the same --model/,
    );
  });
  it('--resume with another --optimizer names the file and the flag', async () => {
    await expect(train({ ...base('fit'), optimizer: 'sgd', resume: true })).rejects.toThrow(/fit[\\/]last\.safetensors: its optimiser state does not fit this run \(--optimizer sgd\): loadStateDict: state of a Adam, this is a SGD/);
  });
  it('weights of another shape: one message with at most a few mismatch lines', async () => {
    const file = rewrite(last, join(work, 'renamed.safetensors'), (f) => {
      for (const name of Object.keys(f.tensors).filter((n) => n.startsWith('model.')).slice(0, 6)) {
        f.tensors[name.replace('model.', 'model.other.')] = f.tensors[name];
        delete f.tensors[name];
      }
    });
    let message = '';
    try {
      await modelFromCheckpoint(file);
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toMatch(/renamed\.safetensors: its weights do not fit dwpw \(3x24x24, 11 classes\) \(12 mismatches\):\n {2}.+\n {2}.+\n {2}.+\n {2}\.\.\. and 9 more$/);
  });
  it('a broken optimizer entry or a missing model name names the file', async () => {
    const broken = rewrite(last, join(work, 'broken-optim.safetensors'), (f) => (f.metadata.optimizer = '{"type": "Adam", "step"'));
    expect(() => loadCheckpoint(broken)).toThrow(/broken-optim\.safetensors: the 'optimizer' metadata entry is not valid JSON \(.+\); the checkpoint is damaged/);
    const noName = rewrite(last, join(work, 'no-name.safetensors'), (f) => {
      const state = JSON.parse(f.metadata.wgkd);
      delete state.model;
      f.metadata.wgkd = JSON.stringify(state);
    });
    await expect(modelFromCheckpoint(noName)).rejects.toThrow(/no-name\.safetensors: the checkpoint records no model name/);
  });
});

describe('run folders', () => {
  it('a fresh run refuses a folder holding an earlier run (its log untouched) unless --overwrite', async () => {
    const r = await train({ ...base('taken'), maxSteps: 1, logSteps: true });
    r.model.dispose();
    const log = readFileSync(join(r.runDir, 'metrics.jsonl'), 'utf8');
    await expect(train({ ...base('taken'), maxSteps: 1 })).rejects.toThrow(/taken holds an earlier run \(last\.safetensors, metrics\.jsonl\): pass --resume to continue it, --overwrite to replace it, or another --out/);
    expect(readFileSync(join(r.runDir, 'metrics.jsonl'), 'utf8')).toBe(log);
    const again = await train({ ...base('taken'), maxSteps: 1, overwrite: true });
    again.model.dispose();
    expect(again.stepLosses).toEqual(r.stepLosses);
  });
  it("an atomic write of a file removes the temporaries a killed earlier write of it left, and only those", () => {
    const dir = join(work, 'temps');
    const dead = spawnSync(process.execPath, ['-e', '']).pid!; // a pid whose process has exited
    const names = [`.out.safetensors.${dead}.kz1.1.tmp`, `.out.safetensors.${process.pid}.kz1.2.tmp`, `.other.safetensors.${dead}.kz1.3.tmp`];
    writeSafetensors(join(dir, 'seed.safetensors'), { x: { shape: [1], data: new Float32Array(1) } });
    for (const n of names) writeFileSync(join(dir, n), 'partial');
    writeSafetensors(join(dir, 'out.safetensors'), { x: { shape: [1], data: new Float32Array(1) } });
    expect(names.map((n) => existsSync(join(dir, n)))).toEqual([false, true, true]); // live writer's and other files' kept
  });
  it('--resume where the folder holds no checkpoint is an error with a hint', async () => {
    await expect(train({ ...base('typo-in-out'), resume: true })).rejects.toThrow(/--resume: .*typo-in-out does not exist, so there is no run to continue \(check --out; without --resume a fresh run starts there\)/);
    expect(existsSync(join(work, 'typo-in-out', 'last.safetensors'))).toBe(false);
  });
});

describe('teacher files with NaN or Inf', () => {
  const layout = { dataset: 'food11', split: 'train', fingerprint: 'f', count: 6, numClasses: 3, teacher: 'test', views: ['identity', 'hflip'], embeddingDim: 2, hints: { layer2: [1, 2, 2] as const } };
  const values = (n: number) => new Float32Array(n).map((_, i) => i / 10);
  it('logits or embeddings: refused at open, naming file, tensor, row, sample and view', () => {
    const logits = values(2 * 6 * 3);
    logits[(1 * 6 + 4) * 3 + 2] = NaN; // view 1, sample 4, class 2
    const file = join(work, 'nan-logits.safetensors');
    writeTeacherOutputs(file, { ...layout, logits, embedding: values(24), hintData: { layer2: values(48) } });
    expect(() => openTeacherOutputs(file)).toThrow(/nan-logits\.safetensors: teacher outputs: 'logits' holds NaN in row 10 \(sample 4, view 1 'hflip'\), element 2 of the row/);
    const embedding = values(24);
    embedding[3] = -Infinity;
    writeTeacherOutputs(file, { ...layout, logits: values(36), embedding, hintData: { layer2: values(48) } });
    expect(() => openTeacherOutputs(file)).toThrow(/'embedding' holds -Infinity in row 1 \(sample 1, view 0 'identity'\), element 1 of the row/);
  });
  it('hints: refused when the row is first read', () => {
    const hint = values(48);
    hint[(0 * 6 + 5) * 4 + 1] = Infinity;
    const file = join(work, 'inf-hint.safetensors');
    writeTeacherOutputs(file, { ...layout, logits: values(36), embedding: values(24), hintData: { layer2: hint } });
    const t = openTeacherOutputs(file);
    expect(() => t.readBatch([0, 1], 0)).not.toThrow();
    expect(() => t.readBatch([2, 5], 0)).toThrow(/'hint\.layer2' holds Infinity in row 5 \(sample 5, view 0 'identity'\), element 1 of the row/);
    t.close();
  });
});

describe('the run in parts (what a profiler drives)', () => {
  it('setUpRun + runStep give the steps train() runs, bit for bit; train() calls the step hooks around each', async () => {
    const calls: string[] = [];
    const trained = await train(
      { ...base('parts-train'), maxSteps: 3 },
      { hooks: { onStart: ({ model, extras }) => void calls.push(`start ${model.numParameters()} ${extras.length}`), beforeStep: () => calls.push('before'), afterStep: async ({ epoch, step, loss }) => void calls.push(`after ${epoch}/${step}/${loss}`) } },
    );
    trained.model.dispose();
    const l = trained.stepLosses;
    expect(calls).toEqual(['start 59147 0', 'before', `after 1/1/${l[0]}`, 'before', `after 1/2/${l[1]}`, 'before', `after 2/3/${l[2]}`]);
    const run = await setUpRun({ ...base('parts-run') }, getDevice());
    const losses: number[] = [];
    for (const epoch of [0, 1]) {
      for await (const batch of run.loader.epoch(epoch)) {
        if (losses.length === 3) break;
        losses.push((await runStep(run, batch, epoch)).loss);
      }
    }
    expect(losses).toEqual(l);
    expect(run.state.globalStep).toBe(3);
    expect(existsSync(join(work, 'parts-run'))).toBe(false); // setting up writes nothing
    closeRun(run);
    run.model.dispose();
  });
});
