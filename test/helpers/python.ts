// Runs Debian's Python (with PyTorch) from tests. A missing PyTorch is a failing test with the setup hint, never a
// silent skip: tools/setup.sh (and .ci/run) install python3-torch and python3-torchvision.
import { spawn, spawnSync } from 'node:child_process';

export const PYTHON = '/usr/bin/python3';
export const TORCH_HINT = 'install python3-torch python3-torchvision (Debian) — .ci/run does';

/** Throws with TORCH_HINT when `/usr/bin/python3 -c 'import torch, torchvision'` fails. */
export function requireTorch(): void {
  const r = spawnSync(PYTHON, ['-c', 'import torch, torchvision'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) {
    const why = r.error ? r.error.message : (r.stderr.trim().split('\n').at(-1) ?? `exit ${r.status}`);
    throw new Error(`PyTorch is not available to ${PYTHON} (${why}): ${TORCH_HINT}`);
  }
}

export interface PythonResult {
  stdout: string;
  stderr: string;
}

/**
 * Runs `python3 args...` (asynchronously, so other work can overlap); rejects with its stderr on a non-zero exit.
 * `cwd` defaults to the repository root (the tests run there).
 */
export function runPython(args: string[], options: { cwd?: string; input?: string } = {}): Promise<PythonResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(PYTHON, args, { cwd: options.cwd, env: { ...process.env, OMP_NUM_THREADS: process.env.OMP_NUM_THREADS ?? '2', PYTHONDONTWRITEBYTECODE: '1' } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolve({ stdout, stderr });
      else reject(new Error(`${PYTHON} ${args.join(' ')} exited with ${code}:\n${stderr || stdout}`));
    });
    if (options.input !== undefined) child.stdin.end(options.input);
    else child.stdin.end();
  });
}
