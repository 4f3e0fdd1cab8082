// Gentle polling (src/gpu/polling.ts): Dawn's binding re-arms its event polling through globalThis.setImmediate;
// after a short spin those callbacks go to a 1 ms timer, everything else keeps Node's setImmediate.
import { describe, expect, it } from 'vitest';
import { POLL_MS, SPIN_MS, installGentlePolling } from '../src/gpu/polling.js';

/** Stands in for the binding's callback: anonymous, with native source (a Proxy's), calling `body` when run. */
function bindingLikeCallback(body: () => void): () => void {
  return new Proxy(function () {}, { get: (target, key) => (key === 'name' ? '' : Reflect.get(target, key)), apply: () => body() });
}

describe('gentle polling: a wait that outlasts the spin polls once per timer tick, not in a busy loop', () => {
  it('a self-re-arming binding callback runs at most about once per POLL_MS after the spin', async () => {
    installGentlePolling();
    expect(Function.prototype.toString.call(bindingLikeCallback(() => {}))).toBe('function () { [native code] }');
    const start = performance.now();
    const runs: number[] = [];
    await new Promise<void>((done) => {
      const poll = bindingLikeCallback(() => {
        runs.push(performance.now() - start);
        if (performance.now() - start < 40) setImmediate(poll);
        else done();
      });
      setImmediate(poll);
    });
    const afterSpin = runs.filter((t) => t > 5 * SPIN_MS);
    const spanMs = runs[runs.length - 1] - 5 * SPIN_MS;
    // A busy loop runs this thousands of times in 40 ms; a timer about once per POLL_MS (Node's timers count whole
    // milliseconds of loop time, so two runs can fall less than POLL_MS apart: allow up to twice as many).
    expect(afterSpin.length).toBeGreaterThan(3);
    expect(afterSpin.length).toBeLessThanOrEqual((2 * spanMs) / POLL_MS + 2);
    // A new wait (a binding callback scheduled from outside its polls) spins again: it runs as an immediate.
    expect(setImmediate(bindingLikeCallback(() => {})).constructor.name).toBe('Immediate');
  });

  it('other callers keep Node setImmediate, and callbacks with arguments are not the binding', async () => {
    installGentlePolling();
    const kinds: string[] = [];
    await new Promise<void>((done) => {
      let n = 0;
      const again = () => {
        if (++n < 200) kinds.push(setImmediate(again).constructor.name);
        else done();
      };
      kinds.push(setImmediate(again).constructor.name);
    });
    expect(new Set(kinds)).toEqual(new Set(['Immediate']));
    await new Promise<void>((done) => {
      const poll = bindingLikeCallback(() => {});
      const started = performance.now();
      const spin = () => {
        if (performance.now() - started < 2) kinds.push(setImmediate(poll as (arg: string) => void, 'arg').constructor.name), setImmediate(spin);
        else done();
      };
      spin();
    });
    expect(new Set(kinds)).toEqual(new Set(['Immediate']));
  });
});
