// The training configuration: its keys, their defaults, and one schema (type, allowed values, range) that checks
// flags, config files and train() arguments alike, so every bad value gets the same message naming where it came
// from (the file, or the flag) and the key.
import { readFileSync } from 'node:fs';
import type { RecipeConfig } from '../kd/recipe.js';
import { parseRecipe } from '../kd/spec.js';

export interface TrainConfig {
  dataset: string; // 'fashion-mnist' | 'food11'
  data?: string; // dataset folder
  size: number; // Food-11 crop size
  model: string;
  teacher?: string; // teacher-outputs file (.safetensors)
  recipe: string | RecipeConfig;
  epochs: number;
  batch: number;
  lr: number;
  optimizer: 'adam' | 'adamw' | 'sgd';
  weightDecay: number;
  momentum: number;
  schedule: 'constant' | 'cosine' | 'step';
  warmupEpochs: number;
  minLr: number; // cosine floor
  stepEvery: number; // 'step' schedule: epochs between decays
  gamma: number; // 'step' schedule: decay factor
  clip: number; // global gradient-norm clip (0: off)
  seed: number;
  out: string; // run folder
  resume: boolean;
  overwrite: boolean; // a fresh run may replace the run already in `out`
  checkpointEvery: number; // seconds between mid-epoch checkpoints of last.safetensors (0: only at epoch ends)
  maxParams: number;
  augment: 'auto' | 'none' | 'flip' | 'flip+crop';
  validationSize: number;
  trainLimit: number; // use only the first N training samples (0: all)
  valLimit: number;
  maxSteps: number; // stop after this many steps in all (0: no limit); the run can be resumed
  logSteps: boolean;
  cacheDir?: string;
  quiet: boolean;
}

export const DEFAULT_CONFIG: TrainConfig = {
  dataset: 'fashion-mnist',
  size: 64,
  model: 'dwpw',
  recipe: 'ce',
  epochs: 10,
  batch: 64,
  lr: 3e-4,
  optimizer: 'adam',
  weightDecay: 1e-5,
  momentum: 0.9,
  schedule: 'constant',
  warmupEpochs: 0,
  minLr: 0,
  stepEvery: 10,
  gamma: 0.1,
  clip: 10,
  seed: 0,
  out: 'runs/latest',
  resume: false,
  overwrite: false,
  checkpointEvery: 300,
  maxParams: 60_000,
  augment: 'auto',
  validationSize: 5000,
  trainLimit: 0,
  valLimit: 0,
  maxSteps: 0,
  logSteps: false,
  quiet: false,
};

/** What one key accepts. Numbers: `min` inclusive unless `above` (exclusive); `integer` for counts. */
export type OptionSpec =
  | { type: 'number'; integer?: boolean; min?: number; above?: number; max?: number }
  | { type: 'string'; choices?: readonly string[] }
  | { type: 'boolean' }
  | { type: 'recipe' }; // a preset name, a '+'-joined spec, JSON text, or an object: checked by parseRecipe

const count = { type: 'number', integer: true, min: 0 } as const;
const nonNegative = { type: 'number', min: 0 } as const;

export const TRAIN_OPTIONS: Readonly<Record<keyof TrainConfig, OptionSpec>> = {
  dataset: { type: 'string', choices: ['fashion-mnist', 'food11'] },
  data: { type: 'string' },
  size: { type: 'number', integer: true, min: 8 },
  model: { type: 'string' }, // checked against the model registry when the run is set up
  teacher: { type: 'string' },
  recipe: { type: 'recipe' },
  epochs: { type: 'number', above: 0 },
  batch: { type: 'number', integer: true, min: 1 },
  lr: nonNegative,
  optimizer: { type: 'string', choices: ['adam', 'adamw', 'sgd'] },
  weightDecay: nonNegative,
  momentum: nonNegative,
  schedule: { type: 'string', choices: ['constant', 'cosine', 'step'] },
  warmupEpochs: nonNegative,
  minLr: nonNegative,
  stepEvery: { type: 'number', above: 0 },
  gamma: { type: 'number', above: 0 },
  clip: nonNegative,
  seed: count,
  out: { type: 'string' },
  resume: { type: 'boolean' },
  overwrite: { type: 'boolean' },
  checkpointEvery: nonNegative,
  maxParams: { type: 'number', integer: true, min: 1 },
  augment: { type: 'string', choices: ['auto', 'none', 'flip', 'flip+crop'] },
  validationSize: count,
  trainLimit: count,
  valLimit: count,
  maxSteps: count,
  logSteps: { type: 'boolean' },
  cacheDir: { type: 'string' },
  quiet: { type: 'boolean' },
};

/** Edit distance (insert, delete, substitute, swap two neighbours), for did-you-mean suggestions. */
function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.length][b.length];
}

/** The known name closest to `name` (spelling, case, or '-'/'_' apart), or null when none is close. */
export function closest(name: string, known: readonly string[]): string | null {
  const plain = (s: string) => s.toLowerCase().replace(/[-_]/g, '');
  let best: string | null = null;
  let bestDistance = Infinity;
  for (const k of known) {
    const d = editDistance(plain(name), plain(k));
    if (d < bestDistance) [best, bestDistance] = [k, d];
  }
  return best !== null && bestDistance <= Math.max(1, Math.floor(plain(name).length / 3)) ? best : null;
}

/** The problem with `value` for an option, or null when it fits. `label` says which option (a flag or a key). */
export function optionProblem(spec: OptionSpec, value: unknown, label: string): string | null {
  const got = typeof value === 'string' ? JSON.stringify(value) : Array.isArray(value) ? 'a list' : value === null ? 'null' : String(value);
  switch (spec.type) {
    case 'boolean':
      return typeof value === 'boolean' ? null : `${label} must be true or false, got ${got}`;
    case 'recipe':
      if (typeof value !== 'string' && (typeof value !== 'object' || value === null || Array.isArray(value))) {
        return `${label} must be a recipe name, spec or object (e.g. "kd+rkd" or {"ce": 0.5, "kd": 0.5}), got ${got}`;
      }
      try {
        parseRecipe(value as string | RecipeConfig, label.replace(/'/g, '')); // every key at every depth, located
        return null;
      } catch (err) {
        return (err as Error).message;
      }
    case 'string':
      if (typeof value !== 'string') return `${label} must be a string, got ${got}`;
      if (spec.choices && !spec.choices.includes(value)) {
        const near = closest(value, spec.choices);
        return `${label} ${got} is not one of ${spec.choices.join(', ')}${near ? ` (did you mean ${near}?)` : ''}`;
      }
      return null;
    case 'number': {
      if (typeof value !== 'number' || !Number.isFinite(value)) return `${label} must be a number, got ${typeof value === 'string' ? `the string ${got}` : got}`;
      if (spec.integer && !Number.isInteger(value)) return `${label} must be a whole number, got ${value}`;
      if (spec.min !== undefined && value < spec.min) return `${label} must be >= ${spec.min}, got ${value}`;
      if (spec.above !== undefined && !(value > spec.above)) return `${label} must be > ${spec.above}, got ${value}`;
      if (spec.max !== undefined && value > spec.max) return `${label} must be <= ${spec.max}, got ${value}`;
      return null;
    }
  }
}

/**
 * Checks an object of train options against TRAIN_OPTIONS: unknown keys (with a did-you-mean), types, allowed
 * values, ranges. `where` names the source ('run.json', 'train()'); `label` spells a key the way that source
 * does (a flag: --batch; a file: 'batch'). All problems are reported together, one per line.
 */
export function checkTrainOptions(values: Record<string, unknown>, where: string, label: (key: string) => string = (k) => `'${k}'`): Partial<TrainConfig> {
  const known = Object.keys(TRAIN_OPTIONS);
  const problems: string[] = [];
  for (const [key, value] of Object.entries(values)) {
    if (value === undefined) continue; // an optional key left unset
    const spec = (TRAIN_OPTIONS as Record<string, OptionSpec>)[key];
    if (!spec || !Object.prototype.hasOwnProperty.call(TRAIN_OPTIONS, key)) {
      const near = closest(key, known);
      problems.push(`${label(key)} is not a train option${near ? ` (did you mean ${label(near)}?)` : ''}`);
      continue;
    }
    const problem = optionProblem(spec, value, label(key));
    if (problem) problems.push(problem);
  }
  if (problems.length === 1) throw new Error(`${where}: ${problems[0]}`);
  if (problems.length > 1) throw new Error(`${where}: ${problems.length} problems:\n  ${problems.join('\n  ')}`);
  return values as Partial<TrainConfig>;
}

/** Reads and checks a --config file: a JSON object of train options (keys as in TrainConfig, e.g. "trainLimit"). */
export function readConfigFile(path: string): Partial<TrainConfig> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new Error(`config file ${path}: cannot read it (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new Error(`config file ${path} is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new Error(`config file ${path} must hold a JSON object of train options ({"epochs": 2, ...}), got ${Array.isArray(json) ? 'a list' : json === null ? 'null' : typeof json}`);
  }
  return checkTrainOptions(json as Record<string, unknown>, `config file ${path}`);
}
