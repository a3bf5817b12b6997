import type { Mac } from '../../lib/mac.js';
import type { Lease, LeaseState } from '../model.js';
import type { BindOutcome, LeaseBinding, LeaseRepo } from '../store.js';
import type { Db } from './db.js';

interface LeaseRow {
  ip: string;
  mac: string | null;
  state: string;
  client_id: string | null;
  hostname: string | null;
  starts_at: string;
  expires_at: string;
  updated_at: string;
}

function leaseFromRow(r: LeaseRow): Lease {
  return {
    ip: r.ip,
    mac: r.mac as Mac | null,
    state: r.state as LeaseState,
    clientId: r.client_id,
    hostname: r.hostname,
    startsAt: r.starts_at,
    expiresAt: r.expires_at,
    updatedAt: r.updated_at,
  };
}

/** The SQLite lease table (migration 2). Every write is one transaction, committed before it returns. */
export function createLeaseRepo(db: Db): LeaseRepo {
  const byIp = db.prepare<[string], LeaseRow>('SELECT * FROM leases WHERE ip = ?');
  const byMac = db.prepare<[string], LeaseRow>('SELECT * FROM leases WHERE mac = ?');
  const reservation = db.prepare<[string], { mac: string }>('SELECT mac FROM machines WHERE ip = ?');
  // What a binding must check, in one statement: the machine the address is reserved for, and
  // the lease row it would replace. A commit runs this for every ACK, so it selects only the
  // columns the checks read (each one is a string made in JS).
  const bindingFacts = db.prepare<[string, string], { reserved_for: string | null } & (Pick<LeaseRow, 'ip' | 'mac' | 'state' | 'starts_at' | 'expires_at'> | { ip: null })>(
    `SELECT (SELECT mac FROM machines WHERE ip = ?) AS reserved_for, leases.ip, leases.mac, leases.state, leases.starts_at, leases.expires_at
       FROM (SELECT 1) LEFT JOIN leases ON leases.ip = ?`,
  );
  // REPLACE removes every row the new one conflicts with: the address's old row, and the row of
  // any other address this MAC held (UNIQUE mac): "a binding moves the MAC off any other address".
  const replace = db.prepare<{ ip: string; mac: string; client_id: string | null; hostname: string | null; starts_at: string; now: string; expires_at: string }>(
    `INSERT OR REPLACE INTO leases (ip, mac, state, client_id, hostname, starts_at, expires_at, updated_at)
       VALUES (@ip, @mac, 'bound', @client_id, @hostname, @starts_at, @expires_at, @now)`,
  );
  const releaseStmt = db.prepare<[string, string, string, string]>(
    "UPDATE leases SET state = 'released', expires_at = ?, updated_at = ? WHERE ip = ? AND mac = ? AND state = 'bound'",
  );
  const quarantine = db.prepare<{ ip: string; now: string; until: string; mac: string }>(
    `INSERT INTO leases (ip, mac, state, client_id, hostname, starts_at, expires_at, updated_at)
       VALUES (@ip, NULL, 'declined', NULL, NULL, @now, @until, @now)
     ON CONFLICT (ip) DO UPDATE SET mac = NULL, state = 'declined', client_id = NULL, hostname = NULL,
       starts_at = excluded.starts_at, expires_at = excluded.expires_at, updated_at = excluded.updated_at
     WHERE leases.mac = @mac`,
  );

  function bindOne(b: LeaseBinding, now: string): BindOutcome {
    const facts = bindingFacts.get(b.ip, b.ip);
    const reservedFor = facts?.reserved_for ?? null;
    if (reservedFor !== null && reservedFor !== b.mac) return { ok: false, reason: 'reserved', holder: reservedFor as Mac };
    const existing = facts?.ip ? (facts as Pick<LeaseRow, 'mac' | 'state' | 'starts_at' | 'expires_at'>) : undefined;
    if (existing && existing.mac !== b.mac && existing.state !== 'released' && existing.expires_at > now) {
      return { ok: false, reason: 'held', holder: existing.mac as Mac | null };
    }
    // A renewal keeps the lease's start; anything else starts now.
    const startsAt = existing && existing.mac === b.mac && existing.state === 'bound' ? existing.starts_at : now;
    const row = { ip: b.ip, mac: b.mac, client_id: b.clientId ?? null, hostname: b.hostname ?? null, starts_at: startsAt, now, expires_at: b.expiresAt };
    replace.run(row);
    return {
      ok: true,
      lease: { ip: b.ip, mac: b.mac, state: 'bound', clientId: row.client_id, hostname: row.hostname, startsAt, expiresAt: b.expiresAt, updatedAt: now },
    };
  }

  const bindMany = db.transaction((bindings: readonly LeaseBinding[], now: string) => bindings.map((b) => bindOne(b, now)));

  return {
    async list() {
      return db.prepare<[], LeaseRow>('SELECT * FROM leases ORDER BY ip').all().map(leaseFromRow);
    },
    async byIp(ip) {
      const r = byIp.get(ip);
      return r ? leaseFromRow(r) : null;
    },
    async byMac(mac) {
      const r = byMac.get(mac);
      return r ? leaseFromRow(r) : null;
    },
    async bindAll(bindings, now) {
      if (bindings.length === 0) return [];
      return bindMany.immediate(bindings, now.toISOString());
    },
    async release(ip, mac, now) {
      const at = now.toISOString();
      return releaseStmt.run(at, at, ip, mac).changes > 0;
    },
    async decline(ip, mac, until, now) {
      return quarantine.run({ ip, now: now.toISOString(), until: until.toISOString(), mac }).changes > 0;
    },
    async reservedBy(ip) {
      return (reservation.get(ip)?.mac as Mac | undefined) ?? null;
    },
  };
}
