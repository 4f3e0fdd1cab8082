// The training loop: data -> student -> recipe -> backward -> clip -> optimiser, one submit per step; validation
// each epoch; best/last checkpoints written atomically; exact resume (the data order and every random choice are
// functions of (seed, epoch, step), and the checkpoint holds the optimiser state).
import { appendFileSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Device } from '../gpu/device.js';
import { Tensor, scope } from '../tensor.js';
import { noGrad } from '../autograd/tape.js';
import { architectureOf, architectureRole, buildArchitecture } from '../models/architecture.js';
import type { Classifier } from '../models/classifier.js';
import { Module } from '../nn/module.js';
import { Recipe, parseRecipe, type RecipeConfig, type TeacherTensors } from '../kd/recipe.js';
import { openTeacherOutputs, type TeacherOutputs } from '../teacher/outputs.js';
import { datasetIdentity, type Dataset } from '../data/dataset.js';
import { DataLoader } from '../data/loader.js';
import { Prefix, openDataset, rootDataset } from '../data/open.js';
import type { AugmentOptions } from '../data/augment.js';
import { Adam, AdamW, SGD, type Optimizer } from './optim.js';
import { lrAt, type ScheduleConfig } from './schedule.js';
import { evaluate } from './evaluate.js';
import { CHECKPOINT_FORMAT, loadCheckpoint, saveCheckpoint, type TrainerState } from './checkpoint.js';
import { Progress, duration } from './progress.js';

export interface TrainConfig {
  dataset: string; // 'fashion-mnist' | 'food11'
  data?: string; // dataset folder
  size: number; // Food-11 crop size
  model: string;
  teacher?: string; // teacher-outputs file (.safetensors)
  recipe: string | RecipeConfig;
  epochs: number;
  batch: number;
  lr: number;
  optimizer: 'adam' | 'adamw' | 'sgd';
  weightDecay: number;
  momentum: number;
  schedule: 'constant' | 'cosine' | 'step';
  warmupEpochs: number;
  minLr: number; // cosine floor
  stepEvery: number; // 'step' schedule: epochs between decays
  gamma: number; // 'step' schedule: decay factor
  clip: number; // global gradient-norm clip (0: off)
  seed: number;
  out: string; // run folder
  resume: boolean;
  maxParams: number;
  augment: 'auto' | 'none' | 'flip' | 'flip+crop';
  validationSize: number;
  trainLimit: number; // use only the first N training samples (0: all)
  valLimit: number;
  maxSteps: number; // stop after this many steps in all (0: no limit); the run can be resumed
  logSteps: boolean;
  cacheDir?: string;
  quiet: boolean;
}

export const DEFAULT_CONFIG: TrainConfig = {
  dataset: 'fashion-mnist',
  size: 64,
  model: 'dwpw',
  recipe: 'ce',
  epochs: 10,
  batch: 64,
  lr: 3e-4,
  optimizer: 'adam',
  weightDecay: 1e-5,
  momentum: 0.9,
  schedule: 'constant',
  warmupEpochs: 0,
  minLr: 0,
  stepEvery: 10,
  gamma: 0.1,
  clip: 10,
  seed: 0,
  out: 'runs/latest',
  resume: false,
  maxParams: 60_000,
  augment: 'auto',
  validationSize: 5000,
  trainLimit: 0,
  valLimit: 0,
  maxSteps: 0,
  logSteps: false,
  quiet: false,
};

export interface EpochMetrics {
  epoch: number;
  step: number;
  lr: number;
  loss: Record<string, number>; // mean of each unweighted term and of the total over the epoch
  trainAccuracy: number;
  valAccuracy: number;
  imagesPerSecond: number;
  seconds: number;
}

export interface TrainResult {
  runDir: string;
  model: Classifier;
  modelParams: number;
  extraParams: number;
  bestAccuracy: number;
  bestEpoch: number;
  history: EpochMetrics[];
  stepLosses: number[]; // total loss of every step this call ran (tests use it for exact-resume checks)
  imagesPerSecond: number;
  seconds: number;
  stoppedEarly: boolean; // maxSteps reached
  adapter: string;
}

/** The parameters of several modules as one list for the optimiser. */
class Group extends Module {
  constructor(readonly members: Module[]) {
    super();
    members.forEach((m, i) => this.child(String(i), m));
  }
  forward(x: Tensor): Tensor {
    return x;
  }
}

function augmentOptions(mode: TrainConfig['augment'], recipe: Recipe, teacher: TeacherOutputs | null): AugmentOptions | undefined {
  // Teacher-matching losses compare against outputs of specific views: random augmentation would mismatch them.
  const matchesTeacher = Boolean(teacher) && (recipe.needs().logits || recipe.needs().embedding || recipe.needs().hints.length > 0);
  const resolved = mode === 'auto' ? (matchesTeacher ? 'none' : 'flip') : mode;
  if (resolved === 'none') return undefined;
  if (matchesTeacher) throw new Error(`--augment ${mode}: random augmentation would mismatch the precomputed teacher outputs (store views in the teacher file instead; see docs/kd.md)`);
  return resolved === 'flip' ? { hflip: true } : { hflip: true, randomResizedCrop: { scale: [0.6, 1], ratio: [3 / 4, 4 / 3] } };
}

function makeOptimizer(cfg: TrainConfig, params: Tensor[]): Optimizer {
  if (cfg.optimizer === 'adam') return new Adam(params, { lr: cfg.lr, weightDecay: cfg.weightDecay });
  if (cfg.optimizer === 'adamw') return new AdamW(params, { lr: cfg.lr, weightDecay: cfg.weightDecay });
  if (cfg.optimizer === 'sgd') return new SGD(params, { lr: cfg.lr, momentum: cfg.momentum, weightDecay: cfg.weightDecay });
  throw new Error(`unknown optimizer '${cfg.optimizer}' (adam, adamw, sgd)`);
}

/** Called around every training step (the profiler uses them to bracket one step's dispatches). */
export interface StepHooks {
  beforeStep?(): void;
  afterStep?(info: { epoch: number; step: number; loss: number }): void | Promise<void>;
}

export async function train(partial: Partial<TrainConfig>, options: { device?: Device; hooks?: StepHooks } = {}): Promise<TrainResult> {
  const cfg: TrainConfig = { ...DEFAULT_CONFIG, ...partial };
  const log = (line: string) => {
    if (!cfg.quiet) process.stderr.write(`${line}\n`);
  };
  const dev = options.device ?? (await Device.open());
  const runStart = performance.now();
  mkdirSync(cfg.out, { recursive: true });
  const lastPath = join(cfg.out, 'last.safetensors');
  const bestPath = join(cfg.out, 'best.safetensors');
  const resumeFrom = cfg.resume && existsSync(lastPath) ? loadCheckpoint(lastPath) : null;
  if (cfg.resume && !resumeFrom) log(`resume: no ${lastPath} yet, starting from scratch`);

  // ---- data ----
  const openOpts = { data: cfg.data, size: cfg.size, cacheDir: cfg.cacheDir, validationSize: cfg.validationSize };
  const fullTrain = await openDataset(cfg.dataset, 'train', openOpts);
  const fullVal = await openDataset(cfg.dataset, 'validation', openOpts);
  const trainSet: Dataset = cfg.trainLimit > 0 ? new Prefix(fullTrain, cfg.trainLimit) : fullTrain;
  const valSet: Dataset = cfg.valLimit > 0 ? new Prefix(fullVal, cfg.valLimit) : fullVal;

  // ---- model ----
  const architecture = architectureOf(cfg.model);
  const spec = { inChannels: trainSet.channels, numClasses: trainSet.numClasses, inputSize: trainSet.height, seed: cfg.seed };
  const model = await buildArchitecture(architecture, spec);
  const modelParams = model.numParameters();
  if (architectureRole(architecture) === 'student' && modelParams > cfg.maxParams) {
    throw new Error(`model '${cfg.model}' has ${modelParams.toLocaleString('en')} parameters, over the budget of ${cfg.maxParams.toLocaleString('en')} (--max-params)`);
  }

  // ---- teacher and recipe ----
  const recipeConfig = parseRecipe(cfg.recipe);
  const teacherTerms = (['kd', 'dkd', 'rkd', 'dm', 'fitnet'] as const).filter((t) => recipeConfig[t] !== undefined);
  if (!cfg.teacher && teacherTerms.length > 0) {
    throw new Error(`recipe ${JSON.stringify(recipeConfig)} needs teacher outputs (for ${teacherTerms.join(', ')}): pass --teacher FILE`);
  }
  const teacher = cfg.teacher ? openTeacherOutputs(cfg.teacher) : null;
  if (teacher) teacher.checkAlignment(datasetIdentity(rootDataset(trainSet)));
  const studentMaps = noGrad(() =>
    scope(() => {
      model.eval();
      const probe = Tensor.zeros([1, trainSet.channels, trainSet.height, trainSet.width]);
      const maps = model.forwardFeatures(probe).maps;
      model.train();
      return Object.fromEntries(Object.entries(maps).map(([k, t]) => [k, t.shape.slice(1)]));
    }),
  );
  const tensors = teacher?.tensors ?? {};
  const hintShapes = Object.fromEntries((teacher?.hintNames ?? []).map((h) => [h, tensors[`hint.${h}`].slice(-3)]));
  const recipe = new Recipe(recipeConfig, studentMaps, { hasLogits: Boolean(teacher), hasEmbedding: 'embedding' in tensors, hints: hintShapes });
  const needs = recipe.needs();
  const extras = new Group(recipe.extraModules());
  const extraParams = extras.numParameters();

  // ---- optimiser, loader, schedule ----
  const params = [...model.parameters(), ...extras.parameters()];
  const optimizer = makeOptimizer(cfg, params);
  const views = teacher && teacher.views.length > 1 ? teacher.views : undefined;
  const loader = new DataLoader(trainSet, { batchSize: cfg.batch, shuffle: true, seed: cfg.seed, dropLast: true, views, augment: augmentOptions(cfg.augment, recipe, teacher) });
  const stepsPerEpoch = loader.batchesPerEpoch;
  if (stepsPerEpoch === 0) throw new Error(`batch ${cfg.batch} is larger than the ${trainSet.length} training samples`);
  // Fractional epochs are allowed (--epochs 1.25): the last epoch stops early, then validates as any epoch does.
  if (!(cfg.epochs > 0)) throw new Error(`epochs must be > 0, got ${cfg.epochs}`);
  const totalSteps = Math.max(1, Math.round(cfg.epochs * stepsPerEpoch));
  const epochCount = Math.ceil(totalSteps / stepsPerEpoch);
  const schedule: ScheduleConfig = {
    kind: cfg.schedule,
    baseLr: cfg.lr,
    totalSteps,
    warmupSteps: Math.round(cfg.warmupEpochs * stepsPerEpoch),
    minLr: cfg.minLr,
    stepSize: cfg.stepEvery * stepsPerEpoch,
    gamma: cfg.gamma,
  };

  let state: TrainerState = {
    format: CHECKPOINT_FORMAT,
    version: 1,
    model: cfg.model,
    modelSpec: { inChannels: spec.inChannels, numClasses: spec.numClasses, inputSize: spec.inputSize },
    architecture,
    dataset: cfg.dataset,
    epoch: 0,
    stepInEpoch: 0,
    globalStep: 0,
    bestAccuracy: -1,
    bestEpoch: -1,
    valAccuracy: null,
    config: { ...cfg, recipe: recipeConfig },
  };
  if (resumeFrom) {
    model.loadStateDict(resumeFrom.model);
    extras.loadStateDict(resumeFrom.extra);
    if (resumeFrom.optimizer) optimizer.loadStateDict(resumeFrom.optimizer);
    state = { ...resumeFrom.state, config: { ...cfg, recipe: recipeConfig } };
    log(`resumed from ${lastPath}: epoch ${state.epoch}, step ${state.stepInEpoch} of the next, best ${state.bestAccuracy.toFixed(4)}`);
  }

  const history: EpochMetrics[] = [];
  const stepLosses: number[] = [];
  let imagesSeen = 0;
  let trainSeconds = 0;
  let stoppedEarly = false;
  const metricsPath = join(cfg.out, 'metrics.jsonl');
  if (!resumeFrom) writeFileSync(metricsPath, ''); // a fresh run in an old folder starts a fresh log
  writeFileSync(join(cfg.out, 'config.json'), `${JSON.stringify(state.config, null, 2)}\n`);

  const save = async (path: string) => {
    const [modelState, extraState, optimState] = [await model.stateDict(), await extras.stateDict(), await optimizer.stateDict()];
    saveCheckpoint(path, { state, model: modelState, extra: extraState, optimizer: optimState });
  };

  log(`training ${cfg.model} (${modelParams.toLocaleString('en')} params${extraParams ? ` + ${extraParams.toLocaleString('en')} training-only` : ''}) on ${cfg.dataset} ` +
      `(${trainSet.length} train / ${valSet.length} validation), recipe ${JSON.stringify(recipeConfig)}, ${dev.summary.description}`);

  for (let epoch = state.epoch; epoch < epochCount && !stoppedEarly; epoch++) {
    const epochStart = performance.now();
    const sums: Record<string, number> = {};
    let steps = 0;
    let correct = 0;
    let seen = 0;
    const stepsThisEpoch = Math.min(stepsPerEpoch, totalSteps - epoch * stepsPerEpoch);
    const progress = new Progress(`epoch ${epoch + 1}/${epochCount}`, stepsThisEpoch, process.stderr, cfg.quiet);
    const skip = state.stepInEpoch;
    for await (const batch of loader.epoch(epoch, { skip })) {
      const b = batch.indices.length;
      optimizer.lr = lrAt(schedule, state.globalStep);
      options.hooks?.beforeStep?.();
      const { values, names, logits } = await scope(async () => {
        const x = Tensor.fromArray(batch.x, [b, trainSet.channels, trainSet.height, trainSet.width]);
        const y = Tensor.fromArray(batch.y!, [b], { dtype: 'i32' });
        loader.recycle(batch); // uploaded: its host memory can take the next batch
        const tb: TeacherTensors = {};
        if (teacher) {
          const rows = teacher.readBatch(batch.indices, batch.view ?? 0, { embedding: needs.embedding, hints: needs.hints });
          tb.logits = Tensor.fromArray(rows.logits, [b, teacher.metadata.numClasses]);
          if (rows.embedding) tb.embedding = Tensor.fromArray(rows.embedding, [b, rows.embedding.length / b]);
          for (const [name, data] of Object.entries(rows.hints ?? {})) tb.hints = { ...tb.hints, [name]: Tensor.fromArray(data, [b, ...hintShapes[name]]) };
        }
        const features = model.forwardFeatures(x);
        const terms = recipe.compute(features, y, tb, epoch);
        terms.total.backward();
        if (cfg.clip > 0) optimizer.clipGradNorm(cfg.clip);
        optimizer.step();
        optimizer.zeroGrad();
        const names = Object.keys(terms.parts);
        const read = await dev.read([terms.total, ...names.map((n) => terms.parts[n]), features.logits]);
        return { names, values: read.slice(0, -1).map((r) => new Float32Array(r)[0]), logits: new Float32Array(read[read.length - 1]) };
      });
      const total = values[0];
      if (!Number.isFinite(total)) throw new Error(`loss became ${total} at epoch ${epoch + 1}, step ${state.stepInEpoch + 1} (lower --lr, or check the teacher file)`);
      stepLosses.push(total);
      await options.hooks?.afterStep?.({ epoch: epoch + 1, step: state.globalStep + 1, loss: total });
      sums.total = (sums.total ?? 0) + total;
      names.forEach((n, i) => (sums[n] = (sums[n] ?? 0) + values[i + 1]));
      const k = trainSet.numClasses;
      const correctBefore = correct;
      for (let r = 0; r < b; r++) {
        let best = 0;
        for (let c = 1; c < k; c++) if (logits[r * k + c] > logits[r * k + best]) best = c;
        if (best === batch.y![r]) correct++;
      }
      seen += b;
      steps++;
      state.stepInEpoch++;
      state.globalStep++;
      if (cfg.logSteps) appendFileSync(metricsPath, `${JSON.stringify({ type: 'step', epoch: epoch + 1, step: state.globalStep, lr: optimizer.lr, loss: total, parts: Object.fromEntries(names.map((n, i) => [n, values[i + 1]])), accuracy: (correct - correctBefore) / b })}\n`);
      const elapsed = (performance.now() - epochStart) / 1000;
      progress.update(state.stepInEpoch, `${(seen / elapsed).toFixed(0)} img/s loss ${(sums.total / steps).toFixed(4)}${names.length > 1 ? ` (${names.map((n) => `${n} ${(sums[n] / steps).toFixed(4)}`).join(' ')})` : ''}`);
      if (cfg.maxSteps > 0 && stepLosses.length >= cfg.maxSteps) {
        stoppedEarly = true;
        break;
      }
      if (state.stepInEpoch >= stepsThisEpoch) break; // the last, partial epoch of a fractional --epochs
    }
    const seconds = (performance.now() - epochStart) / 1000;
    imagesSeen += seen;
    trainSeconds += seconds;
    if (stoppedEarly && state.stepInEpoch < stepsThisEpoch) {
      await save(lastPath); // mid-epoch: resumable from here
      progress.done(`stopped after ${stepLosses.length} steps (maxSteps); resumable from ${lastPath}`);
      break;
    }
    const val = await evaluate(model, valSet, { batchSize: Math.max(cfg.batch, 256) });
    state.epoch = epoch + 1;
    state.stepInEpoch = 0;
    state.valAccuracy = val.accuracy!;
    const improved = val.accuracy! > state.bestAccuracy;
    if (improved) {
      state.bestAccuracy = val.accuracy!;
      state.bestEpoch = epoch + 1;
    }
    const metrics: EpochMetrics = {
      epoch: epoch + 1,
      step: state.globalStep,
      lr: optimizer.lr,
      loss: Object.fromEntries(Object.entries(sums).map(([k, v]) => [k, v / Math.max(1, steps)])),
      trainAccuracy: seen ? correct / seen : 0,
      valAccuracy: val.accuracy!,
      imagesPerSecond: seen / seconds,
      seconds,
    };
    history.push(metrics);
    appendFileSync(metricsPath, `${JSON.stringify({ type: 'epoch', ...metrics })}\n`);
    await save(lastPath);
    if (improved) await save(bestPath);
    progress.done(`loss ${metrics.loss.total.toFixed(4)} train acc ${metrics.trainAccuracy.toFixed(4)} val acc ${val.accuracy!.toFixed(4)}${improved ? ' (best)' : ''} ${metrics.imagesPerSecond.toFixed(0)} img/s`);
  }
  optimizer.dispose();
  teacher?.close();
  const seconds = (performance.now() - runStart) / 1000;
  log(`done in ${duration(seconds)}: best validation accuracy ${state.bestAccuracy.toFixed(4)} (epoch ${state.bestEpoch})`);
  return {
    runDir: cfg.out,
    model,
    modelParams,
    extraParams,
    bestAccuracy: state.bestAccuracy,
    bestEpoch: state.bestEpoch,
    history,
    stepLosses,
    imagesPerSecond: trainSeconds > 0 ? imagesSeen / trainSeconds : 0,
    seconds,
    stoppedEarly,
    adapter: dev.summary.description,
  };
}
