// A step's profile as tables: every dispatch (phase, module, term, op family, entry point, shapes, workgroups,
// FLOPs, bytes, µs, GFLOP/s, GB/s, % of roofline), totals per phase and per op family, the top kernels, and the
// host's side. % of roofline: the time the adapter's ceilings allow for the dispatch's FLOPs and bytes,
// max(FLOPs / peak FLOP/s, bytes / copy-kernel bandwidth), over the time it took.
import type { DispatchRecord } from '../gpu/profiler.js';
import type { StepProfile } from './profile.js';
import type { Roofline } from './roofline.js';

export interface DispatchRow extends DispatchRecord {
  gflops: number | null;
  gbs: number;
  rooflinePct: number | null; // null without a roofline
}

export interface Total {
  name: string;
  dispatches: number;
  us: number;
  share: number; // of the step's summed GPU time
  flops: number;
  bytes: number;
}

export interface ProfileSummary {
  rows: DispatchRow[];
  byPhase: Total[];
  byFamily: Total[];
  topKernels: Total[]; // by family:entry
}

export function rooflinePct(flops: number | null, bytes: number, us: number, r: Roofline | null): number | null {
  if (!r || us <= 0) return null;
  const computeUs = flops ? flops / (r.fmaF32Gflops * 1e3) : 0;
  const memoryUs = bytes / (r.copyKernelGBs * 1e3);
  return (100 * Math.max(computeUs, memoryUs)) / us;
}

function totals(rows: DispatchRow[], key: (r: DispatchRow) => string, stepUs: number): Total[] {
  const map = new Map<string, Total>();
  for (const r of rows) {
    const name = key(r);
    const t = map.get(name) ?? { name, dispatches: 0, us: 0, share: 0, flops: 0, bytes: 0 };
    t.dispatches++;
    t.us += r.gpuUs;
    t.flops += r.flops ?? 0;
    t.bytes += r.bytes;
    map.set(name, t);
  }
  const out = [...map.values()].sort((a, b) => b.us - a.us);
  for (const t of out) t.share = stepUs > 0 ? t.us / stepUs : 0;
  return out;
}

export function summarize(p: StepProfile, r: Roofline | null): ProfileSummary {
  const rows: DispatchRow[] = p.dispatches.map((d) => ({
    ...d,
    gflops: d.flops !== null && d.gpuUs > 0 ? d.flops / (d.gpuUs * 1e3) : null,
    gbs: d.gpuUs > 0 ? d.bytes / (d.gpuUs * 1e3) : 0,
    rooflinePct: rooflinePct(d.flops, d.bytes, d.gpuUs, r),
  }));
  return {
    rows,
    byPhase: totals(rows, (x) => x.phase, p.gpuSumUs),
    byFamily: totals(rows, (x) => x.shader, p.gpuSumUs),
    topKernels: totals(rows, (x) => `${x.shader}:${x.entry}`, p.gpuSumUs).slice(0, 10),
  };
}

// ---- text ------------------------------------------------------------------------------------------------------

function table(header: string[], rows: string[][], right: Set<number>): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => (right.has(i) ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join('  ').trimEnd();
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

const num = (v: number | null, digits = 1) => (v === null ? '-' : v.toFixed(digits));
const si = (v: number) => (v >= 1e9 ? `${(v / 1e9).toFixed(2)}G` : v >= 1e6 ? `${(v / 1e6).toFixed(2)}M` : v >= 1e3 ? `${(v / 1e3).toFixed(1)}k` : `${Math.round(v)}`);

function shapesText(shapes: Record<string, number[]>): string {
  return Object.entries(shapes).map(([k, s]) => `${k}[${s.join(',')}]`).join(' ');
}

function dispatchTable(rows: DispatchRow[]): string {
  const header = ['#', 'phase', 'module', 'term', 'op', 'entry', 'workgroups', 'FLOPs', 'bytes', 'µs', 'GFLOP/s', 'GB/s', '%roof', 'shapes'];
  const body = rows.map((r) => [
    String(r.index), r.phase, r.module || '-', r.term || '-', r.shader, r.entry, r.workgroups.join('x'),
    r.flops === null ? '-' : si(r.flops), si(r.bytes), num(r.gpuUs), num(r.gflops, 2), num(r.gbs, 2), num(r.rooflinePct), shapesText(r.shapes),
  ]);
  return table(header, body, new Set([0, 7, 8, 9, 10, 11, 12]));
}

function totalsTable(title: string, items: Total[]): string {
  const body = items.map((t) => [
    t.name, String(t.dispatches), num(t.us / 1000, 2), `${(100 * t.share).toFixed(1)}%`, t.flops ? si(t.flops) : '-', si(t.bytes),
    t.flops && t.us ? num(t.flops / (t.us * 1e3), 2) : '-', t.us ? num(t.bytes / (t.us * 1e3), 2) : '-',
  ]);
  return table([title, 'dispatches', 'ms', 'share', 'FLOPs', 'bytes', 'GFLOP/s', 'GB/s'], body, new Set([1, 2, 3, 4, 5, 6, 7]));
}

export interface ReportContext {
  roofline: Roofline | null;
  /** Step wall time without the profiler, ms (median of unprofiled steps), for the overhead line. */
  unprofiledStepMs?: number;
  title?: string;
  showDispatches?: boolean;
}

export function formatReport(p: StepProfile, ctx: ReportContext): string {
  const s = summarize(p, ctx.roofline);
  const r = ctx.roofline;
  const timing = p.timing === 'timestamp-query'
    ? 'GPU timestamps (timestamp-query), one compute pass per dispatch'
    : 'wall clock per dispatch: this adapter has no timestamp-query, so each dispatch is submitted alone and timed by the host (coarse)';
  const lines = [
    ctx.title ?? 'profile of one step',
    `adapter   ${p.adapter}`,
    `timing    ${timing}`,
    r ? `roofline  ${r.fmaF32Gflops.toFixed(1)} GFLOP/s f32 FMA, ${r.copyKernelGBs.toFixed(2)} GB/s copy kernel (wgkd roofline)` : 'roofline  not measured',
    '',
  ];
  if (ctx.showDispatches !== false) lines.push(dispatchTable(s.rows), '');
  lines.push(totalsTable('phase', s.byPhase), '', totalsTable('op family', s.byFamily), '', totalsTable('top kernels', s.topKernels), '');
  const overhead = ctx.unprofiledStepMs ? ` (unprofiled ${ctx.unprofiledStepMs.toFixed(1)} ms: profiler overhead ${(100 * (p.wallMs / ctx.unprofiledStepMs - 1)).toFixed(0)}%)` : '';
  lines.push(
    `step      ${p.wallMs.toFixed(1)} ms wall${overhead}; GPU ${(p.gpuSpanUs / 1000).toFixed(1)} ms from first dispatch to last, dispatches add up to ${(p.gpuSumUs / 1000).toFixed(1)} ms`,
    `counts    ${p.dispatches.length} dispatches, ${p.submits} submits, ${p.copies} copies per step; ${p.buffersCreated} buffers, ${p.pipelinesCreated} pipelines and ${p.bindGroupsCreated} bind groups created`,
    `host CPU  ${p.recordCpuMs.toFixed(1)} ms recording (and everything else on the main thread), ${p.waitCpuMs.toFixed(1)} ms while waiting ${p.waitMs.toFixed(1)} ms for the GPU`,
  );
  return lines.join('\n');
}
