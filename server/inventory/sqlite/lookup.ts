import type { Mac } from '../../lib/mac.js';
import type { InventoryLookup } from '../store.js';
import { prepared, type Db } from './db.js';

/** The SQLite side of `InventoryLookup` (store.ts): prepared point reads. */
export function createInventoryLookup(db: Db): InventoryLookup {
  const sql = prepared(db);
  const byMac = sql<[string], { mac: string; ip: string | null; last_step: string | null }>('SELECT mac, ip, last_step FROM machines WHERE mac = ?');
  const reserved = sql<[], { ip: string; mac: string }>('SELECT ip, mac FROM machines WHERE ip IS NOT NULL');
  return {
    machine(mac) {
      const r = byMac.get(mac);
      return r ? { mac: r.mac as Mac, ip: r.ip, lastStep: r.last_step } : null;
    },
    reservations() {
      return new Map(reserved.all().map((r) => [r.ip, r.mac as Mac]));
    },
  };
}
