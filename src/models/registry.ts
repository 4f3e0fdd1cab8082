// Model registry: every model wgkd can build by name, with a one-line description.
import { manualSeed } from '../nn/module.js';
import type { Classifier } from './classifier.js';
import { Dwpw } from './dwpw.js';
import { Hw13Sample } from './hw13.js';
import { ResNet } from './resnet.js';

export interface ModelSpec {
  inChannels: number;
  numClasses: number;
  inputSize: number;
  seed?: number;
}

export interface ModelEntry {
  description: string;
  role: 'student' | 'teacher';
  build: (spec: ModelSpec) => Classifier;
}

export const models: Record<string, ModelEntry> = {
  'hw13-sample': {
    description: "the ML2023 HW13 course's sample student (59,723 params at 3x224x224, 11 classes)",
    role: 'student',
    build: (s) => new Hw13Sample(s.inChannels, s.numClasses),
  },
  dwpw: {
    description: 'depthwise-separable student, widths 32-64-128-128-192 (59,147 params at 3 channels, 11 classes)',
    role: 'student',
    build: (s) => new Dwpw({ inChannels: s.inChannels, numClasses: s.numClasses, inputSize: s.inputSize }),
  },
  'resnet-small': {
    description: 'compact residual teacher: 3x3 stem, 3 stages of 2 basic blocks, widths 32-64-128',
    role: 'teacher',
    build: (s) => new ResNet({ inChannels: s.inChannels, numClasses: s.numClasses, widths: [32, 64, 128], blocks: [2, 2, 2], stem: 'small' }),
  },
  resnet18: {
    description: "torchvision's ResNet-18 layout (loads converted torchvision state dicts); stem 'imagenet'",
    role: 'teacher',
    build: (s) => new ResNet({ inChannels: s.inChannels, numClasses: s.numClasses, stem: s.inputSize >= 112 ? 'imagenet' : 'small' }),
  },
};

export function createModel(name: string, spec: ModelSpec): Classifier {
  const entry = models[name];
  if (!entry) throw new Error(`unknown model '${name}' (known: ${Object.keys(models).join(', ')})`);
  manualSeed(spec.seed ?? 0);
  return entry.build(spec);
}
