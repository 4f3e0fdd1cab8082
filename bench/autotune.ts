// Tunes the kernels of the bench:train workloads on this adapter ahead of time: one training step and one
// inference step of each workload register their kernel shapes with the autotuner (src/gpu/autotune.ts), then
// autotunePending() times the candidates and writes .cache/wgkd/autotune/, which every later process on this adapter
// and driver (training, bench:train, the profiler) reads.
//   npx tsx bench/autotune.ts [--workloads demo,hw13-64] [--rounds 5]
import { Device, SHIPPED_TEACHER, noGrad, scope } from '../src/index.js';
import { autotunePending, pendingTunes } from '../src/gpu/autotune.js';
import { PROFILING_DAWN_FLAGS } from '../src/profile/profile.js';
import { WORKLOADS, buildWorkload } from './workloads.js';

const args = process.argv.slice(2);
const option = (name: string, fallback: string) => {
  const at = args.indexOf(`--${name}`);
  return at >= 0 && args[at + 1] ? args[at + 1] : fallback;
};
const names = option('workloads', 'demo,hw13-64').split(',');
const rounds = Number(option('rounds', '5'));
const unknown = names.filter((n) => !WORKLOADS.some((w) => w.name === n));
if (unknown.length > 0) throw new Error(`bench/autotune: unknown workload(s) ${unknown.join(', ')} (known: ${WORKLOADS.map((w) => w.name).join(', ')})`);

const dev = await Device.open({ dawnFlags: PROFILING_DAWN_FLAGS }); // unquantized timestamps: small GEMMs take µs
for (const spec of WORKLOADS.filter((w) => names.includes(w.name))) {
  const w = await buildWorkload(spec, SHIPPED_TEACHER.outputs);
  await scope(async () => {
    const features = w.model.forwardFeatures(w.x);
    w.recipe.compute(features, w.y, w.teacher).total.backward();
    w.optimizer.zeroGrad();
    await dev.sync();
  });
  w.model.eval();
  await noGrad(() => scope(async () => void (await dev.read([w.model.forward(w.x)]))));
  console.log(`${spec.name}: ${pendingTunes(dev)} kernel shapes wait for tuning`);
  const answered = await autotunePending(dev, { rounds, log: (line) => console.log(`  ${line}`) });
  console.log(`${spec.name}: tuned ${answered}`);
}
dev.destroy();
