// vitest globalSetup: builds dist/ once per run, so tests that spawn bin/wgkd.js (the compiled CLI, as installed
// users run it) exercise the current sources, not a stale build.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export default function setup(): void {
  const root = fileURLToPath(new URL('../../', import.meta.url));
  const tsc = spawnSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.build.json'], { cwd: root, encoding: 'utf8' });
  if (tsc.status !== 0) throw new Error(`building dist/ (tsc -p tsconfig.build.json) failed:\n${tsc.stdout}${tsc.stderr}`);
}
