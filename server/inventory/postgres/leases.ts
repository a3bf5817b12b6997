import type { Mac } from '../../lib/mac.js';
import type { BindOutcome, LeaseBinding, LeaseRepo } from '../store.js';
import { leaseFromRow, type LeaseRow } from '../sqlite/leases.js';
import type { PgDb, Queryable } from './db.js';

/**
 * DHCP leases on PostgreSQL. Each instance serves its own networks, so its leases are its own
 * addresses; the table is still shared, and every rule is kept by the database rather than by a
 * map in one process: the address is the primary key (never two MACs), a binding takes an
 * address only if it is free, released, expired or already this MAC's — checked by the upsert
 * itself, so two instances racing for one address cannot both win — and moves the MAC off any
 * other address in the same transaction. A lease is committed before its ACK leaves.
 */
export function createPgLeaseRepo(db: PgDb, _now: () => Date): LeaseRepo {
  const reservedBy = async (c: Queryable, ip: string): Promise<Mac | null> =>
    ((await c.query<{ mac: string }>('SELECT mac FROM machines WHERE ip = $1', [ip])).rows[0]?.mac as Mac | undefined) ?? null;

  async function bindOne(c: Queryable, b: LeaseBinding, now: string): Promise<BindOutcome> {
    const reservedFor = await reservedBy(c, b.ip);
    if (reservedFor !== null && reservedFor !== b.mac) return { ok: false, reason: 'reserved', holder: reservedFor };
    const clientId = b.clientId ?? null;
    const hostname = b.hostname ?? null;
    // Taken only when free, released, expired or already this MAC's; a renewal keeps its start.
    const r = await c.query<{ starts_at: string }>(
      `INSERT INTO leases (ip, mac, state, client_id, hostname, starts_at, expires_at, updated_at)
         VALUES ($1, $2, 'bound', $3, $4, $5, $6, $5)
       ON CONFLICT (ip) DO UPDATE SET mac = excluded.mac, state = 'bound', client_id = excluded.client_id, hostname = excluded.hostname,
         starts_at = CASE WHEN leases.mac = excluded.mac AND leases.state = 'bound' THEN leases.starts_at ELSE excluded.starts_at END,
         expires_at = excluded.expires_at, updated_at = excluded.updated_at
       WHERE leases.mac = excluded.mac OR leases.state = 'released' OR leases.expires_at <= excluded.updated_at
       RETURNING starts_at`,
      [b.ip, b.mac, clientId, hostname, now, b.expiresAt],
    );
    const startsAt = r.rows[0]?.starts_at;
    if (startsAt === undefined) {
      const holder = (await c.query<{ mac: string | null }>('SELECT mac FROM leases WHERE ip = $1', [b.ip])).rows[0]?.mac ?? null;
      return { ok: false, reason: 'held', holder: holder as Mac | null };
    }
    // The MAC's row at another address goes in the same transaction: a binding moves the MAC.
    await c.query("DELETE FROM leases WHERE mac = $1 AND ip <> $2 AND state <> 'declined'", [b.mac, b.ip]);
    return { ok: true, lease: { ip: b.ip, mac: b.mac, state: 'bound', clientId, hostname, startsAt, expiresAt: b.expiresAt, updatedAt: now } };
  }

  return {
    async list() {
      return (await db.all<LeaseRow>('SELECT * FROM leases ORDER BY ip')).map(leaseFromRow);
    },
    async byIp(ip) {
      const r = await db.one<LeaseRow>('SELECT * FROM leases WHERE ip = $1', [ip]);
      return r ? leaseFromRow(r) : null;
    },
    async byMac(mac) {
      // The newest, should a MAC ever hold two rows (it cannot through this repository).
      const r = await db.one<LeaseRow>('SELECT * FROM leases WHERE mac = $1 ORDER BY updated_at DESC LIMIT 1', [mac]);
      return r ? leaseFromRow(r) : null;
    },
    async bindAll(bindings, now) {
      if (bindings.length === 0) return [];
      const at = now.toISOString();
      return db.tx(async (c) => {
        const out: BindOutcome[] = [];
        for (const b of bindings) out.push(await bindOne(c, b, at));
        return out;
      });
    },
    async release(ip, mac, now) {
      const at = now.toISOString();
      return (await db.run("UPDATE leases SET state = 'released', expires_at = $1, updated_at = $1 WHERE ip = $2 AND mac = $3 AND state = 'bound'", [at, ip, mac])) > 0;
    },
    async decline(ip, mac, until, now) {
      const at = now.toISOString();
      return (
        (await db.run(
          `INSERT INTO leases (ip, mac, state, client_id, hostname, starts_at, expires_at, updated_at)
             VALUES ($1, NULL, 'declined', NULL, NULL, $2, $3, $2)
           ON CONFLICT (ip) DO UPDATE SET mac = NULL, state = 'declined', client_id = NULL, hostname = NULL,
             starts_at = excluded.starts_at, expires_at = excluded.expires_at, updated_at = excluded.updated_at
           WHERE leases.mac = $4`,
          [ip, at, until.toISOString(), mac],
        )) > 0
      );
    },
    async reservedBy(ip) {
      return reservedBy(db.any, ip);
    },
  };
}
