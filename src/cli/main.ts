// The `wgkd` command line. Each command is one entry: a one-line summary, its usage, and what it runs.
import { readFileSync } from 'node:fs';
import { Device, type DeviceOptions } from '../gpu/device.js';
import { describeAdapter } from './info.js';
import { checkChoice, kebab, parseFlags, schemaOf, type FlagType } from './args.js';
import { DEFAULT_CONFIG, checkTrainOptions, readConfigFile, train, type TrainConfig } from '../train/trainer.js';
import { TrainingInterrupted } from '../train/interrupt.js';
import { evaluate } from '../train/evaluate.js';
import { modelFromCheckpoint } from '../train/checkpoint.js';
import { models } from '../models/registry.js';
import { architectureOf, buildArchitecture } from '../models/architecture.js';
import { formatPlan, planStudent } from '../models/json-student.js';
import { datasetInfo, openDataset, type SplitRole } from '../data/open.js';
import { exportTeacherOutputs } from '../teacher/export.js';
import { Progress } from '../train/progress.js';
import { writeFileAtomicSync } from '../io/atomic.js';
import { profileCommands } from './profile.js';
import { RECIPE_USAGE, recipeCommand } from '../kd/explain.js';

/** The package's version, from the package.json next to src/ (or dist/). */
function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

interface Command {
  summary: string;
  usage: string;
  run: (args: string[]) => Promise<void>;
}

const DEVICE_FLAGS: Record<string, FlagType> = { backend: 'string', adapter: 'string', power: 'string' };

function deviceOptions(flags: Record<string, unknown>): DeviceOptions {
  return {
    backend: checkChoice('wgkd', '--backend', flags.backend, ['vulkan', 'metal', 'd3d12', 'd3d11', 'opengl', 'opengles', 'null']),
    adapter: flags.adapter as string | undefined,
    powerPreference: checkChoice('wgkd', '--power', flags.power, ['low-power', 'high-performance']),
  };
}

const SPLITS: SplitRole[] = ['test', 'validation', 'train'];

/** Loads a checkpoint's model (and the dataset split it should run on). */
function dataOptions(flags: Record<string, unknown>, config: Record<string, unknown>) {
  return {
    data: (flags.data as string | undefined) ?? (config.data as string | undefined),
    size: (flags.size as number | undefined) ?? (config.size as number | undefined),
    validationSize: config.validationSize as number | undefined,
    cacheDir: config.cacheDir as string | undefined,
  };
}

function table(rows: (string | number)[][]): string {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => String(r[c]).length)));
  return rows.map((r) => r.map((v, c) => (typeof v === 'number' ? String(v).padStart(widths[c]) : String(v).padEnd(widths[c]))).join('  ')).join('\n');
}

const TRAIN_SCHEMA = schemaOf(DEFAULT_CONFIG as unknown as Record<string, unknown>, { config: 'string', data: 'string', teacher: 'string', cacheDir: 'string', ...DEVICE_FLAGS });

const commands: Record<string, Command> = {
  train: {
    summary: 'train (distil) a student: dataset, model, teacher outputs, KD recipe; checkpoints + metrics',
    usage:
      'wgkd train [--config run.json] [--dataset fashion-mnist|food11] [--data DIR] [--model dwpw|FILE.json|./student.ts]\n' +
      "           [--teacher FILE] [--recipe ce|kd|kd+rkd|fitnet|dkd|dm|'{\"ce\":0.5,\"kd\":{\"weight\":0.5,\"T\":4}}'] [--epochs N] [--batch 64]\n" +
      '           [--lr 3e-4] [--optimizer adam|adamw|sgd] [--schedule constant|cosine|step] [--clip 10] [--seed 0]\n' +
      '           [--out runs/NAME] [--resume] [--overwrite] [--checkpoint-every 300] [--max-params 60000]\n' +
      '           [--augment auto|none|flip|flip+crop] ... (every config key; Ctrl-C saves and exits 130)',
    run: async (args) => {
      const flags = parseFlags(args, TRAIN_SCHEMA, 'train');
      const { config: _c, backend: _b, adapter: _a, power: _p, ...overrides } = flags;
      checkTrainOptions(overrides, 'train', kebab); // the same schema as a config file: allowed values, ranges
      const fromFile = flags.config ? readConfigFile(String(flags.config)) : {};
      const dev = await Device.open(deviceOptions(flags));
      const result = await train({ ...fromFile, ...(overrides as Partial<TrainConfig>) }, { device: dev });
      console.log(`best validation accuracy ${result.bestAccuracy.toFixed(4)} (epoch ${result.bestEpoch}); ${result.imagesPerSecond.toFixed(0)} img/s; run folder ${result.runDir}`);
      dev.destroy();
    },
  },
  eval: {
    summary: 'evaluate a checkpoint: accuracy, per-class accuracy, confusion matrix',
    usage: 'wgkd eval --checkpoint runs/NAME/best.safetensors [--split test|validation|train] [--data DIR] [--size N]',
    run: async (args) => {
      const flags = parseFlags(args, { checkpoint: 'string', split: 'string', data: 'string', size: 'number', ...DEVICE_FLAGS }, 'eval');
      if (!flags.checkpoint) throw new Error('eval: --checkpoint FILE is required');
      const split = checkChoice('eval', '--split', flags.split, SPLITS) ?? 'test';
      const dev = await Device.open(deviceOptions(flags));
      const { ckpt, model } = await modelFromCheckpoint(String(flags.checkpoint));
      const ds = await openDataset(ckpt.state.dataset, split, dataOptions(flags, ckpt.state.config));
      const progress = new Progress(`eval ${split}`, ds.length);
      const r = await evaluate(model, ds, { onProgress: (d) => progress.update(d) });
      progress.done(`accuracy ${r.accuracy?.toFixed(4)}`);
      console.log(`${ckpt.state.model} on ${ds.name}/${ds.split} (${ds.length} images): accuracy ${r.accuracy?.toFixed(4)}`);
      console.log(table([['class', 'name', 'accuracy'], ...r.perClass.map((a, c) => [c, ds.classNames[c] ?? '', a.toFixed(4)])]));
      console.log('\nconfusion matrix (rows: true class, columns: predicted)');
      console.log(table([['', ...r.confusion.map((_, c) => c)], ...r.confusion.map((row, c) => [c, ...row])]));
      dev.destroy();
    },
  },
  predict: {
    summary: 'write a Kaggle submission CSV (Id,Category) for the evaluation (or another) split',
    usage: 'wgkd predict --checkpoint FILE [--split evaluation] [--data DIR] [--out submission.csv]',
    run: async (args) => {
      const flags = parseFlags(args, { checkpoint: 'string', split: 'string', data: 'string', size: 'number', out: 'string', ...DEVICE_FLAGS }, 'predict');
      if (!flags.checkpoint) throw new Error('predict: --checkpoint FILE is required');
      const split = checkChoice('predict', '--split', flags.split, ['evaluation', ...SPLITS]) ?? 'evaluation';
      const dev = await Device.open(deviceOptions(flags));
      const { ckpt, model } = await modelFromCheckpoint(String(flags.checkpoint));
      const ds = await openDataset(ckpt.state.dataset, split, dataOptions(flags, ckpt.state.config));
      const r = await evaluate(model, ds);
      // Ids: the zero-padded index of each file in the sorted file list (the datasets keep that order).
      const lines = ['Id,Category', ...Array.from(r.predictions, (p, i) => `${String(i).padStart(4, '0')},${p}`)];
      const out = String(flags.out ?? 'submission.csv');
      writeFileAtomicSync(out, Buffer.from(`${lines.join('\n')}\n`));
      console.log(`wrote ${ds.length} predictions to ${out}`);
      dev.destroy();
    },
  },
  params: {
    summary: 'list the models and their parameter counts; --model FILE.json: a layer-by-layer table against the budget',
    usage:
      'wgkd params [--model NAME|FILE.json|./student.ts] [--dataset fashion-mnist|food11] [--in-channels 3] [--classes 11]\n' +
      '            [--size 224] [--max-params 60000]   (--dataset sets the input shape: fashion-mnist 1x28x28, 10 classes)',
    run: async (args) => {
      const flags = parseFlags(args, { model: 'string', dataset: 'string', inChannels: 'number', classes: 'number', size: 'number', maxParams: 'number', ...DEVICE_FLAGS }, 'params');
      const data = flags.dataset ? datasetInfo(String(flags.dataset)) : null;
      const spec = {
        inChannels: Number(flags.inChannels ?? data?.channels ?? 3),
        numClasses: Number(flags.classes ?? data?.classNames.length ?? 11),
        inputSize: Number(flags.size ?? (flags.dataset === 'fashion-mnist' ? 28 : 224)),
      };
      const budget = Number(flags.maxParams ?? DEFAULT_CONFIG.maxParams);
      const shape = `input ${spec.inChannels}x${spec.inputSize}x${spec.inputSize}, ${spec.numClasses} classes`;
      const counting = '(counted like torchsummary: weights, biases, BN affine; not running stats)';
      const arch = flags.model ? architectureOf(String(flags.model)) : null;
      if (arch?.kind === 'json') {
        // Planned without a GPU: shapes and counts come from the layer list (the built model has the same count).
        console.log(`${arch.file}: ${shape} ${counting}\n`);
        console.log(formatPlan(planStudent(arch.spec, spec, arch.file), spec, budget));
        return;
      }
      const dev = await Device.open(deviceOptions(flags));
      if (arch?.kind === 'module') {
        const m = await buildArchitecture(arch, spec);
        const n = m.numParameters();
        console.log(`${arch.file}: ${shape}: ${n.toLocaleString('en')} parameters, ${n <= budget ? 'within' : 'OVER'} the budget of ${budget.toLocaleString('en')}`);
        m.dispose();
        dev.destroy();
        return;
      }
      const names = arch ? [arch.name] : Object.keys(models);
      const rows: (string | number)[][] = [['model', 'role', 'parameters', 'description']];
      for (const name of names) {
        const m = await buildArchitecture({ kind: 'builtin', name }, spec);
        rows.push([name, models[name].role, m.numParameters().toLocaleString('en'), models[name].description]);
        m.dispose();
      }
      console.log(`${shape} ${counting}\n`);
      console.log(table(rows));
      dev.destroy();
    },
  },
  export: {
    summary: 'export a checkpoint as ONNX: pixels / 255 in (NCHW, normalised inside the graph), logits out',
    usage: 'wgkd export --checkpoint runs/NAME/best.safetensors --onnx OUT.onnx',
    run: async (args) => {
      const flags = parseFlags(args, { checkpoint: 'string', onnx: 'string', ...DEVICE_FLAGS }, 'export');
      if (!flags.checkpoint) throw new Error('export: --checkpoint FILE is required');
      if (!flags.onnx) throw new Error('export: --onnx OUT.onnx is required (the format to write)');
      // Loaded here, not at the top of the file: only this command needs the protobuf code.
      const { exportOnnx } = await import('../models/onnx-graph.js');
      const dev = await Device.open(deviceOptions(flags));
      const { ckpt, model } = await modelFromCheckpoint(String(flags.checkpoint));
      const { inChannels, inputSize } = ckpt.state.modelSpec;
      const info = datasetInfo(ckpt.state.dataset);
      const graph = await exportOnnx(model, String(flags.onnx), {
        channels: inChannels,
        height: inputSize,
        width: inputSize,
        mean: info.mean,
        std: info.std,
        classNames: info.classNames,
        modelName: ckpt.state.model,
        dataset: ckpt.state.dataset,
        producerVersion: version(),
      });
      console.log(`wrote ${String(flags.onnx)}: ${ckpt.state.model}, input pixels [N, ${inChannels}, ${inputSize}, ${inputSize}], ${graph.nodes.length} nodes, ${model.numParameters().toLocaleString('en')} parameters`);
      dev.destroy();
    },
  },
  teacher: {
    summary: 'teacher export: run a teacher (wgkd checkpoint or converted torchvision weights) over a dataset and write its outputs',
    usage:
      'wgkd teacher export --checkpoint FILE --out FILE [--split train] [--views identity,hflip] [--hints layer2] [--f16] [--data DIR]\n' +
      '       wgkd teacher export --weights FILE.safetensors --model resnet18 --dataset food11|fashion-mnist [--classes K] --out FILE\n' +
      '                           [--data DIR] [--size 224] [--split train] [--views identity,hflip] [--hints layer2,layer3] [--f16]\n' +
      '                           [--teacher-accuracy 0.9]   (--weights: a torchvision state dict converted by\n' +
      '                           tools/teacher/convert_checkpoint.py; --size defaults to 224 for a 7x7-stem ResNet on food11)',
    run: async (args) => {
      const [sub, ...rest] = args;
      if (sub !== 'export') throw new Error(`teacher: unknown subcommand '${sub ?? ''}' (export)`);
      const flags = parseFlags(
        rest,
        {
          checkpoint: 'string',
          weights: 'string',
          model: 'string',
          dataset: 'string',
          classes: 'number',
          teacherAccuracy: 'number',
          out: 'string',
          split: 'string',
          views: 'string',
          hints: 'string',
          f16: 'boolean',
          data: 'string',
          size: 'number',
          batch: 'number',
          ...DEVICE_FLAGS,
        },
        'teacher export',
      );
      if (!flags.out) throw new Error('teacher export: --out FILE is required');
      if (Boolean(flags.checkpoint) === Boolean(flags.weights)) {
        throw new Error('teacher export: give one of --checkpoint FILE (a wgkd checkpoint) or --weights FILE (a converted torchvision state dict)');
      }
      if (flags.weights && !flags.dataset) throw new Error('teacher export: --weights needs --dataset fashion-mnist|food11');
      const split = checkChoice('teacher export', '--split', flags.split, SPLITS) ?? 'train';
      const dev = await Device.open(deviceOptions(flags));
      let teacher: Awaited<ReturnType<typeof buildArchitecture>>;
      let ds: Awaited<ReturnType<typeof openDataset>>;
      let teacherName: string;
      let teacherAccuracy: number | null;
      if (flags.checkpoint) {
        for (const f of ['model', 'dataset', 'classes'] as const) {
          if (flags[f] !== undefined) throw new Error(`teacher export: --${f} goes with --weights (a wgkd checkpoint records its own)`);
        }
        const { ckpt, model } = await modelFromCheckpoint(String(flags.checkpoint));
        teacher = model;
        ds = await openDataset(ckpt.state.dataset, split, dataOptions(flags, ckpt.state.config));
        teacherName = `${ckpt.state.model} ${String(flags.checkpoint)}`;
        teacherAccuracy = (flags.teacherAccuracy as number | undefined) ?? ckpt.state.valAccuracy;
      } else {
        // Loaded here, not at the top of the file: only this path needs it.
        const { loadTorchWeights, torchResNetShape } = await import('../teacher/torch.js');
        const weights = String(flags.weights);
        const modelName = String(flags.model ?? 'resnet18');
        const datasetName = String(flags.dataset);
        // A torchvision ResNet's file says its stem and class count; other models rely on the flags.
        const resnet = modelName.startsWith('resnet') ? torchResNetShape(weights) : null;
        const size = (flags.size as number | undefined) ?? (datasetName === 'food11' && resnet?.stemKernel === 7 ? 224 : undefined);
        ds = await openDataset(datasetName, split, dataOptions({ ...flags, size }, {}));
        const numClasses = (flags.classes as number | undefined) ?? resnet?.numClasses ?? ds.numClasses;
        if (resnet && resnet.numClasses !== numClasses) {
          throw new Error(`teacher export: --classes ${numClasses} but ${weights} has fc.weight for ${resnet.numClasses} classes`);
        }
        if (numClasses !== ds.numClasses) {
          throw new Error(`teacher export: the teacher has ${numClasses} classes but ${ds.name} has ${ds.numClasses}; teacher outputs need K = ${ds.numClasses}`);
        }
        if (modelName === 'resnet18' && resnet && (resnet.stemKernel === 7) !== ds.height >= 112) {
          throw new Error(
            `teacher export: ${weights} has a ${resnet.stemKernel}x${resnet.stemKernel} stem but wgkd's resnet18 uses ` +
              `${ds.height >= 112 ? "torchvision's 7x7 stem" : 'the small 3x3 stem'} at ${ds.height} px inputs ` +
              `(7x7 from 112 px up${datasetName === 'food11' ? '; set --size' : ''}); tools/teacher/export_outputs.py runs any combination`,
          );
        }
        teacher = await buildArchitecture(architectureOf(modelName), { inChannels: ds.channels, numClasses, inputSize: ds.height });
        loadTorchWeights(teacher, weights);
        teacher.eval();
        teacherName = `${modelName} ${weights}`;
        teacherAccuracy = (flags.teacherAccuracy as number | undefined) ?? null;
      }
      // Commas inside a view's parentheses (crop(x,y,w,h)) do not separate views.
      const views = flags.views ? String(flags.views).split(/,(?![^(]*\))/) : ['identity'];
      const progress = new Progress(`teacher export ${split}`, views.length * ds.length);
      await exportTeacherOutputs(teacher, ds, {
        path: String(flags.out),
        teacherName,
        teacherAccuracy,
        views,
        hints: flags.hints ? String(flags.hints).split(',') : [],
        dtype: flags.f16 ? 'F16' : 'F32',
        batchSize: flags.batch as number | undefined,
        onProgress: (d) => progress.update(d),
      });
      progress.done(`wrote ${String(flags.out)}`);
      dev.destroy();
    },
  },
  ...profileCommands(TRAIN_SCHEMA, deviceOptions),
  recipe: {
    summary: 'recipe explain [SPEC]: the expanded recipe, each term\'s formula and the teacher tensors it needs (every preset without SPEC)',
    usage: RECIPE_USAGE,
    run: async (args) => console.log(recipeCommand(args)),
  },
  info: {
    summary: 'show the WebGPU adapter, backend, features and device limits',
    usage: 'wgkd info [--backend vulkan|metal|d3d12] [--adapter NAME] [--power low-power|high-performance]',
    run: async (args) => {
      const dev = await Device.open(deviceOptions(parseFlags(args, DEVICE_FLAGS, 'info')));
      console.log(describeAdapter(dev));
      dev.destroy();
    },
  },
};

function help(): string {
  const width = Math.max(...Object.keys(commands).map((c) => c.length));
  return [
    'wgkd: train tiny image classifiers by knowledge distillation on WebGPU',
    '',
    `usage: wgkd <command> [options]   (wgkd <command> --help for its options; wgkd --version: ${version()})`,
    '',
    'commands:',
    ...Object.entries(commands).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`),
    '',
    'GPU options (every command): --backend vulkan|metal|d3d12  --adapter NAME  --power low-power|high-performance',
  ].join('\n');
}

async function main(argv: string[]): Promise<void> {
  const [name, ...args] = argv;
  if (name === '--version' || name === '-v' || name === 'version') {
    console.log(version());
    return;
  }
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    console.log(help());
    return;
  }
  const command = commands[name];
  if (!command) {
    console.error(`wgkd: unknown command '${name}'\n\n${help()}`);
    process.exitCode = 2;
    return;
  }
  if (args.includes('--help') || args.includes('-h')) {
    console.log(`${command.summary}\n\nusage: ${command.usage}`);
    return;
  }
  await command.run(args);
}

main(process.argv.slice(2)).catch((err: unknown) => {
  console.error(`wgkd: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = err instanceof TrainingInterrupted ? err.exitCode : 1; // 130 after Ctrl-C, as shells expect
});
