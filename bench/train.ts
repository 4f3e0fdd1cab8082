// npm run bench:train: end-to-end training steps (bench/workloads.ts). For each workload: 3 warm-up steps, then
// the median of the timed steps (train img/s), eval-mode inference img/s, dispatches and submits per step; where
// PyTorch is importable (/usr/bin/python3, installed by setup), the same workload in PyTorch on the CPU right after
// wgkd's, and the ratio. --json prints one line per workload. Timing lives here, never in unit tests.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Device, PROFILING_DAWN_FLAGS, SHIPPED_TEACHER, formatReport, instrumentModules, noGrad, profile, scope } from '../src/index.js';
import { parseFlags } from '../src/cli/args.js';
import { median, roofline } from '../src/profile/roofline.js';
import { mainThreadCpuMs } from '../src/gpu/profiler.js';
import { WORKLOADS, buildWorkload, trainStep, type Workload, type WorkloadSpec } from './workloads.js';

const USAGE = `npm run bench:train [-- --json] [--steps 10] [--workloads demo,hw13-64,hw13-224] [--python /usr/bin/python3] [--no-torch]
                    [--profile]   (instead of timing: wgkd profile's report of one step of each workload)`;
const flags = parseFlags(process.argv.slice(2), { json: 'boolean', steps: 'number', workloads: 'string', python: 'string', noTorch: 'boolean', profile: 'boolean', help: 'boolean' }, 'bench:train');
if (flags.help) {
  console.log(USAGE);
  process.exit(0);
}
const steps = Math.max(10, Number(flags.steps ?? 10));
const WARMUP = 3;
const python = String(flags.python ?? '/usr/bin/python3');
const TORCH_SCRIPT = fileURLToPath(new URL('./torch/train_step.py', import.meta.url));


interface Result {
  workload: string;
  engine: string;
  batch: number;
  stepMs: number;
  trainImgPerSec: number;
  inferImgPerSec: number;
  dispatchesPerStep?: number;
  submitsPerStep?: number;
  hostCpuMsPerStep?: number; // main-thread CPU per training step (recording + waiting)
  loss?: number;
}

async function inferStep(dev: Device, w: Workload): Promise<void> {
  await noGrad(() => scope(async () => void (await dev.read([w.model.forward(w.x)]))));
}

async function benchWgkd(dev: Device, spec: WorkloadSpec): Promise<Result> {
  const w = await buildWorkload(spec, SHIPPED_TEACHER.outputs);
  let loss = 0;
  for (let i = 0; i < WARMUP; i++) loss = await trainStep(dev, w);
  const times: number[] = [];
  const before = { ...dev.counters };
  const cpuBefore = mainThreadCpuMs();
  for (let i = 0; i < steps; i++) {
    const t0 = performance.now();
    loss = await trainStep(dev, w);
    times.push(performance.now() - t0);
  }
  const hostCpuMsPerStep = (mainThreadCpuMs() - cpuBefore) / steps;
  const dispatches = (dev.counters.dispatches - before.dispatches) / steps;
  const submits = (dev.counters.submits - before.submits) / steps;
  w.model.eval();
  for (let i = 0; i < WARMUP; i++) await inferStep(dev, w);
  const inferTimes: number[] = [];
  for (let i = 0; i < steps; i++) {
    const t0 = performance.now();
    await inferStep(dev, w);
    inferTimes.push(performance.now() - t0);
  }
  w.optimizer.dispose();
  w.model.dispose();
  const stepMs = median(times);
  return {
    workload: spec.name, engine: 'wgkd', batch: spec.batch, stepMs, trainImgPerSec: (1000 * spec.batch) / stepMs,
    inferImgPerSec: (1000 * spec.batch) / median(inferTimes), dispatchesPerStep: dispatches, submitsPerStep: submits, hostCpuMsPerStep, loss,
  };
}

function torchAvailable(): boolean {
  return !flags.noTorch && spawnSync(python, ['-c', 'import torch'], { stdio: 'ignore' }).status === 0;
}

function benchTorch(spec: WorkloadSpec): Result | null {
  const run = spawnSync(python, [TORCH_SCRIPT, '--workload', spec.name, '--steps', String(steps), '--warmup', String(WARMUP), '--threads', '2'], { encoding: 'utf8' });
  if (run.status !== 0) {
    process.stderr.write(`bench:train: PyTorch ${spec.name} failed:\n${run.stderr}\n`);
    return null;
  }
  return JSON.parse(run.stdout.trim().split('\n').pop()!) as Result;
}

/** The profile of one step of the workload (after the warm-up), as `wgkd profile` prints it. */
async function profileWorkload(dev: Device, spec: WorkloadSpec): Promise<string> {
  const w = await buildWorkload(spec, SHIPPED_TEACHER.outputs);
  const undo = instrumentModules(w.model);
  const unprofiled: number[] = [];
  for (let i = 0; i < WARMUP + 3; i++) {
    const t0 = performance.now();
    await trainStep(dev, w);
    if (i >= WARMUP) unprofiled.push(performance.now() - t0);
  }
  const step = await profile(dev, () => trainStep(dev, w));
  undo();
  w.optimizer.dispose();
  w.model.dispose();
  return formatReport(step, { roofline: ceiling, unprofiledStepMs: median(unprofiled), title: `profile of one ${spec.name} training step (${spec.description})` });
}

const dev = await Device.open(flags.profile ? { dawnFlags: PROFILING_DAWN_FLAGS } : {});
const ceiling = await roofline(dev, { log: (l) => process.stderr.write(`roofline: ${l} (cached afterwards)\n`) });
const names = flags.workloads ? String(flags.workloads).split(',') : WORKLOADS.map((w) => w.name);
const withTorch = torchAvailable();
const rows: string[] = [];
for (const name of names) {
  const spec = WORKLOADS.find((w) => w.name === name);
  if (!spec) throw new Error(`bench:train: unknown workload '${name}' (${WORKLOADS.map((w) => w.name).join(', ')})`);
  if (flags.profile) {
    console.log(`${await profileWorkload(dev, spec)}\n`);
    continue;
  }
  process.stderr.write(`${name}: wgkd...\n`);
  const ours = await benchWgkd(dev, spec);
  if (withTorch) process.stderr.write(`${name}: PyTorch...\n`);
  const theirs = withTorch ? benchTorch(spec) : null;
  const ratio = theirs ? ours.trainImgPerSec / theirs.trainImgPerSec : null;
  if (flags.json) {
    console.log(JSON.stringify({ ...ours, adapter: dev.summary.description, torch: theirs, ratioToTorch: ratio, roofline: { fmaF32Gflops: ceiling.fmaF32Gflops, copyKernelGBs: ceiling.copyKernelGBs } }));
  } else {
    rows.push(
      `| ${name} | ${spec.batch} | ${ours.stepMs.toFixed(1)} | ${ours.hostCpuMsPerStep!.toFixed(0)} | ${ours.trainImgPerSec.toFixed(0)} | ${ours.inferImgPerSec.toFixed(0)} | ${ours.dispatchesPerStep} | ${ours.submitsPerStep} | ` +
        `${theirs ? theirs.trainImgPerSec.toFixed(0) : '-'} | ${theirs ? theirs.inferImgPerSec.toFixed(0) : '-'} | ${ratio === null ? '-' : `${ratio.toFixed(2)}x`} |`,
    );
  }
}
if (!flags.json && !flags.profile) {
  console.log(`\nadapter ${dev.summary.description}; roofline ${ceiling.fmaF32Gflops.toFixed(1)} GFLOP/s f32 FMA, ${ceiling.copyKernelGBs.toFixed(2)} GB/s copy kernel`);
  console.log(`median of ${steps} steps after ${WARMUP} warm-up; PyTorch ${withTorch ? 'on the CPU, 2 threads, run right after wgkd' : 'not available'}\n`);
  console.log('| workload | batch | wgkd ms/step | host CPU ms/step | wgkd train img/s | wgkd infer img/s | dispatches/step | submits/step | torch train img/s | torch infer img/s | wgkd / torch (train) |');
  console.log('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const r of rows) console.log(r);
}
dev.destroy();
