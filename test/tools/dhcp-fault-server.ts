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
import { createDhcpService } from '../../server/dhcp/server.js';
import { openDataDir } from '../lib/dhcp.js';
import { faultyInventory } from '../lib/dhcp-faults.js';
import { runDhcpTool } from './dhcp-tool.js';

const config = loadConfig({ env: process.env, flags: {} });
const inventory = openDataDir(config.dataDir);
const faulty = faultyInventory(inventory, { lookupMac: process.env['FAULT_LOOKUP_MAC'] ?? null, bindFails: Number(process.env['FAULT_BIND_FAILS'] ?? '0') });
const service = createDhcpService(config, { inventory: faulty });
await runDhcpTool(config, service, inventory, 'FAULT READY', () => process.stdout.write(`COUNTERS ${JSON.stringify(service.counters())}\n`));
