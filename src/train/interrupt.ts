// Ctrl-C and kill: the first SIGINT or SIGTERM asks the training loop to stop after the current step (it then
// writes last.safetensors at that exact position and says how to resume); a second one quits at once (the last
// checkpoint on disk is whole either way: checkpoints are written atomically).
const SIGNAL_NUMBERS: Record<string, number> = { SIGINT: 2, SIGTERM: 15 };

/** The exit status of a process stopped by `signal`, as shells report it (128 + the signal number). */
export function exitCodeFor(signal: NodeJS.Signals): number {
  return 128 + (SIGNAL_NUMBERS[signal] ?? 1);
}

export class Interruptions {
  /** The first signal received, or null. */
  signal: NodeJS.Signals | null = null;

  private readonly onSignal = (signal: NodeJS.Signals): void => {
    if (this.signal) {
      process.stderr.write(`\n${signal} again: quitting now (the last checkpoint written is intact)\n`);
      process.exit(exitCodeFor(signal));
    }
    this.signal = signal;
    process.stderr.write(`\n${signal}: finishing the current step, then writing last.safetensors (${signal === 'SIGINT' ? 'Ctrl-C' : 'send it'} again to quit at once)\n`);
  };

  install(): this {
    for (const s of Object.keys(SIGNAL_NUMBERS)) process.on(s, this.onSignal);
    return this;
  }

  remove(): void {
    for (const s of Object.keys(SIGNAL_NUMBERS)) process.off(s, this.onSignal);
  }
}

/** What train() throws after an interruption, once last.safetensors holds the position it stopped at. */
export class TrainingInterrupted extends Error {
  constructor(
    readonly signal: NodeJS.Signals,
    message: string,
  ) {
    super(message);
    this.name = 'TrainingInterrupted';
  }

  get exitCode(): number {
    return exitCodeFor(this.signal);
  }
}
