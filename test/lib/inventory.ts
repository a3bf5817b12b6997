import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { openSqliteInventory, type SqliteInventory } from '../../server/inventory/sqlite/index.js';
import { createSecretBox, type SecretBox } from '../../server/lib/secrets.js';
import { openPgStore, type PgStore } from '../../server/inventory/postgres/index.js';
import type { InventoryEvent } from '../../server/inventory/model.js';
import type { Store } from '../../server/inventory/store.js';
import { testPostgres } from './postgres.js';

/** A real SQLite inventory in a temporary directory, for in-process tests. */
export function tempInventory(now?: () => Date): SqliteInventory & { dir: string; destroy(): Promise<void> } {
  const dir = mkdtempSync(join(tmpdir(), 'racksmith-inv-'));
  const inv = openSqliteInventory({ file: join(dir, 'racksmith.db'), box: createSecretBox(randomBytes(32)), ...(now ? { now } : {}) });
  return Object.assign(inv, {
    dir,
    async destroy() {
      await inv.close();
      rmSync(dir, { recursive: true, force: true });
    },
  });
}

/** Which engine the store-facing suites run on: `RACKSMITH_TEST_DATABASE=postgres` or SQLite (the default). */
export const TEST_ENGINE: 'sqlite' | 'postgres' = process.env['RACKSMITH_TEST_DATABASE'] === 'postgres' ? 'postgres' : 'sqlite';

export type TempStore = Store & {
  readonly dir: string;
  readonly box: SecretBox;
  /** PostgreSQL: the database's URL, for a second store on it (another instance). */
  readonly url?: string;
  destroy(): Promise<void>;
};

/**
 * A real store for in-process tests on the engine of this run (TEST_ENGINE): a SQLite file in a
 * temporary directory, or a fresh database of its own on this process's private PostgreSQL.
 */
export async function tempStore(opts: { now?: () => Date; engine?: 'sqlite' | 'postgres' } = {}): Promise<TempStore> {
  const engine = opts.engine ?? TEST_ENGINE;
  if (engine === 'sqlite') return tempInventory(opts.now);
  const dir = mkdtempSync(join(tmpdir(), 'racksmith-inv-'));
  const server = await testPostgres();
  const url = await server.newDatabase();
  const store = await openPgStore({ url, box: createSecretBox(randomBytes(32)), ...(opts.now ? { now: opts.now } : {}) });
  return Object.assign(store, {
    dir,
    url,
    async destroy() {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  });
}

/**
 * A store that a test closes and opens again (the same file or database, the same key), on the
 * engine of this run; `open(key)` with another key stands for a racksmith given the wrong one.
 */
export async function reopenableStore(): Promise<{ open(key?: Buffer): Promise<Store>; destroy(): Promise<void> }> {
  const key = randomBytes(32);
  const dir = mkdtempSync(join(tmpdir(), 'racksmith-inv-'));
  const url = TEST_ENGINE === 'postgres' ? await (await testPostgres()).newDatabase() : null;
  return {
    async open(k = key) {
      const box = createSecretBox(k);
      return url ? openPgStore({ url, box }) : openSqliteInventory({ file: join(dir, 'racksmith.db'), box });
    },
    async destroy() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Rows as the engine stores them (sealed columns included): `?` placeholders on either engine. */
export async function storedRows(store: Store, sql: string, ...params: unknown[]): Promise<Record<string, unknown>[]> {
  if (store.engine === 'sqlite') return (store as SqliteInventory).db.prepare(sql).all(...params) as Record<string, unknown>[];
  let n = 0;
  return (store as PgStore).db.all(sql.replace(/\?/g, () => `$${++n}`), params);
}

/**
 * Waits (5 s at most) until a subscriber has heard every event committed so far: at once on
 * SQLite, whose subscribers hear of a commit before the write returns; on PostgreSQL they hear
 * of it through the database's notification, a moment later.
 */
export async function heardAll(store: Store, heard: readonly InventoryEvent[]): Promise<void> {
  const latest = await store.events.latestId();
  for (let i = 0; i < 500 && (heard[heard.length - 1]?.id ?? 0) < latest; i++) await new Promise((r) => setTimeout(r, 10));
}

/** Another store on the same database and key: a second process on the SQLite file, a second instance on PostgreSQL. */
export async function anotherInstance(store: TempStore): Promise<Store> {
  const box = (store as unknown as { box: SqliteInventory['box'] }).box;
  if (store.url) return openPgStore({ url: store.url, box, instanceName: 'another' });
  return openSqliteInventory({ file: join(store.dir, 'racksmith.db'), box });
}

