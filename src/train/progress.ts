// A progress line for long work: a bar on a terminal (redrawn in place, coloured unless NO_COLOR is set), a plain
// line every ~10% elsewhere (CI logs, pipes, TERM=dumb), so logs never hold carriage returns or escape codes.
export interface ProgressStream {
  write(text: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

/** How a stream can show progress: 'bar' (redrawn in place) or 'lines'; colour only on a bar and without NO_COLOR. */
export function progressStyle(stream: ProgressStream, env: Record<string, string | undefined> = process.env): { bar: boolean; color: boolean } {
  const bar = Boolean(stream.isTTY) && env.TERM !== 'dumb';
  // no-color.org: NO_COLOR set to any non-empty value turns colour off.
  return { bar, color: bar && !env.NO_COLOR };
}

export class Progress {
  private readonly start = performance.now();
  private lastPrinted = -1;
  private readonly style: { bar: boolean; color: boolean };
  constructor(
    private readonly label: string,
    private readonly total: number,
    private readonly stream: ProgressStream = process.stderr,
    private readonly quiet = false,
    env: Record<string, string | undefined> = process.env,
  ) {
    this.style = progressStyle(stream, env);
  }

  update(done: number, extra = ''): void {
    if (this.quiet) return;
    const fraction = this.total ? done / this.total : 1;
    const elapsed = (performance.now() - this.start) / 1000;
    const eta = done > 0 ? (elapsed / done) * (this.total - done) : 0;
    const percent = `${String(Math.round(fraction * 100)).padStart(3)}%`;
    const tail = `${percent} ${done}/${this.total}${extra ? ` ${extra}` : ''} ETA ${duration(eta)}`;
    if (this.style.bar) {
      const line = `${this.label} ${bar(fraction)} ${tail}`.slice(0, (this.stream.columns ?? 160) - 1);
      this.stream.write(`\r${this.style.color ? colourBar(line) : line}\x1b[K`);
    } else {
      const decile = Math.floor(fraction * 10);
      if (decile !== this.lastPrinted) {
        this.lastPrinted = decile;
        this.stream.write(`${this.label} ${tail}\n`);
      }
    }
  }

  done(summary: string): void {
    if (this.quiet) return;
    const elapsed = (performance.now() - this.start) / 1000;
    const line = `${this.label} ${summary} (${duration(elapsed)})`;
    this.stream.write(this.style.bar ? `\r${line}\x1b[K\n` : `${line}\n`);
  }
}

function bar(fraction: number, width = 20): string {
  const filled = Math.round(Math.min(1, Math.max(0, fraction)) * width);
  return `[${'='.repeat(filled)}${' '.repeat(width - filled)}]`;
}

/** The bar's filled part in green (ANSI SGR 32). */
function colourBar(line: string): string {
  return line.replace(/\[(=*)/, (_, filled: string) => `[\x1b[32m${filled}\x1b[0m`);
}

export function duration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)}s`;
  const m = Math.floor(seconds / 60);
  if (m < 60) return `${m}m${String(Math.round(seconds % 60)).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}
