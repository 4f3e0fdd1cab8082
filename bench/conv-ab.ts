// Interleaved A/B timing of conv2d paths on one shape (old vs new kernel alternating in one process, median of
// the rounds), for comparisons on a shared machine where separate runs are not comparable:
//   npx tsx bench/conv-ab.ts fwd|dw|dx N,C,H,W O,CG,KH,KW stride pad groups implA implB [rounds]
// fwd: the forward alone; dw: dW + db (x frozen, as a stem in training); dx: dX alone (weights frozen).
import { Device } from '../src/gpu/device.js';
import { Tensor } from '../src/tensor.js';
import { conv2d, type Conv2dOptions } from '../src/ops/conv.js';
import { scope } from '../src/index.js';

const [what, xs, ws, stride, pad, groups, implA, implB, roundsText] = process.argv.slice(2);
const xShape = xs.split(',').map(Number) as [number, number, number, number];
const wShape = ws.split(',').map(Number) as [number, number, number, number];
const rounds = Number(roundsText ?? 7);
const dev = await Device.open();
const x = Tensor.randn(xShape, { seed: 1, requiresGrad: what === 'dx' });
const weight = Tensor.randn(wShape, { seed: 2, std: 0.1, requiresGrad: what === 'dw' });
const bias = Tensor.randn([wShape[0]], { seed: 3, requiresGrad: what === 'dw' });
const opts = (impl: string): Conv2dOptions => ({ stride: Number(stride), padding: Number(pad), groups: Number(groups), impl: impl as Conv2dOptions['impl'] });
const outs = [implA, implB].map((impl) => conv2d(x, weight, bias, opts(impl)));
const gOut = Tensor.randn(outs[0].shape, { seed: 4 });
const run = (i: number) => scope(() => (what === 'fwd' ? conv2d(x, weight, bias, opts([implA, implB][i])) : outs[i].node!.backward(gOut)));
const [n, , , ] = xShape;
const [o, cg, kh, kw] = wShape;
const [, , oh, ow] = outs[0].shape;
const flops = 2 * n * o * oh * ow * cg * kh * kw;
const samples: number[][] = [[], []];
for (let r = -1; r < rounds; r++) {
  for (const i of [0, 1]) {
    const t0 = performance.now();
    run(i);
    await dev.sync();
    if (r >= 0) samples[i].push(performance.now() - t0); // round -1 compiles
  }
}
const med = (a: number[]) => [...a].sort((p, q) => p - q)[Math.floor(a.length / 2)];
const [ma, mb] = samples.map(med);
console.log(`${what} x[${xShape}] w[${wShape}] s${stride} p${pad} g${groups}: ${implA} ${ma.toFixed(1)} ms (${(flops / ma / 1e6).toFixed(2)} GFLOP/s), ` +
  `${implB} ${mb.toFixed(1)} ms (${(flops / mb / 1e6).toFixed(2)} GFLOP/s), ${implA}/${implB} ${(ma / mb).toFixed(2)}x`);
dev.destroy();
