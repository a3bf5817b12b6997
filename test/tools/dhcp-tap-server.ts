/**
 * The DHCP service in-process with a tap that writes every received datagram to a folder
 * (`<seq>-<port>-<from>.bin`). Run inside a test namespace by capture-dhcp-fixtures; config
 * comes from RACKSMITH_* like `serve`. Prints "TAP READY" when serving; SIGTERM stops it.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadConfig } from '../../server/config/load.js';
import { createDhcpService } from '../../server/dhcp/server.js';
import { openDataDir } from '../lib/dhcp.js';
import { runDhcpTool } from './dhcp-tool.js';

const outDir = process.env['TAP_DIR'];
if (!outDir) throw new Error('TAP_DIR is required');
const config = loadConfig({ env: process.env, flags: {} });
const inventory = openDataDir(config.dataDir);
let seq = 0;
const service = createDhcpService(config, {
  inventory,
  tap: (msg, from, port) => {
    seq++;
    writeFileSync(join(outDir, `${String(seq).padStart(4, '0')}-${port}-${from.address}.bin`), msg);
  },
});
await runDhcpTool(config, service, inventory, 'TAP READY');
