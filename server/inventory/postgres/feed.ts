import type { Mac } from '../../lib/mac.js';
import type { MachineDirectory, MachineFacts, MachineFeed } from '../store.js';
import { patchDirectory } from '../directory.js';
import type { PgDb } from './db.js';

export interface PgMachineFeed extends MachineFeed {
  /** A machine row changed (its MAC, from the notification). */
  changed(mac: string): void;
  /** Read the whole directory again (after a lost connection or an invalidation). */
  reload(): void;
}

interface FactsRow {
  mac: string;
  ip: string | null;
  last_step: string | null;
  boot_loader: string | null;
  secure_boot: number | null;
}

const FACTS = 'SELECT mac, ip, last_step, boot_loader, secure_boot FROM machines';

const facts = (r: FactsRow): MachineFacts => ({
  mac: r.mac as Mac,
  ip: r.ip,
  lastStep: r.last_step,
  bootLoader: r.boot_loader as MachineFacts['bootLoader'],
  secureBoot: r.secure_boot === null ? null : r.secure_boot === 1,
});

/**
 * The DHCP machine directory on PostgreSQL: read whole once at start (before DHCP answers), then
 * patched from the `racksmith_machine` notifications — the MACs that changed, read back in one
 * statement per batch — so that `current` never waits on the database. A machine added through
 * any instance is in every instance's directory a few milliseconds after its commit.
 */
export async function createPgMachineFeed(db: PgDb): Promise<PgMachineFeed> {
  let revision = 0;
  const readWhole = async (): Promise<MachineDirectory> => {
    const byMac = new Map<string, MachineFacts>();
    const byIp = new Map<string, Mac>();
    for (const r of await db.all<FactsRow>(FACTS)) {
      byMac.set(r.mac, facts(r));
      if (r.ip !== null) byIp.set(r.ip, r.mac as Mac);
    }
    return { byMac, byIp, revision: ++revision };
  };
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
          const rows = await db.all<FactsRow>(`${FACTS} WHERE mac = ANY($1)`, [macs]);
          const found = new Map(rows.map((r) => [r.mac, facts(r)]));
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
