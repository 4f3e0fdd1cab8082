// Shader library: compiles every `shaders/*.wgsl` file once, reflects each compute entry point's bindings with
// wgsl_reflect, and caches pipelines by (shader, entry point, override constants). Pipelines are never rebuilt.
import { readFileSync, readdirSync } from 'node:fs';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { WgslReflect, ResourceType } from 'wgsl_reflect/wgsl_reflect.module.js';
import type { MemberInfo, TypeInfo, VariableInfo } from 'wgsl_reflect';

export const DEFAULT_SHADER_DIR = fileURLToPath(new URL('../../shaders/', import.meta.url));

export type Scalar = 'f32' | 'i32' | 'u32';

/** One field of a uniform struct, flattened to 4-byte words (vectors and arrays of vectors included). */
export interface UniformField {
  name: string;
  offset: number; // bytes from the struct start
  words: number; // 4-byte words the field occupies
  scalar: Scalar;
}

export interface BindingInfo {
  name: string;
  group: number;
  binding: number;
  kind: 'uniform' | 'storage';
  access: 'read' | 'read_write';
  /** Element scalar of a storage array (`array<f32>` -> 'f32'); null when it is not a plain scalar array. */
  element: Scalar | null;
  /** For the uniform binding: its struct size and fields. */
  size: number;
  fields: UniformField[];
}

export interface EntryInfo {
  shader: string;
  file: string;
  entry: string;
  bindings: BindingInfo[];
  uniform: BindingInfo | null;
  overrides: string[];
}

export interface CachedPipeline {
  pipeline: GPUComputePipeline;
  layouts: GPUBindGroupLayout[]; // one per bind group index used
  info: EntryInfo;
}

export class ShaderCompileError extends Error {}

interface ShaderModuleEntry {
  name: string;
  file: string;
  module: GPUShaderModule;
  entries: Map<string, EntryInfo>;
}

function scalarOf(type: TypeInfo | null | undefined): Scalar | null {
  let t: TypeInfo | null | undefined = type;
  while (t) {
    if (t.name === 'f32' || t.name === 'i32' || t.name === 'u32') return t.name;
    t = (t as { format?: TypeInfo | null }).format ?? null;
  }
  return null;
}

function uniformFields(members: MemberInfo[], file: string): UniformField[] {
  return members.map((m) => {
    const scalar = scalarOf(m.type);
    if (!scalar) throw new ShaderCompileError(`${file}: uniform field '${m.name}' must be built from f32/i32/u32`);
    return { name: m.name, offset: m.offset, words: m.size / 4, scalar };
  });
}

function reflectEntries(name: string, file: string, source: string): Map<string, EntryInfo> {
  let reflect: WgslReflect;
  try {
    reflect = new WgslReflect(source);
  } catch (err) {
    throw new ShaderCompileError(`${file}: wgsl_reflect could not parse the shader: ${(err as Error).message}`);
  }
  const entries = new Map<string, EntryInfo>();
  for (const fn of reflect.entry.compute) {
    const bindings = fn.resources.map((v: VariableInfo): BindingInfo => {
      if (v.resourceType !== ResourceType.Uniform && v.resourceType !== ResourceType.Storage) {
        throw new ShaderCompileError(`${file}: entry '${fn.name}' binding '${v.name}': only buffers are supported`);
      }
      const isUniform = v.resourceType === ResourceType.Uniform;
      return {
        name: v.name,
        group: v.group,
        binding: v.binding,
        kind: isUniform ? 'uniform' : 'storage',
        access: v.access === 'read_write' ? 'read_write' : 'read',
        element: isUniform ? null : scalarOf(v.type.isArray ? (v.type as { format?: TypeInfo }).format : null),
        size: isUniform ? v.size : 0,
        fields: isUniform ? uniformFields(v.members ?? [], file) : [],
      };
    });
    bindings.sort((a, b) => a.group - b.group || a.binding - b.binding);
    const uniforms = bindings.filter((b) => b.kind === 'uniform');
    if (uniforms.length > 1) throw new ShaderCompileError(`${file}: entry '${fn.name}' uses more than one uniform`);
    entries.set(fn.name, {
      shader: name,
      file,
      entry: fn.name,
      bindings,
      uniform: uniforms[0] ?? null,
      // Module-wide: wgsl_reflect lists only overrides the entry body names, not those used in helpers it calls.
      overrides: reflect.overrides.map((o) => o.name),
    });
  }
  return entries;
}

/** GPU features named by a WGSL source's `enable` directives (`f16` is the feature 'shader-f16'). */
function requiredFeatures(source: string): string[] {
  const features: string[] = [];
  for (const m of source.matchAll(/^\s*enable\s+([^;]+);/gm)) {
    for (const ext of m[1].split(',').map((e) => e.trim()).filter(Boolean)) {
      features.push(ext === 'f16' ? 'shader-f16' : ext.replace(/_/g, '-'));
    }
  }
  return features;
}

export class ShaderLibrary {
  private modules = new Map<string, ShaderModuleEntry>();
  /** Shaders of the directory that failed to compile: using one throws its error (file:line), others still work. */
  private broken = new Map<string, Error>();
  /** Files skipped because the device lacks a feature their `enable` directives name (name -> features). */
  readonly skipped = new Map<string, string[]>();
  private pipelines = new Map<string, CachedPipeline>();
  pipelinesCreated = 0;

  constructor(private device: GPUDevice) {}

  /**
   * Compiles every .wgsl file in `dir`. A file that fails is remembered, not thrown: the first dispatch that
   * uses it throws its `file:line:col: message` error, and ops of other files keep working.
   */
  async loadDirectory(dir: string = DEFAULT_SHADER_DIR): Promise<void> {
    const files = readdirSync(dir).filter((f) => f.endsWith('.wgsl')).sort();
    const results = await Promise.allSettled(files.map((f) => this.loadFile(join(dir, f))));
    results.forEach((r, i) => {
      if (r.status === 'rejected') this.broken.set(basename(files[i], '.wgsl'), r.reason as Error);
    });
  }

  /** Compile errors of the shader directory, by shader name. */
  errors(): Map<string, Error> {
    return new Map(this.broken);
  }

  /** Compiles one WGSL file; the shader's name is the file name without `.wgsl`. */
  async loadFile(file: string, name = basename(file, '.wgsl')): Promise<void> {
    await this.loadSource(name, readFileSync(file, 'utf8'), file);
  }

  async loadSource(name: string, source: string, file = `${name}.wgsl`): Promise<void> {
    const missing = requiredFeatures(source).filter((f) => !this.device.features.has(f as GPUFeatureName));
    if (missing.length > 0) {
      this.skipped.set(name, missing); // ops check has(name) and use kernels that need no optional feature
      return;
    }
    // The error scope keeps a compile failure out of the device's uncaptured errors: it is reported here instead.
    this.device.pushErrorScope('validation');
    const module = this.device.createShaderModule({ label: name, code: source });
    const info = await module.getCompilationInfo();
    await this.device.popErrorScope();
    const errors = info.messages.filter((m) => m.type === 'error');
    if (errors.length > 0) {
      const lines = errors.map((m) => `${file}:${m.lineNum}:${m.linePos}: error: ${m.message}`);
      throw new ShaderCompileError(`WGSL compile failed\n${lines.join('\n')}`);
    }
    this.modules.set(name, { name, file, module, entries: reflectEntries(name, file, source) });
    this.broken.delete(name);
  }

  has(name: string): boolean {
    return this.modules.has(name);
  }

  entryInfo(shader: string, entry: string): EntryInfo {
    const mod = this.modules.get(shader);
    const failed = this.broken.get(shader);
    if (!mod && failed) throw failed;
    if (!mod) {
      throw new Error(`unknown shader '${shader}' (loaded: ${[...this.modules.keys()].join(', ') || 'none'})`);
    }
    const info = mod.entries.get(entry);
    if (!info) {
      throw new Error(`${mod.file}: no compute entry point '${entry}' (has: ${[...mod.entries.keys()].join(', ')})`);
    }
    return info;
  }

  pipeline(shader: string, entry: string, constants?: Record<string, number>): CachedPipeline {
    const key = constants ? `${shader}:${entry}:${JSON.stringify(constants, Object.keys(constants).sort())}` : `${shader}:${entry}`;
    const hit = this.pipelines.get(key);
    if (hit) return hit;
    const info = this.entryInfo(shader, entry);
    for (const k of Object.keys(constants ?? {})) {
      if (!info.overrides.includes(k)) {
        throw new Error(`${info.file}:${entry}: no override constant '${k}' (has: ${info.overrides.join(', ') || 'none'})`);
      }
    }
    const pipeline = this.device.createComputePipeline({
      label: key,
      layout: 'auto',
      compute: { module: this.modules.get(shader)!.module, entryPoint: entry, constants },
    });
    const groups = [...new Set(info.bindings.map((b) => b.group))].sort();
    const layouts: GPUBindGroupLayout[] = [];
    for (const g of groups) layouts[g] = pipeline.getBindGroupLayout(g);
    const cached = { pipeline, layouts, info };
    this.pipelines.set(key, cached);
    this.pipelinesCreated++;
    return cached;
  }
}
