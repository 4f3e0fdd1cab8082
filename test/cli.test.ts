// The command line: help lists every command; bad input gets a clear message and a non-zero exit.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { loadCheckpoint } from '../src/index.js';

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
  it('--version prints the package version', () => {
    const r = wgkd('--version');
    expect(r.status).toBe(0);
    expect(r.stdout.trim()).toBe(JSON.parse(readFileSync('package.json', 'utf8')).version);
  });
});

describe('wgkd with students the user designs', () => {
  const dir = mkdtempSync(join(tmpdir(), 'wgkd-cli-students-'));
  const file = (name: string, spec: unknown) => {
    const path = join(dir, name);
    writeFileSync(path, JSON.stringify(spec));
    return path;
  };

  it('params --model FILE.json prints each layer, its output shape and parameters, and the total against the budget', () => {
    const student = file('small.json', { layers: [{ conv: { out: 16, k: 3, stride: 2, padding: 1 } }, { bn: {} }, { relu: {} }, { dwpw: { out: 32, stride: 2, name: 'stage1' } }, { gap: {} }, { linear: {} }] });
    const r = wgkd('params', '--model', student, '--dataset', 'fashion-mnist');
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toContain(`${student}: input 1x28x28, 10 classes`);
    expect(r.stdout).toMatch(/\n0 +conv out=16 k=3 stride=2 padding=1 +\[-1, 16, 14, 14\] +160\n/);
    expect(r.stdout).toMatch(/\n3 +dwpw out=32 stride=2 +\[-1, 32, 7, 7\] +752 +stage1\n/);
    expect(r.stdout).toMatch(/\n5 +linear +\[-1, 10\] +330\n/);
    expect(r.stdout).toMatch(/total parameters: 1,274, within the budget of 60,000 \(58,726 to spare\)/);
  });

  it('params says when a student is over the budget; a bad spec is an error naming the layer', () => {
    const big = file('big.json', { layers: [{ conv: { out: 96, padding: 1 } }, { residual: {} }, { gap: {} }, { linear: {} }] });
    expect(wgkd('params', '--model', big, '--dataset', 'fashion-mnist').stdout).toMatch(/total parameters: 168,202, OVER the budget of 60,000 by 108,202/);
    const bad = file('bad.json', { layers: [{ conv: { out: 16, k: 3 } }, { conv: { out: 8, groups: 3 } }, { linear: {} }] });
    const r = wgkd('params', '--model', bad, '--dataset', 'fashion-mnist');
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`wgkd: ${bad}: layer 1 (conv): groups 3 does not divide the 16 input channels`);
    expect(wgkd('params', '--model', 'mobilenet').stderr).toMatch(/unknown model 'mobilenet' \(built-in: hw13-sample, dwpw, resnet-small, resnet18; or a student FILE\.json, or a module \.\/student\.ts\)/);
  });

  it('train refuses a JSON student over the budget; export needs --checkpoint and --onnx', () => {
    const big = file('big2.json', { layers: [{ conv: { out: 96, padding: 1 } }, { residual: {} }, { gap: {} }, { linear: {} }] });
    const r = wgkd('train', '--model', big, '--train-limit', '64', '--quiet', '--out', join(dir, 'run-big'));
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`model '${big}' has 168,202 parameters, over the budget of 60,000 (--max-params)`);
    expect(wgkd('export', '--onnx', 'x.onnx').stderr).toMatch(/export: --checkpoint FILE is required/);
    expect(wgkd('export', '--checkpoint', 'x.safetensors').stderr).toMatch(/export: --onnx OUT\.onnx is required/);
  });

  it('--model ./student.ts: a module exporting a factory; params counts it, train records it in the checkpoint', () => {
    // Inside the repository, so `import ... from 'wgkd'` resolves to this package (dist/), as in a user's project.
    const modules = join('.cache', 'wgkd-test-students');
    mkdirSync(modules, { recursive: true });
    const module = join(modules, `student-${process.pid}.ts`);
    writeFileSync(
      module,
      [
        "import { AdaptiveAvgPool2d, Classifier, Conv2d, Linear, relu, type Features, type ModelSpec, type Tensor } from 'wgkd';",
        'class Tiny extends Classifier {',
        "  readonly mapNames = ['conv'];",
        '  readonly numClasses: number;',
        '  readonly conv: Conv2d;',
        '  readonly pool = this.child(\'pool\', new AdaptiveAvgPool2d(1));',
        '  readonly fc: Linear;',
        '  constructor(spec: ModelSpec) {',
        '    super();',
        '    this.numClasses = spec.numClasses;',
        "    this.conv = this.child('conv', new Conv2d(spec.inChannels, 8, 3, { stride: 2, padding: 1 }));",
        "    this.fc = this.child('fc', new Linear(8, spec.numClasses));",
        '  }',
        '  forwardFeatures(x: Tensor): Features {',
        '    const h = relu(this.conv.forward(x));',
        '    const embedding = this.pool.forward(h).reshape([x.shape[0], -1]);',
        '    return { logits: this.fc.forward(embedding), embedding, maps: { conv: h } };',
        '  }',
        '}',
        'export default (spec: ModelSpec) => new Tiny(spec);',
      ].join('\n'),
    );
    onTestFinished(() => rmSync(module, { force: true }));
    const params = wgkd('params', '--model', module, '--dataset', 'fashion-mnist');
    expect(params.stderr).not.toMatch(/wgkd:/);
    expect(params.stdout).toMatch(/student-\d+\.ts: input 1x28x28, 10 classes: 170 parameters, within the budget of 60,000/); // 8*9+8 + 8*10+10
    const out = join(dir, 'run-module');
    const r = wgkd('train', '--model', module, '--train-limit', '64', '--val-limit', '32', '--batch', '32', '--epochs', '1', '--quiet', '--out', out);
    expect(r.stderr).not.toMatch(/wgkd:/);
    expect(r.status).toBe(0);
    const state = loadCheckpoint(join(out, 'best.safetensors')).state;
    expect(state.architecture).toEqual({ kind: 'module', file: join(process.cwd(), module) });
  });
});
