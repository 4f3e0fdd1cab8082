// `npm run experiment -- --dataset fashion-mnist`: the results table (docs/results.md). The same student, epoch
// budget and optimiser settings trained with each recipe, distilling from the shipped Fashion-MNIST teacher
// (data/README.md), each tested on the 10,000 test images. Every row runs in its own folder under runs/experiment/
// and records result.json when done, so an interrupted experiment picks up where it stopped (a half-trained row
// resumes from its last epoch). Rows whose settings changed are rerun.
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { Device, Prefix, evaluate, modelFromCheckpoint, openDataset, train, type TrainConfig } from '../src/index.js';
import { fashionMnistTeacher } from '../src/teacher/shipped.js';
import { Progress, duration } from '../src/train/progress.js';
import { parseFlags } from '../src/cli/args.js';

const USAGE = `npm run experiment -- --dataset fashion-mnist [--epochs 1] [--rows dwpw:ce,dwpw:kd,...] [--out docs/results.md]

Trains every row (student:recipe) with the same settings, tests each on the 10,000 test images, writes the table.
  --dataset NAME   fashion-mnist (the dataset with a shipped teacher)
  --data DIR       Fashion-MNIST IDX files (default: Debian's /usr/share/datasets/fashion-mnist)
  --epochs N       the epoch budget of every row (default 1: ~6 min per row on a 2-core software adapter)
  --rows LIST      student:recipe pairs (default: ${'dwpw:ce,dwpw:kd,dwpw:kd+rkd,dwpw:fitnet,dwpw:dkd,hw13-sample:ce,hw13-sample:kd'})
  --runs DIR       run folders (default runs/experiment)
  --train-limit N, --val-limit N, --test-limit N   use the first N images of a split only (smoke tests)
  --out FILE       the table (default docs/results.md)`;

const DEFAULT_ROWS = 'dwpw:ce,dwpw:kd,dwpw:kd+rkd,dwpw:fitnet,dwpw:dkd,hw13-sample:ce,hw13-sample:kd';
// The FitNet row guides the student's last map with the teacher's last stage (128x7x7; the regressor is a 1x1 conv).
const FITNET_HINT = 'layer3';

const flags = parseFlags(process.argv.slice(2), { dataset: 'string', data: 'string', epochs: 'number', rows: 'string', runs: 'string', out: 'string', trainLimit: 'number', valLimit: 'number', testLimit: 'number', help: 'boolean' }, 'experiment');
if (flags.help) {
  console.log(USAGE);
  process.exit(0);
}
if (flags.dataset !== 'fashion-mnist') {
  throw new Error(`experiment: --dataset fashion-mnist is required (the only dataset with a shipped teacher; got ${flags.dataset === undefined ? 'none' : `'${flags.dataset}'`})`);
}
const data = flags.data as string | undefined;
const epochs = (flags.epochs as number | undefined) ?? 1;
const runsDir = (flags.runs as string | undefined) ?? 'runs/experiment';
const outFile = (flags.out as string | undefined) ?? 'docs/results.md';
const rows = String(flags.rows ?? DEFAULT_ROWS).split(',').map((r) => {
  const [model, recipe] = r.split(':');
  if (!model || !recipe) throw new Error(`experiment: --rows entry '${r}' is not student:recipe`);
  return { model, recipe };
});

// Shared by every row: only the student and the recipe change.
const common = {
  dataset: 'fashion-mnist', data, epochs, batch: 64, lr: 6e-3, optimizer: 'adam', schedule: 'cosine', warmupEpochs: 0.05, seed: 0,
  trainLimit: (flags.trainLimit as number | undefined) ?? 0,
  valLimit: (flags.valLimit as number | undefined) ?? 0,
} as const;
const testLimit = (flags.testLimit as number | undefined) ?? 0;

interface RowResult {
  model: string;
  recipe: string;
  recipeTerms: unknown;
  testAccuracy: number;
  bestValAccuracy: number;
  params: number;
  trainingOnlyParams: number;
  seconds: number;
  imagesPerSecond: number;
  command: string;
  settings: string;
}

function commandLine(model: string, recipe: string, out: string, teacher: string): string {
  const parts = ['npx wgkd train --dataset fashion-mnist', data ? `--data ${data}` : '', `--model ${model}`, `--recipe ${recipe}`];
  if (recipe !== 'ce') parts.push(`--teacher ${teacher}`);
  parts.push(`--epochs ${epochs} --batch ${common.batch} --lr ${common.lr} --schedule ${common.schedule} --warmup-epochs ${common.warmupEpochs} --seed ${common.seed} --out ${out}`);
  if (common.trainLimit) parts.push(`--train-limit ${common.trainLimit}`);
  if (common.valLimit) parts.push(`--val-limit ${common.valLimit}`);
  parts.push(`&& npx wgkd eval --checkpoint ${out}/best.safetensors --split test`);
  return parts.filter(Boolean).join(' ');
}

/** Paths as a user in the repository would type them. */
function shown(path: string): string {
  return relative(process.cwd(), path) || path;
}

const started = performance.now();
const dev = await Device.open();
const log = (line: string) => process.stderr.write(`${line}\n`);
const trainSplit = await openDataset('fashion-mnist', 'train', { data });
const fullTest = await openDataset('fashion-mnist', 'test', { data });
const test = testLimit > 0 ? new Prefix(fullTest, testLimit) : fullTest;
const limits = [common.trainLimit && `${common.trainLimit} training`, common.valLimit && `${common.valLimit} validation`, testLimit && `${testLimit} test`].filter(Boolean);
const teacher = await fashionMnistTeacher(trainSplit, { data, log });
const needHints = rows.some((r) => r.recipe === 'fitnet');
const hintTeacher = needHints ? await fashionMnistTeacher(trainSplit, { data, log, hints: [FITNET_HINT], onProgress: progressOf('teacher hints') }) : null;

function progressOf(label: string): (done: number, total: number) => void {
  let bar: Progress | null = null;
  return (done, total) => (bar ??= new Progress(label, total)).update(done);
}

const results: RowResult[] = [];
for (const [i, row] of rows.entries()) {
  const name = `${row.model}-${row.recipe.replace(/[^a-z0-9]+/gi, '-')}`;
  const out = join(runsDir, name);
  const teacherFile = row.recipe === 'fitnet' ? hintTeacher!.outputs : teacher.outputs;
  const config: Partial<TrainConfig> = { ...common, model: row.model, recipe: row.recipe, teacher: row.recipe === 'ce' ? undefined : teacherFile, out, resume: true };
  const settings = JSON.stringify({ ...common, testLimit, model: row.model, recipe: row.recipe, teacher: config.teacher ? teacher.testAccuracy : null });
  const resultFile = join(out, 'result.json');
  if (existsSync(resultFile)) {
    const previous = JSON.parse(readFileSync(resultFile, 'utf8')) as RowResult;
    if (previous.settings === settings) {
      log(`[${i + 1}/${rows.length}] ${name}: done earlier, test accuracy ${previous.testAccuracy.toFixed(4)} (${resultFile})`);
      results.push(previous);
      continue;
    }
    log(`[${i + 1}/${rows.length}] ${name}: settings changed since ${resultFile}, training again`);
  }
  // A half-trained row resumes only if it was started with the same settings.
  const settingsFile = join(out, 'settings.json');
  config.resume = existsSync(settingsFile) && readFileSync(settingsFile, 'utf8') === settings && !existsSync(resultFile) && existsSync(join(out, 'last.safetensors'));
  config.overwrite = !config.resume; // a row trained again replaces its earlier run
  mkdirSync(out, { recursive: true });
  writeFileSync(settingsFile, settings);
  log(`[${i + 1}/${rows.length}] ${name}${config.resume ? ' (resuming)' : ''}`);
  const run = await train(config, { device: dev });
  run.model.dispose();
  const { ckpt, model } = await modelFromCheckpoint(join(out, 'best.safetensors'));
  const scores = await evaluate(model, test);
  model.dispose();
  const result: RowResult = {
    model: row.model,
    recipe: row.recipe,
    recipeTerms: ckpt.state.config.recipe,
    testAccuracy: scores.accuracy!,
    bestValAccuracy: run.bestAccuracy,
    params: run.modelParams,
    trainingOnlyParams: run.extraParams,
    seconds: run.seconds,
    imagesPerSecond: run.imagesPerSecond,
    command: commandLine(row.model, row.recipe, out, shown(teacherFile)),
    settings,
  };
  writeFileSync(`${resultFile}.tmp`, `${JSON.stringify(result, null, 2)}\n`);
  renameSync(`${resultFile}.tmp`, resultFile);
  log(`[${i + 1}/${rows.length}] ${name}: test accuracy ${result.testAccuracy.toFixed(4)} in ${duration(result.seconds)}`);
  results.push(result);
}

// ---- the table ----
const best = results.reduce((a, b) => (b.testAccuracy > a.testAccuracy ? b : a));
const accuracyOf = (model: string, recipe: string) => results.find((r) => r.model === model && r.recipe === recipe)?.testAccuracy;
const checks: string[] = [];
checks.push(`- Best row: ${best.model} ${best.recipe}, ${best.testAccuracy.toFixed(4)} (target >= 0.93: ${best.testAccuracy >= 0.93 ? 'met' : 'missed'}).`);
if (best.testAccuracy < 0.93) {
  const rowMinutes = results.reduce((sum, r) => sum + r.seconds, 0) / results.length / 60;
  checks.push(
    `  Why: every row had ${epochs} epoch(s) (${rowMinutes.toFixed(0)} minutes per row on this adapter), and these students are still ` +
      'improving fast at that point (see each run\'s metrics.jsonl); small Fashion-MNIST networks reach 0.92-0.93 after tens of epochs. ' +
      `On a GPU, rerun with \`--epochs 30\`; the table is regenerated with the same command.`,
  );
}
for (const model of new Set(results.map((r) => r.model))) {
  const [ce, kd] = [accuracyOf(model, 'ce'), accuracyOf(model, 'kd')];
  if (ce !== undefined && kd !== undefined) {
    checks.push(`- ${model}: kd ${kd.toFixed(4)} vs ce ${ce.toFixed(4)} (${kd > ce ? `kd better by ${((kd - ce) * 100).toFixed(2)} points` : `kd not better (${((kd - ce) * 100).toFixed(2)} points)`}).`);
  }
}
const table = [
  '| student | recipe | loss terms | test accuracy | best val. accuracy | parameters | train time | img/s |',
  '|---|---|---|---|---|---|---|---|',
  ...results.map((r) =>
    `| ${r.model} | ${r.recipe} | \`${JSON.stringify(r.recipeTerms)}\` | ${r === best ? `**${r.testAccuracy.toFixed(4)}**` : r.testAccuracy.toFixed(4)} | ${r.bestValAccuracy.toFixed(4)} | ` +
      `${r.params.toLocaleString('en')}${r.trainingOnlyParams ? ` (+${r.trainingOnlyParams.toLocaleString('en')} regressor, training only)` : ''} | ${duration(r.seconds)} | ${r.imagesPerSecond.toFixed(0)} |`,
  ),
];
const doc = [
  '# Results: distilling Fashion-MNIST students',
  '',
  `Regenerate with \`npm run experiment -- --dataset fashion-mnist${epochs !== 1 ? ` --epochs ${epochs}` : ''}\` (this file; run folders under ${runsDir}/).`,
  '',
  `Adapter: ${dev.summary.description}${dev.summary.software ? ' (software)' : ''}. Generated ${new Date().toISOString().slice(0, 10)}, whole experiment ${duration((performance.now() - started) / 1000)} (rows done earlier count their own time).`,
  '',
  `Teacher: ${teacher.model} (${teacher.parameters.toLocaleString('en')} parameters, test accuracy ${teacher.testAccuracy?.toFixed(4) ?? 'unknown'}), outputs ${shown(teacher.outputs)}` +
    (hintTeacher ? `; the fitnet row uses ${shown(hintTeacher.outputs)} (same teacher, plus hint.${FITNET_HINT})` : '') + '.',
  '',
  ...(limits.length ? [`**Smoke run: only the first ${limits.join(', ')} images were used; these numbers mean nothing.**`, ''] : []),
  `Every row: ${epochs} epoch(s) over the ${trainSplit.length.toLocaleString('en')} training images, batch ${common.batch}, Adam lr ${common.lr} with ${common.warmupEpochs} epochs of warm-up then cosine decay, ` +
    `gradient-norm clip 10, seed ${common.seed}, no augmentation; the checkpoint with the best accuracy on the ${(60000 - trainSplit.length).toLocaleString('en')} held-out images is tested on the ${fullTest.length.toLocaleString('en')} test images.`,
  '',
  ...table,
  '',
  ...checks,
  '',
  '## Commands',
  '',
  'Each row is equivalent to:',
  '',
  '```sh',
  ...results.map((r) => r.command),
  '```',
  '',
].join('\n');
mkdirSync(dirname(outFile), { recursive: true });
writeFileSync(`${outFile}.tmp`, doc);
renameSync(`${outFile}.tmp`, outFile);
console.log(doc);
dev.destroy();
