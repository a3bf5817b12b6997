import type Database from 'better-sqlite3';
import { AppError, conflict, invalid, notFound } from '../../lib/errors.js';
import type { Mac } from '../../lib/mac.js';
import { hashToken, newToken, type SecretBox } from '../../lib/secrets.js';
import { transition, type MachineEventType } from '../lifecycle.js';
import type { InstalledDisk, Machine, SshHostKey } from '../model.js';
import type { BootScriptRecord, BootScriptOutcome, ImportRow, MachineFilter, MachinePage, MachinePatch, MachineRepo, NewEvent, NewMachine, Sighting, TransitionContext, UpsertResult } from '../store.js';
import { prepared, type Db } from './db.js';
import { MACHINE_COLUMNS, bmcOptionsToJson, constraintField, machineFromRow, type MachineRow, type MachineViewRow } from './rows.js';

export interface MachineRepoDeps {
  readonly db: Db;
  readonly box: SecretBox;
  readonly now: () => Date;
  /** Appends an event inside the caller's transaction. */
  readonly appendEvent: (e: NewEvent) => void;
}

const COLUMN_FOR_FIELD: Record<string, string> = { mac: 'mac', hostname: 'hostname', ip: 'ip' };

export function createMachineRepo({ db, box, now, appendEvent }: MachineRepoDeps): MachineRepo {
  const sql = prepared(db);
  const byMac = sql<[string], MachineViewRow>(`SELECT ${MACHINE_COLUMNS} FROM machines WHERE mac = ?`);
  const byIpRow = sql<[string], MachineViewRow>(`SELECT ${MACHINE_COLUMNS} FROM machines WHERE ip = ?`);
  const byTokenHash = sql<[string], MachineViewRow>(`SELECT ${MACHINE_COLUMNS} FROM machines WHERE seed_token_hash = ?`);
  const sealedOf = sql<[string], Pick<MachineRow, 'bmc_password_sealed' | 'seed_token_sealed'>>('SELECT bmc_password_sealed, seed_token_sealed FROM machines WHERE mac = ?');
  const seedOf = sql<[string], Pick<MachineRow, 'seed_token_sealed' | 'seed_token_address'>>('SELECT seed_token_sealed, seed_token_address FROM machines WHERE mac = ?');
  // One prepared statement per filter shape. The order is the list order of MachineCursor;
  // COALESCE sorts a missing rack/hostname first, as NULL would, lets the keyset comparison be
  // one row-value test (no rack or hostname is ever the empty string) and matches the
  // machines_list_order index.
  const LIST_KEYS = ['cluster', 'role', 'state', 'rack'] as const;
  function listStatement(filter: MachineFilter, page: MachinePage): Database.Statement<Record<string, unknown>, MachineViewRow> {
    const where = LIST_KEYS.filter((k) => filter[k] !== undefined).map((k) => `${k} = @${k}`);
    if (page.after) where.push("(COALESCE(rack, ''), COALESCE(hostname, ''), mac) > (@afterRack, @afterHostname, @afterMac)");
    return sql<Record<string, unknown>, MachineViewRow>(
      `SELECT ${MACHINE_COLUMNS} FROM machines ${where.length ? 'WHERE ' + where.join(' AND ') : ''}
       ORDER BY COALESCE(rack, ''), COALESCE(hostname, ''), mac ${page.limit !== undefined ? 'LIMIT @limit' : ''}`,
    );
  }
  const clusterExists = sql<[string], { n: number }>('SELECT 1 AS n FROM clusters WHERE name = ?');

  function load(mac: Mac): Machine {
    const row = byMac.get(mac);
    if (!row) throw notFound('ERR_UNKNOWN_MACHINE', `no machine with MAC ${mac}`);
    return machineFromRow(row);
  }

  function requireCluster(name: string): void {
    if (!clusterExists.get(name)) throw invalid('ERR_UNKNOWN_CLUSTER', `no cluster named "${name}"`, 'cluster');
  }

  function sealedToken(): { token: string; hash: string; sealed: string } {
    const token = newToken('', 24);
    return { token, hash: hashToken(token), sealed: box.seal(token) };
  }

  /** Runs a write and turns UNIQUE violations into a 409 naming the field. */
  function guarded<T>(fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      const column = constraintField(err);
      if (column) {
        const field = Object.keys(COLUMN_FOR_FIELD).find((f) => COLUMN_FOR_FIELD[f] === column) ?? column;
        throw conflict('ERR_DUPLICATE', `another machine already has this ${field}`, field);
      }
      throw err;
    }
  }

  function insertOrAdopt(input: NewMachine): Machine {
    requireCluster(input.cluster);
    const at = now().toISOString();
    const existing = byMac.get(input.mac);
    if (existing && existing.state !== 'discovered') {
      throw conflict('ERR_DUPLICATE', `a machine with MAC ${input.mac} already exists`, 'mac');
    }
    const seed = sealedToken();
    const bmc = input.bmc ?? null;
    const values = {
      mac: input.mac,
      hostname: input.hostname,
      role: input.role,
      cluster: input.cluster,
      ip: input.ip ?? null,
      rack: input.rack ?? null,
      unit: input.unit ?? null,
      bmc_driver: bmc ? bmc.driver : null,
      bmc_address: bmc ? bmc.address : null,
      bmc_port: bmc?.port ?? null,
      bmc_username: bmc ? bmc.username : null,
      bmc_password_sealed: bmc ? box.seal(bmc.password) : null,
      bmc_cipher_suite: bmc?.cipherSuite ?? null,
      bmc_options: bmc ? bmcOptionsToJson(bmc) : null,
      install_disk: input.installDisk ?? null,
      seed_token_hash: seed.hash,
      seed_token_sealed: seed.sealed,
      at,
    };
    guarded(() => {
      if (existing) {
        sql(
          `UPDATE machines SET hostname=@hostname, role=@role, cluster=@cluster, ip=@ip, rack=@rack, unit=@unit,
             bmc_driver=@bmc_driver, bmc_address=@bmc_address, bmc_port=@bmc_port, bmc_username=@bmc_username,
             bmc_password_sealed=@bmc_password_sealed, bmc_cipher_suite=@bmc_cipher_suite, bmc_options=@bmc_options, install_disk=@install_disk,
             seed_token_hash=@seed_token_hash, seed_token_sealed=@seed_token_sealed, seed_token_address=NULL, updated_at=@at
           WHERE mac=@mac`,
        ).run(values);
      } else {
        sql(
          `INSERT INTO machines (mac, hostname, role, cluster, ip, rack, unit, bmc_driver, bmc_address, bmc_port, bmc_username,
             bmc_password_sealed, bmc_cipher_suite, bmc_options, install_disk, seed_token_hash, seed_token_sealed, state, state_changed_at, created_at, updated_at)
           VALUES (@mac, @hostname, @role, @cluster, @ip, @rack, @unit, @bmc_driver, @bmc_address, @bmc_port, @bmc_username,
             @bmc_password_sealed, @bmc_cipher_suite, @bmc_options, @install_disk, @seed_token_hash, @seed_token_sealed, 'discovered', @at, @at, @at)`,
        ).run(values);
      }
    });
    if (input.bootLoader !== undefined || input.secureBoot !== undefined) {
      sql('UPDATE machines SET boot_loader=COALESCE(@boot_loader, boot_loader), secure_boot=COALESCE(@secure_boot, secure_boot) WHERE mac=@mac').run({
        mac: input.mac,
        boot_loader: input.bootLoader ?? null,
        secure_boot: input.secureBoot === undefined || input.secureBoot === null ? null : input.secureBoot ? 1 : 0,
      });
    }
    return applyTransition(input.mac, 'assign', {
      source: 'api',
      message: `assigned as ${input.role} of cluster ${input.cluster}`,
    });
  }

  function applyTransition(mac: Mac, event: MachineEventType, ctx: TransitionContext): Machine {
    const before = load(mac);
    const next = transition(before, event);
    const at = now().toISOString();
    const failed = event === 'fail';
    // An install attempt starts when the machine enters provisioning; an installer served again
    // (a power blip) is the same attempt, so a boot loop cannot outlive the install deadline.
    const installStarted = next.state === 'provisioning' && before.state !== 'provisioning' ? at : before.installStartedAt;
    sql(
      `UPDATE machines SET state=?, failed_from=?, failed_step=?, failed_reason=?, install_started_at=?, state_changed_at=?, updated_at=? WHERE mac=?`,
    ).run(next.state, next.failedFrom, failed ? (ctx.step ?? null) : null, failed ? (ctx.reason ?? null) : null, installStarted, at, at, mac);
    appendEvent({
      mac,
      cluster: before.cluster,
      type: 'state',
      source: ctx.source,
      message: ctx.message ?? (failed ? `failed at ${ctx.step ?? 'an unknown step'}: ${ctx.reason ?? 'no reason given'}` : `${before.state} → ${next.state}`),
      data: { from: before.state, to: next.state, event, ...(ctx.step ? { step: ctx.step } : {}), ...(ctx.reason ? { reason: ctx.reason } : {}), ...ctx.data },
    });
    return load(mac);
  }

  /** Records what a sighting saw (facts kept when a later one lacks them); an unknown MAC becomes a discovered machine. True when it was new. */
  function applySighting(s: Sighting): boolean {
    const at = now().toISOString();
    const existing = byMac.get(s.mac);
    const facts = { arch: s.arch ?? null, firmware: s.firmware ?? null, vendor_class: s.vendorClass ?? null, uuid: s.uuid ?? null };
    if (existing) {
      sql(
        `UPDATE machines SET arch=COALESCE(@arch, arch), firmware=COALESCE(@firmware, firmware),
           vendor_class=COALESCE(@vendor_class, vendor_class), uuid=COALESCE(@uuid, uuid),
           first_seen=COALESCE(first_seen, @at), last_seen=@at WHERE mac=@mac`,
      ).run({ ...facts, at, mac: s.mac });
      return false;
    }
    sql(
      `INSERT INTO machines (mac, state, arch, firmware, vendor_class, uuid, first_seen, last_seen, state_changed_at, created_at, updated_at)
       VALUES (@mac, 'discovered', @arch, @firmware, @vendor_class, @uuid, @at, @at, @at, @at, @at)`,
    ).run({ ...facts, at, mac: s.mac });
    appendEvent({
      mac: s.mac,
      type: 'state',
      source: s.source,
      message: `discovered (${[s.firmware, s.arch, s.vendorClass].filter(Boolean).join(', ') || 'no details'})`,
      data: { from: null, to: 'discovered', event: 'discover', ...facts },
    });
    return true;
  }

  /** The transition first: refused, it throws before anything of the step is written. */
  function applyBootScript(step: BootScriptRecord): void {
    const { mac, source } = step.sighting;
    if (step.transition) applyTransition(mac, step.transition.event, { source, message: step.transition.message });
    applySighting(step.sighting);
    const at = now().toISOString();
    if (step.instanceId) sql('UPDATE machines SET instance_id=?, updated_at=? WHERE mac=?').run(step.instanceId, at, mac);
    sql('UPDATE machines SET last_step=?, last_seen=? WHERE mac=?').run(step.lastStep, at, mac);
    if (step.loader) sql('UPDATE machines SET loader_at=?, secure_boot_seen=COALESCE(?, secure_boot_seen) WHERE mac=?').run(at, step.loader.secureBoot, mac);
    appendEvent({ ...step.event, mac, source });
  }

  function update(mac: Mac, patch: MachinePatch, source: string): Machine {
    const before = load(mac);
    const role = patch.role === undefined ? before.role : patch.role;
    const cluster = patch.cluster === undefined ? before.cluster : patch.cluster;
    if (cluster !== null && patch.cluster !== undefined) requireCluster(cluster);
    const placementChanged = role !== before.role || cluster !== before.cluster;
    const assignedNow = role !== null && cluster !== null;
    if (placementChanged && !['discovered', 'assigned'].includes(before.state)) {
      throw conflict(
        'ERR_TRANSITION',
        `the role or cluster of a machine in state "${before.state}" cannot change; reimage it or delete it first`,
        patch.role !== undefined ? 'role' : 'cluster',
      );
    }
    const hostname = patch.hostname === undefined ? before.hostname : patch.hostname;
    if (assignedNow && hostname === null) throw invalid('ERR_REQUIRED', 'an assigned machine needs a hostname', 'hostname');
    const at = now().toISOString();
    const sets: string[] = [];
    const values: Record<string, unknown> = { mac, at };
    const set = (column: string, value: unknown): void => {
      sets.push(`${column}=@${column}`);
      values[column] = value;
    };
    if (patch.hostname !== undefined) set('hostname', patch.hostname);
    if (patch.role !== undefined) set('role', patch.role);
    if (patch.cluster !== undefined) set('cluster', patch.cluster);
    if (patch.ip !== undefined) set('ip', patch.ip);
    if (patch.rack !== undefined) set('rack', patch.rack);
    if (patch.installDisk !== undefined) set('install_disk', patch.installDisk);
    if (patch.unit !== undefined) set('unit', patch.unit);
    if (patch.bootLoader !== undefined) set('boot_loader', patch.bootLoader);
    if (patch.secureBoot !== undefined) set('secure_boot', patch.secureBoot === null ? null : patch.secureBoot ? 1 : 0);
    if (patch.bmc === null) {
      for (const c of ['bmc_driver', 'bmc_address', 'bmc_port', 'bmc_username', 'bmc_password_sealed', 'bmc_cipher_suite', 'bmc_options', 'bmc_facts']) set(c, null);
    } else if (patch.bmc !== undefined) {
      // Merged into what is stored: a form or script that sends only what it changed keeps the rest.
      const b = patch.bmc;
      const old = before.bmc;
      const address = b.address ?? old?.address;
      const username = b.username ?? old?.username;
      if (address === undefined) throw invalid('ERR_REQUIRED', 'a new BMC needs an address', 'bmc.address');
      if (username === undefined) throw invalid('ERR_REQUIRED', 'a new BMC needs a user name', 'bmc.username');
      if (b.password === undefined && !old?.hasPassword) throw invalid('ERR_REQUIRED', 'a new BMC needs a password', 'bmc.password');
      const keep = <T,>(given: T | undefined, stored: T): T => (given === undefined ? stored : given);
      set('bmc_driver', b.driver ?? old?.driver ?? 'ipmi');
      set('bmc_address', address);
      set('bmc_port', keep(b.port, old?.port ?? null));
      set('bmc_username', username);
      set('bmc_cipher_suite', keep(b.cipherSuite, old?.cipherSuite ?? null));
      set(
        'bmc_options',
        bmcOptionsToJson({
          systemId: keep(b.systemId, old?.systemId ?? null),
          verifyTls: keep(b.verifyTls, old?.verifyTls ?? true),
          tlsFingerprint: keep(b.tlsFingerprint, old?.tlsFingerprint ?? null),
          solCapture: keep(b.solCapture, old?.solCapture ?? null),
        }),
      );
      if (b.password !== undefined) set('bmc_password_sealed', box.seal(b.password));
    }
    if (sets.length > 0) {
      guarded(() => sql(`UPDATE machines SET ${sets.join(', ')}, updated_at=@at WHERE mac=@mac`).run(values));
      const changed = Object.keys(patch).filter((k) => k !== 'bmc');
      // Old and new values, so that a view filtered by rack or cluster hears of a machine leaving it.
      const changes: Record<string, { from: unknown; to: unknown }> = {};
      for (const k of ['hostname', 'role', 'cluster', 'ip', 'rack', 'unit', 'installDisk', 'bootLoader', 'secureBoot'] as const) {
        if (patch[k] !== undefined && patch[k] !== before[k]) changes[k] = { from: before[k], to: patch[k] };
      }
      appendEvent({
        mac,
        cluster: cluster,
        type: 'machine.updated',
        source,
        message: `updated ${[...changed, ...(patch.bmc === null ? ['bmc (removed)'] : patch.bmc !== undefined ? [`bmc (${Object.keys(patch.bmc).join(', ')})`] : [])].join(', ')}`,
        data: { changes },
      });
    }
    if (placementChanged && before.state === 'discovered' && assignedNow) {
      const seed = sealedToken();
      sql('UPDATE machines SET seed_token_hash=?, seed_token_sealed=?, seed_token_address=NULL WHERE mac=?').run(seed.hash, seed.sealed, mac);
      return applyTransition(mac, 'assign', { source, message: `assigned as ${role} of cluster ${cluster}` });
    }
    if (placementChanged && before.state === 'assigned' && !assignedNow) {
      sql('UPDATE machines SET seed_token_hash=NULL, seed_token_sealed=NULL, seed_token_address=NULL WHERE mac=?').run(mac);
      return applyTransition(mac, 'unassign', { source, message: 'role or cluster removed' });
    }
    return load(mac);
  }

  /** A MAC, host name or IP twice in one sheet: the second row is named with the first. */
  function noDuplicateRows(rows: readonly ImportRow[]): void {
    const seen = new Map<string, number>();
    for (const r of rows) {
      for (const [field, value] of [['mac', r.mac], ['hostname', r.hostname], ['ip', r.ip]] as const) {
        if (value == null) continue;
        const key = `${field}=${value}`;
        const first = seen.get(key);
        if (first !== undefined) throw conflict('ERR_DUPLICATE', `row ${r.row}, column ${field}: "${value}" is also in row ${first}`, field);
        seen.set(key, r.row);
      }
    }
  }

  /** Names the CSV row and column in a store error, the way an admin finds the cell to fix. */
  function atRow<T>(r: ImportRow, fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      if (err instanceof AppError) {
        const column = err.field === 'bmc.password' ? 'bmc_password' : err.field?.replace('bmc.', 'bmc_') ?? 'mac';
        throw new AppError(err.kind, err.code, `row ${r.row}, column ${column}: ${err.message}`, column, [{ row: r.row, field: column, message: err.message }]);
      }
      throw err;
    }
  }

  /** One row of a re-imported sheet: created, or the known machine brought in line with it. */
  function upsertRow(r: ImportRow): UpsertResult {
    const existing = byMac.get(r.mac);
    if (!existing || existing.state === 'discovered') return { machine: insertOrAdopt(r), outcome: 'created' };
    const before = machineFromRow(existing);
    const patch: { -readonly [K in keyof MachinePatch]: MachinePatch[K] } = {};
    for (const k of ['hostname', 'role', 'cluster', 'ip', 'rack', 'unit'] as const) {
      const v = r[k];
      if (v !== undefined && v !== null && v !== before[k]) (patch as Record<string, unknown>)[k] = v;
    }
    if (r.bmc) {
      const b = r.bmc;
      const old = before.bmc;
      const bmc: Record<string, unknown> = {};
      if (b.address !== old?.address) bmc['address'] = b.address;
      if (b.username !== old?.username) bmc['username'] = b.username;
      if (b.port != null && b.port !== old?.port) bmc['port'] = b.port;
      if (b.cipherSuite != null && b.cipherSuite !== old?.cipherSuite) bmc['cipherSuite'] = b.cipherSuite;
      const stored = sealedOf.get(r.mac)?.bmc_password_sealed;
      if (!stored || box.open(stored) !== b.password) bmc['password'] = b.password;
      if (Object.keys(bmc).length > 0) patch.bmc = bmc;
    }
    if (Object.keys(patch).length === 0) return { machine: before, outcome: 'unchanged' };
    return { machine: update(r.mac, patch, 'import'), outcome: 'updated' };
  }

  return {
    async create(input) {
      return db.transaction(() => insertOrAdopt(input)).immediate();
    },
    async get(mac) {
      const row = byMac.get(mac);
      return row ? machineFromRow(row) : null;
    },
    async byIp(ip) {
      const row = byIpRow.get(ip);
      return row ? machineFromRow(row) : null;
    },
    async list(filter: MachineFilter = {}, page: MachinePage = {}) {
      const params: Record<string, unknown> = {};
      for (const key of LIST_KEYS) if (filter[key] !== undefined) params[key] = filter[key];
      if (page.after) {
        params['afterRack'] = page.after.rack ?? '';
        params['afterHostname'] = page.after.hostname ?? '';
        params['afterMac'] = page.after.mac;
      }
      if (page.limit !== undefined) params['limit'] = page.limit;
      return listStatement(filter, page).all(params).map(machineFromRow);
    },
    async update(mac, patch, source) {
      return db.transaction(() => update(mac, patch, source)).immediate();
    },
    async delete(mac) {
      db.transaction(() => {
        const m = load(mac);
        sql('DELETE FROM machines WHERE mac = ?').run(mac);
        // Its placement goes with the event: the row is gone, and a view filtered by rack still hears of it.
        appendEvent({ mac, cluster: m.cluster, type: 'machine.deleted', source: 'api', message: `machine ${m.hostname ?? mac} deleted`, data: { hostname: m.hostname, rack: m.rack } });
      }).immediate();
    },
    async importAll(rows: readonly ImportRow[]) {
      return db
        .transaction(() => {
          noDuplicateRows(rows);
          return rows.map((r) => atRow(r, () => insertOrAdopt(r)));
        })
        .immediate();
    },
    async upsertAll(rows: readonly ImportRow[]) {
      return db
        .transaction(() => {
          noDuplicateRows(rows);
          return rows.map((r) => atRow(r, () => upsertRow(r)));
        })
        .immediate();
    },
    async updateAll(macs, patch, source) {
      return db
        .transaction(() =>
          macs.map((mac) => {
            try {
              return update(mac, patch, source);
            } catch (err) {
              if (err instanceof AppError) throw new AppError(err.kind, err.code, `${mac}: ${err.message}`, err.field);
              throw err;
            }
          }),
        )
        .immediate();
    },
    async setPowerState(mac, state, at) {
      sql('UPDATE machines SET power_state=?, power_state_at=? WHERE mac=?').run(state, at, mac);
    },
    async transition(mac, event, ctx) {
      return db.transaction(() => applyTransition(mac, event, ctx)).immediate();
    },
    async recordSighting(s: Sighting) {
      return db
        .transaction(() => {
          const created = applySighting(s);
          return { machine: load(s.mac), created };
        })
        .immediate();
    },
    async recordBootScripts(steps: readonly BootScriptRecord[]) {
      return db
        .transaction(() =>
          steps.map((step): BootScriptOutcome => {
            try {
              // A savepoint per step: a refused transition leaves the batch's other steps.
              db.transaction(() => applyBootScript(step))();
              return { ok: true };
            } catch (err) {
              return { ok: false, error: err instanceof Error ? err : new Error(String(err)) };
            }
          }),
        )
        .immediate();
    },
    async setLastStep(mac, step) {
      sql('UPDATE machines SET last_step=?, last_seen=? WHERE mac=?').run(step, now().toISOString(), mac);
    },
    async recordBootStep(mac, step) {
      const at = now().toISOString();
      if (step.kind === 'bootfile') sql('UPDATE machines SET bootfile=?, bootfile_at=?, last_seen=? WHERE mac=?').run(step.file, at, at, mac);
      else sql('UPDATE machines SET loader_at=?, secure_boot_seen=COALESCE(?, secure_boot_seen), last_seen=? WHERE mac=?').run(at, step.secureBoot, at, mac);
    },
    async bmcPassword(mac) {
      const row = sealedOf.get(mac);
      return row?.bmc_password_sealed ? box.open(row.bmc_password_sealed) : null;
    },
    async rotateSeedToken(mac) {
      const s = sealedToken();
      const r = sql('UPDATE machines SET seed_token_hash=?, seed_token_sealed=?, seed_token_address=NULL, updated_at=? WHERE mac=?').run(s.hash, s.sealed, now().toISOString(), mac);
      if (r.changes === 0) throw notFound('ERR_UNKNOWN_MACHINE', `no machine with MAC ${mac}`);
      return s.token;
    },
    async seedToken(mac) {
      const row = sealedOf.get(mac);
      return row?.seed_token_sealed ? box.open(row.seed_token_sealed) : null;
    },
    async findBySeedToken(token) {
      const row = byTokenHash.get(hashToken(token));
      return row ? machineFromRow(row) : null;
    },
    async seedTokenFor(mac, address) {
      return db
        .transaction(() => {
          const row = seedOf.get(mac);
          if (!row?.seed_token_sealed) return null;
          if (row.seed_token_address === address) return { token: box.open(row.seed_token_sealed), rebound: null };
          if (row.seed_token_address === null) {
            sql('UPDATE machines SET seed_token_address=? WHERE mac=?').run(address, mac);
            return { token: box.open(row.seed_token_sealed), rebound: null };
          }
          // Another address holds the token: the one that asked last gets a new one.
          const s = sealedToken();
          sql('UPDATE machines SET seed_token_hash=?, seed_token_sealed=?, seed_token_address=?, updated_at=? WHERE mac=?').run(s.hash, s.sealed, address, now().toISOString(), mac);
          return { token: s.token, rebound: row.seed_token_address };
        })
        .immediate();
    },
    async seedAddress(mac) {
      return seedOf.get(mac)?.seed_token_address ?? null;
    },
    async setInstanceId(mac, instanceId) {
      sql('UPDATE machines SET instance_id=?, updated_at=? WHERE mac=?').run(instanceId, now().toISOString(), mac);
    },
    async setHostKeys(mac, keys: readonly SshHostKey[]) {
      sql('UPDATE machines SET host_keys=?, updated_at=? WHERE mac=?').run(JSON.stringify(keys), now().toISOString(), mac);
    },
    async setInstalledDisk(mac, disk) {
      const at = now().toISOString();
      const stored: InstalledDisk = { ...disk, reportedAt: at };
      sql('UPDATE machines SET installed_disk=?, updated_at=? WHERE mac=?').run(JSON.stringify(stored), at, mac);
    },
    async setBmcFacts(mac, facts) {
      sql('UPDATE machines SET bmc_facts=? WHERE mac=?').run(JSON.stringify(facts), mac);
    },
  };
}
