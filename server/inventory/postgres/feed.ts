import type { MachineDirectory, MachineFeed } from '../store.js';
import { FACTS_SELECT, directoryOf, factsOf, type FactsRow } from '../sqlite/lookup.js';
import { patchDirectory } from '../directory.js';
import type { PgDb } from './db.js';

export interface PgMachineFeed extends MachineFeed {
  /** A machine row changed (its MAC, from the notification). */
  changed(mac: string): void;
  /** Read the whole directory again (after a lost connection or an invalidation). */
  reload(): void;
}

/**
 * The DHCP machine directory on PostgreSQL: read whole once at start (before DHCP answers), then
 * patched from the `racksmith_machine` notifications — the MACs that changed, read back in one
 * statement per batch — so that `current` never waits on the database. A machine added through
 * any instance is in every instance's directory a few milliseconds after its commit.
 */
export async function createPgMachineFeed(db: PgDb): Promise<PgMachineFeed> {
  let revision = 0;
  const readWhole = async (): Promise<MachineDirectory> => directoryOf(await db.all<FactsRow>(FACTS_SELECT), ++revision);
  let directory = await readWhole();
  let pending = new Set<string>();
  let whole = false;
  let running: Promise<void> | null = null;

  const run = (): void => {
    if (running) return;
    running = (async () => {
      try {
        while (whole || pending.size > 0) {
          if (whole) {
            whole = false;
            pending = new Set();
            directory = await readWhole();
            continue;
          }
          const macs = [...pending];
          pending = new Set();
          const rows = await db.all<FactsRow>(`${FACTS_SELECT} WHERE mac = ANY($1)`, [macs]);
          const found = new Map(rows.map((r) => [r.mac, factsOf(r)]));
          directory = patchDirectory(directory, macs, (mac) => found.get(mac) ?? null, ++revision);
        }
      } catch {
        // The database is away: read whole once it answers again (the listener's reconnect says so).
        whole = true;
      } finally {
        running = null;
      }
    })();
  };

  return {
    current: () => directory,
    invalidate() {
      whole = true;
      run();
    },
    changed(mac) {
      pending.add(mac);
      run();
    },
    reload() {
      whole = true;
      run();
    },
  };
}
