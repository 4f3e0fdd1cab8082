// The package as a user gets it: `npm pack`, installed into an empty project (no tsx, no TypeScript sources), the
// README's library example under plain node, a TypeScript consumer type-checked against the shipped .d.ts, and the
// installed `wgkd` command.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';

const REPO = resolve(import.meta.dirname, '..');
const PKG = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string; scripts: Record<string, string> };
let work: string;
let project: string;
let packed: { filename: string; size: number; files: { path: string; size: number }[] };

function npm(args: string[], cwd: string): string {
  return execFileSync('npm', args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'wgkd-package-'));
  // --ignore-scripts: vitest's globalSetup has just built dist/ (the `prepare` script npm pack would run), and a
  // second build here would rewrite dist/ under the feet of test files running in parallel.
  packed = JSON.parse(npm(['pack', '--ignore-scripts', '--json', '--pack-destination', work], REPO))[0];
  project = join(work, 'consumer');
  mkdirSync(project);
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
  // The dependencies come from npm's cache after the repository's own `npm ci` (the network only for what is missing).
  npm(['install', '--prefer-offline', '--no-audit', '--no-fund', join(work, packed.filename)], project);
}, 120_000);

describe('the packed tarball', () => {
  it('holds the compiled library, shaders, the teacher weights, README and LICENSE; no sources, tests or tools', () => {
    const paths = packed.files.map((f) => f.path);
    for (const p of ['package.json', 'README.md', 'LICENSE', 'bin/wgkd.js', 'dist/index.js', 'dist/index.d.ts', 'dist/index.js.map', 'dist/cli/main.js', 'shaders/conv.wgsl', 'data/fashion-mnist/teacher-resnet-small.safetensors']) {
      expect(paths).toContain(p);
    }
    const tops = new Set(paths.map((p) => p.split('/')[0]));
    expect([...tops].sort()).toEqual(['LICENSE', 'README.md', 'bin', 'data', 'dist', 'package.json', 'shaders']);
    expect(paths.filter((p) => p.endsWith('.ts') && !p.endsWith('.d.ts'))).toEqual([]);
    expect(packed.size).toBeLessThan(4_000_000); // bytes, gzipped (README states the size)
    // npm pack and a git install run `prepare`, which builds dist/.
    expect(PKG.scripts.prepare).toBe('npm run build');
    expect(PKG.scripts.build).toMatch(/rmSync\('dist'.* && tsc -p tsconfig.build.json$/); // a clean build: no stale files ship
  });

  it('installs with no tsx, and the README library example runs under plain node', () => {
    expect(spawnSync(process.execPath, ['-e', "import.meta.resolve('tsx')"], { cwd: project }).status).not.toBe(0);
    const readme = readFileSync(join(REPO, 'README.md'), 'utf8');
    const section = readme.slice(readme.indexOf('## As a library'));
    const example = /```js\n([\s\S]*?)```/.exec(section)?.[1];
    expect(example, 'README: a ```js block in "## As a library"').toBeTruthy();
    writeFileSync(join(project, 'example.mjs'), `${example}\nconsole.log(JSON.stringify({ loss }));\n`);
    const run = spawnSync(process.execPath, ['example.mjs'], { cwd: project, encoding: 'utf8' });
    expect(run.stderr).not.toMatch(/Error/);
    expect(run.status).toBe(0);
    const { loss } = JSON.parse(run.stdout.trim().split('\n').pop()!) as { loss: number };
    expect(loss).toBeGreaterThan(0);
    expect(Number.isFinite(loss)).toBe(true);
  });

  it('a TypeScript consumer type-checks against the shipped .d.ts (strict, no skipLibCheck)', () => {
    writeFileSync(
      join(project, 'consumer.ts'),
      [
        "import { Device, JsonStudent, planStudent, train, type Classifier, type StudentSpec, type TrainConfig } from 'wgkd';",
        "const spec: StudentSpec = { layers: [{ conv: { out: 8, k: 3 } }, { gap: {} }, { linear: {} }] };",
        'const total: number = planStudent(spec, { inChannels: 1, numClasses: 10, inputSize: 28 }).reduce((n, l) => n + l.parameters, 0);',
        'export async function build(): Promise<Classifier> {',
        '  const dev: Device = await Device.open();',
        '  void dev;',
        '  return new JsonStudent(spec, { inChannels: 1, numClasses: 10, inputSize: 28 });',
        '}',
        "export const config: Partial<TrainConfig> = { model: 'student.json', epochs: total > 0 ? 1 : 2 };",
        'export const run = train;',
        // A deliberate type error proves the check is real: the error must be reported.
        'export const wrong: number = new JsonStudent(spec, { inChannels: 1, numClasses: 10, inputSize: 28 }).mapNames;',
      ].join('\n'),
    );
    writeFileSync(
      join(project, 'tsconfig.json'),
      JSON.stringify({ compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, noEmit: true, types: ['node'] }, files: ['consumer.ts'] }),
    );
    const tsc = spawnSync(process.execPath, [join(REPO, 'node_modules/typescript/bin/tsc'), '-p', '.'], { cwd: project, encoding: 'utf8' });
    const errors = tsc.stdout.trim().split('\n');
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(/^consumer\.ts\(11,14\): error TS2322: Type 'string\[\]' is not assignable to type 'number'/);
  });

  it('the installed wgkd command answers --help and --version', () => {
    const bin = join(project, 'node_modules/.bin/wgkd');
    const help = spawnSync(bin, ['--help'], { encoding: 'utf8' });
    expect(help.status).toBe(0);
    expect(help.stdout).toMatch(/\n {2}export +export a checkpoint as ONNX/);
    const version = spawnSync(bin, ['--version'], { encoding: 'utf8' });
    expect(version.stdout.trim()).toBe(PKG.version);
  });
});
