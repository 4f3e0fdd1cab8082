// Plots of a training run (loss, accuracy, confusion matrix) as SVG drawn by hand, rendered to PNG with sharp. No
// plotting library: the charts are simple and this keeps the dependencies at sharp and node builtins.
import { existsSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { basename, join } from 'node:path';
import sharp from 'sharp';
import type { EpochMetrics } from './trainer.js';

export type EpochRecord = EpochMetrics & { type: 'epoch' };

export interface StepRecord {
  type: 'step';
  epoch: number;
  step: number;
  lr: number;
  loss: number; // the total
  parts: Record<string, number>; // each unweighted loss term
  accuracy?: number; // of the batch (training mode)
}

export interface LineSeries {
  name: string;
  points: [number, number][];
}

export interface LineChart {
  title: string;
  xLabel: string;
  yLabel: string;
  series: LineSeries[];
  width?: number;
  height?: number;
  yMin?: number;
  yMax?: number;
  logY?: boolean;
}

export interface ConfusionChart {
  title: string;
  classNames: readonly string[];
  matrix: number[][]; // [true][predicted] counts
}

// sharp renders SVG at 72 dpi; 144 doubles every dimension so text stays crisp on high-density screens.
export const PNG_DENSITY = 144;
export const PNG_SCALE = PNG_DENSITY / 72;

const FONT = 'DejaVu Sans, sans-serif';
// Tableau 10: distinct colours that stay distinguishable for most colour-blind readers.
export const PALETTE = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];
const MARKER_LIMIT = 30; // series with at most this many points get a marker at each point
const CHAR_WIDTH = 0.62; // mean advance of a DejaVu Sans character in em: enough to size margins without a font engine

// ---------------------------------------------------------------------------------------------------------------
// Small SVG helpers

export function escapeXml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c]!);
}

// Math.min(...values) overflows the stack on the ~1e5 points of a long step log; a loop does not.
function extent(values: number[]): [number, number] {
  let [lo, hi] = [Infinity, -Infinity];
  for (const v of values) [lo, hi] = [Math.min(lo, v), Math.max(hi, v)];
  return [lo, hi];
}

export function textWidth(text: string, fontSize: number): number {
  return text.length * fontSize * CHAR_WIDTH;
}

function num(v: number): string {
  return String(Math.round(v * 100) / 100);
}

interface TextOptions {
  size?: number;
  anchor?: 'start' | 'middle' | 'end';
  fill?: string;
  weight?: 'bold';
  rotate?: number; // degrees about the anchor point
}

// y is the vertical centre of the text (librsvg's dominant-baseline support is partial, so shift the baseline by hand).
export function text(x: number, y: number, content: string, o: TextOptions = {}): string {
  const size = o.size ?? 12;
  const baseline = y + size * 0.35;
  const rotate = o.rotate ? ` transform="rotate(${o.rotate} ${num(x)} ${num(y)})"` : '';
  const weight = o.weight ? ` font-weight="${o.weight}"` : '';
  const attributes = `font-size="${num(size)}" text-anchor="${o.anchor ?? 'start'}" fill="${o.fill ?? '#222'}"${weight}${rotate}`;
  return `<text x="${num(x)}" y="${num(baseline)}" ${attributes}>${escapeXml(content)}</text>`;
}

export function line(x1: number, y1: number, x2: number, y2: number, stroke: string, width = 1): string {
  return `<line x1="${num(x1)}" y1="${num(y1)}" x2="${num(x2)}" y2="${num(y2)}" stroke="${stroke}" stroke-width="${width}"/>`;
}

export function rect(x: number, y: number, width: number, height: number, attributes: string): string {
  return `<rect x="${num(x)}" y="${num(y)}" width="${num(width)}" height="${num(height)}" ${attributes}/>`;
}

function marker(x: number, y: number, color: string): string {
  return `<circle cx="${num(x)}" cy="${num(y)}" r="3.5" fill="${color}" stroke="#fff" stroke-width="1"/>`;
}

// A bold title, made smaller when it would not fit the width (bold DejaVu runs ~0.7 em a character).
export function title(width: number, content: string): string {
  const size = Math.max(9, Math.min(16, (width - 24) / (content.length * 0.7)));
  return text(width / 2, 20, content, { size, anchor: 'middle', weight: 'bold' });
}

export function svgDocument(width: number, height: number, body: string[]): string {
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="${FONT}">\n` +
    `<rect width="${width}" height="${height}" fill="#ffffff"/>\n${body.join('\n')}\n</svg>\n`;
}

// ---------------------------------------------------------------------------------------------------------------
// Axes

interface Axis {
  lo: number;
  hi: number;
  log: boolean;
  ticks: { value: number; label: string }[];
  minor: number[]; // grid lines without a label (log axes)
}

// Indices i of the ticks i * step: covering [lo, hi] when the axis widens to whole steps, inside it otherwise.
function tickIndices(lo: number, hi: number, step: number, expand: boolean): [number, number] {
  return expand ? [Math.floor(lo / step + 1e-9), Math.ceil(hi / step - 1e-9)] : [Math.ceil(lo / step - 1e-9), Math.floor(hi / step + 1e-9)];
}

// The 1, 2 or 5 x 10^k step that puts closest to 5 ticks on [lo, hi]; on a tie the larger (fewer labels to read).
export function niceStep(lo: number, hi: number, options: { expand?: boolean; integer?: boolean } = {}): number {
  const base = 10 ** Math.floor(Math.log10((hi - lo) / 5));
  let best = NaN;
  let bestMiss = Infinity;
  for (const m of [1, 2, 5, 10, 20, 50]) {
    const step = clean(m * base);
    if (options.integer && step < 1) continue;
    const [first, last] = tickIndices(lo, hi, step, options.expand ?? false);
    const miss = Math.abs(last - first + 1 - 5);
    if (miss <= bestMiss) [best, bestMiss] = [step, miss];
  }
  return best;
}

function clean(v: number): number {
  return Number(v.toPrecision(12)) + 0; // drops float dust (0.30000000000000004) and -0
}

function formatLinear(v: number, step: number): string {
  if (v !== 0 && (step < 1e-4 || Math.abs(v) >= 1e6)) {
    const digits = Math.max(0, Math.floor(Math.log10(Math.abs(v))) - Math.floor(Math.log10(step))); // as many as the step needs
    return v.toExponential(digits).replace('e+', 'e');
  }
  return v.toFixed(Math.max(0, -Math.floor(Math.log10(step) + 1e-9)));
}

function formatLog(v: number): string {
  return v >= 1e4 || v < 1e-3 ? v.toExponential(0).replace('e+', 'e') : String(clean(v));
}

interface LinearOptions {
  integer?: boolean; // integer data (epochs, steps): integer ticks, a window of +-1 around a single value
  expand?: boolean; // widen the range to whole steps (y); otherwise keep the data range with a 2% margin (x)
  fixedLo?: number;
  fixedHi?: number;
}

// A linear axis with about 5 ticks at multiples of a nice step.
function linearAxis(lo: number, hi: number, o: LinearOptions = {}): Axis {
  if (o.fixedLo !== undefined) lo = o.fixedLo;
  if (o.fixedHi !== undefined) hi = o.fixedHi;
  if (!(hi > lo)) {
    // all values equal: open a window around them so the line sits in the middle
    const pad = o.integer || lo === 0 ? 1 : Math.abs(lo) * 0.1;
    if (o.fixedLo === undefined || o.fixedHi !== undefined) lo -= pad;
    if (o.fixedHi === undefined || o.fixedLo !== undefined) hi += pad;
    if (!(hi > lo)) hi = lo + pad;
  } else if (!o.expand) {
    const margin = (hi - lo) * 0.02; // keeps the end markers off the frame
    if (o.fixedLo === undefined) lo -= margin;
    if (o.fixedHi === undefined) hi += margin;
  }
  const step = niceStep(lo, hi, o);
  const [first, last] = tickIndices(lo, hi, step, o.expand ?? false);
  if (!(last - first < 100)) throw new Error(`cannot place ticks on the axis range [${lo}, ${hi}]`); // not an endless loop on a bad range
  const axisLo = o.fixedLo ?? (o.expand ? clean(first * step) : lo);
  const axisHi = o.fixedHi ?? (o.expand ? clean(last * step) : hi);
  const ticks = [];
  for (let i = first; i <= last; i++) {
    const value = clean(i * step);
    if (value >= axisLo - step * 1e-9 && value <= axisHi + step * 1e-9) ticks.push({ value, label: formatLinear(value, step) });
  }
  return { lo: axisLo, hi: axisHi, log: false, ticks, minor: [] };
}

// A log axis over whole decades; 2x and 5x ticks when it spans few decades, unlabelled 2..9x grid lines up to 5.
function logAxis(lo: number, hi: number, fixedLo?: number, fixedHi?: number): Axis {
  if (!(hi > lo)) [lo, hi] = [lo / 2, hi * 2];
  const a = Math.floor(Math.log10(fixedLo ?? lo) + 1e-9);
  const b = Math.ceil(Math.log10(fixedHi ?? hi) - 1e-9);
  const axisLo = fixedLo ?? 10 ** a;
  const axisHi = fixedHi ?? 10 ** Math.max(b, a + 1);
  const decades = Math.log10(axisHi / axisLo);
  const stride = Math.max(1, Math.ceil(decades / 8)); // at most ~8 labelled decades
  const ticks = [];
  const minor = [];
  for (let k = a; k <= b; k++) {
    for (let m = 1; m <= 9; m++) {
      const value = clean(m * 10 ** k);
      if (value < axisLo * (1 - 1e-9) || value > axisHi * (1 + 1e-9)) continue;
      const labelled = m === 1 ? (k - a) % stride === 0 : decades <= 2.01 && (m === 2 || m === 5);
      if (labelled) ticks.push({ value, label: formatLog(value) });
      else if (decades <= 5) minor.push(value);
    }
  }
  return { lo: axisLo, hi: axisHi, log: true, ticks, minor };
}

function scale(axis: Axis, from: number, to: number): (v: number) => number {
  const f = axis.log ? Math.log10 : (v: number) => v;
  const [a, b] = [f(axis.lo), f(axis.hi)];
  return (v) => from + ((f(v) - a) / (b - a)) * (to - from);
}

// ---------------------------------------------------------------------------------------------------------------
// Line chart

export function lineChartSvg(chart: LineChart): string {
  const width = chart.width ?? 720;
  const height = chart.height ?? 440;
  const logY = chart.logY ?? false;
  // Keep each series' palette slot even when another is dropped, so colours match across charts of one run.
  const drawable = ([x, y]: [number, number]) => Number.isFinite(x) && Number.isFinite(y) && (!logY || y > 0);
  const series = chart.series
    .map((s, i) => ({ name: s.name, color: PALETTE[i % PALETTE.length], points: s.points.filter(drawable) }))
    .filter((s) => s.points.length > 0);
  const xs = series.flatMap((s) => s.points.map((p) => p[0]));
  const ys = series.flatMap((s) => s.points.map((p) => p[1]));
  const empty = xs.length === 0;
  const [xLo, xHi] = empty ? [0, 1] : extent(xs);
  const [yLo, yHi] = empty ? [logY ? 0.1 : 0, 1] : extent(ys);
  const xAxis = linearAxis(xLo, xHi, { integer: !empty && xs.every(Number.isInteger) });
  // A bound that cannot be used (not finite, or <= 0 on a log axis) is ignored: the data set that end.
  const bound = (v?: number) => (v !== undefined && Number.isFinite(v) && (!logY || v > 0) ? v : undefined);
  const [yMin, yMax] = [bound(chart.yMin), bound(chart.yMax)];
  const yAxis = logY ? logAxis(yLo, yHi, yMin, yMax) : linearAxis(yLo, yHi, { expand: true, fixedLo: yMin, fixedHi: yMax });

  // Margins from the text they hold: the legend sits outside the plot, right of it, so it never covers data.
  const tickSize = 12;
  const legendSize = 12;
  const yTickWidth = Math.max(...yAxis.ticks.map((t) => textWidth(t.label, tickSize)), 10);
  const legendWidth = series.length ? 34 + Math.max(...series.map((s) => textWidth(s.name, legendSize))) : 0;
  const left = 28 + yTickWidth + 8;
  const right = width - 16 - (legendWidth ? legendWidth + 12 : 0);
  const top = 44;
  const bottom = height - 50;
  const sx = scale(xAxis, left, right);
  const sy = scale(yAxis, bottom, top);

  const body: string[] = [];
  body.push(title(width, chart.title));
  body.push(...gridLines(xAxis, yAxis, sx, sy, { left, right, top, bottom }, tickSize));
  body.push(rect(left, top, right - left, bottom - top, 'fill="none" stroke="#444"'));
  body.push(text((left + right) / 2, height - 14, chart.xLabel, { size: 13, anchor: 'middle' }));
  body.push(text(14, (top + bottom) / 2, chart.yLabel, { size: 13, anchor: 'middle', rotate: -90 }));
  if (empty) body.push(text((left + right) / 2, (top + bottom) / 2, 'no data', { size: 14, anchor: 'middle', fill: '#888' }));

  // Data are clipped to the plot area (a fixed yMin/yMax may cut them).
  body.push(`<clipPath id="plot">${rect(left - 4, top - 4, right - left + 8, bottom - top + 8, '')}</clipPath>`);
  body.push('<g clip-path="url(#plot)">');
  for (const s of series) body.push(...seriesMarks(s.points, s.color, sx, sy));
  body.push('</g>');
  body.push(...legend(series, right + 12, top, legendSize));
  return svgDocument(width, height, body);
}

interface Box {
  left: number;
  right: number;
  top: number;
  bottom: number;
}

function gridLines(xAxis: Axis, yAxis: Axis, sx: (v: number) => number, sy: (v: number) => number, box: Box, size: number): string[] {
  const out: string[] = [];
  for (const v of yAxis.minor) out.push(line(box.left, sy(v), box.right, sy(v), '#f2f2f2'));
  for (const t of yAxis.ticks) {
    const y = sy(t.value);
    out.push(line(box.left, y, box.right, y, '#e0e0e0'));
    out.push(text(box.left - 6, y, t.label, { size, anchor: 'end', fill: '#444' }));
  }
  for (const t of xAxis.ticks) {
    const x = sx(t.value);
    out.push(line(x, box.top, x, box.bottom, '#e0e0e0'));
    out.push(text(x, box.bottom + 14, t.label, { size, anchor: 'middle', fill: '#444' }));
  }
  return out;
}

function seriesMarks(points: [number, number][], color: string, sx: (v: number) => number, sy: (v: number) => number): string[] {
  const out: string[] = [];
  if (points.length > 1) {
    const d = points.map(([x, y], i) => `${i ? 'L' : 'M'}${num(sx(x))} ${num(sy(y))}`).join('');
    out.push(`<path d="${d}" fill="none" stroke="${color}" stroke-width="2" stroke-linejoin="round" stroke-linecap="round"/>`);
  }
  if (points.length <= MARKER_LIMIT) {
    for (const [x, y] of points) out.push(marker(sx(x), sy(y), color));
  }
  return out;
}

function legend(series: { name: string; color: string; points: unknown[] }[], x: number, y: number, size: number): string[] {
  return series.flatMap((s, i) => {
    const cy = y + 8 + i * (size + 8);
    const swatch = [line(x, cy, x + 22, cy, s.color, 2.5), ...(s.points.length <= MARKER_LIMIT ? [marker(x + 11, cy, s.color)] : [])];
    return [...swatch, text(x + 28, cy, s.name, { size })];
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Confusion matrix

// Sequential blues (ColorBrewer), light for few, dark for many.
const BLUES = [[247, 251, 255], [198, 219, 239], [107, 174, 214], [33, 113, 181], [8, 48, 107]];

function blue(fraction: number): string {
  const t = Math.min(1, Math.max(0, fraction)) * (BLUES.length - 1);
  const i = Math.min(BLUES.length - 2, Math.floor(t));
  const mix = BLUES[i].map((c, j) => Math.round(c + (BLUES[i + 1][j] - c) * (t - i)));
  return `rgb(${mix.join(',')})`;
}

export function confusionSvg(c: ConfusionChart): string {
  const k = c.classNames.length;
  if (c.matrix.length !== k || c.matrix.some((row) => row.length !== k)) {
    throw new Error(`confusion matrix must be ${k}x${k} (one row and column per class name), got ${c.matrix.length} rows`);
  }
  const cell = Math.min(56, Math.max(16, Math.round(480 / Math.max(1, k))));
  const labelSize = 12;
  const nameWidth = Math.max(...c.classNames.map((n) => textWidth(n, labelSize)), 10);
  // Column labels turn 40 degrees when they would not fit under their cell.
  const rotate = nameWidth > cell - 6;
  const [cos, sin] = [Math.cos((40 * Math.PI) / 180), Math.sin((40 * Math.PI) / 180)];
  const xLabelHeight = rotate ? nameWidth * sin + labelSize : labelSize + 4;
  const rowTotals = c.matrix.map((row) => row.reduce((s, v) => s + v, 0));
  const total = rowTotals.reduce((s, v) => s + v, 0);
  const correct = c.matrix.reduce((s, row, i) => s + row[i], 0);

  const gridLeft = Math.max(30 + nameWidth + 8, rotate ? nameWidth * cos - cell / 2 + 12 : 0);
  const gridTop = 62;
  const gridSize = cell * k;
  const accLeft = gridLeft + gridSize + 8;
  const width = Math.ceil(accLeft + 64);
  const height = Math.ceil(gridTop + gridSize + 8 + xLabelHeight + 30);

  const body: string[] = [];
  const centre = gridLeft + gridSize / 2;
  body.push(title(width, c.title));
  const summary = total ? `accuracy ${((100 * correct) / total).toFixed(2)}% of ${total.toLocaleString('en')}` : 'no samples';
  body.push(text(width / 2, 40, summary, { size: 12, anchor: 'middle', fill: '#555' }));
  body.push(text(accLeft + 28, gridTop - 10, 'accuracy', { size: 11, anchor: 'middle', fill: '#555' }));

  c.matrix.forEach((row, i) => {
    const y = gridTop + i * cell;
    body.push(text(gridLeft - 6, y + cell / 2, c.classNames[i], { size: labelSize, anchor: 'end' }));
    row.forEach((count, j) => body.push(...confusionCell(gridLeft + j * cell, y, cell, count, rowTotals[i] ? count / rowTotals[i] : 0)));
    const acc = rowTotals[i] ? `${((100 * row[i]) / rowTotals[i]).toFixed(1)}%` : '-';
    body.push(text(accLeft + 28, y + cell / 2, acc, { size: Math.min(12, cell * 0.45), anchor: 'middle', fill: '#333' }));
  });
  body.push(rect(gridLeft, gridTop, gridSize, gridSize, 'fill="none" stroke="#444"'));

  const labelY = gridTop + gridSize + 8;
  c.classNames.forEach((name, j) => {
    const x = gridLeft + j * cell + cell / 2;
    body.push(rotate
      ? text(x + 4, labelY, name, { size: labelSize, anchor: 'end', rotate: -40 })
      : text(x, labelY + labelSize / 2, name, { size: labelSize, anchor: 'middle' }));
  });
  body.push(text(centre, height - 12, 'predicted', { size: 13, anchor: 'middle' }));
  body.push(text(14, gridTop + gridSize / 2, 'true', { size: 13, anchor: 'middle', rotate: -90 }));
  return svgDocument(width, height, body);
}

function confusionCell(x: number, y: number, size: number, count: number, fraction: number): string[] {
  const label = String(count);
  const fontSize = Math.max(6, Math.min(size * 0.3, (size - 6) / (label.length * CHAR_WIDTH)));
  const fill = count === 0 ? '#bbbbbb' : fraction > 0.5 ? '#ffffff' : '#222222'; // white on the dark cells
  return [
    rect(x, y, size, size, `fill="${blue(fraction)}" stroke="#ffffff"`),
    text(x + size / 2, y + size / 2, label, { size: fontSize, anchor: 'middle', fill }),
  ];
}

// ---------------------------------------------------------------------------------------------------------------
// PNG output

export async function writePng(path: string, svg: string): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  try {
    await sharp(Buffer.from(svg), { density: PNG_DENSITY }).png().toFile(tmp);
    renameSync(tmp, path); // readers never see a half-written image
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// metrics.jsonl

export function readMetrics(path: string): { epochs: EpochRecord[]; steps: StepRecord[] } {
  if (!existsSync(path)) throw new Error(`metrics file not found: ${path}`);
  // A resumed run appends the steps/epochs after its checkpoint again: the last record of each number wins.
  const epochs = new Map<number, EpochRecord>();
  const steps = new Map<number, StepRecord>();
  readFileSync(path, 'utf8').split('\n').forEach((line, i) => {
    if (!line.trim()) return;
    const where = `${path}:${i + 1}`;
    let record: unknown;
    try {
      record = JSON.parse(line);
    } catch (e) {
      throw new Error(`${where}: malformed line (${(e as Error).message})`);
    }
    const r = record as Record<string, unknown>;
    if (r?.type === 'epoch') {
      if (!Number.isInteger(r.epoch) || typeof r.loss !== 'object' || r.loss === null) {
        throw new Error(`${where}: epoch record without an epoch number or loss`);
      }
      epochs.set(r.epoch as number, r as unknown as EpochRecord);
    } else if (r?.type === 'step') {
      if (!Number.isInteger(r.step)) throw new Error(`${where}: step record without a step number`);
      steps.set(r.step as number, r as unknown as StepRecord);
    } else if (typeof r !== 'object' || r === null || Array.isArray(r)) {
      throw new Error(`${where}: malformed line (not a JSON object)`);
    } // other record types: written by a newer trainer, not plotted
  });
  const byKey = <T>(m: Map<number, T>) => [...m.entries()].sort((a, b) => a[0] - b[0]).map((e) => e[1]);
  return { epochs: byKey(epochs), steps: byKey(steps) };
}

// ---------------------------------------------------------------------------------------------------------------
// A run folder's plots

// Trailing moving average: each point is the mean of itself and the window - 1 before it.
export function movingAverage(values: number[], window: number): number[] {
  let sum = 0;
  return values.map((v, i) => {
    sum += v - (i >= window ? values[i - window] : 0);
    return sum / Math.min(i + 1, window);
  });
}

// Smoothed, then thinned to at most ~2000 points: the plot is ~600 px wide, more points only slow the rendering.
function smoothed(points: [number, number][], window: number): [number, number][] {
  const finite = points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
  const ys = movingAverage(finite.map((p) => p[1]), window);
  const stride = Math.ceil(finite.length / 2000);
  return finite.flatMap(([x], i): [number, number][] => (i % stride === 0 || i === finite.length - 1 ? [[x, ys[i]]] : []));
}

// Loss terms can differ by orders of magnitude (ce ~0.3, fitnet ~30): a log axis keeps each one readable.
function wantsLogY(series: LineSeries[]): boolean {
  const ys = series.flatMap((s) => s.points.map((p) => p[1])).filter((v) => Number.isFinite(v) && v > 0);
  const [lo, hi] = extent(ys);
  return ys.length > 0 && hi / lo > 50;
}

function termNames(losses: Record<string, number>[]): string[] {
  const names = new Set<string>(['total']);
  for (const l of losses) for (const name of Object.keys(l ?? {})) names.add(name);
  return [...names];
}

// A single-term recipe logs a term equal to the total; drawing it would hide the total's line under its own.
function dropCopiesOfTotal(series: LineSeries[]): LineSeries[] {
  const total = series[0].points;
  const same = (points: [number, number][]) => points.length === total.length && points.every((p, j) => p[0] === total[j][0] && p[1] === total[j][1]);
  return series.filter((s, i) => i === 0 || !same(s.points));
}

function lossChart(epochs: EpochRecord[], steps: StepRecord[], title: string): LineChart {
  let series: LineSeries[];
  let xLabel = 'epoch';
  let yLabel = 'loss';
  if (steps.length > 0) {
    const window = Math.max(1, Math.round(steps.length / 50));
    const losses: Record<string, number>[] = steps.map((s) => ({ total: s.loss, ...s.parts }));
    series = termNames(losses).map((name) => ({ name, points: smoothed(steps.map((s, i): [number, number] => [s.step, losses[i][name]]), window) }));
    xLabel = 'step';
    if (window > 1) yLabel = `loss (moving average of ${window} steps)`;
  } else {
    const losses = epochs.map((e) => e.loss);
    series = termNames(losses).map((name) => ({ name, points: epochs.map((e, i): [number, number] => [e.epoch, losses[i][name]]) }));
    yLabel = 'loss (mean over the epoch)';
  }
  series = dropCopiesOfTotal(series);
  return { title: `${title}: loss`, xLabel, yLabel, series, logY: wantsLogY(series) };
}

function accuracyChart(epochs: EpochRecord[], steps: StepRecord[], title: string): LineChart {
  const best = epochs.reduce<EpochRecord | undefined>((b, e) => (b === undefined || e.valAccuracy > b.valAccuracy ? e : b), undefined);
  const suffix = best && Number.isFinite(best.valAccuracy) ? ` (best validation ${best.valAccuracy.toFixed(4)} at epoch ${best.epoch})` : '';
  // Points sit at the step they were recorded, in epochs (the first epoch record gives the steps per epoch), so the
  // last, partial epoch of a fractional --epochs run lands at 1.25 rather than 2.
  const stepsPerEpoch = epochs.length > 0 && epochs[0].step > 0 ? epochs[0].step / epochs[0].epoch : 0;
  const at = (e: EpochRecord) => (stepsPerEpoch ? e.step / stepsPerEpoch : e.epoch);
  const series: LineSeries[] = [
    { name: 'train (epoch mean)', points: epochs.map((e) => [at(e), e.trainAccuracy]) },
    { name: 'validation', points: epochs.map((e) => [at(e), e.valAccuracy]) },
  ];
  // Batch accuracies show the curve inside an epoch (a one-epoch run has one point per series otherwise).
  const withAccuracy = steps.filter((s) => s.accuracy !== undefined);
  if (withAccuracy.length > 0 && stepsPerEpoch > 0) {
    const window = Math.max(1, Math.round(withAccuracy.length / 50));
    series.push({ name: `train batches (moving average of ${window})`, points: smoothed(withAccuracy.map((s): [number, number] => [s.step / stepsPerEpoch, s.accuracy!]), window) });
  }
  return { title: `${title}: accuracy${suffix}`, xLabel: 'epoch', yLabel: 'accuracy', series };
}

export async function plotRun(
  runDir: string,
  options: { classNames?: readonly string[]; confusion?: number[][]; title?: string } = {},
): Promise<string[]> {
  const { epochs, steps } = readMetrics(join(runDir, 'metrics.jsonl'));
  const title = options.title ?? basename(runDir);
  const written: string[] = [];
  const write = async (name: string, svg: string) => {
    const path = join(runDir, name);
    await writePng(path, svg);
    written.push(path);
  };
  await write('loss.png', lineChartSvg(lossChart(epochs, steps, title)));
  await write('accuracy.png', lineChartSvg(accuracyChart(epochs, steps, title)));
  if (options.confusion) {
    const classNames = options.classNames ?? options.confusion.map((_, i) => String(i));
    await write('confusion.png', confusionSvg({ title: `${title}: confusion matrix`, classNames, matrix: options.confusion }));
  }
  return written;
}
