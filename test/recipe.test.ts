// Recipes say exactly what they compute (issue 13): strict specs (did-you-mean at every depth, types, ranges,
// where), the expanded spec, `wgkd recipe explain`, a spec naming some parts runs only those parts, and every
// published variant (RKD authors' pdist, DKD warm-up, FitNet's ConvReg) against a float64 reference of its source.
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { PRESETS, Recipe, Tensor, expandRecipe, explainRecipe, parseRecipe, recipeCommand, rng, type RecipeConfig } from '../src/index.js';
import { rkdDistance } from '../src/ops/relational.js';
import { checkOp, expectClose, maxRelError } from './helpers/check.js';
import { useDevice } from './helpers/device.js';
import * as rel from './reference/relational.js';
import * as loss from './reference/loss.js';
import * as conv from './reference/conv.js';
import * as pool from './reference/pool.js';
import * as pub from './reference/recipe.js';

// ---- specs (no GPU) -------------------------------------------------------------------------------------------

describe('recipe specs: expansion', () => {
  it('every preset expands, and the expansion parses and expands to itself (config.json can be reused)', () => {
    for (const name of Object.keys(PRESETS)) {
      const expanded = expandRecipe(name);
      expect(expandRecipe(expanded as RecipeConfig), name).toEqual(expanded);
      expect(expandRecipe(JSON.stringify(expanded)), name).toEqual(expanded);
    }
    expect(expandRecipe('kd')).toEqual({ ce: { weight: 0.5, labelSmoothing: 0 }, kd: { weight: 0.5, T: 4 } });
    expect(expandRecipe('dkd').dkd).toEqual({ weight: 1, alpha: 1, beta: 8, T: 4, warmup: 0 });
    expect(expandRecipe('fitnet').fitnet).toEqual({ weight: 100, student: 'auto', teacher: 'auto', stages: 'single', regressor: 'conv-bn' });
    expect(expandRecipe('dm').dm).toEqual({ weight: 0.5, normalize: false });
  });

  it('rkd: naming some parts runs only those; naming none (and the presets) keeps the paper pair 25 / 50', () => {
    expect(expandRecipe({ rkd: { distance: 1 } }).rkd).toEqual({ distance: 1, angle: 0, distanceMean: 'off-diagonal' });
    expect(expandRecipe({ rkd: { angle: 3 } }).rkd).toEqual({ distance: 0, angle: 3, distanceMean: 'off-diagonal' });
    expect(expandRecipe({ rkd: {} }).rkd).toEqual({ distance: 25, angle: 50, distanceMean: 'off-diagonal' });
    expect(expandRecipe({ rkd: { distanceMean: 'positive' } }).rkd).toEqual({ distance: 25, angle: 50, distanceMean: 'positive' });
    expect(expandRecipe('rkd').rkd).toEqual({ distance: 25, angle: 50, distanceMean: 'off-diagonal' });
    expect(expandRecipe('kd+rkd').rkd).toEqual({ distance: 25, angle: 50, distanceMean: 'off-diagonal' });
  });

  it('a number is the weight; two-stage FitNet fills hintEpochs; only the named terms appear', () => {
    expect(expandRecipe({ ce: 0.3, dm: 2 })).toEqual({ ce: { weight: 0.3, labelSmoothing: 0 }, dm: { weight: 2, normalize: false } });
    expect(expandRecipe({ fitnet: { stages: 'two-stage' } }).fitnet).toEqual({ weight: 100, student: 'auto', teacher: 'auto', stages: 'two-stage', hintEpochs: 1, regressor: 'conv-bn' });
    expect(expandRecipe({ dkd: { warmup: 20 } }).dkd).toEqual({ weight: 1, alpha: 1, beta: 8, T: 4, warmup: 20 });
  });
});

describe('recipe specs: misspelt keys at every depth are errors with a did-you-mean, the allowed keys and where', () => {
  const misspelt: [RecipeConfig | string, RegExp][] = [
    [{ rkdd: {} } as RecipeConfig, /^recipe\.rkdd: unknown term \(did you mean 'rkd'\? terms: ce, kd, dkd, fitnet, rkd, dm\)$/],
    ['kdd', /^recipe: unknown preset 'kdd' \(did you mean 'kd'\? presets: ce, kd, kd\+rkd, rkd, fitnet, dkd, dm; or a JSON object\)$/],
    [{ ce: { wieght: 1 } } as RecipeConfig, /^recipe\.ce\.wieght: unknown key \(did you mean 'weight'\? keys of ce: weight, labelSmoothing\)$/],
    [{ ce: { label_smoothing: 0.1 } } as RecipeConfig, /^recipe\.ce\.label_smoothing: unknown key \(did you mean 'labelSmoothing'\?/],
    [{ kd: { temperature: 8 } } as RecipeConfig, /^recipe\.kd\.temperature: unknown key \(did you mean 'T'\? keys of kd: weight, T\)$/],
    [{ dkd: { alfa: 1 } } as RecipeConfig, /^recipe\.dkd\.alfa: unknown key \(did you mean 'alpha'\? keys of dkd: weight, alpha, beta, T, warmup\)$/],
    [{ dkd: { warmup_epochs: 20 } } as RecipeConfig, /^recipe\.dkd\.warmup_epochs: unknown key \(did you mean 'warmup'\?/],
    [{ fitnet: { stage: 'two-stage' } } as RecipeConfig, /^recipe\.fitnet\.stage: unknown key \(did you mean 'stages'\? keys of fitnet: weight, student, teacher, stages, hintEpochs, regressor\)$/],
    [{ fitnet: { regresor: 'convreg' } } as RecipeConfig, /^recipe\.fitnet\.regresor: unknown key \(did you mean 'regressor'\?/],
    [{ fitnet: { stages: 'two-stage', hint_epochs: 2 } } as RecipeConfig, /^recipe\.fitnet\.hint_epochs: unknown key \(did you mean 'hintEpochs'\?/],
    [{ rkd: { angel: 50 } } as RecipeConfig, /^recipe\.rkd\.angel: unknown key \(did you mean 'angle'\? keys of rkd: distance, angle, distanceMean\)$/],
    [{ rkd: { distanse: 1 } } as RecipeConfig, /^recipe\.rkd\.distanse: unknown key \(did you mean 'distance'\?/],
    [{ dm: { normalise: true } } as RecipeConfig, /^recipe\.dm\.normalise: unknown key \(did you mean 'normalize'\? keys of dm: weight, normalize\)$/],
  ];
  for (const [spec, message] of misspelt) {
    it(JSON.stringify(spec), () => {
      expect(() => parseRecipe(spec)).toThrow(message);
      if (typeof spec !== 'string') expect(() => parseRecipe(JSON.stringify(spec))).toThrow(message); // same from JSON text
    });
  }

  it('a key with no near match lists the allowed keys without a guess', () => {
    expect(() => parseRecipe({ kd: { xyz: 1 } } as RecipeConfig)).toThrow(/^recipe\.kd\.xyz: unknown key \(keys of kd: weight, T\)$/);
  });

  it('the context names the file: parseRecipe(spec, "run.json: recipe")', () => {
    expect(() => parseRecipe({ kd: { temperature: 8 } } as RecipeConfig, 'run.json: recipe')).toThrow(/^run\.json: recipe\.kd\.temperature: unknown key/);
    expect(() => parseRecipe('kdd', 'run.json: recipe')).toThrow(/^run\.json: recipe: unknown preset 'kdd'/);
    expect(() => parseRecipe('{"kd": ', 'run.json: recipe')).toThrow(/^run\.json: recipe: invalid JSON/);
  });
});

describe('recipe specs: types and ranges', () => {
  const bad: [unknown, RegExp][] = [
    [{ kd: { T: 0 } }, /^recipe\.kd\.T: expected a finite number > 0, got 0$/],
    [{ kd: { T: -1 } }, /^recipe\.kd\.T: expected a finite number > 0, got -1$/],
    [{ kd: { T: '4' } }, /^recipe\.kd\.T: expected a finite number > 0, got "4"$/],
    [{ dkd: { T: Infinity } }, /^recipe\.dkd\.T: expected a finite number > 0, got Infinity$/],
    [{ ce: -1 }, /^recipe\.ce: expected a finite number >= 0 \(a weight\), got -1$/],
    [{ kd: { weight: Number.NaN } }, /^recipe\.kd\.weight: expected a finite number >= 0 \(a weight\)/],
    [{ rkd: { angle: -50 } }, /^recipe\.rkd\.angle: expected a finite number >= 0 \(a weight\), got -50$/],
    [{ dkd: { beta: '8' } }, /^recipe\.dkd\.beta: expected a finite number >= 0 \(a weight\), got "8"$/],
    [{ dkd: { warmup: -20 } }, /^recipe\.dkd\.warmup: expected a finite number >= 0, got -20$/],
    [{ ce: { labelSmoothing: 1 } }, /^recipe\.ce\.labelSmoothing: expected a number in \[0, 1\), got 1$/],
    [{ dm: { normalize: 'yes' } }, /^recipe\.dm\.normalize: expected true or false, got "yes"$/],
    [{ fitnet: { stages: 'two_stage' } }, /^recipe\.fitnet\.stages: expected one of 'single', 'two-stage', got "two_stage" \(did you mean 'two-stage'\?\)$/],
    [{ fitnet: { regressor: 'conreg' } }, /^recipe\.fitnet\.regressor: expected one of 'conv-bn', 'convreg', got "conreg" \(did you mean 'convreg'\?\)$/],
    [{ rkd: { distanceMean: 'positiv' } }, /^recipe\.rkd\.distanceMean: expected one of 'off-diagonal', 'positive', got "positiv"/],
    [{ fitnet: { student: 3 } }, /^recipe\.fitnet\.student: expected a non-empty string, got 3$/],
    [{ fitnet: { hintEpochs: 2 } }, /^recipe\.fitnet\.hintEpochs: only used with "stages": "two-stage" \(got stages "single"\)$/],
    [{ fitnet: { stages: 'two-stage', hintEpochs: 0 } }, /^recipe\.fitnet\.hintEpochs: expected an integer >= 1 \(epochs\), got 0$/],
    [{ fitnet: { stages: 'two-stage', hintEpochs: 1.5 } }, /^recipe\.fitnet\.hintEpochs: expected an integer >= 1 \(epochs\), got 1.5$/],
    [{ rkd: 1 }, /^recipe\.rkd: expected an object with keys distance, angle, distanceMean, got 1$/],
    [{ kd: [0.5] }, /^recipe\.kd: expected a weight \(number\) or an object with keys weight, T, got \[0.5\]$/],
    [{ kd: null }, /^recipe\.kd: expected a weight \(number\) or an object with keys weight, T, got null$/],
    [{}, /^recipe: no loss term \(terms: ce, kd, dkd, fitnet, rkd, dm\)$/],
    [[{ ce: 1 }], /^recipe: expected a preset name or an object of loss terms, got \[\{"ce":1\}\]$/],
    [{ ce: 0, rkd: { distance: 0 } }, /^recipe: every term has weight 0/],
  ];
  for (const [spec, message] of bad) {
    it(String(JSON.stringify(spec)), () => expect(() => parseRecipe(spec as RecipeConfig)).toThrow(message));
  }
});

describe('wgkd recipe explain', () => {
  it('prints, for every preset, the expanded spec, each part with its formula and the teacher tensors it needs', () => {
    const all = recipeCommand(['explain']);
    for (const name of Object.keys(PRESETS)) {
      const one = explainRecipe(name);
      expect(all).toContain(one);
      expect(one).toContain(`recipe '${name}' (preset)`);
      expect(one).toContain(`expanded: ${JSON.stringify(expandRecipe(name))}`);
    }
    expect(explainRecipe('kd')).toMatch(/kd +weight 0\.5: T\^2 \* \(1\/B\) sum_b sum_c p_t\^T log\(p_t\^T \/ p_s\^T\).*T = 4.*\n +needs from the teacher file: logits/);
    expect(explainRecipe('kd')).toMatch(/ce +weight 0\.5: cross-entropy .*label smoothing 0.*\n +needs from the teacher file: nothing/);
    expect(explainRecipe('rkd')).toMatch(/loss = 1 \* ce \+ 25 \* rkd_distance \+ 50 \* rkd_angle/);
    expect(explainRecipe('rkd')).toMatch(/rkd_angle +weight 50: smoothL1\(a_s, a_t\).*\n +needs from the teacher file: embedding/);
    expect(explainRecipe('fitnet')).toMatch(/fitnet +weight 100: mean over all elements of \(r\(f_s\) - f_t\)\^2, r = conv without bias \+ BN/);
    expect(explainRecipe('fitnet')).toMatch(/needs from the teacher file: hint\.<name> \(auto: the first hint in the file\)/);
    expect(explainRecipe('dkd')).toMatch(/dkd +weight 1: 1 \* T\^2 \* TCKD \+ 8 \* T\^2 \* NCKD, T = 4.*\n +needs from the teacher file: logits; no warm-up/);
    expect(explainRecipe('dm')).toMatch(/dm +weight 0\.5: mse\(cdist\(e_s, e_s\), cdist\(e_t, e_t\)\) on raw distances/);
    expect(explainRecipe('ce')).toMatch(/teacher tensors: none \(no --teacher needed\)/);
  });

  it('any JSON spec: a part of weight 0 is shown as not computed; the options appear in the formulas', () => {
    const text = explainRecipe('{"rkd": {"distance": 1}}');
    expect(text).toContain('expanded: {"rkd":{"distance":1,"angle":0,"distanceMean":"off-diagonal"}}');
    expect(text).toMatch(/loss = 1 \* rkd_distance\n/);
    expect(text).toMatch(/rkd_angle +weight 0: not computed \(not in the logs, not in the gradient\)/);
    expect(explainRecipe({ fitnet: { teacher: 'layer2', regressor: 'convreg', stages: 'two-stage', hintEpochs: 3 } })).toMatch(
      /r = ConvReg: conv with bias \+ BN \+ ReLU.*\n.*needs from the teacher file: hint\.layer2; two-stage: only this part trains in the first 3 epoch\(s\)/,
    );
    expect(explainRecipe({ dkd: { warmup: 20 } })).toMatch(/weight scaled by min\(epoch \/ 20, 1\), epochs counted from 1/);
    expect(explainRecipe({ rkd: { distanceMean: 'positive' } })).toMatch(/mu = mean of d_ij over d_ij > 0 with squared distances clamped at 1e-12/);
    expect(() => recipeCommand(['explain', '{"kd": {"temperature": 8}}'])).toThrow(/recipe\.kd\.temperature: unknown key \(did you mean 'T'\?/);
    expect(() => recipeCommand(['explian'])).toThrow(/recipe: unknown subcommand 'explian' \(explain\)/);
  });

  it('the CLI command prints every preset, and a bad spec is an error (exit 1) that says where', () => {
    const r = spawnSync(process.execPath, ['bin/wgkd.js', 'recipe', 'explain'], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(r.stdout.trim()).toBe(recipeCommand(['explain']));
    const bad = spawnSync(process.execPath, ['bin/wgkd.js', 'recipe', 'explain', '{"dm": {"normalise": true}}'], { encoding: 'utf8' });
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/wgkd: recipe\.dm\.normalise: unknown key \(did you mean 'normalize'\?/);
  });
});

// ---- what runs (GPU) against float64 references ----------------------------------------------------------------

useDevice();

function gaussian(n: number, seed: number, std = 1): Float64Array {
  const next = rng(seed);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = std * Math.sqrt(-2 * Math.log(1 - next())) * Math.cos(2 * Math.PI * next());
  return Float64Array.from(Float32Array.from(out)); // the values the GPU sees
}

/** Rows of `base` [rows, d] with row `copy` replaced by row `of` for each pair. */
function withCopies(base: Float64Array, d: number, pairs: [number, number][]): Float64Array {
  const out = Float64Array.from(base);
  for (const [copy, of] of pairs) out.set(base.subarray(of * d, of * d + d), copy * d);
  return out;
}

const NO_TEACHER_MAPS = { hasLogits: true, hasEmbedding: true, hints: {} };

/** d smooth_l1(x, y).mean() / dx (beta 1). */
function smoothL1Grad(x: Float64Array, y: Float64Array): Float64Array {
  return x.map((v, i) => Math.max(-1, Math.min(1, v - y[i])) / x.length);
}

interface Embeddings {
  recipe: Recipe;
  s: Float64Array;
  t: Float64Array;
  e: Tensor;
  terms: ReturnType<Recipe['compute']>;
}

function runOnEmbeddings(spec: RecipeConfig, s: Float64Array, t: Float64Array, batch: number, ds: number, dt: number): Embeddings {
  const recipe = new Recipe(spec, {}, NO_TEACHER_MAPS);
  const e = Tensor.fromArray(s, [batch, ds], { requiresGrad: true });
  const features = { logits: Tensor.zeros([batch, 3]), embedding: e, maps: {} };
  const labels = Tensor.fromArray(new Array(batch).fill(0), [batch], { dtype: 'i32' });
  const terms = recipe.compute(features, labels, { embedding: Tensor.fromArray(t, [batch, dt]) });
  return { recipe, s, t, e, terms };
}

describe('a spec naming some parts runs only those (tolerance: value rel 1e-5, gradient rel 1e-4)', () => {
  const B = 6;
  const DS = 5;
  const DT = 9;
  const s = gaussian(B * DS, 1);
  const t = gaussian(B * DT, 2);
  const distanceLoss = pub.smoothL1Mean(rel.rkdDistance(s, B, DS), rel.rkdDistance(t, B, DT));
  const angleLoss = pub.smoothL1Mean(rel.rkdAngle(s, B, DS), rel.rkdAngle(t, B, DT));
  const distanceGrad = rel.rkdDistanceBackward(s, B, DS, smoothL1Grad(rel.rkdDistance(s, B, DS), rel.rkdDistance(t, B, DT)));
  const angleGrad = rel.rkdAngleBackward(s, B, DS, smoothL1Grad(rel.rkdAngle(s, B, DS), rel.rkdAngle(t, B, DT)));

  it('{"rkd": {"distance": 1}}: one part, the distance loss alone, and its gradient has no angle part', async () => {
    const { e, terms } = runOnEmbeddings({ rkd: { distance: 1 } }, s, t, B, DS, DT);
    expect(Object.keys(terms.parts)).toEqual(['rkd_distance']);
    expectClose(await terms.total.toArray(), [distanceLoss], 1e-5, 'total');
    terms.total.backward();
    const grad = await e.grad!.toArray();
    expectClose(grad, distanceGrad, 1e-4, 'd total / d e_s');
    // The gradient with the angle part at weight 50 (what the spec used to run) is far from it.
    const withAngle = distanceGrad.map((v, i) => v + 50 * angleGrad[i]);
    expect(maxRelError(grad, withAngle).err).toBeGreaterThan(0.5);
  });

  it('{"rkd": {}}: both parts at 25 and 50, value and gradient', async () => {
    const { e, terms } = runOnEmbeddings({ rkd: {} }, s, t, B, DS, DT);
    expect(Object.keys(terms.parts)).toEqual(['rkd_distance', 'rkd_angle']);
    expectClose(await terms.parts.rkd_angle.toArray(), [angleLoss], 1e-5, 'rkd_angle part');
    expectClose(await terms.total.toArray(), [25 * distanceLoss + 50 * angleLoss], 1e-5, 'total');
    terms.total.backward();
    expectClose(await e.grad!.toArray(), distanceGrad.map((v, i) => 25 * v + 50 * angleGrad[i]), 1e-4, 'd total / d e_s');
  });
});

describe("RKD distanceMean 'positive': the RKD authors' pdist (clamped at 1e-12, mean over d > 0)", () => {
  it('psi against the authors\' formula (forward rel 1e-5; gradient vs finite differences of it, rel 1e-4)', async () => {
    await checkOp({
      name: "rkdDistance pdistClamp 1e-12 vs the authors' pdist",
      inputs: { e: { shape: [7, 5] } },
      gpu: (x) => rkdDistance(x.e, { pdistClamp: 1e-12 }),
      ref: (x) => pub.authorsRkdPsi(x.e, 7, 5),
      tol: { fwd: 1e-5, bwd: 1e-4 },
    });
  });

  it('duplicated rows: the authors\' loss (rel 1e-5), wgkd\'s mean over i != j agrees with it to 1e-6; an unclamped pdist would not', async () => {
    const B = 8;
    const DS = 6;
    const DT = 10;
    const dups: [number, number][] = [[3, 0], [5, 2], [6, 2]];
    const s = withCopies(gaussian(B * DS, 5), DS, dups);
    const t = withCopies(gaussian(B * DT, 6), DT, dups);
    const authors = pub.authorsRkdDistanceLoss(s, t, B, DS, DT);
    const wgkdRef = pub.smoothL1Mean(rel.rkdDistance(s, B, DS), rel.rkdDistance(t, B, DT));
    const unclamped = pub.authorsRkdDistanceLoss(s, t, B, DS, DT, null);
    // 0.14224739 vs 0.14224740 (9.3e-8 relative); unclamped: 0.10684141 (docs/kd.md quotes these).
    expect(Math.abs(authors - wgkdRef) / authors).toBeLessThan(1e-6);
    expect(Math.abs(authors - unclamped) / authors).toBeGreaterThan(0.2);

    const positive = runOnEmbeddings({ rkd: { distance: 1, distanceMean: 'positive' } }, s, t, B, DS, DT);
    const offDiagonal = runOnEmbeddings({ rkd: { distance: 1 } }, s, t, B, DS, DT);
    expectClose(await positive.terms.total.toArray(), [authors], 1e-5, "'positive' vs the authors' loss");
    expectClose(await offDiagonal.terms.total.toArray(), [wgkdRef], 1e-5, "'off-diagonal' vs wgkd's formula");
    positive.terms.total.backward();
    offDiagonal.terms.total.backward();
    const gPositive = await positive.e.grad!.toArray();
    expect(gPositive.every(Number.isFinite)).toBe(true);
    // Duplicated pairs carry no gradient under either definition; the rest differ by the 1e-6 distances only.
    expectClose(gPositive, await offDiagonal.e.grad!.toArray(), 1e-4, "'positive' vs 'off-diagonal' gradient");
  });
});

describe("DKD warm-up: the loss scaled by min(epoch / warmup, 1) as mdistiller (tolerance: rel 1e-5, gradient rel 1e-4)", () => {
  const B = 5;
  const K = 11;
  const zs = gaussian(B * K, 11, 2);
  const zt = gaussian(B * K, 12, 2);
  const labels = Float64Array.from([0, 3, 10, 7, 3]);
  const unscaled = loss.dkd(zs, zt, labels, K, 1, 8, 4)[0];
  const published = loss.dkdAsPublished(zs, zt, labels, K, 1, 8, 4);

  for (const [warmup, epoch] of [[20, 0], [20, 9], [20, 19], [20, 30], [0, 0]] as const) {
    it(`warmup ${warmup}, wgkd epoch index ${epoch} (mdistiller's epoch ${epoch + 1})`, async () => {
      const recipe = new Recipe({ dkd: { warmup } }, {}, NO_TEACHER_MAPS);
      const logits = Tensor.fromArray(zs, [B, K], { requiresGrad: true });
      const features = { logits, embedding: Tensor.zeros([B, 2]), maps: {} };
      const y = Tensor.fromArray(labels, [B], { dtype: 'i32' });
      const terms = recipe.compute(features, y, { logits: Tensor.fromArray(zt, [B, K]) }, epoch);
      const factor = warmup === 0 ? 1 : pub.dkdWarmupAsPublished(epoch + 1, warmup);
      expectClose(await terms.parts.dkd.toArray(), [unscaled], 1e-5, 'dkd part (unweighted, as logged)');
      expectClose(await terms.total.toArray(), [factor * published], 1e-5, 'total vs mdistiller');
      terms.total.backward();
      expectClose(await logits.grad!.toArray(), loss.dkdBackward(zs, zt, labels, K, 1, 8, 4, Float64Array.of(factor)), 1e-4, 'd total / d z_s');
    });
  }
});

describe('FitNet regressors against float64 references of ConvReg and of wgkd\'s conv-bn (tolerance: value rel 1e-4, gradient rel 2e-4)', () => {
  interface RegressorCase {
    name: string;
    student: [number, number, number];
    hint: [number, number, number];
    regressor: 'convreg' | 'conv-bn';
    description: RegExp;
    /** The reference convolution on the student map (weights as the module holds them), and the hint side. */
    conv: (x: Float64Array, w: Float64Array, b: Float64Array | null) => Float64Array;
    convShape: number[];
    target?: (hint: Float64Array) => Float64Array;
    params: number;
  }
  const N = 2;
  const cases: RegressorCase[] = [
    {
      name: 'ConvReg, student map half the hint: transposed conv 4x4 stride 2 (bias) + BN + ReLU',
      student: [3, 3, 3],
      hint: [5, 6, 6],
      regressor: 'convreg',
      description: /^transposed conv 4x4 stride 2 \(bias\) \+ BN \+ ReLU$/,
      conv: (x, w, b) => conv.convTranspose2d({ x: [N, 3, 3, 3], weight: [3, 5, 4, 4], stride: [2, 2], padding: [1, 1] }, x, w, b),
      convShape: [N, 5, 6, 6],
      params: 3 * 5 * 16 + 5 + 2 * 5,
    },
    {
      name: 'ConvReg, student map twice the hint: conv 3x3 stride 2 padding 1 (bias) + BN + ReLU',
      student: [6, 8, 8], // more than 4 input channels: not the stem path, whose unrolled kernels compile slowly
      hint: [6, 4, 4],
      regressor: 'convreg',
      description: /^conv 3x3 stride 2 \(bias\) \+ BN \+ ReLU$/,
      conv: (x, w, b) => conv.conv2d({ x: [N, 6, 8, 8], weight: [6, 6, 3, 3], stride: [2, 2], padding: [1, 1] }, x, w, b),
      convShape: [N, 6, 4, 4],
      params: 6 * 6 * 9 + 6 + 2 * 6,
    },
    {
      name: 'ConvReg, other sizes (6x6 -> 4x4): unpadded conv (1 + Hs - Ht) = 3x3 (bias) + BN + ReLU',
      student: [4, 6, 6],
      hint: [5, 4, 4],
      regressor: 'convreg',
      description: /^conv 3x3 \(bias\) \+ BN \+ ReLU$/,
      conv: (x, w, b) => conv.conv2d({ x: [N, 4, 6, 6], weight: [5, 4, 3, 3] }, x, w, b),
      convShape: [N, 5, 4, 4],
      params: 5 * 4 * 9 + 5 + 2 * 5,
    },
    {
      name: "wgkd's conv-bn, student map half the hint: the hint average-pooled by 2, conv 1x1 (no bias) + BN",
      student: [3, 3, 3],
      hint: [5, 6, 6],
      regressor: 'conv-bn',
      description: /^average-pool the teacher hint by 2, then conv 1x1 \(no bias\) \+ BN$/,
      conv: (x, w) => conv.conv2d({ x: [N, 3, 3, 3], weight: [5, 3, 1, 1] }, x, w, null),
      convShape: [N, 5, 3, 3],
      target: (h) => pool.avgPool2d(h, [N, 5, 6, 6], { kernel: [2, 2], stride: [2, 2], padding: [0, 0] }),
      params: 5 * 3 + 2 * 5,
    },
  ];

  for (const c of cases) {
    it(c.name, async () => {
      const recipe = new Recipe({ fitnet: { weight: 1, regressor: c.regressor } }, { stage: c.student }, { hasLogits: true, hasEmbedding: true, hints: { layer: c.hint } });
      expect(recipe.regressor!.description).toMatch(c.description);
      expect(recipe.regressor!.numParameters()).toBe(c.params);
      const x = gaussian(N * c.student.reduce((a, b) => a * b), 21);
      const hint = Float64Array.from(gaussian(N * c.hint.reduce((a, b) => a * b), 22).map((v) => Math.max(v, 0))); // hints are post-ReLU maps
      const map = Tensor.fromArray(x, [N, ...c.student], { requiresGrad: true });
      const features = { logits: Tensor.zeros([N, 3]), embedding: Tensor.zeros([N, 2]), maps: { stage: map } };
      const terms = recipe.compute(features, Tensor.fromArray([0, 1], [N], { dtype: 'i32' }), { hints: { layer: Tensor.fromArray(hint, [N, ...c.hint]) } });
      const state = await recipe.regressor!.stateDict();
      const w = Float64Array.from(state['net.0.weight'].data);
      const b = state['net.0.bias'] ? Float64Array.from(state['net.0.bias'].data) : null;
      expect(b !== null).toBe(c.regressor === 'convreg');
      const target = c.target ? c.target(hint) : hint;
      const lossOf = (input: Float64Array) => pub.hintLossAfterConv(c.conv(input, w, b), c.convShape, target, c.regressor === 'convreg');
      expectClose(await terms.total.toArray(), [lossOf(x)], 1e-4, 'hint loss');
      terms.total.backward();
      const grad = await map.grad!.toArray();
      // Central finite differences of the float64 reference, every element of the student map.
      const fd = x.map((v, i) => {
        const h = 1e-6 * Math.max(1, Math.abs(v));
        const up = Float64Array.from(x);
        const down = Float64Array.from(x);
        up[i] = v + h;
        down[i] = v - h;
        return (lossOf(up) - lossOf(down)) / (2 * h);
      });
      expectClose(grad, fd, 2e-4, 'd loss / d student map vs finite differences of the reference');
    });
  }

  it('convreg refuses a student map smaller than the hint other than half, as ConvReg does', () => {
    expect(() => new Recipe({ fitnet: { regressor: 'convreg', student: 'stage' } }, { stage: [4, 3, 3] }, { hasLogits: true, hasEmbedding: true, hints: { layer: [5, 9, 9] } })).toThrow(
      /the convreg regressor cannot map student map \[4,3,3\] to teacher hint \[5,9,9\]/,
    );
  });
});
