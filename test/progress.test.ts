// Progress output: a bar redrawn in place on a terminal (green unless NO_COLOR), plain lines in logs and pipes.
import { describe, expect, it } from 'vitest';
import { Progress } from '../src/index.js';

function capture(isTTY: boolean, env: Record<string, string | undefined>): string {
  let text = '';
  const stream = { isTTY, columns: 200, write: (s: string) => (text += s) };
  const p = new Progress('epoch 1/1', 20, stream, false, env);
  for (let done = 0; done <= 20; done++) p.update(done, 'loss 0.5');
  p.done('accuracy 0.9');
  return text;
}

describe('Progress', () => {
  it('writes one plain line per 10% when the stream is not a terminal: no carriage returns, no escape codes', () => {
    const text = capture(false, {});
    expect(text).not.toMatch(/[\r\x1b]/);
    const lines = text.trim().split('\n');
    expect(lines).toHaveLength(12); // 0%, 10%, ..., 100%, then the summary
    expect(lines[5]).toMatch(/^epoch 1\/1 +50% 10\/20 loss 0\.5 ETA /);
    expect(lines[11]).toMatch(/^epoch 1\/1 accuracy 0\.9 \(/);
  });
  it('redraws a bar on a terminal, in colour', () => {
    const text = capture(true, { TERM: 'xterm' });
    expect(text).toContain('\r');
    expect(text).toContain('\x1b[32m');
    expect(text).toMatch(/\[\x1b\[32m=+\x1b\[0m {0,20}\] +100%/);
  });
  it('honours NO_COLOR (a bar, no colour) and TERM=dumb (plain lines)', () => {
    const noColor = capture(true, { TERM: 'xterm', NO_COLOR: '1' });
    expect(noColor).toContain('\r');
    expect(noColor).not.toMatch(/\x1b\[\d+m/);
    expect(capture(true, { TERM: 'dumb' })).not.toMatch(/[\r\x1b]/);
  });
});
