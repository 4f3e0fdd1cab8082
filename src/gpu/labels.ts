// What the code recording a dispatch is doing: the training phase, the module and the loss term. The profiler
// stamps every dispatch with the label current when it was recorded; backward closures run under the label of the
// op that recorded them (the tape keeps it), so a gradient kernel is charged to the module whose backward it is.
export type Phase = 'forward' | 'loss' | 'backward' | 'optimizer';

export interface DispatchLabel {
  phase?: Phase;
  module?: string;
  term?: string;
}

let current: DispatchLabel = {};

export function currentLabel(): DispatchLabel {
  return current;
}

/** Runs fn (synchronous) with `label` merged over the current label. */
export function withLabel<T>(label: DispatchLabel, fn: () => T): T {
  const before = current;
  current = { ...before, ...label };
  try {
    return fn();
  } finally {
    current = before;
  }
}
