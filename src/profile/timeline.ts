// One profiled step as a timeline picture: a bar per dispatch on the GPU's time axis, one lane per phase, coloured
// by phase, the longest kernels labelled. SVG drawn with the run plots' helpers, rendered to PNG by sharp.
import type { StepProfile } from './profile.js';
import { PALETTE, line, niceStep, rect, svgDocument, text, textWidth, title, writePng } from '../train/plots.js';

const PHASES = ['forward', 'loss', 'backward', 'optimizer'] as const;
const LABELLED = 8; // the longest dispatches get their kernel's name

export function timelineSvg(p: StepProfile, heading = 'one training step on the GPU'): string {
  const width = 1200;
  const left = 90;
  const right = 20;
  const laneHeight = 56;
  const top = 40;
  const height = top + PHASES.length * laneHeight + 50;
  const start = Math.min(...p.dispatches.map((d) => d.gpuStartUs));
  const spanMs = Math.max(1e-3, (Math.max(...p.dispatches.map((d) => d.gpuStartUs + d.gpuUs)) - start) / 1000);
  const x = (us: number) => left + ((us - start) / 1000 / spanMs) * (width - left - right);
  const body = [title(width, `${heading}: ${p.dispatches.length} dispatches, ${spanMs.toFixed(1)} ms (${p.adapter})`)];
  PHASES.forEach((phase, lane) => {
    const y = top + lane * laneHeight;
    body.push(text(left - 8, y + laneHeight / 2, phase, { anchor: 'end', size: 12 }));
    body.push(line(left, y + laneHeight, width - right, y + laneHeight, '#e5e5e5'));
  });
  const labelEnds = PHASES.map(() => [-Infinity, -Infinity]); // per lane, two label rows: where the last label ends
  const longest = new Set([...p.dispatches].sort((a, b) => b.gpuUs - a.gpuUs).slice(0, LABELLED).map((d) => d.index));
  for (const d of p.dispatches) {
    const lane = PHASES.indexOf(d.phase);
    const y = top + lane * laneHeight + 24;
    const x0 = x(d.gpuStartUs);
    const w = Math.max(0.6, x(d.gpuStartUs + d.gpuUs) - x0);
    body.push(rect(x0, y, w, laneHeight - 30, `fill="${PALETTE[lane]}" stroke="#fff" stroke-width="0.3"`));
    if (longest.has(d.index)) {
      const label = `${d.module || d.term || d.shader} ${d.entry}`;
      const size = 9;
      const row = labelEnds[lane].findIndex((end) => end < x0);
      const labelWidth = textWidth(label, size);
      if (row >= 0 && labelWidth < width - x0) {
        body.push(text(x0, y - 4 - row * 10, label, { size, fill: '#333' }));
        labelEnds[lane][row] = x0 + labelWidth + 4;
      }
    }
  }
  const axisY = top + PHASES.length * laneHeight;
  const step = niceStep(0, spanMs);
  for (let t = 0; t <= spanMs + 1e-9; t += step) {
    const tx = x(start + t * 1000);
    body.push(line(tx, axisY, tx, axisY + 5, '#555'));
    body.push(text(tx, axisY + 14, `${Number(t.toFixed(3))}`, { anchor: 'middle', size: 10 }));
  }
  body.push(text((left + width - right) / 2, axisY + 32, 'GPU time (ms)', { anchor: 'middle', size: 11 }));
  return svgDocument(width, height, body);
}

export async function writeTimeline(path: string, p: StepProfile, heading?: string): Promise<void> {
  await writePng(path, timelineSvg(p, heading));
}
