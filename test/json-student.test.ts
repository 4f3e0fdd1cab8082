// Students designed in JSON: the plan (shapes, parameter counts) matches the built model, feature maps carry their
// names, bad specs name the layer and the problem, and training refuses a student over the budget.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { JsonStudent, Tensor, loadCheckpoint, modelFromCheckpoint, noGrad, planStudent, scope, train, type StudentSpec } from '../src/index.js';
import { useDevice } from './helpers/device.js';

useDevice();
const FASHION = { inChannels: 1, numClasses: 10, inputSize: 28 };

// Every layer type once.
const ALL_LAYERS: StudentSpec = {
  layers: [
    { conv: { out: 8, k: 3, stride: 1, padding: 1, bias: false } },
    { bn: {} },
    { relu: { name: 'stem' } },
    { conv: { out: 8, k: 3, padding: 1, groups: 8 } },
    { dwpw: { out: 16, stride: 2, name: 'stage1' } },
    { residual: { out: 24, stride: 2, name: 'stage2' } },
    { residual: {} },
    { avgpool: { k: 2, padding: 1 } },
    { maxpool: { k: 2, stride: 1 } },
    { gap: {} },
    { linear: {} },
  ],
};

describe('JSON students', () => {
  it('the plan gives each layer its output shape and parameter count, and the built model agrees', () => {
    const plan = planStudent(ALL_LAYERS, FASHION);
    expect(plan.map((l) => l.output)).toEqual([
      [8, 28, 28], [8, 28, 28], [8, 28, 28], [8, 28, 28], [16, 14, 14], [24, 7, 7], [24, 7, 7], [24, 4, 4], [24, 3, 3], [24, 1, 1], [10],
    ]);
    // By hand: conv 8*1*9; bn 16; depthwise conv 8*1*9 + 8; dwpw 8*9 + 16 + 8*16 + 32; residual 8->... see below.
    expect(plan.map((l) => l.parameters)).toEqual([72, 16, 0, 80, 72 + 16 + 128 + 32, 16 * 24 * 9 + 48 + 24 * 24 * 9 + 48 + 16 * 24 + 48, 2 * (24 * 24 * 9 + 48), 0, 0, 0, 250]);
    const model = new JsonStudent(ALL_LAYERS, FASHION);
    expect(model.numParameters()).toBe(plan.reduce((n, l) => n + l.parameters, 0));
    expect(model.mapNames).toEqual(['stem', 'stage1', 'stage2']);
    expect(model.namedParameters().map(([n]) => n).slice(0, 3)).toEqual(['features.0.weight', 'features.1.weight', 'features.1.bias']);
    expect(model.namedParameters().map(([n]) => n).slice(-2)).toEqual(['fc.weight', 'fc.bias']);
    const shapes = noGrad(() =>
      scope(() => {
        model.eval();
        const f = model.forwardFeatures(Tensor.randn([2, 1, 28, 28], { seed: 1 }));
        return { logits: f.logits.shape, embedding: f.embedding.shape, maps: Object.fromEntries(Object.entries(f.maps).map(([k, t]) => [k, t.shape])) };
      }),
    );
    expect(shapes).toEqual({ logits: [2, 10], embedding: [2, 24], maps: { stem: [2, 8, 28, 28], stage1: [2, 16, 14, 14], stage2: [2, 24, 7, 7] } });
    model.dispose();
  });

  it('linear flattens whatever map it gets (no gap: C*H*W features)', () => {
    const plan = planStudent({ layers: [{ conv: { out: 4, k: 5, stride: 3 } }, { linear: {} }] }, FASHION);
    expect(plan[0].output).toEqual([4, 8, 8]);
    expect(plan[1].parameters).toBe(4 * 8 * 8 * 10 + 10);
  });

  const bad: [string, unknown, RegExp][] = [
    ['an unknown layer', { layers: [{ conv: { out: 4 } }, { pool: {} }, { linear: {} }] }, /spec\.json: layer 1: unknown layer 'pool' \(known: conv, bn, relu, maxpool, avgpool, dwpw, residual, gap, linear\)/],
    ['an unknown option', { layers: [{ conv: { out: 4, kernel: 3 } }, { linear: {} }] }, /layer 0 \(conv\): unknown option 'kernel' \(options: out, k, stride, padding, groups, bias, name\)/],
    ['a class count on linear', { layers: [{ gap: {} }, { linear: { out: 10 } }] }, /layer 1 \(linear\): unknown option 'out' \(the class count comes from the dataset\)/],
    ['a missing out', { layers: [{ dwpw: { stride: 2 } }, { linear: {} }] }, /layer 0 \(dwpw\): 'out' is required/],
    ['groups that do not divide the input channels', { layers: [{ conv: { out: 6, k: 1 } }, { conv: { out: 8, groups: 4 } }, { linear: {} }] }, /layer 1 \(conv\): groups 4 does not divide the 6 input channels/],
    ['groups that do not divide the output channels', { layers: [{ conv: { out: 8, k: 1 } }, { conv: { out: 6, groups: 4 } }, { linear: {} }] }, /layer 1 \(conv\): groups 4 does not divide the 6 output channels/],
    ['a map shrinking below 1x1', { layers: [{ conv: { out: 4, k: 3, stride: 2 } }, { maxpool: { k: 4 } }, { maxpool: { k: 4 } }, { linear: {} }] }, /layer 2 \(maxpool\): the 3x3 map shrinks below 1x1 \(window 4, stride 4, padding 0\)/],
    ['a layer after linear', { layers: [{ linear: {} }, { relu: {} }] }, /layer 1 \(relu\): nothing can follow the linear layer/],
    ['no linear at the end', { layers: [{ conv: { out: 4 } }, { gap: {} }] }, /the last layer must be \{"linear": \{\}\}/],
    ['a non-integer', { layers: [{ conv: { out: 4.5 } }, { linear: {} }] }, /layer 0 \(conv\): 'out' must be an integer >= 1, got 4.5/],
    ['a name used twice', { layers: [{ relu: { name: 'a' } }, { relu: { name: 'a' } }, { linear: {} }] }, /layer 1 \(relu\): the name 'a' is used twice/],
    ['a name on a bn that fuses with relu', { layers: [{ conv: { out: 4 } }, { bn: { name: 'x' } }, { relu: {} }, { linear: {} }] }, /layer 1 \(bn\): a bn followed by relu .* name the relu instead/],
    ['no layers', { layers: [] }, /"layers" must be a non-empty array/],
    ['an unknown top-level key', { layer: [] }, /unknown key 'layer'/],
  ];
  for (const [what, spec, message] of bad) {
    it(`refuses ${what}`, () => {
      expect(() => planStudent(spec, FASHION, 'spec.json')).toThrow(message);
    });
  }

  it('training refuses a JSON student over the budget, naming its count', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'wgkd-json-'));
    const file = join(dir, 'big.json');
    writeFileSync(file, JSON.stringify({ layers: [{ conv: { out: 64, padding: 1 } }, { residual: { out: 64 } }, { gap: {} }, { linear: {} }] }));
    // 64*9+64 + 2*(64*64*9+128) + 64*10+10 = 75,274 parameters
    await expect(train({ model: file, trainLimit: 64, valLimit: 32, batch: 32, epochs: 1, quiet: true, out: join(dir, 'run') })).rejects.toThrow(
      `model '${file}' has 75,274 parameters, over the budget of 60,000 (--max-params)`,
    );
  });

  it('a checkpoint records the layer list: the model is rebuilt from the checkpoint alone (the JSON file gone)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'wgkd-json-'));
    const file = join(dir, 'student.json');
    const spec = { layers: [{ conv: { out: 8, k: 3, stride: 2, padding: 1 } }, { bn: {} }, { relu: { name: 'stem' } }, { dwpw: { out: 16, stride: 2 } }, { gap: {} }, { linear: {} }] };
    writeFileSync(file, JSON.stringify(spec));
    await train({ model: file, trainLimit: 32, valLimit: 32, batch: 32, epochs: 1, quiet: true, out: join(dir, 'run') });
    rmSync(file);
    const checkpoint = join(dir, 'run', 'best.safetensors');
    expect(loadCheckpoint(checkpoint).state.architecture).toEqual({ kind: 'json', file, spec });
    const { model } = await modelFromCheckpoint(checkpoint);
    expect(model).toBeInstanceOf(JsonStudent);
    expect(model.mapNames).toEqual(['stem']);
    expect(model.numParameters()).toBe(planStudent(spec, FASHION).reduce((n, l) => n + l.parameters, 0));
    model.dispose();
  });
});
