// Learning-rate schedules as pure functions of the step (0 = the first optimiser step): no state, so a resumed
// run needs only its step count. Use: `opt.lr = schedule.lrAt(opt.stepCount); opt.step();`. The lr travels in the
// optimiser's uniform every step, so changing it costs nothing.
//
// Warm-up (optional, every schedule): for step s < warmupSteps the lr is baseLr * (s + 1) / warmupSteps (the first
// step already moves; step warmupSteps - 1 reaches the full lr), i.e. torch's LinearLR(start_factor=1/W,
// total_iters=W-1). The main schedule then starts at step warmupSteps as if that were its step 0
// (torch's SequentialLR with milestone W).
//   constant: baseLr
//   cosine:   minLr + (baseLr - minLr) * (1 + cos(pi * t / T)) / 2, t = s - W, T = totalSteps - W; minLr once t >= T
//             (torch's CosineAnnealingLR(T_max=T, eta_min=minLr), held at the end)
//   step:     baseLr * gamma^floor(t / stepSize) (torch's StepLR)

/** A plain (JSON-friendly) schedule; only the fields of its kind are read. */
export interface ScheduleConfig {
  kind: 'constant' | 'cosine' | 'step';
  /** The lr after warm-up (torch's base_lr). */
  baseLr: number;
  warmupSteps?: number;
  /** cosine: steps including the warm-up; the lr reaches minLr at this step. */
  totalSteps?: number;
  /** cosine: the final lr (default 0). */
  minLr?: number;
  /** step: steps between decays. */
  stepSize?: number;
  /** step: decay factor (default 0.1, as torch). */
  gamma?: number;
}

export interface LRSchedule {
  readonly config: Readonly<ScheduleConfig>;
  /** The learning rate of optimiser step `step` (0-based). */
  lrAt(step: number): number;
}

function checkCount(what: string, value: number | undefined, min: number): void {
  if (!Number.isInteger(value) || value! < min) throw new Error(`${what} must be an integer >= ${min}, got ${value}`);
}

function checkRate(what: string, value: number): void {
  if (!(value >= 0) || !Number.isFinite(value)) throw new Error(`${what} must be >= 0, got ${value}`);
}

function checkConfig(c: ScheduleConfig): void {
  const where = `${c.kind} schedule`;
  if (c.kind !== 'constant' && c.kind !== 'cosine' && c.kind !== 'step') {
    throw new Error(`unknown lr schedule '${c.kind}' (constant, cosine, step)`);
  }
  checkRate(`${where}: baseLr`, c.baseLr);
  const warmup = c.warmupSteps ?? 0;
  checkCount(`${where}: warmupSteps`, warmup, 0);
  if (c.kind === 'cosine') {
    checkCount(`${where}: totalSteps`, c.totalSteps, warmup + 1);
    checkRate(`${where}: minLr`, c.minLr ?? 0);
  } else if (c.kind === 'step') {
    checkCount(`${where}: stepSize`, c.stepSize, 1);
    checkRate(`${where}: gamma`, c.gamma ?? 0.1);
  }
}

/** The learning rate of step `step` (0-based) under `config`. */
export function lrAt(config: ScheduleConfig, step: number): number {
  checkConfig(config);
  checkCount('lrAt: step', step, 0);
  const warmup = config.warmupSteps ?? 0;
  if (step < warmup) return (config.baseLr * (step + 1)) / warmup;
  const t = step - warmup;
  switch (config.kind) {
    case 'constant':
      return config.baseLr;
    case 'cosine': {
      const minLr = config.minLr ?? 0;
      const span = config.totalSteps! - warmup;
      if (t >= span) return minLr;
      return minLr + ((config.baseLr - minLr) * (1 + Math.cos((Math.PI * t) / span))) / 2;
    }
    case 'step':
      return config.baseLr * (config.gamma ?? 0.1) ** Math.floor(t / config.stepSize!);
  }
}

/** A schedule object from a plain config (checked now; kept as a frozen copy). */
export function makeSchedule(config: ScheduleConfig): LRSchedule {
  checkConfig(config);
  const frozen = Object.freeze({ ...config });
  return { config: frozen, lrAt: (step: number) => lrAt(frozen, step) };
}

export function constantLR(lr: number, options: { warmupSteps?: number } = {}): LRSchedule {
  return makeSchedule({ kind: 'constant', baseLr: lr, ...options });
}

export function cosineLR(lr: number, totalSteps: number, options: { minLr?: number; warmupSteps?: number } = {}): LRSchedule {
  return makeSchedule({ kind: 'cosine', baseLr: lr, totalSteps, ...options });
}

export function stepLR(lr: number, stepSize: number, options: { gamma?: number; warmupSteps?: number } = {}): LRSchedule {
  return makeSchedule({ kind: 'step', baseLr: lr, stepSize, ...options });
}
