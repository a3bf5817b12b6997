import { spawn } from 'node:child_process';

/**
 * A file lock (flock(2)) on a file of the test's own — the root filesystem cache's `rootfs.lock`,
 * so two runs never build it twice. Never the machine-wide heavy lock: whoever runs the tests takes
 * that from their shell around the whole command, and a test taking it again would wait for its
 * own ancestor. Node has no flock(2), so a small `flock … cat` process holds the lock for us: it
 * prints a line once it has the lock and keeps it until its stdin closes — which also happens when
 * this Node process dies, so a crashed test never leaves a lock behind.
 */
export interface HeldLock {
  release(): Promise<void>;
}

export class LockTimeoutError extends Error {
  readonly code = 'ERR_LOCK_TIMEOUT';
  constructor(path: string, seconds: number) {
    super(`could not take the lock ${path} within ${seconds} s (someone else holds it)`);
    this.name = 'LockTimeoutError';
  }
}

export async function holdLock(path: string, timeoutSeconds: number): Promise<HeldLock> {
  const child = spawn('flock', ['-w', String(timeoutSeconds), path, '-c', 'echo locked; exec cat'], { stdio: ['pipe', 'pipe', 'pipe'] });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const got = await new Promise<boolean>((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('locked')) resolve(true);
    });
    child.on('error', reject);
    void exited.then(() => resolve(false));
  });
  if (!got) throw new LockTimeoutError(path, timeoutSeconds);
  return {
    async release() {
      child.stdin.end();
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    },
  };
}
