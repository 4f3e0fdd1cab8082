// KD recipes, composable by config: a weighted sum of loss terms, each computed from the student's features and
// the precomputed teacher outputs of the same samples (and views). Formulas: ../../docs/kd.md.
//
//   {"ce": 0.5, "kd": {"weight": 0.5, "T": 4}, "rkd": {"distance": 25, "angle": 50}}
//
// Every term reports its unweighted value, so logs show each component separately.
import { Tensor } from '../tensor.js';
import { add, scale } from '../ops/elementwise.js';
import { crossEntropy, dkdLoss, kdKL, mseLoss, smoothL1Loss } from '../ops/loss.js';
import { cdist, rkdAngle, rkdDistance } from '../ops/relational.js';
import { avgPool2d } from '../ops/pool.js';
import { withLabel } from '../gpu/labels.js';
import { BatchNorm2d, Conv2d, Sequential } from '../nn/layers.js';
import { Module } from '../nn/module.js';
import type { Features } from '../models/classifier.js';

export interface RecipeConfig {
  /** Hard-label cross-entropy on the student's logits. */
  ce?: number | { weight: number; labelSmoothing?: number };
  /** Hinton KD: T^2 * KL(p_t || p_s), batchmean. */
  kd?: number | { weight: number; T?: number };
  /** FitNet hints: mean squared error between regressor(student map) and the teacher's hint map. */
  fitnet?: { weight?: number; student: string; teacher: string; stages?: 'single' | 'two-stage'; hintEpochs?: number };
  /** Relational KD on embeddings: distance-wise and angle-wise smooth-L1. */
  rkd?: { distance?: number; angle?: number };
  /** The course's distance-metric loss: mse(cdist(e_s), cdist(e_t)); `normalize` divides by the mean distance (RKD). */
  dm?: number | { weight: number; normalize?: boolean };
  /** Decoupled KD: alpha*T^2*TCKD + beta*T^2*NCKD. */
  dkd?: number | { weight?: number; alpha?: number; beta?: number; T?: number };
}

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

export function parseRecipe(spec: string | RecipeConfig): RecipeConfig {
  if (typeof spec !== 'string') return spec;
  const trimmed = spec.trim();
  if (trimmed.startsWith('{')) {
    try {
      return JSON.parse(trimmed) as RecipeConfig;
    } catch (err) {
      throw new Error(`recipe: invalid JSON ${trimmed}: ${(err as Error).message}`);
    }
  }
  const preset = PRESETS[trimmed];
  if (!preset) throw new Error(`recipe: unknown preset '${trimmed}' (presets: ${Object.keys(PRESETS).join(', ')}; or a JSON object)`);
  return structuredClone(preset);
}

/** Teacher outputs for one batch, on the GPU. */
export interface TeacherTensors {
  logits?: Tensor;
  embedding?: Tensor;
  hints?: Record<string, Tensor>;
}

export interface TeacherShapes {
  hasLogits: boolean;
  hasEmbedding: boolean;
  hints: Record<string, number[]>; // name -> [C, H, W]
}

export interface LossTerms {
  total: Tensor;
  parts: Record<string, Tensor>; // unweighted values, for logging
}

/** FitNet's regressor: maps a student map [Cs,Hs,Ws] to the teacher hint's shape [Ct,Ht,Wt] (training only). */
export class HintRegressor extends Module {
  readonly net: Sequential;
  readonly poolBy: number; // pool the larger map by this factor first (1 = no pooling)
  readonly poolTeacher: boolean;
  constructor(student: number[], teacher: number[]) {
    super();
    const [cs, hs, ws] = student;
    const [ct, ht, wt] = teacher;
    if (hs === ht && ws === wt) {
      this.net = new Sequential(new Conv2d(cs, ct, 1, { bias: false }), new BatchNorm2d(ct));
      this.poolBy = 1;
      this.poolTeacher = false;
    } else if (hs === 2 * ht && ws === 2 * wt) {
      this.net = new Sequential(new Conv2d(cs, ct, 3, { stride: 2, padding: 1, bias: false }), new BatchNorm2d(ct));
      this.poolBy = 1;
      this.poolTeacher = false;
    } else {
      // Other ratios: average-pool the larger map down to the smaller one (integer factor), then 1x1 conv + BN.
      const studentLarger = hs > ht;
      const [big, small] = studentLarger ? [[hs, ws], [ht, wt]] : [[ht, wt], [hs, ws]];
      const factor = big[0] / small[0];
      if (!Number.isInteger(factor) || big[1] / small[1] !== factor) {
        throw new Error(`fitnet: cannot map student map [${student}] to teacher hint [${teacher}] (spatial sizes must differ by an integer factor)`);
      }
      this.poolBy = factor;
      this.poolTeacher = !studentLarger;
      this.net = new Sequential(new Conv2d(cs, ct, 1, { bias: false }), new BatchNorm2d(ct));
    }
    this.child('net', this.net);
  }
  forward(x: Tensor): Tensor {
    const pooled = this.poolBy > 1 && !this.poolTeacher ? avgPool2d(x, { kernelSize: this.poolBy }) : x;
    return this.net.forward(pooled);
  }
  /** The teacher map as the loss sees it (pooled when it is the larger one). */
  target(hint: Tensor): Tensor {
    return this.poolBy > 1 && this.poolTeacher ? avgPool2d(hint, { kernelSize: this.poolBy }) : hint;
  }
}

function weightOf(v: number | { weight?: number } | undefined, fallback = 1): number {
  if (v === undefined) return 0;
  return typeof v === 'number' ? v : (v.weight ?? fallback);
}

export class Recipe {
  readonly config: RecipeConfig;
  readonly regressor: HintRegressor | null = null;
  readonly studentMap: string | null = null;
  readonly teacherHint: string | null = null;

  /**
   * @param studentMaps shapes [C, H, W] of the student's named feature maps (from a dry forward)
   * @param teacher what the teacher file holds
   */
  constructor(spec: string | RecipeConfig, studentMaps: Record<string, number[]>, teacher: TeacherShapes) {
    const config = (this.config = parseRecipe(spec));
    const known = new Set(['ce', 'kd', 'fitnet', 'rkd', 'dm', 'dkd']);
    for (const key of Object.keys(config)) if (!known.has(key)) throw new Error(`recipe: unknown term '${key}' (terms: ${[...known].join(', ')})`);
    if (Object.keys(config).length === 0) throw new Error('recipe: no loss term');
    const need = (what: string, ok: boolean, term: string) => {
      if (!ok) throw new Error(`recipe term '${term}' needs teacher ${what}, which the teacher file does not have`);
    };
    if (config.kd !== undefined) need('logits', teacher.hasLogits, 'kd');
    if (config.dkd !== undefined) need('logits', teacher.hasLogits, 'dkd');
    if (config.rkd !== undefined) need('embeddings', teacher.hasEmbedding, 'rkd');
    if (config.dm !== undefined) need('embeddings', teacher.hasEmbedding, 'dm');
    if (config.fitnet) {
      const hintNames = Object.keys(teacher.hints);
      need('hint maps (hint.<name> tensors)', hintNames.length > 0, 'fitnet');
      const teacherHint = config.fitnet.teacher === 'auto' || !config.fitnet.teacher ? hintNames[0] : config.fitnet.teacher;
      if (!teacher.hints[teacherHint]) throw new Error(`fitnet: the teacher file has no hint '${teacherHint}' (has: ${hintNames.join(', ')})`);
      let studentMap = config.fitnet.student;
      if (studentMap === 'auto' || !studentMap) {
        // The deepest student map whose spatial size can be matched to the hint.
        const [, ht] = teacher.hints[teacherHint];
        const candidates = Object.entries(studentMaps).filter(([, [, h]]) => h === ht || h === 2 * ht || (h % ht === 0) || (ht % h === 0));
        if (candidates.length === 0) throw new Error(`fitnet: no student map can be matched to the hint '${teacherHint}' [${teacher.hints[teacherHint]}]`);
        studentMap = candidates[candidates.length - 1][0];
      }
      if (!studentMaps[studentMap]) throw new Error(`fitnet: the student has no feature map '${studentMap}' (has: ${Object.keys(studentMaps).join(', ')})`);
      this.studentMap = studentMap;
      this.teacherHint = teacherHint;
      this.regressor = new HintRegressor(studentMaps[studentMap], teacher.hints[teacherHint]);
    }
  }

  /** Training-only modules (their parameters train with the student but are not part of it). */
  extraModules(): Module[] {
    return this.regressor ? [this.regressor] : [];
  }

  /** Two-stage FitNet: during the first `hintEpochs` epochs only the hint loss trains. */
  hintOnly(epoch: number): boolean {
    const f = this.config.fitnet;
    return !!f && f.stages === 'two-stage' && epoch < (f.hintEpochs ?? 1);
  }

  compute(student: Features, labels: Tensor, teacher: TeacherTensors, epoch = 0): LossTerms {
    const c = this.config;
    const parts: Record<string, Tensor> = {};
    const weighted: Tensor[] = [];
    const term = (name: string, weight: number, value: () => Tensor) => {
      if (weight === 0) return;
      withLabel({ phase: 'loss', term: name }, () => {
        const v = value();
        parts[name] = v;
        weighted.push(weight === 1 ? v : scale(v, weight));
      });
    };
    const hintOnly = this.hintOnly(epoch);
    if (!hintOnly) {
      if (c.ce !== undefined) {
        const ls = typeof c.ce === 'number' ? 0 : (c.ce.labelSmoothing ?? 0);
        term('ce', weightOf(c.ce), () => crossEntropy(student.logits, labels, { labelSmoothing: ls }));
      }
      if (c.kd !== undefined) {
        const T = typeof c.kd === 'number' ? 4 : (c.kd.T ?? 4);
        term('kd', weightOf(c.kd), () => kdKL(student.logits, teacher.logits!, T));
      }
      if (c.dkd !== undefined) {
        const d = typeof c.dkd === 'number' ? {} : c.dkd;
        term('dkd', weightOf(c.dkd), () => dkdLoss(student.logits, teacher.logits!, labels, { alpha: d.alpha ?? 1, beta: d.beta ?? 8, T: d.T ?? 4 }));
      }
      if (c.rkd) {
        term('rkd_distance', c.rkd.distance ?? 25, () => smoothL1Loss(rkdDistance(student.embedding), rkdDistance(teacher.embedding!)));
        term('rkd_angle', c.rkd.angle ?? 50, () => smoothL1Loss(rkdAngle(student.embedding), rkdAngle(teacher.embedding!)));
      }
      if (c.dm !== undefined) {
        const normalize = typeof c.dm === 'number' ? false : (c.dm.normalize ?? false);
        term('dm', weightOf(c.dm), () =>
          normalize
            ? mseLoss(rkdDistance(student.embedding), rkdDistance(teacher.embedding!))
            : mseLoss(cdist(student.embedding, student.embedding), cdist(teacher.embedding!, teacher.embedding!)),
        );
      }
    }
    if (this.regressor && c.fitnet) {
      const map = student.maps[this.studentMap!];
      const hint = teacher.hints?.[this.teacherHint!];
      if (!hint) throw new Error(`fitnet: the teacher batch carries no hint '${this.teacherHint}'`);
      term('fitnet', c.fitnet.weight ?? 100, () => mseLoss(this.regressor!.forward(map), this.regressor!.target(hint)));
    }
    if (weighted.length === 0) throw new Error('recipe: every term has weight 0');
    const total = withLabel({ phase: 'loss', term: 'total' }, () => weighted.reduce((acc, t) => add(acc, t)));
    return { total, parts };
  }

  /** What the teacher file must provide for this recipe. */
  needs(): { logits: boolean; embedding: boolean; hints: string[] } {
    const c = this.config;
    return {
      logits: c.kd !== undefined || c.dkd !== undefined,
      embedding: c.rkd !== undefined || c.dm !== undefined,
      hints: this.teacherHint ? [this.teacherHint] : [],
    };
  }
}
