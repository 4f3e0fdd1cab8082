// `npm run bench:kernels [-- family ...]`: every kernel family's benchmark cases (bench/cases/<family>.ts), forward
// and backward, at the shapes of a depthwise-separable student with batch 64 (28x28, 64x64, 224x224 inputs).
// Prints one markdown table per family: median ms, GFLOP/s, GB/s, and notes (path, backward/forward ratio).
import { readdirSync } from 'node:fs';
import { basename } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Device } from '../src/index.js';
import { printTable, type Row } from './harness.js';

const casesDir = fileURLToPath(new URL('./cases/', import.meta.url));
const wanted = process.argv.slice(2).filter((a) => !a.startsWith('--'));
const families = readdirSync(casesDir)
  .filter((f) => f.endsWith('.ts'))
  .map((f) => basename(f, '.ts'))
  .filter((f) => wanted.length === 0 || wanted.includes(f));
if (families.length === 0) throw new Error(`no benchmark family matches ${wanted.join(', ')}`);

const dev = await Device.open({ dawnFlags: ['disable-dawn-features=timestamp_quantization'] });
console.log(`# wgkd kernel benchmarks\n\nadapter: ${dev.summary.description} (${dev.summary.software ? 'software' : 'hardware'})`);
const started = performance.now();
for (const family of families) {
  const { run } = (await import(`./cases/${family}.ts`)) as { run: (d: Device) => Promise<Row[]> };
  const t0 = performance.now();
  const rows = await run(dev);
  printTable(`${family} (${((performance.now() - t0) / 1000).toFixed(0)} s)`, rows);
}
console.log(`\ntotal ${((performance.now() - started) / 1000).toFixed(0)} s`);
dev.destroy();
