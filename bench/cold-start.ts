// The first training step of a workload (bench/workloads.ts, the step bench:train times), profiled: where a driver
// compiles each pipeline at its first dispatch (lavapipe does), that dispatch's time is mostly the compile. Prints
// every pipeline (shader, entry point, override constants) by the time of its first dispatch, slowest first, and
// the totals per family.
// Run it on a cold shader cache to see what a fresh machine pays before training starts:
//   MESA_SHADER_CACHE_DISABLE=true npx tsx bench/cold-start.ts demo [--top 20]
import { Device, SHIPPED_TEACHER, startProfile } from '../src/index.js';
import { parseFlags } from '../src/cli/args.js';
import { WORKLOADS, buildWorkload, trainStep } from './workloads.js';

const [name = 'demo', ...rest] = process.argv.slice(2);
const flags = parseFlags(rest, { top: 'number' }, 'bench/cold-start');
const spec = WORKLOADS.find((w) => w.name === name);
if (!spec) throw new Error(`bench/cold-start: unknown workload ${name} (known: ${WORKLOADS.map((w) => w.name).join(', ')})`);
const dev = await Device.open();
const w = await buildWorkload(spec, SHIPPED_TEACHER.outputs);
const session = startProfile(dev);
await trainStep(dev, w);
const step = await session.stop();

const firstMs = new Map<string, number>(); // pipeline -> its first dispatch, ms
for (const d of step.dispatches) {
  const key = `${d.shader}:${d.entry}${Object.keys(d.constants).length ? ` ${JSON.stringify(d.constants, Object.keys(d.constants).sort())}` : ''}`;
  if (!firstMs.has(key)) firstMs.set(key, d.gpuUs / 1000);
}
const byFamily = new Map<string, number>();
for (const [key, ms] of firstMs) byFamily.set(key.split(':')[0], (byFamily.get(key.split(':')[0]) ?? 0) + ms);
const sorted = [...firstMs].sort((a, b) => b[1] - a[1]);
const top = Number(flags.top ?? 20);
console.log(`${name}: first step ${step.wallMs.toFixed(0)} ms wall, ${step.pipelinesCreated} pipelines created, ${(step.gpuSumUs / 1000).toFixed(0)} ms of dispatches`);
console.log(`first dispatch of each pipeline: ${sorted.reduce((t, [, ms]) => t + ms, 0).toFixed(0)} ms in all; slowest ${Math.min(top, sorted.length)}:`);
for (const [key, ms] of sorted.slice(0, top)) console.log(`${ms.toFixed(0).padStart(7)} ms  ${key}`);
console.log(`by family (ms): ${[...byFamily].sort((a, b) => b[1] - a[1]).map(([f, ms]) => `${f} ${ms.toFixed(0)}`).join(', ')}`);
dev.destroy();
