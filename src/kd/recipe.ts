// KD recipes, composable by config: a weighted sum of loss terms, each computed from the student's features and
// the precomputed teacher outputs of the same samples (and views). Formulas: ../../docs/kd.md. The spec (what a
// user writes, validated, and its expansion with every default) lives in ./spec.ts; FitNet's regressor in
// ./regressor.ts; `wgkd recipe explain` in ./explain.ts.
//
// Every term reports its unweighted value, so logs show each component separately; a part whose weight is 0 is
// not computed at all (it is in neither the logs nor the gradient).
import { Tensor } from '../tensor.js';
import { add, scale } from '../ops/elementwise.js';
import { crossEntropy, dkdLoss, kdKL, mseLoss, smoothL1Loss } from '../ops/loss.js';
import { cdist, rkdAngle, rkdDistance } from '../ops/relational.js';
import { withLabel } from '../gpu/labels.js';
import { Module } from '../nn/module.js';
import type { Features } from '../models/classifier.js';
import { HintRegressor, regressorFits } from './regressor.js';
import { expandRecipe, type ExpandedRecipe, type RecipeConfig } from './spec.js';

export { PRESETS, RKD_PAPER_WEIGHTS, TERMS, didYouMean, expandRecipe, parseRecipe, termWeights } from './spec.js';
export type { ExpandedRecipe, FitnetStages, RecipeConfig, RegressorKind, RkdDistanceMean, TermName } from './spec.js';
export { HintRegressor, regressorFits } from './regressor.js';
export { explainRecipe, recipeCommand } from './explain.js';

/** The RKD authors' pdist clamp (on squared distances), used by `"distanceMean": "positive"`. */
export const RKD_AUTHORS_PDIST_CLAMP = 1e-12;

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

/**
 * DKD's linear warm-up (mdistiller): the DKD loss is scaled by min(epoch / warmup, 1) with epochs counted from 1
 * there; `epoch` here is wgkd's 0-based epoch index, hence epoch + 1. warmup 0: no warm-up (factor 1).
 */
export function dkdWarmupFactor(warmup: number, epoch: number): number {
  return warmup > 0 ? Math.min((epoch + 1) / warmup, 1) : 1;
}

export class Recipe {
  /** The expanded spec: every default filled in. */
  readonly config: ExpandedRecipe;
  readonly regressor: HintRegressor | null = null;
  readonly studentMap: string | null = null;
  readonly teacherHint: string | null = null;

  /**
   * @param studentMaps shapes [C, H, W] of the student's named feature maps (from a dry forward)
   * @param teacher what the teacher file holds
   */
  constructor(spec: string | RecipeConfig, studentMaps: Record<string, number[]>, teacher: TeacherShapes) {
    const config = (this.config = expandRecipe(spec));
    const need = (what: string, ok: boolean, term: string) => {
      if (!ok) throw new Error(`recipe term '${term}' needs teacher ${what}, which the teacher file does not have`);
    };
    if (config.kd) need('logits', teacher.hasLogits, 'kd');
    if (config.dkd) need('logits', teacher.hasLogits, 'dkd');
    if (config.rkd) need('embeddings', teacher.hasEmbedding, 'rkd');
    if (config.dm) need('embeddings', teacher.hasEmbedding, 'dm');
    if (config.fitnet) {
      const f = config.fitnet;
      const hintNames = Object.keys(teacher.hints);
      need('hint maps (hint.<name> tensors)', hintNames.length > 0, 'fitnet');
      const teacherHint = f.teacher === 'auto' ? hintNames[0] : f.teacher;
      if (!teacher.hints[teacherHint]) throw new Error(`fitnet: the teacher file has no hint '${teacherHint}' (has: ${hintNames.join(', ')})`);
      let studentMap = f.student;
      if (studentMap === 'auto') {
        // The deepest student map whose spatial size this regressor can map to the hint.
        const candidates = Object.entries(studentMaps).filter(([, shape]) => regressorFits(f.regressor, shape, teacher.hints[teacherHint]));
        if (candidates.length === 0) throw new Error(`fitnet: no student map can be matched to the hint '${teacherHint}' [${teacher.hints[teacherHint]}] by the ${f.regressor} regressor`);
        studentMap = candidates[candidates.length - 1][0];
      }
      if (!studentMaps[studentMap]) throw new Error(`fitnet: the student has no feature map '${studentMap}' (has: ${Object.keys(studentMaps).join(', ')})`);
      this.studentMap = studentMap;
      this.teacherHint = teacherHint;
      this.regressor = new HintRegressor(studentMaps[studentMap], teacher.hints[teacherHint], f.regressor);
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
    if (!this.hintOnly(epoch)) {
      if (c.ce) {
        const { labelSmoothing } = c.ce;
        term('ce', c.ce.weight, () => crossEntropy(student.logits, labels, { labelSmoothing }));
      }
      if (c.kd) {
        const { T } = c.kd;
        term('kd', c.kd.weight, () => kdKL(student.logits, teacher.logits!, T));
      }
      if (c.dkd) {
        const { alpha, beta, T } = c.dkd;
        term('dkd', c.dkd.weight * dkdWarmupFactor(c.dkd.warmup, epoch), () => dkdLoss(student.logits, teacher.logits!, labels, { alpha, beta, T }));
      }
      if (c.rkd) {
        const options = c.rkd.distanceMean === 'positive' ? { pdistClamp: RKD_AUTHORS_PDIST_CLAMP } : {};
        term('rkd_distance', c.rkd.distance, () => smoothL1Loss(rkdDistance(student.embedding, options), rkdDistance(teacher.embedding!, options)));
        term('rkd_angle', c.rkd.angle, () => smoothL1Loss(rkdAngle(student.embedding), rkdAngle(teacher.embedding!)));
      }
      if (c.dm) {
        const { normalize } = c.dm;
        term('dm', c.dm.weight, () =>
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
      term('fitnet', c.fitnet.weight, () => mseLoss(this.regressor!.forward(map), this.regressor!.target(hint)));
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

  /** One line on how FitNet's regressor maps the student map to the hint (null without fitnet). */
  describeRegressor(): string | null {
    if (!this.regressor) return null;
    return `fitnet: student map '${this.studentMap}' -> teacher hint '${this.teacherHint}' by ${this.regressor.description}`;
  }
}
