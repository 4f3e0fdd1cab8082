// The `wgkd` command line. Each command is one entry: name, one-line description, and what it runs.
import { Device, type DeviceOptions } from '../gpu/device.js';
import { describeAdapter } from './info.js';

interface Command {
  summary: string;
  usage: string;
  run: (args: string[]) => Promise<void>;
}

/** Options every GPU command accepts: --backend, --adapter, --power. */
export function deviceOptions(args: string[]): DeviceOptions {
  return {
    backend: flag(args, '--backend'),
    adapter: flag(args, '--adapter'),
    powerPreference: flag(args, '--power') as GPUPowerPreference | undefined,
  };
}

export function flag(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  if (i < 0) return undefined;
  const value = args[i + 1];
  if (value === undefined || value.startsWith('--')) throw new Error(`${name} needs a value`);
  return value;
}

const commands: Record<string, Command> = {
  info: {
    summary: 'show the WebGPU adapter, backend, features and device limits',
    usage: 'wgkd info [--backend vulkan|metal|d3d12] [--adapter NAME] [--power low-power|high-performance]',
    run: async (args) => {
      const dev = await Device.open(deviceOptions(args));
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
    'usage: wgkd <command> [options]   (wgkd <command> --help for its options)',
    '',
    'commands:',
    ...Object.entries(commands).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`),
  ].join('\n');
}

async function main(argv: string[]): Promise<void> {
  const [name, ...args] = argv;
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
  process.exitCode = 1;
});
