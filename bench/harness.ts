// Benchmark harness: times GPU work by wall clock around whole submits (median of repeats), and prints tables.
// Timing lives here, never in unit tests.
import { Device, scope } from '../src/index.js';

export interface Timing {
  medianMs: number;
  minMs: number;
}

/**
 * Median time of one call of `fn` (which records GPU work). Each repeat records `inner` calls, submits once,
 * and waits for the GPU; the wait is amortised over `inner`.
 */
export async function timeGpu(dev: Device, fn: () => void, opts: { warmup?: number; repeats?: number; inner?: number } = {}): Promise<Timing> {
  const { warmup = 2, repeats = 7, inner = 5 } = opts;
  for (let i = 0; i < warmup; i++) {
    scope(() => fn());
    await dev.sync();
  }
  const samples: number[] = [];
  for (let r = 0; r < repeats; r++) {
    const t0 = performance.now();
    scope(() => {
      for (let i = 0; i < inner; i++) fn();
    });
    await dev.sync();
    samples.push((performance.now() - t0) / inner);
  }
  samples.sort((a, b) => a - b);
  return { medianMs: samples[Math.floor(samples.length / 2)], minMs: samples[0] };
}

export interface Row {
  name: string;
  shape: string;
  ms: number;
  flops?: number;
  bytes?: number;
  note?: string;
}

export function printTable(title: string, rows: Row[]): void {
  console.log(`\n## ${title}\n`);
  console.log('| kernel | shape | median ms | GFLOP/s | GB/s | note |');
  console.log('|---|---|---:|---:|---:|---|');
  for (const r of rows) {
    const gflops = r.flops ? (r.flops / (r.ms * 1e6)).toFixed(2) : '';
    const gbs = r.bytes ? (r.bytes / (r.ms * 1e6)).toFixed(2) : '';
    console.log(`| ${r.name} | ${r.shape} | ${r.ms.toFixed(3)} | ${gflops} | ${gbs} | ${r.note ?? ''} |`);
  }
}
