// Checkpoints: one safetensors file holding the model (`model.<name>`), training-only modules (`extra.<name>`),
// the optimiser state (`optim.<buffer>.<i>`) and, in __metadata__, the trainer state as JSON. Written atomically,
// and only when every value is finite; read back only when every value is finite and the metadata is sound.
import { existsSync } from 'node:fs';
import { readSafetensors, writeSafetensors, type TensorToWrite } from '../teacher/safetensors.js';
import type { Module, StateDict } from '../nn/module.js';
import type { OptimizerState } from './optim.js';
import { models, type ModelSpec } from '../models/registry.js';
import { buildArchitecture, type Architecture } from '../models/architecture.js';
import type { Classifier } from '../models/classifier.js';

export const CHECKPOINT_FORMAT = 'wgkd-checkpoint';

export interface TrainerState {
  format: typeof CHECKPOINT_FORMAT;
  version: 1;
  model: string;
  modelSpec: { inChannels: number; numClasses: number; inputSize: number };
  /** How to rebuild the model (a JSON student's whole layer list); absent in older checkpoints: a built-in `model`. */
  architecture?: Architecture;
  dataset: string;
  epoch: number; // epochs completed
  stepInEpoch: number; // steps done in the current (incomplete) epoch; 0 at epoch ends
  globalStep: number;
  bestAccuracy: number;
  bestEpoch: number;
  valAccuracy: number | null;
  config: Record<string, unknown>;
  /** Mid-epoch checkpoints: the running sums of the epoch so far, so its record comes out as if never stopped. */
  partialEpoch?: PartialEpoch;
}

export interface PartialEpoch {
  sums: Record<string, number>;
  steps: number;
  correct: number;
  seen: number;
}

export interface Checkpoint {
  state: TrainerState;
  model: StateDict;
  extra: StateDict;
  optimizer: OptimizerState | null;
}

/** The first non-finite value of `data`, or null. */
export function firstNonFinite(data: ArrayLike<number>): { index: number; value: number; count: number } | null {
  let first = -1;
  let count = 0;
  for (let i = 0; i < data.length; i++) {
    if (!Number.isFinite(data[i])) {
      if (first < 0) first = i;
      count++;
    }
  }
  return first < 0 ? null : { index: first, value: data[first], count };
}

/** Throws naming the first tensor holding NaN or Inf. `action`: what the values were about to be used for. */
function checkFinite(path: string, tensors: Record<string, { data: ArrayLike<number> }>, action: string): void {
  for (const [name, t] of Object.entries(tensors)) {
    const bad = firstNonFinite(t.data);
    if (bad) {
      throw new Error(
        `${path}: ${action}: tensor '${name}' holds ${bad.count.toLocaleString('en')} non-finite value(s) of ${t.data.length.toLocaleString('en')} ` +
          `(first: ${bad.value} at element ${bad.index})`,
      );
    }
  }
}

export function saveCheckpoint(path: string, ckpt: Checkpoint): void {
  const tensors: Record<string, TensorToWrite> = {};
  for (const [name, e] of Object.entries(ckpt.model)) tensors[`model.${name}`] = { shape: e.shape, data: e.data };
  for (const [name, e] of Object.entries(ckpt.extra)) tensors[`extra.${name}`] = { shape: e.shape, data: e.data };
  let optimMeta: Omit<OptimizerState, 'buffers'> | null = null;
  if (ckpt.optimizer) {
    const { buffers, ...rest } = ckpt.optimizer;
    optimMeta = rest;
    for (const [buffer, arrays] of Object.entries(buffers)) {
      arrays.forEach((data, i) => {
        tensors[`optim.${buffer}.${i}`] = { shape: [data.length], data };
      });
    }
  }
  // A checkpoint with NaN or Inf in it is worse than none: it would replace the last good one.
  checkFinite(path, tensors as Record<string, { data: Float32Array }>, 'refusing to write a checkpoint with non-finite values');
  writeSafetensors(path, tensors, { wgkd: JSON.stringify(ckpt.state), optimizer: JSON.stringify(optimMeta) });
}

function parseMetadataJson(path: string, metadata: Record<string, string>, key: string): unknown {
  try {
    return JSON.parse(metadata[key] ?? 'null');
  } catch (err) {
    throw new Error(`${path}: the '${key}' metadata entry is not valid JSON (${(err as Error).message}); the checkpoint is damaged`);
  }
}

/** The trainer state's fields that loading and resuming rely on; each problem names the file and the field. */
function checkState(path: string, state: TrainerState): void {
  const problem = (field: string, want: string) => new Error(`${path}: the checkpoint's '${field}' (${JSON.stringify((state as unknown as Record<string, unknown>)[field])}) is not ${want}; the checkpoint is damaged`);
  if (typeof state.model !== 'string' || state.model === '') throw new Error(`${path}: the checkpoint records no model name (its 'wgkd' metadata has no "model"); was it written by wgkd train?`);
  const spec = state.modelSpec as unknown as Record<string, unknown> | undefined;
  if (!spec || typeof spec !== 'object' || !['inChannels', 'numClasses', 'inputSize'].every((k) => Number.isInteger(spec[k]) && (spec[k] as number) > 0)) {
    throw problem('modelSpec', 'an object of positive integers {inChannels, numClasses, inputSize}');
  }
  for (const field of ['epoch', 'stepInEpoch', 'globalStep'] as const) if (!Number.isInteger(state[field]) || state[field] < 0) throw problem(field, 'a count');
  if (typeof state.dataset !== 'string') throw problem('dataset', 'a dataset name');
  if (typeof state.config !== 'object' || state.config === null) throw problem('config', 'an object');
}

export function loadCheckpoint(path: string): Checkpoint {
  if (!existsSync(path)) throw new Error(`checkpoint ${path} does not exist`);
  const { metadata, tensors } = readSafetensors(path);
  const state = parseMetadataJson(path, metadata, 'wgkd') as TrainerState;
  if (!state || typeof state !== 'object' || state.format !== CHECKPOINT_FORMAT) throw new Error(`${path} is not a wgkd checkpoint (no '${CHECKPOINT_FORMAT}' metadata)`);
  checkState(path, state);
  // No prototype: a tensor named 'optim.__proto__.0' must make a key, not write into Object.prototype.
  const model: StateDict = Object.create(null);
  const extra: StateDict = Object.create(null);
  const buffers: Record<string, Float32Array[]> = Object.create(null);
  for (const [name, t] of Object.entries(tensors)) {
    if (!(t.data instanceof Float32Array)) throw new Error(`${path}: tensor '${name}' is ${t.dtype}, expected F32`);
    const entry = { shape: t.shape, data: t.data };
    if (name.startsWith('model.')) model[name.slice(6)] = entry;
    else if (name.startsWith('extra.')) extra[name.slice(6)] = entry;
    else if (name.startsWith('optim.')) {
      const [, buffer, index] = name.split('.');
      if (!buffer || !/^\d+$/.test(index ?? '')) throw new Error(`${path}: tensor '${name}' is not optim.<buffer>.<index>; the checkpoint is damaged`);
      (buffers[buffer] ??= [])[Number(index)] = t.data;
    }
  }
  checkFinite(path, tensors as Record<string, { data: Float32Array }>, 'the checkpoint is unusable (its values became NaN or Inf before it was written)');
  const optimMeta = parseMetadataJson(path, metadata, 'optimizer') as Omit<OptimizerState, 'buffers'> | null;
  if (optimMeta !== null && (typeof optimMeta !== 'object' || typeof optimMeta.type !== 'string' || !Number.isInteger(optimMeta.step))) {
    throw new Error(`${path}: the 'optimizer' metadata entry is not an optimiser state ({type, step, lr, hyperParams}); the checkpoint is damaged`);
  }
  for (const [buffer, arrays] of Object.entries(buffers)) {
    const hole = Array.from({ length: arrays.length }, (_, i) => i).find((i) => !arrays[i]);
    if (hole !== undefined) throw new Error(`${path}: optimiser state '${buffer}' has no tensor optim.${buffer}.${hole}; the checkpoint is damaged`);
  }
  return { state, model, extra, optimizer: optimMeta ? { ...optimMeta, buffers } : null };
}

function describeModel(name: string, spec: Pick<ModelSpec, 'inChannels' | 'numClasses' | 'inputSize'>): string {
  return `${name} (${spec.inChannels}x${spec.inputSize}x${spec.inputSize}, ${spec.numClasses} classes)`;
}

/** A resumed run must ask for the model the checkpoint holds, on inputs of the same shape. */
export function checkpointFits(path: string, ckpt: Checkpoint, model: string, spec: Pick<ModelSpec, 'inChannels' | 'numClasses' | 'inputSize'>): void {
  const held = ckpt.state.modelSpec;
  const same = ckpt.state.model === model && held.inChannels === spec.inChannels && held.numClasses === spec.numClasses && held.inputSize === spec.inputSize;
  if (!same) {
    throw new Error(
      `${path} holds ${describeModel(ckpt.state.model, held)}; this run asks for ${describeModel(model, spec)}: ` +
        `use another --out or the same --model${ckpt.state.dataset ? ` and data (it was trained on ${ckpt.state.dataset})` : ''}`,
    );
  }
}

/** loadStateDict with one message naming the file and the module, and at most a few of the mismatches. */
export function loadWeights(path: string, module: Module, dict: StateDict, what: string): void {
  try {
    module.loadStateDict(dict);
  } catch (err) {
    const lines = (err as Error).message.split('\n').slice(1).map((l) => l.trim());
    const shown = lines.slice(0, 3).map((l) => `\n  ${l}`).join('');
    const more = lines.length > 3 ? `\n  ... and ${lines.length - 3} more` : '';
    throw new Error(`${path}: its weights do not fit ${what} (${lines.length} mismatch${lines.length === 1 ? '' : 'es'}):${shown}${more}`);
  }
}

/** The model a checkpoint holds, rebuilt from its recorded architecture and spec, weights loaded, in eval mode. */
export async function modelFromCheckpoint(path: string): Promise<{ ckpt: Checkpoint; model: Classifier }> {
  const ckpt = loadCheckpoint(path);
  const { model: name, modelSpec } = ckpt.state;
  const architecture = ckpt.state.architecture ?? { kind: 'builtin', name };
  if (architecture.kind === 'builtin' && !models[architecture.name]) {
    throw new Error(`${path} holds a model '${architecture.name}' that this wgkd does not know (known: ${Object.keys(models).join(', ')})`);
  }
  const model = await buildArchitecture(architecture, modelSpec);
  loadWeights(path, model, ckpt.model, describeModel(name, modelSpec));
  model.eval();
  return { ckpt, model };
}
