import { Socket } from 'node:net';
import pg from 'pg';
import { dropEvents, flushEvents, holdEvents } from './events.js';
import { PG_MIGRATIONS, type PgMigration } from './migrations.js';
import { waitAtMost } from '../../lib/sleep.js';
import { DatabaseUnavailableError, asUnavailable } from '../unavailable.js';

/** A connection that can run a query: the pool itself or one client inside a transaction. */
export interface Queryable {
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(text: string, values?: readonly unknown[]): Promise<pg.QueryResult<R>>;
}

export interface PgDb {
  readonly pool: pg.Pool;
  /** The pool as a Queryable (one statement on any connection), for code shared with transactions. */
  readonly any: Queryable;
  /** One statement on any pooled connection (its own transaction). */
  one<R extends pg.QueryResultRow>(text: string, values?: readonly unknown[]): Promise<R | null>;
  all<R extends pg.QueryResultRow>(text: string, values?: readonly unknown[]): Promise<R[]>;
  run(text: string, values?: readonly unknown[]): Promise<number>;
  /**
   * Runs `fn` in one transaction on one client: committed when it returns, rolled back when it
   * throws. A serialization failure or deadlock (another instance wrote the same rows at the same
   * moment) runs it again, a few times, before the error reaches the caller. The events `fn`
   * appends are inserted together just before COMMIT (events.ts says why).
   */
  tx<T>(fn: (c: Queryable) => Promise<T>): Promise<T>;
  /** Ends the pool: its connections are given `waitMs` (default 5 s) to end gracefully, then cut. */
  close(waitMs?: number): Promise<void>;
}

// BIGINT (events.id, counts) as a JS number: ids stay far below 2^53.
pg.types.setTypeParser(pg.types.builtins.INT8, (v) => Number(v));

const RETRYABLE = new Set(['40001', '40P01']);
const QUERY_TIMEOUT_MS = 60_000;
/** How long closing waits for the pool's connections to end gracefully. */
const CLOSE_WAIT_MS = 5_000;
const TX_ATTEMPTS = 5;

export interface PgOptions {
  readonly url: string;
  /** Connections in the pool (the DHCP lease commits, the API and the boot path share them). */
  readonly max?: number;
  readonly migrations?: readonly PgMigration[];
  /** application_name, so `pg_stat_activity` names each instance's connections. */
  readonly applicationName?: string;
}

/** Opens a pool to the site's PostgreSQL and brings the schema to this racksmith's version. */
export async function openPg(opts: PgOptions): Promise<PgDb> {
  // The pool's sockets, so that closing can end them: a connection to a host that went quiet
  // (a failover that moved its address) would otherwise keep the process alive for minutes.
  const sockets = new Set<Socket>();
  const pool = new pg.Pool({
    stream: () => {
      const s = new Socket();
      sockets.add(s);
      s.once('close', () => sockets.delete(s));
      return s;
    },
    // Dead peers found on idle connections too, and no statement waits longer than this for an
    // answer (none of racksmith's takes more than a few seconds).
    keepAlive: true,
    query_timeout: QUERY_TIMEOUT_MS,
    connectionString: opts.url,
    max: opts.max ?? 10,
    application_name: opts.applicationName ?? 'racksmith',
    // A database that does not answer within this is reported, not waited on forever.
    connectionTimeoutMillis: 10_000,
    idleTimeoutMillis: 30_000,
  });
  // An idle client losing its connection (a failover, a restart of PostgreSQL) must not crash
  // the process: the pool drops it and the next query opens a new one.
  pool.on('error', () => undefined);
  // A database that cannot be reached now is ERR_DATABASE_UNAVAILABLE for every caller (unavailable.ts).
  const any: Queryable = { query: (text, values) => pool.query(text, values as unknown[] | undefined).catch(rethrow) };
  const db: PgDb = {
    pool,
    any,
    async one(text, values) {
      return ((await any.query(text, values)).rows[0] as never) ?? null;
    },
    async all(text, values) {
      return (await any.query(text, values)).rows as never;
    },
    async run(text, values) {
      return (await any.query(text, values)).rowCount ?? 0;
    },
    tx: (fn) => transaction(pool, fn).catch(rethrow),
    async close(waitMs = CLOSE_WAIT_MS) {
      await waitAtMost(pool.end(), waitMs);
      for (const s of sockets) s.destroy();
    },
  };
  try {
    await migratePg(db, opts.migrations ?? PG_MIGRATIONS);
  } catch (err) {
    await db.close().catch(() => undefined);
    // At start the operator needs where it tried and what the driver said.
    if (err instanceof DatabaseUnavailableError) throw new Error(`PostgreSQL at ${where(opts.url)} is unavailable: ${errorText(err.cause)}`);
    throw err;
  }
  return db;
}

/** PgDb.tx: one client, BEGIN … COMMIT, again on a serialization failure or deadlock. */
async function transaction<T>(pool: pg.Pool, fn: (c: Queryable) => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    const client = await pool.connect();
    let broken = false;
    try {
      await client.query('BEGIN');
      holdEvents(client);
      const result = await fn(client as Queryable);
      await flushEvents(client);
      await client.query('COMMIT');
      return result;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {
        broken = true;
      });
      if (attempt < TX_ATTEMPTS && RETRYABLE.has((err as { code?: string }).code ?? '')) continue;
      throw err;
    } finally {
      dropEvents(client);
      client.release(broken);
    }
  }
}

function rethrow(err: unknown): never {
  throw asUnavailable(err);
}

function errorText(err: unknown): string {
  if (err instanceof AggregateError) return err.errors.map(errorText).join('; ');
  return err instanceof Error ? err.message : String(err);
}

/** The URL's host, port and database, without its user and password. */
function where(url: string): string {
  try {
    const u = new URL(url);
    const host = u.searchParams.get('host') ?? (u.hostname || 'localhost');
    return `${host}:${u.searchParams.get('port') ?? (u.port || '5432')}${u.pathname}`;
  } catch {
    return 'the configured --database-url';
  }
}

/** Any fixed number: the migration lock, held for the length of one migration transaction. */
const MIGRATION_LOCK = 0x7261636b; // "rack"

/**
 * Applies the migrations this database lacks, each in its own transaction under an advisory
 * lock, so that two instances starting together apply each one once. The applied version is
 * one row in `racksmith_schema` (SQLite keeps it in `user_version`); the numbers are the same
 * on both engines.
 */
export async function migratePg(db: PgDb, migrations: readonly PgMigration[]): Promise<void> {
  const latest = migrations.reduce((max, m) => Math.max(max, m.version), 0);
  await db.tx(async (c) => {
    await c.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
    await c.query('CREATE TABLE IF NOT EXISTS racksmith_schema (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL)');
    await c.query('INSERT INTO racksmith_schema (id, version) VALUES (1, 0) ON CONFLICT (id) DO NOTHING');
  });
  for (const m of [...migrations].sort((a, b) => a.version - b.version)) {
    await db.tx(async (c) => {
      await c.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
      const current = (await c.query<{ version: number }>('SELECT version FROM racksmith_schema WHERE id = 1')).rows[0]?.version ?? 0;
      if (current > latest) throw new Error(`the database schema is version ${current}, newer than this racksmith (${latest}); upgrade racksmith`);
      if (m.version <= current) return;
      await c.query(m.sql);
      await c.query('UPDATE racksmith_schema SET version = $1 WHERE id = 1', [m.version]);
    });
  }
}

/** The schema version the database is at (0 for an empty one). */
export async function pgSchemaVersion(db: PgDb): Promise<number> {
  return (await db.one<{ version: number }>('SELECT version FROM racksmith_schema WHERE id = 1'))?.version ?? 0;
}

/** A PostgreSQL unique violation's column, read from its constraint name (`machines_ip_key` → `ip`). */
export function pgConstraintField(err: unknown): string | null {
  const e = err as { code?: string; constraint?: string; table?: string };
  if (e.code !== '23505' || !e.constraint) return null;
  const m = /^[a-z_]+?_([a-z_]+)_key$/.exec(e.constraint);
  if (!m) return null;
  const rest = e.table && e.constraint.startsWith(e.table + '_') ? e.constraint.slice(e.table.length + 1, -'_key'.length) : m[1]!;
  return rest;
}
