// The command line: help lists every command; bad input gets a clear message and a non-zero exit.
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';

function wgkd(...args: string[]) {
  return spawnSync(process.execPath, ['bin/wgkd.js', ...args], { encoding: 'utf8' });
}

describe('wgkd CLI', () => {
  it('--help lists every command with a one-line description', () => {
    const r = wgkd('--help');
    expect(r.status).toBe(0);
    for (const c of ['train', 'eval', 'predict', 'params', 'teacher', 'info']) expect(r.stdout).toMatch(new RegExp(`\\n  ${c} +\\S.+`));
  });
  it('an unknown command or option is an error naming it', () => {
    expect(wgkd('fly').stderr).toMatch(/unknown command 'fly'/);
    const r = wgkd('train', '--epoch', '3');
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/unknown option --epoch \(options: .*--epochs/);
    expect(wgkd('train', '--epochs', 'many').stderr).toMatch(/--epochs expects a number, got 'many'/);
  });
  it('params prints the budgeted sizes', () => {
    const r = wgkd('params');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/hw13-sample +student +59,723/);
    expect(r.stdout).toMatch(/dwpw +student +59,147/);
  });
});
