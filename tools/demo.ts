// `npm run demo`: the main job on the embedded default. Distils the dwpw student (< 60k parameters) from the
// Fashion-MNIST teacher that ships in data/fashion-mnist/ (resnet-small, see data/README.md) with KD + RKD, on
// Fashion-MNIST from Debian's dataset-fashion-mnist (or --data DIR); evaluates on the 10,000 test images; writes a
// run folder with the checkpoints, metrics.jsonl, PNG plots and report.md, and prints the report.
import { writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { Device, Prefix, evaluate, modelFromCheckpoint, openDataset, train, type TrainConfig } from '../src/index.js';
import { fashionMnistTeacher } from '../src/teacher/shipped.js';
import { plotRun } from '../src/train/plots.js';
import { Progress } from '../src/train/progress.js';
import { parseFlags } from '../src/cli/args.js';

const USAGE = `npm run demo [-- --data DIR] [--teacher FILE] [--recipe kd+rkd] [--epochs 1.25] [--train-limit N] [--out runs/demo]

Distils dwpw from the shipped Fashion-MNIST teacher (KD + RKD), tests it on the 10,000 test images and writes
runs/demo/ (best.safetensors, metrics.jsonl, loss.png, accuracy.png, confusion.png, report.md).
  --data DIR        Fashion-MNIST IDX files (default: /usr/share/datasets/fashion-mnist, Debian's dataset-fashion-mnist)
  --teacher FILE    teacher outputs for the train split (default: data/fashion-mnist/teacher-train.safetensors)
  --recipe R        a preset (ce, kd, kd+rkd, rkd, dkd, dm) or a JSON weighted sum (default kd+rkd)
  --epochs N        passes over the 55,000 training images, fractions allowed (default 1.25)
  --train-limit N   train on the first N images only (a quick look; --test-limit N likewise for the test set)
  --out DIR         run folder (default runs/demo)`;

const schema = { data: 'string', teacher: 'string', recipe: 'string', trainLimit: 'number', testLimit: 'number', epochs: 'number', out: 'string', help: 'boolean' } as const;
const flags = parseFlags(process.argv.slice(2), { ...schema }, 'demo');
if (flags.help) {
  console.log(USAGE);
  process.exit(0);
}
const started = performance.now();
const dev = await Device.open();
const data = flags.data as string | undefined;
const log = (line: string) => process.stderr.write(`${line}\n`);

// The teacher: the shipped outputs when they match the data, else produced once from the shipped weights and cached.
const trainSplit = await openDataset('fashion-mnist', 'train', { data });
let teacherFile = flags.teacher as string | undefined;
let teacherLine = `given outputs ${teacherFile}`;
if (!teacherFile) {
  const progress = new Progress('teacher outputs', trainSplit.length);
  const teacher = await fashionMnistTeacher(trainSplit, { data, log, onProgress: (d) => progress.update(d) });
  teacherFile = teacher.outputs;
  const accuracy = teacher.testAccuracy === null ? '' : `, test accuracy ${teacher.testAccuracy.toFixed(4)}`;
  teacherLine = `${teacher.model}, ${teacher.parameters.toLocaleString('en')} parameters${accuracy} (${teacher.source} outputs ${relative(process.cwd(), teacherFile) || teacherFile})`;
}

const config: Partial<TrainConfig> = {
  dataset: 'fashion-mnist',
  data,
  model: 'dwpw',
  teacher: teacherFile,
  recipe: (flags.recipe as string | undefined) ?? 'kd+rkd',
  // Test accuracy on a fresh clone (2-core software adapter, issue 10's third round): 1.25 passes 0.9026 in 4.7
  // minutes, 1.5 passes 0.9035 in 5.5 (one pass gave 0.897 with earlier kernels): the default fits 5 minutes.
  epochs: (flags.epochs as number | undefined) ?? 1.25,
  trainLimit: (flags.trainLimit as number | undefined) ?? 0,
  valLimit: 2000,
  batch: 64,
  lr: 6e-3, // for a one-epoch budget (3e-3: 0.883 test accuracy with ce in a PyTorch replica; 6e-3: 0.895)
  schedule: 'cosine',
  warmupEpochs: 0.05,
  logSteps: true, // per-step loss terms for loss.png
  out: (flags.out as string | undefined) ?? 'runs/demo',
  overwrite: true, // each demo run replaces the previous one
};
const result = await train(config, { device: dev });
result.model.dispose();

// The final model on the untouched test set: the cosine schedule anneals to the end, and with one or two
// validations on 2,000 images, picking the 'best' epoch would mostly pick noise (best.safetensors is kept too).
const { ckpt, model } = await modelFromCheckpoint(join(result.runDir, 'last.safetensors'));
const fullTest = await openDataset('fashion-mnist', 'test', { data });
const test = flags.testLimit ? new Prefix(fullTest, flags.testLimit as number) : fullTest;
const evalStart = performance.now();
const scores = await evaluate(model, test);
const evalSeconds = (performance.now() - evalStart) / 1000;
const plots = await plotRun(result.runDir, { classNames: test.classNames, confusion: scores.confusion, title: `dwpw, ${String(config.recipe)}` });
const wall = (performance.now() - started) / 1000;

const recipe = typeof config.recipe === 'string' ? config.recipe : JSON.stringify(config.recipe);
const report = [
  '# wgkd demo report',
  '',
  '| | |',
  '|---|---|',
  `| adapter | ${dev.summary.description}${dev.summary.software ? ' (software)' : ''} |`,
  `| dataset | Fashion-MNIST: ${config.trainLimit || trainSplit.length} training images x ${config.epochs} epoch(s), ${test.length} test images |`,
  `| teacher | ${teacherLine} |`,
  `| student | dwpw, ${result.modelParams.toLocaleString('en')} parameters |`,
  `| recipe | ${recipe} = ${JSON.stringify(ckpt.state.config.recipe)} |`,
  `| **student test accuracy** | **${scores.accuracy!.toFixed(4)}** (final model, last.safetensors) |`,
  `| best validation accuracy | ${result.bestAccuracy.toFixed(4)} (epoch ${result.bestEpoch}, ${config.valLimit} held-out images) |`,
  `| training throughput | ${result.imagesPerSecond.toFixed(0)} img/s |`,
  `| test evaluation | ${(test.length / evalSeconds).toFixed(0)} img/s |`,
  `| wall time | ${(wall / 60).toFixed(1)} min |`,
  '',
  'Per-class test accuracy: ' + test.classNames.map((name, c) => `${name} ${scores.perClass[c].toFixed(3)}`).join(', ') + '.',
  '',
  `Run folder ${result.runDir}: best.safetensors, last.safetensors, metrics.jsonl, ${plots.map((p) => p.split('/').pop()).join(', ')}.`,
  '',
  ...plots.map((p) => `![${p.split('/').pop()}](${p.split('/').pop()})`),
].join('\n');
writeFileSync(join(result.runDir, 'report.md'), `${report}\n`);
console.log(`\n${report.split('\n![')[0]}`);
model.dispose();
dev.destroy();
