// Fuzzing the safetensors and IDX parsers with mutations of valid files: truncation, bit flips, forged header
// lengths, edited offsets, shapes and dtypes in the JSON header, inserted and appended bytes. Every case must
// either parse or fail with an Error naming the file (no TypeError/RangeError from deep inside, no hang, no
// allocation beyond the file's own size). Seeded, so a failure reproduces; 12,000 cases per parser.
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { rng } from '../src/random.js';
import { SafetensorsFile, writeSafetensors, readSafetensors } from '../src/teacher/safetensors.js';
import { openTeacherOutputs, writeTeacherOutputs } from '../src/teacher/outputs.js';
import { loadCheckpoint, saveCheckpoint, CHECKPOINT_FORMAT } from '../src/train/checkpoint.js';
import { encodeIdx, parseIdx, readIdx } from '../src/data/idx.js';

// A memory file system where there is one: rewriting a file 12,000 times costs seconds on a disk.
const dir = mkdtempSync(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'wgkd-fuzz-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const CASES = 12_000;
/** A parse may allocate about the file's size a few times over; far more means a length field was trusted. */
const ALLOCATION_SLACK = 64 * 1024 * 1024;

type Next = () => number;
const int = (next: Next, n: number) => Math.floor(next() * n);

/** One mutation of `bytes`, chosen and placed by `next`. `headerEnd`: where the structure lives (mutated more). */
function mutate(bytes: Uint8Array, next: Next, headerEnd: number): Uint8Array {
  const out = Uint8Array.from(bytes);
  const where = () => (next() < 0.8 ? int(next, Math.max(1, Math.min(headerEnd, out.length))) : int(next, out.length));
  switch (int(next, 8)) {
    case 7: {
      // rename a tensor: hostile names (prototype keys), clashing ones, malformed optimiser entries
      const text = Buffer.from(out.subarray(0, headerEnd)).toString('latin1');
      const keys = [...text.matchAll(/"([^"\\]+)":\{"dtype"/g)];
      if (keys.length === 0) return out;
      const m = keys[int(next, keys.length)];
      const names = ['__proto__', 'model.__proto__', 'optim.__proto__.0', 'extra.constructor', 'optim.exp_avg.-1', 'optim.exp_avg.7', 'optim.x', 'hint.__proto__', 'logits', 'embedding', '__metadata__'];
      const edited = text.slice(0, m.index) + `"${names[int(next, names.length)]}"` + text.slice(m.index! + m[1].length + 2);
      return Buffer.concat([Buffer.from(edited, 'latin1'), out.subarray(headerEnd)]);
    }
    case 0: // truncation
      return out.subarray(0, int(next, out.length));
    case 1: // bit flips
      for (let k = 1 + int(next, 8); k > 0; k--) {
        const i = where();
        out[i] ^= 1 << int(next, 8);
      }
      return out;
    case 2: {
      // a forged 8-byte (safetensors) or 4-byte (IDX dim) length field
      const edge = [0, 1, 7, 8, bytes.length, bytes.length - 8, bytes.length + 1, 0xffffffff, 2 ** 31, 2 ** 53, 100_000_001];
      const value = next() < 0.5 ? edge[int(next, edge.length)] : int(next, 2 ** 32);
      const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
      const at = Math.min(int(next, 6) * 4, Math.max(0, out.length - 8));
      if (out.length >= 8) view.setBigUint64(at, BigInt(value), true);
      if (next() < 0.5 && out.length >= at + 4) view.setUint32(at, value >>> 0, false);
      return out;
    }
    case 3: {
      // rewrite one number of the JSON header (offsets, shapes, lengths) to an edge value
      const text = Buffer.from(out.subarray(0, headerEnd)).toString('latin1');
      const numbers = [...text.matchAll(/\d+/g)];
      if (numbers.length === 0) return out;
      const m = numbers[int(next, numbers.length)];
      const values = ['0', '1', '-1', '4294967296', '9007199254740993', '1e308', '3.5', String(int(next, 100_000))];
      const edited = text.slice(0, m.index) + values[int(next, values.length)] + text.slice(m.index! + m[0].length);
      return Buffer.concat([Buffer.from(edited, 'latin1'), out.subarray(headerEnd)]);
    }
    case 4: {
      // swap one JSON token for another kind
      const text = Buffer.from(out.subarray(0, headerEnd)).toString('latin1');
      const tokens = ['"F32"', '"F16"', '"I64"', '"BOOL"', 'null', '[]', '{}', '"shape"', '"data_offsets"', '"__metadata__"', '"__proto__"', '"model.__proto__"', '"optim.__proto__.0"', '[1,2,3]', '"x"'];
      const strings = [...text.matchAll(/"[^"]*"|\[[^\]]*\]/g)];
      if (strings.length === 0) return out;
      const m = strings[int(next, strings.length)];
      const edited = text.slice(0, m.index) + tokens[int(next, tokens.length)] + text.slice(m.index! + m[0].length);
      return Buffer.concat([Buffer.from(edited, 'latin1'), out.subarray(headerEnd)]);
    }
    case 5: {
      // insert or delete a run of bytes
      const i = where();
      const run = 1 + int(next, 16);
      if (next() < 0.5) return Buffer.concat([out.subarray(0, i), out.subarray(Math.min(out.length, i + run))]);
      return Buffer.concat([out.subarray(0, i), Buffer.from(Array.from({ length: run }, () => int(next, 256))), out.subarray(i)]);
    }
    default: // trailing garbage
      return Buffer.concat([out, Buffer.from(Array.from({ length: 1 + int(next, 64) }, () => int(next, 256)))]);
  }
}

const PROTOTYPE_KEYS = new Set(Object.getOwnPropertyNames(Object.prototype));
let casesRun = 0;
let baseline = 0;

/** Runs `parse`, classifying the outcome; anything but success or an Error naming `source` fails the test. */
function expectParsedOrClearError(parse: () => void, source: string, what: string): 'parsed' | 'refused' {
  // Memory is sampled (process.memoryUsage() costs more than a parse): a trusted length field shows up as a jump.
  if (casesRun++ % 64 === 0) baseline = process.memoryUsage().arrayBuffers;
  try {
    parse();
    return 'parsed';
  } catch (err) {
    const e = err as Error;
    if (!(e instanceof Error) || e instanceof TypeError || e instanceof RangeError || !e.message.includes(source)) {
      expect.fail(`${what}: unclear error ${e?.constructor?.name}: ${e?.message ?? e}\n${e?.stack ?? ''}`);
    }
    return 'refused';
  } finally {
    // A hostile tensor name ('optim.__proto__.0') must not reach Object.prototype.
    const polluted = Object.getOwnPropertyNames(Object.prototype).filter((k) => !PROTOTYPE_KEYS.has(k));
    if (polluted.length > 0) {
      for (const k of polluted) delete (Object.prototype as Record<string, unknown>)[k];
      expect.fail(`${what}: the parse added ${polluted.join(', ')} to Object.prototype`);
    }
    if (casesRun % 64 === 63) {
      const grown = process.memoryUsage().arrayBuffers - baseline;
      if (grown > ALLOCATION_SLACK) expect.fail(`${what}: array buffers grew by ${grown} bytes`);
    }
  }
}

/** The valid files mutated: a plain multi-dtype file, a checkpoint, a teacher-outputs file. */
function seeds(): { kind: 'plain' | 'checkpoint' | 'teacher'; bytes: Uint8Array }[] {
  const plain = join(dir, 'plain.safetensors');
  writeSafetensors(
    plain,
    {
      w: { shape: [3, 4], data: Float32Array.from({ length: 12 }, (_, i) => i - 5.5) },
      h: { dtype: 'F16', shape: [5], data: new Float32Array([0.5, -2, 65504, 1e-5, 3]) },
      i: { shape: [2, 2], data: new Int32Array([1, -2, 3, -4]) },
      l: { dtype: 'I64', shape: [3], data: new Int32Array([7, -8, 9]) },
      u: { shape: [6], data: new Uint8Array([0, 1, 2, 250, 255, 9]) },
      e: { shape: [0, 3], data: new Float32Array(0) },
    },
    { note: 'fuzz seed' },
  );
  const checkpoint = join(dir, 'checkpoint.safetensors');
  const state = { format: CHECKPOINT_FORMAT as typeof CHECKPOINT_FORMAT, version: 1 as const, model: 'dwpw', modelSpec: { inChannels: 1, numClasses: 10, inputSize: 28 }, dataset: 'fashion-mnist', epoch: 1, stepInEpoch: 2, globalStep: 7, bestAccuracy: 0.5, bestEpoch: 1, valAccuracy: 0.5, config: {} };
  saveCheckpoint(checkpoint, {
    state,
    model: { 'conv.weight': { shape: [2, 1, 3, 3], data: Float32Array.from({ length: 18 }, (_, i) => i / 7) }, 'conv.bias': { shape: [2], data: new Float32Array([0.1, -0.1]) } },
    extra: {},
    optimizer: { type: 'Adam', step: 7, lr: 1e-3, hyperParams: { betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0 }, buffers: { exp_avg: [new Float32Array(18), new Float32Array(2)] } },
  });
  const teacher = join(dir, 'teacher.safetensors');
  writeTeacherOutputs(teacher, {
    dataset: 'fashion-mnist', split: 'train', fingerprint: 'abc', count: 4, numClasses: 3, teacher: 'fuzz', views: ['identity', 'hflip'], embeddingDim: 2,
    hints: { layer2: [1, 2, 2] }, logits: Float32Array.from({ length: 24 }, (_, i) => i), embedding: Float32Array.from({ length: 16 }, (_, i) => -i), hintData: { layer2: new Float32Array(32).fill(0.25) },
  });
  const bytesOf = (p: string) => {
    const { tensors } = readSafetensors(p); // the seeds themselves must be valid
    expect(Object.keys(tensors).length).toBeGreaterThan(0);
    return new Uint8Array(readFileSync(p));
  };
  return [
    { kind: 'plain', bytes: bytesOf(plain) },
    { kind: 'checkpoint', bytes: bytesOf(checkpoint) },
    { kind: 'teacher', bytes: bytesOf(teacher) },
  ];
}

describe('fuzzing the parsers', () => {
  it(`safetensors: ${CASES.toLocaleString('en')} mutated files (plain, checkpoint, teacher outputs) parse or fail clearly`, () => {
    const next = rng(11);
    const files = seeds();
    const path = join(dir, 'case.safetensors');
    const outcomes = { parsed: 0, refused: 0 };
    const start = performance.now();
    let slowest = 0;
    for (let c = 0; c < CASES; c++) {
      const seed = files[c % files.length];
      const headerEnd = 8 + Number(new DataView(seed.bytes.buffer, seed.bytes.byteOffset).getBigUint64(0, true));
      const bytes = mutate(seed.bytes, next, headerEnd);
      writeFileSync(path, bytes);
      const t0 = performance.now();
      const outcome = expectParsedOrClearError(
        () => {
          if (seed.kind === 'checkpoint') loadCheckpoint(path);
          else if (seed.kind === 'teacher') {
            const t = openTeacherOutputs(path);
            try {
              t.readBatch([0, 1, 2, 3], [0, 1, 1, 0]);
            } finally {
              t.close();
            }
          } else {
            const f = SafetensorsFile.open(path);
            try {
              for (const name of f.names) f.read(name);
            } finally {
              f.close();
            }
          }
        },
        path,
        `case ${c} (${seed.kind})`,
      );
      outcomes[outcome]++;
      slowest = Math.max(slowest, performance.now() - t0);
    }
    const seconds = (performance.now() - start) / 1000;
    expect(outcomes.refused).toBeGreaterThan(CASES / 4); // the mutations do break files...
    expect(outcomes.parsed).toBeGreaterThan(50); // ...and some (e.g. flips inside tensor data) still parse
    expect(slowest, 'slowest case (ms)').toBeLessThan(1000);
    expect(seconds).toBeLessThan(60);
  });

  it(`IDX: ${CASES.toLocaleString('en')} mutated files (u8, i16, f32, f64; raw and gzipped) parse or fail clearly`, () => {
    const next = rng(12);
    const idx = (code: number, dims: number[], width: number) => {
      const header = Buffer.alloc(4 + 4 * dims.length);
      header[2] = code;
      header[3] = dims.length;
      dims.forEach((d, i) => header.writeUInt32BE(d, 4 + 4 * i));
      const count = dims.reduce((n, d) => n * d, 1);
      return new Uint8Array(Buffer.concat([header, Buffer.from(Array.from({ length: count * width }, (_, i) => (i * 37) & 255))]));
    };
    const seedFiles = [encodeIdx([10, 4, 4], new Uint8Array(160).fill(7)), encodeIdx([12], new Uint8Array(12)), idx(0x0b, [3, 5], 2), idx(0x0d, [2, 2, 2], 4), idx(0x0e, [6], 8)];
    const gzPath = join(dir, 'case.idx.gz');
    const outcomes = { parsed: 0, refused: 0 };
    const start = performance.now();
    for (let c = 0; c < CASES; c++) {
      const seed = seedFiles[c % seedFiles.length];
      const bytes = mutate(seed, next, 4 + 4 * seed[3]);
      const source = `case-${c}.idx`;
      if (c % 10 === 0) {
        // Through readIdx: a gzipped file, sometimes with its compressed bytes damaged too.
        const gz = gzipSync(bytes);
        writeFileSync(gzPath, c % 20 === 0 ? mutate(gz, next, gz.length) : gz);
        outcomes[expectParsedOrClearError(() => readIdx(gzPath), gzPath, `case ${c} (gzip)`)]++;
      } else outcomes[expectParsedOrClearError(() => parseIdx(bytes, source), source, `case ${c}`)]++;
    }
    expect(outcomes.refused).toBeGreaterThan(CASES / 4);
    expect(outcomes.parsed).toBeGreaterThan(50);
    expect((performance.now() - start) / 1000).toBeLessThan(60);
  });
});
