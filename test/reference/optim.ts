// Float64 references of PyTorch's optimiser update rules (torch.optim.SGD, Adam, AdamW single-tensor code paths
// and torch.nn.utils.clip_grad_norm_), written as plain loops over lists of parameters.

export interface SgdConfig {
  lr: number;
  momentum: number;
  dampening: number;
  weightDecay: number;
  nesterov: boolean;
}

export interface SgdState {
  /** One buffer per parameter; null until the first step (torch's lazy state). */
  momentumBuffer: (Float64Array | null)[];
}

export function newSgdState(count: number): SgdState {
  return { momentumBuffer: new Array(count).fill(null) };
}

/** torch.optim.SGD.step(), in place on `params` and `state`. */
export function sgdStep(params: Float64Array[], grads: Float64Array[], state: SgdState, c: SgdConfig): void {
  params.forEach((p, t) => {
    const g = grads[t];
    let buf = state.momentumBuffer[t];
    const firstStep = buf === null;
    if (c.momentum !== 0 && buf === null) buf = state.momentumBuffer[t] = new Float64Array(p.length);
    for (let i = 0; i < p.length; i++) {
      let dp = g[i] + c.weightDecay * p[i];
      if (c.momentum !== 0) {
        buf![i] = firstStep ? dp : c.momentum * buf![i] + (1 - c.dampening) * dp;
        dp = c.nesterov ? dp + c.momentum * buf![i] : buf![i];
      }
      p[i] -= c.lr * dp;
    }
  });
}

export interface AdamConfig {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** AdamW when true. */
  decoupled: boolean;
}

export interface AdamState {
  step: number;
  expAvg: Float64Array[];
  expAvgSq: Float64Array[];
}

export function newAdamState(params: Float64Array[]): AdamState {
  return { step: 0, expAvg: params.map((p) => new Float64Array(p.length)), expAvgSq: params.map((p) => new Float64Array(p.length)) };
}

/** torch.optim.Adam / AdamW .step() (amsgrad=False), in place. */
export function adamStep(params: Float64Array[], grads: Float64Array[], state: AdamState, c: AdamConfig): void {
  state.step++;
  const biasCorrection1 = 1 - c.beta1 ** state.step;
  const biasCorrection2 = 1 - c.beta2 ** state.step;
  const stepSize = c.lr / biasCorrection1;
  params.forEach((p, t) => {
    const m = state.expAvg[t];
    const v = state.expAvgSq[t];
    for (let i = 0; i < p.length; i++) {
      let g = grads[t][i];
      if (c.decoupled) p[i] *= 1 - c.lr * c.weightDecay;
      else g += c.weightDecay * p[i];
      m[i] = c.beta1 * m[i] + (1 - c.beta1) * g;
      v[i] = c.beta2 * v[i] + (1 - c.beta2) * g * g;
      const denom = Math.sqrt(v[i]) / Math.sqrt(biasCorrection2) + c.eps;
      p[i] -= (stepSize * m[i]) / denom;
    }
  });
}

/** torch.nn.utils.clip_grad_norm_(max_norm, norm_type=2): scales `grads` in place; returns the total norm. */
export function clipGradNorm(grads: Float64Array[], maxNorm: number): number {
  let sumSq = 0;
  for (const g of grads) for (let i = 0; i < g.length; i++) sumSq += g[i] * g[i];
  const total = Math.sqrt(sumSq);
  const coef = Math.min(maxNorm / (total + 1e-6), 1);
  for (const g of grads) for (let i = 0; i < g.length; i++) g[i] *= coef;
  return total;
}
