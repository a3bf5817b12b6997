import { randomBytes } from 'node:crypto';
import { logFailure } from '../inventory/unavailable.js';
import { AppError, conflict, notFound } from '../lib/errors.js';
import { silentLogger, type Logger } from '../lib/log.js';
import type { Mac } from '../lib/mac.js';
import type { Service, ServiceContext, ServiceState } from '../lib/service.js';
import { macReported } from '../inventory/bmc-facts.js';
import type { Machine } from '../inventory/model.js';
import type { Inventory } from '../inventory/store.js';
import { PowerError, type BmcTarget, type PowerCallInfo, type PowerDriver, type PowerState } from './driver.js';
import { DEFAULT_IPMI_PORT } from './ipmitool.js';
import { callData, createReimageWorkflow, nameOf, toAppError } from './reimage.js';
import type { LiveQuorumCheck } from './quorum.js';
import { failQueued, finishJob, jobCounts, jobSummary, newRackJob, presentRackJob, updateItem, type PowerOnGate, type RackAction, type RackJob } from './rack.js';

/**
 * The power service: machine power actions, rack power jobs and the reimage workflow. It talks to
 * BMCs only through a `PowerDriver` and shares facts with the other services only through the
 * inventory (events and lifecycle transitions) — in particular the orchestrator removes a node
 * from its cluster when it sees the reimage ask for it (`inventory/reimage.ts`, docs/power.md).
 */
export interface PowerSettings {
  /** Rack jobs: machines handled at once, unless the request says otherwise. */
  readonly rackConcurrency: number;
  /** Rack jobs: seconds between two machines' starts for on/cycle/reset, unless the request says otherwise. */
  readonly rackDelaySeconds: number;
  /** How long a reimage waits for the orchestrator's "removed from cluster" fact. */
  readonly removalTimeoutMs: number;
  /** How often that wait re-reads the store (another instance may write the fact). */
  readonly removalPollMs: number;
}

export interface PowerServiceDeps {
  readonly inventory: Pick<Inventory, 'machines' | 'events'>;
  readonly driver: PowerDriver;
  readonly settings: PowerSettings;
  readonly now?: () => Date;
  /** Runs once the service has stopped (closes the drivers, deletes Redfish sessions). */
  readonly onStopped?: () => void | Promise<void>;
  /** Preflight and prefetch before a rack power-on (server/clusters/power-on.ts); none: power only. */
  readonly powerOnGate?: PowerOnGate | undefined;
  /** etcd's live member list and health before a control node is reimaged (the orchestrator's). */
  readonly liveQuorum?: LiveQuorumCheck | undefined;
}

export type MachinePowerAction = RackAction;

export interface PowerService extends Service {
  machinePower(mac: Mac, action: MachinePowerAction, source: string): Promise<Record<string, unknown>>;
  reimage(mac: Mac, opts: { readonly force: boolean; readonly source: string }): Promise<Record<string, unknown>>;
  /** The locator LED on (for `seconds`, or until turned off) or off. */
  identify(mac: Mac, opts: { readonly on: boolean; readonly seconds: number | null; readonly source: string }): Promise<Record<string, unknown>>;
  rackPower(rack: string, opts: { readonly action: RackAction; readonly concurrency?: number | undefined; readonly delaySeconds?: number | undefined; readonly force?: boolean | undefined; readonly source: string }): Promise<Record<string, unknown>>;
  rackJob(rack: string, id: string): Record<string, unknown> | null;
  /** A power job over a selection of machines, run like a rack job. */
  powerJob(opts: { readonly macs: readonly Mac[]; readonly action: RackAction; readonly concurrency?: number | undefined; readonly delaySeconds?: number | undefined; readonly force?: boolean | undefined; readonly source: string }): Promise<Record<string, unknown>>;
  /** Any job (rack or selection) by id, or null. */
  job(id: string): Record<string, unknown> | null;
  /** Resolves once no workflow or job is running. */
  settled(): Promise<void>;
}

/** A rack's job keeps its event type; a selection's has its own. */
const jobEventType = (j: RackJob): string => (j.rack === null ? 'power.job' : 'rack.power');

/** Finished rack jobs kept for `GET …/power/{job}` (in memory; the events are the durable record). */
const MAX_JOBS = 100;
/** A status call re-reads the BMC's facts when they are older than this (two more BMC round trips). */
const FACTS_MAX_AGE_MS = 10 * 60_000;
export function createPowerService(deps: PowerServiceDeps): PowerService {
  const s = deps.settings;
  if (!Number.isInteger(s.rackConcurrency) || s.rackConcurrency < 1) throw new RangeError(`rack power concurrency must be a positive integer, got ${s.rackConcurrency}`);
  if (!(s.rackDelaySeconds >= 0)) throw new RangeError(`rack power delay must be 0 or more seconds, got ${s.rackDelaySeconds}`);
  if (!(s.removalTimeoutMs > 0) || !(s.removalPollMs > 0)) throw new RangeError('the reimage removal timeout and poll interval must be positive');
  const { machines, events } = deps.inventory;
  const { driver, settings } = deps;
  const now = deps.now ?? (() => new Date());
  let log: Logger = silentLogger();
  let state: ServiceState = 'stopped';
  const abort = new AbortController();
  const tasks = new Set<Promise<void>>();
  const jobs = new Map<string, RackJob>();
  let unsubscribe: (() => void) | null = null;

  const track = (p: Promise<void>): void => {
    const t = p.catch((err: unknown) => logFailure(log, err, 'power task failed')).finally(() => tasks.delete(t));
    tasks.add(t);
  };

  const sleep = (ms: number): Promise<void> =>
    new Promise((resolve) => {
      const signal = abort.signal;
      const t = setTimeout(done, Math.max(0, ms));
      function done(): void {
        clearTimeout(t);
        signal.removeEventListener('abort', done);
        resolve();
      }
      signal.addEventListener('abort', done, { once: true });
    });

  async function load(mac: Mac): Promise<Machine> {
    const m = await machines.get(mac);
    if (!m) throw notFound('ERR_UNKNOWN_MACHINE', `no machine with MAC ${mac}`);
    return m;
  }

  /** Whose BMC a target is: the power state a call reads or causes is remembered for that machine. */
  const targetOwner = new WeakMap<BmcTarget, Mac>();
  async function target(m: Machine): Promise<BmcTarget> {
    if (!m.bmc) throw conflict('ERR_NO_BMC', `${nameOf(m)} has no BMC; give it one with PATCH /machines/${m.mac} {"bmc": {…}}`, 'bmc');
    const password = await machines.bmcPassword(m.mac);
    if (password === null) throw conflict('ERR_NO_BMC', `the BMC of ${nameOf(m)} has no password`, 'bmc.password');
    const b = m.bmc;
    // The Redfish driver takes the port from an https://host:port address, then bmc.port, then 443.
    const t: BmcTarget =
      b.driver === 'redfish'
        ? { driver: 'redfish', address: b.address, port: b.port ?? 0, username: b.username, password, cipherSuite: null, systemId: b.systemId, verifyTls: b.verifyTls, tlsFingerprint: b.tlsFingerprint }
        : { driver: 'ipmi', address: b.address, port: b.port ?? DEFAULT_IPMI_PORT, username: b.username, password, cipherSuite: b.cipherSuite };
    targetOwner.set(t, m.mac);
    return t;
  }

  /** The power state viewers see without a BMC call of their own. */
  async function remember(t: BmcTarget, state: PowerState): Promise<void> {
    const mac = targetOwner.get(t);
    if (mac) await machines.setPowerState(mac, state, now().toISOString());
  }

  /**
   * After a status call: the BMC's facts when they are missing or old, recorded on the machine; a
   * MAC the BMC does not report is flagged with an event (once per change). A failure here never
   * fails the status call: it is logged and the old facts stay.
   */
  async function refreshFacts(m: Machine, t: BmcTarget, source: string): Promise<void> {
    const age = m.bmcFacts ? now().getTime() - Date.parse(m.bmcFacts.collectedAt) : Infinity;
    if (age < FACTS_MAX_AGE_MS) return;
    try {
      const got = await driver.facts(t, abort.signal);
      const record = { ...got.facts, collectedAt: now().toISOString() };
      await machines.setBmcFacts(m.mac, record);
      const was = macReported(m, m.bmcFacts);
      const is = macReported(m, record);
      if (is === false && was !== false) {
        await events.append({
          mac: m.mac,
          cluster: m.cluster,
          type: 'bmc.mac-mismatch',
          source,
          message: `the BMC at ${m.bmc?.address ?? '?'} does not report MAC ${m.mac} among its system's NICs (${(record.nics ?? []).join(', ')}): a swapped cable, a machine in the wrong place, or a typo in the inventory`,
          data: { nics: record.nics },
        });
        log.warn({ mac: m.mac, nics: record.nics }, 'BMC does not report the machine MAC');
      }
    } catch (err) {
      if (!(err instanceof PowerError)) throw err;
      log.warn({ mac: m.mac, code: err.code, error: err.message }, 'reading the BMC facts failed');
    }
  }

  /** "cycle" on a machine that is off does nothing over IPMI: power it on instead. */
  async function cycleOrOn(t: BmcTarget): Promise<{ result: string; info: PowerCallInfo; was: PowerState }> {
    const s = await driver.status(t, abort.signal);
    await remember(t, s.state);
    const info = s.state === 'off' ? await driver.on(t, abort.signal) : await driver.cycle(t, abort.signal);
    await remember(t, 'on');
    const merged = { ...info, attempts: info.attempts + s.attempts, ms: info.ms + s.ms };
    return { result: s.state === 'off' ? 'on (was off)' : 'cycle', info: merged, was: s.state };
  }

  async function doPower(m: Machine, action: MachinePowerAction, source: string, extra: Record<string, unknown>): Promise<{ result: string; state: PowerState | null; info: PowerCallInfo }> {
    const t = await target(m);
    const base = { mac: m.mac, cluster: m.cluster, type: 'power', source };
    await events.append({ ...base, message: `power ${action} requested`, data: { action, outcome: 'requested', ...extra } });
    try {
      let result: string;
      let info: PowerCallInfo;
      let powerState: PowerState | null = null;
      if (action === 'status') {
        const s = await driver.status(t, abort.signal);
        powerState = s.state;
        info = s;
        result = s.state;
        await remember(t, s.state);
        await refreshFacts(m, t, source);
      } else if (action === 'cycle') {
        ({ result, info } = await cycleOrOn(t));
      } else {
        info = await driver[action](t, abort.signal);
        result = action;
        await remember(t, action === 'off' ? 'off' : 'on');
      }
      const message = action === 'status' ? `power is ${result}` : `power ${result}: done`;
      await events.append({ ...base, message, data: { action, outcome: 'ok', result, ...(powerState ? { state: powerState } : {}), ...callData(info), ...extra } });
      log.info({ mac: m.mac, action, result, attempts: info.attempts, ms: info.ms }, 'power');
      return { result, state: powerState, info };
    } catch (err) {
      if (err instanceof PowerError) {
        await events.append({ ...base, message: `power ${action} failed: ${err.message}`, data: { action, outcome: 'failed', code: err.code, attempts: err.attempts, ...extra } });
        log.warn({ mac: m.mac, action, code: err.code, error: err.message }, 'power failed');
        throw toAppError(err);
      }
      throw err;
    }
  }

  const workflow = createReimageWorkflow({
    machines,
    events,
    driver,
    settings,
    signal: abort.signal,
    log: () => log,
    track,
    load,
    target,
    cycleOrOn,
    liveQuorum: deps.liveQuorum,
  });

  // ── rack jobs ──────────────────────────────────────────────────────────────

  async function runJob(id: string, source: string): Promise<void> {
    const get = (): RackJob => jobs.get(id) as RackJob;
    const set = (j: RackJob): void => void jobs.set(id, j);
    // A power-on caches what its machines' installers will fetch before the first one starts.
    const gate = deps.powerOnGate;
    const pre = get().prefetch;
    if (gate && pre) {
      const result = await gate
        .prefetch(pre.clusters, (items) => set({ ...get(), prefetch: { ...pre, items } }), abort.signal)
        .catch((err: unknown) => ({ ok: false, items: get().prefetch?.items ?? [], error: err instanceof Error ? err.message : String(err) }));
      const failed = result.items.filter((i) => i.state !== 'done');
      const error = result.ok ? null : 'error' in result ? String(result.error) : failed.map((i) => `${i.release}/${i.file}: ${i.error ?? i.state}`).join('; ');
      set({ ...get(), prefetch: { ...pre, state: result.ok ? 'done' : 'failed', items: result.items, error } });
      if (!result.ok) {
        const message = `the installer artifacts could not be cached, so no machine was started: ${error ?? 'unknown error'} (power on with force to start them anyway)`;
        set(failQueued(get(), { code: 'ERR_PREFETCH', message }, now().toISOString()));
        log.warn({ rack: get().rack, job: id, error }, 'rack power-on: prefetch failed');
      }
    }
    const job = get();
    const queue = job.items.filter((i) => i.state === 'queued').map((i) => i.mac);
    const delayMs = job.delaySeconds * 1000;
    let nextStart = 0;
    const worker = async (): Promise<void> => {
      for (let mac = queue.shift(); mac !== undefined; mac = queue.shift()) {
        if (abort.signal.aborted) return;
        // Reserve this machine's start slot before waiting, so starts stay `delay` apart.
        const startAt = Math.max(Date.now(), nextStart);
        nextStart = startAt + delayMs;
        if (startAt > Date.now()) await sleep(startAt - Date.now());
        if (abort.signal.aborted) return;
        set(updateItem(get(), mac, { state: 'running', startedAt: now().toISOString() }));
        try {
          const m = await load(mac);
          const r = await doPower(m, job.action, source, job.rack === null ? { job: id } : { job: id, rack: job.rack });
          set(updateItem(get(), mac, { state: 'ok', result: r.result, finishedAt: now().toISOString() }));
        } catch (err) {
          const e = err instanceof AppError ? { code: err.code, message: err.message } : { code: 'ERR_INTERNAL', message: err instanceof Error ? err.message : String(err) };
          set(updateItem(get(), mac, { state: 'failed', error: e, finishedAt: now().toISOString() }));
        }
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, Math.min(job.concurrency, queue.length)) }, worker));
    const done = finishJob(get(), now().toISOString(), abort.signal.aborted);
    set(done);
    await events.append({ type: jobEventType(done), source, message: jobSummary(done), data: { rack: done.rack, job: id, action: done.action, state: done.state, counts: jobCounts(done) } });
    log.info({ rack: done.rack, job: id, counts: jobCounts(done) }, 'power job finished');
  }

  /**
   * A power job over a rack or a selection. Before a power-on: the preflight of every cluster whose
   * machines it makes install (refused when a check fails, unless forced), then their prefetch.
   */
  async function startJob(rack: string | null, list: readonly Machine[], opts: { readonly action: RackAction; readonly concurrency?: number | undefined; readonly delaySeconds?: number | undefined; readonly force?: boolean | undefined; readonly source: string }): Promise<Record<string, unknown>> {
    const label = rack === null ? 'selection' : `rack ${rack}`;
    const concurrency = opts.concurrency ?? settings.rackConcurrency;
    const powersOn = opts.action === 'on' || opts.action === 'cycle' || opts.action === 'reset';
    const delaySeconds = opts.delaySeconds ?? (powersOn ? settings.rackDelaySeconds : 0);
    const gate = powersOn && !opts.force ? deps.powerOnGate : undefined;
    const installing = gate ? gate.clusters(list) : [];
    if (gate && installing.length > 0) {
      const pre = await gate.preflight(installing);
      if (!pre.ok) {
        const first = pre.failures[0];
        throw new AppError(
          'conflict',
          'ERR_PREFLIGHT',
          `${label}: the preflight of cluster ${[...new Set(pre.failures.map((f) => f.cluster))].join(', ')} failed (${pre.failures.length} check(s); the first: ${first ? `${first.check}: ${first.detail}` : '?'}); no machine was powered. "racksmith clusters preflight NAME" shows every check; fix the upstream, or power on with force`,
          'force',
          pre.failures.map((f) => ({ message: `${f.cluster}: ${f.check}: ${f.detail}`, field: f.cluster })),
        );
      }
    }
    const id = randomBytes(6).toString('hex');
    const created = newRackJob(id, rack, opts.action, concurrency, delaySeconds, list, now().toISOString());
    const job: RackJob = gate && installing.length > 0 ? { ...created, prefetch: { state: 'running', clusters: installing, items: [], error: null } } : created;
    jobs.set(id, job);
    pruneJobs();
    await events.append({
      type: jobEventType(job),
      source: opts.source,
      message: `${label}: power ${opts.action} of ${list.length} machine(s) started (job ${id}, concurrency ${concurrency}, ${delaySeconds} s between machines${job.prefetch ? `, after prefetching the installers of ${job.prefetch.clusters.join(', ')}` : ''}${powersOn && opts.force ? ', forced: no preflight, no prefetch' : ''})`,
      data: { rack, job: id, action: opts.action, concurrency, delaySeconds, machines: list.length, force: opts.force === true, preflighted: job.prefetch?.clusters ?? [] },
    });
    track(runJob(id, opts.source));
    return presentRackJob(job);
  }

  function pruneJobs(): void {
    if (jobs.size <= MAX_JOBS) return;
    for (const [id, j] of jobs) {
      if (jobs.size <= MAX_JOBS) break;
      if (j.state !== 'running') jobs.delete(id);
    }
  }

  return {
    name: 'power',
    async start(ctx: ServiceContext) {
      log = ctx.log;
      state = 'serving';
      unsubscribe = events.subscribe((e) => workflow.onEvent(e));
      track(workflow.resumeAll());
    },
    async stop() {
      state = 'stopping';
      abort.abort(new Error('racksmith is stopping'));
      unsubscribe?.();
      await Promise.allSettled([...tasks]);
      await deps.onStopped?.();
      state = 'stopped';
    },
    health() {
      return { state, detail: { reimaging: workflow.active(), rackJobsRunning: [...jobs.values()].filter((j) => j.state === 'running').length } };
    },
    async machinePower(mac, action, source) {
      const m = await load(mac);
      const r = await doPower(m, action, source, {});
      return { mac, hostname: m.hostname, action, result: r.result, ...(r.state ? { state: r.state } : {}), ...callData(r.info) };
    },
    reimage: (mac, opts) => workflow.reimage(mac, opts),
    async identify(mac, opts) {
      const m = await load(mac);
      const t = await target(m);
      const what = opts.on ? `locator LED on${opts.seconds !== null ? ` for ${opts.seconds} s` : ''}` : 'locator LED off';
      const base = { mac: m.mac, cluster: m.cluster, type: 'identify', source: opts.source };
      try {
        const info = await driver.identify(t, opts.on, opts.seconds, abort.signal);
        await events.append({ ...base, message: `${what}: done`, data: { on: opts.on, seconds: opts.seconds, outcome: 'ok', ...callData(info) } });
        return { mac, hostname: m.hostname, on: opts.on, seconds: opts.seconds, ...callData(info) };
      } catch (err) {
        if (!(err instanceof PowerError)) throw err;
        await events.append({ ...base, message: `${what} failed: ${err.message}`, data: { on: opts.on, seconds: opts.seconds, outcome: 'failed', code: err.code } });
        throw toAppError(err);
      }
    },
    async rackPower(rack, opts) {
      const list = await machines.list({ rack });
      if (list.length === 0) throw notFound('ERR_UNKNOWN_RACK', `no machines in rack "${rack}"`);
      return startJob(rack, list, opts);
    },
    async powerJob(opts) {
      const list: Machine[] = [];
      for (const mac of new Set(opts.macs)) list.push(await load(mac));
      return startJob(null, list, opts);
    },
    rackJob(rack, id) {
      const j = jobs.get(id);
      return j && j.rack === rack ? presentRackJob(j) : null;
    },
    job(id) {
      const j = jobs.get(id);
      return j ? presentRackJob(j) : null;
    },
    async settled() {
      // Tasks may start tasks (a finished job's event, a retried reimage): wait until none is left.
      for (let i = 0; i < 100 && tasks.size > 0; i++) await Promise.allSettled([...tasks]);
    },
  };
}
