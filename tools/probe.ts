// Probes for a WebGPU adapter and prints what it found; exit code 1 when there is none. Used by tools/setup.sh.
import { Device, NoAdapterError } from '../src/index.js';
import { describeAdapter } from '../src/cli/info.js';

const quiet = process.argv.includes('--quiet');
try {
  const dev = await Device.open();
  if (!quiet) console.log(describeAdapter(dev, { limits: false }));
  dev.destroy();
} catch (err) {
  if (!quiet) console.error(err instanceof NoAdapterError ? err.message : err);
  process.exit(1);
}
