import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  MAX_HEADER_BYTES,
  SafetensorsFile,
  SafetensorsWriter,
  float32ToHalf,
  floatToHalfBits,
  halfToFloat32,
  readSafetensors,
  writeSafetensors,
} from '../src/teacher/safetensors.js';
import { writeFileAtomicSync } from '../src/io/atomic.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wgkd-st-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
let counter = 0;
const fresh = (name = 'f'): string => path.join(dir, `${name}-${counter++}.safetensors`);

/** A file laid out by hand, the way the reference implementation writes it (independent of our writer). */
function rawFile(header: unknown, data: Uint8Array, options: { headerLength?: bigint; rawHeader?: Uint8Array } = {}): string {
  const headerBytes = options.rawHeader ?? Buffer.from(typeof header === 'string' ? header : JSON.stringify(header), 'utf8');
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(options.headerLength ?? BigInt(headerBytes.length));
  const file = fresh('raw');
  fs.writeFileSync(file, Buffer.concat([length, headerBytes, data]));
  return file;
}

function expectOpenError(file: string, problem: RegExp): void {
  let message = '';
  try {
    SafetensorsFile.open(file).close();
  } catch (err) {
    message = (err as Error).message;
  }
  expect(message).toContain(file);
  expect(message).toMatch(problem);
}

describe('float16 conversion (exact)', () => {
  it('every finite half survives half -> f32 -> half; NaNs stay NaN', () => {
    const all = Uint16Array.from({ length: 65536 }, (_, i) => i);
    const floats = halfToFloat32(all);
    const back = float32ToHalf(floats);
    for (let h = 0; h < 65536; h++) {
      const isNaN = (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;
      if (isNaN) expect(Number.isNaN(floats[h])).toBe(true);
      else if (back[h] !== h) throw new Error(`half 0x${h.toString(16)} -> ${floats[h]} -> 0x${back[h].toString(16)}`);
    }
  });

  it('IEEE values and round-to-nearest-even', () => {
    const cases: [number, number][] = [
      [0, 0x0000],
      [-0, 0x8000],
      [1, 0x3c00],
      [-2, 0xc000],
      [0.5, 0x3800],
      [65504, 0x7bff], // largest half
      [65519.99, 0x7bff], // below the rounding boundary
      [65520, 0x7c00], // rounds to infinity
      [Infinity, 0x7c00],
      [-Infinity, 0xfc00],
      [2 ** -24, 0x0001], // smallest subnormal
      [2 ** -25, 0x0000], // tie -> even (0)
      [3 * 2 ** -25, 0x0002], // tie -> even (2)
      [2 ** -14, 0x0400], // smallest normal
      [1 + 2 ** -11, 0x3c00], // tie -> even (mantissa 0)
      [1 + 3 * 2 ** -11, 0x3c02], // tie -> even (mantissa 2)
      [1 + 2 ** -11 + 2 ** -20, 0x3c01], // just above the tie
      [1e-9, 0x0000],
    ];
    for (const [value, bits] of cases) expect(floatToHalfBits(value), `${value}`).toBe(bits);
    expect(floatToHalfBits(NaN) & 0x7c00).toBe(0x7c00);
    expect(floatToHalfBits(NaN) & 0x3ff).not.toBe(0);
  });
});

describe('safetensors round trip', () => {
  it('F32, F16, I32, I64, U8, scalar and empty tensors with metadata; data area 8-byte aligned', () => {
    const file = fresh();
    const f32 = Float32Array.from({ length: 2 * 3 * 5 }, (_, i) => Math.sin(i) * 1000);
    const f16Source = Float32Array.from({ length: 7 }, (_, i) => (i - 3) * 0.37);
    const i32 = Int32Array.from([-(2 ** 31), -1, 0, 1, 2 ** 31 - 1]);
    const i64 = BigInt64Array.from([-5n, 2n ** 31n - 1n, -(2n ** 31n)]);
    const u8 = Uint8Array.from({ length: 13 }, (_, i) => i * 19);
    writeSafetensors(
      file,
      {
        weights: { shape: [2, 3, 5], data: f32 },
        halves: { dtype: 'F16', shape: [7], data: f16Source },
        ints: { shape: [5], data: i32 },
        longs: { shape: [3, 1], data: i64 },
        widened: { dtype: 'I64', shape: [2], data: Int32Array.from([-7, 9]) },
        bytes: { shape: [13], data: u8 },
        scalar: { shape: [], data: Float32Array.from([42.5]) },
        empty: { shape: [0, 4], data: new Float32Array(0) },
      },
      { note: 'hello', unicode: 'é漢' },
    );
    const st = SafetensorsFile.open(file);
    try {
      expect(st.dataStart % 8).toBe(0);
      expect(st.metadata).toEqual({ note: 'hello', unicode: 'é漢' });
      expect(st.names).toEqual(['weights', 'halves', 'ints', 'longs', 'widened', 'bytes', 'scalar', 'empty']);
      expect(st.info('weights')).toMatchObject({ dtype: 'F32', shape: [2, 3, 5], numel: 30 });
      expect(st.read('weights')).toEqual(f32);
      expect(st.read('halves')).toEqual(halfToFloat32(float32ToHalf(f16Source)));
      for (let i = 0; i < 7; i++) expect(Math.abs((st.read('halves') as Float32Array)[i] - f16Source[i])).toBeLessThanOrEqual(2 ** -11 * 2);
      expect(st.read('ints')).toEqual(i32);
      expect(st.read('longs')).toEqual(Int32Array.from([-5, 2 ** 31 - 1, -(2 ** 31)]));
      expect(st.read('widened')).toEqual(Int32Array.from([-7, 9]));
      expect(st.read('bytes')).toEqual(u8);
      expect(st.read('scalar')).toEqual(Float32Array.from([42.5]));
      expect(st.read('empty')).toEqual(new Float32Array(0));
      expect(st.info('longs').dtype).toBe('I64');
    } finally {
      st.close();
    }
    const all = readSafetensors(file);
    expect(Object.keys(all.tensors)).toHaveLength(8);
    expect(all.tensors.bytes.data).toEqual(u8);
    expect(all.metadata.note).toBe('hello');
  });

  it('readRows and readElementsInto read exactly the requested rows, for every dtype', () => {
    const file = fresh();
    const rows = 9;
    const values = Float32Array.from({ length: rows * 4 }, (_, i) => i * 0.5 - 3);
    writeSafetensors(file, {
      a: { shape: [rows, 2, 2], data: values },
      h: { dtype: 'F16', shape: [rows, 4], data: values },
      l: { dtype: 'I64', shape: [rows, 4], data: Int32Array.from(values, (v) => Math.round(v * 2)) },
      u: { shape: [rows, 4], data: Uint8Array.from(values, (_, i) => i) },
    });
    const st = SafetensorsFile.open(file);
    try {
      for (const [start, count] of [[0, 1], [3, 4], [8, 1], [0, 9], [5, 0]]) {
        const want = values.subarray(start * 4, (start + count) * 4);
        expect(st.readRows('a', start, count)).toEqual(want);
        expect(st.readRows('h', start, count)).toEqual(want); // multiples of 0.5 are exact in f16
        expect(st.readRows('l', start, count)).toEqual(Int32Array.from(want, (v) => Math.round(v * 2)));
        expect(st.readRows('u', start, count)).toEqual(Uint8Array.from({ length: count * 4 }, (_, i) => start * 4 + i));
      }
      const out = new Float32Array(10).fill(-1);
      st.readElementsInto('h', 5, 3, out, 2);
      expect(Array.from(out)).toEqual([-1, -1, values[5], values[6], values[7], -1, -1, -1, -1, -1]);
    } finally {
      st.close();
    }
  });

  it('reads a hand-built file whose JSON order differs from the data order, with padded header', () => {
    // 'b' comes first in the data area but second in the JSON, like files from the reference writer.
    const a = Float32Array.from([1.5, -2.25]);
    const b = Int32Array.from([7, -8, 9]);
    const header = {
      __metadata__: { format: 'pt' },
      a: { dtype: 'F32', shape: [2], data_offsets: [12, 20] },
      b: { dtype: 'I32', shape: [3], data_offsets: [0, 12] },
    };
    const json = JSON.stringify(header) + '    ';
    const data = Buffer.concat([Buffer.from(b.buffer), Buffer.from(a.buffer)]);
    const file = rawFile(json, data);
    const st = SafetensorsFile.open(file);
    expect(st.names).toEqual(['b', 'a']);
    expect(st.read('a')).toEqual(a);
    expect(st.read('b')).toEqual(b);
    expect(st.metadata).toEqual({ format: 'pt' });
    st.close();
  });

  it('the streaming writer accepts rows in any order and refuses gaps and double writes', () => {
    const file = fresh();
    const w = SafetensorsWriter.create(file, { x: { dtype: 'F32', shape: [4, 3] } }, { k: 'v' });
    w.writeRows('x', 2, Float32Array.from([6, 7, 8, 9, 10, 11]));
    w.writeRows('x', 0, Float32Array.from([0, 1, 2, 3, 4, 5]));
    expect(fs.existsSync(file)).toBe(false); // nothing at the destination before finish()
    w.finish();
    expect(readSafetensors(file).tensors.x.data).toEqual(Float32Array.from({ length: 12 }, (_, i) => i));

    const gap = fresh();
    const g = SafetensorsWriter.create(gap, { x: { dtype: 'F32', shape: [4, 3] } });
    g.writeRows('x', 0, new Float32Array(3));
    g.writeRows('x', 2, new Float32Array(6));
    expect(() => g.finish()).toThrow(/elements from 3 of 12 never written/);
    expect(fs.existsSync(gap)).toBe(false);

    const twice = fresh();
    const t = SafetensorsWriter.create(twice, { x: { dtype: 'F32', shape: [2, 2] } });
    t.writeRows('x', 0, new Float32Array(4));
    t.writeRows('x', 1, new Float32Array(2));
    expect(() => t.finish()).toThrow(/written twice/);
    expect(fs.readdirSync(dir).filter((n) => n.endsWith('.tmp'))).toEqual([]);
  });

  it('writer argument errors: wrong array type, wrong length, out-of-range rows, unknown tensor', () => {
    expect(() => writeSafetensors(fresh(), { x: { dtype: 'I32', shape: [2], data: new Float32Array(2) } })).toThrow(/cannot write Float32Array as I32/);
    expect(() => writeSafetensors(fresh(), { x: { shape: [3], data: new Float32Array(2) } })).toThrow(/2 values for shape \[3\]/);
    expect(() => writeSafetensors(fresh(), { x: { shape: [2], data: new Uint16Array(2) } })).toThrow(/give a dtype/);
    const w = SafetensorsWriter.create(fresh(), { x: { dtype: 'U8', shape: [2, 2] } });
    expect(() => w.writeRows('x', 1, new Uint8Array(4))).toThrow(/outside \[0, 4\)/);
    expect(() => w.writeRows('y', 0, new Uint8Array(2))).toThrow(/no tensor 'y'/);
    expect(() => w.writeRows('x', 0, new Uint8Array(3))).toThrow(/whole number of rows/);
    w.abort();
    expect(fs.readdirSync(dir).filter((n) => n.endsWith('.tmp'))).toEqual([]);
  });

  it('an atomic overwrite that fails leaves the old file intact', () => {
    const file = fresh();
    writeSafetensors(file, { x: { shape: [2], data: Float32Array.from([1, 2]) } });
    expect(() => writeSafetensors(file, { x: { dtype: 'I32', shape: [2], data: Float32Array.from([3, 4]) } })).toThrow();
    expect(readSafetensors(file).tensors.x.data).toEqual(Float32Array.from([1, 2]));
    writeFileAtomicSync(path.join(dir, 'plain.txt'), ['ab', Buffer.from('cd')]);
    expect(fs.readFileSync(path.join(dir, 'plain.txt'), 'utf8')).toBe('abcd');
  });
});

describe('safetensors malformed files: each a clear error naming the file', () => {
  const f32 = (n: number): Uint8Array => new Uint8Array(new Float32Array(n).buffer);
  const entry = (begin: number, end: number, shape = [(end - begin) / 4], dtype = 'F32') => ({ dtype, shape, data_offsets: [begin, end] });

  it('too short for the length prefix', () => {
    const file = fresh('short');
    fs.writeFileSync(file, Buffer.from([1, 2, 3]));
    expectOpenError(file, /3 bytes, too short for the 8-byte header length/);
  });
  it('absurd header length', () => {
    expectOpenError(rawFile({}, f32(1), { headerLength: BigInt(MAX_HEADER_BYTES) + 1n }), /header length 100000001 is absurd/);
    expectOpenError(rawFile({}, f32(1), { headerLength: 2n ** 63n }), /is absurd/);
  });
  it('header length beyond the file size', () => {
    expectOpenError(rawFile({}, new Uint8Array(0), { headerLength: 1000n }), /header length 1000 runs past the end of the file \(10 bytes\)/);
  });
  it('header not UTF-8, not JSON, not an object', () => {
    expectOpenError(rawFile(null, new Uint8Array(0), { rawHeader: Uint8Array.from([0x7b, 0xff, 0xfe, 0x7d]) }), /not valid UTF-8/);
    expectOpenError(rawFile('{"a": {"dtype": "F32",', new Uint8Array(0)), /not valid JSON/);
    expectOpenError(rawFile('', new Uint8Array(0)), /not valid JSON/);
    expectOpenError(rawFile([1, 2], new Uint8Array(0)), /not a JSON object/);
  });
  it('unknown dtype', () => {
    expectOpenError(rawFile({ x: entry(0, 4, [1], 'BF16') }, f32(1)), /tensor 'x': unknown dtype "BF16"/);
  });
  it('bad shape and bad data_offsets', () => {
    expectOpenError(rawFile({ x: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, f32(1)), /shape \[-1\] is not a list of non-negative integers/);
    expectOpenError(rawFile({ x: { dtype: 'F32', shape: [1], data_offsets: [0] } }, f32(1)), /data_offsets \[0\] is not \[begin, end\]/);
    expectOpenError(rawFile({ x: { dtype: 'F32', shape: [1], data_offsets: [0, 4.5] } }, f32(1)), /data_offsets/);
    expectOpenError(rawFile({ x: 5 }, f32(1)), /tensor 'x': entry is not an object/);
  });
  it('offsets out of order (begin > end)', () => {
    expectOpenError(rawFile({ x: { dtype: 'F32', shape: [1], data_offsets: [4, 0] } }, f32(1)), /\[4, 0\] are out of order/);
  });
  it('offsets outside the data area', () => {
    expectOpenError(rawFile({ x: entry(0, 8) }, f32(1)), /\[0, 8\] lie outside the data area \(4 bytes\)/);
  });
  it('byte size != numel * dtype size', () => {
    expectOpenError(rawFile({ x: entry(0, 8, [3]) }, f32(2)), /holds 8 bytes but F32 \[3\] needs 12/);
    expectOpenError(rawFile({ x: entry(0, 8, [3], 'U8') }, f32(2)), /holds 8 bytes but U8 \[3\] needs 3/);
  });
  it('overlapping tensors', () => {
    expectOpenError(rawFile({ a: entry(0, 8), b: entry(4, 12) }, f32(3)), /tensors 'a' \[0, 8\] and 'b' \[4, 12\] overlap/);
  });
  it('holes in the data area and undescribed trailing bytes', () => {
    expectOpenError(rawFile({ a: entry(0, 4), b: entry(8, 12) }, f32(3)), /hole of 4 bytes in the data area before tensor 'b'/);
    expectOpenError(rawFile({ a: entry(0, 4) }, f32(2)), /4 bytes after the last tensor are not described/);
  });
  it('metadata that is not an object of strings', () => {
    expectOpenError(rawFile({ __metadata__: { epochs: 3 }, a: entry(0, 4) }, f32(1)), /__metadata__ value for 'epochs' is not a string \(3\)/);
    expectOpenError(rawFile({ __metadata__: ['x'], a: entry(0, 4) }, f32(1)), /__metadata__ is not an object/);
  });
  it('missing file', () => {
    expectOpenError(path.join(dir, 'nope.safetensors'), /cannot open/);
  });
});

describe('safetensors read errors', () => {
  it('unknown tensor, rows out of range, wrong output type, I64 overflow, read after close, truncated file', () => {
    const file = fresh();
    writeSafetensors(file, {
      x: { shape: [3, 2], data: new Float32Array(6) },
      big: { shape: [2], data: BigInt64Array.from([1n, 2n ** 40n]) },
      neg: { shape: [1], data: BigInt64Array.from([-(2n ** 31n) - 1n]) },
    });
    const st = SafetensorsFile.open(file);
    expect(() => st.read('y')).toThrow(new RegExp(`${file}.*no tensor 'y' \\(tensors: x, big, neg\\)`));
    expect(() => st.readRows('x', 2, 2)).toThrow(/readRows\('x', 2, 2\): outside rows \[0, 3\)/);
    expect(() => st.readRows('x', -1, 1)).toThrow(/outside rows/);
    expect(() => st.readElementsInto('x', 0, 2, new Int32Array(2))).toThrow(/'x' is F32; wrong output array type Int32Array/);
    expect(() => st.readElementsInto('x', 0, 4, new Float32Array(3))).toThrow(/output array too small/);
    expect(st.readRows('big', 0, 1)).toEqual(Int32Array.from([1]));
    expect(() => st.read('big')).toThrow(/'big' element 1 = 1099511627776 does not fit in int32/);
    expect(() => st.read('neg')).toThrow(/'neg' element 0 = -2147483649 does not fit in int32/);
    st.close();
    expect(() => st.read('x')).toThrow(/after close/);

    const st2 = SafetensorsFile.open(file);
    fs.truncateSync(file, st2.dataStart + 8);
    expect(() => st2.read('neg')).toThrow(/file ended while reading 'neg'/);
    st2.close();
  });
});
