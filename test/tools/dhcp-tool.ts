/**
 * What the in-process DHCP tools (tap, fault) share: start the service with a logger on stderr,
 * print the ready line the test waits for, and on SIGTERM stop the service, report, close the
 * inventory and exit 0.
 */
import type { Config } from '../../server/config/settings.js';
import type { DhcpService } from '../../server/dhcp/server.js';
import type { SqliteInventory } from '../../server/inventory/sqlite/index.js';
import { createLogger } from '../../server/lib/log.js';

export async function runDhcpTool(config: Config, service: DhcpService, inventory: SqliteInventory, ready: string, onStopped: () => void = () => undefined): Promise<void> {
  const abort = new AbortController();
  const log = createLogger(config.logLevel, process.stderr);
  await service.start({ signal: abort.signal, log, fatal: (err) => log.fatal({ err }, 'fatal') });
  process.stdout.write(`${ready}\n`);
  process.on('SIGTERM', () => {
    void service.stop().then(async () => {
      onStopped();
      await inventory.close();
      process.exit(0);
    });
  });
}
