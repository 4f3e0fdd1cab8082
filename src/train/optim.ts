// Optimisers with PyTorch's update rules (torch.optim.SGD, Adam, AdamW), multi-tensor: at construction the
// parameters are packed into ONE buffer (Tensor.pack) and every parameter's .grad becomes a view of one flat
// gradient buffer of the same layout. backward() accumulates into those views in place, so after it the flat
// buffer holds every gradient and a step is one dispatch whatever the number of tensors:
//   zeroGrad()        1 dispatch (one fill)
//   clipGradNorm(m)   2 dispatches (two-pass deterministic norm; the coefficient stays on the GPU)
//   step()            1 dispatch (reads the clip coefficient, if any; the first Adam step adds 2 state fills)
//
// Differences from PyTorch, by design:
// - Every parameter always has a gradient (its view; zero when the loss did not use it). torch skips parameters
//   whose .grad is None, so there an unused parameter gets no weight decay and no momentum/Adam update; here it
//   does (its moments decay and it keeps moving with them). For a fixed network where every parameter takes
//   part in every loss (the students here) the two agree. zeroGrad() fills with zeros (torch's
//   zero_grad(set_to_none=False)); setting p.grad = null is an error at the next step().
// - clipGradNorm() measures the gradients now but the scaling is fused into the next step() (saves a pass over
//   the gradients): the .grad views keep the unclipped values. zeroGrad() cancels a pending clip. The usual
//   loop backward(); clipGradNorm(); step(); zeroGrad() gives exactly torch's result.
// - One parameter group (one lr and weight decay for all), one step count for all parameters; no amsgrad,
//   maximize or foreach/fused switches. Parameters must require grad (leave frozen ones out of the list).
// - Construction moves every parameter into the packed buffer (same Tensor objects, new storage): a reshape()
//   view of a parameter taken BEFORE that still reads the old storage. Take views after creating the optimiser.
import type { Device } from '../gpu/device.js';
import { Tensor, keep } from '../tensor.js';
import { adamUpdate, countNonFinite, gradNormAndClipCoef, sgdUpdate, zeroFlat } from '../ops/optim.js';
import { withLabel } from '../gpu/labels.js';

export type HyperParams = Record<string, number | boolean | number[]>;

/** A plain, serialisable snapshot of an optimiser (torch's state_dict, flattened to one parameter group). */
export interface OptimizerState {
  type: string;
  /** Steps taken (the bias-correction step of Adam). */
  step: number;
  lr: number;
  hyperParams: HyperParams;
  /** Per-parameter state, in parameter order: e.g. { exp_avg: [...], exp_avg_sq: [...] }. Absent until created. */
  buffers: Record<string, Float32Array[]>;
}

function checkNumber(what: string, value: number, ok: (v: number) => boolean, rule: string): void {
  if (typeof value !== 'number' || !Number.isFinite(value) || !ok(value)) throw new Error(`${what} must be ${rule}, got ${value}`);
}

export abstract class Optimizer {
  readonly params: readonly Tensor[];
  readonly device: Device;
  /** All parameters, packed (each parameter is a view of it). */
  protected readonly flatParams: Tensor;
  /** All gradients, same layout (each parameter's .grad is a view of it). */
  protected readonly flatGrads: Tensor;
  /** Per-parameter state buffers (flat, same layout), created on first use like torch's lazy state. */
  private readonly state = new Map<string, Tensor>();
  private readonly offsets: readonly number[]; // bytes into the flat buffers
  private readonly gradViews: readonly Tensor[];
  private readonly clipCoef: Tensor; // [1], written by clipGradNorm on the GPU
  private readonly unitScale: Tensor; // [1] = 1, the gradient scale when no clip is pending
  private clipPending = false;
  private steps = 0;
  private learningRate = 0;
  private disposed = false;

  protected constructor(
    readonly type: string,
    params: Tensor[],
    lr: number,
    /** The state buffer names this optimiser may hold (checked by loadStateDict). */
    private readonly bufferNames: readonly string[],
  ) {
    if (params.length === 0) throw new Error(`${type}: empty parameter list`);
    if (new Set(params).size !== params.length) throw new Error(`${type}: a parameter appears more than once`);
    params.forEach((p, i) => {
      if (p.dtype !== 'f32') throw new Error(`${type}: parameter ${i} ${p} is not f32`);
      if (p.device !== params[0].device) throw new Error(`${type}: parameter ${i} ${p} is on another device than parameter 0`);
      if (p.node) throw new Error(`${type}: parameter ${i} ${p} is not a leaf (it was computed by an op)`);
      if (!p.requiresGrad) throw new Error(`${type}: parameter ${i} ${p} does not require grad (leave frozen tensors out)`);
    });
    this.lr = lr;
    const list = [...params];
    this.params = list;
    this.device = params[0].device;
    const packedParams = Tensor.pack(list);
    this.flatParams = keep(packedParams.flat);
    // Gradient views: existing gradients keep their values, missing ones start at zero (pack copies either).
    const grads = this.params.map((p) => p.grad ?? Tensor.zeros(p.shape, { device: this.device }));
    const packedGrads = Tensor.pack(grads);
    this.flatGrads = keep(packedGrads.flat);
    if (packedGrads.offsets.some((o, i) => o !== packedParams.offsets[i])) throw new Error(`${type}: gradient layout differs from parameters`);
    this.params.forEach((p, i) => (p.grad = keep(grads[i])));
    this.gradViews = grads;
    this.offsets = packedParams.offsets;
    this.clipCoef = keep(Tensor.ones([1], { device: this.device }));
    this.unitScale = keep(Tensor.ones([1], { device: this.device }));
  }

  get lr(): number {
    return this.learningRate;
  }
  set lr(value: number) {
    checkNumber(`${this.type}: lr`, value, (v) => v >= 0, '>= 0');
    this.learningRate = value;
  }

  /** Steps taken so far (schedules: `opt.lr = schedule.lrAt(opt.stepCount)` before `opt.step()`). */
  get stepCount(): number {
    return this.steps;
  }

  /** Floats in each flat buffer (parameters, gradients, each state buffer), alignment padding included. */
  get flatNumel(): number {
    return this.flatParams.numel;
  }

  /** Total number of parameter values (padding excluded). */
  get numel(): number {
    return this.params.reduce((n, p) => n + p.numel, 0);
  }

  /** Updates every parameter from its gradient: one dispatch. */
  step(): void {
    this.checkUsable('step');
    this.steps++;
    withLabel({ phase: 'optimizer', module: undefined, term: 'step' }, () => this.update(this.clipPending ? this.clipCoef : this.unitScale, this.steps));
    this.clipPending = false;
  }

  /** Sets every gradient to zero: one fill of the flat gradient buffer. Cancels a pending clip. */
  zeroGrad(): void {
    this.checkUsable('zeroGrad');
    withLabel({ phase: 'optimizer', module: undefined, term: 'zero_grad' }, () => zeroFlat(this.flatGrads));
    for (const p of this.params) if (p.grad) p.grad.knownZero = true;
    this.clipPending = false;
  }

  /**
   * torch.nn.utils.clip_grad_norm_ over all parameters: total = sqrt(sum g^2), coef = maxNorm / (total + 1e-6),
   * applied (by the next step(), fused into the update) only when coef < 1. Returns the total norm as a new
   * 1-element tensor (no readback; read it when convenient, dispose it or let a scope do it).
   */
  clipGradNorm(maxNorm: number): Tensor {
    this.checkUsable('clipGradNorm');
    const norm = withLabel({ phase: 'optimizer', module: undefined, term: 'clip' }, () => gradNormAndClipCoef(this.flatGrads, maxNorm, this.clipCoef));
    this.clipPending = true;
    return norm;
  }

  /**
   * NaN and Inf counts of the gradients and the parameters, [grad NaN, grad Inf, param NaN, param Inf] as a new
   * [4] u32 tensor (one dispatch, no readback). Call it between step() and zeroGrad() to check both.
   */
  nonFiniteCounts(): Tensor {
    this.checkUsable('nonFiniteCounts');
    return withLabel({ phase: 'optimizer', module: undefined, term: 'nonfinite_check' }, () => countNonFinite(this.flatGrads, this.flatParams));
  }

  /** A plain copy of the optimiser: step count, hyper-parameters and per-parameter state (one readback). */
  async stateDict(): Promise<OptimizerState> {
    this.checkUsable('stateDict');
    const named = [...this.state.entries()];
    const bytes = this.flatParams.numel > 0 ? await this.device.read(named.map(([, t]) => t)) : named.map(() => new ArrayBuffer(0));
    const buffers: Record<string, Float32Array[]> = {};
    named.forEach(([name], k) => {
      buffers[name] = this.params.map((p, i) => new Float32Array(bytes[k], this.offsets[i], p.numel).slice());
    });
    return { type: this.type, step: this.steps, lr: this.lr, hyperParams: this.hyperParams(), buffers };
  }

  /** Restores a stateDict() exactly (same parameter list and order): training continues bit for bit. */
  loadStateDict(state: OptimizerState): void {
    this.checkUsable('loadStateDict');
    if (state.type !== this.type) throw new Error(`loadStateDict: state of a ${state.type}, this is a ${this.type}`);
    if (!Number.isInteger(state.step) || state.step < 0) throw new Error(`loadStateDict: bad step ${state.step}`);
    for (const [name, arrays] of Object.entries(state.buffers)) {
      if (!this.bufferNames.includes(name)) {
        throw new Error(`loadStateDict: unknown state '${name}' for ${this.type} (expects: ${this.bufferNames.join(', ')})`);
      }
      if (arrays.length !== this.params.length) {
        throw new Error(`loadStateDict: '${name}' has ${arrays.length} tensors, the optimiser has ${this.params.length} parameters`);
      }
      arrays.forEach((a, i) => {
        if (a.length !== this.params[i].numel) {
          throw new Error(`loadStateDict: '${name}'[${i}] has ${a.length} values, parameter ${i} ${this.params[i]} has ${this.params[i].numel}`);
        }
      });
    }
    this.setHyperParams(state.hyperParams);
    this.lr = state.lr;
    this.steps = state.step;
    for (const [name, t] of [...this.state.entries()]) {
      if (!(name in state.buffers)) {
        t.dispose();
        this.state.delete(name);
      }
    }
    for (const [name, arrays] of Object.entries(state.buffers)) {
      const flat = new Float32Array(this.flatParams.numel); // padding stays zero
      arrays.forEach((a, i) => flat.set(a, this.offsets[i] / 4));
      // Uploaded to a fresh buffer, then copied in encoder order (after any step already recorded).
      const upload = Tensor.fromArray(flat, [flat.length], { device: this.device });
      if (flat.length > 0) this.device.copy(upload, this.buffer(name, false));
      upload.dispose();
    }
    this.clipPending = false;
  }

  /**
   * Frees the optimiser's state and its references to the flat buffers. The parameters stay valid (views of
   * the packed buffer) and keep their .grad views, which now belong to the caller like any .grad.
   */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const t of this.state.values()) t.dispose();
    this.state.clear();
    this.flatParams.dispose();
    this.flatGrads.dispose();
    this.clipCoef.dispose();
    this.unitScale.dispose();
  }

  // ---- for the subclasses ----------------------------------------------------------------------------------

  /** Records the update of every parameter; `gradScale` is a 1-element tensor multiplying the gradients. */
  protected abstract update(gradScale: Tensor, step: number): void;
  protected abstract hyperParams(): HyperParams;
  protected abstract setHyperParams(h: HyperParams): void;

  protected hasBuffer(name: string): boolean {
    return this.state.has(name);
  }

  /** The flat state buffer `name`, created (zero-filled, or uninitialised when `zeroed` is false) on first use. */
  protected buffer(name: string, zeroed = true): Tensor {
    let t = this.state.get(name);
    if (!t) {
      const shape = [this.flatParams.numel];
      t = keep(zeroed ? Tensor.zeros(shape, { device: this.device }) : Tensor.empty(shape, { device: this.device }));
      this.state.set(name, t);
    }
    return t;
  }

  private checkUsable(op: string): void {
    if (this.disposed) throw new Error(`${this.type}.${op}: the optimiser was disposed`);
    this.params.forEach((p, i) => {
      if (p.isDisposed || p.buffer !== this.flatParams.buffer || p.byteOffset !== this.offsets[i]) {
        throw new Error(`${this.type}.${op}: parameter ${i} ${p} is no longer a view of this optimiser's buffer (disposed, or packed by another optimiser)`);
      }
      if (p.grad !== this.gradViews[i] || p.grad.isDisposed) {
        throw new Error(`${this.type}.${op}: parameter ${i}'s .grad was replaced or disposed; clear gradients with zeroGrad(), not p.grad = null`);
      }
    });
  }
}

// ---- SGD -------------------------------------------------------------------------------------------------------

export interface SGDOptions {
  lr?: number;
  momentum?: number;
  dampening?: number;
  weightDecay?: number;
  nesterov?: boolean;
}

interface SgdHyperParams {
  momentum: number;
  dampening: number;
  weightDecay: number;
  nesterov: boolean;
}

function checkSgd(h: HyperParams): SgdHyperParams {
  const { momentum, dampening, weightDecay, nesterov } = h as unknown as SgdHyperParams;
  checkNumber('SGD: momentum', momentum, (v) => v >= 0, '>= 0');
  checkNumber('SGD: dampening', dampening, () => true, 'a number');
  checkNumber('SGD: weightDecay', weightDecay, (v) => v >= 0, '>= 0');
  if (typeof nesterov !== 'boolean') throw new Error(`SGD: nesterov must be a boolean, got ${nesterov}`);
  if (nesterov && (momentum <= 0 || dampening !== 0)) throw new Error('SGD: Nesterov momentum requires a momentum and zero dampening');
  return { momentum, dampening, weightDecay, nesterov };
}

/** torch.optim.SGD (defaults as torch: lr 1e-3, momentum 0, dampening 0, weight decay 0, no Nesterov). */
export class SGD extends Optimizer {
  private hyper: SgdHyperParams;

  constructor(params: Tensor[], options: SGDOptions = {}) {
    // Checked before the parameters are packed, so a bad option leaves them untouched.
    const hyper = checkSgd({
      momentum: options.momentum ?? 0,
      dampening: options.dampening ?? 0,
      weightDecay: options.weightDecay ?? 0,
      nesterov: options.nesterov ?? false,
    });
    super('SGD', params, options.lr ?? 1e-3, ['momentum_buffer']);
    this.hyper = hyper;
  }

  get momentum(): number {
    return this.hyper.momentum;
  }
  get dampening(): number {
    return this.hyper.dampening;
  }
  get weightDecay(): number {
    return this.hyper.weightDecay;
  }
  get nesterov(): boolean {
    return this.hyper.nesterov;
  }

  protected update(gradScale: Tensor): void {
    const { momentum, dampening, weightDecay, nesterov } = this.hyper;
    // torch creates the momentum buffer (buf = d_p, no dampening) at the first step that uses momentum.
    const firstStep = momentum !== 0 && !this.hasBuffer('momentum_buffer');
    sgdUpdate({
      param: this.flatParams,
      grad: this.flatGrads,
      gradScale,
      momentumBuffer: momentum !== 0 ? this.buffer('momentum_buffer', false) : null,
      lr: this.lr,
      momentum,
      dampening,
      weightDecay,
      nesterov,
      firstStep,
    });
  }

  protected hyperParams(): HyperParams {
    return { ...this.hyper };
  }

  protected setHyperParams(h: HyperParams): void {
    this.hyper = checkSgd(h);
  }
}

// ---- Adam / AdamW ----------------------------------------------------------------------------------------------

export interface AdamOptions {
  lr?: number;
  betas?: [number, number];
  eps?: number;
  weightDecay?: number;
}

interface AdamHyperParams {
  betas: [number, number];
  eps: number;
  weightDecay: number;
}

function checkAdam(type: string, h: HyperParams): AdamHyperParams {
  const { betas, eps, weightDecay } = h as unknown as AdamHyperParams;
  if (!Array.isArray(betas) || betas.length !== 2) throw new Error(`${type}: betas must be [beta1, beta2], got ${betas}`);
  checkNumber(`${type}: beta1`, betas[0], (v) => v >= 0 && v < 1, 'in [0, 1)');
  checkNumber(`${type}: beta2`, betas[1], (v) => v >= 0 && v < 1, 'in [0, 1)');
  checkNumber(`${type}: eps`, eps, (v) => v >= 0, '>= 0');
  checkNumber(`${type}: weightDecay`, weightDecay, (v) => v >= 0, '>= 0');
  return { betas: [betas[0], betas[1]], eps, weightDecay };
}

/** Adam and AdamW share the kernel; they differ only in where the weight decay goes. */
abstract class AdamBase extends Optimizer {
  private hyper: AdamHyperParams;

  protected constructor(
    type: string,
    params: Tensor[],
    options: AdamOptions,
    defaultWeightDecay: number,
    /** true: AdamW (p *= 1 - lr*wd before the step); false: Adam (wd*p added to the gradient). */
    private readonly decoupled: boolean,
  ) {
    // Checked before the parameters are packed, so a bad option leaves them untouched.
    const hyper = checkAdam(type, { betas: options.betas ?? [0.9, 0.999], eps: options.eps ?? 1e-8, weightDecay: options.weightDecay ?? defaultWeightDecay });
    super(type, params, options.lr ?? 1e-3, ['exp_avg', 'exp_avg_sq']);
    this.hyper = hyper;
  }

  get betas(): readonly [number, number] {
    return this.hyper.betas;
  }
  get eps(): number {
    return this.hyper.eps;
  }
  get weightDecay(): number {
    return this.hyper.weightDecay;
  }

  protected update(gradScale: Tensor, step: number): void {
    adamUpdate({
      param: this.flatParams,
      grad: this.flatGrads,
      gradScale,
      expAvg: this.buffer('exp_avg'),
      expAvgSq: this.buffer('exp_avg_sq'),
      lr: this.lr,
      beta1: this.hyper.betas[0],
      beta2: this.hyper.betas[1],
      eps: this.hyper.eps,
      weightDecay: this.hyper.weightDecay,
      decoupled: this.decoupled,
      step,
    });
  }

  protected hyperParams(): HyperParams {
    return { betas: [...this.hyper.betas], eps: this.hyper.eps, weightDecay: this.hyper.weightDecay };
  }

  protected setHyperParams(h: HyperParams): void {
    this.hyper = checkAdam(this.type, h);
  }
}

/** torch.optim.Adam (amsgrad=False): L2 weight decay added to the gradient. Defaults as torch (lr 1e-3, wd 0). */
export class Adam extends AdamBase {
  constructor(params: Tensor[], options: AdamOptions = {}) {
    super('Adam', params, options, 0, false);
  }
}

/** torch.optim.AdamW: decoupled weight decay (p *= 1 - lr*wd before the Adam step). Default weight decay 1e-2. */
export class AdamW extends AdamBase {
  constructor(params: Tensor[], options: AdamOptions = {}) {
    super('AdamW', params, options, 1e-2, true);
  }
}
