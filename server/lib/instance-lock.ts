import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { narrowIfPresent, PRIVATE_FILE_MODE, privateFile, SQLITE_SIDE_FILES } from './private-file.js';

/**
 * One serving racksmith per data directory. The lock is an exclusive SQLite transaction on a
 * small file: the kernel drops it when the process dies (even on kill -9), so a crash never leaves
 * a stale lock, and PID reuse cannot fool it. The PID file is only for the message.
 */
export interface InstanceLock {
  release(): void;
}

export class InstanceLockedError extends Error {
  constructor(dataDir: string, pid: string) {
    super(`data directory ${dataDir} is in use by another racksmith${pid ? ` (pid ${pid})` : ''}; stop it or use another --data-dir`);
    this.name = 'InstanceLockedError';
  }
}

export function acquireInstanceLock(dataDir: string): InstanceLock {
  const file = join(dataDir, 'racksmith.lock');
  const pidFile = join(dataDir, 'racksmith.pid');
  privateFile(file);
  const db = new Database(file, { timeout: 0 });
  try {
    db.pragma('locking_mode = EXCLUSIVE');
    db.exec('BEGIN EXCLUSIVE');
  } catch (err) {
    db.close();
    if ((err as { code?: string }).code === 'SQLITE_BUSY') {
      let pid = '';
      try {
        pid = readFileSync(pidFile, 'utf8').trim();
      } catch {
        /* no pid file: fine */
      }
      throw new InstanceLockedError(dataDir, pid);
    }
    throw err;
  }
  writeFileSync(pidFile, `${process.pid}\n`, { mode: PRIVATE_FILE_MODE });
  narrowIfPresent(pidFile);
  for (const side of SQLITE_SIDE_FILES) narrowIfPresent(file + side);
  return {
    release() {
      if (db.open) {
        db.exec('ROLLBACK');
        db.close();
      }
    },
  };
}
