import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { openSqliteInventory, type SqliteInventory } from '../../server/inventory/sqlite/index.js';
import { createSecretBox } from '../../server/lib/secrets.js';

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
