// Benchmark cases for the relational family: cdist and rkdAngle at B = 64 and 128, D = 84 (student embedding)
// and 512 (teacher embedding), forward and backward. The backward is timed as (forward + backward) minus the
// forward, since a recorded backward runs once per forward.
import { Tensor, type Device } from '../../src/index.js';
import { cdist, rkdAngle } from '../../src/ops/relational.js';
import { timeGpu, type Row } from '../harness.js';

/**
 * Median ms of one call; slow calls (software adapters) get fewer repeats, never smaller shapes. The cases run
 * smallest first, so a slow (large) case finds its pipelines compiled and its one probe call is a fair time.
 */
async function measure(dev: Device, fn: () => void): Promise<number> {
  const probe = (await timeGpu(dev, fn, { warmup: 0, repeats: 1, inner: 1 })).medianMs;
  if (probe > 1000) return probe; // one timed call is all the budget allows
  const inner = probe < 20 ? 5 : 1;
  const repeats = Math.max(3, Math.min(7, Math.floor(3000 / (probe * inner))));
  return (await timeGpu(dev, fn, { warmup: 1, repeats, inner })).medianMs;
}

interface Case {
  name: string;
  shape: string;
  forward: (e: Tensor, other: Tensor) => Tensor;
  outShape: number[];
  fwd: { flops: number; bytes: number };
  bwd: { flops: number; bytes: number };
}

function cases(batch: number, d: number): Case[] {
  const f32 = 4;
  return [
    {
      name: 'cdist',
      shape: `[${batch},${d}] x [${batch},${d}]`,
      forward: (a, b) => cdist(a, b),
      outShape: [batch, batch],
      // sub, mul, add per (i, j, t); the gradients of both arguments likewise.
      fwd: { flops: 3 * batch * batch * d, bytes: (2 * batch * d + batch * batch) * f32 },
      bwd: { flops: 2 * 3 * batch * batch * d, bytes: 2 * (2 * batch * batch + 2 * batch * d + batch * d) * f32 },
    },
    {
      name: 'rkdAngle',
      shape: `[${batch},${d}] -> [${batch},${batch},${batch}]`,
      forward: (e) => rkdAngle(e),
      outShape: [batch, batch, batch],
      // unit differences (B^2 D) + the batched GEMM U[i] U[i]^T (2 B^3 D); bytes: U written and read, angle written.
      fwd: { flops: 2 * batch ** 3 * d + 4 * batch ** 2 * d, bytes: (2 * batch ** 2 * d + batch ** 3) * f32 },
      // symmetrise (B^3), GEMM (2 B^3 D), per-pair projection and gather (~6 B^2 D).
      bwd: {
        flops: 2 * batch ** 3 * d + batch ** 3 + 6 * batch ** 2 * d,
        bytes: (3 * batch ** 3 + 6 * batch ** 2 * d + batch * d) * f32,
      },
    },
  ];
}

export async function run(dev: Device): Promise<Row[]> {
  const rows: Row[] = [];
  for (const batch of [64, 128]) {
    for (const d of [84, 512]) {
      for (const c of cases(batch, d)) {
        const e = Tensor.randn([batch, d], { seed: 1, device: dev });
        const other = Tensor.randn([batch, d], { seed: 2, device: dev });
        const eGrad = Tensor.randn([batch, d], { seed: 1, device: dev, requiresGrad: true });
        const otherGrad = Tensor.randn([batch, d], { seed: 2, device: dev, requiresGrad: true });
        const g = Tensor.randn(c.outShape, { seed: 3, device: dev });
        const fwdMs = await measure(dev, () => void c.forward(e, other));
        const bothMs = await measure(dev, () => c.forward(eGrad, otherGrad).backward(g));
        const bwdMs = Math.max(bothMs - fwdMs, 1e-6);
        rows.push({ name: `${c.name} forward`, shape: c.shape, ms: fwdMs, ...c.fwd });
        rows.push({ name: `${c.name} backward`, shape: c.shape, ms: bwdMs, ...c.bwd, note: `fwd+bwd ${bothMs.toFixed(3)} ms minus fwd` });
        for (const t of [e, other, eGrad, otherGrad, g, eGrad.grad, otherGrad.grad]) t?.dispose();
      }
    }
  }
  return rows;
}
