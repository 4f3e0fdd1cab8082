// The training loop: set up the run (src/train/setup.ts), then epochs of steps (src/train/step.ts, one submit
// each), validation each epoch, best/last checkpoints written atomically (and periodically mid-epoch), the
// metrics log (src/train/run-folder.ts), and Ctrl-C/kill handling (src/train/interrupt.ts). Exact resume: the
// data order and every random choice are functions of (seed, epoch, step), and the checkpoint holds the
// optimiser state and the position in the epoch.
import { Device } from '../gpu/device.js';
import type { Classifier } from '../models/classifier.js';
import type { Module } from '../nn/module.js';
import { evaluate } from './evaluate.js';
import { saveCheckpoint, type PartialEpoch } from './checkpoint.js';
import { Progress, duration } from './progress.js';
import { DEFAULT_CONFIG, checkTrainOptions, type TrainConfig } from './config.js';
import { closeRun, setUpRun, type Run } from './setup.js';
import { NonFiniteError, runStep, type StepResult } from './step.js';
import { MetricsLog, prepareRunFolder, removeEarlierRun, writeRunConfig, type RunPaths } from './run-folder.js';
import { Interruptions, TrainingInterrupted } from './interrupt.js';

export { DEFAULT_CONFIG, TRAIN_OPTIONS, checkTrainOptions, readConfigFile, type TrainConfig } from './config.js';
export { setUpRun, closeRun, type Run } from './setup.js';
export { runStep, NonFiniteError, type StepResult } from './step.js';
export { TrainingInterrupted } from './interrupt.js';

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
  stoppedEarly: boolean; // maxSteps reached (an interruption throws TrainingInterrupted instead)
  adapter: string;
}

/** Called around every training step (the profiler uses them to bracket one step's dispatches). */
export interface StepHooks {
  /** Once the run is set up: the student and the training-only modules (a FitNet regressor). */
  onStart?(run: { model: Classifier; extras: Module[] }): void;
  beforeStep?(): void;
  afterStep?(info: { epoch: number; step: number; loss: number }): void | Promise<void>;
}

/** Writes last/best checkpoints of a run, and remembers the last good one for error messages. */
class RunCheckpoints {
  private lastSave = performance.now();
  private lastGood: string | null;

  constructor(
    private readonly run: Run,
    private readonly paths: RunPaths,
  ) {
    this.lastGood = run.resumedFrom ? this.where() : null;
  }

  /** Whether --checkpoint-every seconds passed since the last write. */
  get due(): boolean {
    const every = this.run.cfg.checkpointEvery;
    return every > 0 && performance.now() - this.lastSave >= every * 1000;
  }

  async save(which: 'last' | 'best'): Promise<void> {
    const { model, extras, optimizer, state } = this.run;
    const [modelState, extraState, optimState] = [await model.stateDict(), await extras.stateDict(), await optimizer.stateDict()];
    try {
      saveCheckpoint(this.paths[which], { state, model: modelState, extra: extraState, optimizer: optimState });
    } catch (err) {
      throw new Error(`${(err as Error).message}; ${this.lastGoodText()}`);
    }
    if (which === 'last') {
      this.lastSave = performance.now();
      this.lastGood = this.where();
    }
  }

  lastGoodText(): string {
    return this.lastGood ? `last good checkpoint: ${this.lastGood}` : 'no checkpoint was written before it';
  }

  private where(): string {
    const { epoch, stepInEpoch } = this.run.state;
    return `${this.paths.last} (epoch ${epoch}${stepInEpoch > 0 ? `, step ${stepInEpoch} of epoch ${epoch + 1}` : ''})`;
  }
}

/** What the epoch loop shares across epochs. */
interface Loop {
  run: Run;
  metrics: MetricsLog;
  checkpoints: RunCheckpoints;
  interruptions: Interruptions;
  hooks: StepHooks;
  stepLosses: number[];
  history: EpochMetrics[];
}

type EpochEnd = { kind: 'complete' | 'maxSteps' | 'interrupted'; totals: PartialEpoch; seen: number; seconds: number; progress: Progress };

/** Adds a step to the epoch's running sums (kept in mid-epoch checkpoints, so a resumed epoch's record is whole). */
function addStep(totals: PartialEpoch, step: StepResult): void {
  totals.sums.total = (totals.sums.total ?? 0) + step.loss;
  for (const [n, v] of Object.entries(step.parts)) totals.sums[n] = (totals.sums[n] ?? 0) + v;
  totals.correct += step.correct;
  totals.seen += step.batchSize;
  totals.steps++;
}

/** The steps of one epoch (from the checkpoint's position when resuming mid-epoch). */
async function trainEpoch(loop: Loop, epoch: number): Promise<EpochEnd> {
  const { run, metrics, checkpoints, interruptions, hooks, stepLosses } = loop;
  const { cfg, state } = run;
  const epochStart = performance.now();
  const totals: PartialEpoch = state.partialEpoch ? structuredClone(state.partialEpoch) : { sums: {}, steps: 0, correct: 0, seen: 0 };
  let seen = 0;
  const stepsThisEpoch = Math.min(run.stepsPerEpoch, run.totalSteps - epoch * run.stepsPerEpoch);
  const progress = new Progress(`epoch ${epoch + 1}/${run.epochCount}`, stepsThisEpoch, process.stderr, cfg.quiet);
  const end = (kind: EpochEnd['kind']): EpochEnd => {
    state.partialEpoch = kind === 'complete' ? undefined : totals;
    return { kind, totals, seen, seconds: (performance.now() - epochStart) / 1000, progress };
  };
  for await (const batch of run.loader.epoch(epoch, { skip: state.stepInEpoch })) {
    hooks.beforeStep?.();
    let step;
    try {
      step = await runStep(run, batch, epoch);
    } catch (err) {
      if (err instanceof NonFiniteError) throw new Error(`${err.message}; ${checkpoints.lastGoodText()}`);
      throw err;
    }
    stepLosses.push(step.loss);
    await hooks.afterStep?.({ epoch: epoch + 1, step: state.globalStep, loss: step.loss });
    addStep(totals, step);
    seen += step.batchSize;
    if (cfg.logSteps) metrics.append({ type: 'step', epoch: epoch + 1, step: state.globalStep, lr: step.lr, loss: step.loss, parts: step.parts, accuracy: step.correct / step.batchSize });
    const mean = (n: string) => (totals.sums[n] / totals.steps).toFixed(4);
    const names = Object.keys(step.parts);
    const elapsed = (performance.now() - epochStart) / 1000;
    progress.update(state.stepInEpoch, `${(seen / elapsed).toFixed(0)} img/s loss ${mean('total')}${names.length > 1 ? ` (${names.map((n) => `${n} ${mean(n)}`).join(' ')})` : ''}`);
    if (state.stepInEpoch >= stepsThisEpoch) return end('complete'); // the whole epoch, or the last, partial one of a fractional --epochs
    if (cfg.maxSteps > 0 && stepLosses.length >= cfg.maxSteps) return end('maxSteps');
    if (interruptions.signal) return end('interrupted');
    if (checkpoints.due) {
      state.partialEpoch = totals;
      await checkpoints.save('last'); // mid-epoch: a kill loses at most --checkpoint-every seconds
    }
  }
  return end('complete');
}

/** Validation, the epoch record, last (and best) checkpoints. */
async function finishEpoch(loop: Loop, epoch: number, end: EpochEnd): Promise<EpochMetrics> {
  const { run } = loop;
  const { state } = run;
  const val = await evaluate(run.model, run.valSet, { batchSize: Math.max(run.cfg.batch, 256) });
  state.epoch = epoch + 1;
  state.stepInEpoch = 0;
  state.valAccuracy = val.accuracy!;
  const improved = val.accuracy! > state.bestAccuracy;
  if (improved) {
    state.bestAccuracy = val.accuracy!;
    state.bestEpoch = epoch + 1;
  }
  const { sums, steps, correct, seen } = end.totals;
  const metrics: EpochMetrics = {
    epoch: epoch + 1,
    step: state.globalStep,
    lr: run.optimizer.lr,
    loss: Object.fromEntries(Object.entries(sums).map(([k, v]) => [k, v / Math.max(1, steps)])),
    trainAccuracy: seen ? correct / seen : 0,
    valAccuracy: val.accuracy!,
    imagesPerSecond: end.seen / end.seconds,
    seconds: end.seconds,
  };
  loop.history.push(metrics);
  loop.metrics.append({ type: 'epoch', ...metrics });
  await loop.checkpoints.save('last');
  if (improved) await loop.checkpoints.save('best');
  end.progress.done(`loss ${metrics.loss.total.toFixed(4)} train acc ${metrics.trainAccuracy.toFixed(4)} val acc ${val.accuracy!.toFixed(4)}${improved ? ' (best)' : ''} ${metrics.imagesPerSecond.toFixed(0)} img/s`);
  return metrics;
}

export async function train(partial: Partial<TrainConfig>, options: { device?: Device; hooks?: StepHooks } = {}): Promise<TrainResult> {
  const cfg: TrainConfig = { ...DEFAULT_CONFIG, ...checkTrainOptions(partial as Record<string, unknown>, 'train config') };
  const log = (line: string) => {
    if (!cfg.quiet) process.stderr.write(`${line}\n`);
  };
  const dev = options.device ?? (await Device.open());
  const runStart = performance.now();
  const paths = prepareRunFolder(cfg, log);
  const run = await setUpRun(cfg, dev);
  const { state } = run;
  options.hooks?.onStart?.({ model: run.model, extras: run.extraModules });
  if (!run.resumedFrom) removeEarlierRun(paths, log); // only with --overwrite: prepareRunFolder refused otherwise
  const metrics = run.resumedFrom ? MetricsLog.resumed(paths.metrics, state) : MetricsLog.fresh(paths.metrics);
  writeRunConfig(paths, state.config);
  if (run.resumedFrom) log(`resumed from ${run.resumedFrom}: epoch ${state.epoch}, step ${state.stepInEpoch} of the next, best ${state.bestAccuracy.toFixed(4)}`);
  log(`training ${cfg.model} (${run.modelParams.toLocaleString('en')} params${run.extraParams ? ` + ${run.extraParams.toLocaleString('en')} training-only` : ''}) on ${cfg.dataset} ` +
      `(${run.trainSet.length} train / ${run.valSet.length} validation), recipe ${JSON.stringify(run.recipeConfig)}, ${dev.summary.description}`);
  if (run.recipe.describeRegressor()) log(run.recipe.describeRegressor()!);

  const loop: Loop = { run, metrics, checkpoints: new RunCheckpoints(run, paths), interruptions: new Interruptions().install(), hooks: options.hooks ?? {}, stepLosses: [], history: [] };
  let imagesSeen = 0;
  let trainSeconds = 0;
  let stop: EpochEnd['kind'] | null = null;
  try {
    for (let epoch = state.epoch; epoch < run.epochCount && !stop; epoch++) {
      const end = await trainEpoch(loop, epoch);
      imagesSeen += end.seen;
      trainSeconds += end.seconds;
      if (end.kind === 'complete') await finishEpoch(loop, epoch, end);
      else await loop.checkpoints.save('last'); // mid-epoch: resumable from exactly here
      if (end.kind === 'maxSteps') end.progress.done(`stopped after ${loop.stepLosses.length} steps (maxSteps); resumable from ${paths.last}`);
      const reachedMaxSteps = cfg.maxSteps > 0 && loop.stepLosses.length >= cfg.maxSteps;
      const finished = end.kind === 'complete' && epoch + 1 === run.epochCount;
      if (loop.interruptions.signal && !finished) stop = 'interrupted';
      else if (end.kind !== 'complete' || reachedMaxSteps) stop = 'maxSteps';
    }
  } finally {
    loop.interruptions.remove();
    closeRun(run);
  }
  if (stop === 'interrupted') {
    // Thrown, not returned: a caller that goes on to evaluate or report must not mistake this for a finished run.
    throw new TrainingInterrupted(loop.interruptions.signal!, `stopped at epoch ${state.epoch + 1}, step ${state.stepInEpoch}: resume with --resume (${paths.last})`);
  }
  const seconds = (performance.now() - runStart) / 1000;
  log(`done in ${duration(seconds)}: best validation accuracy ${state.bestAccuracy.toFixed(4)} (epoch ${state.bestEpoch})`);
  return {
    runDir: cfg.out,
    model: run.model,
    modelParams: run.modelParams,
    extraParams: run.extraParams,
    bestAccuracy: state.bestAccuracy,
    bestEpoch: state.bestEpoch,
    history: loop.history,
    stepLosses: loop.stepLosses,
    imagesPerSecond: trainSeconds > 0 ? imagesSeen / trainSeconds : 0,
    seconds,
    stoppedEarly: stop !== null,
    adapter: dev.summary.description,
  };
}
