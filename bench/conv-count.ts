// Runs one conv2d pass of one shape a few times on one path, for instruction counts under callgrind (load-
// independent, unlike timings on a shared machine); bench/count.sh drives it as it drives
// gemm-count.ts (READY, instrumentation on, the repetitions, DONE):
//   bash bench/count.sh bench/conv-count.ts fwd 64,3,64,64 16,3,3,3 1 1 1 stem
// fwd: the forward; dw: dW + db (x frozen, as a stem in training); dx: dX alone (weights frozen); bwd: dX, dW, db.
// Arguments after the shapes: stride, padding, groups, impl ('auto', 'general', 'stem', ...), repetitions.
import { handshake } from './handshake.js';
import { Device } from '../src/gpu/device.js';
import { Tensor, scope } from '../src/tensor.js';
import { conv2d, type Conv2dOptions } from '../src/ops/conv.js';

const [what, xs, ws, stride, pad, groups, impl, repsText, goFile] = process.argv.slice(2);
const xShape = xs.split(',').map(Number) as [number, number, number, number];
const wShape = ws.split(',').map(Number) as [number, number, number, number];
const dev = await Device.open();
const x = Tensor.randn(xShape, { seed: 1, requiresGrad: what === 'dx' || what === 'bwd' });
const weight = Tensor.randn(wShape, { seed: 2, std: 0.1, requiresGrad: what === 'dw' || what === 'bwd' });
const bias = Tensor.randn([wShape[0]], { seed: 3, requiresGrad: what === 'dw' || what === 'bwd' });
const options: Conv2dOptions = { stride: Number(stride), padding: Number(pad), groups: Number(groups), impl: impl as Conv2dOptions['impl'] };
const out = conv2d(x, weight, bias, options);
const gOut = Tensor.randn(out.shape, { seed: 4 });
const run = () => scope(() => (what === 'fwd' ? conv2d(x, weight, bias, options) : out.node!.backward(gOut)));
run(); // compiles the pipelines
await dev.sync();
const reps = Number(repsText ?? 1);
if (goFile) await handshake('READY', goFile);
for (let i = 0; i < reps; i++) {
  run();
  await dev.sync();
}
if (goFile) await handshake('DONE', `${goFile}.done`);
dev.destroy();
