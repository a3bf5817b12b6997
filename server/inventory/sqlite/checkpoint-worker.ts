import Database from 'better-sqlite3';
import { parentPort, workerData } from 'node:worker_threads';

/**
 * The SQLite checkpointer's thread (see checkpointer.ts): its own connection to the file, a
 * PASSIVE checkpoint each interval and whenever asked, and a report of each to the main thread.
 * PASSIVE never waits for a lock and never blocks a writer: frames a reader still needs stay in
 * the WAL until the next pass.
 */
interface Start {
  readonly file: string;
  readonly intervalMs: number;
}

const { file, intervalMs } = workerData as Start;
const db = new Database(file, { fileMustExist: true });
db.pragma('busy_timeout = 0');
db.pragma('wal_autocheckpoint = 0');

function pass(): void {
  const started = performance.now();
  try {
    const [r] = db.pragma('wal_checkpoint(PASSIVE)') as { busy: number; log: number; checkpointed: number }[];
    parentPort?.postMessage({ kind: 'pass', ms: performance.now() - started, log: r?.log ?? 0, checkpointed: r?.checkpointed ?? 0 });
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
