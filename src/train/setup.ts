// Setting up a run: data, student, teacher outputs, recipe, optimiser, loader, schedule, and (with resume) the
// state of the checkpoint it continues. Touches no run folder: train() prepares that (src/train/run-folder.ts),
// so a profiler can set up a run and drive real steps (src/train/step.ts) without writing anything.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Device } from '../gpu/device.js';
import { Tensor, scope } from '../tensor.js';
import { noGrad } from '../autograd/tape.js';
import { architectureOf, architectureRole, buildArchitecture, type Architecture } from '../models/architecture.js';
import type { Classifier } from '../models/classifier.js';
import { Module } from '../nn/module.js';
import { Recipe, expandRecipe, type RecipeConfig } from '../kd/recipe.js';
import { openTeacherOutputs, type TeacherOutputs } from '../teacher/outputs.js';
import { datasetIdentity, type Dataset } from '../data/dataset.js';
import { DataLoader } from '../data/loader.js';
import { Prefix, openDataset, rootDataset } from '../data/open.js';
import type { AugmentOptions } from '../data/augment.js';
import { Adam, AdamW, SGD, type Optimizer } from './optim.js';
import type { ScheduleConfig } from './schedule.js';
import { CHECKPOINT_FORMAT, checkpointFits, loadCheckpoint, loadWeights, type Checkpoint, type TrainerState } from './checkpoint.js';
import { DEFAULT_CONFIG, checkTrainOptions, type TrainConfig } from './config.js';

/** Everything one training run works with. Made by setUpRun(), stepped by runStep(), released by closeRun(). */
export interface Run {
  cfg: TrainConfig;
  device: Device;
  trainSet: Dataset;
  valSet: Dataset;
  model: Classifier;
  modelParams: number;
  /** Training-only modules of the recipe (e.g. FitNet regressors), as one module... */
  extras: Module;
  /** ...and one by one. */
  extraModules: Module[];
  extraParams: number;
  recipeConfig: RecipeConfig;
  recipe: Recipe;
  teacher: TeacherOutputs | null;
  /** hint name -> [C, H, W] of the teacher's maps. */
  hintShapes: Record<string, number[]>;
  optimizer: Optimizer;
  loader: DataLoader;
  schedule: ScheduleConfig;
  stepsPerEpoch: number;
  totalSteps: number;
  epochCount: number;
  /** Where the run stands (what a checkpoint records); runStep() advances it. */
  state: TrainerState;
  /** The checkpoint the run resumed from, or null for a fresh run. */
  resumedFrom: string | null;
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

async function openData(cfg: TrainConfig): Promise<{ trainSet: Dataset; valSet: Dataset }> {
  const openOpts = { data: cfg.data, size: cfg.size, cacheDir: cfg.cacheDir, validationSize: cfg.validationSize };
  const fullTrain = await openDataset(cfg.dataset, 'train', openOpts);
  const fullVal = await openDataset(cfg.dataset, 'validation', openOpts);
  const trainSet: Dataset = cfg.trainLimit > 0 ? new Prefix(fullTrain, cfg.trainLimit) : fullTrain;
  const valSet: Dataset = cfg.valLimit > 0 ? new Prefix(fullVal, cfg.valLimit) : fullVal;
  return { trainSet, valSet };
}

/** The student `--model` names (built-in, a JSON layer list, or a module's factory), within the parameter budget. */
async function makeStudent(cfg: TrainConfig, trainSet: Dataset): Promise<{ model: Classifier; architecture: Architecture }> {
  const architecture = architectureOf(cfg.model);
  const spec = { inChannels: trainSet.channels, numClasses: trainSet.numClasses, inputSize: trainSet.height, seed: cfg.seed };
  const model = await buildArchitecture(architecture, spec);
  const modelParams = model.numParameters();
  if (architectureRole(architecture) === 'student' && modelParams > cfg.maxParams) {
    model.dispose();
    throw new Error(`model '${cfg.model}' has ${modelParams.toLocaleString('en')} parameters, over the budget of ${cfg.maxParams.toLocaleString('en')} (--max-params)`);
  }
  return { model, architecture };
}

/** The teacher file (checked against the training data) and the recipe built for the student's feature maps. */
function teacherAndRecipe(cfg: TrainConfig, model: Classifier, trainSet: Dataset) {
  const recipeConfig = expandRecipe(cfg.recipe); // every default filled in: printed, in config.json and the checkpoint
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
  return { recipeConfig, teacher, recipe, hintShapes };
}

/** Steps per epoch, total steps and the LR schedule (fractional epochs allowed: --epochs 1.25). */
function stepPlan(cfg: TrainConfig, loader: DataLoader, trainSet: Dataset) {
  const stepsPerEpoch = loader.batchesPerEpoch;
  if (stepsPerEpoch === 0) throw new Error(`batch ${cfg.batch} is larger than the ${trainSet.length} training samples`);
  // The last epoch of a fractional --epochs stops early, then validates as any epoch does.
  if (!(cfg.epochs > 0)) throw new Error(`epochs must be > 0, got ${cfg.epochs}`);
  const totalSteps = Math.max(1, Math.round(cfg.epochs * stepsPerEpoch));
  const schedule: ScheduleConfig = {
    kind: cfg.schedule,
    baseLr: cfg.lr,
    totalSteps,
    warmupSteps: Math.round(cfg.warmupEpochs * stepsPerEpoch),
    minLr: cfg.minLr,
    stepSize: cfg.stepEvery * stepsPerEpoch,
    gamma: cfg.gamma,
  };
  return { stepsPerEpoch, totalSteps, epochCount: Math.ceil(totalSteps / stepsPerEpoch), schedule };
}

/**
 * Sets up a run from a (partial) config. With `resume`, `<out>/last.safetensors` must exist and fit the run;
 * its weights, optimiser state and position are restored. Nothing is written to disk.
 */
export async function setUpRun(partial: Partial<TrainConfig>, device: Device): Promise<Run> {
  const cfg: TrainConfig = { ...DEFAULT_CONFIG, ...checkTrainOptions(partial as Record<string, unknown>, 'train config') };
  const resumeFrom = cfg.resume ? checkpointToResume(cfg) : null;
  const { trainSet, valSet } = await openData(cfg);
  const modelSpec = { inChannels: trainSet.channels, numClasses: trainSet.numClasses, inputSize: trainSet.height };
  if (resumeFrom) checkpointFits(resumeFrom.path, resumeFrom.ckpt, cfg.model, modelSpec);
  const { model, architecture } = await makeStudent(cfg, trainSet);
  const { recipeConfig, teacher, recipe, hintShapes } = teacherAndRecipe(cfg, model, trainSet);
  const extraModules = recipe.extraModules();
  const extras = new Group(extraModules);
  const optimizer = makeOptimizer(cfg, [...model.parameters(), ...extras.parameters()]);
  const views = teacher && teacher.views.length > 1 ? teacher.views : undefined;
  const loader = new DataLoader(trainSet, { batchSize: cfg.batch, shuffle: true, seed: cfg.seed, dropLast: true, views, augment: augmentOptions(cfg.augment, recipe, teacher) });
  const plan = stepPlan(cfg, loader, trainSet);

  let state: TrainerState = {
    format: CHECKPOINT_FORMAT,
    version: 1,
    model: cfg.model,
    modelSpec,
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
    const { path, ckpt } = resumeFrom;
    loadWeights(path, model, ckpt.model, `the model ${cfg.model}`);
    loadWeights(path, extras, ckpt.extra, 'the recipe\'s training-only modules');
    if (ckpt.optimizer) {
      try {
        optimizer.loadStateDict(ckpt.optimizer);
      } catch (err) {
        throw new Error(`${path}: its optimiser state does not fit this run (--optimizer ${cfg.optimizer}): ${(err as Error).message}`);
      }
    }
    state = { ...ckpt.state, config: { ...cfg, recipe: recipeConfig } };
  }
  return {
    cfg,
    device,
    trainSet,
    valSet,
    model,
    modelParams: model.numParameters(),
    extras,
    extraModules,
    extraParams: extras.numParameters(),
    recipeConfig,
    recipe,
    teacher,
    hintShapes,
    optimizer,
    loader,
    ...plan,
    state,
    resumedFrom: resumeFrom?.path ?? null,
  };
}

export function lastCheckpointPath(cfg: Pick<TrainConfig, 'out'>): string {
  return join(cfg.out, 'last.safetensors');
}

/** --resume continues `<out>/last.safetensors`; a folder without one is an error (a typo in --out must not start a new run unnoticed). */
export function checkResumable(cfg: Pick<TrainConfig, 'out'>): string {
  const path = lastCheckpointPath(cfg);
  if (!existsSync(path)) {
    const what = existsSync(cfg.out) ? 'holds no last.safetensors' : 'does not exist';
    throw new Error(`--resume: ${cfg.out} ${what}, so there is no run to continue (check --out; without --resume a fresh run starts there)`);
  }
  return path;
}

function checkpointToResume(cfg: TrainConfig): { path: string; ckpt: Checkpoint } {
  const path = checkResumable(cfg);
  return { path, ckpt: loadCheckpoint(path) };
}

/** Frees the optimiser state and closes the teacher file (the model stays usable; dispose it when done). */
export function closeRun(run: Run): void {
  run.optimizer.dispose();
  run.teacher?.close();
}
