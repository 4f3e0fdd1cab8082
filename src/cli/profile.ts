// The `wgkd profile` and `wgkd roofline` commands (src/profile/ does the work).
import { writeFileSync } from 'node:fs';
import { Device, type DeviceOptions } from '../gpu/device.js';
import { kebab, parseFlags, type FlagType } from './args.js';
import { checkTrainOptions, readConfigFile, type TrainConfig } from '../train/trainer.js';
import { profileTraining } from '../profile/run.js';
import { PROFILING_DAWN_FLAGS } from '../profile/profile.js';
import { formatRoofline, roofline } from '../profile/roofline.js';

interface Command {
  summary: string;
  usage: string;
  run: (args: string[]) => Promise<void>;
}

export function profileCommands(trainSchema: Record<string, FlagType>, deviceOptions: (flags: Record<string, unknown>) => DeviceOptions): Record<string, Command> {
  const open = (flags: Record<string, unknown>) => {
    const options = deviceOptions(flags);
    return Device.open({ ...options, dawnFlags: [...(options.dawnFlags ?? []), ...PROFILING_DAWN_FLAGS] });
  };
  return {
    profile: {
      summary: 'time every dispatch of real training steps on the GPU: table per dispatch, totals, trace, timeline',
      usage:
        'wgkd profile [every wgkd train option: --model --recipe --teacher --batch ...] [--steps 3] [--warmup 2]\n' +
        '             [--first-step] [--trace FILE.json] [--timeline FILE.png] [--json] [--no-roofline]\n' +
        '  --first-step: profile the first step itself (where a driver compiles pipelines at their first dispatch)\n' +
        '  --trace: Chrome Trace Event JSON (ui.perfetto.dev, chrome://tracing); --timeline: a PNG of the step',
      run: async (args) => {
        const flags = parseFlags(args, { ...trainSchema, steps: 'number', warmup: 'number', trace: 'string', timeline: 'string', json: 'boolean', noRoofline: 'boolean', firstStep: 'boolean' }, 'profile');
        const { config: _c, backend: _b, adapter: _a, power: _p, steps, warmup, firstStep, trace, timeline, json, noRoofline, ...overrides } = flags;
        checkTrainOptions(overrides, 'profile', kebab);
        const fromFile = flags.config ? readConfigFile(String(flags.config)) : {};
        const dev = await open(flags);
        const result = await profileTraining(dev, { ...fromFile, ...(overrides as Partial<TrainConfig>) }, {
          steps: (steps as number | undefined) ?? 3,
          warmup: (warmup as number | undefined) ?? 2,
          firstStep: Boolean(firstStep),
          trace: trace as string | undefined,
          timeline: timeline as string | undefined,
          json: Boolean(json),
          roofline: !noRoofline,
          log: (line) => process.stderr.write(`${line}\n`),
        });
        console.log(result.text);
        if (trace && !json) console.log(`trace: ${String(trace)} (open in ui.perfetto.dev or chrome://tracing)`);
        if (timeline && !json) console.log(`timeline: ${String(timeline)}`);
        dev.destroy();
      },
    },
    roofline: {
      summary: "measure this adapter's ceilings: FMA GFLOP/s, copy GB/s, dispatch/submit/readback costs (cached)",
      usage: 'wgkd roofline [--json] [--remeasure] [--out FILE.json]',
      run: async (args) => {
        const flags = parseFlags(args, { json: 'boolean', remeasure: 'boolean', out: 'string', backend: 'string', adapter: 'string', power: 'string' }, 'roofline');
        const dev = await open(flags);
        const r = await roofline(dev, { remeasure: Boolean(flags.remeasure), log: (line) => process.stderr.write(`${line}\n`) });
        console.log(flags.json ? JSON.stringify(r) : formatRoofline(r));
        if (flags.out) writeFileSync(String(flags.out), `${JSON.stringify(r, null, 2)}\n`);
        dev.destroy();
      },
    },
  };
}
