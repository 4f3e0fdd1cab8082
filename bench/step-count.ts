// One training step of a workload (bench/workloads.ts), repeated, for instruction counts under callgrind: the whole
// step's cost, load-independent (bench/count.sh drives it):
//   REPS=1 bash bench/count.sh bench/step-count.ts hw13-64 train
import { handshake } from './handshake.js';
import { Device, SHIPPED_TEACHER, scope } from '../src/index.js';
import { WORKLOADS, buildWorkload } from './workloads.js';

const [name, , repsText, goFile] = process.argv.slice(2);
const spec = WORKLOADS.find((w) => w.name === name);
if (!spec) throw new Error(`step-count: unknown workload ${name}`);
const dev = await Device.open();
const w = await buildWorkload(spec, SHIPPED_TEACHER.outputs);
const step = () =>
  scope(async () => {
    const features = w.model.forwardFeatures(w.x);
    const terms = w.recipe.compute(features, w.y, w.teacher);
    terms.total.backward();
    w.optimizer.clipGradNorm(10);
    w.optimizer.step();
    w.optimizer.zeroGrad();
    await dev.read([terms.total]);
  });
for (let i = 0; i < 2; i++) await step(); // compiles the pipelines, fills the buffer pool
if (goFile) await handshake('READY', goFile);
for (let i = 0; i < Number(repsText ?? 1); i++) await step();
if (goFile) await handshake('DONE', `${goFile}.done`);
dev.destroy();
