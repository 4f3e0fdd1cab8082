// Checkpoints: one safetensors file holding the model (`model.<name>`), training-only modules (`extra.<name>`),
// the optimiser state (`optim.<buffer>.<i>`) and, in __metadata__, the trainer state as JSON. Written atomically.
import { existsSync } from 'node:fs';
import { readSafetensors, writeSafetensors, type TensorToWrite } from '../teacher/safetensors.js';
import type { StateDict } from '../nn/module.js';
import type { OptimizerState } from './optim.js';
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
}

export interface Checkpoint {
  state: TrainerState;
  model: StateDict;
  extra: StateDict;
  optimizer: OptimizerState | null;
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
  writeSafetensors(path, tensors, { wgkd: JSON.stringify(ckpt.state), optimizer: JSON.stringify(optimMeta) });
}

export function loadCheckpoint(path: string): Checkpoint {
  if (!existsSync(path)) throw new Error(`checkpoint ${path} does not exist`);
  const { metadata, tensors } = readSafetensors(path);
  let state: TrainerState;
  try {
    state = JSON.parse(metadata.wgkd ?? 'null') as TrainerState;
  } catch {
    throw new Error(`${path}: the 'wgkd' metadata entry is not valid JSON`);
  }
  if (!state || state.format !== CHECKPOINT_FORMAT) throw new Error(`${path} is not a wgkd checkpoint (no '${CHECKPOINT_FORMAT}' metadata)`);
  const model: StateDict = {};
  const extra: StateDict = {};
  const buffers: Record<string, Float32Array[]> = {};
  for (const [name, t] of Object.entries(tensors)) {
    if (!(t.data instanceof Float32Array)) throw new Error(`${path}: tensor '${name}' is ${t.dtype}, expected F32`);
    const entry = { shape: t.shape, data: t.data };
    if (name.startsWith('model.')) model[name.slice(6)] = entry;
    else if (name.startsWith('extra.')) extra[name.slice(6)] = entry;
    else if (name.startsWith('optim.')) {
      const [, buffer, index] = name.split('.');
      (buffers[buffer] ??= [])[Number(index)] = t.data;
    }
  }
  const optimMeta = JSON.parse(metadata.optimizer ?? 'null') as Omit<OptimizerState, 'buffers'> | null;
  return { state, model, extra, optimizer: optimMeta ? { ...optimMeta, buffers } : null };
}

/** The model a checkpoint holds, rebuilt from its recorded architecture and spec, weights loaded, in eval mode. */
export async function modelFromCheckpoint(path: string): Promise<{ ckpt: Checkpoint; model: Classifier }> {
  const ckpt = loadCheckpoint(path);
  const architecture = ckpt.state.architecture ?? { kind: 'builtin', name: ckpt.state.model };
  const model = await buildArchitecture(architecture, ckpt.state.modelSpec);
  model.loadStateDict(ckpt.model);
  model.eval();
  return { ckpt, model };
}
