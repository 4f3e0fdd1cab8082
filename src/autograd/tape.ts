// The autograd tape, micrograd-style: every op that produces a tensor from inputs that need gradients records
// its inputs and a backward closure (written next to the op's forward in src/ops/). backward() walks the
// recorded graph in reverse topological order, accumulating gradients where a tensor feeds several ops.
import type { Tensor } from '../tensor.js';
import { Tensor as TensorClass, keep, shapeStr } from '../tensor.js';
import { accumulateInto, clone } from '../ops/elementwise.js';
import { currentLabel, withLabel, type DispatchLabel } from '../gpu/labels.js';

/** Given the gradient of the output, returns one gradient per input (null where an input needs none). */
export type BackwardFn = (gradOutput: Tensor) => (Tensor | null)[];

export interface Node {
  op: string;
  inputs: Tensor[];
  backward: BackwardFn;
  /** Tensors the backward closure uses besides the inputs (saved statistics, arg-max indices, ...). */
  saved: Tensor[];
  /** The dispatch label when the op ran (module, term): its backward dispatches carry it too. */
  label: DispatchLabel;
}

let gradEnabled = true;
/** Tensors whose graph backward() already consumed (it frees the graph as it goes, as in PyTorch). */
const consumed = new WeakSet<Tensor>();

export function isGradEnabled(): boolean {
  return gradEnabled;
}

/** Runs fn without recording anything on the tape (evaluation, optimiser updates). */
export function noGrad<T>(fn: () => T): T {
  const before = gradEnabled;
  gradEnabled = false;
  try {
    const result = fn();
    if (result instanceof Promise) {
      // Keep recording off until the async work finished.
      return result.finally(() => {
        gradEnabled = before;
      }) as T;
    }
    gradEnabled = before;
    return result;
  } catch (err) {
    gradEnabled = before;
    throw err;
  }
}

/**
 * Attaches `backward` to `out` if grad is on and some input needs a gradient. Returns `out`. `saved` lists
 * tensors the closure uses besides the inputs, so a scope that returns `out` keeps them alive for backward().
 */
export function record(out: Tensor, op: string, inputs: Tensor[], backward: BackwardFn, saved: Tensor[] = []): Tensor {
  if (gradEnabled && inputs.some((t) => t.requiresGrad)) {
    out.requiresGrad = true;
    out.node = { op, inputs, backward, saved, label: currentLabel() };
  }
  return out;
}

function topologicalOrder(root: Tensor): Tensor[] {
  const order: Tensor[] = [];
  const visited = new Set<Tensor>();
  // Iterative DFS (deep models would overflow a recursive one): a tensor is emitted after all its inputs.
  const stack: [Tensor, number][] = [[root, 0]];
  visited.add(root);
  while (stack.length > 0) {
    const top = stack[stack.length - 1];
    const [t, next] = top;
    const inputs = t.node?.inputs ?? [];
    if (next < inputs.length) {
      top[1]++;
      const input = inputs[next];
      if (input.requiresGrad && !visited.has(input)) {
        visited.add(input);
        stack.push([input, 0]);
      }
    } else {
      stack.pop();
      order.push(t);
    }
  }
  return order;
}

export function backward(root: Tensor, grad?: Tensor): void {
  // Every dispatch from here on is backward work (the seed, the closures, the accumulations).
  withLabel({ phase: 'backward', module: undefined, term: undefined }, () => backwardFrom(root, grad));
}

function backwardFrom(root: Tensor, grad?: Tensor): void {
  if (consumed.has(root)) {
    throw new Error(`backward: the graph of ${root} was already used by an earlier backward() (it is freed as it runs)`);
  }
  if (!root.requiresGrad) throw new Error(`backward: ${root} does not require grad (no input had requiresGrad)`);
  if (!grad && root.numel !== 1) {
    throw new Error(`backward: grad can be implied only for a scalar output, got shape ${shapeStr(root.shape)}`);
  }
  const grads = new Map<Tensor, Tensor>();
  const seed = grad ?? TensorClass.ones(root.shape, { device: root.device });
  if (grad && grad.numel !== root.numel) throw new Error(`backward: grad ${grad} does not match ${root}`);
  if (!root.node) {
    // A leaf: its gradient is the seed itself.
    accumulate(root, grad ? clone(grad) : seed, grads);
    return;
  }
  grads.set(root, grad ? clone(grad) : seed);

  const order = topologicalOrder(root);
  const prior = isGradEnabled();
  gradEnabled = false;
  try {
    walk(order, grads);
  } finally {
    gradEnabled = prior;
    for (const g of grads.values()) g.dispose();
  }
}

/** Runs each node's backward, latest first, accumulating the gradients of its inputs. */
function walk(order: Tensor[], grads: Map<Tensor, Tensor>): void {
  for (let k = order.length - 1; k >= 0; k--) {
    const t = order[k];
    const node = t.node;
    const g = grads.get(t);
    if (!node || !g) continue;
    grads.delete(t);
    withLabel({ ...node.label, phase: 'backward' }, () => backwardNode(node, g, grads));
    consumed.add(t);
    t.node = null; // the graph is used once, as in PyTorch
  }
}

function backwardNode(node: Node, g: Tensor, grads: Map<Tensor, Tensor>): void {
  const inputGrads = node.backward(g);
  // The same tensor handed to two inputs (or g passed through) must not be shared, since accumulation is in
  // place: make every pending gradient its own tensor before any is accumulated (and maybe disposed).
  const distinct = new Set<Tensor>();
  const pending: [Tensor, Tensor][] = [];
  node.inputs.forEach((input, i) => {
    let gi = inputGrads[i];
    if (!gi || !input.requiresGrad) return;
    if (gi.numel !== input.numel) {
      throw new Error(`backward of '${node.op}': gradient ${shapeStr(gi.shape)} for input ${shapeStr(input.shape)}`);
    }
    if (distinct.has(gi)) gi = clone(gi);
    distinct.add(gi);
    pending.push([input, gi]);
  });
  if (!distinct.has(g)) g.dispose(); // consumed: free it now
  for (const [input, gi] of pending) accumulate(input, gi, grads);
}

/** Sets the gradients of these tensors to zero in place (PyTorch's zero_grad(set_to_none=False)). */
export function zeroGrad(tensors: Iterable<Tensor>): void {
  for (const t of tensors) {
    const g = t.grad;
    if (!g || g.numel === 0) continue;
    g.device.dispatch('elementwise', 'fill', {
      bindings: { out_bits: { buffer: g.buffer, byteOffset: g.byteOffset, byteLength: g.byteLength } },
      params: { n: g.numel, bits: 0 },
      workgroups: Math.ceil(g.numel / 256),
    });
    g.knownZero = true;
  }
}

function accumulate(input: Tensor, g: Tensor, grads: Map<Tensor, Tensor>): void {
  const gShaped = g.shape.length === input.shape.length && g.shape.every((d, i) => d === input.shape[i]) ? g : reshapeOwned(g, input.shape);
  if (input.node) {
    const existing = grads.get(input);
    if (existing) {
      accumulateInto(existing, gShaped);
      gShaped.dispose();
    } else grads.set(input, gShaped);
  } else if (input.grad) {
    if (input.grad.knownZero && input.grad.numel > 0) {
      input.grad.device.copy(gShaped, input.grad); // zero + g is g
      input.grad.knownZero = false;
    } else accumulateInto(input.grad, gShaped);
    gShaped.dispose();
  } else {
    input.grad = keep(gShaped);
  }
}

function reshapeOwned(g: Tensor, shape: readonly number[]): Tensor {
  const view = g.reshape(shape);
  g.dispose();
  return view;
}
