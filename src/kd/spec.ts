// Recipe specs: what a user writes (a preset name or JSON), strictly validated at every depth, and the expanded
// form with every default filled in (what actually runs; printed at the start of training, stored in config.json
// and the checkpoint). Formulas and sources: ../../docs/kd.md.
//
//   {"ce": 0.5, "kd": {"weight": 0.5, "T": 4}, "rkd": {"distance": 25, "angle": 50}}
//
// A number where a term takes an object is its weight ({"ce": 0.5} = {"ce": {"weight": 0.5}}); rkd has two
// weights (distance, angle) and takes only an object. Naming some of rkd's parts runs only those parts.

export type FitnetStages = 'single' | 'two-stage';
/** 'conv-bn': wgkd's regressor; 'convreg': ConvReg of the common KD codebases (docs/kd.md, FitNet). */
export type RegressorKind = 'conv-bn' | 'convreg';
/** 'off-diagonal': mu = mean of d_ij over i != j; 'positive': the RKD authors' code (pdist clamped, mean over d > 0). */
export type RkdDistanceMean = 'off-diagonal' | 'positive';

export interface RecipeConfig {
  /** Hard-label cross-entropy on the student's logits. */
  ce?: number | { weight?: number; labelSmoothing?: number };
  /** Hinton KD: T^2 * KL(p_t || p_s), batchmean. */
  kd?: number | { weight?: number; T?: number };
  /** FitNet hints: mean squared error between regressor(student map) and the teacher's hint map. */
  fitnet?: number | { weight?: number; student?: string; teacher?: string; stages?: FitnetStages; hintEpochs?: number; regressor?: RegressorKind };
  /** Relational KD on embeddings: distance-wise and angle-wise smooth-L1. */
  rkd?: { distance?: number; angle?: number; distanceMean?: RkdDistanceMean };
  /** The course's distance-metric loss: mse(cdist(e_s), cdist(e_t)); `normalize` divides by the mean distance (RKD). */
  dm?: number | { weight?: number; normalize?: boolean };
  /** Decoupled KD: alpha*T^2*TCKD + beta*T^2*NCKD, scaled by min(epoch / warmup, 1) when warmup > 0. */
  dkd?: number | { weight?: number; alpha?: number; beta?: number; T?: number; warmup?: number };
}

/** A recipe with every default filled in: only the terms the spec names, each with all of its fields. */
export interface ExpandedRecipe {
  ce?: { weight: number; labelSmoothing: number };
  kd?: { weight: number; T: number };
  fitnet?: { weight: number; student: string; teacher: string; stages: FitnetStages; hintEpochs?: number; regressor: RegressorKind };
  rkd?: { distance: number; angle: number; distanceMean: RkdDistanceMean };
  dm?: { weight: number; normalize: boolean };
  dkd?: { weight: number; alpha: number; beta: number; T: number; warmup: number };
}

export type TermName = keyof ExpandedRecipe;
export const TERMS: TermName[] = ['ce', 'kd', 'dkd', 'fitnet', 'rkd', 'dm'];

/** Named presets (the rows of docs/results.md). */
export const PRESETS: Record<string, RecipeConfig> = {
  ce: { ce: 1 },
  kd: { ce: 0.5, kd: { weight: 0.5, T: 4 } },
  'kd+rkd': { ce: 0.5, kd: { weight: 0.5, T: 4 }, rkd: { distance: 25, angle: 50 } },
  rkd: { ce: 1, rkd: { distance: 25, angle: 50 } },
  fitnet: { ce: 1, fitnet: { weight: 100, student: 'auto', teacher: 'auto' } },
  dkd: { ce: 1, dkd: { alpha: 1, beta: 8, T: 4 } },
  dm: { ce: 0.5, dm: { weight: 0.5 } },
};

/** RKD's two parts at the paper's weights (Park et al. 2019, classification): used when rkd names neither. */
export const RKD_PAPER_WEIGHTS = { distance: 25, angle: 50 } as const;

// ---- the schema: every key of every term, its kind and default ------------------------------------------------

type Field =
  | { kind: 'weight'; default: number } // finite, >= 0
  | { kind: 'positive'; default: number } // finite, > 0
  | { kind: 'fraction'; default: number } // in [0, 1)
  | { kind: 'epochs'; default: number } // an integer >= 1
  | { kind: 'nonnegative'; default: number } // finite, >= 0 (not a weight: a count of epochs)
  | { kind: 'boolean'; default: boolean }
  | { kind: 'string'; default: string }
  | { kind: 'enum'; values: readonly string[]; default: string };

const SCHEMA: Record<TermName, Record<string, Field>> = {
  ce: { weight: { kind: 'weight', default: 1 }, labelSmoothing: { kind: 'fraction', default: 0 } },
  kd: { weight: { kind: 'weight', default: 1 }, T: { kind: 'positive', default: 4 } },
  dkd: {
    weight: { kind: 'weight', default: 1 },
    alpha: { kind: 'weight', default: 1 },
    beta: { kind: 'weight', default: 8 },
    T: { kind: 'positive', default: 4 },
    warmup: { kind: 'nonnegative', default: 0 },
  },
  fitnet: {
    weight: { kind: 'weight', default: 100 },
    student: { kind: 'string', default: 'auto' },
    teacher: { kind: 'string', default: 'auto' },
    stages: { kind: 'enum', values: ['single', 'two-stage'], default: 'single' },
    hintEpochs: { kind: 'epochs', default: 1 },
    regressor: { kind: 'enum', values: ['conv-bn', 'convreg'], default: 'conv-bn' },
  },
  rkd: {
    distance: { kind: 'weight', default: RKD_PAPER_WEIGHTS.distance },
    angle: { kind: 'weight', default: RKD_PAPER_WEIGHTS.angle },
    distanceMean: { kind: 'enum', values: ['off-diagonal', 'positive'], default: 'off-diagonal' },
  },
  dm: { weight: { kind: 'weight', default: 1 }, normalize: { kind: 'boolean', default: false } },
};

/** Terms whose spec may be a bare number (the weight). */
const NUMBER_IS_WEIGHT = new Set<TermName>(['ce', 'kd', 'dkd', 'fitnet', 'dm']);

// ---- did-you-mean ----------------------------------------------------------------------------------------------

/** Names people write for a key that is spelt otherwise here (lower case, without '_' and '-'). */
const SYNONYMS: Record<string, string> = {
  temperature: 'T',
  temp: 'T',
  tau: 'T',
  smoothing: 'labelSmoothing',
  labelsmooth: 'labelSmoothing',
  warmupepochs: 'warmup',
  hintepoch: 'hintEpochs',
  crossentropy: 'ce',
  hinton: 'kd',
  fitnets: 'fitnet',
  relational: 'rkd',
  decoupled: 'dkd',
};

const fold = (s: string) => s.toLowerCase().replace(/[-_ ]/g, '');

/** Edit distance with adjacent transpositions counted as one edit ('angel' -> 'angle' is 1). */
function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.length][b.length];
}

/** The allowed name closest to `got` (case, '_' and '-' ignored; known synonyms), or null when none is close. */
export function didYouMean(got: string, allowed: readonly string[]): string | null {
  const g = fold(got);
  const synonym = SYNONYMS[g];
  if (synonym && allowed.includes(synonym)) return synonym;
  let best: string | null = null;
  let bestDistance = Infinity;
  for (const name of allowed) {
    const n = fold(name);
    const d = editDistance(g, n);
    const prefix = g.length >= 3 && (n.startsWith(g) || g.startsWith(n));
    const limit = n.length <= 3 ? 1 : Math.max(2, Math.floor(n.length / 3));
    if ((d <= limit || prefix) && d < bestDistance) {
      best = name;
      bestDistance = d;
    }
  }
  return best;
}

function hint(got: string, allowed: readonly string[]): string {
  const guess = didYouMean(got, allowed);
  return guess ? `did you mean '${guess}'? ` : '';
}

// ---- validation ------------------------------------------------------------------------------------------------

const show = (v: unknown) => (v === undefined ? 'undefined' : typeof v === 'number' ? String(v) : JSON.stringify(v));
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function checkField(where: string, field: Field, value: unknown): void {
  const fail = (expected: string) => {
    throw new Error(`${where}: expected ${expected}, got ${show(value)}`);
  };
  switch (field.kind) {
    case 'weight':
    case 'nonnegative':
      if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) fail(`a finite number >= 0${field.kind === 'weight' ? ' (a weight)' : ''}`);
      return;
    case 'positive':
      if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) fail('a finite number > 0');
      return;
    case 'fraction':
      if (typeof value !== 'number' || !(value >= 0 && value < 1)) fail('a number in [0, 1)');
      return;
    case 'epochs':
      if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) fail('an integer >= 1 (epochs)');
      return;
    case 'boolean':
      if (typeof value !== 'boolean') fail('true or false');
      return;
    case 'string':
      if (typeof value !== 'string' || value === '') fail('a non-empty string');
      return;
    case 'enum':
      if (typeof value !== 'string' || !field.values.includes(value)) {
        const guess = typeof value === 'string' ? hint(value, field.values) : '';
        throw new Error(`${where}: expected one of ${field.values.map((v) => `'${v}'`).join(', ')}, got ${show(value)}${guess ? ` (${guess.trim()})` : ''}`);
      }
  }
}

function checkTerm(where: string, term: TermName, spec: unknown): void {
  const schema = SCHEMA[term];
  if (typeof spec === 'number' && NUMBER_IS_WEIGHT.has(term)) return checkField(where, schema.weight, spec);
  if (!isObject(spec)) {
    const shapes = NUMBER_IS_WEIGHT.has(term) ? 'a weight (number) or an object' : 'an object';
    throw new Error(`${where}: expected ${shapes} with keys ${Object.keys(schema).join(', ')}, got ${show(spec)}`);
  }
  const allowed = Object.keys(schema);
  for (const [key, value] of Object.entries(spec)) {
    if (!(key in schema)) throw new Error(`${where}.${key}: unknown key (${hint(key, allowed)}keys of ${term}: ${allowed.join(', ')})`);
    checkField(`${where}.${key}`, schema[key], value);
  }
  if (term === 'fitnet' && spec.hintEpochs !== undefined && spec.stages !== 'two-stage') {
    throw new Error(`${where}.hintEpochs: only used with "stages": "two-stage" (got stages ${show(spec.stages ?? 'single')})`);
  }
}

/**
 * Reads a recipe: a preset name, a JSON string or an object, validated at every depth (unknown keys with a
 * did-you-mean and the allowed keys, types, ranges). Errors say where: `${context}.kd.T: ...`; pass e.g.
 * 'run.json: recipe' as the context to name a config file. Returns the spec as written (a copy); expandRecipe
 * fills in the defaults.
 */
export function parseRecipe(spec: string | RecipeConfig, context = 'recipe'): RecipeConfig {
  let value: unknown = spec;
  if (typeof spec === 'string') {
    const trimmed = spec.trim();
    if (trimmed.startsWith('{')) {
      try {
        value = JSON.parse(trimmed);
      } catch (err) {
        throw new Error(`${context}: invalid JSON ${trimmed}: ${(err as Error).message}`);
      }
    } else {
      const preset = PRESETS[trimmed];
      if (!preset) {
        const names = Object.keys(PRESETS);
        throw new Error(`${context}: unknown preset '${trimmed}' (${hint(trimmed, names)}presets: ${names.join(', ')}; or a JSON object)`);
      }
      return structuredClone(preset);
    }
  }
  if (!isObject(value)) throw new Error(`${context}: expected a preset name or an object of loss terms, got ${show(value)}`);
  const entries = Object.entries(value);
  if (entries.length === 0) throw new Error(`${context}: no loss term (terms: ${TERMS.join(', ')})`);
  for (const [term, termSpec] of entries) {
    if (!(TERMS as string[]).includes(term)) throw new Error(`${context}.${term}: unknown term (${hint(term, TERMS)}terms: ${TERMS.join(', ')})`);
    checkTerm(`${context}.${term}`, term as TermName, termSpec);
  }
  const config = structuredClone(value) as RecipeConfig;
  if (Object.values(termWeights(expandChecked(config))).every((w) => w === 0)) {
    throw new Error(`${context}: every term has weight 0 (${JSON.stringify(value)})`);
  }
  return config;
}

// ---- expansion -------------------------------------------------------------------------------------------------

/** The term's fields with every default filled in (spec already checked). */
function fill(term: TermName, spec: unknown): Record<string, unknown> {
  const given: Record<string, unknown> = typeof spec === 'number' ? { weight: spec } : { ...(spec as Record<string, unknown>) };
  const out: Record<string, unknown> = {};
  for (const [key, field] of Object.entries(SCHEMA[term])) out[key] = given[key] ?? field.default;
  return out;
}

function expandChecked(config: RecipeConfig): ExpandedRecipe {
  const out: Record<string, unknown> = {};
  for (const term of TERMS) {
    const spec = config[term];
    if (spec === undefined) continue;
    const full = fill(term, spec);
    if (term === 'rkd') {
      // Naming some parts runs only those; naming none keeps the paper's pair.
      const named = spec as { distance?: number; angle?: number };
      if (named.distance !== undefined || named.angle !== undefined) {
        full.distance = named.distance ?? 0;
        full.angle = named.angle ?? 0;
      }
    }
    if (term === 'fitnet' && full.stages !== 'two-stage') delete full.hintEpochs; // meaningless in one stage
    out[term] = full;
  }
  return out as ExpandedRecipe;
}

/** The recipe with every default filled in: what runs. Idempotent (its output parses and expands to itself). */
export function expandRecipe(spec: string | RecipeConfig, context = 'recipe'): ExpandedRecipe {
  return expandChecked(parseRecipe(spec, context));
}

/** The weight of each loss part that can appear in the logs (rkd's two parts separately). */
export function termWeights(recipe: ExpandedRecipe): Record<string, number> {
  const weights: Record<string, number> = {};
  for (const term of TERMS) {
    const t = recipe[term];
    if (!t) continue;
    if (term === 'rkd') {
      const r = t as NonNullable<ExpandedRecipe['rkd']>;
      weights.rkd_distance = r.distance;
      weights.rkd_angle = r.angle;
    } else {
      weights[term] = (t as { weight: number }).weight;
    }
  }
  return weights;
}
