// Runs the RKD distance structure of a batch of embeddings (cdist forward and backward inside) a few times, for
// instruction counts under callgrind (bench/count.sh drives it, as it drives gemm-count.ts):
//   bash bench/count.sh bench/relational-count.ts rkd-distance 64x256
//   bash bench/count.sh bench/relational-count.ts rkd-angle 64x192
// What: rkd-distance or rkd-angle (forward + backward of sum(structure * g)); shape: B x D.
import { handshake } from './handshake.js';
import { Device } from '../src/gpu/device.js';
import { Tensor, scope } from '../src/tensor.js';
import { rkdAngle, rkdDistance } from '../src/ops/relational.js';
import { mul } from '../src/ops/elementwise.js';
import { sum } from '../src/ops/reduce.js';

const [what, shape, repsText, goFile] = process.argv.slice(2);
const [b, d] = shape.split('x').map(Number);
const structure = what === 'rkd-angle' ? rkdAngle : what === 'rkd-distance' ? rkdDistance : null;
if (!structure) throw new Error(`relational-count: unknown "${what}" (rkd-distance, rkd-angle)`);
const dev = await Device.open();
const e = Tensor.randn([b, d], { seed: 1, requiresGrad: true });
const outShape = what === 'rkd-angle' ? [b, b, b] : [b, b];
const g = Tensor.randn(outShape, { seed: 2 });
const run = () => scope(() => sum(mul(structure(e), g)).backward());
run(); // compiles the pipelines
await dev.sync();
if (goFile) await handshake('READY', goFile);
for (let i = 0; i < Number(repsText ?? 1); i++) {
  run();
  await dev.sync();
}
if (goFile) await handshake('DONE', `${goFile}.done`);
dev.destroy();
