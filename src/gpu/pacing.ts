// Waiting without spinning. While any GPU promise is pending, Dawn's Node binding polls for it in a setImmediate
// loop: a host that waits for a long submit burns a core doing nothing, and on a software adapter that core is one
// the GPU's own threads need. So the device sleeps through most of a submit's expected GPU time before it asks
// Dawn about it. The expectation is learnt per kind of submit (a hash of its kernels and grids: a training step's
// submits are all alike): the last time from submit to done, unless it was an outlier (over OUTLIER x the time
// before: the first step compiles every pipeline), then the one before, so one slow submit never makes the next
// one sleep long. Sleeping SLEEP_SHARE of it leaves the rest to
// polling; when the GPU finishes sooner, the observed time shrinks and so does the next sleep.
const SLEEP_SHARE = 0.85;
const MIN_SLEEP_MS = 2; // below this a timer costs more than the polling it saves
const MAX_KINDS = 4096;
const OUTLIER = 1.5;

export class SubmitPacer {
  private observedMs = new Map<number, [number, number]>(); // the last two observations, latest first

  /** How long to sleep after submitting work of this kind before asking whether it is done, ms. */
  sleepMs(kind: number): number {
    const last = this.observedMs.get(kind);
    if (!last || !Number.isFinite(last[1])) return 0; // seen once at most: maybe a first step that compiled
    const [latest, before] = last;
    const ms = (latest > OUTLIER * before ? before : latest) * SLEEP_SHARE;
    return ms >= MIN_SLEEP_MS ? ms : 0;
  }

  /** Records how long work of this kind took from submit to done (as seen by the host). */
  observe(kind: number, ms: number): void {
    const last = this.observedMs.get(kind);
    if (!last && this.observedMs.size >= MAX_KINDS) this.observedMs.clear(); // work that never repeats: start over
    this.observedMs.set(kind, [ms, last ? last[0] : NaN]);
  }
}

export function sleep(ms: number): Promise<void> {
  return ms > 0 ? new Promise((resolve) => setTimeout(resolve, ms)) : Promise.resolve();
}
