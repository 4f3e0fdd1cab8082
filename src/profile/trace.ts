// A step's profile as Chrome Trace Event JSON (opens in ui.perfetto.dev and chrome://tracing): one complete ('X')
// slice per dispatch on a GPU track, and the host's recording phases and waits on a host track, in µs. The GPU
// track starts at the step's first submit (GPU and host clocks are not otherwise related).
import type { StepProfile } from './profile.js';

export interface TraceEvent {
  name: string;
  ph: 'X' | 'M';
  pid: number;
  tid: number;
  ts?: number;
  dur?: number;
  cat?: string;
  args?: Record<string, unknown>;
}

const GPU_TRACK = 1;
const HOST_TRACK = 2;

export function chromeTrace(p: StepProfile): { traceEvents: TraceEvent[]; displayTimeUnit: 'ms'; metadata: Record<string, unknown> } {
  const gpuOffset = p.submitUs[0] ?? 0;
  const events: TraceEvent[] = [
    { name: 'process_name', ph: 'M', pid: 1, tid: GPU_TRACK, args: { name: `wgkd on ${p.adapter}` } },
    { name: 'thread_name', ph: 'M', pid: 1, tid: GPU_TRACK, args: { name: `GPU (${p.timing})` } },
    { name: 'thread_name', ph: 'M', pid: 1, tid: HOST_TRACK, args: { name: 'host' } },
  ];
  for (const d of p.dispatches) {
    events.push({
      name: `${d.shader}:${d.entry}`,
      cat: d.phase,
      ph: 'X',
      pid: 1,
      tid: GPU_TRACK,
      ts: gpuOffset + d.gpuStartUs,
      dur: d.gpuUs,
      args: {
        index: d.index, phase: d.phase, module: d.module, term: d.term, op: d.shader, entry: d.entry,
        shapes: d.shapes, workgroups: d.workgroups, flops: d.flops, bytes: d.bytes, submit: d.submit,
      },
    });
  }
  // Host: contiguous runs of dispatches recorded in the same phase, then the waits for the GPU.
  let runStart = 0;
  for (let i = 1; i <= p.dispatches.length; i++) {
    const first = p.dispatches[runStart];
    const d = p.dispatches[i];
    if (d && d.phase === first.phase) continue;
    const end = d ? d.hostUs : p.dispatches[i - 1].hostUs;
    events.push({ name: `record ${first.phase}`, cat: 'host', ph: 'X', pid: 1, tid: HOST_TRACK, ts: first.hostUs, dur: Math.max(end - first.hostUs, 0.001), args: { dispatches: i - runStart } });
    runStart = i;
  }
  for (const w of p.waits) {
    events.push({ name: 'wait for GPU', cat: 'host', ph: 'X', pid: 1, tid: HOST_TRACK, ts: w.startUs, dur: w.endUs - w.startUs });
  }
  return {
    traceEvents: events,
    displayTimeUnit: 'ms',
    metadata: { adapter: p.adapter, timing: p.timing, dispatches: p.dispatches.length, submits: p.submits, wallMs: p.wallMs },
  };
}
