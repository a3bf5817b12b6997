import type { Mac } from '../../lib/mac.js';
import type { InventoryLookup, MachineDirectory, MachineFacts } from '../store.js';
import { prepared, type Db } from './db.js';

/** Changed MACs remembered for `changedSince`; past this the caller reads the directory whole. */
const CHANGE_LOG = 1024;

/**
 * The SQLite side of `InventoryLookup` (store.ts): one read of the columns DHCP answers from, one
 * machine's facts, and a log of the MACs whose rows changed who is known or reserved. Temporary
 * triggers (this connection only, never stored in the file) call back into JS on every insert or
 * delete of a machine and every change of its MAC or address; the API, the CLI (through the API)
 * and DHCP's own sightings all write through this connection. A write from anywhere else is seen
 * when the service's directory ages out (INVENTORY_CACHE_MS).
 */
export function createInventoryLookup(db: Db): InventoryLookup {
  const sql = prepared(db);
  const all = sql<[], FactsRow>(FACTS_SELECT);
  const one = sql<[string], FactsRow>(`${FACTS_SELECT} WHERE mac = ?`);
  let revision = 0;
  /** log[i] is the MAC of change number `logStart + i + 1`. */
  let log: string[] = [];
  let logStart = 0;
  db.function('racksmith_machine_changed', { deterministic: false, varargs: true }, (...macs: unknown[]) => {
    for (const mac of macs) {
      revision++;
      log.push(String(mac));
    }
    if (log.length > CHANGE_LOG) {
      const dropped = log.length - CHANGE_LOG / 2;
      log = log.slice(dropped);
      logStart += dropped;
    }
    return null;
  });
  db.exec(`
    CREATE TEMP TRIGGER IF NOT EXISTS racksmith_machine_added AFTER INSERT ON main.machines BEGIN SELECT racksmith_machine_changed(NEW.mac); END;
    CREATE TEMP TRIGGER IF NOT EXISTS racksmith_machine_removed AFTER DELETE ON main.machines BEGIN SELECT racksmith_machine_changed(OLD.mac); END;
    CREATE TEMP TRIGGER IF NOT EXISTS racksmith_machine_readdressed AFTER UPDATE OF mac, ip ON main.machines BEGIN SELECT racksmith_machine_changed(OLD.mac, NEW.mac); END;
  `);
  return {
    directory(): MachineDirectory {
      return directoryOf(all.iterate(), revision);
    },
    revision: () => revision,
    changedSince(since) {
      return since < logStart || since > revision ? null : log.slice(since - logStart);
    },
    machine(mac) {
      const r = one.get(mac);
      return r ? factsOf(r) : null;
    },
  };
}

/** The columns the DHCP service answers from (both engines). */
export const FACTS_SELECT = 'SELECT mac, ip, last_step, boot_loader, secure_boot FROM machines';

export interface FactsRow {
  mac: string;
  ip: string | null;
  last_step: string | null;
  boot_loader: string | null;
  secure_boot: number | null;
}

export function factsOf(r: FactsRow): MachineFacts {
  return {
    mac: r.mac as Mac,
    ip: r.ip,
    lastStep: r.last_step,
    bootLoader: r.boot_loader as MachineFacts['bootLoader'],
    secureBoot: r.secure_boot === null ? null : r.secure_boot === 1,
  };
}

/** Every machine's facts, by MAC and by reserved address. */
export function directoryOf(rows: Iterable<FactsRow>, revision: number): MachineDirectory {
  const byMac = new Map<string, MachineFacts>();
  const byIp = new Map<string, Mac>();
  for (const r of rows) {
    byMac.set(r.mac, factsOf(r));
    if (r.ip !== null) byIp.set(r.ip, r.mac as Mac);
  }
  return { byMac, byIp, revision };
}
