import { invalid, notFound } from '../../lib/errors.js';
import type { Mac } from '../../lib/mac.js';
import { hashToken, type SecretBox } from '../../lib/secrets.js';
import type { MachineEventType } from '../lifecycle.js';
import type { InstalledDisk, Machine } from '../model.js';
import type { BootScriptOutcome, BootScriptRecord, ImportRow, MachineFilter, MachinePage, MachinePatch, MachineRepo, NewMachine, Sighting, TransitionContext, UpsertResult } from '../store.js';
import { MACHINE_COLUMNS, PLAN_COLUMNS, machineFromRow, planMachineFromRow, type MachineRow, type MachineViewRow, type PlanRow } from '../sqlite/rows.js';
import {
  LIST_KEYS,
  assignMessage,
  atRowError,
  bindSeedToken,
  deletedEvent,
  discoveredEvent,
  duplicateError,
  flag,
  noDuplicateRows,
  ofMachineError,
  placementColumns,
  planUpdate,
  refuseAdoption,
  sealedToken,
  sightingFacts,
  transitionWrite,
  upsertPatch,
} from '../sqlite/machines.js';
import { pgConstraintField, type PgDb, type Queryable } from './db.js';
import { eventMark, rollbackEvents, type AppendEvent } from './events.js';
import type { GroupCommit } from './group-commit.js';

export interface PgMachineRepoDeps {
  readonly db: PgDb;
  /** Where the boot path's small writes (last step, bootfile, loader) share their commits. */
  readonly group: GroupCommit;
  readonly box: SecretBox;
  readonly now: () => Date;
  /** Appends an event inside the caller's transaction. */
  readonly appendEvent: AppendEvent;
}

type Sealed = Pick<MachineRow, 'bmc_password_sealed' | 'seed_token_sealed' | 'seed_token_address'>;

/** MACHINE_COLUMNS of the table as `m`, where another relation has the same columns. */
const MACHINE_COLUMNS_OF_M = MACHINE_COLUMNS.split(', ')
  .map((col) => (/^[a-z_]+$/.test(col) ? `m.${col}` : col.replace(/\bbmc_password_sealed\b/, 'm.bmc_password_sealed')))
  .join(', ');

/** Another instance's write in the way (serialization failure, deadlock): the whole transaction runs again (PgDb.tx). */
const retryable = (err: unknown): boolean => ['40001', '40P01'].includes((err as { code?: string }).code ?? '');

/**
 * Machines on PostgreSQL: the SQLite repository's rules (the decisions it exports), each write one
 * transaction with its events. Several instances write at once: a row read to decide a write is
 * locked first (`FOR UPDATE`), and a machine that two instances discover or create at the same
 * moment is inserted once (`ON CONFLICT DO NOTHING`), the other instance then working on that row.
 */
export function createPgMachineRepo({ db, group, box, now, appendEvent }: PgMachineRepoDeps): MachineRepo {
  async function find(c: Queryable, column: 'mac' | 'ip' | 'seed_token_hash', value: string, lock = false): Promise<MachineViewRow | null> {
    const r = await c.query<MachineViewRow>(`SELECT ${MACHINE_COLUMNS} FROM machines WHERE ${column} = $1${lock ? ' FOR UPDATE' : ''}`, [value]);
    return r.rows[0] ?? null;
  }

  async function load(c: Queryable, mac: Mac, lock = false): Promise<Machine> {
    const row = await find(c, 'mac', mac, lock);
    if (!row) throw notFound('ERR_UNKNOWN_MACHINE', `no machine with MAC ${mac}`);
    return machineFromRow(row);
  }

  async function sealedOf(c: Queryable, mac: Mac, lock = false): Promise<Sealed | undefined> {
    const r = await c.query<Sealed>(`SELECT bmc_password_sealed, seed_token_sealed, seed_token_address FROM machines WHERE mac = $1${lock ? ' FOR UPDATE' : ''}`, [mac]);
    return r.rows[0];
  }

  /** The cluster held (a concurrent delete of it waits for this transaction, and then sees its machine). */
  async function requireCluster(c: Queryable, name: string): Promise<void> {
    const r = await c.query('SELECT 1 FROM clusters WHERE name = $1 FOR KEY SHARE', [name]);
    if (r.rowCount === 0) throw invalid('ERR_UNKNOWN_CLUSTER', `no cluster named "${name}"`, 'cluster');
  }

  /**
   * Sets these columns of one machine and returns it as written (null: no such machine), which
   * spares a read after each write; UNIQUE violations become a 409 naming the field.
   */
  async function write(c: Queryable, mac: Mac, columns: Record<string, unknown>): Promise<Machine | null> {
    const names = Object.keys(columns);
    try {
      const r = await c.query<MachineViewRow>(
        `UPDATE machines SET ${names.map((n, i) => `${n} = $${i + 1}`).join(', ')} WHERE mac = $${names.length + 1} RETURNING ${MACHINE_COLUMNS}`,
        [...Object.values(columns), mac],
      );
      return r.rows[0] ? machineFromRow(r.rows[0]) : null;
    } catch (err) {
      throw duplicateError(pgConstraintField(err)) ?? err;
    }
  }

  async function insertOrAdopt(c: Queryable, input: NewMachine): Promise<Machine> {
    await requireCluster(c, input.cluster);
    const at = now().toISOString();
    // A new MAC gets its row first and is then placed like a discovered one; the row, new or a
    // sighting's, is locked until commit, so two instances creating the same MAC take turns.
    await c.query(`INSERT INTO machines (mac, state, state_changed_at, created_at, updated_at) VALUES ($1, 'discovered', $2, $2, $2) ON CONFLICT (mac) DO NOTHING`, [input.mac, at]);
    refuseAdoption(input.mac, (await load(c, input.mac, true)).state);
    let placed = await write(c, input.mac, { ...placementColumns(input, box), seed_token_address: null, updated_at: at });
    if (input.bootLoader !== undefined || input.secureBoot !== undefined) {
      const r = await c.query<MachineViewRow>(
        `UPDATE machines SET boot_loader = COALESCE($1, boot_loader), secure_boot = COALESCE($2, secure_boot) WHERE mac = $3 RETURNING ${MACHINE_COLUMNS}`,
        [input.bootLoader ?? null, flag(input.secureBoot), input.mac],
      );
      placed = machineFromRow(r.rows[0]!);
    }
    return applyTransition(c, input.mac, 'assign', { source: 'api', message: assignMessage(input.role, input.cluster) }, placed!);
  }

  /** `current`: the machine as this transaction has it locked and last wrote it (read when absent). */
  async function applyTransition(c: Queryable, mac: Mac, event: MachineEventType, ctx: TransitionContext, current?: Machine): Promise<Machine> {
    const w = transitionWrite(current ?? (await load(c, mac, true)), event, ctx, now().toISOString());
    const after = await write(c, mac, w.columns);
    await appendEvent(c, w.event);
    return after!;
  }

  /** Records what a sighting saw (facts kept when a later one lacks them); an unknown MAC becomes a discovered machine. True when it was new. */
  async function applySighting(c: Queryable, s: Sighting): Promise<boolean> {
    const f = sightingFacts(s);
    const values = [s.mac, f.arch, f.firmware, f.vendor_class, f.uuid, now().toISOString()];
    const seen = (): Promise<{ rowCount: number | null }> =>
      c.query(
        `UPDATE machines SET arch = COALESCE($2, arch), firmware = COALESCE($3, firmware), vendor_class = COALESCE($4, vendor_class),
           uuid = COALESCE($5, uuid), first_seen = COALESCE(first_seen, $6), last_seen = $6 WHERE mac = $1`,
        values,
      );
    if ((await seen()).rowCount) return false;
    const inserted = await c.query(
      `INSERT INTO machines (mac, state, arch, firmware, vendor_class, uuid, first_seen, last_seen, state_changed_at, created_at, updated_at)
       VALUES ($1, 'discovered', $2, $3, $4, $5, $6, $6, $6, $6, $6) ON CONFLICT (mac) DO NOTHING`,
      values,
    );
    if (inserted.rowCount) {
      await appendEvent(c, discoveredEvent(s));
      return true;
    }
    // Another instance discovered it at this moment (its insert committed first): our facts go on its row.
    await seen();
    return false;
  }

  /**
   * The transition first: refused, it throws before anything of the step is written. Then the
   * step's facts, instance id, last step and loader in one statement (these writes hold the
   * site's events lock, so each round trip counts); a MAC without a row is discovered first.
   */
  async function applyBootScript(c: Queryable, step: BootScriptRecord): Promise<void> {
    const { mac, source } = step.sighting;
    if (step.transition) await applyTransition(c, mac, step.transition.event, { source, message: step.transition.message });
    if (!(await writeStep(c, step))) {
      await applySighting(c, step.sighting);
      await writeStep(c, step);
    }
    await appendEvent(c, { ...step.event, mac, source });
  }

  /** What applySighting, the instance id, the last step and the loader write, to an existing row; false: no row. */
  async function writeStep(c: Queryable, step: BootScriptRecord): Promise<boolean> {
    const f = sightingFacts(step.sighting);
    const loader = step.loader ?? null;
    const r = await c.query(
      `UPDATE machines SET arch = COALESCE($2, arch), firmware = COALESCE($3, firmware), vendor_class = COALESCE($4, vendor_class),
         uuid = COALESCE($5, uuid), first_seen = COALESCE(first_seen, $6), last_seen = $6, last_step = $7,
         instance_id = COALESCE($8, instance_id), updated_at = CASE WHEN $8::text IS NULL THEN updated_at ELSE $6 END,
         loader_at = CASE WHEN $9::boolean THEN $6 ELSE loader_at END,
         secure_boot_seen = CASE WHEN $9::boolean THEN COALESCE($10, secure_boot_seen) ELSE secure_boot_seen END
       WHERE mac = $1`,
      [step.sighting.mac, f.arch, f.firmware, f.vendor_class, f.uuid, now().toISOString(), step.lastStep, step.instanceId, loader !== null, loader?.secureBoot ?? null],
    );
    return (r.rowCount ?? 0) > 0;
  }

  /** `current` as in applyTransition. */
  async function update(c: Queryable, mac: Mac, patch: MachinePatch, source: string, current?: Machine): Promise<Machine> {
    const before = current ?? (await load(c, mac, true));
    if (patch.cluster) await requireCluster(c, patch.cluster);
    const plan = planUpdate(before, patch, source, box);
    let after = before;
    if (plan.event) {
      after = (await write(c, mac, { ...plan.columns, updated_at: now().toISOString() }))!;
      await appendEvent(c, plan.event);
    }
    if (!plan.then) return after;
    after = (await write(c, mac, plan.then.seed))!;
    return applyTransition(c, mac, plan.then.event, { source, message: plan.then.message }, after);
  }

  /** One row of a re-imported sheet: created, or the known machine brought in line with it. */
  async function upsertRow(c: Queryable, r: ImportRow): Promise<UpsertResult> {
    const existing = await find(c, 'mac', r.mac, true);
    if (!existing || existing.state === 'discovered') return { machine: await insertOrAdopt(c, r), outcome: 'created' };
    const before = machineFromRow(existing);
    const stored = r.bmc ? (await sealedOf(c, r.mac))?.bmc_password_sealed : null;
    const patch = upsertPatch(before, r, stored ? box.open(stored) : null);
    if (Object.keys(patch).length === 0) return { machine: before, outcome: 'unchanged' };
    return { machine: await update(c, r.mac, patch, 'import', before), outcome: 'updated' };
  }

  /** Each row in turn, in the caller's transaction; an error names the CSV row and column. */
  async function eachRow<T>(rows: readonly ImportRow[], fn: (r: ImportRow) => Promise<T>): Promise<T[]> {
    noDuplicateRows(rows);
    const out: T[] = [];
    for (const r of rows) {
      try {
        out.push(await fn(r));
      } catch (err) {
        throw atRowError(r, err);
      }
    }
    return out;
  }

  /**
   * A sheet of new machines in five statements, whatever its length: the clusters held, the
   * rows inserted, their states read locked, the placement, the assignment. It decides what the
   * row-by-row path does (the same columns, transition and events, in row order); anything it
   * cannot take whole (a missing cluster, a machine already past `discovered`, a UNIQUE clash)
   * is rolled back to its savepoint and the sheet goes row by row, whose error names the row and
   * column. Null: it went row by row.
   */
  async function importWhole(c: Queryable, rows: readonly ImportRow[]): Promise<Machine[] | null> {
    return orNothing(c, 'import_whole', async () => {
      const clusters = [...new Set(rows.map((r) => r.cluster))];
      const held = await c.query('SELECT name FROM clusters WHERE name = ANY($1::text[]) FOR KEY SHARE', [clusters]);
      if (held.rowCount !== clusters.length) return null;
      const at = now().toISOString();
      // Sorted, so that two imports of overlapping sheets lock their rows in the same order.
      const macs = rows.map((r) => r.mac).sort();
      await c.query(
        `INSERT INTO machines (mac, state, state_changed_at, created_at, updated_at)
         SELECT m, 'discovered', $2, $2, $2 FROM unnest($1::text[]) AS m ORDER BY m ON CONFLICT (mac) DO NOTHING`,
        [macs, at],
      );
      const states = await c.query<{ state: string }>('SELECT state FROM machines WHERE mac = ANY($1::text[]) ORDER BY mac FOR UPDATE', [macs]);
      if (states.rowCount !== rows.length || states.rows.some((x) => x.state !== 'discovered')) return null;
      const placement = rows.map((r) => ({ mac: r.mac, ...placementColumns(r, box), boot_loader: r.bootLoader ?? null, secure_boot: flag(r.secureBoot) }));
      const placed = await setEach(c, placement, (col) => (col === 'boot_loader' || col === 'secure_boot' ? `COALESCE(x.${col}, m.${col})` : `x.${col}`), { seed_token_address: null, updated_at: at });
      if (placed.size !== rows.length) return null;
      const writes = rows.map((r) => transitionWrite(placed.get(r.mac)!, 'assign', { source: 'api', message: assignMessage(r.role, r.cluster) }, at));
      const assigned = await setEach(c, writes.map((w, i) => ({ mac: rows[i]!.mac, ...w.columns })), (col) => `x.${col}`);
      if (assigned.size !== rows.length) return null;
      for (const w of writes) await appendEvent(c, w.event);
      return rows.map((r) => assigned.get(r.mac)!);
    });
  }

  /**
   * A re-imported sheet with its known machines read in one statement: unchanged ones cost no
   * write, changed ones one update each, new ones go through importWhole. As there, anything
   * refused rolls back to its savepoint and the sheet goes row by row for the error that names
   * the row. Null: it went row by row.
   */
  async function upsertWhole(c: Queryable, rows: readonly ImportRow[]): Promise<UpsertResult[] | null> {
    return orNothing(c, 'upsert_whole', async () => {
      noDuplicateRows(rows);
      const known = await c.query<MachineViewRow & Pick<Sealed, 'bmc_password_sealed'>>(
        `SELECT ${MACHINE_COLUMNS}, bmc_password_sealed FROM machines WHERE mac = ANY($1::text[]) ORDER BY mac FOR UPDATE`,
        [rows.map((r) => r.mac).sort()],
      );
      const byMac = new Map(known.rows.map((k) => [k.mac, k]));
      const fresh = rows.filter((r) => (byMac.get(r.mac)?.state ?? 'discovered') === 'discovered');
      const out = new Map<string, UpsertResult>();
      for (const r of rows) {
        const row = byMac.get(r.mac);
        if (!row || row.state === 'discovered') continue;
        const before = machineFromRow(row);
        const patch = upsertPatch(before, r, r.bmc && row.bmc_password_sealed ? box.open(row.bmc_password_sealed) : null);
        out.set(r.mac, Object.keys(patch).length === 0 ? { machine: before, outcome: 'unchanged' } : { machine: await update(c, r.mac, patch, 'import', before), outcome: 'updated' });
      }
      if (fresh.length > 0) {
        const created = await importWhole(c, fresh);
        if (!created) return null;
        for (const m of created) out.set(m.mac, { machine: m, outcome: 'created' });
      }
      return rows.map((r) => out.get(r.mac)!);
    });
  }

  /**
   * `fn` in a savepoint of the caller's transaction: its result, or null with nothing of it kept
   * (rows or held events) when it returns null or throws. Another instance's write in the way
   * still reaches db.tx, which runs the whole transaction again.
   */
  async function orNothing<T>(c: Queryable, savepoint: string, fn: () => Promise<T | null>): Promise<T | null> {
    await c.query(`SAVEPOINT ${savepoint}`);
    const mark = eventMark(c);
    try {
      const out = await fn();
      if (out !== null) {
        await c.query(`RELEASE SAVEPOINT ${savepoint}`);
        return out;
      }
    } catch (err) {
      if (retryable(err)) throw err;
    }
    await c.query(`ROLLBACK TO SAVEPOINT ${savepoint}`);
    rollbackEvents(c, mark);
    return null;
  }

  /**
   * One UPDATE of many machines, each row its own values (one JSON parameter, typed by the
   * machines table itself): `expr` says what a column is set to from `x`, `same` adds values
   * common to all. Returns the machines as written, by MAC.
   */
  async function setEach(c: Queryable, values: readonly Record<string, unknown>[], expr: (column: string) => string, same: Record<string, unknown> = {}): Promise<Map<string, Machine>> {
    const columns = Object.keys(values[0] ?? {}).filter((k) => k !== 'mac');
    const common = Object.keys(same);
    const sets = [...columns.map((col) => `${col} = ${expr(col)}`), ...common.map((col, i) => `${col} = $${i + 2}`)];
    const r = await c.query<MachineViewRow>(
      `UPDATE machines m SET ${sets.join(', ')} FROM json_populate_recordset(NULL::machines, $1::json) AS x
       WHERE m.mac = x.mac RETURNING ${MACHINE_COLUMNS_OF_M}`,
      [JSON.stringify(values), ...Object.values(same)],
    );
    return new Map(r.rows.map((row) => [row.mac, machineFromRow(row)]));
  }

  return {
    async create(input) {
      return db.tx((c) => insertOrAdopt(c, input));
    },
    async get(mac) {
      const row = await find(db.any, 'mac', mac);
      return row ? machineFromRow(row) : null;
    },
    async byIp(ip) {
      const row = await find(db.any, 'ip', ip);
      return row ? machineFromRow(row) : null;
    },
    async list(filter: MachineFilter = {}, page: MachinePage = {}) {
      // The list order of MachineCursor, as on SQLite (and the machines_list_order index).
      const values: unknown[] = [];
      const p = (v: unknown): string => `$${values.push(v)}`;
      const where = LIST_KEYS.filter((k) => filter[k] !== undefined).map((k) => `${k} = ${p(filter[k])}`);
      if (page.after) where.push(`(COALESCE(rack, ''), COALESCE(hostname, ''), mac) > (${p(page.after.rack ?? '')}, ${p(page.after.hostname ?? '')}, ${p(page.after.mac)})`);
      const rows = await db.all<MachineViewRow>(
        `SELECT ${MACHINE_COLUMNS} FROM machines ${where.length ? 'WHERE ' + where.join(' AND ') : ''}
         ORDER BY COALESCE(rack, ''), COALESCE(hostname, ''), mac ${page.limit !== undefined ? `LIMIT ${p(page.limit)}` : ''}`,
        values,
      );
      return rows.map(machineFromRow);
    },
    async planFacts() {
      return (await db.all<PlanRow>(`SELECT ${PLAN_COLUMNS} FROM machines`)).map(planMachineFromRow);
    },
    async update(mac, patch, source) {
      return db.tx((c) => update(c, mac, patch, source));
    },
    async delete(mac) {
      await db.tx(async (c) => {
        const m = await load(c, mac, true);
        await c.query('DELETE FROM machines WHERE mac = $1', [mac]);
        await appendEvent(c, deletedEvent(m));
      });
    },
    async importAll(rows) {
      return db.tx(async (c) => {
        if (rows.length === 0) return [];
        return (await importWhole(c, rows)) ?? eachRow(rows, (r) => insertOrAdopt(c, r));
      });
    },
    async upsertAll(rows) {
      return db.tx(async (c) => {
        if (rows.length === 0) return [];
        return (await upsertWhole(c, rows)) ?? eachRow(rows, (r) => upsertRow(c, r));
      });
    },
    async updateAll(macs, patch, source) {
      return db.tx(async (c) => {
        const out: Machine[] = [];
        for (const mac of macs) {
          try {
            out.push(await update(c, mac, patch, source));
          } catch (err) {
            throw ofMachineError(mac, err);
          }
        }
        return out;
      });
    },
    async setPowerState(mac, state, at) {
      await db.run('UPDATE machines SET power_state = $1, power_state_at = $2 WHERE mac = $3', [state, at, mac]);
    },
    async transition(mac, event, ctx) {
      // With the boot path's small writes: a burst's phone-homes and installer reports share commits.
      return group.run((c) => applyTransition(c, mac, event, ctx));
    },
    async recordSighting(s) {
      // A known machine's sighting (most of them) writes no event. A first sighting racing the
      // machine's creation through the API waits for that insert to commit, then updates its row.
      return db.tx(async (c) => {
        const created = await applySighting(c, s);
        return { machine: await load(c, s.mac), created };
      });
    },
    async recordBootScripts(steps) {
      return db.tx(async (c) => {
        const out: BootScriptOutcome[] = [];
        for (const step of steps) {
          // Without a transition nothing is refused: only the database can fail, and then the batch.
          if (!step.transition) {
            await applyBootScript(c, step);
            out.push({ ok: true });
            continue;
          }
          // A savepoint per transition: a refused one leaves the batch's other steps (and its held events go too).
          await c.query('SAVEPOINT boot_step');
          const mark = eventMark(c);
          try {
            await applyBootScript(c, step);
            await c.query('RELEASE SAVEPOINT boot_step');
            out.push({ ok: true });
          } catch (err) {
            if (retryable(err)) throw err;
            await c.query('ROLLBACK TO SAVEPOINT boot_step');
            rollbackEvents(c, mark);
            out.push({ ok: false, error: err instanceof Error ? err : new Error(String(err)) });
          }
        }
        return out;
      });
    },
    async setLastStep(mac, step) {
      const at = now().toISOString();
      await group.run((c) => c.query('UPDATE machines SET last_step = $1, last_seen = $2 WHERE mac = $3', [step, at, mac]));
    },
    async recordBootStep(mac, step) {
      const at = now().toISOString();
      if (step.kind === 'bootfile') await group.run((c) => c.query('UPDATE machines SET bootfile = $1, bootfile_at = $2, last_seen = $2 WHERE mac = $3', [step.file, at, mac]));
      else await group.run((c) => c.query('UPDATE machines SET loader_at = $1, secure_boot_seen = COALESCE($2, secure_boot_seen), last_seen = $1 WHERE mac = $3', [at, step.secureBoot, mac]));
    },
    async bmcPassword(mac) {
      const row = await sealedOf(db.any, mac);
      return row?.bmc_password_sealed ? box.open(row.bmc_password_sealed) : null;
    },
    async rotateSeedToken(mac) {
      const s = sealedToken(box);
      const written = await write(db.any, mac, { seed_token_hash: s.hash, seed_token_sealed: s.sealed, seed_token_address: null, updated_at: now().toISOString() });
      if (!written) throw notFound('ERR_UNKNOWN_MACHINE', `no machine with MAC ${mac}`);
      return s.token;
    },
    async seedToken(mac) {
      const row = await sealedOf(db.any, mac);
      return row?.seed_token_sealed ? box.open(row.seed_token_sealed) : null;
    },
    async findBySeedToken(token) {
      const row = await find(db.any, 'seed_token_hash', hashToken(token));
      return row ? machineFromRow(row) : null;
    },
    async seedTokenFor(mac, address) {
      // The usual ask writes nothing: one read, without the transaction and its row lock.
      const bound = bindSeedToken(await sealedOf(db.any, mac), address, box, now().toISOString());
      if (!bound.columns) return bound.result;
      return db.tx(async (c) => {
        const { result, columns } = bindSeedToken(await sealedOf(c, mac, true), address, box, now().toISOString());
        if (columns) await write(c, mac, columns);
        return result;
      });
    },
    async seedAddress(mac) {
      return (await sealedOf(db.any, mac))?.seed_token_address ?? null;
    },
    async setInstanceId(mac, instanceId) {
      await db.run('UPDATE machines SET instance_id = $1, updated_at = $2 WHERE mac = $3', [instanceId, now().toISOString(), mac]);
    },
    async setHostKeys(mac, keys) {
      await db.run('UPDATE machines SET host_keys = $1, updated_at = $2 WHERE mac = $3', [JSON.stringify(keys), now().toISOString(), mac]);
    },
    async setInstalledDisk(mac, disk) {
      const at = now().toISOString();
      const stored: InstalledDisk = { ...disk, reportedAt: at };
      await db.run('UPDATE machines SET installed_disk = $1, updated_at = $2 WHERE mac = $3', [JSON.stringify(stored), at, mac]);
    },
    async setBmcFacts(mac, facts) {
      await db.run('UPDATE machines SET bmc_facts = $1 WHERE mac = $2', [JSON.stringify(facts), mac]);
    },
  };
}
