// The run folder: last/best checkpoints, config.json and the metrics log (metrics.jsonl, one JSON record a line:
// {"type":"step",...} with --log-steps, {"type":"epoch",...} after each validation).
// A fresh run does not replace an earlier run's files unless asked (--overwrite); a resumed run keeps the log
// up to its checkpoint and drops what a killed run logged past it, so no step or epoch is recorded twice.
import { appendFileSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { removeStaleTempFiles, writeFileAtomicSync } from '../io/atomic.js';
import type { TrainConfig } from './config.js';
import type { TrainerState } from './checkpoint.js';
import { checkResumable } from './setup.js';

export interface RunPaths {
  dir: string;
  last: string;
  best: string;
  metrics: string;
  config: string;
}

export function runPaths(out: string): RunPaths {
  return { dir: out, last: join(out, 'last.safetensors'), best: join(out, 'best.safetensors'), metrics: join(out, 'metrics.jsonl'), config: join(out, 'config.json') };
}

/** The files of an earlier run in the folder (checkpoints, a non-empty log). */
function earlierRun(paths: RunPaths): string[] {
  const files = [paths.last, paths.best].filter((p) => existsSync(p));
  if (existsSync(paths.metrics) && statSync(paths.metrics).size > 0) files.push(paths.metrics);
  return files;
}

/**
 * Makes the folder ready: removes temporary files a killed atomic write left, and refuses a fresh run where an
 * earlier one lives (unless cfg.overwrite: see removeEarlierRun). Returns the paths; `log` hears what was cleaned.
 */
export function prepareRunFolder(cfg: TrainConfig, log: (line: string) => void): RunPaths {
  const paths = runPaths(cfg.out);
  if (cfg.resume) checkResumable(cfg);
  mkdirSync(cfg.out, { recursive: true });
  const removed = removeStaleTempFiles(cfg.out);
  if (removed.length > 0) log(`removed ${removed.length} temporary file(s) left by an interrupted write: ${removed.join(', ')}`);
  if (!cfg.resume) {
    const found = earlierRun(paths);
    if (found.length > 0 && !cfg.overwrite) {
      throw new Error(`${cfg.out} holds an earlier run (${found.map((f) => f.slice(cfg.out.length).replace(/^[\\/]/, '')).join(', ')}): ` +
        'pass --resume to continue it, --overwrite to replace it, or another --out');
    }
  }
  return paths;
}

/** --overwrite, once the new run is set up: the earlier run's checkpoints go (its log is restarted by MetricsLog.fresh). */
export function removeEarlierRun(paths: RunPaths, log: (line: string) => void): void {
  const found = earlierRun(paths);
  if (found.length === 0) return;
  for (const f of [paths.last, paths.best]) rmSync(f, { force: true });
  log(`--overwrite: replacing the earlier run in ${paths.dir}`);
}

type MetricsRecord = { type: 'step' | 'epoch'; epoch: number; step: number } & Record<string, unknown>;

/** The append-only metrics log of a run. */
export class MetricsLog {
  private constructor(readonly path: string) {}

  /** A fresh run: an empty log. */
  static fresh(path: string): MetricsLog {
    writeFileSync(path, '');
    return new MetricsLog(path);
  }

  /**
   * A resumed run: keeps the records the checkpoint covers (steps up to its global step, epochs it completed)
   * and drops the rest, and any line a kill cut short. Rewritten atomically.
   */
  static resumed(path: string, state: Pick<TrainerState, 'epoch' | 'globalStep'>): MetricsLog {
    const text = existsSync(path) ? readFileSync(path, 'utf8') : '';
    const kept: string[] = [];
    for (const line of text.split('\n')) {
      let record: MetricsRecord;
      try {
        record = JSON.parse(line) as MetricsRecord;
      } catch {
        continue; // empty, or torn by a kill mid-append
      }
      const covered = record.type === 'epoch' ? record.epoch <= state.epoch : record.step <= state.globalStep;
      if (covered) kept.push(line);
    }
    writeFileAtomicSync(path, kept.map((l) => `${l}\n`).join(''));
    return new MetricsLog(path);
  }

  append(record: MetricsRecord): void {
    appendFileSync(this.path, `${JSON.stringify(record)}\n`);
  }
}

/** config.json: the run's settings, for people and tools (the checkpoint holds its own copy). */
export function writeRunConfig(paths: RunPaths, config: Record<string, unknown>): void {
  writeFileAtomicSync(paths.config, `${JSON.stringify(config, null, 2)}\n`);
}
