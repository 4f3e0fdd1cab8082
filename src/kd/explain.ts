// `wgkd recipe explain [SPEC]`: the expanded spec (every default filled in), the formula of each loss part with
// its numbers, and which teacher tensors it needs. Without SPEC: every preset.
import { PRESETS, expandRecipe, parseRecipe, type ExpandedRecipe, type RecipeConfig } from './spec.js';

interface Part {
  name: string; // as in the logs
  weight: number;
  formula: string;
  teacher: string; // the teacher-file tensors it reads
  note?: string;
}

const fmt = (v: number) => String(v);

/** The loss parts of an expanded recipe, in the order Recipe.compute runs them. */
function partsOf(r: ExpandedRecipe): Part[] {
  const parts: Part[] = [];
  if (r.ce) {
    parts.push({
      name: 'ce',
      weight: r.ce.weight,
      formula: `cross-entropy of the student logits z_s against the labels y (T = 1), label smoothing ${fmt(r.ce.labelSmoothing)}, mean over the batch`,
      teacher: 'nothing',
    });
  }
  if (r.kd) {
    parts.push({
      name: 'kd',
      weight: r.kd.weight,
      formula: `T^2 * (1/B) sum_b sum_c p_t^T log(p_t^T / p_s^T) with p^T = softmax(z / T), T = ${fmt(r.kd.T)} (KL(teacher || student), batchmean; Hinton et al. 2015)`,
      teacher: 'logits',
    });
  }
  if (r.dkd) {
    const d = r.dkd;
    parts.push({
      name: 'dkd',
      weight: d.weight,
      formula: `${fmt(d.alpha)} * T^2 * TCKD + ${fmt(d.beta)} * T^2 * NCKD, T = ${fmt(d.T)} (Zhao et al. 2022; TCKD: KL of [p(target), 1 - p(target)], NCKD: KL over the non-target classes; batchmean)`,
      teacher: 'logits',
      note: d.warmup > 0 ? `weight scaled by min(epoch / ${fmt(d.warmup)}, 1), epochs counted from 1 (mdistiller's warm-up)` : 'no warm-up',
    });
  }
  if (r.fitnet) {
    const f = r.fitnet;
    const regressor =
      f.regressor === 'convreg'
        ? 'ConvReg: conv with bias + BN + ReLU (3x3 stride 2 for a student map twice the hint, a 4x4 stride-2 transposed conv for half, else an unpadded (1 + Hs - Ht) conv)'
        : 'conv without bias + BN (1x1 at equal sizes, 3x3 stride 2 for twice the size, else average pooling of the larger map and 1x1)';
    parts.push({
      name: 'fitnet',
      weight: f.weight,
      formula: `mean over all elements of (r(f_s) - f_t)^2, r = ${regressor}; f_s = student map ${f.student === 'auto' ? '(auto: the deepest one r can map)' : `'${f.student}'`} (Romero et al. 2015)`,
      teacher: f.teacher === 'auto' ? 'hint.<name> (auto: the first hint in the file)' : `hint.${f.teacher}`,
      note: f.stages === 'two-stage' ? `two-stage: only this part trains in the first ${f.hintEpochs} epoch(s)` : 'single stage (summed with the other parts from the start)',
    });
  }
  if (r.rkd) {
    const mu =
      r.rkd.distanceMean === 'positive'
        ? "mu = mean of d_ij over d_ij > 0 with squared distances clamped at 1e-12 (the RKD authors' code)"
        : 'mu = mean of d_ij over i != j';
    parts.push({
      name: 'rkd_distance',
      weight: r.rkd.distance,
      formula: `smoothL1(psi_s, psi_t), psi_ij = ||e_i - e_j|| / mu, ${mu}; each side normalised by its own mu; mean over B^2 entries (Park et al. 2019)`,
      teacher: 'embedding',
    });
    parts.push({
      name: 'rkd_angle',
      weight: r.rkd.angle,
      formula: 'smoothL1(a_s, a_t), a[i][j][k] = <u(e_j - e_i), u(e_k - e_i)>, u(v) = v / ||v||; mean over B^3 entries (Park et al. 2019)',
      teacher: 'embedding',
    });
  }
  if (r.dm) {
    parts.push({
      name: 'dm',
      weight: r.dm.weight,
      formula: r.dm.normalize
        ? 'mse(psi_s, psi_t) with psi = cdist(e, e) / (mean distance over i != j) (normalised, as RKD)'
        : 'mse(cdist(e_s, e_s), cdist(e_t, e_t)) on raw distances (the course material; scale-sensitive)',
      teacher: 'embedding',
    });
  }
  return parts;
}

/** The explanation of one recipe spec (a preset name, a JSON string or an object). */
export function explainRecipe(spec: string | RecipeConfig, context = 'recipe'): string {
  const expanded = expandRecipe(spec, context);
  const parts = partsOf(expanded);
  const running = parts.filter((p) => p.weight !== 0);
  const title = typeof spec === 'string' && !spec.trim().startsWith('{') ? `recipe '${spec.trim()}' (preset)` : `recipe ${JSON.stringify(parseRecipe(spec, context))}`;
  const width = Math.max(...parts.map((p) => p.name.length));
  const lines = [
    title,
    `  expanded: ${JSON.stringify(expanded)}`,
    `  loss = ${running.map((p) => `${fmt(p.weight)} * ${p.name}`).join(' + ')}`,
  ];
  for (const p of parts) {
    if (p.weight === 0) {
      lines.push(`  ${p.name.padEnd(width)}  weight 0: not computed (not in the logs, not in the gradient)`);
      continue;
    }
    lines.push(`  ${p.name.padEnd(width)}  weight ${fmt(p.weight)}: ${p.formula}`);
    lines.push(`  ${''.padEnd(width)}  needs from the teacher file: ${p.teacher}${p.note ? `; ${p.note}` : ''}`);
  }
  // Every named term's tensors, also at weight 0: training checks the teacher file for each term the spec names.
  const teacher = [...new Set(parts.map((p) => p.teacher).filter((t) => t !== 'nothing'))];
  lines.push(`  teacher tensors: ${teacher.length ? teacher.join(', ') : 'none (no --teacher needed)'}`);
  return lines.join('\n');
}

export const RECIPE_USAGE =
  "wgkd recipe explain [SPEC]   SPEC: a preset (ce, kd, kd+rkd, rkd, fitnet, dkd, dm) or JSON, e.g. '{\"rkd\":{\"distance\":1}}'; without SPEC: every preset";

/** The `wgkd recipe` command: its output, or an error for bad arguments or a bad spec. */
export function recipeCommand(args: string[]): string {
  const [sub, ...rest] = args;
  if (sub !== 'explain') throw new Error(`recipe: unknown subcommand '${sub ?? ''}' (explain)\nusage: ${RECIPE_USAGE}`);
  if (rest.length > 1) throw new Error(`recipe explain: one SPEC at most, got ${rest.length} arguments (quote a JSON spec)`);
  if (rest.length === 1) return explainRecipe(rest[0]);
  return Object.keys(PRESETS).map((name) => explainRecipe(name)).join('\n\n');
}
