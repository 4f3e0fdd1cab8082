// BatchNorm2d(training) -> ReLU -> MaxPool2d(2) of the hw13-64 student, unfused (batchNorm2d with the fused ReLU,
// then maxPool2d with its arg-max) vs fused (batchNormReluMaxPool2d's kernels), forward or backward, for
// instruction counts under callgrind (bench/count.sh drives it):
//   bash bench/count.sh bench/bnpool-count.ts 64x16x64x64 fused-bwd
// Without a go-file it times old and new interleaved in one process instead (median of alternating rounds):
//   npx tsx bench/bnpool-count.ts time
// The demo student's BN-ReLU pairs (no pool) count as bnrelu-fwd, bnrelu-bwd (and bnrelu-bwd-sums, the gradient
// sums alone); copy is the yardstick: bash bench/count.sh bench/bnpool-count.ts 64x32x28x28 bnrelu-bwd
import { handshake } from './handshake.js';
import { Device } from '../src/gpu/device.js';
import { Tensor } from '../src/tensor.js';
import { scope } from '../src/index.js';
import { batchNormApply, batchNormBackward, batchNormReluMaxPoolApply, batchNormReluMaxPoolBackward, batchNormStats } from '../src/ops/batchnorm.js';
import { maxPool2dBackward, maxPool2dForward } from '../src/ops/pool.js';

const HW13_SHAPES = ['64x16x64x64', '64x32x32x32', '64x64x16x16', '64x128x8x8'];
const pool = { kernelSize: 2 };
const wanted = { x: true, weight: true, bias: true };

interface Case { run: () => void; bytes: number }

/** One variant on one shape: `unfused-fwd`, `unfused-bwd`, `fused-fwd`, `fused-bwd`. The backward's inputs are
 * made once, outside what is counted. */
function makeCase(spec: string, variant: string): Case {
  const shape = spec.split('x').map(Number);
  const [n, c, h, w] = shape;
  const numel = n * c * h * w;
  const x = Tensor.randn(shape, { seed: 1 });
  const weight = Tensor.rand([c], { seed: 2, low: 0.5, high: 1.5 });
  const bias = Tensor.rand([c], { seed: 3, low: -0.5, high: 0.5 });
  const runningMean = Tensor.zeros([c]);
  const runningVar = Tensor.ones([c]);
  const options = { training: true };
  const gPooled = Tensor.randn([n, c, Math.floor(h / 2), Math.floor(w / 2)], { seed: 4 });
  const stats = batchNormStats(x, null, null, weight, bias, options);
  const fwdStats = () => batchNormStats(x, runningMean, runningVar, weight, bias, options);
  // Bytes each variant's kernels move (f32; the arg-max is i32), for GB/s.
  const f = numel * 4;
  switch (variant) {
    case 'unfused-fwd':
      // statistics (read x), normalise + relu (read x, write y), pool (read y, write out and arg-max)
      return { run: () => void maxPool2dForward(batchNormApply(x, fwdStats(), true), pool, true), bytes: f + 2 * f + f + f / 2 };
    case 'stats':
      return { run: () => void fwdStats(), bytes: f };
    case 'fused-fwd':
      return { run: () => void batchNormReluMaxPoolApply(x, fwdStats()), bytes: f + f + f / 4 };
    case 'unfused-bwd': {
      const y = batchNormApply(x, stats, true);
      const { argmax } = maxPool2dForward(y, pool, true);
      // pool backward (read g and arg-max, write dy), sums (read x, dy), dx (read x, dy, write dx); the ReLU mask is
      // recomputed from x
      return {
        run: () => void batchNormBackward(x, stats, maxPool2dBackward(gPooled, argmax!, y, pool), { training: true, relu: true }, wanted),
        bytes: f / 2 + f + 2 * f + 3 * f,
      };
    }
    case 'fused-bwd':
      // sums (read x, g), dx (read x, g, write dx)
      return { run: () => void batchNormReluMaxPoolBackward(x, stats, gPooled, options, wanted), bytes: f + f / 4 + 2 * f + f / 4 };
    case 'bnrelu-fwd':
      // A BN-ReLU pair without a pool (the demo student's), training forward with the running statistics: statistics
      // (read x), normalise + relu (read x, write y).
      return { run: () => void batchNormApply(x, fwdStats(), true), bytes: 3 * f };
    case 'bnrelu-bwd-sums': {
      // Only the weight and bias gradients of bnrelu-bwd: the sums pass (read x, dy) and its finalize.
      const dy = Tensor.randn(shape, { seed: 5 });
      return { run: () => void batchNormBackward(x, stats, dy, { training: true, relu: true }, { x: false, weight: true, bias: true }), bytes: 2 * f };
    }
    case 'bnrelu-bwd': {
      // A BN-ReLU pair without a pool (the demo student's): its training backward, sums then dx.
      const dy = Tensor.randn(shape, { seed: 5 });
      return { run: () => void batchNormBackward(x, stats, dy, { training: true, relu: true }, wanted), bytes: 5 * f };
    }
    case 'grad-finalize': {
      // grad_finalize alone (one workgroup per channel, with barriers) over the partials of the chunked passes.
      const per = Math.max(1, Math.ceil((n * h * w) / 8192));
      const partials = Tensor.zeros([c, per * 64, 2]);
      const out = () => Tensor.empty([c]);
      const params = { channels: c, hw: h * w, count: n * h * w, partials: per, has_weight: 0, has_bias: 0, eps: 0, momentum: 0 };
      return {
        run: () => dev.dispatch('batchnorm', 'grad_finalize', { bindings: { partials_in: partials, stats_in: stats, grad_weight: out(), grad_bias: out(), dx_coef: Tensor.empty([2, c]) }, params, workgroups: c }),
        bytes: partials.byteLength,
      };
    }
    case 'copy': {
      // The yardstick: the roofline's copy kernel over x (one vec4 read and written per invocation).
      const dst = Tensor.empty(shape);
      const n4 = numel / 4;
      return { run: () => dev.dispatch('roofline', 'copy_vec4', { bindings: { src4: x, dst4: dst }, params: { n4 }, workgroups: Math.ceil(n4 / 64) }), bytes: 2 * f };
    }
    default:
      throw new Error(`bnpool-count: unknown variant ${variant}`);
  }
}

const dev = await Device.open();
const [mode, ...rest] = process.argv.slice(2);
if (mode === 'time') {
  // Old and new alternate: A, B, A, B, ... so load from other processes hits both alike; medians per variant.
  const rounds = Number(rest[0] ?? 9);
  console.log('shape          phase  unfused ms  fused ms  unfused GB/s  fused GB/s  copy GB/s  fused/copy  speed-up');
  for (const spec of HW13_SHAPES) {
    for (const phase of ['fwd', 'bwd']) {
      const cases = [makeCase(spec, `unfused-${phase}`), makeCase(spec, `fused-${phase}`), makeCase(spec, 'copy')];
      const samples: number[][] = [[], [], []];
      for (let r = -1; r < rounds; r++) {
        for (const [k, cs] of cases.entries()) {
          const t0 = performance.now();
          scope(() => cs.run());
          await dev.sync();
          if (r >= 0) samples[k].push(performance.now() - t0); // round -1 compiles
        }
      }
      const med = samples.map((s) => s.sort((a, b) => a - b)[Math.floor(s.length / 2)]);
      const gbs = (k: number) => (cases[k].bytes / med[k] / 1e6).toFixed(2);
      console.log(`${spec.padEnd(14)} ${phase}    ${med[0].toFixed(2).padStart(9)}  ${med[1].toFixed(2).padStart(8)}  ${gbs(0).padStart(12)}  ${gbs(1).padStart(10)}  ${gbs(2).padStart(9)}  ${((100 * Number(gbs(1))) / Number(gbs(2))).toFixed(0).padStart(9)}%  ${(med[0] / med[1]).toFixed(2)}x`);
    }
  }
} else {
  const [variant, repsText, goFile] = rest;
  const cs = makeCase(mode, variant);
  scope(() => cs.run()); // compiles the pipelines
  await dev.sync();
  const reps = Number(repsText ?? 1);
  if (goFile) await handshake('READY', goFile);
  for (let i = 0; i < reps; i++) {
    scope(() => cs.run());
    await dev.sync();
  }
  if (goFile) await handshake('DONE', `${goFile}.done`);
}
dev.destroy();
