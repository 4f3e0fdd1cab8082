// `npm run demo`: the main job on the embedded default. Trains the dwpw student (< 60k parameters) on
// Fashion-MNIST (Debian's dataset-fashion-mnist, or --data DIR), evaluates it on the 10,000 test images and prints
// a short report (also written to the run folder as report.md).
//
// Until a trained Fashion-MNIST teacher ships with wgkd, the demo trains with cross-entropy only; with
// `--teacher FILE --recipe kd+rkd` it distils from a teacher-outputs file (see README).
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Device, createModel, evaluate, loadCheckpoint, openDataset, train, type TrainConfig } from '../src/index.js';
import { parseFlags } from '../src/cli/args.js';

const flags = parseFlags(process.argv.slice(2), { data: 'string', teacher: 'string', recipe: 'string', trainLimit: 'number', epochs: 'number', out: 'string' }, 'demo');
const started = performance.now();
const dev = await Device.open();
const config: Partial<TrainConfig> = {
  dataset: 'fashion-mnist',
  data: flags.data as string | undefined,
  model: 'dwpw',
  teacher: flags.teacher as string | undefined,
  recipe: (flags.recipe as string | undefined) ?? (flags.teacher ? 'kd+rkd' : 'ce'),
  epochs: (flags.epochs as number | undefined) ?? 1,
  trainLimit: (flags.trainLimit as number | undefined) ?? 0, // 0 = all 55,000 (one epoch: ~7 min on a 2-core software adapter)
  valLimit: 2000,
  batch: 64,
  lr: 3e-3,
  schedule: 'cosine',
  warmupEpochs: 0.05,
  out: (flags.out as string | undefined) ?? 'runs/demo',
};
const result = await train(config, { device: dev });
result.model.dispose();

// The best checkpoint (by validation accuracy) on the untouched test set.
const ckpt = loadCheckpoint(join(result.runDir, 'best.safetensors'));
const model = createModel(ckpt.state.model, ckpt.state.modelSpec);
model.loadStateDict(ckpt.model);
const test = await openDataset('fashion-mnist', 'test', { data: config.data });
const evalStart = performance.now();
const scores = await evaluate(model, test);
const evalSeconds = (performance.now() - evalStart) / 1000;
const wall = (performance.now() - started) / 1000;

const report = [
  '# wgkd demo report',
  '',
  `| | |`,
  `|---|---|`,
  `| adapter | ${dev.summary.description}${dev.summary.software ? ' (software)' : ''} |`,
  `| dataset | Fashion-MNIST: ${config.trainLimit || 55000} training images, ${test.length} test images |`,
  `| student | dwpw, ${result.modelParams.toLocaleString('en')} parameters |`,
  `| recipe | ${typeof config.recipe === 'string' ? config.recipe : JSON.stringify(config.recipe)}${config.teacher ? ` (teacher outputs ${config.teacher})` : ' (no teacher file: cross-entropy only)'} |`,
  `| student test accuracy | ${scores.accuracy!.toFixed(4)} |`,
  `| best validation accuracy | ${result.bestAccuracy.toFixed(4)} (epoch ${result.bestEpoch}) |`,
  `| training throughput | ${result.imagesPerSecond.toFixed(0)} img/s |`,
  `| test evaluation | ${(test.length / evalSeconds).toFixed(0)} img/s |`,
  `| wall time | ${(wall / 60).toFixed(1)} min |`,
  '',
  `Run folder: ${result.runDir} (best.safetensors, last.safetensors, metrics.jsonl).`,
].join('\n');
writeFileSync(join(result.runDir, 'report.md'), `${report}\n`);
console.log(`\n${report}`);
model.dispose();
dev.destroy();
