import { randomBytes } from 'node:crypto';
import { AppError, conflict, notFound } from '../lib/errors.js';
import { silentLogger, type Logger } from '../lib/log.js';
import type { Mac } from '../lib/mac.js';
import type { Service, ServiceContext, ServiceState } from '../lib/service.js';
import type { Machine } from '../inventory/model.js';
import type { Inventory } from '../inventory/store.js';
import { PowerError, type BmcTarget, type PowerCallInfo, type PowerDriver, type PowerState } from './driver.js';
import { DEFAULT_IPMI_PORT } from './ipmitool.js';
import { callData, createReimageWorkflow, nameOf, toAppError } from './reimage.js';
import { finishJob, jobCounts, jobSummary, newRackJob, presentRackJob, updateItem, type RackAction, type RackJob } from './rack.js';

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
  /** Runs once the service has stopped (closes the driver). */
  readonly onStopped?: () => void;
}

export type MachinePowerAction = RackAction;

export interface PowerService extends Service {
  machinePower(mac: Mac, action: MachinePowerAction, source: string): Promise<Record<string, unknown>>;
  reimage(mac: Mac, opts: { readonly force: boolean; readonly source: string }): Promise<Record<string, unknown>>;
  rackPower(rack: string, opts: { readonly action: RackAction; readonly concurrency?: number | undefined; readonly delaySeconds?: number | undefined; readonly source: string }): Promise<Record<string, unknown>>;
  rackJob(rack: string, id: string): Record<string, unknown> | null;
  /** A power job over a selection of machines, run like a rack job. */
  powerJob(opts: { readonly macs: readonly Mac[]; readonly action: RackAction; readonly concurrency?: number | undefined; readonly delaySeconds?: number | undefined; readonly source: string }): Promise<Record<string, unknown>>;
  /** Any job (rack or selection) by id, or null. */
  job(id: string): Record<string, unknown> | null;
  /** Resolves once no workflow or job is running. */
  settled(): Promise<void>;
}

/** A rack's job keeps its event type; a selection's has its own. */
const jobEventType = (j: RackJob): string => (j.rack === null ? 'power.job' : 'rack.power');

/** Finished rack jobs kept for `GET …/power/{job}` (in memory; the events are the durable record). */
const MAX_JOBS = 100;
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
    const t = p.catch((err: unknown) => log.error({ err }, 'power task failed')).finally(() => tasks.delete(t));
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
    const t = { address: m.bmc.address, port: m.bmc.port ?? DEFAULT_IPMI_PORT, username: m.bmc.username, password, cipherSuite: m.bmc.cipherSuite };
    targetOwner.set(t, m.mac);
    return t;
  }

  /** The power state viewers see without a BMC call of their own. */
  async function remember(t: BmcTarget, state: PowerState): Promise<void> {
    const mac = targetOwner.get(t);
    if (mac) await machines.setPowerState(mac, state, now().toISOString());
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
  });

  // ── rack jobs ──────────────────────────────────────────────────────────────

  async function runJob(id: string, source: string): Promise<void> {
    const get = (): RackJob => jobs.get(id) as RackJob;
    const set = (j: RackJob): void => void jobs.set(id, j);
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

  async function startJob(rack: string | null, list: readonly Machine[], opts: { readonly action: RackAction; readonly concurrency?: number | undefined; readonly delaySeconds?: number | undefined; readonly source: string }): Promise<Record<string, unknown>> {
    const concurrency = opts.concurrency ?? settings.rackConcurrency;
    const powersOn = opts.action === 'on' || opts.action === 'cycle' || opts.action === 'reset';
    const delaySeconds = opts.delaySeconds ?? (powersOn ? settings.rackDelaySeconds : 0);
    const id = randomBytes(6).toString('hex');
    const job = newRackJob(id, rack, opts.action, concurrency, delaySeconds, list, now().toISOString());
    jobs.set(id, job);
    pruneJobs();
    await events.append({
      type: jobEventType(job),
      source: opts.source,
      message: `${rack === null ? 'selection' : `rack ${rack}`}: power ${opts.action} of ${list.length} machine(s) started (job ${id}, concurrency ${concurrency}, ${delaySeconds} s between machines)`,
      data: { rack, job: id, action: opts.action, concurrency, delaySeconds, machines: list.length },
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
      deps.onStopped?.();
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
