// PyTorch interop, checked against PyTorch itself (Debian's /usr/bin/python3 with torch + torchvision):
//   tools/teacher/convert_checkpoint.py (.ckpt/.pt -> safetensors), loadTorchWeights (src/teacher/torch.ts),
//   wgkd's resnet18 forward vs torchvision's in float64 (ImageNet stem at 64 px, small 1-channel stem at 28 px),
//   tools/teacher/export_outputs.py on Food-11 and Fashion-MNIST layouts (order, count, fingerprint, views, hints
//   accepted by wgkd's checkAlignment), and `wgkd teacher export --weights` against export_outputs.py.
// Error measure: test/helpers/check.ts (|got - want| / (|want| + 0.01 max|want|)).
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Tensor, noGrad, scope } from '../src/index.js';
import { createModel } from '../src/models/registry.js';
import type { Classifier } from '../src/models/classifier.js';
import { loadTorchWeights, readTorchWeights, torchResNetShape } from '../src/teacher/torch.js';
import { SafetensorsFile, float32ToHalf, halfToFloat32, readSafetensors, writeSafetensors } from '../src/teacher/safetensors.js';
import { openTeacherOutputs } from '../src/teacher/outputs.js';
import { datasetIdentity } from '../src/data/dataset.js';
import { openDataset } from '../src/data/open.js';
import { writeIdx } from '../src/data/idx.js';
import { normalisation, parseView, transformInto, viewTransform } from '../src/data/augment.js';
import { IMAGENET_MEAN, IMAGENET_STD } from '../src/data/food11.js';
import { rng } from '../src/random.js';
import { expectClose, maxRelError } from './helpers/check.js';
import { useDevice } from './helpers/device.js';
import { makeFood11 } from './helpers/food11-fixture.js';
import { requireTorch, runPython } from './helpers/python.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const CONVERT = path.join(REPO, 'tools/teacher/convert_checkpoint.py');
const EXPORT = path.join(REPO, 'tools/teacher/export_outputs.py');
// Logits and embeddings: rel 1e-4. Stage outputs (post-ReLU maps, many values near zero): rel 2e-4; measured here
// up to 7.7e-5 for wgkd f32 vs PyTorch f64 (PyTorch's own f32 forward: up to 2.7e-5).
const TOL = 1e-4;
const TOL_MAPS = 2e-4;

// Two seeded torchvision ResNet-18s with non-trivial BatchNorm (random affine and running statistics, so eval
// mode differs from the identity): 'big' (ImageNet stem, 3 channels, 11 classes) saved the way training scripts
// do ({'epoch', 'model': DataParallel state dict}), 'small' (3x3 stride-1 conv1, no max-pool, 1 channel, 10
// classes) as a plain state dict. The references are PyTorch's float64 forward of the same weights.
const MAKE_MODELS = String.raw`
import json, sys
import numpy as np, torch, torchvision
sys.path.insert(0, sys.argv[2])
from safetensors_io import write_safetensors
from export_outputs import forward_features
out = sys.argv[1]
torch.manual_seed(0)
g = torch.Generator().manual_seed(1)

def randomise(model):
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.weight.data = 0.5 + torch.rand(n, generator=g)
            m.bias.data = 0.2 * torch.randn(n, generator=g)
            m.running_mean.copy_(0.2 * torch.randn(n, generator=g))
            m.running_var.copy_(0.5 + torch.rand(n, generator=g))
            m.num_batches_tracked.fill_(7)
    model.fc.bias.data = 0.1 * torch.randn(model.fc.out_features, generator=g)
    return model.eval()

big = randomise(torchvision.models.resnet18(num_classes=11))
small = torchvision.models.resnet18(num_classes=10)
small.conv1 = torch.nn.Conv2d(1, 64, 3, stride=1, padding=1, bias=False)
small.maxpool = torch.nn.Identity()
small = randomise(small)
torch.save({'epoch': 3, 'model': {'module.' + k: v for k, v in big.state_dict().items()}}, out + '/big.ckpt')
torch.save(small.state_dict(), out + '/small.pt')
torch.save(small, out + '/small-model.pt')  # a whole pickled model object

ref = {}
for name, model, shape in (('big', big, (2, 3, 64, 64)), ('small', small, (3, 1, 28, 28))):
    x = torch.randn(*shape, generator=g)
    with torch.no_grad():
        logits, embedding, maps = forward_features(model.double(), x.double())
    ref[name + '.x'] = ('F32', x.numpy())
    ref[name + '.logits'] = ('F32', logits.float().numpy())
    ref[name + '.embedding'] = ('F32', embedding.float().numpy())
    for stage, value in maps.items():
        ref[name + '.' + stage] = ('F32', value.float().numpy())
write_safetensors(out + '/ref.safetensors', ref)
json.dump({'big': list(big.state_dict()), 'small': list(small.state_dict())}, open(out + '/names.json', 'w'))

# convert_checkpoint.py's main(), in this process (one interpreter start instead of four; the command line itself
# is run by the error-case test).
import convert_checkpoint
for argv in ([out + '/big.ckpt', out + '/big.safetensors'],
             [out + '/small.pt', out + '/small.safetensors'],
             ['--f16', out + '/small.pt', out + '/small-f16.safetensors'],
             ['--trust-pickle', out + '/small-model.pt', out + '/small-trusted.safetensors']):
    if convert_checkpoint.main(argv + ['--quiet']) != 0:
        sys.exit('convert_checkpoint.py %s failed' % ' '.join(argv))
`;

const dev = useDevice();
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wgkd-torch-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
const file = (name: string): string => path.join(dir, name);

let ref: Record<string, { shape: number[]; data: Float32Array }> = {};
let names: { big: string[]; small: string[] } = { big: [], small: [] };

beforeAll(async () => {
  requireTorch();
  await runPython(['-c', MAKE_MODELS, dir, path.join(REPO, 'tools/teacher')]);
  const r = readSafetensors(file('ref.safetensors'));
  ref = Object.fromEntries(Object.entries(r.tensors).map(([k, t]) => [k, { shape: t.shape, data: t.data as Float32Array }]));
  names = JSON.parse(fs.readFileSync(file('names.json'), 'utf8')) as typeof names;
}, 120_000);

/** logits, embedding and stage outputs of a wgkd model, read back. */
async function features(model: Classifier, x: Float32Array, shape: number[]) {
  return scope(async () => {
    const f = noGrad(() => model.forwardFeatures(Tensor.fromArray(x, shape)));
    const stages = model.mapNames;
    const bytes = await dev().read([f.logits, f.embedding, ...stages.map((s) => f.maps[s])]);
    const arrays = bytes.map((b) => new Float32Array(b));
    return { logits: arrays[0], embedding: arrays[1], maps: Object.fromEntries(stages.map((s, i) => [s, arrays[2 + i]])) };
  });
}

describe('convert_checkpoint.py: PyTorch state dict -> safetensors', () => {
  it("keeps the names (strips DataParallel's 'module.', finds the dict under 'model'), F32 floats, I64 counters", () => {
    const f = SafetensorsFile.open(file('big.safetensors'));
    try {
      expect(f.names).toEqual(names.big);
      expect(f.metadata.source).toBe('big.ckpt');
      expect(f.info('conv1.weight')).toMatchObject({ dtype: 'F32', shape: [64, 3, 7, 7] });
      expect(f.info('layer2.0.downsample.0.weight')).toMatchObject({ dtype: 'F32', shape: [128, 64, 1, 1] });
      expect(f.info('bn1.num_batches_tracked')).toMatchObject({ dtype: 'I64', shape: [] });
      expect(Array.from(f.read('bn1.num_batches_tracked'))).toEqual([7]);
    } finally {
      f.close();
    }
    expect(torchResNetShape(file('big.safetensors'))).toEqual({ inChannels: 3, numClasses: 11, stemKernel: 7 });
    expect(torchResNetShape(file('small.safetensors'))).toEqual({ inChannels: 1, numClasses: 10, stemKernel: 3 });
  });

  it('refuses a non-checkpoint, and a pickled model object unless --trust-pickle, with messages naming the file', async () => {
    fs.writeFileSync(file('junk.pt'), 'not a checkpoint');
    const [junk, pickled] = await Promise.allSettled([
      runPython([CONVERT, file('junk.pt'), file('junk.safetensors')]),
      runPython([CONVERT, file('small-model.pt'), file('small-model.safetensors')]),
    ]);
    expect(junk.status === 'rejected' && String(junk.reason)).toMatch(/junk\.pt: torch\.load failed: not a PyTorch checkpoint/);
    expect(pickled.status === 'rejected' && String(pickled.reason)).toMatch(/small-model\.pt holds more than tensors[\s\S]*--trust-pickle/);
    expect(fs.readdirSync(dir).filter((n) => n.includes('junk.safetensors') || n.includes('small-model.safetensors'))).toEqual([]);
    // The pickled model converted with --trust-pickle holds exactly the state dict's tensors.
    const [trusted, plain] = ['small-trusted', 'small'].map((n) => SafetensorsFile.open(file(`${n}.safetensors`)));
    expect(trusted.names).toEqual(plain.names);
    const dataArea = (f: SafetensorsFile) => fs.readFileSync(f.path).subarray(f.dataStart);
    expect(dataArea(trusted).equals(dataArea(plain))).toBe(true);
    trusted.close();
    plain.close();
  });
});

describe(`loadTorchWeights + wgkd resnet18 forward vs torchvision float64 (logits, embedding rel <= ${TOL}; maps ${TOL_MAPS})`, () => {
  const cases = [
    { name: 'big', what: 'ImageNet stem (7x7/2 + max-pool), 2x3x64x64, 11 classes', spec: { inChannels: 3, numClasses: 11, inputSize: 224 } },
    { name: 'small', what: 'small stem (3x3/1, no max-pool), 3x1x28x28, 10 classes', spec: { inChannels: 1, numClasses: 10, inputSize: 28 } },
  ] as const;
  for (const c of cases) {
    it(`${c.what}: logits, embedding and layer1..layer4`, async () => {
      const model = createModel('resnet18', { ...c.spec, seed: 5 });
      const summary = loadTorchWeights(model, file(`${c.name}.safetensors`));
      expect(summary.ignored.length).toBe(20); // one num_batches_tracked per BatchNorm
      expect(summary.loaded.length).toBe(names[c.name].length - 20);
      model.eval();
      const x = ref[`${c.name}.x`];
      const got = await features(model, x.data, x.shape);
      expectClose(got.logits, ref[`${c.name}.logits`].data, TOL, `${c.name} logits`);
      expectClose(got.embedding, ref[`${c.name}.embedding`].data, TOL, `${c.name} embedding`);
      for (const stage of model.mapNames) expectClose(got.maps[stage], ref[`${c.name}.${stage}`].data, TOL_MAPS, `${c.name} ${stage}`);
      model.dispose();
    });
  }

  it('lists every problem (shapes, missing, unexpected) and writes nothing when the weights do not fit', async () => {
    const model = createModel('resnet18', { inChannels: 3, numClasses: 10, inputSize: 28 });
    const before = await model.stateDict();
    let message = '';
    try {
      loadTorchWeights(model, file('big.safetensors'));
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toMatch(/big\.safetensors: 3 problem\(s\)/);
    expect(message).toMatch(/'conv1\.weight': file shape \[64, 3, 7, 7\], model shape \[64, 3, 3, 3\]/);
    expect(message).toMatch(/'fc\.weight': file shape \[11, 512\], model shape \[10, 512\]/);
    expect(message).toMatch(/'fc\.bias': file shape \[11\], model shape \[10\]/);
    const after = await model.stateDict();
    expect(after['fc.bias'].data).toEqual(before['fc.bias'].data);
    model.dispose();

    const resnetSmall = createModel('resnet-small', { inChannels: 1, numClasses: 10, inputSize: 28 });
    expect(() => loadTorchWeights(resnetSmall, file('small.safetensors'))).toThrow(
      /'conv1\.weight': file shape \[64, 1, 3, 3\], model shape \[32, 1, 3, 3\][\s\S]*unexpected tensor 'layer4\.0\.conv1\.weight'/,
    );
    resnetSmall.dispose();
    writeSafetensors(file('partial.safetensors'), { 'conv1.weight': { shape: [64, 1, 3, 3], data: new Float32Array(576) } });
    const partial = createModel('resnet18', { inChannels: 1, numClasses: 10, inputSize: 28 });
    expect(() => loadTorchWeights(partial, file('partial.safetensors'))).toThrow(/missing tensor 'bn1\.weight' \[64\][\s\S]*missing tensor 'fc\.bias' \[10\]/);
    partial.dispose();
  });

  it('accepts F16 files (convert_checkpoint.py --f16): values are the F32 weights rounded to half', () => {
    const model = createModel('resnet18', { inChannels: 1, numClasses: 10, inputSize: 28 });
    const half = readTorchWeights(model, file('small-f16.safetensors')).state;
    const full = readTorchWeights(model, file('small.safetensors')).state;
    for (const name of ['conv1.weight', 'layer3.1.bn2.running_var', 'fc.weight']) {
      expect(half[name].data).toEqual(halfToFloat32(float32ToHalf(full[name].data)));
    }
    model.dispose();
  });
});

/** Mean absolute difference of two uint8 arrays. */
function meanAbsDiff(a: Uint8Array, b: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += Math.abs(a[i] - b[i]);
  return sum / a.length;
}

describe('export_outputs.py on a Food-11 folder (ImageNet-stem teacher at 64 px)', () => {
  it(`is accepted by wgkd's checkAlignment, with the views and hint shapes asked for; outputs = wgkd's forward on the same pixels (rel <= ${TOL}, maps ${TOL_MAPS})`, async () => {
    // Images of 74-148 px, so every one is shrunk to the 73 px shorter side (sharp's upsampling differs from PIL's).
    const fixture = await makeFood11(file('food11'), { perClass: 1, validationPerClass: 1, evaluation: 1, classes: 5, size: 90 });
    const out = file('food11-training.safetensors');
    const images = file('food11-images.safetensors');
    const [, ds] = await Promise.all([
      runPython([
        EXPORT, '--weights', file('big.ckpt'), '--food11', fixture.root, '--split', 'training', '--size', '64',
        '--views', 'identity,hflip', '--hints', 'layer2,layer3', '--out', out, '--dump-images', images, '--workers', '0', '--quiet',
      ]),
      openDataset('food11', 'train', { data: fixture.root, size: 64, cacheDir: file('cache') }),
    ]);
    const teacher = openTeacherOutputs(out);
    try {
      teacher.checkAlignment(datasetIdentity(ds));
      expect(teacher.count).toBe(5);
      expect(teacher.views).toEqual(['identity', 'hflip']);
      expect(teacher.hasViewsAxis).toBe(true);
      expect(teacher.embeddingDim).toBe(512);
      expect(teacher.hintShapes).toEqual({ layer2: [128, 8, 8], layer3: [256, 4, 4] });
      expect(teacher.metadata.raw.image_size).toBe('3x64x64');

      // PIL and sharp decode to nearly the same pixels (same JPEG decoder output, resize and crop geometry; the
      // resampling filters differ slightly).
      const decoded = readSafetensors(images).tensors.images.data as Uint8Array;
      const plane = 3 * 64 * 64;
      for (let i = 0; i < ds.length; i++) {
        const diff = meanAbsDiff(decoded.subarray(i * plane, (i + 1) * plane), ds.image(i));
        expect(diff, `image ${fixture.files.training[i]}: mean |PIL - sharp| = ${diff.toFixed(2)}`).toBeLessThan(1);
      }

      // On PIL's pixels, wgkd's transform + forward give the file's values for each view.
      const model = createModel('resnet18', { inChannels: 3, numClasses: 11, inputSize: 224 });
      loadTorchWeights(model, file('big.safetensors'));
      model.eval();
      const { scale, shift } = normalisation(IMAGENET_MEAN, IMAGENET_STD);
      for (let v = 0; v < 2; v++) {
        const t = viewTransform(parseView(teacher.views[v]), 64, 64);
        const x = new Float32Array(ds.length * plane);
        for (let i = 0; i < ds.length; i++) transformInto(decoded.subarray(i * plane, (i + 1) * plane), 3, 64, 64, t, scale, shift, x, i * plane);
        const got = await features(model, x, [ds.length, 3, 64, 64]);
        const all = Array.from({ length: ds.length }, (_, i) => i);
        const want = teacher.readBatch(all, v);
        expectClose(got.logits, want.logits, TOL, `view ${teacher.views[v]} logits`);
        expectClose(got.embedding, want.embedding!, TOL, `view ${teacher.views[v]} embedding`);
        expectClose(got.maps.layer2, want.hints!.layer2, TOL_MAPS, `view ${teacher.views[v]} layer2`);
        expectClose(got.maps.layer3, want.hints!.layer3, TOL_MAPS, `view ${teacher.views[v]} layer3`);
      }
      model.dispose();
    } finally {
      teacher.close();
    }
  });
});

/** Fashion-MNIST IDX files with `train` + 5,000 training images (so the seeded hold-out leaves `train`) and `test` test images. */
function makeFashionMnist(folder: string, train: number, test: number): void {
  fs.mkdirSync(folder, { recursive: true });
  const random = rng(7);
  const write = (prefix: string, n: number, gzip: boolean) => {
    writeIdx(path.join(folder, `${prefix}-images-idx3-ubyte${gzip ? '.gz' : ''}`), [n, 28, 28], Uint8Array.from({ length: n * 784 }, () => Math.floor(random() * 256)), { gzip });
    writeIdx(path.join(folder, `${prefix}-labels-idx1-ubyte${gzip ? '.gz' : ''}`), [n], Uint8Array.from({ length: n }, () => Math.floor(random() * 10)), { gzip });
  };
  write('train', 5000 + train, true);
  write('t10k', test, false);
}

function wgkd(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(REPO, 'bin/wgkd.js'), ...args], { cwd: REPO });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(output) : reject(new Error(`wgkd ${args.join(' ')} exited with ${code}:\n${output}`))));
  });
}

describe('Fashion-MNIST: export_outputs.py vs `wgkd teacher export --weights` (small-stem teacher, 1 channel)', () => {
  it(`same identity (seeded hold-out order, fingerprint) and the same outputs for 2 views (one a crop + flip) and a hint (rel <= ${TOL}, maps ${TOL_MAPS})`, async () => {
    const data = file('fashion-mnist');
    makeFashionMnist(data, 4, 3);
    const views = ['identity', 'crop(0.1,0.15,0.8,0.75)+hflip'];
    const common = ['--split', 'train', '--views', views.join(','), '--hints', 'layer3'];
    const fromPython = file('fm-python.safetensors');
    const fromWgkd = file('fm-wgkd.safetensors');
    await Promise.all([
      runPython([EXPORT, '--weights', file('small.safetensors'), '--small-stem', '--classes', '10', '--fashion-mnist', data, ...common, '--out', fromPython, '--quiet']),
      wgkd(['teacher', 'export', '--weights', file('small.safetensors'), '--model', 'resnet18', '--dataset', 'fashion-mnist', '--classes', '10', '--data', data, ...common, '--out', fromWgkd]),
    ]);
    const ds = await openDataset('fashion-mnist', 'train', { data });
    expect(ds.length).toBe(4);
    const python = openTeacherOutputs(fromPython);
    const ours = openTeacherOutputs(fromWgkd);
    try {
      python.checkAlignment(datasetIdentity(ds));
      ours.checkAlignment(datasetIdentity(ds));
      expect(python.views).toEqual(views);
      expect(ours.views).toEqual(views);
      expect(python.hintShapes).toEqual({ layer3: [256, 7, 7] });
      expect(ours.hintShapes).toEqual(python.hintShapes);
      const all = Array.from({ length: ds.length }, (_, i) => i);
      for (let v = 0; v < views.length; v++) {
        const a = ours.readBatch(all, v);
        const b = python.readBatch(all, v);
        expectClose(a.logits, b.logits, TOL, `view ${python.views[v]} logits`);
        expectClose(a.embedding!, b.embedding!, TOL, `view ${python.views[v]} embedding`);
        expectClose(a.hints!.layer3, b.hints!.layer3, TOL_MAPS, `view ${python.views[v]} layer3`);
        // The views differ from each other (so each one was really applied).
        if (v > 0) expect(maxRelError(b.logits, python.readBatch(all, 0).logits).err).toBeGreaterThan(1e-2);
      }
    } finally {
      python.close();
      ours.close();
    }
  });
});
