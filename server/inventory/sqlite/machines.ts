import type Database from 'better-sqlite3';
import { bmcProtocolProblems } from '../bmc-protocol.js';
import { AppError, conflict, invalid, notFound } from '../../lib/errors.js';
import type { Mac } from '../../lib/mac.js';
import { hashToken, newToken, type SecretBox } from '../../lib/secrets.js';
import { transition, type MachineEventType } from '../lifecycle.js';
import type { InstalledDisk, Machine, SshHostKey } from '../model.js';
import type { BootScriptRecord, BootScriptOutcome, ImportRow, MachineFilter, MachinePage, MachinePatch, MachineRepo, NewEvent, NewMachine, Sighting, TransitionContext, UpsertResult } from '../store.js';
import { prepared, type Db } from './db.js';
import { MACHINE_COLUMNS, PLAN_COLUMNS, bmcOptionsToJson, constraintField, machineFromRow, planMachineFromRow, type MachineRow, type MachineViewRow, type PlanRow } from './rows.js';

export interface MachineRepoDeps {
  readonly db: Db;
  readonly box: SecretBox;
  readonly now: () => Date;
  /** Appends an event inside the caller's transaction. */
  readonly appendEvent: (e: NewEvent) => void;
}

const COLUMN_FOR_FIELD: Record<string, string> = { mac: 'mac', hostname: 'hostname', ip: 'ip' };

/*
 * What follows up to createMachineRepo is engine-neutral: the rules of the machine repository as
 * pure decisions over rows and patches, shared with the PostgreSQL repository (../postgres).
 * Each engine's repository only reads, locks and writes what these decide.
 */

/** A UNIQUE violation on `column` (or null when the error is another one), as the 409 an API caller sees. */
export function duplicateError(column: string | null): AppError | null {
  if (!column) return null;
  const field = Object.keys(COLUMN_FOR_FIELD).find((f) => COLUMN_FOR_FIELD[f] === column) ?? column;
  return conflict('ERR_DUPLICATE', `another machine already has this ${field}`, field);
}

export function sealedToken(box: SecretBox): { token: string; hash: string; sealed: string } {
  const token = newToken('', 24);
  return { token, hash: hashToken(token), sealed: box.seal(token) };
}

/** A flag as stored (0/1), null kept. */
export const flag = (b: boolean | null | undefined): number | null => (b === undefined || b === null ? null : b ? 1 : 0);

/** The columns a create (or the adoption of a discovered machine) writes: placement, BMC, a fresh seed token. */
export function placementColumns(input: NewMachine, box: SecretBox): Record<string, unknown> {
  const seed = sealedToken(box);
  const bmc = input.bmc ?? null;
  return {
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
  };
}

export const assignMessage = (role: string | null, cluster: string | null): string => `assigned as ${role} of cluster ${cluster}`;

/** A machine already past `discovered` is not adopted again. */
export function refuseAdoption(mac: Mac, state: string | undefined): void {
  if (state !== undefined && state !== 'discovered') throw conflict('ERR_DUPLICATE', `a machine with MAC ${mac} already exists`, 'mac');
}

/** The pure lifecycle transition as the columns it writes and the `state` event that records it. */
export function transitionWrite(before: Machine, event: MachineEventType, ctx: TransitionContext, at: string): { columns: Record<string, unknown>; event: NewEvent } {
  const next = transition(before, event);
  const failed = event === 'fail';
  // An install attempt starts when the machine enters provisioning; an installer served again
  // (a power blip) is the same attempt, so a boot loop cannot outlive the install deadline.
  const installStarted = next.state === 'provisioning' && before.state !== 'provisioning' ? at : before.installStartedAt;
  return {
    columns: {
      state: next.state,
      failed_from: next.failedFrom,
      failed_step: failed ? (ctx.step ?? null) : null,
      failed_reason: failed ? (ctx.reason ?? null) : null,
      install_started_at: installStarted,
      state_changed_at: at,
      updated_at: at,
    },
    event: {
      mac: before.mac,
      cluster: before.cluster,
      type: 'state',
      source: ctx.source,
      message: ctx.message ?? (failed ? `failed at ${ctx.step ?? 'an unknown step'}: ${ctx.reason ?? 'no reason given'}` : `${before.state} → ${next.state}`),
      data: { from: before.state, to: next.state, event, ...(ctx.step ? { step: ctx.step } : {}), ...(ctx.reason ? { reason: ctx.reason } : {}), ...ctx.data },
    },
  };
}

/** The facts a sighting carries, as columns (a missing one keeps what is stored). */
export function sightingFacts(s: Sighting): { arch: string | null; firmware: string | null; vendor_class: string | null; uuid: string | null } {
  return { arch: s.arch ?? null, firmware: s.firmware ?? null, vendor_class: s.vendorClass ?? null, uuid: s.uuid ?? null };
}

/** The `state` event of a machine first seen. */
export function discoveredEvent(s: Sighting): NewEvent {
  return {
    mac: s.mac,
    type: 'state',
    source: s.source,
    message: `discovered (${[s.firmware, s.arch, s.vendorClass].filter(Boolean).join(', ') || 'no details'})`,
    data: { from: null, to: 'discovered', event: 'discover', ...sightingFacts(s) },
  };
}

/** What an update writes, decided from the machine as it stands. */
export interface UpdatePlan {
  /** The columns to set (updated_at aside); empty when only the placement's follow-up changes. */
  readonly columns: Record<string, unknown>;
  readonly event: NewEvent | null;
  /** The lifecycle follow-up of a placement change, with the seed token columns it writes first. */
  readonly then: { readonly event: 'assign' | 'unassign'; readonly message: string; readonly seed: Record<string, unknown> } | null;
}

/** The rules of an update. The caller has checked that a named cluster exists. */
export function planUpdate(before: Machine, patch: MachinePatch, source: string, box: SecretBox): UpdatePlan {
  const role = patch.role === undefined ? before.role : patch.role;
  const cluster = patch.cluster === undefined ? before.cluster : patch.cluster;
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
  const columns: Record<string, unknown> = {};
  const set = (column: string, value: unknown): void => {
    columns[column] = value;
  };
  if (patch.hostname !== undefined) set('hostname', patch.hostname);
  if (patch.role !== undefined) set('role', patch.role);
  if (patch.cluster !== undefined) set('cluster', patch.cluster);
  if (patch.ip !== undefined) set('ip', patch.ip);
  if (patch.rack !== undefined) set('rack', patch.rack);
  if (patch.installDisk !== undefined) set('install_disk', patch.installDisk);
  if (patch.unit !== undefined) set('unit', patch.unit);
  if (patch.bootLoader !== undefined) set('boot_loader', patch.bootLoader);
  if (patch.secureBoot !== undefined) set('secure_boot', flag(patch.secureBoot));
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
    const driver = b.driver ?? old?.driver ?? 'ipmi';
    // The API checks a patch that names its driver; most do not, and keep the stored one.
    const [problem] = bmcProtocolProblems(driver, b);
    if (problem) throw invalid('ERR_VALIDATION', `bmc.${problem.field}: ${problem.message}`, `bmc.${problem.field}`);
    // A BMC moved to the other protocol keeps none of the old one's own settings.
    const switched = old !== null && old !== undefined && old.driver !== driver;
    const keep = <T,>(given: T | undefined, stored: T, fresh: T): T => (given !== undefined ? given : switched ? fresh : stored);
    set('bmc_driver', driver);
    set('bmc_address', address);
    set('bmc_port', keep(b.port, old?.port ?? null, null));
    set('bmc_username', username);
    set('bmc_cipher_suite', keep(b.cipherSuite, old?.cipherSuite ?? null, null));
    set(
      'bmc_options',
      bmcOptionsToJson({
        systemId: keep(b.systemId, old?.systemId ?? null, null),
        verifyTls: keep(b.verifyTls, old?.verifyTls ?? true, true),
        tlsFingerprint: keep(b.tlsFingerprint, old?.tlsFingerprint ?? null, null),
        solCapture: keep(b.solCapture, old?.solCapture ?? null, null),
      }),
    );
    if (b.password !== undefined) set('bmc_password_sealed', box.seal(b.password));
  }
  let event: NewEvent | null = null;
  if (Object.keys(columns).length > 0) {
    const changed = Object.keys(patch).filter((k) => k !== 'bmc');
    // Old and new values, so that a view filtered by rack or cluster hears of a machine leaving it.
    const changes: Record<string, { from: unknown; to: unknown }> = {};
    for (const k of ['hostname', 'role', 'cluster', 'ip', 'rack', 'unit', 'installDisk', 'bootLoader', 'secureBoot'] as const) {
      if (patch[k] !== undefined && patch[k] !== before[k]) changes[k] = { from: before[k], to: patch[k] };
    }
    event = {
      mac: before.mac,
      cluster: cluster,
      type: 'machine.updated',
      source,
      message: `updated ${[...changed, ...(patch.bmc === null ? ['bmc (removed)'] : patch.bmc !== undefined ? [`bmc (${Object.keys(patch.bmc).join(', ')})`] : [])].join(', ')}`,
      data: { changes },
    };
  }
  let then: UpdatePlan['then'] = null;
  if (placementChanged && before.state === 'discovered' && assignedNow) {
    const seed = sealedToken(box);
    then = { event: 'assign', message: assignMessage(role, cluster), seed: { seed_token_hash: seed.hash, seed_token_sealed: seed.sealed, seed_token_address: null } };
  } else if (placementChanged && before.state === 'assigned' && !assignedNow) {
    then = { event: 'unassign', message: 'role or cluster removed', seed: { seed_token_hash: null, seed_token_sealed: null, seed_token_address: null } };
  }
  return { columns, event, then };
}

/** A MAC, host name or IP twice in one sheet: the second row is named with the first. */
export function noDuplicateRows(rows: readonly ImportRow[]): void {
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

/** A store error of one CSV row, naming the row and column the way an admin finds the cell to fix. */
export function atRowError(r: ImportRow, err: unknown): unknown {
  if (!(err instanceof AppError)) return err;
  const column = err.field === 'bmc.password' ? 'bmc_password' : err.field?.replace('bmc.', 'bmc_') ?? 'mac';
  return new AppError(err.kind, err.code, `row ${r.row}, column ${column}: ${err.message}`, column, [{ row: r.row, field: column, message: err.message }]);
}

/** A store error of one machine of a bulk update, naming the machine. */
export function ofMachineError(mac: Mac, err: unknown): unknown {
  return err instanceof AppError ? new AppError(err.kind, err.code, `${mac}: ${err.message}`, err.field) : err;
}

/**
 * A re-imported row against the known machine: the patch that brings it in line (fields the row
 * leaves empty keep their values), empty when nothing differs. `storedPassword` is the BMC
 * password in clear (asked only when the row has a BMC).
 */
export function upsertPatch(before: Machine, r: ImportRow, storedPassword: string | null): MachinePatch {
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
    if (storedPassword !== b.password) bmc['password'] = b.password;
    if (Object.keys(bmc).length > 0) patch.bmc = bmc;
  }
  return patch;
}

/**
 * The seed token for a boot script fetched from `address` (see MachineRepo.seedTokenFor), from the
 * machine's stored token and binding: the answer, and the columns to write for it (or null).
 */
export function bindSeedToken(
  row: Pick<MachineRow, 'seed_token_sealed' | 'seed_token_address'> | undefined,
  address: string,
  box: SecretBox,
  at: string,
): { result: { token: string; rebound: string | null } | null; columns: Record<string, unknown> | null } {
  if (!row?.seed_token_sealed) return { result: null, columns: null };
  if (row.seed_token_address === address) return { result: { token: box.open(row.seed_token_sealed), rebound: null }, columns: null };
  if (row.seed_token_address === null) return { result: { token: box.open(row.seed_token_sealed), rebound: null }, columns: { seed_token_address: address } };
  // Another address holds the token: the one that asked last gets a new one.
  const s = sealedToken(box);
  return { result: { token: s.token, rebound: row.seed_token_address }, columns: { seed_token_hash: s.hash, seed_token_sealed: s.sealed, seed_token_address: address, updated_at: at } };
}

/** The event of a deleted machine: its placement goes with it, so a view filtered by rack still hears of it. */
export function deletedEvent(m: Machine): NewEvent {
  return { mac: m.mac, cluster: m.cluster, type: 'machine.deleted', source: 'api', message: `machine ${m.hostname ?? m.mac} deleted`, data: { hostname: m.hostname, rack: m.rack } };
}

/** The list filters, each an equality on its column. */
export const LIST_KEYS = ['cluster', 'role', 'state', 'rack'] as const;

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
  function listStatement(filter: MachineFilter, page: MachinePage): Database.Statement<Record<string, unknown>, MachineViewRow> {
    const where = LIST_KEYS.filter((k) => filter[k] !== undefined).map((k) => `${k} = @${k}`);
    if (page.after) where.push("(COALESCE(rack, ''), COALESCE(hostname, ''), mac) > (@afterRack, @afterHostname, @afterMac)");
    return sql<Record<string, unknown>, MachineViewRow>(
      `SELECT ${MACHINE_COLUMNS} FROM machines ${where.length ? 'WHERE ' + where.join(' AND ') : ''}
       ORDER BY COALESCE(rack, ''), COALESCE(hostname, ''), mac ${page.limit !== undefined ? 'LIMIT @limit' : ''}`,
    );
  }
  const clusterExists = sql<[string], { n: number }>('SELECT 1 AS n FROM clusters WHERE name = ?');
  const planRows = sql<[], PlanRow>(`SELECT ${PLAN_COLUMNS} FROM machines`);

  function load(mac: Mac): Machine {
    const row = byMac.get(mac);
    if (!row) throw notFound('ERR_UNKNOWN_MACHINE', `no machine with MAC ${mac}`);
    return machineFromRow(row);
  }

  function requireCluster(name: string): void {
    if (!clusterExists.get(name)) throw invalid('ERR_UNKNOWN_CLUSTER', `no cluster named "${name}"`, 'cluster');
  }

  /** Sets these columns of one machine. */
  function write(mac: Mac, columns: Record<string, unknown>): Database.RunResult {
    return sql(`UPDATE machines SET ${Object.keys(columns).map((c) => `${c}=@${c}`).join(', ')} WHERE mac=@mac`).run({ ...columns, mac });
  }

  /** Runs a write and turns UNIQUE violations into a 409 naming the field. */
  function guarded<T>(fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      throw duplicateError(constraintField(err)) ?? err;
    }
  }

  function insertOrAdopt(input: NewMachine): Machine {
    requireCluster(input.cluster);
    const at = now().toISOString();
    const existing = byMac.get(input.mac);
    refuseAdoption(input.mac, existing?.state);
    const values = { ...placementColumns(input, box), mac: input.mac, at };
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
        secure_boot: flag(input.secureBoot),
      });
    }
    return applyTransition(input.mac, 'assign', { source: 'api', message: assignMessage(input.role, input.cluster) });
  }

  function applyTransition(mac: Mac, event: MachineEventType, ctx: TransitionContext): Machine {
    writeTransition(mac, event, ctx);
    return load(mac);
  }

  /** The transition's columns and its event, without reading the machine back (the boot path has no use for it). */
  function writeTransition(mac: Mac, event: MachineEventType, ctx: TransitionContext): void {
    const w = transitionWrite(load(mac), event, ctx, now().toISOString());
    write(mac, w.columns);
    appendEvent(w.event);
  }

  /** Records what a sighting saw (facts kept when a later one lacks them); an unknown MAC becomes a discovered machine. True when it was new. */
  function applySighting(s: Sighting): boolean {
    const at = now().toISOString();
    const facts = sightingFacts(s);
    if (byMac.get(s.mac)) {
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
    appendEvent(discoveredEvent(s));
    return true;
  }

  /** The transition first: refused, it throws before anything of the step is written. */
  function applyBootScript(step: BootScriptRecord): void {
    const { mac, source } = step.sighting;
    if (step.transition) writeTransition(mac, step.transition.event, { source, message: step.transition.message });
    if (!writeStep(step)) {
      applySighting(step.sighting);
      writeStep(step);
    }
    appendEvent({ ...step.event, mac, source });
  }

  /** What applySighting, the instance id, the last step and the loader write, in one statement to an existing row; false: no row. */
  function writeStep(step: BootScriptRecord): boolean {
    const loader = step.loader ?? null;
    const r = sql(
      `UPDATE machines SET arch=COALESCE(@arch, arch), firmware=COALESCE(@firmware, firmware),
         vendor_class=COALESCE(@vendor_class, vendor_class), uuid=COALESCE(@uuid, uuid),
         first_seen=COALESCE(first_seen, @at), last_seen=@at, last_step=@last_step,
         instance_id=COALESCE(@instance_id, instance_id), updated_at=CASE WHEN @instance_id IS NULL THEN updated_at ELSE @at END,
         loader_at=CASE WHEN @loader THEN @at ELSE loader_at END,
         secure_boot_seen=CASE WHEN @loader THEN COALESCE(@secure_boot, secure_boot_seen) ELSE secure_boot_seen END
       WHERE mac=@mac`,
    ).run({ ...sightingFacts(step.sighting), at: now().toISOString(), last_step: step.lastStep, instance_id: step.instanceId, loader: loader ? 1 : 0, secure_boot: loader?.secureBoot ?? null, mac: step.sighting.mac });
    return r.changes > 0;
  }

  function update(mac: Mac, patch: MachinePatch, source: string): Machine {
    const before = load(mac);
    if (patch.cluster) requireCluster(patch.cluster);
    const plan = planUpdate(before, patch, source, box);
    if (plan.event) {
      guarded(() => write(mac, { ...plan.columns, updated_at: now().toISOString() }));
      appendEvent(plan.event);
    }
    if (!plan.then) return load(mac);
    write(mac, plan.then.seed);
    return applyTransition(mac, plan.then.event, { source, message: plan.then.message });
  }

  /** Names the CSV row and column in a store error. */
  function atRow<T>(r: ImportRow, fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      throw atRowError(r, err);
    }
  }

  /** One row of a re-imported sheet: created, or the known machine brought in line with it. */
  function upsertRow(r: ImportRow): UpsertResult {
    const existing = byMac.get(r.mac);
    if (!existing || existing.state === 'discovered') return { machine: insertOrAdopt(r), outcome: 'created' };
    const before = machineFromRow(existing);
    const stored = r.bmc ? sealedOf.get(r.mac)?.bmc_password_sealed : null;
    const patch = upsertPatch(before, r, stored ? box.open(stored) : null);
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
    async planFacts() {
      return planRows.all().map(planMachineFromRow);
    },
    async update(mac, patch, source) {
      return db.transaction(() => update(mac, patch, source)).immediate();
    },
    async delete(mac) {
      db.transaction(() => {
        const m = load(mac);
        sql('DELETE FROM machines WHERE mac = ?').run(mac);
        appendEvent(deletedEvent(m));
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
              throw ofMachineError(mac, err);
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
            // Without a transition nothing is refused: only the database can fail, and then the batch.
            if (!step.transition) {
              applyBootScript(step);
              return { ok: true };
            }
            try {
              // A savepoint per transition: a refused one leaves the batch's other steps.
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
      const s = sealedToken(box);
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
      // The usual ask, a script fetched again from the address the token is bound to, writes
      // nothing: answered from a read, without the write transaction.
      const bound = bindSeedToken(seedOf.get(mac), address, box, now().toISOString());
      if (!bound.columns) return bound.result;
      return db
        .transaction(() => {
          const { result, columns } = bindSeedToken(seedOf.get(mac), address, box, now().toISOString());
          if (columns) write(mac, columns);
          return result;
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
