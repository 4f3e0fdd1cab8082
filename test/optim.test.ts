// Optimisers against float64 references of torch's update rules (test/reference/optim.ts), step by step.
// Gradients are written straight into each parameter's .grad view with device.copy (the views are slices of the
// optimiser's flat gradient buffer, exactly where backward() accumulates); one test goes through backward().
import { describe, expect, it } from 'vitest';
import { Tensor, add, mul, rng, scope, sum, type Device } from '../src/index.js';
import { normPartialCount } from '../src/ops/optim.js';
import { Adam, AdamW, SGD, type Optimizer } from '../src/train/optim.js';
import { expectClose } from './helpers/check.js';
import { useDevice } from './helpers/device.js';
import * as ref from './reference/optim.js';
import { numel } from './reference/common.js';

const device = useDevice();

/** Odd sizes and mixed shapes: scalars, 5, a conv weight of 84*3*3, a linear layer, NCHW-like blocks. */
const MIXED: number[][] = [[1], [5], [84, 3, 3], [7, 13], [29], [16, 1, 3, 3], [3], [11, 84], [2, 3, 5, 7], [13]];

/** Many small tensors of seeded random sizes (1..300), so alignment padding sits between most of them. */
function manyShapes(count: number, seed: number): number[][] {
  const next = rng(seed);
  return Array.from({ length: count }, () => [1 + Math.floor(next() * 300)]);
}

/** Seeded normal values rounded to f32 (what the GPU holds), as float64. */
function randomArrays(shapes: number[][], seed: number, std = 1): Float64Array[] {
  const next = rng(seed);
  return shapes.map((shape) => {
    const out = new Float64Array(numel(shape));
    for (let i = 0; i < out.length; i++) {
      const r = Math.sqrt(-2 * Math.log(1 - next()));
      out[i] = std * r * Math.cos(2 * Math.PI * next());
    }
    return Float64Array.from(Float32Array.from(out));
  });
}

function makeParams(values: Float64Array[], shapes: number[][]): Tensor[] {
  return values.map((v, i) => Tensor.fromArray(v, shapes[i], { requiresGrad: true }));
}

/** Writes gradients into the parameters' .grad views (which live in the optimiser's flat gradient buffer). */
function writeGrads(dev: Device, params: Tensor[], grads: Float64Array[]): void {
  scope(() => params.forEach((p, i) => dev.copy(Tensor.fromArray(grads[i], p.shape), p.grad!)));
}

async function readAll(dev: Device, tensors: Tensor[]): Promise<Float32Array[]> {
  return (await dev.read(tensors)).map((b) => new Float32Array(b));
}

async function expectParamsClose(dev: Device, params: Tensor[], want: Float64Array[], tol: number, what: string): Promise<void> {
  const got = await readAll(dev, params);
  got.forEach((g, i) => expectClose(g, want[i], tol, `${what}, parameter ${i} [${params[i].shape}]`));
}

function clone64(arrays: Float64Array[]): Float64Array[] {
  return arrays.map((a) => Float64Array.from(a));
}

/** Runs `steps` steps on the GPU and the reference side by side, comparing after every step. */
async function runAgainstReference(opts: {
  shapes: number[][];
  makeOptimizer: (params: Tensor[]) => Optimizer;
  refStep: (params: Float64Array[], grads: Float64Array[], lr: number) => void;
  refBuffers: () => Record<string, Float64Array[]>;
  lrs: number[];
  maxNorm?: number;
  gradStd?: number;
  /** Parameters and the total norm. */
  tol: number;
}): Promise<void> {
  // State buffers (momentum, exp_avg) are running averages of random-sign gradients: some elements cancel to
  // ~1e-3 of their neighbours, where float32 rounding of the sum shows as ~1e-5 relative. Parameters do not cancel.
  const stateTol = 3 * opts.tol;
  const dev = device();
  const initial = randomArrays(opts.shapes, 7);
  const params = makeParams(initial, opts.shapes);
  const refParams = clone64(initial);
  const opt = opts.makeOptimizer(params);
  for (let step = 0; step < opts.lrs.length; step++) {
    const grads = randomArrays(opts.shapes, 100 + step, opts.gradStd ?? 1);
    writeGrads(dev, params, grads);
    opt.lr = opts.lrs[step];
    let norm: Tensor | null = null;
    let refNorm = 0;
    const refGrads = clone64(grads);
    if (opts.maxNorm !== undefined) {
      norm = opt.clipGradNorm(opts.maxNorm);
      refNorm = ref.clipGradNorm(refGrads, opts.maxNorm);
    }
    opt.step();
    opts.refStep(refParams, refGrads, opts.lrs[step]);
    if (norm) {
      expectClose([await norm.item()], [refNorm], opts.tol, `step ${step + 1}: total norm`);
      norm.dispose();
    }
    await expectParamsClose(dev, params, refParams, opts.tol, `step ${step + 1}`);
    const state = await opt.stateDict();
    expect(state.step).toBe(step + 1);
    for (const [name, want] of Object.entries(opts.refBuffers())) {
      expect(state.buffers[name], `state '${name}' missing`).toBeDefined();
      state.buffers[name].forEach((got, i) => expectClose(got, want[i], stateTol, `step ${step + 1}: ${name}[${i}]`));
    }
    opt.zeroGrad();
  }
  opt.dispose();
  params.forEach((p) => p.dispose());
}

const LRS = [0.1, 0.1, 0.05, 0.05, 0.02]; // the lr changes between steps (it travels in the uniform)

describe('SGD vs torch.optim.SGD in float64, 5 steps, mixed and odd sizes (tolerance: parameters rel 1e-5, momentum buffers 3e-5)', () => {
  const configs: [string, Omit<ref.SgdConfig, 'lr'>][] = [
    ['plain', { momentum: 0, dampening: 0, weightDecay: 0, nesterov: false }],
    ['momentum 0.9', { momentum: 0.9, dampening: 0, weightDecay: 0, nesterov: false }],
    ['momentum 0.9, dampening 0.1, weight decay 1e-2', { momentum: 0.9, dampening: 0.1, weightDecay: 1e-2, nesterov: false }],
    ['nesterov 0.8, weight decay 5e-3', { momentum: 0.8, dampening: 0, weightDecay: 5e-3, nesterov: true }],
  ];
  for (const [title, c] of configs) {
    it(title, async () => {
      const state = ref.newSgdState(MIXED.length);
      await runAgainstReference({
        shapes: MIXED,
        makeOptimizer: (params) => new SGD(params, { lr: LRS[0], ...c }),
        refStep: (p, g, lr) => ref.sgdStep(p, g, state, { ...c, lr }),
        refBuffers: (): Record<string, Float64Array[]> => (c.momentum ? { momentum_buffer: state.momentumBuffer as Float64Array[] } : {}),
        lrs: LRS,
        tol: 1e-5,
      });
    });
  }

  it('momentum, 40 tensors of random sizes (packing with padding between them)', async () => {
    const shapes = manyShapes(40, 3);
    const c = { momentum: 0.9, dampening: 0, weightDecay: 1e-3, nesterov: false };
    const state = ref.newSgdState(shapes.length);
    await runAgainstReference({
      shapes,
      makeOptimizer: (params) => new SGD(params, { lr: LRS[0], ...c }),
      refStep: (p, g, lr) => ref.sgdStep(p, g, state, { ...c, lr }),
      refBuffers: () => ({ momentum_buffer: state.momentumBuffer as Float64Array[] }),
      lrs: LRS,
      tol: 1e-5,
    });
  });
});

describe('Adam / AdamW vs torch.optim in float64, 5 steps (tolerance: parameters rel 1e-5, moments 3e-5)', () => {
  const configs: [string, 'Adam' | 'AdamW', Omit<ref.AdamConfig, 'lr' | 'decoupled'>][] = [
    ['Adam, defaults', 'Adam', { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 }],
    ['Adam, L2 weight decay 1e-2, betas (0.8, 0.95), eps 1e-6', 'Adam', { beta1: 0.8, beta2: 0.95, eps: 1e-6, weightDecay: 1e-2 }],
    ['AdamW, weight decay 1e-1', 'AdamW', { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1 }],
  ];
  for (const [title, kind, c] of configs) {
    for (const [shapesTitle, shapes] of [['mixed sizes', MIXED], ['40 tensors', manyShapes(40, 5)]] as const) {
      it(`${title}; ${shapesTitle}`, async () => {
        const state = ref.newAdamState(shapes.map((s) => new Float64Array(numel(s))));
        const Cls = kind === 'Adam' ? Adam : AdamW;
        await runAgainstReference({
          shapes: shapes as number[][],
          makeOptimizer: (params) => new Cls(params, { lr: LRS[0], betas: [c.beta1, c.beta2], eps: c.eps, weightDecay: c.weightDecay }),
          refStep: (p, g, lr) => ref.adamStep(p, g, state, { ...c, lr, decoupled: kind === 'AdamW' }),
          refBuffers: () => ({ exp_avg: state.expAvg, exp_avg_sq: state.expAvgSq }),
          lrs: LRS,
          tol: 1e-5,
        });
      });
    }
  }
});

describe('global-norm gradient clipping (torch.nn.utils.clip_grad_norm_; tolerance: norm and parameters rel 1e-5, state 3e-5)', () => {
  const adamConfig = { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 1e-5 };
  // Norm of ~1,900 N(0, 1) values is ~44: max norm 1 clips every step, max norm 1000 never does.
  for (const [title, maxNorm] of [['triggers (max norm 1)', 1], ['does not trigger (max norm 1000)', 1000]] as const) {
    it(`Adam with clipping that ${title}`, async () => {
      const state = ref.newAdamState(MIXED.map((s) => new Float64Array(numel(s))));
      await runAgainstReference({
        shapes: MIXED,
        makeOptimizer: (params) => new Adam(params, { lr: LRS[0], weightDecay: adamConfig.weightDecay }),
        refStep: (p, g, lr) => ref.adamStep(p, g, state, { ...adamConfig, lr, decoupled: false }),
        refBuffers: () => ({ exp_avg: state.expAvg, exp_avg_sq: state.expAvgSq }),
        lrs: LRS,
        maxNorm,
        tol: 1e-5,
      });
    });
    it(`SGD with momentum and clipping that ${title}`, async () => {
      const c = { momentum: 0.9, dampening: 0, weightDecay: 1e-2, nesterov: false };
      const state = ref.newSgdState(MIXED.length);
      await runAgainstReference({
        shapes: MIXED,
        makeOptimizer: (params) => new SGD(params, { lr: LRS[0], ...c }),
        refStep: (p, g, lr) => ref.sgdStep(p, g, state, { ...c, lr }),
        refBuffers: () => ({ momentum_buffer: state.momentumBuffer as Float64Array[] }),
        lrs: LRS,
        maxNorm,
        tol: 1e-5,
      });
    });
  }

  it('norm of 4.5M gradients over several tensors (grid-stride first pass, > 256 partial sums) and the clipped step', async () => {
    const dev = device();
    const shapes = [[4_500_003], [5], [84, 3, 3]];
    const values = randomArrays(shapes, 11);
    const params = makeParams(values, shapes);
    const opt = new SGD(params, { lr: 1 });
    const grads = randomArrays(shapes, 12, 0.5);
    writeGrads(dev, params, grads);
    const norm = opt.clipGradNorm(10);
    opt.step();
    const refGrads = clone64(grads);
    const refNorm = ref.clipGradNorm(refGrads, 10);
    expect(refNorm).toBeGreaterThan(100); // it does clip
    ref.sgdStep(values, refGrads, ref.newSgdState(3), { lr: 1, momentum: 0, dampening: 0, weightDecay: 0, nesterov: false });
    expectClose([await norm.item()], [refNorm], 1e-5, 'total norm');
    await expectParamsClose(dev, params, values, 1e-5, 'after the clipped step');

    // Sparse spikes where the first pass's grid-stride loop wraps (partials x 256 vec4s) and at the ends: a
    // skipped or double-counted element changes this norm by far more than rounding.
    opt.zeroGrad();
    const partialCount = normPartialCount(opt.flatNumel / 4);
    expect(partialCount).toBeGreaterThan(256); // the second pass loops too
    const wrap = partialCount * 256 * 4; // floats; parameter 0 starts the flat buffer
    expect(wrap + 4).toBeLessThan(4_500_002);
    const spikes = shapes.map((s) => new Float64Array(numel(s)));
    for (const i of [0, wrap - 1, wrap, wrap + 1, wrap + 4, 4_500_002]) spikes[0][i] = 3;
    spikes[1][4] = 4;
    spikes[2][0] = 2;
    writeGrads(dev, params, spikes);
    const spikeNorm = opt.clipGradNorm(1);
    expectClose([await spikeNorm.item()], [Math.sqrt(6 * 9 + 16 + 4)], 1e-6, 'norm of sparse spikes');
    opt.dispose();
  });

  it('the .grad views keep the unclipped values (the scaling is fused into step); zeroGrad cancels a pending clip', async () => {
    const dev = device();
    const shapes = [[5], [7, 13]];
    const values = randomArrays(shapes, 21);
    const params = makeParams(values, shapes);
    const opt = new SGD(params, { lr: 0.5 });
    const stale = randomArrays(shapes, 22, 100);
    writeGrads(dev, params, stale);
    opt.clipGradNorm(0.01).dispose();
    const viewValues = await readAll(dev, params.map((p) => p.grad!));
    viewValues.forEach((g, i) => expectClose(g, stale[i], 0, `.grad of parameter ${i} after clipGradNorm`));
    opt.zeroGrad(); // the clip measured gradients that are now gone
    const fresh = randomArrays(shapes, 23);
    writeGrads(dev, params, fresh);
    opt.step();
    ref.sgdStep(values, fresh, ref.newSgdState(2), { lr: 0.5, momentum: 0, dampening: 0, weightDecay: 0, nesterov: false });
    await expectParamsClose(dev, params, values, 1e-6, 'unclipped step after zeroGrad');
    opt.dispose();
  });
});

describe('multi-tensor layout', () => {
  it('a step is a handful of dispatches whatever the number of parameter tensors', async () => {
    const dev = device();
    const counts: number[][] = [];
    for (const shapes of [MIXED.slice(0, 3), manyShapes(60, 9)]) {
      const params = makeParams(randomArrays(shapes, 1), shapes);
      const opt = new Adam(params, { lr: 1e-3 });
      opt.step(); // the first step also creates the moment buffers
      const before = dev.counters.dispatches;
      opt.clipGradNorm(1).dispose();
      const afterClip = dev.counters.dispatches;
      opt.step();
      const afterStep = dev.counters.dispatches;
      opt.zeroGrad();
      const afterZero = dev.counters.dispatches;
      counts.push([afterClip - before, afterStep - afterClip, afterZero - afterStep]);
      opt.dispose();
      params.forEach((p) => p.dispose());
    }
    expect(counts[0]).toEqual([2, 1, 1]);
    expect(counts[1]).toEqual([2, 1, 1]);
    await dev.sync();
  });

  it('backward() accumulates into the flat gradient buffer; zeroGrad() clears it', async () => {
    const dev = device();
    const shapes = [[5], [3, 4]];
    const values = randomArrays(shapes, 31);
    const coefs = randomArrays(shapes, 32);
    const params = makeParams(values, shapes);
    const opt = new SGD(params, { lr: 0.5 });
    const c = coefs.map((v, i) => Tensor.fromArray(v, shapes[i]));
    const lossBackward = () => scope(() => add(sum(mul(params[0], c[0])), sum(mul(params[1], c[1]))).backward());
    lossBackward();
    const grads1 = await readAll(dev, params.map((p) => p.grad!));
    grads1.forEach((g, i) => expectClose(g, coefs[i], 0, `gradient of parameter ${i}`));
    lossBackward(); // no zeroGrad: torch accumulates
    opt.step();
    const refGrads = coefs.map((v) => v.map((x) => 2 * x));
    ref.sgdStep(values, refGrads, ref.newSgdState(2), { lr: 0.5, momentum: 0, dampening: 0, weightDecay: 0, nesterov: false });
    await expectParamsClose(dev, params, values, 1e-6, 'after two backward passes and a step');
    opt.zeroGrad();
    const cleared = await readAll(dev, params.map((p) => p.grad!));
    cleared.forEach((g) => expect(g.every((v) => v === 0)).toBe(true));
    opt.dispose();
  });

  it('survives the scope it was created in (everything it owns is kept)', async () => {
    const dev = device();
    const shapes = [[5], [29]];
    const values = randomArrays(shapes, 41);
    const params = makeParams(values, shapes);
    const opt = scope(() => {
      const o = new Adam(params, { lr: 0.01 });
      o.step(); // state buffers created inside the scope too
      return o;
    });
    const grads = randomArrays(shapes, 42);
    writeGrads(dev, params, grads);
    opt.step();
    const state = ref.newAdamState(values);
    const cfg = { lr: 0.01, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, decoupled: false };
    ref.adamStep(values, randomArrays(shapes, 0, 0), state, cfg);
    ref.adamStep(values, grads, state, cfg);
    await expectParamsClose(dev, params, values, 1e-5, 'after steps outside the scope');
    opt.dispose();
  });
});

describe('stateDict / loadStateDict', () => {
  /** 6 steps straight vs 3 steps, stateDict, new parameters and optimiser, loadStateDict, 3 steps: same bits. */
  async function resumeIsBitExact(make: (params: Tensor[]) => Optimizer, maxNorm?: number): Promise<void> {
    const dev = device();
    const shapes = [...MIXED, ...manyShapes(12, 2)];
    const initial = randomArrays(shapes, 51);
    const gradsAt = (step: number) => randomArrays(shapes, 200 + step, 2);
    const train = (opt: Optimizer, params: Tensor[], from: number, to: number) => {
      for (let s = from; s < to; s++) {
        writeGrads(dev, params, gradsAt(s));
        opt.lr = 0.05 / (1 + s); // a schedule: lr is part of the replayed state
        if (maxNorm !== undefined) opt.clipGradNorm(maxNorm).dispose();
        opt.step();
        opt.zeroGrad();
      }
    };

    const straightParams = makeParams(initial, shapes);
    const straight = make(straightParams);
    train(straight, straightParams, 0, 6);
    const wantBits = (await readAll(dev, straightParams)).map((a) => new Uint32Array(a.buffer));
    const wantState = await straight.stateDict();

    const firstParams = makeParams(initial, shapes);
    const first = make(firstParams);
    train(first, firstParams, 0, 3);
    const saved = await first.stateDict();
    const savedParams = await readAll(dev, firstParams);
    first.dispose();
    firstParams.forEach((p) => p.dispose());

    const resumedParams = savedParams.map((v, i) => Tensor.fromArray(v, shapes[i], { requiresGrad: true }));
    const resumed = make(resumedParams);
    resumed.lr = 123; // overwritten by loadStateDict
    resumed.loadStateDict(saved);
    expect(resumed.stepCount).toBe(3);
    train(resumed, resumedParams, 3, 6);
    const gotBits = (await readAll(dev, resumedParams)).map((a) => new Uint32Array(a.buffer));
    gotBits.forEach((bits, i) => expect(bits, `parameter ${i} bits`).toEqual(wantBits[i]));
    const gotState = await resumed.stateDict();
    expect(gotState.step).toBe(wantState.step);
    expect(gotState.hyperParams).toEqual(wantState.hyperParams);
    for (const [name, arrays] of Object.entries(wantState.buffers)) {
      arrays.forEach((a, i) => expect(new Uint32Array(gotState.buffers[name][i].buffer)).toEqual(new Uint32Array(a.buffer)));
    }
    straight.dispose();
    resumed.dispose();
  }

  it('Adam with L2 weight decay and clipping: resumed run has the same bits', async () => {
    await resumeIsBitExact((p) => new Adam(p, { lr: 0.05, weightDecay: 1e-5 }), 5);
  });
  it('AdamW: resumed run has the same bits', async () => {
    await resumeIsBitExact((p) => new AdamW(p, { lr: 0.05, betas: [0.8, 0.99] }));
  });
  it('SGD with Nesterov momentum and clipping (first-step buffer init must not repeat): same bits', async () => {
    await resumeIsBitExact((p) => new SGD(p, { lr: 0.05, momentum: 0.9, nesterov: true, weightDecay: 1e-4 }), 5);
  });

  it('holds plain values: step, lr, hyper-parameters, per-parameter Float32Arrays; no state before the first step', async () => {
    const params = makeParams(randomArrays(MIXED, 61), MIXED);
    const opt = new Adam(params, { lr: 0.01, betas: [0.85, 0.98], eps: 1e-7, weightDecay: 0.5 });
    const empty = await opt.stateDict();
    expect(empty).toEqual({ type: 'Adam', step: 0, lr: 0.01, hyperParams: { betas: [0.85, 0.98], eps: 1e-7, weightDecay: 0.5 }, buffers: {} });
    opt.step();
    const state = await opt.stateDict();
    expect(Object.keys(state.buffers).sort()).toEqual(['exp_avg', 'exp_avg_sq']);
    state.buffers.exp_avg.forEach((a, i) => {
      expect(a).toBeInstanceOf(Float32Array);
      expect(a.length).toBe(params[i].numel);
    });
    opt.dispose();
  });

  it('rejects a state of another optimiser type or parameter list', async () => {
    const params = makeParams(randomArrays(MIXED, 71), MIXED);
    const adam = new Adam(params, {});
    adam.step();
    const state = await adam.stateDict();
    adam.dispose();
    const sgd = new SGD(params, { momentum: 0.9 });
    expect(() => sgd.loadStateDict(state)).toThrow(/state of a Adam, this is a SGD/);
    sgd.dispose();
    const fewer = new Adam(params.slice(1), {});
    expect(() => fewer.loadStateDict(state)).toThrow(/has 10 tensors, the optimiser has 9 parameters/);
    fewer.dispose();
  });
});

describe('argument checks', () => {
  it('rejects duplicates, frozen parameters, bad hyper-parameters and replaced gradients', () => {
    const a = Tensor.zeros([3], { requiresGrad: true });
    const frozen = Tensor.zeros([3]);
    expect(() => new SGD([a, a])).toThrow(/appears more than once/);
    expect(() => new SGD([frozen])).toThrow(/does not require grad/);
    expect(() => new Adam([a], { betas: [0.9, 1] })).toThrow(/beta2 must be in \[0, 1\)/);
    expect(() => new SGD([a], { nesterov: true })).toThrow(/Nesterov momentum requires a momentum/);
    const opt = new SGD([a], { lr: 0.1 });
    expect(() => (opt.lr = -1)).toThrow(/lr must be >= 0/);
    expect(() => opt.clipGradNorm(0)).toThrow(/maxNorm must be > 0/);
    a.grad = null;
    expect(() => opt.step()).toThrow(/\.grad was replaced or disposed; clear gradients with zeroGrad\(\)/);
    opt.dispose();
    expect(() => opt.zeroGrad()).toThrow(/disposed/);
  });
});
