// PyTorch weights in wgkd: a torchvision state dict converted to safetensors by tools/teacher/convert_checkpoint.py
// (same tensor names, F32 or F16 floats, I64 integers) loads into a wgkd model whose parameter and buffer names
// follow PyTorch's (e.g. resnet18: conv1.weight, bn1.running_var, layer2.0.downsample.0.weight, fc.bias).
import type { Module, StateDict } from '../nn/module.js';
import * as fs from 'node:fs';
import { SafetensorsFile } from './safetensors.js';

/** BatchNorm's step counter: PyTorch stores it, wgkd's BatchNorm2d has no use for it. */
const IGNORED_SUFFIX = 'num_batches_tracked';

export interface TorchWeightsSummary {
  /** Names written into the model. */
  loaded: string[];
  /** Names in the file that were skipped (num_batches_tracked). */
  ignored: string[];
  /** The file's __metadata__ (convert_checkpoint.py records the source file and the PyTorch version). */
  metadata: Readonly<Record<string, string>>;
}

/** What a torchvision ResNet state dict says about its architecture (read from the header only). */
export interface TorchResNetShape {
  inChannels: number;
  numClasses: number;
  /** conv1 kernel: 7 for torchvision's ImageNet stem, 3 for the small stem. */
  stemKernel: number;
}

/**
 * Opens a converted weights file; a PyTorch checkpoint given by mistake (torch.save writes a zip archive, or a
 * pickle in the legacy format) gets a message saying how to convert it.
 */
function openWeights(path: string): SafetensorsFile {
  const head = Buffer.alloc(9);
  try {
    const fd = fs.openSync(path, 'r');
    fs.readSync(fd, head, 0, 9, 0);
    fs.closeSync(fd);
  } catch {
    // SafetensorsFile.open reports the file that cannot be opened.
  }
  // safetensors: 8-byte header length, then the JSON header's '{'. Only a file without it is looked at further.
  const torchSave = head.subarray(0, 4).equals(Buffer.from('PK\x03\x04', 'latin1')) || (head[0] === 0x80 && head[1] >= 2 && head[1] <= 5);
  if (head[8] !== 0x7b && torchSave) {
    throw new Error(
      `${path} is a PyTorch checkpoint (torch.save), not safetensors: convert it first with\n` +
        `  python3 tools/teacher/convert_checkpoint.py ${path} ${path.replace(/\.(ckpt|pth?|bin)$/, '')}.safetensors`,
    );
  }
  return SafetensorsFile.open(path);
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

function shapeText(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

/**
 * Reads a converted state dict and checks it against `model` without changing the model: every float tensor of
 * the file must be a parameter or buffer of the model with the same shape, and every parameter and buffer must be
 * in the file. Throws one error listing every problem.
 */
export function readTorchWeights(model: Module, path: string): { state: StateDict; summary: TorchWeightsSummary } {
  const file = openWeights(path);
  try {
    const mine = new Map(model.stateTensors());
    const problems: string[] = [];
    const ignored: string[] = [];
    const state: StateDict = {};
    for (const name of file.names) {
      const info = file.info(name);
      if (name === IGNORED_SUFFIX || name.endsWith(`.${IGNORED_SUFFIX}`)) {
        ignored.push(name);
        continue;
      }
      const target = mine.get(name);
      if (!target) {
        problems.push(`unexpected tensor '${name}' ${info.dtype} ${shapeText(info.shape)} (not in the model)`);
        continue;
      }
      if (info.dtype !== 'F32' && info.dtype !== 'F16') {
        problems.push(`'${name}' is ${info.dtype}; expected F32 or F16`);
        continue;
      }
      if (!sameShape(info.shape, target.shape)) {
        problems.push(`'${name}': file shape ${shapeText(info.shape)}, model shape ${shapeText(target.shape)}`);
        continue;
      }
      state[name] = { shape: [...info.shape], data: file.read(name) as Float32Array };
    }
    for (const [name, t] of mine) {
      if (!file.has(name)) problems.push(`missing tensor '${name}' ${shapeText(t.shape)} (in the model, not in the file)`);
    }
    if (problems.length > 0) {
      const wrapped = file.names.length > 0 && file.names.every((n) => n.startsWith('module.'));
      const hint = wrapped
        ? "\nEvery name starts with 'module.' (DataParallel): convert the checkpoint with tools/teacher/convert_checkpoint.py, which strips it."
        : '';
      throw new Error(`loadTorchWeights ${path}: ${problems.length} problem(s):\n  ${problems.join('\n  ')}${hint}`);
    }
    return { state, summary: { loaded: Object.keys(state), ignored, metadata: { ...file.metadata } } };
  } finally {
    file.close();
  }
}

/**
 * Loads a torchvision state dict converted to safetensors (tools/teacher/convert_checkpoint.py) into `model`,
 * in place. Names must match and shapes agree (the error lists every problem); `num_batches_tracked` entries are
 * ignored; F32 and F16 tensors are accepted. Nothing is written unless everything fits.
 */
export function loadTorchWeights(model: Module, path: string): TorchWeightsSummary {
  const { state, summary } = readTorchWeights(model, path);
  model.loadStateDict(state, { strict: true });
  return summary;
}

/** Architecture of a converted torchvision ResNet state dict, from conv1.weight and fc.weight (header only). */
export function torchResNetShape(path: string): TorchResNetShape {
  const file = openWeights(path);
  try {
    const missing = ['conv1.weight', 'fc.weight'].filter((n) => !file.has(n));
    if (missing.length > 0) {
      throw new Error(`${path}: no ${missing.join(' or ')}: not a (converted) torchvision ResNet state dict (tensors: ${file.names.slice(0, 8).join(', ')} ...)`);
    }
    const conv1 = file.info('conv1.weight').shape;
    const fc = file.info('fc.weight').shape;
    if (conv1.length !== 4 || fc.length !== 2) throw new Error(`${path}: conv1.weight ${shapeText(conv1)} / fc.weight ${shapeText(fc)} are not a ResNet's`);
    return { inChannels: conv1[1], numClasses: fc[0], stemKernel: conv1[2] };
  } finally {
    file.close();
  }
}
