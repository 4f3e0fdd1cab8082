// A progress line for long work: a bar on a terminal (redrawn in place), a line every ~10% elsewhere (CI logs).
export class Progress {
  private readonly start = performance.now();
  private lastPrinted = -1;
  private readonly tty: boolean;
  constructor(
    private readonly label: string,
    private readonly total: number,
    private readonly stream: NodeJS.WriteStream = process.stderr,
    private readonly quiet = false,
  ) {
    this.tty = Boolean(stream.isTTY);
  }

  update(done: number, extra = ''): void {
    if (this.quiet) return;
    const fraction = this.total ? done / this.total : 1;
    const elapsed = (performance.now() - this.start) / 1000;
    const eta = done > 0 ? (elapsed / done) * (this.total - done) : 0;
    const line = `${this.label} ${bar(fraction)} ${String(Math.round(fraction * 100)).padStart(3)}% ${done}/${this.total} ${extra} ETA ${duration(eta)}`;
    if (this.tty) {
      this.stream.write(`\r${line.slice(0, (this.stream.columns ?? 160) - 1)}\x1b[K`);
    } else {
      const decile = Math.floor(fraction * 10);
      if (decile !== this.lastPrinted) {
        this.lastPrinted = decile;
        this.stream.write(`${line}\n`);
      }
    }
  }

  done(summary: string): void {
    if (this.quiet) return;
    const elapsed = (performance.now() - this.start) / 1000;
    this.stream.write(`${this.tty ? '\r' : ''}${this.label} ${summary} (${duration(elapsed)})${this.tty ? '\x1b[K' : ''}\n`);
  }
}

function bar(fraction: number, width = 20): string {
  const filled = Math.round(Math.min(1, Math.max(0, fraction)) * width);
  return `[${'='.repeat(filled)}${' '.repeat(width - filled)}]`;
}

export function duration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)}s`;
  const m = Math.floor(seconds / 60);
  if (m < 60) return `${m}m${String(Math.round(seconds % 60)).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}
