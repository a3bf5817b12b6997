import type { SecretBox } from '../../lib/secrets.js';
import type { MachineRepo } from '../store.js';
import type { PgDb } from './db.js';
import type { AppendEvent } from './events.js';

export interface PgMachineRepoDeps {
  readonly db: PgDb;
  readonly box: SecretBox;
  readonly now: () => Date;
  /** Appends an event inside the caller's transaction. */
  readonly appendEvent: AppendEvent;
}

/** Placeholder until the port of ../sqlite/machines.ts lands. */
export function createPgMachineRepo(_deps: PgMachineRepoDeps): MachineRepo {
  return new Proxy({}, { get: () => () => Promise.reject(new Error('not yet: the PostgreSQL machine repository')) }) as MachineRepo;
}
