/**
 * The composition root: config → data directory lock → secrets key → inventory → services.
 * The only module that wires concrete implementations together. Services start in order and stop
 * in reverse; the first fatal error stops the rest cleanly.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Config } from './config/settings.js';
import { createDhcpService } from './dhcp/server.js';
import { createApp } from './http/app.js';
import { createHttpService } from './http/service.js';
import { openSqliteInventory, type SqliteInventory } from './inventory/sqlite/index.js';
import { DB_FILE } from './inventory/sqlite/db.js';
import { acquireInstanceLock, type InstanceLock } from './lib/instance-lock.js';
import type { Logger } from './lib/log.js';
import { createSecretBox, loadSecretKey } from './lib/secrets.js';
import type { Service, ServiceHealth } from './lib/service.js';
import { ensureSshIdentity } from './lib/ssh-identity.js';
import { VERSION } from './lib/version.js';
import { createArpResolver } from './lib/neighbours.js';
import { createTftpService, tftpFiles } from './tftp/index.js';

export interface Runtime {
  readonly config: Config;
  readonly inventory: SqliteInventory;
  readonly services: readonly Service[];
  /** Stops every service in reverse order and closes the store; safe to call twice. */
  stop(reason: string): Promise<void>;
  /** Settles with the exit code once the runtime has stopped (0 clean, 1 after a fatal error). */
  readonly done: Promise<number>;
}

/** Opens the data directory's store (and its key) the way `serve` does, for CLI commands. */
export function openInventory(config: Config): SqliteInventory {
  mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
  const box = createSecretBox(loadSecretKey(config.secretKey, config.dataDir));
  return openSqliteInventory({ file: join(config.dataDir, DB_FILE), box });
}

export async function startRacksmith(config: Config, log: Logger): Promise<Runtime> {
  mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
  const lock: InstanceLock = acquireInstanceLock(config.dataDir);
  let inventory: SqliteInventory | undefined;
  let identity: Awaited<ReturnType<typeof ensureSshIdentity>>;
  try {
    inventory = openInventory(config);
    identity = await ensureSshIdentity(inventory.secrets);
  } catch (err) {
    await inventory?.close();
    lock.release();
    throw err;
  }

  const services: Service[] = [];
  const health = (): Record<string, ServiceHealth> => Object.fromEntries(services.map((s) => [s.name, s.health()]));

  const app = createApp({
    log,
    version: VERSION,
    health,
    inventory,
    revision: inventory.revision,
    adminToken: config.adminToken,
    sshPublicKey: async () => identity.publicKey,
  });
  services.push(createHttpService(config, app));
  services.push(createDhcpService(config, { inventory }));
  // TFTP tells machines apart by IP only: the kernel's neighbour table names the MAC.
  services.push(createTftpService(config, { files: tftpFiles(config).source, root: config.tftpRoot, resolveClient: createArpResolver(), inventory }));

  const abort = new AbortController();
  let resolveDone!: (code: number) => void;
  const done = new Promise<number>((r) => (resolveDone = r));
  let stopping: Promise<void> | null = null;
  let exitCode = 0;

  const started: Service[] = [];
  const stop = (reason: string): Promise<void> => {
    stopping ??= (async () => {
      log.info({ reason }, 'stopping');
      abort.abort();
      for (const s of [...started].reverse()) {
        try {
          await s.stop();
        } catch (err) {
          log.error({ err, service: s.name }, 'service did not stop cleanly');
        }
      }
      await inventory.close();
      lock.release();
      log.info('stopped');
      resolveDone(exitCode);
    })();
    return stopping;
  };

  const ctx = {
    signal: abort.signal,
    log,
    fatal(err: Error) {
      log.fatal({ err }, 'fatal service error');
      exitCode = 1;
      void stop(`fatal: ${err.message}`);
    },
  };
  try {
    for (const s of services) {
      await s.start({ ...ctx, log: log.child({ svc: s.name }) });
      started.push(s);
    }
  } catch (err) {
    exitCode = 1;
    await stop('start failed');
    throw err;
  }
  if (!config.adminToken && (await inventory.tokens.list()).length === 0) {
    log.warn('no API tokens yet: create one with "racksmith token create --role admin" (same --data-dir)');
  }
  log.info({ version: VERSION, dataDir: config.dataDir, advertise: config.advertiseAddress, services: Object.fromEntries(services.map((s) => [s.name, s.health().state])) }, 'serving');
  return { config, inventory, services, stop, done };
}
