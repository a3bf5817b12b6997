import type { ChildProcess } from 'node:child_process';

/**
 * Helpers for helper processes that tests and benchmarks start (relays, stand-in servers, peer
 * daemons): wait for the line that says a process is ready, and stop one by PID, politely first.
 */

/** Resolves once the child prints `text` on stdout; rejects if it exits first or takes too long. */
export function untilOutput(child: ChildProcess, text: string, what: string, timeoutMs = 10_000): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let seen = '';
    const timer = setTimeout(() => reject(new Error(`${what} did not start in ${timeoutMs} ms`)), timeoutMs);
    child.stdout?.on('data', (d: Buffer) => {
      // Keep only a tail: the marker may be split across chunks, and output may be long.
      seen = (seen + d.toString()).slice(-1024);
      if (seen.includes(text)) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${what} exited (${code}) before it was ready`));
    });
  });
}

/** SIGTERM, then SIGKILL if the child has not exited after `graceMs`; resolves once it is gone. */
export async function stopChild(child: ChildProcess, graceMs = 5_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  await new Promise<void>((resolve) => {
    const t = setTimeout(() => {
      child.kill('SIGKILL');
      resolve();
    }, graceMs);
    child.once('exit', () => {
      clearTimeout(t);
      resolve();
    });
    child.kill('SIGTERM');
  });
}
