import type { Mac } from '../../lib/mac.js';
import type { Machine } from '../model.js';
import { prepared, type Db } from './db.js';

/** What the DHCP service reads of a machine for each datagram. */
export type MachineFacts = Pick<Machine, 'mac' | 'ip' | 'lastStep'>;

/**
 * Synchronous point reads for per-datagram paths. The repositories are async so that another
 * store could stand behind them; the DHCP loop, though, handles tens of thousands of datagrams a
 * second, and a promise per read there costs more than the read itself (an indexed SQLite lookup
 * takes microseconds). Reads only: every write still goes through the repositories.
 */
export interface InventoryLookup {
  /** The machine with this MAC, or null when the inventory does not know it. */
  machine(mac: Mac): MachineFacts | null;
  /** Every reservation (machines with an `ip`), address → MAC. */
  reservations(): Map<string, Mac>;
}

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
