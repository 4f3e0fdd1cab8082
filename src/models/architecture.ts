// What `--model` names: a built-in model ('dwpw'), a JSON student (`student.json`), or a module that exports a
// factory (`./student.ts`). The Architecture is what a checkpoint records, so the model can be rebuilt from it.
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { manualSeed } from '../nn/module.js';
import type { Classifier } from './classifier.js';
import { JsonStudent, type StudentSpec } from './json-student.js';
import { createModel, models, type ModelSpec } from './registry.js';

export type Architecture =
  | { kind: 'builtin'; name: string }
  | { kind: 'json'; file: string; spec: StudentSpec }
  | { kind: 'module'; file: string };

/** A module student: `export default (spec) => new MyStudent(...)` (or `export function createStudent(spec)`). */
export type StudentFactory = (spec: ModelSpec) => Classifier | Promise<Classifier>;

const MODULE_EXTENSIONS = /\.(ts|mts|js|mjs)$/;

/** Reads what a `--model` value names: a built-in model, a JSON file (read and parsed now) or a module path. */
export function architectureOf(ref: string): Architecture {
  if (ref.endsWith('.json')) {
    let text: string;
    try {
      text = readFileSync(ref, 'utf8');
    } catch (err) {
      throw new Error(`model ${ref}: cannot read the file (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
    }
    let spec: StudentSpec;
    try {
      spec = JSON.parse(text) as StudentSpec;
    } catch (err) {
      throw new Error(`model ${ref}: not valid JSON (${(err as Error).message})`);
    }
    return { kind: 'json', file: ref, spec };
  }
  if (MODULE_EXTENSIONS.test(ref)) return { kind: 'module', file: resolve(ref) };
  if (!models[ref]) {
    throw new Error(`unknown model '${ref}' (built-in: ${Object.keys(models).join(', ')}; or a student FILE.json, or a module ./student.ts)`);
  }
  return { kind: 'builtin', name: ref };
}

/** Students count against the parameter budget; built-in teachers do not. */
export function architectureRole(arch: Architecture): 'student' | 'teacher' {
  return arch.kind === 'builtin' ? models[arch.name].role : 'student';
}

/** Builds the model with seeded initialisation (the same spec and seed give the same weights). */
export async function buildArchitecture(arch: Architecture, spec: ModelSpec): Promise<Classifier> {
  if (arch.kind === 'builtin') return createModel(arch.name, spec);
  if (arch.kind === 'json') {
    manualSeed(spec.seed ?? 0);
    return new JsonStudent(arch.spec, spec, arch.file);
  }
  const factory = await loadFactory(arch.file);
  manualSeed(spec.seed ?? 0);
  const model = await factory(spec);
  if (!model || typeof (model as Classifier).forwardFeatures !== 'function') {
    throw new Error(`model ${arch.file}: the factory must return a Classifier (with forwardFeatures), got ${String(model)}`);
  }
  return model;
}

async function loadFactory(file: string): Promise<StudentFactory> {
  const url = pathToFileURL(file).href;
  let mod: Record<string, unknown>;
  try {
    mod = (await import(url)) as Record<string, unknown>;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ERR_UNKNOWN_FILE_EXTENSION') throw new Error(`model ${file}: cannot load the module (${(err as Error).message})`);
    // Plain Node cannot import .ts: register tsx's loader when it is installed (as it is next to most TS projects).
    // Registered for the whole process, so the student's own `import ... from 'wgkd'` is this very module graph.
    try {
      const { register } = (await import('tsx/esm/api')) as { register: () => unknown };
      register();
    } catch {
      throw new Error(`model ${file}: importing a TypeScript student needs tsx (npm i -D tsx), or compile it to .js`);
    }
    // A new URL: Node remembers the failed import of the first one.
    mod = (await import(`${url}?with-tsx`)) as Record<string, unknown>;
  }
  const factory = mod.default ?? mod.createStudent;
  if (typeof factory !== 'function') {
    throw new Error(`model ${file}: export a factory as \`export default (spec) => classifier\` or \`export function createStudent(spec)\``);
  }
  return factory as StudentFactory;
}
