// safetensors, read and written by hand (no dependency). Layout: an 8-byte little-endian header length L, then
// L bytes of UTF-8 JSON {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {key: string}}, then
// the data area: raw little-endian tensors, offsets relative to its start, packed with no holes.
// The reader only reads the header on open; tensors (or rows of them) are read on demand at file offsets, so
// multi-gigabyte files cost nothing until used.
import * as fs from 'node:fs';
import { AtomicFile } from '../io/atomic.js';

export type SafetensorsDType = 'F32' | 'F16' | 'I32' | 'I64' | 'U8';

/** Bytes per element of each supported dtype. */
export const DTYPE_BYTES: Readonly<Record<SafetensorsDType, number>> = { F32: 4, F16: 2, I32: 4, I64: 8, U8: 1 };

/** Headers beyond this are refused as corrupt (the reference implementation uses the same limit). */
export const MAX_HEADER_BYTES = 100_000_000;

/** What a read returns: F32 and F16 as Float32Array, I32 and I64 as Int32Array, U8 as Uint8Array. */
export type TensorValues = Float32Array | Int32Array | Uint8Array;

export interface TensorInfo {
  readonly name: string;
  readonly dtype: SafetensorsDType;
  readonly shape: readonly number[];
  readonly numel: number;
  /** Byte offsets relative to the start of the data area. */
  readonly begin: number;
  readonly end: number;
}

export class SafetensorsError extends Error {
  constructor(
    readonly file: string,
    problem: string,
  ) {
    super(`safetensors ${file}: ${problem}`);
    this.name = 'SafetensorsError';
  }
}

const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function isDType(s: unknown): s is SafetensorsDType {
  return typeof s === 'string' && Object.prototype.hasOwnProperty.call(DTYPE_BYTES, s);
}

function product(shape: readonly number[]): number {
  return shape.reduce((n, d) => n * d, 1);
}

function isCount(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/** In-place byte swap of `bytes` in groups of `width` (only used on big-endian hosts). */
function swapBytes(bytes: Uint8Array, width: number): void {
  if (width === 1) return;
  for (let i = 0; i < bytes.length; i += width) bytes.subarray(i, i + width).reverse();
}

// ---- float16 <-> float32 ---------------------------------------------------------------------------------------

let halfTable: Float32Array | null = null;

function halfBitsToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exponent = (h >> 10) & 0x1f;
  const mantissa = h & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 31) return mantissa ? NaN : sign * Infinity;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

/** float16 bits -> float32, through a 65,536-entry table built on first use (256 KiB). */
export function halfToFloat32(bits: Uint16Array, out: Float32Array = new Float32Array(bits.length), outOffset = 0): Float32Array {
  if (!halfTable) {
    halfTable = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) halfTable[h] = halfBitsToFloat(h);
  }
  const table = halfTable;
  for (let i = 0; i < bits.length; i++) out[outOffset + i] = table[bits[i]];
  return out;
}

const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

/** One float -> float16 bits, rounding to nearest even; overflow gives ±inf, NaN stays NaN. */
export function floatToHalfBits(value: number): number {
  scratchF32[0] = value;
  const x = scratchU32[0];
  const sign = (x >>> 16) & 0x8000;
  const exponent = (x >>> 23) & 0xff;
  const mantissa = x & 0x7fffff;
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa ? 0x200 : 0);
  const e = exponent - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    // Half subnormal (or zero): value = m * 2^-24 with m = (1.mantissa) * 2^(e - 14 + 10)... i.e. shift right by 14 - e.
    if (e < -10) return sign;
    const full = mantissa | 0x800000;
    const shift = 14 - e;
    let m = full >>> shift;
    const rest = full & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rest > halfway || (rest === halfway && m & 1)) m += 1;
    return sign | m;
  }
  let half = sign | (e << 10) | (mantissa >>> 13);
  const rest = mantissa & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && half & 1)) half += 1; // a carry into the exponent is still correct
  return half;
}

export function float32ToHalf(values: ArrayLike<number>): Uint16Array {
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = floatToHalfBits(values[i]);
  return out;
}

// ---- reader ------------------------------------------------------------------------------------------------

function outputKind(dtype: SafetensorsDType): 'f32' | 'i32' | 'u8' {
  return dtype === 'F32' || dtype === 'F16' ? 'f32' : dtype === 'U8' ? 'u8' : 'i32';
}

function allocateValues(dtype: SafetensorsDType, n: number): TensorValues {
  const kind = outputKind(dtype);
  return kind === 'f32' ? new Float32Array(n) : kind === 'i32' ? new Int32Array(n) : new Uint8Array(n);
}

/** An open safetensors file: header parsed and checked, data read on demand. close() when done. */
export class SafetensorsFile {
  readonly metadata: Readonly<Record<string, string>>;
  /** Byte position of the data area in the file. */
  readonly dataStart: number;
  readonly dataSize: number;
  private readonly infos: Map<string, TensorInfo>;
  private fd: number | null;
  private scratch = new Uint8Array(0);

  private constructor(
    readonly path: string,
    fd: number,
    header: { metadata: Record<string, string>; infos: Map<string, TensorInfo>; dataStart: number; dataSize: number },
  ) {
    this.fd = fd;
    this.metadata = header.metadata;
    this.infos = header.infos;
    this.dataStart = header.dataStart;
    this.dataSize = header.dataSize;
  }

  /** Opens `path` and reads and validates its header only. Every problem is a SafetensorsError naming the file. */
  static open(path: string): SafetensorsFile {
    let fd: number;
    try {
      fd = fs.openSync(path, 'r');
    } catch (err) {
      throw new SafetensorsError(path, `cannot open: ${(err as Error).message}`);
    }
    try {
      return new SafetensorsFile(path, fd, parseHeader(path, fd));
    } catch (err) {
      fs.closeSync(fd);
      throw err;
    }
  }

  /** Tensor names in data order. */
  get names(): string[] {
    return [...this.infos.keys()];
  }

  has(name: string): boolean {
    return this.infos.has(name);
  }

  info(name: string): TensorInfo {
    const info = this.infos.get(name);
    if (!info) {
      throw new SafetensorsError(this.path, `no tensor '${name}' (tensors: ${this.names.join(', ') || 'none'})`);
    }
    return info;
  }

  /** The whole tensor, converted: F16 -> Float32Array, I64 -> Int32Array (range-checked). */
  read(name: string): TensorValues {
    const info = this.info(name);
    const out = allocateValues(info.dtype, info.numel);
    this.readElementsInto(name, 0, info.numel, out, 0);
    return out;
  }

  /** Rows [start, start + count) of the leading axis (a row = the product of the other dims). */
  readRows(name: string, start: number, count: number): TensorValues {
    const info = this.info(name);
    if (info.shape.length === 0) throw new SafetensorsError(this.path, `readRows('${name}'): tensor is a scalar`);
    const rows = info.shape[0];
    if (!isCount(start) || !isCount(count) || start + count > rows) {
      throw new SafetensorsError(this.path, `readRows('${name}', ${start}, ${count}): outside rows [0, ${rows})`);
    }
    const rowSize = product(info.shape.slice(1));
    const out = allocateValues(info.dtype, count * rowSize);
    this.readElementsInto(name, start * rowSize, count * rowSize, out, 0);
    return out;
  }

  /**
   * Reads elements [elemStart, elemStart + elemCount) of the flattened tensor into `out` at `outOffset`.
   * `out` must be the type read() would return (Float32Array for F32/F16, Int32Array for I32/I64, Uint8Array for U8).
   */
  readElementsInto(name: string, elemStart: number, elemCount: number, out: TensorValues, outOffset = 0): void {
    const info = this.info(name);
    if (!isCount(elemStart) || !isCount(elemCount) || elemStart + elemCount > info.numel) {
      throw new SafetensorsError(this.path, `read of '${name}' elements [${elemStart}, ${elemStart + elemCount}) outside [0, ${info.numel})`);
    }
    const kind = outputKind(info.dtype);
    const okType = kind === 'f32' ? out instanceof Float32Array : kind === 'i32' ? out instanceof Int32Array : out instanceof Uint8Array;
    if (!okType) throw new SafetensorsError(this.path, `'${name}' is ${info.dtype}; wrong output array type ${out.constructor.name}`);
    if (outOffset < 0 || outOffset + elemCount > out.length) {
      throw new SafetensorsError(this.path, `output array too small for ${elemCount} elements of '${name}' at offset ${outOffset}`);
    }
    const width = DTYPE_BYTES[info.dtype];
    const position = this.dataStart + info.begin + elemStart * width;
    const byteLength = elemCount * width;
    if (info.dtype === 'F32' || info.dtype === 'I32' || info.dtype === 'U8') {
      // Same representation: read straight into the caller's array.
      const target = new Uint8Array(out.buffer, out.byteOffset + outOffset * width, byteLength);
      this.readBytes(target, position, name);
      if (!LITTLE_ENDIAN_HOST) swapBytes(target, width);
      return;
    }
    const raw = this.scratchBytes(byteLength);
    this.readBytes(raw, position, name);
    if (!LITTLE_ENDIAN_HOST) swapBytes(raw, width);
    if (info.dtype === 'F16') {
      halfToFloat32(new Uint16Array(raw.buffer, 0, elemCount), out as Float32Array, outOffset);
      return;
    }
    // I64 -> I32: the value fits iff the high word is the sign extension of the low word.
    const words = new Int32Array(raw.buffer, 0, elemCount * 2);
    const target = out as Int32Array;
    for (let i = 0; i < elemCount; i++) {
      const lo = words[2 * i];
      const hi = words[2 * i + 1];
      if (hi !== lo >> 31) {
        const value = (BigInt(hi) << 32n) | BigInt(lo >>> 0);
        throw new SafetensorsError(this.path, `'${name}' element ${elemStart + i} = ${value} does not fit in int32`);
      }
      target[outOffset + i] = lo;
    }
  }

  close(): void {
    if (this.fd !== null) fs.closeSync(this.fd);
    this.fd = null;
  }

  private scratchBytes(n: number): Uint8Array {
    if (this.scratch.byteLength < n) this.scratch = new Uint8Array(Math.max(n, 2 * this.scratch.byteLength));
    return this.scratch.subarray(0, n);
  }

  private readBytes(target: Uint8Array, position: number, name: string): void {
    if (this.fd === null) throw new SafetensorsError(this.path, `read of '${name}' after close()`);
    const piece = 1 << 30;
    let done = 0;
    while (done < target.byteLength) {
      const n = fs.readSync(this.fd, target, done, Math.min(piece, target.byteLength - done), position + done);
      if (n <= 0) throw new SafetensorsError(this.path, `file ended while reading '${name}' (was it truncated after opening?)`);
      done += n;
    }
  }
}

function parseHeader(file: string, fd: number): {
  metadata: Record<string, string>;
  infos: Map<string, TensorInfo>;
  dataStart: number;
  dataSize: number;
} {
  const fail = (problem: string): never => {
    throw new SafetensorsError(file, problem);
  };
  const fileSize = fs.fstatSync(fd).size;
  if (fileSize < 8) fail(`file is ${fileSize} bytes, too short for the 8-byte header length`);
  const lengthBytes = Buffer.alloc(8);
  fs.readSync(fd, lengthBytes, 0, 8, 0);
  const headerLength = lengthBytes.readBigUInt64LE(0);
  if (headerLength > BigInt(MAX_HEADER_BYTES)) fail(`header length ${headerLength} is absurd (limit ${MAX_HEADER_BYTES} bytes)`);
  const length = Number(headerLength);
  if (length > fileSize - 8) fail(`header length ${length} runs past the end of the file (${fileSize} bytes)`);
  const headerBytes = Buffer.alloc(length);
  if (length > 0 && fs.readSync(fd, headerBytes, 0, length, 8) !== length) fail('could not read the header');

  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(headerBytes);
  } catch {
    return fail('header is not valid UTF-8');
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    return fail(`header is not valid JSON (${(err as Error).message})`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) fail('header is not a JSON object');

  const dataStart = 8 + length;
  const dataSize = fileSize - dataStart;
  const metadata: Record<string, string> = Object.create(null); // keys from the file: '__proto__' stays a key
  const infos: TensorInfo[] = [];
  for (const [name, entry] of Object.entries(json as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) fail('__metadata__ is not an object');
      for (const [key, value] of Object.entries(entry as Record<string, unknown>)) {
        if (typeof value !== 'string') fail(`__metadata__ value for '${key}' is not a string (${JSON.stringify(value)})`);
        metadata[key] = value as string;
      }
      continue;
    }
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) fail(`tensor '${name}': entry is not an object`);
    const { dtype, shape, data_offsets: offsets } = entry as Record<string, unknown>;
    if (!isDType(dtype)) fail(`tensor '${name}': unknown dtype ${JSON.stringify(dtype)} (supported: ${Object.keys(DTYPE_BYTES).join(', ')})`);
    if (!Array.isArray(shape) || !shape.every(isCount)) fail(`tensor '${name}': shape ${JSON.stringify(shape)} is not a list of non-negative integers`);
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isCount)) {
      fail(`tensor '${name}': data_offsets ${JSON.stringify(offsets)} is not [begin, end] with non-negative integers`);
    }
    const [begin, end] = offsets as number[];
    const dims = shape as number[];
    const type = dtype as SafetensorsDType;
    if (begin > end) fail(`tensor '${name}': data_offsets [${begin}, ${end}] are out of order (begin > end)`);
    if (end > dataSize) fail(`tensor '${name}': data_offsets [${begin}, ${end}] lie outside the data area (${dataSize} bytes)`);
    const numel = product(dims);
    const expected = numel * DTYPE_BYTES[type];
    if (!Number.isSafeInteger(expected) || end - begin !== expected) {
      fail(`tensor '${name}': holds ${end - begin} bytes but ${type} [${dims.join(', ')}] needs ${expected}`);
    }
    infos.push({ name, dtype: type, shape: dims, numel, begin, end });
  }

  // The data area must be tiled exactly: sorted by offset, each tensor starts where the previous ended.
  infos.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let cursor = 0;
  let previous: TensorInfo | null = null;
  for (const info of infos) {
    if (info.begin < cursor && previous) {
      fail(`tensors '${previous.name}' [${previous.begin}, ${previous.end}] and '${info.name}' [${info.begin}, ${info.end}] overlap`);
    }
    if (info.begin > cursor) fail(`hole of ${info.begin - cursor} bytes in the data area before tensor '${info.name}'`);
    cursor = info.end;
    previous = info;
  }
  if (cursor !== dataSize) fail(`${dataSize - cursor} bytes after the last tensor are not described by the header`);
  return { metadata, infos: new Map(infos.map((i) => [i.name, i])), dataStart, dataSize };
}

/** Reads a whole file (convenience for small files; large ones: SafetensorsFile.open and read what you need). */
export function readSafetensors(path: string): {
  metadata: Record<string, string>;
  tensors: Record<string, { dtype: SafetensorsDType; shape: number[]; data: TensorValues }>;
} {
  const file = SafetensorsFile.open(path);
  try {
    const tensors: Record<string, { dtype: SafetensorsDType; shape: number[]; data: TensorValues }> = Object.create(null);
    for (const name of file.names) {
      const info = file.info(name);
      tensors[name] = { dtype: info.dtype, shape: [...info.shape], data: file.read(name) };
    }
    return { metadata: { ...file.metadata }, tensors };
  } finally {
    file.close();
  }
}

// ---- writer ------------------------------------------------------------------------------------------------

export interface TensorSpec {
  dtype: SafetensorsDType;
  shape: readonly number[];
}

/**
 * Data accepted for each dtype: F32 Float32Array; F16 Float32Array (rounded to nearest even) or Uint16Array (raw
 * bits); I32 Int32Array; I64 Int32Array (sign-extended) or BigInt64Array; U8 Uint8Array.
 */
export type WritableValues = Float32Array | Uint16Array | Int32Array | BigInt64Array | Uint8Array;

export interface TensorToWrite {
  /** Default from the array type: Float32Array F32, Int32Array I32, Uint8Array U8, BigInt64Array I64. */
  dtype?: SafetensorsDType;
  shape: readonly number[];
  data: WritableValues;
}

function encode(file: string, name: string, dtype: SafetensorsDType, data: WritableValues): Uint8Array {
  const bad = (): never => {
    throw new SafetensorsError(file, `tensor '${name}': cannot write ${data.constructor.name} as ${dtype}`);
  };
  let bytes: Uint8Array;
  switch (dtype) {
    case 'F32':
      if (!(data instanceof Float32Array)) bad();
      bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
      break;
    case 'F16': {
      const bits = data instanceof Uint16Array ? data : data instanceof Float32Array ? float32ToHalf(data) : bad();
      bytes = new Uint8Array(bits.buffer, bits.byteOffset, bits.byteLength);
      break;
    }
    case 'I32':
      if (!(data instanceof Int32Array)) bad();
      bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
      break;
    case 'I64': {
      let wide: BigInt64Array;
      if (data instanceof BigInt64Array) wide = data;
      else if (data instanceof Int32Array) wide = BigInt64Array.from(data, (v) => BigInt(v));
      else return bad();
      bytes = new Uint8Array(wide.buffer, wide.byteOffset, wide.byteLength);
      break;
    }
    case 'U8':
      if (!(data instanceof Uint8Array)) bad();
      bytes = data as Uint8Array;
      break;
  }
  if (!LITTLE_ENDIAN_HOST) {
    bytes = bytes.slice();
    swapBytes(bytes, DTYPE_BYTES[dtype]);
  }
  return bytes;
}

function defaultDType(file: string, name: string, data: WritableValues): SafetensorsDType {
  if (data instanceof Float32Array) return 'F32';
  if (data instanceof Int32Array) return 'I32';
  if (data instanceof Uint8Array) return 'U8';
  if (data instanceof BigInt64Array) return 'I64';
  throw new SafetensorsError(file, `tensor '${name}': give a dtype for ${data.constructor.name} data`);
}

/**
 * Writes a safetensors file piece by piece at known offsets (for outputs too large to hold in memory): the layout
 * is fixed by the specs given to create(); every element must be written exactly once before finish(), which
 * renames the temporary file into place atomically. abort() (or an exception) leaves no file behind.
 */
export class SafetensorsWriter {
  private readonly specs = new Map<string, TensorSpec & { begin: number; numel: number }>();
  private readonly written = new Map<string, [number, number][]>();
  private readonly file: AtomicFile;
  private readonly dataStart: number;

  private constructor(readonly path: string, specs: Record<string, TensorSpec>, metadata: Record<string, string>) {
    const header: Record<string, unknown> = {};
    if (Object.keys(metadata).length > 0) {
      for (const [k, v] of Object.entries(metadata)) {
        if (typeof v !== 'string') throw new SafetensorsError(path, `metadata '${k}' must be a string, got ${typeof v}`);
      }
      header.__metadata__ = metadata;
    }
    let offset = 0;
    for (const [name, spec] of Object.entries(specs)) {
      if (name === '__metadata__') throw new SafetensorsError(path, `'__metadata__' is reserved and cannot name a tensor`);
      if (!isDType(spec.dtype)) throw new SafetensorsError(path, `tensor '${name}': unknown dtype ${JSON.stringify(spec.dtype)}`);
      if (!spec.shape.every(isCount)) throw new SafetensorsError(path, `tensor '${name}': bad shape ${JSON.stringify(spec.shape)}`);
      const numel = product(spec.shape);
      const end = offset + numel * DTYPE_BYTES[spec.dtype];
      header[name] = { dtype: spec.dtype, shape: [...spec.shape], data_offsets: [offset, end] };
      this.specs.set(name, { dtype: spec.dtype, shape: [...spec.shape], begin: offset, numel });
      this.written.set(name, []);
      offset = end;
    }
    // Pad the JSON with spaces so the data area starts 8-byte aligned (as the reference writer does).
    let json = JSON.stringify(header);
    json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
    const headerBytes = Buffer.from(json, 'utf8');
    this.dataStart = 8 + headerBytes.byteLength;
    const lengthBytes = Buffer.alloc(8);
    lengthBytes.writeBigUInt64LE(BigInt(headerBytes.byteLength));
    this.file = AtomicFile.openSync(path);
    try {
      this.file.write(lengthBytes, 0);
      this.file.write(headerBytes, 8);
      fs.ftruncateSync(this.file.fd, this.dataStart + offset);
    } catch (err) {
      this.file.abort();
      throw err;
    }
  }

  static create(path: string, specs: Record<string, TensorSpec>, metadata: Record<string, string> = {}): SafetensorsWriter {
    return new SafetensorsWriter(path, specs, metadata);
  }

  /** Writes `data` as elements [elemStart, elemStart + data.length) of the flattened tensor. */
  writeElements(name: string, elemStart: number, data: WritableValues): void {
    const spec = this.specs.get(name);
    if (!spec) throw new SafetensorsError(this.path, `no tensor '${name}' in the layout (${[...this.specs.keys()].join(', ')})`);
    if (!isCount(elemStart) || elemStart + data.length > spec.numel) {
      throw new SafetensorsError(this.path, `write of '${name}' elements [${elemStart}, ${elemStart + data.length}) outside [0, ${spec.numel})`);
    }
    if (data.length === 0) return;
    const bytes = encode(this.path, name, spec.dtype, data);
    this.file.write(bytes, this.dataStart + spec.begin + elemStart * DTYPE_BYTES[spec.dtype]);
    this.written.get(name)!.push([elemStart, elemStart + data.length]);
  }

  /** Writes rows [rowStart, rowStart + n) of the leading axis. */
  writeRows(name: string, rowStart: number, data: WritableValues): void {
    const spec = this.specs.get(name);
    if (!spec) throw new SafetensorsError(this.path, `no tensor '${name}' in the layout`);
    const rowSize = product(spec.shape.slice(1));
    if (rowSize > 0 && data.length % rowSize !== 0) {
      throw new SafetensorsError(this.path, `write of '${name}': ${data.length} values is not a whole number of rows of ${rowSize}`);
    }
    this.writeElements(name, rowStart * rowSize, data);
  }

  /** Checks every element was written exactly once, then fsyncs and renames into place. */
  finish(): void {
    try {
      for (const [name, ranges] of this.written) {
        const numel = this.specs.get(name)!.numel;
        ranges.sort((a, b) => a[0] - b[0]);
        let cursor = 0;
        for (const [begin, end] of ranges) {
          if (begin < cursor) throw new SafetensorsError(this.path, `tensor '${name}': elements [${begin}, ${Math.min(end, cursor)}) written twice`);
          if (begin > cursor) break;
          cursor = end;
        }
        if (cursor !== numel) throw new SafetensorsError(this.path, `tensor '${name}': elements from ${cursor} of ${numel} never written`);
      }
      this.file.commit();
    } catch (err) {
      this.file.abort();
      throw err;
    }
  }

  abort(): void {
    this.file.abort();
  }
}

/** Writes `tensors` (in the given order) and string `metadata` to `path` atomically. */
export function writeSafetensors(path: string, tensors: Record<string, TensorToWrite>, metadata: Record<string, string> = {}): void {
  const specs: Record<string, TensorSpec> = {};
  for (const [name, t] of Object.entries(tensors)) {
    const dtype = t.dtype ?? defaultDType(path, name, t.data);
    if (t.data.length !== product(t.shape)) {
      throw new SafetensorsError(path, `tensor '${name}': ${t.data.length} values for shape [${t.shape.join(', ')}] (${product(t.shape)})`);
    }
    specs[name] = { dtype, shape: t.shape };
  }
  const writer = SafetensorsWriter.create(path, specs, metadata);
  try {
    for (const [name, t] of Object.entries(tensors)) writer.writeElements(name, 0, t.data);
  } catch (err) {
    writer.abort();
    throw err;
  }
  writer.finish();
}
