// FitNet's regressor: maps the student's guided map [Cs, Hs, Ws] to the teacher hint's shape [Ct, Ht, Wt]. It
// trains with the student but is not part of it (training only; its parameters are reported separately).
// Two variants (docs/kd.md, FitNet):
// - 'conv-bn' (wgkd's default): conv without bias + BN. Same size: 1x1 conv; Hs = 2 Ht: 3x3 stride-2 conv;
//   other integer ratios: average-pool the larger map (student or hint) to the smaller, then 1x1 conv.
// - 'convreg': ConvReg of the common KD codebases (CRD/RepDistiller, mdistiller): conv WITH bias + BN + ReLU.
//   Hs = 2 Ht: 3x3 stride-2 conv, padding 1; Hs = Ht / 2: 4x4 stride-2 transposed conv, padding 1;
//   Hs >= Ht otherwise: an unpadded conv with kernel (1 + Hs - Ht, 1 + Ws - Wt) (1x1 at equal sizes); any other
//   ratio is an error there and here.
import { Tensor } from '../tensor.js';
import { avgPool2d } from '../ops/pool.js';
import { BatchNorm2d, Conv2d, ReLU, Sequential } from '../nn/layers.js';
import { ConvTranspose2d } from '../nn/conv-transpose.js';
import { Module } from '../nn/module.js';
import type { RegressorKind } from './spec.js';

/** Whether a regressor of this kind can map a student map [Cs, Hs, Ws] to a hint [Ct, Ht, Wt]. */
export function regressorFits(kind: RegressorKind, student: number[], teacher: number[]): boolean {
  const [, hs, ws] = student;
  const [, ht, wt] = teacher;
  if (kind === 'convreg') return (hs === 2 * ht && ws === 2 * wt) || (2 * hs === ht && 2 * ws === wt) || (hs >= ht && ws >= wt);
  const ratio = (a: number, b: number) => (a >= b ? a / b : b / a);
  const r = ratio(hs, ht);
  return Number.isInteger(r) && ratio(ws, wt) === r && (hs >= ht) === (ws >= wt);
}

export class HintRegressor extends Module {
  readonly net: Sequential;
  readonly poolBy: number; // pool the larger map by this factor first (1 = no pooling)
  readonly poolTeacher: boolean;
  /** What the regressor is, in words (printed by the trainer and `wgkd recipe explain`). */
  readonly description: string;
  constructor(student: number[], teacher: number[], readonly kind: RegressorKind = 'conv-bn') {
    super();
    const [cs, hs, ws] = student;
    const [ct, ht, wt] = teacher;
    this.poolBy = 1;
    this.poolTeacher = false;
    if (kind === 'convreg') {
      let conv: Module;
      if (hs === 2 * ht && ws === 2 * wt) {
        conv = new Conv2d(cs, ct, 3, { stride: 2, padding: 1 });
        this.description = `conv 3x3 stride 2 (bias) + BN + ReLU`;
      } else if (2 * hs === ht && 2 * ws === wt) {
        conv = new ConvTranspose2d(cs, ct, 4, { stride: 2, padding: 1 });
        this.description = `transposed conv 4x4 stride 2 (bias) + BN + ReLU`;
      } else if (hs >= ht && ws >= wt) {
        const kernel: [number, number] = [1 + hs - ht, 1 + ws - wt];
        conv = new Conv2d(cs, ct, kernel);
        this.description = `conv ${kernel[0]}x${kernel[1]} (bias) + BN + ReLU`;
      } else {
        throw new Error(`fitnet: the convreg regressor cannot map student map [${student}] to teacher hint [${teacher}] (it takes Hs = 2 Ht, Hs = Ht / 2 or Hs >= Ht, as ConvReg does)`);
      }
      this.net = new Sequential(conv, new BatchNorm2d(ct), new ReLU());
    } else if (hs === ht && ws === wt) {
      this.net = new Sequential(new Conv2d(cs, ct, 1, { bias: false }), new BatchNorm2d(ct));
      this.description = 'conv 1x1 (no bias) + BN';
    } else if (hs === 2 * ht && ws === 2 * wt) {
      this.net = new Sequential(new Conv2d(cs, ct, 3, { stride: 2, padding: 1, bias: false }), new BatchNorm2d(ct));
      this.description = 'conv 3x3 stride 2 (no bias) + BN';
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
      this.description = `average-pool the ${studentLarger ? 'student map' : 'teacher hint'} by ${factor}, then conv 1x1 (no bias) + BN`;
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
