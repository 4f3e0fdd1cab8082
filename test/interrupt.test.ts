// Interruptions lose nothing: `wgkd train` as a child process on a tiny Food-11 folder is stopped by SIGINT
// (finishes the step, saves the exact position, exit 130), by a second SIGINT (quits at once), or killed with
// SIGKILL between periodic checkpoints (--checkpoint-every); each resumed run gives the same step losses, bit
// for bit, as a run never interrupted, and metrics.jsonl records every step and epoch exactly once.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadCheckpoint, train, type TrainResult } from '../src/index.js';
import { useDevice } from './helpers/device.js';
import { makeFood11, type Food11Fixture } from './helpers/food11-fixture.js';

useDevice();
let fixture: Food11Fixture;
let work: string;
let straight: TrainResult;

// 88 training images, batch 16: 5 steps per epoch, 10 in all.
const config = () => ({ dataset: 'food11', data: fixture.root, size: 24, cacheDir: join(work, 'cache'), model: 'dwpw', batch: 16, lr: 3e-3, epochs: 2, logSteps: true, quiet: true });
const flags = (out: string) => ['--dataset', 'food11', '--data', fixture.root, '--size', '24', '--cache-dir', join(work, 'cache'), '--model', 'dwpw', '--batch', '16', '--lr', '3e-3', '--epochs', '2', '--log-steps', '--out', out];

type Record_ = { type: string; epoch: number; step: number; loss: unknown; trainAccuracy?: number };
function records(out: string): Record_[] {
  const path = join(out, 'metrics.jsonl');
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8').split('\n').flatMap((line) => {
    try {
      return [JSON.parse(line) as Record_];
    } catch {
      return []; // empty, or torn by a kill
    }
  });
}
const steps = (out: string) => records(out).filter((r) => r.type === 'step');

/** Runs `wgkd train` until its log holds `after` step records, then sends the signal(s); resolves at exit. */
async function trainUntil(out: string, after: number, signals: NodeJS.Signals[], extra: string[] = []) {
  const child = spawn(process.execPath, ['bin/wgkd.js', 'train', ...flags(out), ...extra], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  let sent = 0;
  const poll = setInterval(() => {
    // The first signal once enough steps are logged; a second one once the first was acknowledged (signals
    // sent back to back may arrive as one).
    if (sent === 0 && steps(out).length >= after) child.kill(signals[sent++]);
    else if (sent > 0 && sent < signals.length && stderr.includes('finishing the current step')) child.kill(signals[sent++]);
  }, 10);
  const [status, signal] = (await once(child, 'exit')) as [number | null, NodeJS.Signals | null];
  clearInterval(poll);
  return { status, signal, stderr, pid: child.pid!, sent: sent === signals.length };
}

/** After the resume: every step and epoch once, with the uninterrupted run's numbers. */
function expectSameAsStraight(out: string): void {
  const log = records(out);
  const want = records(straight.runDir);
  expect(log.filter((r) => r.type === 'step').map((r) => [r.step, r.loss])).toEqual(want.filter((r) => r.type === 'step').map((r) => [r.step, r.loss]));
  expect(log.filter((r) => r.type === 'epoch').map((r) => [r.epoch, r.step, r.loss, r.trainAccuracy])).toEqual(want.filter((r) => r.type === 'epoch').map((r) => [r.epoch, r.step, r.loss, r.trainAccuracy]));
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'wgkd-interrupt-'));
  fixture = await makeFood11(join(work, 'food11'), { perClass: 8, validationPerClass: 1, size: 32, evaluation: 4 });
  straight = await train({ ...config(), out: join(work, 'straight') });
  straight.model.dispose();
});

describe('interruptions', () => {
  it('SIGINT: the step finishes, last.safetensors holds that exact position, exit 130; the resumed run is bit-exact', async () => {
    const out = join(work, 'sigint');
    const r = await trainUntil(out, 3, ['SIGINT']);
    expect(r.sent).toBe(true);
    expect(r.status, r.stderr).toBe(130);
    const ckpt = loadCheckpoint(join(out, 'last.safetensors'));
    const { epoch, stepInEpoch, globalStep } = ckpt.state;
    expect(r.stderr).toContain(`stopped at epoch ${epoch + 1}, step ${stepInEpoch}: resume with --resume`);
    expect(globalStep).toBe(steps(out).length); // no step lost, none logged past the checkpoint
    expect(globalStep).toBeLessThan(10);
    const resumed = await train({ ...config(), out, resume: true });
    resumed.model.dispose();
    expect(resumed.stepLosses).toEqual(straight.stepLosses.slice(globalStep));
    expectSameAsStraight(out);
  });

  it('a second SIGINT quits at once, leaving no torn checkpoint', async () => {
    const out = join(work, 'twice');
    const r = await trainUntil(out, 1, ['SIGINT', 'SIGINT']);
    expect(r.sent).toBe(true);
    expect(r.status, r.stderr).toBe(130);
    expect(r.stderr).toMatch(/SIGINT again: quitting now/);
    if (existsSync(join(out, 'last.safetensors'))) expect(() => loadCheckpoint(join(out, 'last.safetensors'))).not.toThrow();
  });

  it('SIGTERM stops the same way, exit 143 (128 + 15)', async () => {
    const out = join(work, 'sigterm');
    const r = await trainUntil(out, 1, ['SIGTERM']);
    expect(r.status, r.stderr).toBe(143);
    expect(r.stderr).toMatch(/stopped at epoch \d, step \d: resume with --resume/);
    expect(loadCheckpoint(join(out, 'last.safetensors')).state.globalStep).toBe(steps(out).length);
  });

  it('SIGKILL between periodic checkpoints: resume drops the log past the checkpoint and the temp files, and is bit-exact', async () => {
    const out = join(work, 'sigkill');
    const r = await trainUntil(out, 4, ['SIGKILL'], ['--checkpoint-every', '0.01']);
    expect(r.signal).toBe('SIGKILL');
    const ckpt = loadCheckpoint(join(out, 'last.safetensors'));
    expect(ckpt.state.globalStep).toBeGreaterThan(0); // a mid-epoch checkpoint (or an epoch end) was written
    expect(ckpt.state.globalStep).toBeLessThanOrEqual(steps(out).length);
    // What a kill during an atomic write leaves (the writer's pid is gone).
    const stale = join(out, `.last.safetensors.${r.pid}.kz1.7.tmp`);
    writeFileSync(stale, 'partial');
    const resumed = await train({ ...config(), out, resume: true });
    resumed.model.dispose();
    expect(existsSync(stale)).toBe(false);
    expect(resumed.stepLosses).toEqual(straight.stepLosses.slice(ckpt.state.globalStep));
    expectSameAsStraight(out);
  });
});
