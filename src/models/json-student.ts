// Students the user designs: a JSON layer list, checked and planned without a GPU (shapes, parameter counts, errors
// that name the layer), then built from the existing layers of src/nn/ so the kernels are the proven ones.
//
//   {"layers": [{"conv": {"out": 16, "k": 3, "stride": 2, "padding": 1}}, {"bn": {}}, {"relu": {}},
//               {"dwpw": {"out": 32, "stride": 2, "name": "stage1"}}, {"maxpool": {"k": 2}}, {"gap": {}}, {"linear": {}}]}
//
// Layers (options as PyTorch's defaults; every layer also takes "name": its output is a feature map FitNet can use):
//   conv     out, k (3), stride (1), padding (0), groups (1), bias (true)   nn.Conv2d
//   bn       -                                                              nn.BatchNorm2d
//   relu     -                                                              nn.ReLU
//   maxpool  k, stride (k), padding (0)                                     nn.MaxPool2d
//   avgpool  k, stride (k), padding (0)                                     nn.AvgPool2d (count_include_pad)
//   dwpw     out, stride (1)      depthwise 3x3 + BN + ReLU, pointwise 1x1 + BN + ReLU (MobileNet v1)
//   residual out (in), stride (1) a ResNet basic block (1x1 conv + BN shortcut when the shape changes)
//   gap      -                                                              nn.AdaptiveAvgPool2d(1)
//   linear   -  the last layer; its input is flattened, its output is the dataset's class count
import type { Tensor } from '../tensor.js';
import { AdaptiveAvgPool2d, AvgPool2d, BatchNorm2d, Conv2d, DepthwiseSeparable, Linear, MaxPool2d, ReLU, Sequential } from '../nn/layers.js';
import type { Module } from '../nn/module.js';
import { BasicBlock } from './resnet.js';
import { Classifier, type Features } from './classifier.js';

export interface StudentSpec {
  name?: string;
  description?: string;
  layers: Record<string, Record<string, number | boolean | string>>[];
}

/** The dataset side of a model: what the JSON does not say. */
export interface InputShape {
  inChannels: number;
  numClasses: number;
  inputSize: number;
}

type Options = Record<string, number | boolean | string>;

/** One planned layer: what it is, what it maps [C, H, W] to, and how many parameters it holds. */
export interface PlannedLayer {
  index: number;
  type: string;
  options: Options;
  name: string | null;
  input: [number, number, number];
  output: [number, number, number] | [number];
  parameters: number;
}

const LAYER_OPTIONS: Record<string, string[]> = {
  conv: ['out', 'k', 'stride', 'padding', 'groups', 'bias'],
  bn: [],
  relu: [],
  maxpool: ['k', 'stride', 'padding'],
  avgpool: ['k', 'stride', 'padding'],
  dwpw: ['out', 'stride'],
  residual: ['out', 'stride'],
  gap: [],
  linear: [],
};
const REQUIRED: Record<string, string[]> = { conv: ['out'], maxpool: ['k'], avgpool: ['k'], dwpw: ['out'] };

export class StudentSpecError extends Error {}

/** Checks a parsed JSON student and works out every layer's output shape and parameter count (no GPU needed). */
export function planStudent(spec: unknown, input: InputShape, source = 'student'): PlannedLayer[] {
  const fail = (message: string): never => {
    throw new StudentSpecError(`${source}: ${message}`);
  };
  if (typeof spec !== 'object' || spec === null || Array.isArray(spec)) fail('expected an object {"layers": [...]}');
  const top = spec as Record<string, unknown>;
  for (const key of Object.keys(top)) {
    if (!['name', 'description', 'layers'].includes(key)) fail(`unknown key '${key}' (keys: name, description, layers)`);
  }
  if (!Array.isArray(top.layers) || top.layers.length === 0) fail('"layers" must be a non-empty array');
  const layers = top.layers as unknown[];

  let shape: [number, number, number] = [input.inChannels, input.inputSize, input.inputSize];
  const names = new Set<string>();
  const planned: PlannedLayer[] = [];
  layers.forEach((entry, index) => {
    const { type, options, name } = readLayer(entry, index, fail);
    const at = `layer ${index} (${type})`;
    if (planned.at(-1)?.type === 'linear') fail(`${at}: nothing can follow the linear layer (it must be last)`);
    if (name) {
      if (names.has(name)) fail(`${at}: the name '${name}' is used twice`);
      if (type === 'bn' && layerType(layers[index + 1]) === 'relu') {
        fail(`${at}: a bn followed by relu runs as one fused kernel, so its own output never exists; name the relu instead`);
      }
      if (type === 'linear') fail(`${at}: the linear layer's output is the logits; name a feature map before it`);
      names.add(name);
    }
    const { output, parameters } = layerShape(type, options, shape, input.numClasses, (message) => fail(`${at}: ${message}`));
    planned.push({ index, type, options, name, input: shape, output, parameters });
    if (output.length === 3) shape = output;
  });
  if (planned.at(-1)!.type !== 'linear') fail(`the last layer must be {"linear": {}} (the classifier), got '${planned.at(-1)!.type}'`);
  return planned;
}

/** One entry of "layers": its type, its options (checked against the type's), and its feature-map name. */
function readLayer(entry: unknown, index: number, fail: (message: string) => never): { type: string; options: Options; name: string | null } {
  const keys = entry && typeof entry === 'object' && !Array.isArray(entry) ? Object.keys(entry) : [];
  if (keys.length !== 1) fail(`layer ${index}: expected an object with one key, the layer type (e.g. {"conv": {"out": 16}}), got ${JSON.stringify(entry)}`);
  const type = keys[0];
  const at = `layer ${index} (${type})`;
  if (!(type in LAYER_OPTIONS)) fail(`layer ${index}: unknown layer '${type}' (known: ${Object.keys(LAYER_OPTIONS).join(', ')})`);
  const raw = (entry as Record<string, unknown>)[type] ?? {};
  if (typeof raw !== 'object' || Array.isArray(raw)) fail(`${at}: options must be an object, got ${JSON.stringify(raw)}`);
  const options = raw as Options;
  const allowed = [...LAYER_OPTIONS[type], 'name'];
  for (const key of Object.keys(options)) {
    if (!allowed.includes(key)) {
      const hint = type === 'linear' && key === 'out' ? ' (the class count comes from the dataset)' : '';
      fail(`${at}: unknown option '${key}'${hint} (options: ${allowed.join(', ')})`);
    }
  }
  for (const key of REQUIRED[type] ?? []) if (options[key] === undefined) fail(`${at}: '${key}' is required`);
  if (options.bias !== undefined && typeof options.bias !== 'boolean') fail(`${at}: 'bias' must be true or false`);
  const name = options.name;
  if (name !== undefined && (typeof name !== 'string' || !/^[A-Za-z_][\w-]*$/.test(name))) {
    fail(`${at}: 'name' must be a word (letters, digits, _ or -), got ${JSON.stringify(name)}`);
  }
  return { type, options, name: (name as string | undefined) ?? null };
}

/** What a layer maps the [C, H, W] input to, and its parameters (weights, biases, BN affine: torchsummary's count). */
function layerShape(
  type: string,
  options: Options,
  [c, h, w]: [number, number, number],
  numClasses: number,
  fail: (message: string) => never,
): { output: PlannedLayer['output']; parameters: number } {
  const int = (key: string, fallback: number, min = 1): number => {
    const v = options[key] ?? fallback;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min) fail(`'${key}' must be an integer >= ${min}, got ${JSON.stringify(v)}`);
    return v as number;
  };
  const spatial = (k: number, stride: number, padding: number, what: string): [number, number] => {
    // PyTorch's pooling layers refuse this (a window could hold padding only); convolutions allow it.
    if (what === 'window' && padding > k / 2) fail(`padding ${padding} is more than half the window ${k}`);
    const oh = Math.floor((h + 2 * padding - k) / stride) + 1;
    const ow = Math.floor((w + 2 * padding - k) / stride) + 1;
    if (oh < 1 || ow < 1) fail(`the ${h}x${w} map shrinks below 1x1 (${what} ${k}, stride ${stride}, padding ${padding})`);
    return [oh, ow];
  };
  switch (type) {
    case 'conv': {
      const out = int('out', 0);
      const k = int('k', 3);
      const groups = int('groups', 1);
      if (c % groups !== 0) fail(`groups ${groups} does not divide the ${c} input channels`);
      if (out % groups !== 0) fail(`groups ${groups} does not divide the ${out} output channels`);
      const output: [number, number, number] = [out, ...spatial(k, int('stride', 1), int('padding', 0, 0), 'kernel')];
      return { output, parameters: out * (c / groups) * k * k + (options.bias === false ? 0 : out) };
    }
    case 'bn':
      return { output: [c, h, w], parameters: 2 * c };
    case 'relu':
      return { output: [c, h, w], parameters: 0 };
    case 'maxpool':
    case 'avgpool': {
      const k = int('k', 0);
      return { output: [c, ...spatial(k, int('stride', k), int('padding', 0, 0), 'window')], parameters: 0 };
    }
    case 'dwpw': {
      const out = int('out', 0);
      return { output: [out, ...spatial(3, int('stride', 1), 1, 'depthwise kernel')], parameters: c * 9 + 2 * c + c * out + 2 * out };
    }
    case 'residual': {
      const out = int('out', c);
      const stride = int('stride', 1);
      const shortcut = stride !== 1 || c !== out ? c * out + 2 * out : 0;
      return { output: [out, ...spatial(3, stride, 1, 'kernel')], parameters: c * out * 9 + 2 * out + out * out * 9 + 2 * out + shortcut };
    }
    case 'gap':
      return { output: [c, 1, 1], parameters: 0 };
    default: // linear: flattens [C, H, W]
      return { output: [numClasses], parameters: c * h * w * numClasses + numClasses };
  }
}

function layerType(entry: unknown): string | null {
  return entry && typeof entry === 'object' ? (Object.keys(entry)[0] ?? null) : null;
}

function buildLayer(layer: PlannedLayer, numClasses: number): Module {
  const o = layer.options;
  const num = (key: string, fallback: number) => (o[key] as number | undefined) ?? fallback;
  const inC = layer.input[0];
  switch (layer.type) {
    case 'conv':
      return new Conv2d(inC, num('out', 0), num('k', 3), { stride: num('stride', 1), padding: num('padding', 0), groups: num('groups', 1), bias: o.bias !== false });
    case 'bn':
      return new BatchNorm2d(inC);
    case 'relu':
      return new ReLU();
    case 'maxpool':
      return new MaxPool2d(num('k', 0), num('stride', num('k', 0)), num('padding', 0));
    case 'avgpool':
      return new AvgPool2d(num('k', 0), num('stride', num('k', 0)), num('padding', 0));
    case 'dwpw':
      return new DepthwiseSeparable(inC, num('out', 0), num('stride', 1));
    case 'residual':
      return new BasicBlock(inC, num('out', inC), num('stride', 1));
    case 'gap':
      return new AdaptiveAvgPool2d(1);
    default:
      return new Linear(layer.input[0] * layer.input[1] * layer.input[2], numClasses);
  }
}

/**
 * A JSON-designed student. Parameters are named as PyTorch would name nn.Sequential(*layers[:-1]) as `features`
 * and the final nn.Linear as `fc`: `features.0.weight`, ..., `fc.weight`, `fc.bias`.
 */
export class JsonStudent extends Classifier {
  readonly numClasses: number;
  readonly mapNames: string[];
  readonly plan: PlannedLayer[];
  readonly features: Sequential;
  readonly fc: Linear;
  private readonly mapAt = new Map<number, string>();

  constructor(readonly spec: StudentSpec, input: InputShape, source = 'student') {
    super();
    this.plan = planStudent(spec, input, source);
    this.numClasses = input.numClasses;
    const body = this.plan.slice(0, -1);
    this.features = this.child('features', new Sequential(...body.map((l) => buildLayer(l, input.numClasses))));
    this.fc = this.child('fc', buildLayer(this.plan[this.plan.length - 1], input.numClasses) as Linear);
    for (const l of body) if (l.name) this.mapAt.set(l.index, l.name);
    this.mapNames = [...this.mapAt.values()];
  }

  forwardFeatures(x: Tensor): Features {
    const maps: Record<string, Tensor> = {};
    const h = this.features.forwardEach(
      x,
      (i, out) => {
        const name = this.mapAt.get(i);
        if (name) maps[name] = out;
      },
      (i) => this.mapAt.has(i), // only named maps must exist: other BN, ReLU, pool triples fuse
    );
    const embedding = h.reshape([h.shape[0], -1]);
    return { logits: this.fc.forward(embedding), embedding, maps };
  }
}

/** A torchsummary-style table of a planned student: layer, output shape, parameters; then the total vs the budget. */
export function formatPlan(plan: PlannedLayer[], input: InputShape, budget: number): string {
  const rows = [['#', 'layer', 'output shape', 'params', 'map']];
  rows.push(['', 'input', `[-1, ${input.inChannels}, ${input.inputSize}, ${input.inputSize}]`, '0', '']);
  for (const l of plan) {
    const opts = Object.entries(l.options).filter(([k]) => k !== 'name').map(([k, v]) => `${k}=${v}`).join(' ');
    rows.push([String(l.index), opts ? `${l.type} ${opts}` : l.type, `[-1, ${l.output.join(', ')}]`, l.parameters.toLocaleString('en'), l.name ?? '']);
  }
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  const line = (r: string[]) => r.map((v, c) => (c === 0 || c === 3 ? v.padStart(widths[c]) : v.padEnd(widths[c]))).join('  ').trimEnd();
  const rule = '-'.repeat(widths.reduce((a, b) => a + b + 2, -2));
  const total = plan.reduce((n, l) => n + l.parameters, 0);
  const verdict = total <= budget ? `within the budget of ${budget.toLocaleString('en')} (${(budget - total).toLocaleString('en')} to spare)` : `OVER the budget of ${budget.toLocaleString('en')} by ${(total - budget).toLocaleString('en')}`;
  return [line(rows[0]), rule, ...rows.slice(1).map(line), rule.replace(/-/g, '='), `total parameters: ${total.toLocaleString('en')}, ${verdict}`].join('\n');
}
