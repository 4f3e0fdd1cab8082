// Modules and models: parameter counts, names, state dicts, input shapes.
import { describe, expect, it } from 'vitest';
import { Dwpw, Hw13Sample, Tensor, createModel, dwpwStrides, models, noGrad, scope } from '../src/index.js';
import { useDevice } from './helpers/device.js';

useDevice();

describe('model registry and parameter budgets (counted like torchsummary)', () => {
  it('hw13-sample has exactly 59,723 parameters at 3x224x224, 11 classes', () => {
    expect(new Hw13Sample(3, 11).numParameters()).toBe(59_723);
  });
  it('dwpw default is under 60,000 parameters (59,147)', () => {
    const m = new Dwpw({ inChannels: 3, numClasses: 11, inputSize: 224 });
    expect(m.numParameters()).toBe(59_147);
    expect(m.numParameters()).toBeLessThan(60_000);
  });
  it('names follow PyTorch (dotted, Sequential children by index)', () => {
    const names = new Hw13Sample(3, 11).namedParameters().map(([n]) => n);
    expect(names.slice(0, 4)).toEqual(['cnn.0.weight', 'cnn.0.bias', 'cnn.1.weight', 'cnn.1.bias']);
    expect(names.at(-1)).toBe('fc.0.bias');
    const buffers = new Hw13Sample(3, 11).namedBuffers().map(([n]) => n);
    expect(buffers.slice(0, 2)).toEqual(['cnn.1.running_mean', 'cnn.1.running_var']);
    const r = createModel('resnet18', { inChannels: 3, numClasses: 11, inputSize: 224 });
    expect(r.numParameters()).toBe(11_182_155); // torchvision's ResNet-18 with 11 outputs (task.md)
    expect(r.namedParameters().map(([n]) => n)).toContain('layer2.0.downsample.0.weight');
    r.dispose();
  });
  it('dwpw strides adapt to the input size', () => {
    expect(dwpwStrides(28)).toEqual([1, 2, 1, 2, 1]);
    expect(dwpwStrides(64)).toEqual([2, 2, 1, 2, 1]);
    expect(dwpwStrides(224)).toEqual([2, 2, 2, 2, 2]);
  });
});

describe('forward shapes on every input the product meets', () => {
  for (const [name, c, size, classes] of [
    ['hw13-sample', 1, 28, 10],
    ['dwpw', 1, 28, 10],
    ['dwpw', 3, 64, 11],
    ['resnet-small', 1, 28, 10],
  ] as const) {
    it(`${name} on ${c}x${size}x${size}`, () => {
      const m = createModel(name, { inChannels: c, numClasses: classes, inputSize: size });
      scope(() => {
        const f = noGrad(() => m.forwardFeatures(Tensor.zeros([2, c, size, size])));
        expect(f.logits.shape).toEqual([2, classes]);
        expect(f.embedding.shape[0]).toBe(2);
        for (const n of m.mapNames) expect(f.maps[n].shape[0]).toBe(2);
      });
      m.dispose();
    });
  }
});

describe('state dicts', () => {
  it('round-trip exactly, and a wrong shape or name is refused with a message', async () => {
    const a = createModel('dwpw', { inChannels: 1, numClasses: 10, inputSize: 28, seed: 1 });
    const b = createModel('dwpw', { inChannels: 1, numClasses: 10, inputSize: 28, seed: 2 });
    const sa = await a.stateDict();
    expect(Object.keys(sa)).toContain('stage1.1.running_var');
    b.loadStateDict(sa);
    const sb = await b.stateDict();
    for (const k of Object.keys(sa)) expect(sb[k].data).toEqual(sa[k].data);
    const bad = { ...sa, 'fc.weight': { shape: [3, 3], data: new Float32Array(9) } };
    expect(() => b.loadStateDict(bad)).toThrow(/'fc\.weight': checkpoint shape \[3, 3\], model shape \[10, 192\]/);
    const { 'fc.bias': _, ...missing } = sa;
    expect(() => b.loadStateDict(missing)).toThrow(/missing key 'fc\.bias'/);
    a.dispose();
    b.dispose();
  });
  it('the same seed gives the same weights', async () => {
    const a = await createModel('hw13-sample', { inChannels: 3, numClasses: 11, inputSize: 64, seed: 7 }).stateDict();
    const b = await createModel('hw13-sample', { inChannels: 3, numClasses: 11, inputSize: 64, seed: 7 }).stateDict();
    expect(a['cnn.3.weight'].data).toEqual(b['cnn.3.weight'].data);
  });
  it('every registry entry builds', () => {
    expect(Object.keys(models)).toEqual(['hw13-sample', 'dwpw', 'resnet-small', 'resnet18']);
  });
});
