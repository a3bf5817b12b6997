import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * This racksmith instance's identity: a UUID kept in its data directory. Cluster locks are owned
 * by it, so a racksmith restarted on the same data directory (which the instance lock proves is
 * no longer used by its predecessor) takes its own locks back at once instead of waiting for
 * them to expire.
 */
export function instanceId(dataDir: string): string {
  const file = join(dataDir, 'instance-id');
  if (existsSync(file)) {
    const id = readFileSync(file, 'utf8').trim();
    if (/^[0-9a-f-]{36}$/.test(id)) return id;
  }
  const id = randomUUID();
  writeFileSync(file, id + '\n', { mode: 0o644 });
  return id;
}
