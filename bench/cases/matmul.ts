// GEMM benchmarks: the student's classifier head (linear 256 -> 11 at batch 64, forward and backward), and the
// GEMMs of the pointwise (1x1) convolutions of a depthwise-separable student at batch 64 for 28x28, 64x64 and
// 224x224 inputs (blocks 32->64 at S, 64->128 at S/2, 128->256 at S/4; S = 28, 32, 112 after the stem).
// Forward: out[n] (Cout x HW) = W (Cout x Cin) @ x[n] (Cin x HW) on every kernel: the automatic choice, the
// "plain" build for contiguous operands (the best plain matmul written here), the no-subgroup fallback and the
// naive reference. Backward: dX[n] = Wᵀ @ gY[n] and the per-image dW[n] = gY[n] @ x[n]ᵀ, both strided.
// The note column gives each kernel's speed relative to the plain kernel on the same shape (forward), or on the
// forward of the same layer (backward GEMMs).
import type { Device } from '../../src/gpu/device.js';
import { Tensor } from '../../src/tensor.js';
import { gemmWith, hasSubgroupGemm, linear, type GemmArgs, type GemmKernel } from '../../src/ops/matmul.js';
import { timeGpu, type Row } from '../harness.js';

const BATCH = 64;

interface Pointwise {
  cin: number;
  cout: number;
  at: number; // spatial size
}

function pointwiseLayers(size: number): Pointwise[] {
  const s = size === 28 ? 28 : size / 2; // the stem has stride 1 at 28, 2 at 64 and 224
  return [
    { cin: 32, cout: 64, at: s },
    { cin: 64, cout: 128, at: s / 2 },
    { cin: 128, cout: 256, at: s / 4 },
  ];
}

function gemmBytes(g: GemmArgs, aCount: number, bCount: number): number {
  return 4 * (aCount + bCount + g.batch * g.m * g.n);
}

export async function run(dev: Device): Promise<Row[]> {
  const rows: Row[] = [];
  const fast: GemmKernel = hasSubgroupGemm(dev) ? 'subgroup' : 'tiled';

  // ---- the classifier head: linear 256 -> 11 at batch 64 ----
  {
    const x = Tensor.randn([BATCH, 256], { seed: 1, requiresGrad: true });
    const weight = Tensor.randn([11, 256], { seed: 2, std: 0.05, requiresGrad: true });
    const bias = Tensor.randn([11], { seed: 3, requiresGrad: true });
    const shape = 'x[64,256] w[11,256] b[11]';
    const flops = 2 * BATCH * 256 * 11;
    const bytes = 4 * (BATCH * 256 + 11 * 256 + 11 + BATCH * 11);
    const fwd = await timeGpu(dev, () => linear(x, weight, bias), { warmup: 2, repeats: 9, inner: 10 });
    rows.push({ name: `linear forward (${fast})`, shape, ms: fwd.medianMs, flops, bytes });
    const y = linear(x, weight, bias);
    const g = Tensor.randn(y.shape, { seed: 4 });
    const node = y.node!;
    // Backward alone: dx = g @ W, dW = gᵀ @ x (the batch is the reduction), db = column sums of g.
    const bwd = await timeGpu(dev, () => void node.backward(g), { warmup: 2, repeats: 9, inner: 10 });
    rows.push({ name: `linear backward (${fast})`, shape, ms: bwd.medianMs, flops: 2 * flops + BATCH * 11, bytes: 2 * bytes, note: 'dx + dW + db' });
    for (const t of [x, weight, bias, y, g]) t.dispose();
  }

  // ---- pointwise-conv GEMMs ----
  for (const size of [28, 64, 224]) {
    for (const l of pointwiseLayers(size)) {
      const hw = l.at * l.at;
      const big = size === 224;
      const weight = Tensor.randn([l.cout, l.cin], { seed: 5, std: 0.1 });
      const x = Tensor.randn([BATCH, l.cin, hw], { seed: 6 });
      const y = Tensor.empty([BATCH, l.cout, hw]);
      const gy = Tensor.randn([BATCH, l.cout, hw], { seed: 7 });
      const dx = Tensor.empty([BATCH, l.cin, hw]);
      const dwPerImage = Tensor.empty([BATCH, l.cout, l.cin]);
      const flops = 2 * BATCH * l.cout * l.cin * hw;
      const shape = `64x [${l.cout}x${l.cin}] @ [${l.cin}x${hw}] (${size}px, ${l.at}x${l.at})`;
      const forward: GemmArgs = {
        a: weight, b: x, out: y, batch: BATCH, m: l.cout, n: hw, k: l.cin,
        aStrides: [0, l.cin, 1], bStrides: [l.cin * hw, hw, 1],
      };
      const timed = async (kernel: GemmKernel, g: GemmArgs) => {
        // 224x224 layers take up to seconds per call here: one timed call after a warm-up, same shapes (the naive
        // kernel's pipeline is warm from the smaller layers, so it skips the warm-up).
        const naive = kernel === 'naive';
        const opts = big ? { warmup: naive ? 0 : 1, repeats: 1, inner: 1 } : { warmup: 1, repeats: 3, inner: naive ? 1 : 2 };
        return (await timeGpu(dev, () => gemmWith(dev, g, kernel), opts)).medianMs;
      };
      const fwdBytes = gemmBytes(forward, l.cout * l.cin, BATCH * l.cin * hw);
      const kernels: GemmKernel[] = hasSubgroupGemm(dev) ? ['plain', 'subgroup', 'tiled', 'naive'] : ['tiled', 'naive'];
      const times = new Map<GemmKernel, number>();
      for (const kernel of kernels) times.set(kernel, await timed(kernel, forward));
      const reference = times.get(hasSubgroupGemm(dev) ? 'plain' : 'tiled')!;
      for (const kernel of kernels) {
        const ms = times.get(kernel)!;
        const label = kernel === fast ? `${kernel} (auto)` : kernel;
        rows.push({ name: `pointwise fwd gemm: ${label}`, shape, ms, flops, bytes: fwdBytes, note: `${(reference / ms).toFixed(2)}x plain` });
      }
      // Backward GEMMs as pointwise conv records them (strided, on the automatic kernel).
      const dxArgs: GemmArgs = {
        a: weight, b: gy, out: dx, batch: BATCH, m: l.cin, n: hw, k: l.cout,
        aStrides: [0, 1, l.cin], bStrides: [l.cout * hw, hw, 1], // Wᵀ through strides
      };
      const dxMs = await timed(fast, dxArgs);
      rows.push({ name: `pointwise dX = Wᵀ gY: ${fast}`, shape, ms: dxMs, flops, bytes: gemmBytes(dxArgs, l.cout * l.cin, BATCH * l.cout * hw), note: `${(reference / dxMs).toFixed(2)}x plain fwd` });
      const dwArgs: GemmArgs = {
        a: gy, b: x, out: dwPerImage, batch: BATCH, m: l.cout, n: l.cin, k: hw,
        aStrides: [l.cout * hw, hw, 1], bStrides: [l.cin * hw, 1, hw], // x[n]ᵀ through strides
      };
      const dwMs = await timed(fast, dwArgs);
      rows.push({ name: `pointwise dW[n] = gY xᵀ: ${fast}`, shape, ms: dwMs, flops, bytes: gemmBytes(dwArgs, BATCH * l.cout * hw, BATCH * l.cin * hw), note: `${(reference / dwMs).toFixed(2)}x plain fwd; per image, before the batch sum` });
      for (const t of [weight, x, y, gy, dx, dwPerImage]) t.dispose();
      await dev.sync();
    }
  }
  return rows;
}
