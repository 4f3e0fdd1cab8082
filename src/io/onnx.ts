// ONNX files: a small graph description (nodes, float32 initializers, inputs and outputs with symbolic dims) written
// as an onnx.ModelProto with the `onnx-proto` package (protobufjs code generated from the official onnx.proto).
import onnxProto from 'onnx-proto';
import { writeFileAtomicSync } from './atomic.js';

const { onnx } = onnxProto;

/** Attribute values say their ONNX type: 1 and 1.0 are the same JavaScript number. */
export type OnnxAttribute = { int: number } | { ints: number[] } | { float: number } | { string: string };

export interface OnnxNode {
  op: string;
  inputs: string[];
  outputs: string[];
  name?: string;
  attributes?: Record<string, OnnxAttribute>;
}

export interface OnnxTensor {
  name: string;
  shape: number[];
  data: Float32Array;
}

/** A float32 graph input or output; a string dim is symbolic (e.g. 'N', a dynamic batch size). */
export interface OnnxValue {
  name: string;
  shape: (number | string)[];
}

export interface OnnxGraph {
  name: string;
  inputs: OnnxValue[];
  outputs: OnnxValue[];
  nodes: OnnxNode[];
  initializers: OnnxTensor[];
}

export interface OnnxModelOptions {
  /** ai.onnx operator set version (13: every op used here in its current form). */
  opset?: number;
  producerVersion?: string;
  docString?: string;
  /** Free-form key/value pairs (metadata_props): class names, preprocessing, provenance. */
  metadata?: Record<string, string>;
}

export const ONNX_OPSET = 13;
const IR_VERSION = 7; // ONNX 1.8's IR: enough for opset 13, read by every current runtime

function attribute(name: string, value: OnnxAttribute): onnxProto.onnx.IAttributeProto {
  const T = onnx.AttributeProto.AttributeType;
  if ('int' in value) return { name, type: T.INT, i: value.int };
  if ('ints' in value) return { name, type: T.INTS, ints: value.ints };
  if ('float' in value) return { name, type: T.FLOAT, f: value.float };
  return { name, type: T.STRING, s: new TextEncoder().encode(value.string) };
}

function valueInfo(v: OnnxValue): onnxProto.onnx.IValueInfoProto {
  return {
    name: v.name,
    type: {
      tensorType: {
        elemType: onnx.TensorProto.DataType.FLOAT,
        shape: { dim: v.shape.map((d) => (typeof d === 'string' ? { dimParam: d } : { dimValue: d })) },
      },
    },
  };
}

function tensorProto(t: OnnxTensor): onnxProto.onnx.ITensorProto {
  const count = t.shape.reduce((a, b) => a * b, 1);
  if (count !== t.data.length) throw new Error(`onnx: initializer '${t.name}' has shape [${t.shape.join(', ')}] (${count} values) but ${t.data.length} values`);
  // raw_data is little-endian, as typed arrays are on every platform Node runs on.
  return { name: t.name, dims: t.shape, dataType: onnx.TensorProto.DataType.FLOAT, rawData: new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength) };
}

/** Serialises the graph as an ONNX ModelProto. */
export function encodeOnnxModel(graph: OnnxGraph, options: OnnxModelOptions = {}): Uint8Array {
  const model = onnx.ModelProto.create({
    irVersion: IR_VERSION,
    producerName: 'wgkd',
    producerVersion: options.producerVersion ?? '',
    docString: options.docString ?? '',
    opsetImport: [{ domain: '', version: options.opset ?? ONNX_OPSET }],
    metadataProps: Object.entries(options.metadata ?? {}).map(([key, value]) => ({ key, value })),
    graph: {
      name: graph.name,
      node: graph.nodes.map((n, i) => ({
        opType: n.op,
        name: n.name ?? `${n.op}_${i}`,
        input: n.inputs,
        output: n.outputs,
        attribute: Object.entries(n.attributes ?? {}).map(([k, v]) => attribute(k, v)),
      })),
      initializer: graph.initializers.map(tensorProto),
      input: graph.inputs.map(valueInfo),
      output: graph.outputs.map(valueInfo),
    },
  });
  return onnx.ModelProto.encode(model).finish();
}

export function writeOnnxModel(path: string, graph: OnnxGraph, options: OnnxModelOptions = {}): void {
  writeFileAtomicSync(path, Buffer.from(encodeOnnxModel(graph, options)));
}

/** The parts of an ONNX file a reader checks: ops in order, opset, metadata_props, input and output shapes. */
export interface OnnxSummary {
  opset: number;
  ops: string[];
  metadata: Record<string, string>;
  inputs: OnnxValue[];
  outputs: OnnxValue[];
}

export function readOnnxSummary(bytes: Uint8Array): OnnxSummary {
  const model = onnx.ModelProto.decode(bytes);
  const shapeOf = (v: onnxProto.onnx.IValueInfoProto): OnnxValue => ({
    name: v.name ?? '',
    shape: (v.type?.tensorType?.shape?.dim ?? []).map((d) => (d.dimParam ? d.dimParam : Number(d.dimValue ?? 0))),
  });
  return {
    opset: Number(model.opsetImport.find((o) => !o.domain)?.version ?? 0),
    ops: (model.graph?.node ?? []).map((n) => n.opType ?? ''),
    metadata: Object.fromEntries(model.metadataProps.map((p) => [p.key ?? '', p.value ?? ''])),
    inputs: (model.graph?.input ?? []).map(shapeOf),
    outputs: (model.graph?.output ?? []).map(shapeOf),
  };
}
