/**
 * The DHCP service in-process with a tap that writes every received datagram to a folder
 * (`<seq>-<port>-<from>.bin`). Run inside a test namespace by capture-dhcp-fixtures; config
 * comes from RACKSMITH_* like `serve`. Prints "TAP READY" when serving; SIGTERM stops it.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadConfig } from '../../server/config/load.js';
import { createDhcpService } from '../../server/dhcp/server.js';
import { createLogger } from '../../server/lib/log.js';
import { openDataDir } from '../lib/dhcp.js';

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
const abort = new AbortController();
const log = createLogger(config.logLevel, process.stderr);
await service.start({ signal: abort.signal, log, fatal: (err) => log.fatal({ err }, 'fatal') });
process.stdout.write('TAP READY\n');
process.on('SIGTERM', () => {
  void service.stop().then(async () => {
    await inventory.close();
    process.exit(0);
  });
});
