// One training step: batch -> student -> recipe -> backward -> clip -> optimiser, recorded into one submit, then
// one readback of the loss terms and the logits (for the batch accuracy).
import { Tensor, scope } from '../tensor.js';
import type { TeacherTensors } from '../kd/recipe.js';
import type { Batch } from '../data/loader.js';
import { lrAt } from './schedule.js';
import type { Run } from './setup.js';

/** A step produced NaN or Inf (in the loss, the gradients or the weights); the run cannot go on from it. */
export class NonFiniteError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NonFiniteError';
  }
}

export interface StepResult {
  /** The total loss. */
  loss: number;
  /** Each unweighted term of the recipe by name. */
  parts: Record<string, number>;
  /** Samples of the batch whose argmax logit is the label. */
  correct: number;
  batchSize: number;
  lr: number;
}

/** The teacher's targets for the batch's samples and views, uploaded. */
function teacherTensors(run: Run, batch: Batch): TeacherTensors {
  const { teacher, recipe, hintShapes } = run;
  const tb: TeacherTensors = {};
  if (!teacher) return tb;
  const b = batch.indices.length;
  const needs = recipe.needs();
  const rows = teacher.readBatch(batch.indices, batch.view ?? 0, { embedding: needs.embedding, hints: needs.hints });
  tb.logits = Tensor.fromArray(rows.logits, [b, teacher.metadata.numClasses]);
  if (rows.embedding) tb.embedding = Tensor.fromArray(rows.embedding, [b, rows.embedding.length / b]);
  for (const [name, data] of Object.entries(rows.hints ?? {})) tb.hints = { ...tb.hints, [name]: Tensor.fromArray(data, [b, ...hintShapes[name]]) };
  return tb;
}

function countCorrect(logits: Float32Array, labels: Int32Array, k: number): number {
  let correct = 0;
  for (let r = 0; r < labels.length; r++) {
    let best = 0;
    for (let c = 1; c < k; c++) if (logits[r * k + c] > logits[r * k + best]) best = c;
    if (best === labels[r]) correct++;
  }
  return correct;
}

/**
 * Stops the run at the first step that made anything non-finite, saying where it happened: the loss (forward),
 * the gradients (backward), or the weights (the optimiser step). `health`: [grad NaN, grad Inf, param NaN, param Inf].
 */
function checkHealth(run: Run, epoch: number, loss: number, health: Uint32Array): void {
  const at = `at epoch ${epoch + 1}, step ${run.state.stepInEpoch + 1}`;
  const total = run.optimizer.numel.toLocaleString('en');
  const kind = (nan: number) => (nan > 0 ? 'NaN' : 'Inf');
  const counted = (nan: number, inf: number) => `${(nan + inf).toLocaleString('en')} of ${total} values`;
  if (!Number.isFinite(loss)) throw new NonFiniteError(`loss became ${loss} ${at} in the forward pass (lower --lr, or check the teacher file)`);
  const [gradNaN, gradInf, paramNaN, paramInf] = health;
  if (gradNaN + gradInf > 0) {
    throw new NonFiniteError(`gradients became ${kind(gradNaN)} ${at} in the backward pass (${counted(gradNaN, gradInf)}; lower --lr${run.cfg.clip > 0 ? '' : ', or set --clip'})`);
  }
  if (paramNaN + paramInf > 0) {
    throw new NonFiniteError(`weights became ${kind(paramNaN)} ${at} after the optimizer step (${counted(paramNaN, paramInf)}; lower --lr${run.cfg.clip > 0 ? '' : ', or set --clip'})`);
  }
}

/**
 * Trains on one batch of epoch `epoch` (0-based) at the run's current step, then advances run.state by one step.
 * Hands the batch's host memory back to the loader once uploaded.
 */
export async function runStep(run: Run, batch: Batch, epoch: number): Promise<StepResult> {
  const { trainSet, model, recipe, optimizer, loader, cfg, device, state } = run;
  const b = batch.indices.length;
  optimizer.lr = lrAt(run.schedule, state.globalStep);
  const { values, names, logits, health } = await scope(async () => {
    const x = Tensor.fromArray(batch.x, [b, trainSet.channels, trainSet.height, trainSet.width]);
    const y = Tensor.fromArray(batch.y!, [b], { dtype: 'i32' });
    const tb = teacherTensors(run, batch);
    loader.recycle(batch); // uploaded: its host memory can take the next batch
    const features = model.forwardFeatures(x);
    const terms = recipe.compute(features, y, tb, epoch);
    terms.total.backward();
    if (cfg.clip > 0) optimizer.clipGradNorm(cfg.clip);
    optimizer.step();
    const health = optimizer.nonFiniteCounts(); // before zeroGrad: it checks the gradients too
    optimizer.zeroGrad();
    const names = Object.keys(terms.parts);
    // One readback for everything the step reports: the loss terms, the logits and the health counts.
    const read = await device.read([health, features.logits, terms.total, ...names.map((n) => terms.parts[n])]);
    return { names, health: new Uint32Array(read[0]), logits: new Float32Array(read[1]), values: read.slice(2).map((r) => new Float32Array(r)[0]) };
  });
  const loss = values[0];
  checkHealth(run, epoch, loss, health);
  const correct = countCorrect(logits, batch.y!, trainSet.numClasses);
  state.stepInEpoch++;
  state.globalStep++;
  return { loss, parts: Object.fromEntries(names.map((n, i) => [n, values[i + 1]])), correct, batchSize: b, lr: optimizer.lr };
}
