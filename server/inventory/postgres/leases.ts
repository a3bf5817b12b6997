import type { LeaseRepo } from '../store.js';
import type { PgDb } from './db.js';

/** Placeholder until the port of ../sqlite/leases.ts lands. */
export function createPgLeaseRepo(_db: PgDb, _now: () => Date): LeaseRepo {
  return new Proxy({}, { get: () => () => Promise.reject(new Error('not yet: the PostgreSQL lease repository')) }) as LeaseRepo;
}
