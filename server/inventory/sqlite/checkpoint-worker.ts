import Database from 'better-sqlite3';
import { parentPort, workerData } from 'node:worker_threads';

/**
 * The SQLite checkpointer's thread (see checkpointer.ts): its own connection to the file, a
 * PASSIVE checkpoint each interval and whenever asked, and a report of each to the main thread.
 * PASSIVE never waits for a lock and never blocks a writer: frames a reader still needs stay in
 * the WAL until the next pass.
 *
 * A WAL that is wholly copied and has not grown for a whole interval (the writers are quiet) is
 * restarted here (`prime`), a long one truncated first. Otherwise the first commit after a quiet
 * spell restarts it on the main thread: it writes and syncs a new header, and with a long WAL it
 * cuts the file back to journal_size_limit and overwrites pages the kernel may be writing back,
 * each a wait on the disk — 100 ms and more for the first boot scripts after ten idle seconds
 * (docs/artifacts.md).
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
/** The connection's data_version when this thread last primed the WAL (below), else null. */
let primedVersion: number | null = null;

/**
 * Restarts a wholly copied WAL here, with one write of our own (the schema version, unchanged),
 * so that the next commit of the event loop appends to it instead: the commit that restarts a WAL
 * writes a new header and syncs it, a wait on the disk (with the filesystem's journal) for the
 * first boot scripts after a quiet spell. Until another connection commits, passes copy nothing
 * (copying this frame would leave the WAL wholly copied again). Busy: the writers are back, and
 * their next commit appends anyway. A commit that comes during this one waits for it, as for a
 * truncation: once per quiet spell, about a millisecond on a local disk.
 */
function prime(): boolean {
  try {
    db.transaction(() => {
      const version = db.pragma('user_version', { simple: true }) as number;
      db.pragma(`user_version = ${version}`);
    }).immediate();
  } catch (err) {
    if ((err as { code?: string }).code === 'SQLITE_BUSY') return false;
    throw err;
  }
  primedVersion = db.pragma('data_version', { simple: true }) as number;
  lastLog = -1;
  return true;
}

function pass(closing = false): void {
  const started = performance.now();
  try {
    if (!closing && primedVersion !== null && primedVersion === db.pragma('data_version', { simple: true })) {
      parentPort?.postMessage({ kind: 'pass', ms: performance.now() - started, log: null, checkpointed: 0, truncated: false, primed: false });
      return;
    }
    primedVersion = null;
    const [r] = db.pragma('wal_checkpoint(PASSIVE)') as Checkpoint[];
    const log = r?.log ?? 0;
    const quiet = r?.checkpointed === log && log === lastLog;
    let truncated = false;
    if (quiet && log >= TRUNCATE_FROM_FRAMES) {
      // Takes the write lock for the truncation alone (nothing is left to copy); a writer that
      // comes just then waits out its busy timeout, and a reader makes it give up until later.
      const [t] = db.pragma('wal_checkpoint(TRUNCATE)') as Checkpoint[];
      truncated = t?.busy === 0;
    }
    lastLog = truncated ? 0 : log;
    const primed = quiet && !closing && prime();
    parentPort?.postMessage({ kind: 'pass', ms: performance.now() - started, log: truncated ? 0 : log, checkpointed: r?.checkpointed ?? 0, truncated, primed });
  } catch (err) {
    parentPort?.postMessage({ kind: 'failed', message: err instanceof Error ? err.message : String(err) });
  }
}

const timer = setInterval(() => pass(), intervalMs);
parentPort?.on('message', (m: unknown) => {
  if (m === 'pass') pass();
  if (m === 'close') {
    clearInterval(timer);
    pass(true);
    db.close();
    parentPort?.postMessage({ kind: 'closed' });
    parentPort?.close();
  }
});
