// Module: a tree of named parameters, buffers and child modules, with PyTorch's naming (`features.0.weight`),
// train()/eval(), and state dicts with shape checks.
import { Tensor, keep, type Shape } from '../tensor.js';
import { rng } from '../random.js';

export interface StateEntry {
  shape: number[];
  data: Float32Array;
}
export type StateDict = Record<string, StateEntry>;

// Parameter initialisation draws from one seeded stream, so the same construction order gives the same weights.
let initStream = rng(0);
/** Seeds parameter initialisation (torch.manual_seed for the weights of modules built afterwards). */
export function manualSeed(seed: number): void {
  initStream = rng(seed);
}
/** U(-bound, bound) like torch.nn.init.uniform_, from the init stream. */
export function uniformInit(shape: Shape, bound: number): Tensor {
  const seed = Math.floor(initStream() * 2 ** 32);
  return keep(Tensor.rand(shape, { seed, low: -bound, high: bound, requiresGrad: true }));
}

export abstract class Module {
  training = true;
  private readonly ownParams = new Map<string, Tensor>();
  private readonly ownBuffers = new Map<string, Tensor>();
  private readonly children = new Map<string, Module>();

  abstract forward(x: Tensor): Tensor;

  protected param(name: string, t: Tensor): Tensor {
    t.requiresGrad = true;
    this.ownParams.set(name, keep(t));
    return t;
  }
  protected buffer(name: string, t: Tensor): Tensor {
    this.ownBuffers.set(name, keep(t));
    return t;
  }
  protected child<M extends Module>(name: string, m: M): M {
    this.children.set(name, m);
    return m;
  }

  /** Parameters with their dotted names, own first, then children in registration order (as PyTorch). */
  namedParameters(prefix = ''): [string, Tensor][] {
    const out: [string, Tensor][] = [...this.ownParams].map(([n, t]) => [prefix + n, t]);
    for (const [name, m] of this.children) out.push(...m.namedParameters(`${prefix}${name}.`));
    return out;
  }
  parameters(): Tensor[] {
    return this.namedParameters().map(([, t]) => t);
  }
  namedBuffers(prefix = ''): [string, Tensor][] {
    const out: [string, Tensor][] = [...this.ownBuffers].map(([n, t]) => [prefix + n, t]);
    for (const [name, m] of this.children) out.push(...m.namedBuffers(`${prefix}${name}.`));
    return out;
  }
  namedModules(prefix = ''): [string, Module][] {
    const out: [string, Module][] = [[prefix.replace(/\.$/, ''), this]];
    for (const [name, m] of this.children) out.push(...m.namedModules(`${prefix}${name}.`));
    return out;
  }
  /** Every weight, bias and BN affine parameter (running statistics do not count), like torchsummary. */
  numParameters(): number {
    return this.parameters().reduce((n, t) => n + t.numel, 0);
  }

  train(mode = true): this {
    for (const [, m] of this.namedModules()) m.training = mode;
    return this;
  }
  eval(): this {
    return this.train(false);
  }

  /** Parameters and buffers by name (the tensors themselves). */
  stateTensors(): [string, Tensor][] {
    return [...this.namedParameters(), ...this.namedBuffers()];
  }

  /** Reads every parameter and buffer back (one submit). */
  async stateDict(): Promise<StateDict> {
    const entries = this.stateTensors();
    const dev = entries[0]?.[1].device;
    if (!dev) return {};
    const bytes = await dev.read(entries.map(([, t]) => t));
    const out: StateDict = {};
    entries.forEach(([name, t], i) => {
      out[name] = { shape: [...t.shape], data: new Float32Array(bytes[i]) };
    });
    return out;
  }

  /** Writes values in place; names and shapes must match (strict: every name on both sides). */
  loadStateDict(state: StateDict, options: { strict?: boolean } = {}): void {
    const strict = options.strict ?? true;
    const mine = new Map(this.stateTensors());
    const problems: string[] = [];
    for (const [name, entry] of Object.entries(state)) {
      const t = mine.get(name);
      if (!t) {
        if (strict) problems.push(`unexpected key '${name}'`);
        continue;
      }
      if (entry.shape.length !== t.shape.length || entry.shape.some((d, i) => d !== t.shape[i])) {
        problems.push(`'${name}': checkpoint shape [${entry.shape.join(', ')}], model shape [${t.shape.join(', ')}]`);
      }
    }
    if (strict) for (const name of mine.keys()) if (!(name in state)) problems.push(`missing key '${name}'`);
    if (problems.length > 0) throw new Error(`loadStateDict: ${problems.length} problem(s):\n  ${problems.join('\n  ')}`);
    for (const [name, entry] of Object.entries(state)) mine.get(name)?.write(entry.data);
  }

  /** Frees every parameter and buffer. */
  dispose(): void {
    for (const [, t] of this.stateTensors()) t.dispose();
  }
}
