// Kernel variants chosen per adapter by measurement (as Burn/CubeCL do), as a layer around the kernels: an op asks
// for the tuned variant of (kernel family, shape class) and gets the cached choice, or nothing and uses its fixed
// default while the question waits. autotunePending() then times every candidate of every waiting question with
// GPU timestamps (interleaved rounds, median), keeps the fastest, and caches it on disk under
// .cache/wgkd/autotune/, keyed by adapter + driver + host CPU, so later processes start tuned.
// WGKD_AUTOTUNE=off: no lookups, no measurements; every op uses its fixed default.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { defaultCacheDir } from '../data/cache.js';
import { writeFileAtomicSync } from '../io/atomic.js';
import { profile } from '../profile/profile.js';
import type { Device } from './device.js';

/** One waiting question: its candidates by name, and how to run one of them on scratch operands. */
export interface TuneJob {
  candidates: string[];
  /** Allocates scratch operands; `run(name)` records one dispatch of a candidate; `dispose()` frees them. */
  setup(dev: Device): { run(candidate: string): void; dispose(): void };
}

interface TuneFile {
  key: string; // the adapter + driver + CPU the choices were measured on
  choices: Record<string, { choice: string; us: Record<string, number> }>;
}

interface TuneTable {
  path: string;
  file: TuneFile;
  pending: Map<string, TuneJob>;
}

const tables = new WeakMap<Device, TuneTable>();

export function autotuneEnabled(): boolean {
  return process.env.WGKD_AUTOTUNE !== 'off';
}

/** The cache folder (tests point it elsewhere with WGKD_AUTOTUNE_DIR). */
function cacheDir(): string {
  return process.env.WGKD_AUTOTUNE_DIR ?? join(defaultCacheDir(), 'autotune');
}

function tableOf(dev: Device): TuneTable {
  let table = tables.get(dev);
  if (table) return table;
  const key = dev.cacheKey;
  const path = join(cacheDir(), `${createHash('sha256').update(key).digest('hex').slice(0, 16)}.json`);
  let file: TuneFile = { key, choices: {} };
  if (existsSync(path)) {
    try {
      const cached = JSON.parse(readFileSync(path, 'utf8')) as TuneFile;
      if (cached.key === key && cached.choices && typeof cached.choices === 'object') file = cached;
    } catch {
      // a torn or foreign file: tune again
    }
  }
  table = { path, file, pending: new Map() };
  tables.set(dev, table);
  return table;
}

function entryName(family: string, shapeClass: string): string {
  return `${family} ${shapeClass}`;
}

/**
 * The tuned candidate for (family, shape class) on this device, or undefined (tuning off, or not measured yet: then
 * `job` waits for autotunePending()). A cached choice that is no longer a candidate counts as not measured.
 */
export function tunedChoice(dev: Device, family: string, shapeClass: string, job: TuneJob): string | undefined {
  if (!autotuneEnabled()) return undefined;
  const table = tableOf(dev);
  const name = entryName(family, shapeClass);
  const cached = table.file.choices[name]?.choice;
  if (cached !== undefined && job.candidates.includes(cached)) return cached;
  if (job.candidates.length > 1 && !table.pending.has(name)) table.pending.set(name, job);
  return undefined;
}

/** How many questions wait for autotunePending() on this device. */
export function pendingTunes(dev: Device): number {
  return autotuneEnabled() ? tableOf(dev).pending.size : 0;
}

export interface AutotuneOptions {
  /** Timed rounds per question; every round runs each candidate once, in order (default 5). */
  rounds?: number;
  log?: (line: string) => void;
}

/**
 * Times the candidates of every waiting question (GPU timestamps; one untimed warm-up call each compiles its
 * pipeline), keeps the fastest median and writes the cache. Returns how many questions it answered. Call it between
 * steps, never while a step is being recorded (its own submits would interleave with the step's).
 */
export async function autotunePending(dev: Device, options: AutotuneOptions = {}): Promise<number> {
  if (!autotuneEnabled() || dev.profiler) return 0; // a profiled call must not see the tuner's dispatches
  const table = tableOf(dev);
  const rounds = options.rounds ?? 5;
  let answered = 0;
  for (const [name, job] of table.pending) {
    table.pending.delete(name);
    const scratch = job.setup(dev);
    try {
      for (const c of job.candidates) scratch.run(c); // compiles every pipeline before any timing
      await dev.sync();
      const times = new Map<string, number[]>(job.candidates.map((c) => [c, []]));
      for (let r = 0; r < rounds; r++) {
        const p = await profile(dev, async () => {
          for (const c of job.candidates) scratch.run(c);
          await dev.sync();
        });
        // One dispatch per candidate run (a candidate that splits its work records several: summed in order).
        const perRun = p.dispatches.length / job.candidates.length;
        job.candidates.forEach((c, i) => {
          const us = p.dispatches.slice(i * perRun, (i + 1) * perRun).reduce((t, d) => t + d.gpuUs, 0);
          times.get(c)!.push(us);
        });
      }
      const medians: Record<string, number> = {};
      for (const [c, list] of times) medians[c] = [...list].sort((x, y) => x - y)[Math.floor(list.length / 2)];
      const best = job.candidates.reduce((b, c) => (medians[c] < medians[b] ? c : b));
      table.file.choices[name] = { choice: best, us: medians };
      options.log?.(`autotune ${name}: ${best} (${medians[best].toFixed(0)} µs of ${job.candidates.length} candidates)`);
      answered++;
    } finally {
      scratch.dispose();
    }
  }
  if (answered > 0) {
    mkdirSync(dirname(table.path), { recursive: true });
    writeFileAtomicSync(table.path, `${JSON.stringify(table.file, null, 2)}\n`);
  }
  return answered;
}

/** Forgets this device's in-memory table (tests: re-read the cache file, or a fresh WGKD_AUTOTUNE_DIR). */
export function resetAutotune(dev: Device): void {
  tables.delete(dev);
}
