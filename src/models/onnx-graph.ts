// A trained classifier as a standard ONNX graph (src/io/onnx.ts writes the file). The graph takes pixels / 255 as
// float32 NCHW at the training size, applies the dataset's normalisation itself, and runs the model in eval mode:
// Conv (group = channels for depthwise), BatchNormalization (running statistics), Relu, MaxPool, AveragePool,
// GlobalAveragePool, Add (residual blocks), Flatten and Gemm. Initializers keep the model's PyTorch names.
import { AdaptiveAvgPool2d, AvgPool2d, BatchNorm2d, Conv2d, Flatten, Linear, MaxPool2d, ReLU, Sequential } from '../nn/layers.js';
import type { Module, StateDict } from '../nn/module.js';
import { writeOnnxModel, type OnnxAttribute, type OnnxGraph, type OnnxNode, type OnnxTensor } from '../io/onnx.js';
import type { Classifier } from './classifier.js';
import { Dwpw } from './dwpw.js';
import { Hw13Sample } from './hw13.js';
import { JsonStudent } from './json-student.js';
import { BasicBlock, ResNet } from './resnet.js';

export interface OnnxExportInput {
  channels: number;
  height: number;
  width: number;
  /** The dataset's per-channel normalisation of x / 255, applied inside the graph. */
  mean: readonly number[];
  std: readonly number[];
}

const pair = (v: number | [number, number]): [number, number] => (typeof v === 'number' ? [v, v] : v);
const ints = (v: number[]): OnnxAttribute => ({ ints: v });

class GraphBuilder {
  readonly nodes: OnnxNode[] = [];
  readonly initializers: OnnxTensor[] = [];
  private counter = 0;
  constructor(private readonly state: StateDict, private readonly names: Map<Module, string>) {}

  /** A parameter or buffer of `m` as an initializer, under its state-dict name. */
  weight(m: Module, key: string): string {
    const name = `${this.names.get(m)}.${key}`;
    const entry = this.state[name];
    if (!entry) throw new Error(`onnx export: the model has no tensor '${name}'`);
    if (!this.initializers.some((t) => t.name === name)) this.initializers.push({ name, shape: entry.shape, data: entry.data });
    return name;
  }
  constant(name: string, shape: number[], values: readonly number[]): string {
    this.initializers.push({ name, shape, data: Float32Array.from(values) });
    return name;
  }
  node(op: string, inputs: string[], attributes: Record<string, OnnxAttribute> = {}, output = `${op.toLowerCase()}_${this.counter++}`): string {
    this.nodes.push({ op, inputs, outputs: [output], attributes, name: output });
    return output;
  }

  /** Emits `m` applied to the value `x`; returns the name of its output. */
  module(m: Module, x: string): string {
    if (m instanceof Conv2d) {
      const { stride = 1, padding = 0, dilation = 1, groups = 1 } = m.options;
      const [ph, pw] = pair(padding);
      const inputs = [x, this.weight(m, 'weight')];
      if (m.bias) inputs.push(this.weight(m, 'bias'));
      return this.node('Conv', inputs, {
        kernel_shape: ints(pair(m.kernelSize)),
        strides: ints(pair(stride)),
        pads: ints([ph, pw, ph, pw]),
        dilations: ints(pair(dilation)),
        group: { int: groups },
      });
    }
    if (m instanceof BatchNorm2d) {
      const inputs = [x, ...['weight', 'bias', 'running_mean', 'running_var'].map((k) => this.weight(m, k))];
      return this.node('BatchNormalization', inputs, { epsilon: { float: m.options.eps ?? 1e-5 } });
    }
    if (m instanceof ReLU) return this.node('Relu', [x]);
    if (m instanceof MaxPool2d || m instanceof AvgPool2d) {
      const [ph, pw] = pair(m.padding);
      const attributes: Record<string, OnnxAttribute> = {
        kernel_shape: ints(pair(m.kernelSize)),
        strides: ints(pair(m.stride ?? m.kernelSize)),
        pads: ints([ph, pw, ph, pw]),
      };
      if (m instanceof AvgPool2d) attributes.count_include_pad = { int: 1 }; // F.avg_pool2d's default, as wgkd's kernel
      return this.node(m instanceof MaxPool2d ? 'MaxPool' : 'AveragePool', [x], attributes);
    }
    if (m instanceof AdaptiveAvgPool2d) {
      const [oh, ow] = pair(m.outputSize);
      if (oh !== 1 || ow !== 1) throw new Error(`onnx export: AdaptiveAvgPool2d(${oh}x${ow}) has no standard ONNX op (only output size 1: GlobalAveragePool)`);
      return this.node('GlobalAveragePool', [x]);
    }
    if (m instanceof Flatten) return this.node('Flatten', [x], { axis: { int: 1 } });
    if (m instanceof Linear) {
      const inputs = [x, this.weight(m, 'weight')];
      if (m.bias) inputs.push(this.weight(m, 'bias'));
      return this.node('Gemm', inputs, { transB: { int: 1 } });
    }
    if (m instanceof BasicBlock) {
      const h = this.module(m.bn2, this.module(m.conv2, this.node('Relu', [this.module(m.bn1, this.module(m.conv1, x))])));
      const shortcut = m.downsample ? this.module(m.downsample, x) : x;
      return this.node('Relu', [this.node('Add', [h, shortcut])]);
    }
    if (m instanceof Sequential) return m.layers.reduce((h, layer) => this.module(layer, h), x);
    throw new Error(`onnx export: no ONNX form for the layer ${this.names.get(m) || '(root)'} (${m.constructor.name})`);
  }
}

/** The classifier's forward pass as a list of modules (and 'flatten' between the pooled map and the linear head). */
function forwardOrder(model: Classifier): (Module | 'flatten' | 'relu')[] {
  if (model instanceof Dwpw) return [model.stem, ...model.stages, model.pool, 'flatten', model.fc];
  if (model instanceof Hw13Sample) return [model.cnn, model.pool, 'flatten', model.fc];
  if (model instanceof JsonStudent) return [model.features, 'flatten', model.fc];
  if (model instanceof ResNet) {
    return [model.conv1, model.bn1, 'relu', ...(model.maxpool ? [model.maxpool] : []), ...model.layers, model.avgpool, 'flatten', model.fc];
  }
  throw new Error(`onnx export: ${model.constructor.name} is not a model wgkd can export (built-in models and JSON students)`);
}

/**
 * The model as an ONNX graph: input `pixels` [N, C, H, W] (x / 255, float32; N is dynamic), output `logits` [N, K].
 * `state` is the model's state dict (await model.stateDict()).
 */
export function classifierToOnnx(model: Classifier, state: StateDict, input: OnnxExportInput, name = 'wgkd'): OnnxGraph {
  const names = new Map(model.namedModules().map(([n, m]) => [m, n] as [Module, string]));
  const g = new GraphBuilder(state, names);
  const { channels: c, height, width } = input;
  if (input.mean.length !== c || input.std.length !== c) throw new Error(`onnx export: ${c} channels but ${input.mean.length} means and ${input.std.length} stds`);
  const centred = g.node('Sub', ['pixels', g.constant('normalise.mean', [1, c, 1, 1], input.mean)]);
  let h = g.node('Div', [centred, g.constant('normalise.std', [1, c, 1, 1], input.std)], {}, 'normalised');
  for (const step of forwardOrder(model)) {
    if (step === 'flatten') h = g.node('Flatten', [h], { axis: { int: 1 } });
    else if (step === 'relu') h = g.node('Relu', [h]);
    else h = g.module(step, h);
  }
  // The last node's output is renamed to the graph output.
  const last = g.nodes[g.nodes.length - 1];
  last.outputs = ['logits'];
  return {
    name,
    inputs: [{ name: 'pixels', shape: ['N', c, height, width] }],
    outputs: [{ name: 'logits', shape: ['N', model.numClasses] }],
    nodes: g.nodes,
    initializers: g.initializers,
  };
}

export interface OnnxExportOptions extends OnnxExportInput {
  classNames: readonly string[];
  /** Recorded in metadata_props: the model's name or file, the dataset, the producing wgkd version. */
  modelName: string;
  dataset: string;
  producerVersion?: string;
}

/** Writes `model` (in eval mode) as an ONNX file; class names and the preprocessing go into metadata_props. */
export async function exportOnnx(model: Classifier, path: string, options: OnnxExportOptions): Promise<OnnxGraph> {
  if (options.classNames.length !== model.numClasses) throw new Error(`onnx export: ${options.classNames.length} class names for a model with ${model.numClasses} classes`);
  const graph = classifierToOnnx(model, await model.stateDict(), options, options.modelName);
  const preprocessing = {
    input: 'pixels',
    layout: 'NCHW',
    dtype: 'float32',
    shape: ['N', options.channels, options.height, options.width],
    scale: 'pixel / 255 (values in [0, 1])',
    normalisation: { mean: options.mean, std: options.std, applied: 'inside the graph: (x - mean) / std' },
  };
  writeOnnxModel(path, graph, {
    producerVersion: options.producerVersion,
    docString: `${options.modelName} trained by wgkd on ${options.dataset}`,
    metadata: {
      class_names: JSON.stringify(options.classNames),
      preprocessing: JSON.stringify(preprocessing),
      model: options.modelName,
      dataset: options.dataset,
    },
  });
  return graph;
}
