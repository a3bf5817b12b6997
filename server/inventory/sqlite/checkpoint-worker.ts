import Database from 'better-sqlite3';
import { parentPort, workerData } from 'node:worker_threads';

/**
 * The SQLite checkpointer's thread (see checkpointer.ts): its own connection to the file, a
 * PASSIVE checkpoint each interval and whenever asked, and a report of each to the main thread.
 * PASSIVE never waits for a lock and never blocks a writer: frames a reader still needs stay in
 * the WAL until the next pass.
 *
 * A long WAL that is wholly copied and has not grown for a whole interval (the writers are
 * quiet) is also truncated here. Otherwise the first commit after a quiet spell restarts it on
 * the main thread: it cuts the file back to journal_size_limit, syncs, and overwrites pages the
 * kernel may be writing back, each a wait on the disk — 100 ms and more for the first boot
 * scripts after ten idle seconds (docs/artifacts.md).
 */
interface Start {
  readonly file: string;
  readonly intervalMs: number;
}

const { file, intervalMs } = workerData as Start;
const db = new Database(file, { fileMustExist: true });
db.pragma('busy_timeout = 0');
db.pragma('wal_autocheckpoint = 0');

/** WAL frames (of 4 KiB) from which a quiet WAL is truncated here rather than restarted by a commit. */
const TRUNCATE_FROM_FRAMES = 1024;
type Checkpoint = { busy: number; log: number; checkpointed: number };
let lastLog = -1;

function pass(): void {
  const started = performance.now();
  try {
    const [r] = db.pragma('wal_checkpoint(PASSIVE)') as Checkpoint[];
    const log = r?.log ?? 0;
    let truncated = false;
    if (log >= TRUNCATE_FROM_FRAMES && r?.checkpointed === log && log === lastLog) {
      // Takes the write lock for the truncation alone (nothing is left to copy); a writer that
      // comes just then waits out its busy timeout, and a reader makes it give up until later.
      const [t] = db.pragma('wal_checkpoint(TRUNCATE)') as Checkpoint[];
      truncated = t?.busy === 0;
    }
    lastLog = truncated ? 0 : log;
    parentPort?.postMessage({ kind: 'pass', ms: performance.now() - started, log: truncated ? 0 : log, checkpointed: r?.checkpointed ?? 0, truncated });
  } catch (err) {
    parentPort?.postMessage({ kind: 'failed', message: err instanceof Error ? err.message : String(err) });
  }
}

const timer = setInterval(pass, intervalMs);
parentPort?.on('message', (m: unknown) => {
  if (m === 'pass') pass();
  if (m === 'close') {
    clearInterval(timer);
    pass();
    db.close();
    parentPort?.postMessage({ kind: 'closed' });
    parentPort?.close();
  }
});
