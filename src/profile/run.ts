// `wgkd profile`: real training steps (the trainer itself, with the options of `wgkd train`) on a throw-away run
// folder: a warm-up, then unprofiled steps (the step time without the profiler), then profiled steps; reports the
// median profiled step dispatch by dispatch, and writes its Chrome trace and timeline picture when asked.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Device } from '../gpu/device.js';
import { train, type TrainConfig } from '../train/trainer.js';
import { instrumentModules, startProfile, type StepProfile } from './profile.js';
import { median, roofline, type Roofline } from './roofline.js';
import { formatReport, summarize } from './report.js';
import { chromeTrace } from './trace.js';
import { writeTimeline } from './timeline.js';

export interface ProfileTrainingOptions {
  steps: number; // profiled steps (and as many unprofiled ones for the overhead)
  warmup: number;
  /** Profile the very first step instead (steps and warmup ignored): drivers that compile a pipeline at its first
   * dispatch (lavapipe) show each pipeline's compile time in its dispatch's row. */
  firstStep?: boolean;
  trace?: string;
  timeline?: string;
  json?: boolean;
  roofline?: boolean; // false: no % of roofline (skips measuring one when none is cached)
  log?: (line: string) => void;
}

export interface ProfileResult {
  step: StepProfile; // the median profiled step (by wall time)
  profiled: StepProfile[];
  unprofiledStepMs: number;
  roofline: Roofline | null;
  text: string;
}


export async function profileTraining(dev: Device, config: Partial<TrainConfig>, o: ProfileTrainingOptions): Promise<ProfileResult> {
  const log = o.log ?? (() => {});
  if (!(o.steps >= 1) || !(o.warmup >= 0)) throw new Error(`profile: --steps must be >= 1 and --warmup >= 0, got ${o.steps} and ${o.warmup}`);
  const ceiling = o.roofline === false ? null : await roofline(dev, { log: (l) => log(`roofline: ${l} (cached afterwards)`) });
  const total = o.firstStep ? 1 : o.warmup + 2 * o.steps;
  const batch = config.batch ?? 64;
  const out = mkdtempSync(join(tmpdir(), 'wgkd-profile-'));
  const unprofiledMs: number[] = [];
  const profiled: StepProfile[] = [];
  let step = 0;
  let t0 = 0;
  let session: ReturnType<typeof startProfile> | null = null;
  let uninstrument = () => {};
  try {
    await train(
      {
        ...config,
        out,
        resume: false,
        maxSteps: total,
        // Every step within the first epoch: no validation or checkpoint in between.
        trainLimit: config.trainLimit && config.trainLimit > 0 ? config.trainLimit : batch * (total + 1),
        quiet: true,
        logSteps: false,
      },
      {
        device: dev,
        hooks: {
          onStart: ({ model, extras }) => {
            const undo = [instrumentModules(model), ...extras.map((m, i) => instrumentModules(m, extras.length > 1 ? `extra${i}` : 'regressor'))];
            uninstrument = () => undo.forEach((u) => u());
          },
          beforeStep: () => {
            if (o.firstStep || step >= o.warmup + o.steps) session = startProfile(dev);
            t0 = performance.now();
          },
          afterStep: async () => {
            const ms = performance.now() - t0;
            if (session) {
              profiled.push(await session.stop());
              session = null;
            } else if (step >= o.warmup) unprofiledMs.push(ms);
            step++;
            log(`step ${step}/${total}${step <= o.warmup ? ' (warm-up)' : ''}: ${ms.toFixed(0)} ms`);
          },
        },
      },
    );
  } finally {
    uninstrument();
    rmSync(out, { recursive: true, force: true });
  }
  if (profiled.length === 0) throw new Error('profile: no step was profiled (the run stopped early)');
  const chosen = [...profiled].sort((a, b) => a.wallMs - b.wallMs)[Math.floor(profiled.length / 2)];
  const unprofiledStepMs = o.firstStep ? Number.NaN : median(unprofiledMs);
  const text = o.json
    ? JSON.stringify({ ...summarize(chosen, ceiling), step: { ...chosen, dispatches: undefined }, unprofiledStepMs, roofline: ceiling })
    : formatReport(chosen, { roofline: ceiling, unprofiledStepMs, title: o.firstStep ? 'profile of the first training step (compiles included)' : `profile of one training step (median of ${profiled.length} profiled, after ${o.warmup} warm-up)` });
  if (o.trace) writeFileSync(o.trace, `${JSON.stringify(chromeTrace(chosen))}\n`);
  if (o.timeline) await writeTimeline(o.timeline, chosen, `${config.model ?? 'dwpw'} training step`);
  return { step: chosen, profiled, unprofiledStepMs, roofline: ceiling, text };
}
