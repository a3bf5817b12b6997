import type { InventoryLookup, MachineDirectory, MachineFacts, MachineFeed } from './store.js';
import type { Mac } from '../lib/mac.js';

/**
 * The machine directory: the inventory's machines as the DHCP service answers from them (MAC →
 * facts, reserved address → MAC), in memory, so that a datagram's questions about machines are
 * map lookups and never a database read. Most of a busy segment's clients are unknown to the
 * inventory; one read of every machine answers them all, and a machine added through the API is
 * known to the very next datagram.
 */

export type { MachineFeed };

/**
 * How old the directory may get. A machine added, removed or readdressed through this racksmith
 * is read again before the next datagram; a machine's last step, and a write from outside this
 * racksmith, are seen within this long. The store still checks reservations when a lease is
 * committed.
 */
export const INVENTORY_CACHE_MS = 1_000;
/** Machines changed since the directory was read, past which it is read whole rather than patched. */
export const DIRECTORY_PATCH_MAX = 256;

/**
 * The directory kept by polling the inventory's synchronous lookup: read whole at first and every
 * INVENTORY_CACHE_MS, and in between patched with the machines whose MAC or address changed
 * (the lookup's revision and change log) before the lookup that follows the change.
 */
export function lookupFeed(lookup: InventoryLookup): MachineFeed {
  let directory: MachineDirectory | null = null;
  /** When the directory was last read whole (a patch does not renew it). */
  let readAt = 0;
  const readWhole = (now: number): MachineDirectory => {
    readAt = now;
    directory = lookup.directory();
    return directory;
  };
  return {
    current(now) {
      if (directory === null || now - readAt >= INVENTORY_CACHE_MS) return readWhole(now);
      const revision = lookup.revision();
      if (directory.revision !== revision) {
        const changed = lookup.changedSince(directory.revision);
        if (changed === null || changed.length > DIRECTORY_PATCH_MAX) return readWhole(now);
        directory = patchDirectory(directory, changed, (mac) => lookup.machine(mac), revision);
      }
      return directory;
    },
    invalidate() {
      directory = null;
    },
  };
}

/**
 * Brings the directory up to date with the machines that changed since it was read: one point
 * read per changed MAC instead of reading every machine again. The maps are amended in place. A
 * MAC's old reservation is dropped only if it still points at that MAC, so two machines that
 * swap addresses, in either order, end up each with its own.
 */
export function patchDirectory(d: MachineDirectory, changed: Iterable<string>, read: (mac: Mac) => MachineFacts | null, revision: number): MachineDirectory {
  for (const mac of new Set(changed)) {
    const before = d.byMac.get(mac);
    if (before?.ip && d.byIp.get(before.ip) === mac) d.byIp.delete(before.ip);
    const now = read(mac as Mac);
    if (now === null) d.byMac.delete(mac);
    else {
      d.byMac.set(mac, now);
      if (now.ip !== null) d.byIp.set(now.ip, now.mac);
    }
  }
  return { byMac: d.byMac, byIp: d.byIp, revision };
}
