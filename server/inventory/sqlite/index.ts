import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { hashToken, newToken, type SecretBox } from '../../lib/secrets.js';
import type { InventoryEvent } from '../model.js';
import { lookupFeed } from '../directory.js';
import { eventPruneSql, eventQuerySql, firstIdSinceSql } from '../event-query.js';
import type { EventQuery, EventRepo, InventoryLookup, NewEvent, SecretRepo, Store, TokenRepo } from '../store.js';
import { createClusterRepo } from './clusters.js';
import { startCheckpointer, type Checkpointer } from './checkpointer.js';
import { openDb, prepared, type Db } from './db.js';
import { createLeaseRepo } from './leases.js';
import { createInventoryLookup } from './lookup.js';
import { createMachineRepo } from './machines.js';
import { createOrchestrationRepo } from './orchestration.js';
import { eventFromRow, tokenFromRow, type EventRow, type TokenRow } from './rows.js';

export interface SqliteInventoryOptions {
  readonly file: string;
  readonly box: SecretBox;
  readonly now?: () => Date;
  /** Checkpoint the WAL from a worker thread instead of in commits (`serve`; see checkpointer.ts). */
  readonly checkpointInBackground?: boolean;
  readonly onCheckpointFailure?: (message: string) => void;
}

export interface SqliteInventory extends Store {
  readonly engine: 'sqlite';
  /** The raw database, for repositories added by services (leases, orchestration steps). */
  readonly db: Db;
  readonly now: () => Date;
  readonly box: SecretBox;
  /** Appends an event inside the caller's transaction and notifies subscribers after commit. */
  readonly appendEventSync: (e: NewEvent) => InventoryEvent;
  /**
   * Changes whenever anything stored may have changed — a row written through this connection
   * (SQLite's total_changes()) or a commit by another one, such as the CLI (PRAGMA
   * data_version) — so that a response built from the store can be reused while it is equal.
   */
  readonly revision: () => string;
  /** Synchronous reads for the per-datagram DHCP path (the machine directory and its revision). */
  readonly lookup: InventoryLookup;
  /** The background checkpointer's figures, or null when commits checkpoint (SQLite's default). */
  readonly checkpoints: () => ReturnType<Checkpointer['stats']> | null;
}

/** API tokens look like `rs_<43 chars>` so that they are recognisable in a leaked paste. */
export const API_TOKEN_PREFIX = 'rs_';

export function openSqliteInventory(opts: SqliteInventoryOptions): SqliteInventory {
  const db = openDb(opts.file);
  const checkpointer: Checkpointer | null = opts.checkpointInBackground ? startCheckpointer(db, opts.file, { onFailure: opts.onCheckpointFailure }) : null;
  const sql = prepared(db);
  const now = opts.now ?? (() => new Date());
  const emitter = new EventEmitter();
  emitter.setMaxListeners(0);
  const insertEvent = sql<[string, string | null, string | null, string, string | null, string, string | null]>(
    'INSERT INTO events (at, mac, cluster, type, source, message, data) VALUES (?, ?, ?, ?, ?, ?, ?)',
  );

  function appendEventSync(e: NewEvent): InventoryEvent {
    const at = now().toISOString();
    const data = e.data == null ? null : JSON.stringify(e.data);
    const info = insertEvent.run(at, e.mac ?? null, e.cluster ?? null, e.type, e.source ?? null, e.message, data);
    const event: InventoryEvent = {
      id: Number(info.lastInsertRowid),
      at,
      mac: e.mac ?? null,
      cluster: e.cluster ?? null,
      type: e.type,
      source: e.source ?? null,
      message: e.message,
      data: e.data ?? null,
    };
    // Subscribers hear of the event once its transaction has committed (or at once, outside one).
    if (db.inTransaction) pending.push(event);
    else emitter.emit('event', event);
    return event;
  }

  // Events appended inside a transaction wait here; flushed after each top-level write.
  const pending: InventoryEvent[] = [];
  const flush = (): void => {
    if (db.inTransaction) return;
    for (const e of pending.splice(0)) emitter.emit('event', e);
  };
  const rolledBack = (): void => {
    pending.length = 0;
  };

  const events: EventRepo = {
    async append(e) {
      return appendEventSync(e);
    },
    async list(q: EventQuery) {
      const { text, values, newest } = eventQuerySql(q, () => '?');
      const rows = sql<unknown[], EventRow>(text).all(...values);
      if (newest) rows.reverse();
      return rows.map(eventFromRow);
    },
    async latestId() {
      return db.prepare<[], { id: number | null }>('SELECT MAX(id) AS id FROM events').get()?.id ?? 0;
    },
    async firstIdSince(at) {
      const { text, values } = firstIdSinceSql(at, () => '?');
      return sql<unknown[], { id: number }>(text).get(...values)?.id ?? 1;
    },
    async prune(belowId, types, limit) {
      const { text, values } = eventPruneSql(belowId, types, limit, () => '?');
      return sql<unknown[]>(text).run(...values).changes;
    },
    subscribe(listener) {
      emitter.on('event', listener);
      return () => emitter.off('event', listener);
    },
  };

  const tokens: TokenRepo = {
    async create(role, name) {
      const token = newToken(API_TOKEN_PREFIX);
      const id = randomUUID();
      const createdAt = now().toISOString();
      sql('INSERT INTO api_tokens (id, name, role, hash, created_at) VALUES (?, ?, ?, ?, ?)').run(id, name, role, hashToken(token), createdAt);
      return { token, info: { id, name, role, createdAt } };
    },
    async verify(token) {
      const row = sql<[string], TokenRow>('SELECT * FROM api_tokens WHERE hash = ? AND revoked_at IS NULL').get(hashToken(token));
      return row ? tokenFromRow(row) : null;
    },
    async list() {
      return sql<[], TokenRow>('SELECT * FROM api_tokens WHERE revoked_at IS NULL ORDER BY created_at').all().map(tokenFromRow);
    },
    async revoke(id) {
      sql('UPDATE api_tokens SET revoked_at = ? WHERE id = ?').run(now().toISOString(), id);
    },
  };

  const secrets: SecretRepo = {
    async get(scope, name) {
      const row = sql<[string, string], { sealed: string }>('SELECT sealed FROM secrets WHERE scope = ? AND name = ?').get(scope, name);
      return row ? opts.box.open(row.sealed) : null;
    },
    async put(scope, name, value) {
      sql(
        `INSERT INTO secrets (scope, name, sealed, updated_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (scope, name) DO UPDATE SET sealed = excluded.sealed, updated_at = excluded.updated_at`,
      ).run(scope, name, opts.box.seal(value), now().toISOString());
    },
    async putIfAbsent(scope, name, value) {
      return db
        .transaction(() => {
          db.prepare('INSERT INTO secrets (scope, name, sealed, updated_at) VALUES (?, ?, ?, ?) ON CONFLICT (scope, name) DO NOTHING').run(
            scope,
            name,
            opts.box.seal(value),
            now().toISOString(),
          );
          const row = db.prepare<[string, string], { sealed: string }>('SELECT sealed FROM secrets WHERE scope = ? AND name = ?').get(scope, name);
          if (!row) throw new Error(`secret ${scope}/${name} vanished inside its own transaction`);
          return opts.box.open(row.sealed);
        })
        .immediate();
    },
    async delete(scope, name) {
      if (name === undefined) sql('DELETE FROM secrets WHERE scope = ?').run(scope);
      else sql('DELETE FROM secrets WHERE scope = ? AND name = ?').run(scope, name);
    },
  };

  const clusters = withFlush(createClusterRepo(db, now, appendEventSync), flush, rolledBack);
  const machines = withFlush(createMachineRepo({ db, box: opts.box, now, appendEvent: appendEventSync }), flush, rolledBack);
  const leases = createLeaseRepo(db);

  const totalChanges = sql<[], number>('SELECT total_changes()').pluck();
  const dataVersion = sql<[], number>('PRAGMA data_version').pluck();

  const lookup = createInventoryLookup(db);
  return {
    engine: 'sqlite',
    db,
    now,
    orchestration: createOrchestrationRepo(db, now),
    machineFeed: () => lookupFeed(lookup),
    database: () => ({ engine: 'sqlite', state: 'ok', since: null, reason: null }),
    revision: () => `${totalChanges.get()}.${dataVersion.get()}`,
    lookup,
    box: opts.box,
    appendEventSync,
    clusters,
    machines,
    events,
    tokens,
    secrets,
    leases,
    checkpoints: () => checkpointer?.stats() ?? null,
    async close() {
      await checkpointer?.close();
      if (db.open) db.close();
    },
  };
}

/** Wraps each async repository method so that queued events go out after it returns (or are dropped if it threw). */
function withFlush<T extends object>(repo: T, flush: () => void, rolledBack: () => void): T {
  const out: Record<string, unknown> = {};
  for (const [key, fn] of Object.entries(repo)) {
    out[key] =
      typeof fn === 'function'
        ? async (...args: unknown[]) => {
            try {
              const result = await (fn as (...a: unknown[]) => Promise<unknown>)(...args);
              flush();
              return result;
            } catch (err) {
              rolledBack();
              throw err;
            }
          }
        : fn;
  }
  return out as T;
}
