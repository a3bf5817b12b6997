import { chmodSync, closeSync, constants, fchmodSync, openSync } from 'node:fs';

/**
 * Files only racksmith's user may read: the inventory database and its WAL and shared-memory
 * files hold sealed secrets, BMC users, seed-token hashes and the whole inventory; the lock files
 * say who serves. A file is created 0600 (SQLite creates a database with the process umask, and
 * its -wal/-shm files with the database's mode), and one that already exists — from an older
 * racksmith, a restore, a directory made by hand — is narrowed to 0600.
 */
export const PRIVATE_FILE_MODE = 0o600;

/** Creates the file 0600 if it is missing, and narrows it to 0600 if it is not. */
export function privateFile(path: string): void {
  const fd = openSync(path, constants.O_CREAT | constants.O_RDWR, PRIVATE_FILE_MODE);
  try {
    fchmodSync(fd, PRIVATE_FILE_MODE);
  } catch (err) {
    if (!notOurs(err)) throw err;
  } finally {
    closeSync(fd);
  }
}

/** Another user's file (root's, read through a group): theirs to narrow, not a reason to stop. */
function notOurs(err: unknown): boolean {
  return (err as NodeJS.ErrnoException).code === 'EPERM';
}

/** Narrows the file to 0600 when it exists; a missing file is fine. */
export function narrowIfPresent(path: string): void {
  try {
    chmodSync(path, PRIVATE_FILE_MODE);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT' && !notOurs(err)) throw err;
  }
}

/** SQLite's companions of a database file. */
export const SQLITE_SIDE_FILES = ['-wal', '-shm', '-journal'] as const;
