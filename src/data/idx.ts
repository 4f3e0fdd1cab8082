// IDX files (the MNIST / Fashion-MNIST container), gzipped or not. Layout: two zero bytes, a type code, the number
// of dims, each dim as a big-endian uint32, then the values big-endian, row-major.
import * as fs from 'node:fs';
import { gunzipSync, gzipSync } from 'node:zlib';
import { writeFileAtomicSync } from '../io/atomic.js';

export type IdxDType = 'u8' | 'i8' | 'i16' | 'i32' | 'f32' | 'f64';
export type IdxValues = Uint8Array | Int8Array | Int16Array | Int32Array | Float32Array | Float64Array;

export interface IdxArray {
  dtype: IdxDType;
  dims: number[];
  data: IdxValues;
}

const TYPE_CODES: Record<number, { dtype: IdxDType; bytes: number }> = {
  0x08: { dtype: 'u8', bytes: 1 },
  0x09: { dtype: 'i8', bytes: 1 },
  0x0b: { dtype: 'i16', bytes: 2 },
  0x0c: { dtype: 'i32', bytes: 4 },
  0x0d: { dtype: 'f32', bytes: 4 },
  0x0e: { dtype: 'f64', bytes: 8 },
};

/** Parses IDX bytes (already gunzipped); `source` names the file in errors. */
export function parseIdx(bytes: Uint8Array, source: string): IdxArray {
  const fail = (problem: string): never => {
    throw new Error(`IDX file ${source}: ${problem}`);
  };
  if (bytes.length < 4) fail(`only ${bytes.length} bytes, too short for the 4-byte magic number`);
  if (bytes[0] !== 0 || bytes[1] !== 0) fail(`bad magic number 0x${Buffer.from(bytes.subarray(0, 4)).toString('hex')} (must start with 0x0000)`);
  const type = TYPE_CODES[bytes[2]];
  if (!type) fail(`unknown type code 0x${bytes[2].toString(16).padStart(2, '0')} (known: 08 u8, 09 i8, 0b i16, 0c i32, 0d f32, 0e f64)`);
  const rank = bytes[3];
  if (rank === 0) fail('zero dimensions');
  const headerSize = 4 + 4 * rank;
  if (bytes.length < headerSize) fail(`${bytes.length} bytes, too short for ${rank} dimension sizes`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const dims = Array.from({ length: rank }, (_, i) => view.getUint32(4 + 4 * i, false));
  const count = dims.reduce((n, d) => n * d, 1);
  const expected = headerSize + count * type.bytes;
  if (bytes.length !== expected) {
    fail(`${bytes.length} bytes but dims [${dims.join(', ')}] of ${type.dtype} need ${expected} (${bytes.length < expected ? 'truncated' : 'trailing bytes'})`);
  }
  const body = headerSize;
  let data: IdxValues;
  switch (type.dtype) {
    case 'u8': // a plain view of the payload, no copy (47 MB for Fashion-MNIST's training images)
      data = new Uint8Array(bytes.buffer, bytes.byteOffset + body, count);
      break;
    case 'i8':
      data = new Int8Array(bytes.buffer, bytes.byteOffset + body, count);
      break;
    case 'i16':
      data = Int16Array.from({ length: count }, (_, i) => view.getInt16(body + 2 * i, false));
      break;
    case 'i32':
      data = Int32Array.from({ length: count }, (_, i) => view.getInt32(body + 4 * i, false));
      break;
    case 'f32':
      data = Float32Array.from({ length: count }, (_, i) => view.getFloat32(body + 4 * i, false));
      break;
    case 'f64':
      data = Float64Array.from({ length: count }, (_, i) => view.getFloat64(body + 8 * i, false));
      break;
  }
  return { dtype: type.dtype, dims, data };
}

/** Reads an IDX file; gzip is detected from the content (magic 1f 8b), not the name. */
export function readIdx(path: string): IdxArray {
  let bytes: Uint8Array = fs.readFileSync(path);
  if (bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b) {
    try {
      bytes = gunzipSync(bytes);
    } catch (err) {
      throw new Error(`IDX file ${path}: gzip data is corrupt (${(err as Error).message})`);
    }
  }
  return parseIdx(bytes, path);
}

/** Encodes a uint8 array as IDX (type 0x08). */
export function encodeIdx(dims: readonly number[], data: Uint8Array): Uint8Array {
  const count = dims.reduce((n, d) => n * d, 1);
  if (data.length !== count) throw new Error(`encodeIdx: ${data.length} values for dims [${dims.join(', ')}]`);
  const header = Buffer.alloc(4 + 4 * dims.length);
  header[2] = 0x08;
  header[3] = dims.length;
  dims.forEach((d, i) => header.writeUInt32BE(d, 4 + 4 * i));
  return Buffer.concat([header, data]);
}

export function writeIdx(path: string, dims: readonly number[], data: Uint8Array, options: { gzip?: boolean } = {}): void {
  const bytes = encodeIdx(dims, data);
  writeFileAtomicSync(path, options.gzip ? gzipSync(bytes) : bytes);
}
