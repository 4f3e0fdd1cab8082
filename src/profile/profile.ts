// profile(dev, fn): runs fn once with every dispatch timed on the GPU and returns what it did, dispatch by dispatch,
// with the host's side (recording and waiting, CPU and wall time, submits, buffer and pipeline creations).
// instrumentModules(model) labels the dispatches of each module's forward (and, through the tape, its backward).
import type { Device } from '../gpu/device.js';
import { DispatchProfiler, mainThreadCpuMs, type DispatchRecord, type TimingSource } from '../gpu/profiler.js';
import { withLabel } from '../gpu/labels.js';
import type { Module } from '../nn/module.js';

/** Dawn rounds timestamps to a coarse grid unless this toggle is off: open the device with these to profile. */
export const PROFILING_DAWN_FLAGS = ['disable-dawn-features=timestamp_quantization'];

export interface StepProfile {
  timing: TimingSource;
  adapter: string;
  dispatches: DispatchRecord[];
  submits: number;
  copies: number;
  wallMs: number; // the call, start to finish, on the host
  gpuSpanUs: number; // first dispatch's GPU start to the last one's end
  gpuSumUs: number; // the dispatches' GPU times added up
  hostCpuMs: number; // main-thread CPU time during the call
  recordCpuMs: number; // of which outside waits (recording, data, bookkeeping)
  waitCpuMs: number; // of which while waiting for the GPU
  waitMs: number; // wall time spent waiting for the GPU
  waits: { startUs: number; endUs: number }[]; // those waits on the host's clock (µs after the call began)
  submitUs: number[]; // when each submit left the host
  buffersCreated: number; // GPU buffers the call created (0 in steady state)
  pipelinesCreated: number; // pipelines the call compiled (0 in steady state)
  bindGroupsCreated: number; // bind groups the call made (0 in steady state: src/gpu/bindgroups.ts)
}

/** The profiler of this device and timing (created on first use, kept: its buffers are made once). */
function profilerOf(dev: Device, timing?: TimingSource): DispatchProfiler {
  const key = timing ?? 'auto';
  const byTiming = profilers.get(dev) ?? new Map<string, DispatchProfiler>();
  const attached = byTiming.get(key) ?? new DispatchProfiler(dev.device, timing);
  byTiming.set(key, attached);
  profilers.set(dev, byTiming);
  return attached;
}
const profilers = new WeakMap<Device, Map<string, DispatchProfiler>>();

export interface ProfileOptions {
  /** 'wall-clock' forces the fallback for adapters without timestamp-query (default: timestamps when there). */
  timing?: TimingSource;
}

/** Runs fn once with per-dispatch GPU timing and returns its profile (fn's own result is dropped). */
export async function profile(dev: Device, fn: () => unknown, options: ProfileOptions = {}): Promise<StepProfile> {
  const session = startProfile(dev, options);
  try {
    await fn();
  } catch (err) {
    await session.stop();
    throw err;
  }
  return session.stop();
}

/** Begins profiling on dev; stop() ends it and returns the profile of everything between (begin/end hooks). */
export function startProfile(dev: Device, options: ProfileOptions = {}): { stop(): Promise<StepProfile> } {
  if (dev.profiler) throw new Error('profile: already profiling on this device (profiles do not nest)');
  dev.flush(); // work recorded before the call is not the call's
  const profiler = profilerOf(dev, options.timing);
  const buffersBefore = dev.buffersCreated;
  const pipelinesBefore = dev.shaders.pipelinesCreated;
  const bindGroupsBefore = dev.bindGroups.created;
  const cpuBefore = mainThreadCpuMs();
  profiler.begin();
  dev.profiler = profiler;
  const start = performance.now();
  const stop = async (): Promise<StepProfile> => {
    try {
      dev.flush();
    } finally {
      dev.profiler = null;
    }
    const wallMs = performance.now() - start;
    const hostCpuMs = mainThreadCpuMs() - cpuBefore;
    await profiler.settle();
    return summarizeCall(dev, profiler, { wallMs, hostCpuMs, buffersBefore, pipelinesBefore, bindGroupsBefore });
  };
  return { stop };
}

function summarizeCall(dev: Device, profiler: DispatchProfiler, c: { wallMs: number; hostCpuMs: number; buffersBefore: number; pipelinesBefore: number; bindGroupsBefore: number }): StepProfile {
  const dispatches = profiler.records;
  const gpuSumUs = dispatches.reduce((t, d) => t + d.gpuUs, 0);
  const first = Math.min(...dispatches.map((d) => d.gpuStartUs));
  const last = Math.max(...dispatches.map((d) => d.gpuStartUs + d.gpuUs));
  return {
    timing: profiler.timing,
    adapter: dev.summary.description,
    dispatches,
    submits: profiler.submits,
    copies: profiler.copies,
    wallMs: c.wallMs,
    gpuSpanUs: dispatches.length ? last - first : 0,
    gpuSumUs,
    hostCpuMs: c.hostCpuMs,
    recordCpuMs: c.hostCpuMs - profiler.waitCpuMs,
    waitCpuMs: profiler.waitCpuMs,
    waitMs: profiler.waitMs,
    waits: profiler.waits,
    submitUs: profiler.submitUs,
    buffersCreated: dev.buffersCreated - c.buffersBefore,
    pipelinesCreated: dev.shaders.pipelinesCreated - c.pipelinesBefore,
    bindGroupsCreated: dev.bindGroups.created - c.bindGroupsBefore,
  };
}

const FORWARD_METHODS = ['forward', 'forwardWithRelu', 'forwardFeatures'] as const;

/**
 * Labels every dispatch a module's forward records with the module's name (`stage2.dw`, ...; the innermost module
 * wins), and so its backward, which the tape runs under the forward's label. Returns a function that undoes it.
 * The modules' own code is untouched: their forward methods are wrapped on the instances.
 */
export function instrumentModules(root: Module, prefix = ''): () => void {
  const undo: (() => void)[] = [];
  for (const [name, m] of root.namedModules(prefix ? `${prefix}.` : '')) {
    const moduleName = name || prefix;
    if (!moduleName) continue; // the root itself: its dispatches outside any child stay unlabelled
    const instance = m as unknown as Record<string, unknown>;
    for (const method of FORWARD_METHODS) {
      const original = instance[method];
      if (typeof original !== 'function') continue;
      const own = Object.prototype.hasOwnProperty.call(instance, method);
      instance[method] = function (this: unknown, ...args: unknown[]) {
        return withLabel({ module: moduleName }, () => (original as (...a: unknown[]) => unknown).apply(this, args));
      };
      undo.push(() => {
        if (own) instance[method] = original;
        else delete instance[method];
      });
    }
  }
  return () => undo.forEach((u) => u());
}
