import type { DhcpInventory } from '../../server/dhcp/server.js';
import type { BindOutcome, LeaseBinding, MachineFacts } from '../../server/inventory/store.js';
import type { SqliteInventory } from '../../server/inventory/sqlite/index.js';

/** Faults injected at the DHCP service's inventory boundary. */
export interface DhcpFaults {
  /** Reading this MAC's machine throws (an internal error, not bad input), however it is read. */
  readonly lookupMac?: string | null;
  /** The first N lease commits throw (the store is unavailable). */
  readonly bindFails?: number;
  /** Stands in for the store's commit once the failures are spent. */
  readonly bindAll?: (bindings: readonly LeaseBinding[], now: Date) => Promise<BindOutcome[]>;
}

/** The real inventory as DHCP sees it, with the faults at its boundary (the fault tool and loop.test). */
export function faultyInventory(inventory: SqliteInventory, faults: DhcpFaults): DhcpInventory {
  let bindFailures = faults.bindFails ?? 0;
  const readable = (mac: string): void => {
    if (mac === faults.lookupMac) throw new Error(`injected: the inventory cannot read ${mac}`);
  };
  /** The inventory's machines, except the faulty MAC's. */
  class FaultyMachines extends Map<string, MachineFacts> {
    override get(mac: string): MachineFacts | undefined {
      readable(mac);
      return super.get(mac);
    }
  }
  return {
    machines: inventory.machines,
    events: inventory.events,
    lookup: {
      directory() {
        const d = inventory.lookup.directory();
        return { ...d, byMac: new FaultyMachines(d.byMac) };
      },
      revision: () => inventory.lookup.revision(),
      changedSince: (revision) => inventory.lookup.changedSince(revision),
      machine(mac) {
        readable(mac);
        return inventory.lookup.machine(mac);
      },
    },
    leases: {
      ...inventory.leases,
      async bindAll(bindings, now) {
        if (bindFailures > 0) {
          bindFailures--;
          throw new Error('injected: the store is unavailable');
        }
        return faults.bindAll ? faults.bindAll(bindings, now) : inventory.leases.bindAll(bindings, now);
      },
    },
  };
}
