// LR schedules against values worked out by hand (closed forms of the cosines used). CPU only.
import { describe, expect, it } from 'vitest';
import { constantLR, cosineLR, lrAt, makeSchedule, stepLR } from '../src/train/schedule.js';

const COS_PI_5 = (1 + Math.sqrt(5)) / 4; // cos(36 degrees)

function expectLrs(schedule: { lrAt(step: number): number }, expected: [number, number][]): void {
  for (const [step, lr] of expected) expect(schedule.lrAt(step), `lr at step ${step}`).toBeCloseTo(lr, 14);
}

describe('learning-rate schedules (tolerance: 1e-14 absolute)', () => {
  it('constant, with and without warm-up', () => {
    expectLrs(constantLR(0.1), [[0, 0.1], [1, 0.1], [1000, 0.1]]);
    // warm-up 4: lr * (s + 1) / 4 for s < 4
    expectLrs(constantLR(0.1, { warmupSteps: 4 }), [[0, 0.025], [1, 0.05], [2, 0.075], [3, 0.1], [4, 0.1], [99, 0.1]]);
  });

  it('cosine to zero and to a minimum lr', () => {
    // lr 1 over 10 steps: (1 + cos(pi t / 10)) / 2
    expectLrs(cosineLR(1, 10), [
      [0, 1],
      [2, (1 + COS_PI_5) / 2], // cos(pi/5)
      [5, 0.5],
      [8, (1 - COS_PI_5) / 2], // cos(4pi/5) = -cos(pi/5)
      [10, 0],
      [25, 0], // held at the minimum after the end
    ]);
    // min 0.1: 0.1 + 0.9 * (1 + cos) / 2
    expectLrs(cosineLR(1, 10, { minLr: 0.1 }), [[0, 1], [5, 0.55], [10, 0.1], [11, 0.1]]);
  });

  it('cosine after a warm-up starts its own step count at the end of the warm-up', () => {
    // warm-up 2 (0.5, 1), then cosine over the remaining 10 steps
    expectLrs(cosineLR(1, 12, { warmupSteps: 2 }), [
      [0, 0.5],
      [1, 1],
      [2, 1],
      [4, (1 + COS_PI_5) / 2],
      [7, 0.5],
      [12, 0],
    ]);
  });

  it('step: gamma every stepSize steps (torch StepLR), with warm-up', () => {
    expectLrs(stepLR(0.1, 3, { gamma: 0.5 }), [[0, 0.1], [2, 0.1], [3, 0.05], [5, 0.05], [6, 0.025], [9, 0.0125]]);
    expectLrs(stepLR(0.1, 3), [[2, 0.1], [3, 0.01], [6, 0.001]]); // default gamma 0.1 as torch
    expectLrs(stepLR(0.1, 3, { gamma: 0.5, warmupSteps: 2 }), [[0, 0.05], [1, 0.1], [2, 0.1], [4, 0.1], [5, 0.05], [8, 0.025]]);
  });

  it('plain configs: lrAt(config, step) and makeSchedule agree; fields of other kinds are ignored', () => {
    const config = { kind: 'cosine', baseLr: 0.3, totalSteps: 7, minLr: 0.01, warmupSteps: 1, stepSize: 0, gamma: 0 } as const;
    const schedule = makeSchedule(config);
    for (let s = 0; s < 10; s++) expect(schedule.lrAt(s)).toBe(lrAt(config, s));
    expect(Object.isFrozen(schedule.config)).toBe(true);
    expect(schedule.config).toEqual(config);
    expect(lrAt({ kind: 'constant', baseLr: 0.2, totalSteps: 0, stepSize: 0 }, 5)).toBe(0.2);
  });

  it('rejects bad steps and specs', () => {
    expect(() => constantLR(0.1).lrAt(-1)).toThrow(/step must be an integer >= 0, got -1/);
    expect(() => constantLR(0.1).lrAt(1.5)).toThrow(/step must be an integer >= 0, got 1.5/);
    expect(() => cosineLR(0.1, 5, { warmupSteps: 5 })).toThrow(/totalSteps must be an integer >= 6/);
    expect(() => stepLR(0.1, 0)).toThrow(/stepSize must be an integer >= 1/);
    expect(() => constantLR(-1)).toThrow(/baseLr must be >= 0/);
    expect(() => lrAt({ kind: 'cosine', baseLr: 1 }, 0)).toThrow(/totalSteps must be an integer >= 1, got undefined/);
    expect(() => makeSchedule({ kind: 'linear', baseLr: 1 } as never)).toThrow(/unknown lr schedule 'linear'/);
  });
});
