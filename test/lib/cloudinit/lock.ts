import { spawn } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';

/**
 * File locks shared with shell users of the same files (`flock /tmp/racksmith-heavy.lock …`).
 * Node has no flock(2), so a small `flock … cat` process holds the lock for us: it prints a line
 * once it has the lock and keeps it until its stdin closes — which also happens when this Node
 * process dies, so a crashed test never leaves a lock behind.
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

/** The machine-wide lock for CPU-heavy work (see the helper brief); shells use `flock` on it. */
export const HEAVY_LOCK = '/tmp/racksmith-heavy.lock';

/** The parent of a process, from /proc/<pid>/stat (the field after the parenthesised name). */
function parentOf(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    return Number.isInteger(ppid) && ppid > 0 ? ppid : null;
  } catch {
    return null;
  }
}

/** This process and its ancestors up to init. */
export function ancestry(pid = process.pid): Set<number> {
  const out = new Set<number>();
  for (let p: number | null = pid; p !== null && !out.has(p) && out.size < 256; p = parentOf(p)) out.add(p);
  return out;
}

/** PIDs holding a flock on `path`, from /proc/locks (matched by device and inode). */
export function flockHolders(path: string, locks = readFileSync('/proc/locks', 'utf8')): number[] {
  let st;
  try {
    st = statSync(path);
  } catch {
    return [];
  }
  const inode = String(st.ino);
  const out: number[] = [];
  for (const line of locks.split('\n')) {
    // "1: FLOCK  ADVISORY  WRITE 12345 fe:00:2147394 0 EOF"
    const f = line.trim().split(/\s+/);
    if (f[1] !== 'FLOCK' || !f[4] || !f[5]) continue;
    if (f[5].split(':')[2] === inode) out.push(Number(f[4]));
  }
  return out;
}

/**
 * Takes the machine-wide heavy lock — unless one of this process's ancestors already holds it
 * (`flock /tmp/racksmith-heavy.lock npm test`): taking it again from a child would wait for its
 * own parent forever.
 */
export async function holdHeavyLock(timeoutSeconds: number): Promise<HeldLock> {
  const mine = ancestry();
  if (flockHolders(HEAVY_LOCK).some((pid) => mine.has(pid))) return { release: async () => undefined };
  return holdLock(HEAVY_LOCK, timeoutSeconds);
}
