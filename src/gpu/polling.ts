// Waiting without spinning. While any GPU promise is pending, Dawn's Node binding asks for its events again and
// again through globalThis.setImmediate (a TODO in its AsyncRunner, crbug.com/dawn/1127): a busy loop that burns a
// core for as long as the GPU works, and on a software adapter that core is one the GPU's own threads need (the
// hw13-64 step took 2x as long). The binding looks setImmediate up at every call, so the device installs a wrapper:
// the binding's callbacks (anonymous native functions) run as immediates for SPIN_MS after a wait begins, so that
// short waits stay short, then every POLL_MS on a timer, while the main thread sleeps. A callback the binding
// schedules from inside one of its polls continues that wait; any other starts a new one. Everything else gets
// Node's own setImmediate. WGKD_POLL=spin leaves setImmediate alone.
export const SPIN_MS = 0.25;
export const POLL_MS = 1;
const NATIVE_SOURCE = 'function () { [native code] }';

let installed = false;

export function installGentlePolling(): void {
  if (installed || process.env.WGKD_POLL === 'spin') return;
  installed = true;
  const nodeSetImmediate = globalThis.setImmediate;
  let waitStart = 0;
  let polling = false; // inside one of the binding's polls
  const gentleSetImmediate = function (callback: (...args: unknown[]) => void, ...args: unknown[]) {
    if (args.length > 0 || !isBindingCallback(callback)) return nodeSetImmediate(callback, ...args);
    const now = performance.now();
    if (!polling) waitStart = now;
    const poll = () => {
      polling = true;
      try {
        callback();
      } finally {
        polling = false;
      }
    };
    return now - waitStart < SPIN_MS ? nodeSetImmediate(poll) : setTimeout(poll, POLL_MS); // the binding ignores it
  };
  Object.defineProperties(gentleSetImmediate, Object.getOwnPropertyDescriptors(nodeSetImmediate)); // promisify's hook
  globalThis.setImmediate = gentleSetImmediate as unknown as typeof setImmediate;
}

/** The binding's callbacks are made with Napi::Function::New: no name, native source (a bound function is named). */
function isBindingCallback(f: unknown): boolean {
  return typeof f === 'function' && f.name === '' && Function.prototype.toString.call(f) === NATIVE_SOURCE;
}
