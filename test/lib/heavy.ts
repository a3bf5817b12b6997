import { spawn, type ChildProcess } from 'node:child_process';

/**
 * The machine-wide lock for CPU-heavy work (QEMU, benchmarks): held by a `flock` child for as
 * long as the returned release function has not been called, so a suite holds it however it
 * was started. Waits at most `timeoutMs` for other holders.
 */
export const HEAVY_LOCK = '/tmp/racksmith-heavy.lock';

export async function heavyLock(timeoutMs = 20 * 60_000): Promise<() => void> {
  // Its own process group, so release ends flock and its sleeping child together, by group id.
  const child: ChildProcess = spawn('flock', ['-w', String(Math.ceil(timeoutMs / 1000)), HEAVY_LOCK, 'sh', '-c', 'echo locked; exec sleep 86400'], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  await new Promise<void>((resolve, reject) => {
    child.stdout?.once('data', () => resolve());
    child.once('exit', (code) => reject(new Error(`could not take ${HEAVY_LOCK} (flock exited ${code})`)));
  });
  child.unref();
  return () => {
    if (child.exitCode === null && child.pid !== undefined) {
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
  };
}
