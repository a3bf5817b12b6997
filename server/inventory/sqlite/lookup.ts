import type { Mac } from '../../lib/mac.js';
import type { InventoryLookup, MachineDirectory, MachineFacts } from '../store.js';
import { prepared, type Db } from './db.js';

/**
 * The SQLite side of `InventoryLookup` (store.ts): one read of the columns DHCP answers from, and
 * a count of the writes that change who is known or reserved. Temporary triggers (this
 * connection only, never stored in the file) call back into JS on every insert or delete of a
 * machine and every change of its MAC or address; the API, the CLI (through the API) and DHCP's
 * own sightings all write through this connection. A write from anywhere else is seen when the
 * service's directory ages out (INVENTORY_CACHE_MS).
 */
export function createInventoryLookup(db: Db): InventoryLookup {
  const sql = prepared(db);
  const all = sql<[], { mac: string; ip: string | null; last_step: string | null }>('SELECT mac, ip, last_step FROM machines');
  let changes = 0;
  db.function('racksmith_machines_changed', { deterministic: false, varargs: false }, () => {
    changes++;
    return null;
  });
  db.exec(`
    CREATE TEMP TRIGGER IF NOT EXISTS racksmith_machine_added AFTER INSERT ON main.machines BEGIN SELECT racksmith_machines_changed(); END;
    CREATE TEMP TRIGGER IF NOT EXISTS racksmith_machine_removed AFTER DELETE ON main.machines BEGIN SELECT racksmith_machines_changed(); END;
    CREATE TEMP TRIGGER IF NOT EXISTS racksmith_machine_readdressed AFTER UPDATE OF mac, ip ON main.machines BEGIN SELECT racksmith_machines_changed(); END;
  `);
  return {
    directory(): MachineDirectory {
      const revision = changes;
      const byMac = new Map<string, MachineFacts>();
      const byIp = new Map<string, Mac>();
      for (const r of all.iterate()) {
        byMac.set(r.mac, { mac: r.mac as Mac, ip: r.ip, lastStep: r.last_step });
        if (r.ip !== null) byIp.set(r.ip, r.mac as Mac);
      }
      return { byMac, byIp, revision };
    },
    revision: () => changes,
  };
}
