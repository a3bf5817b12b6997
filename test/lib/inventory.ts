import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { openSqliteInventory, type SqliteInventory } from '../../server/inventory/sqlite/index.js';
import { createSecretBox, type SecretBox } from '../../server/lib/secrets.js';
import { openPgStore } from '../../server/inventory/postgres/index.js';
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
