import { randomBytes } from 'node:crypto';
import { AppError, conflict, notFound } from '../lib/errors.js';
import { silentLogger, type Logger } from '../lib/log.js';
import type { Mac } from '../lib/mac.js';
import type { Service, ServiceContext, ServiceState } from '../lib/service.js';
import { canTransition } from '../inventory/lifecycle.js';
import type { InventoryEvent, Machine } from '../inventory/model.js';
import {
  NODE_REMOVAL_FAILED_EVENT,
  NODE_REMOVED_EVENT,
  REIMAGE_EVENT,
  needsClusterRemoval,
  reimageProgress,
  type ReimageStep,
} from '../inventory/reimage.js';
import type { Inventory } from '../inventory/store.js';
import { PowerError, type BmcTarget, type PowerCallInfo, type PowerDriver, type PowerState } from './driver.js';
import { DEFAULT_IPMI_PORT } from './ipmitool.js';
import { quorumAfterRemoval } from './quorum.js';
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
  /** Resolves once no workflow or job is running. */
  settled(): Promise<void>;
}

/** Finished rack jobs kept for `GET …/power/{job}` (in memory; the events are the durable record). */
const MAX_JOBS = 100;
/** Event pages read when replaying a machine's history (10,000 events each). */
const MAX_EVENT_PAGES = 50;

export function toAppError(err: PowerError): AppError {
  const kind = err.kind === 'timeout' || err.kind === 'unreachable' ? 'gateway-timeout' : err.kind === 'aborted' ? 'unavailable' : 'bad-gateway';
  return new AppError(kind, err.code, err.message);
}

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
  /** Machines whose reimage workflow runs now: one workflow per machine. */
  const reimaging = new Set<Mac>();
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

  const nameOf = (m: Pick<Machine, 'hostname' | 'mac'>): string => m.hostname ?? m.mac;

  async function target(m: Machine): Promise<BmcTarget> {
    if (!m.bmc) throw conflict('ERR_NO_BMC', `${nameOf(m)} has no BMC; give it one with PATCH /machines/${m.mac} {"bmc": {…}}`, 'bmc');
    const password = await machines.bmcPassword(m.mac);
    if (password === null) throw conflict('ERR_NO_BMC', `the BMC of ${nameOf(m)} has no password`, 'bmc.password');
    return { address: m.bmc.address, port: m.bmc.port ?? DEFAULT_IPMI_PORT, username: m.bmc.username, password, cipherSuite: m.bmc.cipherSuite };
  }

  const callData = (info: PowerCallInfo): Record<string, unknown> => ({
    attempts: info.attempts,
    cipherSuite: info.cipherSuite,
    ms: info.ms,
    ...(info.warning ? { warning: info.warning } : {}),
  });

  /** "cycle" on a machine that is off does nothing over IPMI: power it on instead. */
  async function cycleOrOn(t: BmcTarget): Promise<{ result: string; info: PowerCallInfo; was: PowerState }> {
    const s = await driver.status(t, abort.signal);
    const info = s.state === 'off' ? await driver.on(t, abort.signal) : await driver.cycle(t, abort.signal);
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
      } else if (action === 'cycle') {
        ({ result, info } = await cycleOrOn(t));
      } else {
        info = await driver[action](t, abort.signal);
        result = action;
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

  // ── reimage ────────────────────────────────────────────────────────────────

  async function history(mac: Mac): Promise<InventoryEvent[]> {
    const out: InventoryEvent[] = [];
    let after: number | undefined;
    for (let page = 0; page < MAX_EVENT_PAGES; page++) {
      const batch = await events.list({ mac, afterId: after, limit: 10_000 });
      out.push(...batch);
      if (batch.length < 10_000) break;
      after = batch[batch.length - 1]?.id;
    }
    return out;
  }

  async function step(m: Machine, id: string, stepName: ReimageStep, message: string, data: Record<string, unknown> = {}): Promise<void> {
    await events.append({ mac: m.mac, cluster: m.cluster, type: REIMAGE_EVENT, source: 'power', message, data: { reimage: id, step: stepName, ...data } });
  }

  async function failReimage(m: Machine, id: string, failedStep: string, reason: string): Promise<void> {
    await events.append({ mac: m.mac, cluster: m.cluster, type: REIMAGE_EVENT, source: 'power', message: `reimage failed at ${failedStep}: ${reason}`, data: { reimage: id, step: 'failed', failedStep, reason } });
    const current = await machines.get(m.mac);
    if (current?.state === 'reimaging') await machines.transition(m.mac, 'fail', { source: 'power', step: failedStep, reason });
    log.warn({ mac: m.mac, reimage: id, step: failedStep, reason }, 'reimage failed');
  }

  /** Waits for the orchestrator's fact about this reimage: removed, removal failed, the deadline, or shutdown. */
  function waitForRemoval(mac: Mac, id: string, afterId: number, deadline: number): Promise<'fact' | 'timeout' | 'aborted'> {
    return new Promise((resolve) => {
      let done = false;
      let checking = false;
      const finish = (r: 'fact' | 'timeout' | 'aborted'): void => {
        if (done) return;
        done = true;
        clearInterval(poll);
        clearTimeout(timer);
        unsub();
        abort.signal.removeEventListener('abort', onAbort);
        resolve(r);
      };
      const check = async (): Promise<void> => {
        if (done || checking) return;
        checking = true;
        try {
          const evs = await events.list({ mac, afterId, limit: 10_000 });
          const fact = evs.find((e) => (e.type === NODE_REMOVED_EVENT || e.type === NODE_REMOVAL_FAILED_EVENT) && (e.data?.['reimage'] === undefined || e.data['reimage'] === id));
          if (fact) finish('fact');
        } catch (err) {
          log.warn({ err, mac }, 'reading events while waiting for the node removal failed');
        } finally {
          checking = false;
        }
      };
      const onAbort = (): void => finish('aborted');
      const unsub = events.subscribe((e) => {
        if (e.mac === mac && (e.type === NODE_REMOVED_EVENT || e.type === NODE_REMOVAL_FAILED_EVENT)) void check();
      });
      const poll = setInterval(() => void check(), settings.removalPollMs);
      const timer = setTimeout(() => finish('timeout'), Math.max(0, deadline - Date.now()));
      abort.signal.addEventListener('abort', onAbort, { once: true });
      void check();
    });
  }

  /**
   * Drives one reimage from its last recorded step to the power cycle. Each pass re-reads the
   * machine and its events, so a restart resumes where the store says, and a machine that moved
   * on (installer served, deleted, failed) stops the workflow.
   */
  async function runReimage(mac: Mac, id: string): Promise<void> {
    if (reimaging.has(mac)) return;
    reimaging.add(mac);
    try {
      // Bounded: each pass records the next step or returns; five steps in all.
      for (let pass = 0; pass < 8 && !abort.signal.aborted; pass++) {
        const m = await machines.get(mac);
        if (!m || m.state !== 'reimaging') return;
        const p = reimageProgress(await history(mac));
        if (!p || p.id !== id) return;
        switch (p.step) {
          case 'accepted':
            if (p.removal === 'pending') {
              await step(m, id, 'remove-from-cluster', `waiting for the orchestrator to remove node ${nameOf(m)} from cluster ${m.cluster ?? '?'}` + (m.role === 'control-plane' ? ' (etcd member, node and load-balancer backend)' : ' (drain and delete the node)'), {
                cluster: m.cluster,
                hostname: m.hostname,
                role: m.role,
                timeoutSeconds: Math.round(settings.removalTimeoutMs / 1000),
              });
            } else {
              await step(m, id, 'removed-from-cluster', `nothing to remove: ${nameOf(m)} never joined its cluster`, { removal: 'not-needed' });
            }
            break;
          case 'remove-from-cluster': {
            if (p.failure) {
              // A retry after a failed wait asks again, with a fresh deadline.
              await step(m, id, 'remove-from-cluster', `asking again for node ${nameOf(m)} to be removed from cluster ${m.cluster ?? '?'}`, { cluster: m.cluster, hostname: m.hostname, role: m.role, timeoutSeconds: Math.round(settings.removalTimeoutMs / 1000) });
              break;
            }
            if (p.removal === 'done') {
              await step(m, id, 'removed-from-cluster', `node ${nameOf(m)} was removed from cluster ${m.cluster ?? '?'}`, { removal: 'done' });
              break;
            }
            if (p.removal === 'failed') {
              await failReimage(m, id, 'reimage.remove-from-cluster', `the orchestrator could not remove the node: ${p.removalReason ?? 'no reason given'}`);
              return;
            }
            const waited = await waitForRemoval(mac, id, p.stepEventId, Date.parse(p.stepAt) + settings.removalTimeoutMs);
            if (waited === 'aborted') return;
            if (waited === 'timeout') {
              await failReimage(m, id, 'reimage.remove-from-cluster', `no "removed from cluster" fact from the orchestrator within ${Math.round(settings.removalTimeoutMs / 1000)} s; the node may still be in the cluster`);
              return;
            }
            break;
          }
          case 'removed-from-cluster': {
            const efi = m.firmware === 'efi';
            try {
              const info = await driver.setNextBoot(await target(m), 'pxe', { efi, persistent: false }, abort.signal);
              await step(m, id, 'next-boot-set', `next boot set to PXE (${efi ? 'UEFI' : 'legacy BIOS'})` + (info.warning ? `; warning: ${info.warning}` : ''), { efi, ...callData(info) });
            } catch (err) {
              if (!(err instanceof PowerError || err instanceof AppError)) throw err;
              if (err instanceof PowerError && err.kind === 'aborted') return;
              await failReimage(m, id, 'reimage.set-next-boot', err.message);
              return;
            }
            break;
          }
          case 'next-boot-set': {
            try {
              const { result, info, was } = await cycleOrOn(await target(m));
              await step(m, id, 'power-cycled', `${result === 'cycle' ? 'power cycled' : 'powered on (it was off)'}; the machine should now PXE-boot the installer`, { result, was, ...callData(info) });
            } catch (err) {
              if (!(err instanceof PowerError || err instanceof AppError)) throw err;
              if (err instanceof PowerError && err.kind === 'aborted') return;
              await failReimage(m, id, 'reimage.power-cycle', err.message);
              return;
            }
            break;
          }
          case 'power-cycled':
            return;
        }
      }
    } finally {
      reimaging.delete(mac);
    }
  }

  /** Every machine left in `reimaging` by a stop or crash, and every retried one, picks up its workflow. */
  async function resumeAll(): Promise<void> {
    for (const m of await machines.list({ state: 'reimaging' })) {
      const p = reimageProgress(await history(m.mac));
      if (p && p.step !== 'power-cycled') {
        log.info({ mac: m.mac, reimage: p.id, step: p.step }, 'resuming reimage');
        track(runReimage(m.mac, p.id));
      }
    }
  }

  async function reimage(mac: Mac, opts: { force: boolean; source: string }): Promise<Record<string, unknown>> {
    const m = await load(mac);
    if (m.state === 'reimaging') throw conflict('ERR_REIMAGE_IN_PROGRESS', `a reimage of ${nameOf(m)} is already in progress`, 'state');
    if (!canTransition(m.state, 'reimage')) throw conflict('ERR_TRANSITION', `a machine in state "${m.state}" cannot be reimaged (give it a role and a cluster first)`, 'state');
    const t = await target(m);
    const previous = reimageProgress(await history(mac));
    const removal = needsClusterRemoval(m, previous);
    const base = { mac, cluster: m.cluster, type: REIMAGE_EVENT, source: opts.source };
    let forced: string | null = null;
    if (m.role === 'control-plane' && m.cluster) {
      const verdict = quorumAfterRemoval(m, await machines.list({ cluster: m.cluster }));
      if (!verdict.ok) {
        if (!opts.force) {
          await events.append({ ...base, message: `reimage refused: ${verdict.reason ?? ''}`, data: { step: 'refused', code: 'ERR_QUORUM', ...verdict } });
          throw conflict('ERR_QUORUM', `reimaging ${nameOf(m)} would lose etcd quorum: ${verdict.reason ?? ''}`, 'force');
        }
        forced = verdict.reason;
      }
    }
    // Ask the BMC before changing anything: a dead BMC refuses the reimage and leaves the machine as it was.
    let was: PowerState;
    try {
      was = (await driver.status(t, abort.signal)).state;
    } catch (err) {
      if (!(err instanceof PowerError)) throw err;
      await events.append({ ...base, message: `reimage refused: ${err.message}`, data: { step: 'refused', code: err.code } });
      throw toAppError(err);
    }
    const id = randomBytes(4).toString('hex');
    await machines.rotateSeedToken(mac);
    const after = await machines.transition(mac, 'reimage', {
      source: opts.source,
      message:
        `reimage ${id} accepted; seed token rotated; ` +
        (removal ? `node ${nameOf(m)} leaves cluster ${m.cluster ?? '?'} first` : 'the machine never joined its cluster: nothing to remove') +
        (forced ? `; forced although ${forced}` : ''),
      data: { reimage: id, removal: removal ? 'pending' : 'not-needed', force: opts.force, powerWas: was, ...(forced ? { forcedDespite: forced } : {}) },
    });
    log.info({ mac, reimage: id, removal }, 'reimage accepted');
    track(runReimage(mac, id));
    return { reimage: id, mac, hostname: m.hostname, state: after.state, removal: removal ? 'pending' : 'not-needed', powerWas: was, forced: forced !== null, events: `/api/v1/machines/${mac}/events` };
  }

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
          const r = await doPower(m, job.action, source, { job: id, rack: job.rack });
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
    await events.append({ type: 'rack.power', source, message: jobSummary(done), data: { rack: done.rack, job: id, action: done.action, state: done.state, counts: jobCounts(done) } });
    log.info({ rack: done.rack, job: id, counts: jobCounts(done) }, 'rack power job finished');
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
      // A retried reimage (failed → reimaging) picks up its workflow where it stopped.
      unsubscribe = events.subscribe((e) => {
        if (e.type === 'state' && e.mac && e.data?.['event'] === 'retry' && e.data['to'] === 'reimaging') {
          const mac = e.mac;
          track(
            (async () => {
              const p = reimageProgress(await history(mac));
              if (p) await runReimage(mac, p.id);
            })(),
          );
        }
      });
      track(resumeAll());
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
      return { state, detail: { reimaging: reimaging.size, rackJobsRunning: [...jobs.values()].filter((j) => j.state === 'running').length } };
    },
    async machinePower(mac, action, source) {
      const m = await load(mac);
      const r = await doPower(m, action, source, {});
      return { mac, hostname: m.hostname, action, result: r.result, ...(r.state ? { state: r.state } : {}), ...callData(r.info) };
    },
    reimage,
    async rackPower(rack, opts) {
      const list = await machines.list({ rack });
      if (list.length === 0) throw notFound('ERR_UNKNOWN_RACK', `no machines in rack "${rack}"`);
      const concurrency = opts.concurrency ?? settings.rackConcurrency;
      const powersOn = opts.action === 'on' || opts.action === 'cycle' || opts.action === 'reset';
      const delaySeconds = opts.delaySeconds ?? (powersOn ? settings.rackDelaySeconds : 0);
      const id = randomBytes(6).toString('hex');
      const job = newRackJob(id, rack, opts.action, concurrency, delaySeconds, list, now().toISOString());
      jobs.set(id, job);
      pruneJobs();
      await events.append({
        type: 'rack.power',
        source: opts.source,
        message: `rack ${rack}: power ${opts.action} of ${list.length} machine(s) started (job ${id}, concurrency ${concurrency}, ${delaySeconds} s between machines)`,
        data: { rack, job: id, action: opts.action, concurrency, delaySeconds, machines: list.length },
      });
      track(runJob(id, opts.source));
      return presentRackJob(job);
    },
    rackJob(rack, id) {
      const j = jobs.get(id);
      return j && j.rack === rack ? presentRackJob(j) : null;
    },
    async settled() {
      // Tasks may start tasks (a finished job's event, a retried reimage): wait until none is left.
      for (let i = 0; i < 100 && tasks.size > 0; i++) await Promise.allSettled([...tasks]);
    },
  };
}
