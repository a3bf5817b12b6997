import { Worker } from 'node:worker_threads';
import type { Db } from './db.js';

/**
 * WAL checkpoints off the event loop. SQLite checkpoints in whichever connection's commit
 * crosses 1,000 WAL pages: that commit then copies the pages into the database file and fsyncs
 * it — 40 ms on the main thread once a second under a boot-script burst, which every request in
 * flight waited for (docs/artifacts.md). `serve` turns that off on its connection and a worker
 * thread with a connection of its own checkpoints instead; the main thread only appends to the
 * WAL. CLI commands keep SQLite's default: they are short and write little.
 */
export interface Checkpointer {
  /** Passes run, their total time, failures (a failure is retried at the next pass), quiet WALs truncated and restarted here. */
  stats(): { passes: number; ms: number; failures: number; lastFailure: string | null; walFrames: number; truncations: number; primes: number };
  /** A last pass, then the worker's connection closes. */
  close(): Promise<void>;
}

export interface CheckpointerOptions {
  readonly intervalMs?: number;
  readonly onFailure?: (message: string) => void;
}

export function startCheckpointer(db: Db, file: string, opts: CheckpointerOptions = {}): Checkpointer {
  db.pragma('wal_autocheckpoint = 0');
  // No size limit on this connection: a commit that restarts a WAL longer than the limit would
  // cut it back itself, on the event loop (an ftruncate, with the filesystem's discards). The
  // thread truncates a long WAL instead, once the writers are quiet (checkpoint-worker.ts).
  db.pragma('journal_size_limit = -1');
  const worker = new Worker(new URL('./checkpoint-worker.js', import.meta.url), { workerData: { file, intervalMs: opts.intervalMs ?? 1000 } });
  const s = { passes: 0, ms: 0, failures: 0, lastFailure: null as string | null, walFrames: 0, truncations: 0, primes: 0 };
  let closed: Promise<void> | null = null;
  let onClosed: (() => void) | null = null;
  let closing = false;
  worker.on('message', (m: { kind: string; ms?: number; log?: number | null; truncated?: boolean; primed?: boolean; message?: string }) => {
    if (m.kind === 'pass') {
      s.passes++;
      s.ms += m.ms ?? 0;
      // null: a pass with nothing to copy since this thread restarted the WAL.
      if (m.log !== null) s.walFrames = m.log ?? 0;
      if (m.truncated) s.truncations++;
      if (m.primed) s.primes++;
    } else if (m.kind === 'failed') {
      s.failures++;
      s.lastFailure = m.message ?? null;
      opts.onFailure?.(s.lastFailure ?? 'checkpoint failed');
    } else if (m.kind === 'closed') onClosed?.();
  });
  // A thread that cannot start or dies leaves checkpointing to SQLite's default again.
  const fallBack = (err: unknown): void => {
    s.failures++;
    s.lastFailure = err instanceof Error ? err.message : String(err);
    opts.onFailure?.(s.lastFailure);
    if (db.open) db.pragma('wal_autocheckpoint = 1000');
    onClosed?.();
  };
  worker.on('error', fallBack);
  worker.on('exit', (code) => (closing ? onClosed?.() : fallBack(new Error(`the checkpoint thread exited (${code})`))));
  // After the listeners: adding a 'message' listener refs the worker again, and a store that was
  // never closed (a failed start, a failed test) would then keep the process from exiting.
  worker.unref();
  return {
    stats: () => ({ ...s }),
    close() {
      closing = true;
      closed ??= new Promise<void>((resolve) => {
        const timer = setTimeout(() => void worker.terminate().then(() => resolve()), 5_000);
        onClosed = () => {
          clearTimeout(timer);
          resolve();
        };
        worker.postMessage('close');
      });
      return closed;
    },
  };
}
