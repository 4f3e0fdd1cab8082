// Run plots: metrics.jsonl parsing (resume dedup, errors), SVG charts on degenerate data, PNGs written by plotRun. CPU
// only (sharp renders the SVG).
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import { PNG_SCALE, confusionSvg, lineChartSvg, movingAverage, niceStep, plotRun, readMetrics } from '../src/train/plots.js';

const dir = mkdtempSync(join(tmpdir(), 'wgkd-plots-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function stepRecord(step: number, loss: number, epoch = 1) {
  return { type: 'step', epoch, step, lr: 0.01, loss, parts: { ce: loss * 0.9, kd: loss * 0.01 } };
}

function epochRecord(epoch: number, valAccuracy: number) {
  const loss = { total: 1 / epoch, ce: 0.9 / epoch, kd: 0.01 / epoch };
  return { type: 'epoch', epoch, step: epoch * 3, lr: 0.01, loss, trainAccuracy: 0.5 + epoch / 10, valAccuracy, imagesPerSecond: 100, seconds: 3 };
}

function metricsDir(name: string, lines: string[]): string {
  const runDir = mkdtempSync(join(dir, `${name}-`));
  writeFileSync(join(runDir, 'metrics.jsonl'), `${lines.join('\n')}\n`);
  return runDir;
}

function svgSize(svg: string): { width: number; height: number } {
  const m = /<svg[^>]* width="(\d+)" height="(\d+)"/.exec(svg);
  expect(m, 'svg has width and height').not.toBeNull();
  return { width: Number(m![1]), height: Number(m![2]) };
}

async function expectImage(path: string, size: { width: number; height: number }): Promise<void> {
  const meta = await sharp(path).metadata();
  expect({ width: meta.width, height: meta.height }, path).toEqual({ width: size.width * PNG_SCALE, height: size.height * PNG_SCALE });
  // not blank: white background plus dark text and coloured lines make every colour channel vary
  const stats = await sharp(path).stats();
  for (const channel of stats.channels.slice(0, 3)) expect(channel.max - channel.min, `${path} channel range`).toBeGreaterThan(100);
  expect(stats.isOpaque).toBe(true);
}

// Two epochs of 3 steps. The run stopped after step 4 and resumed from the checkpoint at step 3, so step 4 is logged
// twice (the second time with loss 0.4); epoch 2 is written twice (as by a re-run evaluation), the last with 0.75.
const STEPS_WITH_RESUME = [
  stepRecord(1, 2), stepRecord(2, 1.5), stepRecord(3, 1.2), epochRecord(1, 0.6),
  stepRecord(4, 9, 2),
  '',
  stepRecord(4, 0.4, 2), stepRecord(5, 0.8, 2), stepRecord(6, 0.7, 2), epochRecord(2, 0.7), epochRecord(2, 0.75),
].map((r) => (typeof r === 'string' ? r : JSON.stringify(r)));

describe('readMetrics', () => {
  it('keeps the last record of a repeated step or epoch, in order, and skips blank lines', () => {
    const { epochs, steps } = readMetrics(join(metricsDir('dedup', STEPS_WITH_RESUME), 'metrics.jsonl'));
    expect(steps.map((s) => s.step)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(steps[3].loss).toBe(0.4);
    expect(steps[3].parts.ce).toBeCloseTo(0.36, 12);
    expect(epochs.map((e) => e.epoch)).toEqual([1, 2]);
    expect(epochs[1].valAccuracy).toBe(0.75);
  });

  it('names the file and line of a malformed line, and the path of a missing file', () => {
    const runDir = metricsDir('bad', [JSON.stringify(stepRecord(1, 2)), '', '{"type":"step","step":2,']);
    const path = join(runDir, 'metrics.jsonl');
    expect(() => readMetrics(path)).toThrow(`${path}:3: malformed line`);
    const noStep = metricsDir('nostep', ['{"type":"step","loss":1}']);
    expect(() => readMetrics(join(noStep, 'metrics.jsonl'))).toThrow(/metrics\.jsonl:1: step record without a step number/);
    expect(() => readMetrics(join(dir, 'absent', 'metrics.jsonl'))).toThrow(`metrics file not found: ${join(dir, 'absent', 'metrics.jsonl')}`);
  });
});

describe('chart helpers', () => {
  it('nice steps are 1, 2 or 5 x 10^k, about 5 ticks', () => {
    expect(niceStep(0.796, 0.929, { expand: true })).toBe(0.05); // 0.75 .. 0.95
    expect(niceStep(120, 980, { expand: true })).toBe(200); // 0 .. 1000
    expect(niceStep(0, 1, { expand: true })).toBe(0.2);
    expect(niceStep(-103, 5263)).toBe(1000); // ticks 0 .. 5000 inside the range
    expect(niceStep(0.78, 12.22)).toBe(2);
    expect(niceStep(0.9, 3.1, { integer: true })).toBe(1); // not 0.5 on epochs
    expect(niceStep(2e-5, 9e-5, { expand: true })).toBe(2e-5);
  });

  it('trailing moving average', () => {
    expect(movingAverage([1, 2, 3, 4, 5], 2)).toEqual([1, 1.5, 2.5, 3.5, 4.5]);
    expect(movingAverage([4, 2], 5)).toEqual([4, 3]);
    expect(movingAverage([3, 1], 1)).toEqual([3, 1]);
  });
});

describe('lineChartSvg', () => {
  const base = { title: 'a <b> & "c"', xLabel: 'epoch', yLabel: 'loss' };

  it('draws degenerate data without NaN: one point, equal values, a single x, empty and non-finite series', () => {
    const charts = [
      { ...base, series: [{ name: 'one', points: [[1, 0.5]] as [number, number][] }] },
      { ...base, series: [{ name: 'flat', points: [[1, 2], [2, 2], [3, 2]] as [number, number][] }] },
      { ...base, series: [{ name: 'zero', points: [[0, 0], [5, 0]] as [number, number][] }] },
      { ...base, series: [{ name: 'same x', points: [[3, 1], [3, 2]] as [number, number][] }] },
      { ...base, series: [{ name: 'bad', points: [[1, NaN], [Infinity, 1], [2, 3]] as [number, number][] }, { name: 'empty', points: [] }] },
      { ...base, series: [] },
      { ...base, series: [{ name: 'log one', points: [[1, 0.5]] as [number, number][] }], logY: true },
      { ...base, series: [{ name: 'log', points: [[1, 0], [2, -1], [3, 4e-5], [4, 30]] as [number, number][] }], logY: true },
      { ...base, series: [{ name: 'fixed', points: [[1, 0.5], [2, 0.7]] as [number, number][] }], yMin: 0, yMax: 1 },
      { ...base, series: [{ name: 'bad bounds', points: [[1, 0.5], [2, 0.7]] as [number, number][] }], yMin: NaN, yMax: Infinity },
    ];
    for (const chart of charts) {
      const svg = lineChartSvg(chart);
      expect(svg, chart.series[0]?.name ?? 'no series').not.toMatch(/NaN|Infinity|undefined/);
      expect(svg).toContain('a &lt;b&gt; &amp; &quot;c&quot;');
    }
    // a single point is a marker, not a line; an empty series is left out of the legend
    const one = lineChartSvg(charts[0]);
    expect(one).toContain('<circle');
    expect(one).not.toContain('<path');
    expect(lineChartSvg(charts[4])).not.toContain('>empty<');
    expect(lineChartSvg(charts[5])).toContain('no data');
  });

  it('marks points up to 30 per series, and has ticks at nice values', () => {
    const points = (n: number) => Array.from({ length: n }, (_, i): [number, number] => [i + 1, 0.3 + i / 100]);
    const count = (svg: string) => svg.split('<circle').length - 1;
    expect(count(lineChartSvg({ ...base, series: [{ name: 's', points: points(30) }] }))).toBe(30 + 1); // + the legend's
    expect(count(lineChartSvg({ ...base, series: [{ name: 's', points: points(31) }] }))).toBe(0);
    const svg = lineChartSvg({ ...base, series: [{ name: 's', points: [[0, 0.81], [10, 0.93]] }] });
    for (const label of ['0.80', '0.85', '0.90', '0.95']) expect(svg).toContain(`>${label}<`);
    const log = lineChartSvg({ ...base, series: [{ name: 's', points: [[0, 0.004], [10, 3]] }], logY: true });
    for (const label of ['0.001', '0.01', '0.1', '1', '10']) expect(log).toContain(`>${label}<`);
  });
});

describe('confusionSvg', () => {
  it('prints every count and escaped class name', () => {
    const classNames = ['cats & dogs', 'b<c', 'd'];
    const matrix = [[51, 2, 0], [3, 447, 9], [0, 1, 1234]];
    const svg = confusionSvg({ title: 'confusion', classNames, matrix });
    for (const row of matrix) for (const count of row) expect(svg).toContain(`>${count}<`);
    expect(svg).toContain('>cats &amp; dogs<');
    expect(svg).toContain('>b&lt;c<');
    expect(svg).not.toContain('cats & dogs');
    for (const label of ['>predicted<', '>true<', '>96.2%<', '>99.9%<']) expect(svg).toContain(label); // 51/53, 1234/1235
    expect(() => confusionSvg({ title: 'x', classNames, matrix: [[1, 2], [3, 4]] })).toThrow(/3x3/);
  });
});

describe('plotRun', () => {
  const classNames = ['T-shirt/top', 'Trouser', 'Bag & co'];
  const confusion = [[90, 8, 2], [1, 99, 0], [5, 0, 95]];

  it('writes loss, accuracy and confusion PNGs of the expected sizes, not blank', async () => {
    const runDir = metricsDir('run', STEPS_WITH_RESUME);
    const written = await plotRun(runDir, { classNames, confusion, title: 'test run' });
    expect(written).toEqual(['loss.png', 'accuracy.png', 'confusion.png'].map((f) => join(runDir, f)));
    expect(readdirSync(runDir).filter((f) => f.includes('.tmp-'))).toEqual([]);
    for (const path of written.slice(0, 2)) await expectImage(path, { width: 720, height: 440 });
    await expectImage(written[2], svgSize(confusionSvg({ title: 'test run: confusion matrix', classNames, matrix: confusion })));
  });

  it('plots epochs alone (no step records, a single epoch) and skips the confusion matrix when not given', async () => {
    const runDir = metricsDir('epochs', [JSON.stringify(epochRecord(1, 0.6))]);
    const written = await plotRun(runDir);
    expect(written).toEqual([join(runDir, 'loss.png'), join(runDir, 'accuracy.png')]);
    for (const path of written) await expectImage(path, { width: 720, height: 440 });
  });

  it('names the missing metrics file', async () => {
    await expect(plotRun(join(dir, 'nowhere'))).rejects.toThrow(`metrics file not found: ${join(dir, 'nowhere', 'metrics.jsonl')}`);
  });
});
