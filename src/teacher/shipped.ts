// The Fashion-MNIST teacher that ships with wgkd (data/fashion-mnist/, see data/README.md): a resnet-small trained in
// PyTorch by tools/teacher/train_fashion_mnist.py, as converted weights plus its precomputed outputs (logits and
// 128-d embeddings, F16) for the 55,000-image train split. fashionMnistTeacher() hands out a teacher-outputs file
// for a train split: the shipped one when it matches the data, otherwise one it produces and caches.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Dataset } from '../data/dataset.js';
import { datasetIdentity } from '../data/dataset.js';
import { defaultCacheDir } from '../data/cache.js';
import { createModel } from '../models/registry.js';
import { exportTeacherOutputs } from './export.js';
import { openTeacherOutputs } from './outputs.js';
import { SafetensorsFile } from './safetensors.js';
import { loadTorchWeights } from './torch.js';

const DATA_DIR = fileURLToPath(new URL('../../data/fashion-mnist/', import.meta.url));
export const SHIPPED_TEACHER = {
  model: 'resnet-small',
  weights: join(DATA_DIR, 'teacher-resnet-small.safetensors'),
  outputs: join(DATA_DIR, 'teacher-train.safetensors'),
};

export interface ShippedTeacher {
  /** Teacher-outputs file aligned with the train split. */
  outputs: string;
  /** 'shipped' (data/), 'cache' (produced earlier) or 'produced' (just now). */
  source: 'shipped' | 'cache' | 'produced';
  model: string;
  parameters: number;
  /** The teacher's test accuracy, from its weights file. */
  testAccuracy: number | null;
}

export interface ShippedTeacherOptions {
  /** The folder the train split was read from (Debian's location when not given) and its hold-out size. */
  data?: string;
  validationSize?: number;
  cacheDir?: string;
  /** Feature maps to include as FitNet hints (e.g. ['layer3']); the shipped file has none, so they are produced. */
  hints?: string[];
  /** Produce hint files with tools/teacher/export_outputs.py when PyTorch is installed (much faster on a CPU). */
  preferPython?: boolean;
  log?: (line: string) => void;
  onProgress?: (done: number, total: number) => void;
}

function aligned(path: string, train: Dataset, hints: string[]): boolean {
  if (!existsSync(path)) return false;
  const file = openTeacherOutputs(path);
  try {
    file.checkAlignment(datasetIdentity(train));
    return hints.every((h) => file.hintNames.includes(h));
  } catch {
    return false;
  } finally {
    file.close();
  }
}

function weightsMetadata(): Readonly<Record<string, string>> {
  if (!existsSync(SHIPPED_TEACHER.weights)) {
    throw new Error(`the shipped teacher ${SHIPPED_TEACHER.weights} is missing (a partial checkout?); data/README.md says how to regenerate it`);
  }
  const file = SafetensorsFile.open(SHIPPED_TEACHER.weights);
  try {
    return file.metadata;
  } finally {
    file.close();
  }
}

/** PyTorch's exporter, when /usr/bin/python3 (or python3) can import torch. */
function pythonWithTorch(): string | null {
  for (const python of ['/usr/bin/python3', 'python3']) {
    const probe = spawnSync(python, ['-c', 'import torch, torchvision'], { stdio: 'ignore' });
    if (probe.status === 0) return python;
  }
  return null;
}

export async function fashionMnistTeacher(train: Dataset, options: ShippedTeacherOptions = {}): Promise<ShippedTeacher> {
  if (train.name !== 'fashion-mnist' || train.split !== 'train') throw new Error(`the shipped teacher is for fashion-mnist/train, not ${train.name}/${train.split}`);
  const hints = options.hints ?? [];
  const log = options.log ?? (() => {});
  const meta = weightsMetadata();
  const info = { model: SHIPPED_TEACHER.model, parameters: Number(meta.parameters ?? 0), testAccuracy: meta.test_accuracy ? Number(meta.test_accuracy) : null };
  if (hints.length === 0 && aligned(SHIPPED_TEACHER.outputs, train, hints)) return { ...info, outputs: SHIPPED_TEACHER.outputs, source: 'shipped' };

  const cacheDir = options.cacheDir ?? defaultCacheDir();
  const cached = join(cacheDir, `teacher-${train.name}-${train.split}-${train.fingerprint}${hints.length ? `-hints-${hints.join('+')}` : ''}.safetensors`);
  if (aligned(cached, train, hints)) return { ...info, outputs: cached, source: 'cache' };
  mkdirSync(cacheDir, { recursive: true });

  // tools/ is in the repository, not in the npm package: installed, the outputs come from wgkd itself.
  const script = fileURLToPath(new URL('../../tools/teacher/export_outputs.py', import.meta.url));
  const python = options.preferPython === false || !existsSync(script) ? null : pythonWithTorch();
  if (python) {
    // The exporter reads the IDX files and draws the hold-out itself; the alignment check below confirms it.
    log(`producing teacher outputs with PyTorch (tools/teacher/export_outputs.py) -> ${cached}`);
    const args = [script, '--weights', SHIPPED_TEACHER.weights, '--fashion-mnist', ...(options.data ? [options.data] : []), '--split', 'train',
      '--validation-size', String(options.validationSize ?? 5000), '--f16', '--out', cached, '--quiet', '--teacher-name', 'resnet-small (data/fashion-mnist)'];
    if (hints.length) args.push('--hints', hints.join(','));
    if (info.testAccuracy !== null) args.push('--teacher-accuracy', String(info.testAccuracy));
    const run = spawnSync(python, args, { stdio: ['ignore', 'inherit', 'inherit'] });
    if (run.status === 0 && aligned(cached, train, hints)) return { ...info, outputs: cached, source: 'produced' };
    log('PyTorch export failed or did not match the data; falling back to wgkd');
  }

  log(`producing teacher outputs with wgkd (${SHIPPED_TEACHER.model}) -> ${cached}`);
  const teacher = createModel(SHIPPED_TEACHER.model, { inChannels: train.channels, numClasses: train.numClasses, inputSize: train.height });
  try {
    loadTorchWeights(teacher, SHIPPED_TEACHER.weights);
    await exportTeacherOutputs(teacher, train, {
      path: cached,
      teacherName: 'resnet-small (data/fashion-mnist)',
      teacherAccuracy: info.testAccuracy,
      hints,
      dtype: 'F16',
      onProgress: options.onProgress,
    });
  } finally {
    teacher.dispose();
  }
  return { ...info, outputs: cached, source: 'produced' };
}
