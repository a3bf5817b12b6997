import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { hashToken, newToken, type SecretBox } from '../../lib/secrets.js';
import { waitAtMost } from '../../lib/sleep.js';
import type { EventQuery, EventRepo, NewEvent, SecretRepo, Store, TokenRepo } from '../store.js';
import { eventFromRow, tokenFromRow, type EventRow, type TokenRow } from '../sqlite/rows.js';
import { API_TOKEN_PREFIX } from '../sqlite/index.js';
import { eventPruneSql, eventQuerySql, firstIdSinceSql } from '../event-query.js';
import { createPgClusterRepo } from './clusters.js';
import { openPg, type PgDb } from './db.js';
import { GroupCommit } from './group-commit.js';
import { appendEvent as appendEventIn, type EventRef } from './events.js';
import { createPgMachineFeed, type PgMachineFeed } from './feed.js';
import { createPgLeaseRepo } from './leases.js';
import { listenForChanges, type ChangeListener } from './listen.js';
import { createPgMachineRepo } from './machines.js';
import { createPgOrchestrationRepo } from './orchestration.js';

export interface PgStoreOptions {
  /** postgres://user:password@host:port/database (libpq's URL form). */
  readonly url: string;
  readonly box: SecretBox;
  readonly now?: () => Date;
  /** Names this instance's connections in `pg_stat_activity`. */
  readonly instanceName?: string;
  /** Connections in the pool (default 10). */
  readonly poolSize?: number;
  /** The database stopped answering (why, in words) / answers again: for the server's log. */
  readonly onDatabaseLost?: (reason: string) => void;
  readonly onDatabaseBack?: () => void;
}

export interface PgStore extends Store {
  readonly engine: 'postgres';
  readonly db: PgDb;
  readonly box: SecretBox;
}

/** How often the event reader looks without being told (a notification lost to a broken connection). */
const EVENT_POLL_MS = 2_000;
const EVENT_BATCH = 1_000;
/** How long closing waits for the last commits and events before it lets go. */
const CLOSE_WAIT_MS = 3_000;

/**
 * The store on a PostgreSQL database that several racksmith instances share. Every instance
 * hears every other's writes through LISTEN/NOTIFY (the triggers of migration 1): its event
 * subscribers get every event in id order, its DHCP machine directory stays current, and its
 * responses' revision moves.
 */
export async function openPgStore(opts: PgStoreOptions): Promise<PgStore> {
  const name = opts.instanceName ? `racksmith ${opts.instanceName}` : 'racksmith';
  const db = await openPg({ url: opts.url, applicationName: name.slice(0, 63), ...(opts.poolSize ? { max: opts.poolSize } : {}) });
  try {
    return await storeOn(db, opts, name);
  } catch (err) {
    // A store that fails to open leaves no connection behind (a caller may try again).
    await db.close().catch(() => undefined);
    throw err;
  }
}

async function storeOn(db: PgDb, opts: PgStoreOptions, name: string): Promise<PgStore> {
  const now = opts.now ?? (() => new Date());
  const appendEvent = (c: Parameters<typeof appendEventIn>[0], e: NewEvent): Promise<void> => appendEventIn(c, now, e);
  // The boot path's small writes share commits (group-commit.ts).
  const group = new GroupCommit(db);

  // Local writes move the revision at once; other instances' writes when their notification arrives.
  let revision = 0;
  const bump = (): void => {
    revision++;
  };

  // The event reader: every event, from any instance, in id order, each once.
  const emitter = new EventEmitter();
  emitter.setMaxListeners(0);
  let cursor = (await db.one<{ id: number | null }>('SELECT MAX(id) AS id FROM events'))?.id ?? 0;
  let reading: Promise<void> | null = null;
  let again = false;
  const readEvents = (): Promise<void> => {
    if (reading) {
      again = true;
      return reading;
    }
    reading = (async () => {
      try {
        do {
          again = false;
          for (let i = 0; i < 100; i++) {
            const rows = await db.all<EventRow>('SELECT * FROM events WHERE id > $1 ORDER BY id LIMIT $2', [cursor, EVENT_BATCH]);
            for (const r of rows) {
              cursor = r.id;
              emitter.emit('event', eventFromRow(r));
            }
            if (rows.length < EVENT_BATCH) break;
          }
        } while (again);
      } catch {
        // The next notification or poll reads from the same cursor.
      } finally {
        reading = null;
      }
    })();
    return reading;
  };

  let feed: PgMachineFeed | null = null;
  const listener: ChangeListener = await listenForChanges({
    url: opts.url,
    applicationName: `${name} listener`.slice(0, 63),
    onChange(channel, payload) {
      bump();
      if (channel === 'racksmith_machine') feed?.changed(payload);
      else if (payload === 'events') void readEvents();
    },
    onLost: (reason) => opts.onDatabaseLost?.(reason),
    onReconnect() {
      opts.onDatabaseBack?.();
      bump();
      feed?.reload();
      void readEvents();
    },
  });
  const poll = setInterval(() => void readEvents(), EVENT_POLL_MS);
  poll.unref();

  const events: EventRepo = {
    async append(e) {
      const ref = await group.run(async (c) => {
        const r: EventRef = { event: null };
        await appendEventIn(c, now, e, r);
        return r;
      });
      const event = ref.event;
      if (!event) throw new Error('an appended event was committed but not read back');
      bump();
      return event;
    },
    async list(q: EventQuery) {
      const { text, values, newest } = eventQuerySql(q, (n) => `$${n}`);
      const rows = await db.all<EventRow>(text, values);
      if (newest) rows.reverse();
      return rows.map(eventFromRow);
    },
    async latestId() {
      return (await db.one<{ id: number | null }>('SELECT MAX(id) AS id FROM events'))?.id ?? 0;
    },
    async firstIdSince(at) {
      const { text, values } = firstIdSinceSql(at, (n) => `$${n}`);
      return (await db.one<{ id: number }>(text, values))?.id ?? 1;
    },
    async prune(belowId, types, limit) {
      const { text, values } = eventPruneSql(belowId, types, limit, (n) => `$${n}`);
      return db.run(text, values);
    },
    subscribe(fn) {
      emitter.on('event', fn);
      return () => emitter.off('event', fn);
    },
  };

  const tokens: TokenRepo = {
    async create(role, tokenName) {
      const token = newToken(API_TOKEN_PREFIX);
      const id = randomUUID();
      const createdAt = now().toISOString();
      await db.run('INSERT INTO api_tokens (id, name, role, hash, created_at) VALUES ($1, $2, $3, $4, $5)', [id, tokenName, role, hashToken(token), createdAt]);
      bump();
      return { token, info: { id, name: tokenName, role, createdAt } };
    },
    async verify(token) {
      const row = await db.one<TokenRow>('SELECT * FROM api_tokens WHERE hash = $1 AND revoked_at IS NULL', [hashToken(token)]);
      return row ? tokenFromRow(row) : null;
    },
    async list() {
      return (await db.all<TokenRow>('SELECT * FROM api_tokens WHERE revoked_at IS NULL ORDER BY created_at')).map(tokenFromRow);
    },
    async revoke(id) {
      await db.run('UPDATE api_tokens SET revoked_at = $1 WHERE id = $2', [now().toISOString(), id]);
      bump();
    },
  };

  const secrets: SecretRepo = {
    async get(scope, secretName) {
      const row = await db.one<{ sealed: string }>('SELECT sealed FROM secrets WHERE scope = $1 AND name = $2', [scope, secretName]);
      return row ? opts.box.open(row.sealed) : null;
    },
    async put(scope, secretName, value) {
      await db.run(
        `INSERT INTO secrets (scope, name, sealed, updated_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (scope, name) DO UPDATE SET sealed = excluded.sealed, updated_at = excluded.updated_at`,
        [scope, secretName, opts.box.seal(value), now().toISOString()],
      );
    },
    async putIfAbsent(scope, secretName, value) {
      // Two instances racing: the unique key lets one insert win; both then read the winner.
      await db.run('INSERT INTO secrets (scope, name, sealed, updated_at) VALUES ($1, $2, $3, $4) ON CONFLICT (scope, name) DO NOTHING', [
        scope,
        secretName,
        opts.box.seal(value),
        now().toISOString(),
      ]);
      const row = await db.one<{ sealed: string }>('SELECT sealed FROM secrets WHERE scope = $1 AND name = $2', [scope, secretName]);
      if (!row) throw new Error(`secret ${scope}/${secretName} vanished right after it was stored`);
      return opts.box.open(row.sealed);
    },
    async delete(scope, secretName) {
      if (secretName === undefined) await db.run('DELETE FROM secrets WHERE scope = $1', [scope]);
      else await db.run('DELETE FROM secrets WHERE scope = $1 AND name = $2', [scope, secretName]);
    },
  };

  const clusters = bumping(createPgClusterRepo(db, now, appendEvent), ['get', 'list']);
  const machines = bumping(createPgMachineRepo({ db, group, box: opts.box, now, appendEvent }), [
    'get',
    'byIp',
    'list',
    'bmcPassword',
    'seedToken',
    'findBySeedToken',
    'seedAddress',
  ]);
  const leases = createPgLeaseRepo(db, now);
  const orchestration = createPgOrchestrationRepo(db, now);
  try {
    feed = await createPgMachineFeed(db);
  } catch (err) {
    clearInterval(poll);
    await listener.close();
    throw err;
  }

  function bumping<T extends object>(repo: T, reads: readonly (keyof T)[]): T {
    const out: Record<string, unknown> = {};
    for (const [key, fn] of Object.entries(repo)) {
      out[key] =
        typeof fn === 'function' && !reads.includes(key as keyof T)
          ? async (...args: unknown[]) => {
              try {
                return await (fn as (...a: unknown[]) => Promise<unknown>).apply(repo, args);
              } finally {
                bump();
              }
            }
          : fn;
    }
    return out as T;
  }

  let closed = false;
  return {
    engine: 'postgres',
    db,
    box: opts.box,
    now,
    revision: () => String(revision),
    machineFeed: () => feed!,
    database() {
      const s = listener.state();
      return { engine: 'postgres', state: s.up ? 'ok' : 'unavailable', since: s.up ? null : s.since.toISOString(), reason: s.reason };
    },
    orchestration,
    clusters,
    machines,
    events,
    tokens,
    secrets,
    leases,
    async close() {
      if (closed) return;
      closed = true;
      clearInterval(poll);
      // Bounded, and short when the database is already known to be away: a database that went
      // quiet must not hold the process (its statements would time out much later).
      const wait = listener.connected() ? CLOSE_WAIT_MS : 500;
      await waitAtMost(group.settled(), wait);
      await listener.close();
      // Events committed by this instance's last writes reach its subscribers before it goes.
      await waitAtMost(readEvents(), wait);
      await db.close(wait);
    },
  };
}
