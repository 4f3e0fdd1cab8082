// The count scripts' side of bench/count.sh's protocol: say WORD on stdout, then wait until FILE exists (the
// driver turns callgrind's instrumentation on or off in between).
import { existsSync } from 'node:fs';

export async function handshake(word: string, file: string): Promise<void> {
  console.log(word);
  while (!existsSync(file)) await new Promise((r) => setTimeout(r, 50));
}
