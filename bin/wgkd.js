#!/usr/bin/env node
// The `wgkd` command: the compiled CLI in dist/ (built by `npm run build`, which `npm ci` and `npm pack` run).
try {
  await import('../dist/cli/main.js');
} catch (err) {
  if (err?.code === 'ERR_MODULE_NOT_FOUND' && String(err.message).includes('dist/cli/main.js')) {
    console.error('wgkd: dist/ is missing; in a source checkout run `npm run build` (or `npm run wgkd -- ...` to run the sources)');
    process.exit(1);
  }
  throw err;
}
