import { mkdirSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import type { Config } from '../config/settings.js';
import { createSecretBox, loadSecretKey } from '../lib/secrets.js';
import { openPgStore } from './postgres/index.js';
import { DatabaseUnavailableError } from './unavailable.js';
import { DB_FILE } from './sqlite/db.js';
import { openSqliteInventory } from './sqlite/index.js';
import type { SecretRepo, Store } from './store.js';

/** This instance's name among those sharing a database: `--instance-name`, else the host name. */
export function instanceName(config: Pick<Config, 'instanceName'>): string {
  return config.instanceName ?? hostname();
}

/**
 * Opens the store `serve` and the CLI use: the PostgreSQL database of `--database-url`, shared by
 * every instance of the site, or else the embedded SQLite file in the data directory. The secret
 * key (`--secret-key`, or the key file in the data directory) must be the same on every instance
 * sharing a database; a different one is refused here, before it seals anything.
 */
export interface ServingHooks {
  onCheckpointFailure(message: string): void;
  /** The shared database stopped answering (why) / answers again. */
  onDatabaseLost?(reason: string): void;
  onDatabaseBack?(): void;
}

export async function openStore(config: Pick<Config, 'dataDir' | 'secretKey' | 'databaseUrl' | 'instanceName'>, serving?: ServingHooks): Promise<Store> {
  mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
  const box = createSecretBox(loadSecretKey(config.secretKey, config.dataDir));
  const store = config.databaseUrl
    ? await openPgStore({ url: config.databaseUrl, box, instanceName: instanceName(config), onDatabaseLost: serving?.onDatabaseLost, onDatabaseBack: serving?.onDatabaseBack })
    : openSqliteInventory({ file: join(config.dataDir, DB_FILE), box, checkpointInBackground: serving !== undefined, onCheckpointFailure: serving?.onCheckpointFailure });
  try {
    await checkSecretKey(store.secrets, config.databaseUrl !== undefined);
  } catch (err) {
    await store.close();
    throw err;
  }
  return store;
}

/** A sealed marker the first instance writes; every later one must be able to open it. */
async function checkSecretKey(secrets: SecretRepo, shared: boolean): Promise<void> {
  const marker = 'racksmith secret key check';
  try {
    const stored = await secrets.putIfAbsent('racksmith', 'key-check', marker);
    if (stored === marker) return;
  } catch (err) {
    // A database that does not answer says so; anything else: sealed with another key.
    if (err instanceof DatabaseUnavailableError) throw err;
  }
  throw new Error(
    shared
      ? 'this instance\'s secret key is not the one the shared database was sealed with: give every instance sharing --database-url the same --secret-key (RACKSMITH_SECRET_KEY)'
      : 'the secret key does not open the secrets in the data directory (was --secret-key or the key file changed?)',
  );
}
