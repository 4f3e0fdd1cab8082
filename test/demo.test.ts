// `npm run demo` and `npm run experiment`, end to end on a few hundred Fashion-MNIST images (the real runs take
// minutes to hours here): the run folder, plots and report of the demo; the experiment's table, its commands, and
// its resumption (rows done earlier are not trained again).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';

const tmp = mkdtempSync(join(tmpdir(), 'wgkd-demo-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function tsx(script: string, ...args: string[]) {
  return spawnSync(process.execPath, ['--import', 'tsx', script, ...args], { encoding: 'utf8' });
}

describe('npm run demo', () => {
  it('distils dwpw with kd+rkd from the shipped teacher and writes checkpoint, metrics, plots and report', async () => {
    const out = join(tmp, 'demo');
    const r = tsx('tools/demo.ts', '--train-limit', '256', '--test-limit', '300', '--out', out);
    expect(r.stderr + r.stdout).not.toMatch(/Error/);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/\| teacher \| resnet-small, 696,042 parameters, test accuracy 0\.9[4-9]\d\d \(shipped outputs data\/fashion-mnist\/teacher-train\.safetensors\)/);
    expect(r.stdout).toMatch(/\| student \| dwpw, 58,378 parameters \|/);
    expect(r.stdout).toMatch(/\| \*\*student test accuracy\*\* \| \*\*0\.\d{4}\*\* \(final model, last\.safetensors\) \|/);
    expect(r.stdout).toMatch(/\| wall time \| \d+\.\d min \|/);
    for (const f of ['best.safetensors', 'last.safetensors', 'metrics.jsonl', 'report.md']) expect(existsSync(join(out, f)), f).toBe(true);
    for (const f of ['loss.png', 'accuracy.png', 'confusion.png']) {
      const meta = await sharp(join(out, f)).metadata();
      expect(meta.format, f).toBe('png');
      expect(meta.width, f).toBeGreaterThan(300);
    }
    const steps = readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((m) => m.type === 'step');
    expect(steps).toHaveLength(5); // 256 images, batch 64: 4 steps per epoch, 1.25 epochs (the default) = 5 steps
    expect(Object.keys(steps[0].parts).sort()).toEqual(['ce', 'kd', 'rkd_angle', 'rkd_distance']);
    for (const s of steps) expect(s.accuracy).toBeGreaterThanOrEqual(0); // batch accuracy, for accuracy.png
    expect(readFileSync(join(out, 'report.md'), 'utf8')).toMatch(/!\[confusion\.png\]\(confusion\.png\)/);
  });

  it('rejects an unknown option with the list of options', () => {
    const r = tsx('tools/demo.ts', '--epoch', '2');
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/demo: unknown option --epoch \(options: .*--epochs/);
  });
});

describe('npm run experiment', () => {
  const args = ['--dataset', 'fashion-mnist', '--rows', 'dwpw:ce,dwpw:kd', '--train-limit', '128', '--val-limit', '200', '--test-limit', '200'];
  it('trains each row, writes the table with the commands, and skips rows done earlier', () => {
    const runs = join(tmp, 'runs');
    const table = join(tmp, 'results.md');
    const first = tsx('tools/experiment.ts', ...args, '--runs', runs, '--out', table);
    expect(first.stderr).not.toMatch(/Error/);
    expect(first.status).toBe(0);
    const doc = readFileSync(table, 'utf8');
    expect(doc).toMatch(/Smoke run: only the first 128 training, 200 validation, 200 test images/);
    // The loss terms are the expanded recipe (every default filled in), as the run recorded it.
    expect(doc).toMatch(/\| dwpw \| ce \| `\{"ce":\{"weight":1,"labelSmoothing":0\}\}` \| \**0\.\d{4}\** \| 0\.\d{4} \| 58,378 \|/);
    expect(doc).toMatch(/\| dwpw \| kd \| `\{"ce":\{"weight":0\.5,"labelSmoothing":0\},"kd":\{"weight":0\.5,"T":4\}\}` \|/);
    expect(doc).toMatch(/- dwpw: kd 0\.\d{4} vs ce 0\.\d{4}/);
    expect(doc).toMatch(/npx wgkd train --dataset fashion-mnist --model dwpw --recipe kd --teacher \S+teacher-train\.safetensors --epochs 1 .* --train-limit 128/);
    const second = tsx('tools/experiment.ts', ...args, '--runs', runs, '--out', table);
    expect(second.status).toBe(0);
    expect(second.stderr.match(/done earlier/g)).toHaveLength(2);
    expect(readFileSync(table, 'utf8').split('## Commands')[1]).toBe(doc.split('## Commands')[1]);
  });

  it('needs --dataset fashion-mnist', () => {
    const r = tsx('tools/experiment.ts');
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/--dataset fashion-mnist is required/);
  });
});
