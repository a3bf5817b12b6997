/**
 * The DHCP service in-process over the real SQLite inventory, with faults injected at the
 * inventory boundary, for test/dhcp/faults.test.ts. Run inside a test namespace; config comes
 * from RACKSMITH_* like `serve`, the faults from:
 *   FAULT_LOOKUP_MAC   reading this MAC's machine throws (an internal error, not bad input)
 *   FAULT_BIND_FAILS   the first N lease commits throw (the store is unavailable)
 * Prints "FAULT READY" when serving; on SIGTERM stops the service and prints one line
 * "COUNTERS <json>" before exiting 0.
 */
import { loadConfig } from '../../server/config/load.js';
import { createDhcpService, type DhcpInventory } from '../../server/dhcp/server.js';
import type { MachineFacts } from '../../server/inventory/store.js';
import { openDataDir } from '../lib/dhcp.js';
import { runDhcpTool } from './dhcp-tool.js';

const config = loadConfig({ env: process.env, flags: {} });
const inventory = openDataDir(config.dataDir);
const faultyMac = process.env['FAULT_LOOKUP_MAC'] ?? null;
let bindFailures = Number(process.env['FAULT_BIND_FAILS'] ?? '0');

/** Reading the faulty MAC's machine throws, however it is read. */
function readable(mac: string): void {
  if (mac === faultyMac) throw new Error(`injected: the inventory cannot read ${mac}`);
}

/** The inventory's machines, except the faulty MAC's. */
class FaultyMachines extends Map<string, MachineFacts> {
  override get(mac: string): MachineFacts | undefined {
    readable(mac);
    return super.get(mac);
  }
}

const faulty: DhcpInventory = {
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
      return inventory.leases.bindAll(bindings, now);
    },
  },
};

const service = createDhcpService(config, { inventory: faulty });
await runDhcpTool(config, service, inventory, 'FAULT READY', () => process.stdout.write(`COUNTERS ${JSON.stringify(service.counters())}\n`));
