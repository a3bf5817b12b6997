import Database from 'better-sqlite3';
import { narrowIfPresent, privateFile, SQLITE_SIDE_FILES } from '../../lib/private-file.js';
import { MIGRATIONS, type Migration } from './migrations.js';

export type Db = Database.Database;

export const DB_FILE = 'racksmith.db';

/**
 * Opens the inventory database: WAL (readers never block the writer; a crash loses nothing that
 * was committed), foreign keys on, a busy timeout so a CLI command and the server can share it.
 */
export function openDb(file: string, migrations: readonly Migration[] = MIGRATIONS): Db {
  // 0600 before SQLite opens it: its -wal and -shm files are then created with the same mode.
  privateFile(file);
  for (const side of SQLITE_SIDE_FILES) narrowIfPresent(file + side);
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  for (const side of SQLITE_SIDE_FILES) narrowIfPresent(file + side);
  // NORMAL in WAL mode: a commit survives a process crash (kill -9); only an OS crash may lose
  // the last transactions. Each lease and state change is one commit.
  db.pragma('synchronous = NORMAL');
  db.pragma('foreign_keys = ON');
  db.pragma('busy_timeout = 5000');
  migrate(db, migrations);
  return db;
}

export function migrate(db: Db, migrations: readonly Migration[]): void {
  const current = db.pragma('user_version', { simple: true }) as number;
  const latest = migrations.reduce((max, m) => Math.max(max, m.version), 0);
  if (current > latest) {
    throw new Error(`the database schema is version ${current}, newer than this racksmith (${latest}); upgrade racksmith`);
  }
  for (const m of [...migrations].sort((a, b) => a.version - b.version)) {
    if (m.version <= current) continue;
    db.transaction(() => {
      db.exec(m.sql);
      db.pragma(`user_version = ${m.version}`);
    }).immediate();
  }
}

const STATEMENT_CACHE_SIZE = 500;
const caches = new WeakMap<Db, Map<string, Database.Statement>>();

/**
 * `db.prepare`, memoised by SQL text (per database, at most 500 statements): repositories write
 * their SQL where it is used and still parse it once. Hot paths — the token check of every API
 * request, each row of a 5,000-row import, each boot step — would otherwise re-prepare each time.
 */
export function prepared(db: Db): Db['prepare'] {
  let cache = caches.get(db);
  if (!cache) {
    cache = new Map();
    caches.set(db, cache);
  }
  const statements = cache;
  return ((source: string) => {
    let st = statements.get(source);
    if (!st) {
      st = db.prepare(source);
      statements.set(source, st);
      if (statements.size > STATEMENT_CACHE_SIZE) statements.delete(statements.keys().next().value as string);
    }
    return st;
  }) as Db['prepare'];
}
