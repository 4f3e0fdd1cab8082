// The submit pacer (src/gpu/pacing.ts): how long the device sleeps after a submit before asking Dawn about it.
import { describe, expect, it } from 'vitest';
import { SubmitPacer } from '../src/gpu/pacing.js';

describe('SubmitPacer: sleep 85% of the last time a kind of submit took (the one before, when the last was an outlier)', () => {
  it('sleeps only once a kind was seen twice, and then by the last time', () => {
    const pacer = new SubmitPacer();
    expect(pacer.sleepMs(169)).toBe(0);
    pacer.observe(169, 600);
    expect(pacer.sleepMs(169)).toBe(0); // one observation: the first step, which may have compiled every pipeline
    pacer.observe(169, 500);
    expect(pacer.sleepMs(169)).toBeCloseTo(425);
    pacer.observe(169, 550);
    expect(pacer.sleepMs(169)).toBeCloseTo(467.5);
    expect(pacer.sleepMs(12)).toBe(0); // kinds are separate
  });
  it('one slow submit (a cold first step) does not make the next one sleep long', () => {
    const pacer = new SubmitPacer();
    pacer.observe(169, 28_000);
    pacer.observe(169, 600);
    pacer.observe(169, 28_000); // a stall
    expect(pacer.sleepMs(169)).toBeCloseTo(510);
  });
  it('follows a faster GPU down, and never sleeps for a couple of milliseconds', () => {
    const pacer = new SubmitPacer();
    pacer.observe(5, 100);
    pacer.observe(5, 100);
    pacer.observe(5, 40);
    expect(pacer.sleepMs(5)).toBeCloseTo(34);
    pacer.observe(5, 2);
    expect(pacer.sleepMs(5)).toBe(0);
  });
});
