import { randomBytes } from 'node:crypto';
import { AppError, conflict } from '../lib/errors.js';
import type { Logger } from '../lib/log.js';
import type { Mac } from '../lib/mac.js';
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
import type { EventRepo, MachineRepo } from '../inventory/store.js';
import { PowerError, type BmcTarget, type PowerCallInfo, type PowerDriver, type PowerState } from './driver.js';
import { quorumAfterRemoval, type LiveQuorumCheck } from './quorum.js';
import { loadBalancerReimageProblem } from '../clusters/load-balancers.js';

/**
 * The reimage workflow (docs/power.md): refuse what would break (quorum, a dead BMC) before
 * changing anything; then token rotation and `reimaging`, the node's removal by the orchestrator
 * (waited for as a fact in the store), next boot PXE, power cycle. Each step is an event, and
 * each pass re-reads the store, so the workflow resumes after a restart or a retry.
 */
export interface PowerContext {
  readonly machines: MachineRepo;
  readonly events: EventRepo;
  readonly driver: PowerDriver;
  readonly settings: { readonly removalTimeoutMs: number; readonly removalPollMs: number };
  /** Aborted when the service stops. */
  readonly signal: AbortSignal;
  log(): Logger;
  /** Runs a background task the service waits for when it stops. */
  track(p: Promise<void>): void;
  load(mac: Mac): Promise<Machine>;
  target(m: Machine): Promise<BmcTarget>;
  cycleOrOn(t: BmcTarget): Promise<{ result: string; info: PowerCallInfo; was: PowerState }>;
  /** etcd's own member list and health, through a healthy control node (the orchestrator). */
  readonly liveQuorum?: LiveQuorumCheck | undefined;
}

/** Event pages read when replaying a machine's history (10,000 events each). */
const MAX_EVENT_PAGES = 50;

export const nameOf = (m: Pick<Machine, 'hostname' | 'mac'>): string => m.hostname ?? m.mac;

export const callData = (info: PowerCallInfo): Record<string, unknown> => ({
  attempts: info.attempts,
  cipherSuite: info.cipherSuite,
  ms: info.ms,
  ...(info.warning ? { warning: info.warning } : {}),
});

export function toAppError(err: PowerError): AppError {
  const kind = err.kind === 'timeout' || err.kind === 'unreachable' ? 'gateway-timeout' : err.kind === 'aborted' ? 'unavailable' : 'bad-gateway';
  return new AppError(kind, err.code, err.message);
}

export interface ReimageWorkflow {
  reimage(mac: Mac, opts: { readonly force: boolean; readonly source: string }): Promise<Record<string, unknown>>;
  /** Picks up every machine left in `reimaging` by a stop or a crash. */
  resumeAll(): Promise<void>;
  /** Feed of inventory events: a machine retried from `failed` back to `reimaging` resumes. */
  onEvent(e: InventoryEvent): void;
  /** Workflows running now. */
  active(): number;
}

export function createReimageWorkflow(ctx: PowerContext): ReimageWorkflow {
  const { machines, events } = ctx;
  /** Machines whose workflow runs now: one per machine. */
  const reimaging = new Set<Mac>();

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
    ctx.log().warn({ mac: m.mac, reimage: id, step: failedStep, reason }, 'reimage failed');
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
        ctx.signal.removeEventListener('abort', onAbort);
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
          ctx.log().warn({ err, mac }, 'reading events while waiting for the node removal failed');
        } finally {
          checking = false;
        }
      };
      const onAbort = (): void => finish('aborted');
      const unsub = events.subscribe((e) => {
        if (e.mac === mac && (e.type === NODE_REMOVED_EVENT || e.type === NODE_REMOVAL_FAILED_EVENT)) void check();
      });
      const poll = setInterval(() => void check(), ctx.settings.removalPollMs);
      const timer = setTimeout(() => finish('timeout'), Math.max(0, deadline - Date.now()));
      ctx.signal.addEventListener('abort', onAbort, { once: true });
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
      for (let pass = 0; pass < 8 && !ctx.signal.aborted; pass++) {
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
                timeoutSeconds: Math.round(ctx.settings.removalTimeoutMs / 1000),
              });
            } else {
              await step(m, id, 'removed-from-cluster', `nothing to remove: ${nameOf(m)} never joined its cluster`, { removal: 'not-needed' });
            }
            break;
          case 'remove-from-cluster': {
            if (p.failure) {
              // A retry after a failed wait asks again, with a fresh deadline.
              await step(m, id, 'remove-from-cluster', `asking again for node ${nameOf(m)} to be removed from cluster ${m.cluster ?? '?'}`, { cluster: m.cluster, hostname: m.hostname, role: m.role, timeoutSeconds: Math.round(ctx.settings.removalTimeoutMs / 1000) });
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
            const waited = await waitForRemoval(mac, id, p.stepEventId, Date.parse(p.stepAt) + ctx.settings.removalTimeoutMs);
            if (waited === 'aborted') return;
            if (waited === 'timeout') {
              await failReimage(m, id, 'reimage.remove-from-cluster', `no "removed from cluster" fact from the orchestrator within ${Math.round(ctx.settings.removalTimeoutMs / 1000)} s; the node may still be in the cluster`);
              return;
            }
            break;
          }
          case 'removed-from-cluster': {
            const efi = m.firmware === 'efi';
            // A machine seen booting by UEFI HTTP (vendor class HTTPClient) asks Redfish for UefiHttp.
            const http = efi && (m.vendorClass ?? '').startsWith('HTTPClient');
            try {
              const info = await ctx.driver.setNextBoot(await ctx.target(m), 'pxe', { efi, persistent: false, http }, ctx.signal);
              await step(m, id, 'next-boot-set', `next boot set to ${http ? 'UEFI HTTP' : 'PXE'} (${efi ? 'UEFI' : 'legacy BIOS'})` + (info.warning ? `; warning: ${info.warning}` : ''), { efi, http, ...callData(info) });
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
              const { result, info, was } = await ctx.cycleOrOn(await ctx.target(m));
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
        ctx.log().info({ mac: m.mac, reimage: p.id, step: p.step }, 'resuming reimage');
        ctx.track(runReimage(m.mac, p.id));
      }
    }
  }

  async function reimage(mac: Mac, opts: { force: boolean; source: string }): Promise<Record<string, unknown>> {
    const m = await ctx.load(mac);
    if (m.state === 'reimaging') throw conflict('ERR_REIMAGE_IN_PROGRESS', `a reimage of ${nameOf(m)} is already in progress`, 'state');
    if (!canTransition(m.state, 'reimage')) throw conflict('ERR_TRANSITION', `a machine in state "${m.state}" cannot be reimaged (give it a role and a cluster first)`, 'state');
    const t = await ctx.target(m);
    const previous = reimageProgress(await history(mac));
    const removal = needsClusterRemoval(m, previous);
    const base = { mac, cluster: m.cluster, type: REIMAGE_EVENT, source: opts.source };
    let forced: string | null = null;
    if (m.role === 'loadbalancer' && m.cluster) {
      const problem = loadBalancerReimageProblem(m, await machines.list({ cluster: m.cluster }));
      if (problem) {
        if (!opts.force) {
          await events.append({ ...base, message: `reimage refused: ${problem}`, data: { step: 'refused', code: 'ERR_LAST_LOAD_BALANCER', reason: problem } });
          throw conflict('ERR_LAST_LOAD_BALANCER', `reimaging ${nameOf(m)} would take the Kubernetes API away: ${problem}; pass force to reimage it anyway`, 'force');
        }
        forced = problem;
      }
    }
    if (m.role === 'control-plane' && m.cluster) {
      const verdict = (await ctx.liveQuorum?.(m)) ?? { ...quorumAfterRemoval(m, await machines.list({ cluster: m.cluster })), source: 'inventory' as const };
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
      was = (await ctx.driver.status(t, ctx.signal)).state;
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
    ctx.log().info({ mac, reimage: id, removal }, 'reimage accepted');
    ctx.track(runReimage(mac, id));
    return { reimage: id, mac, hostname: m.hostname, state: after.state, removal: removal ? 'pending' : 'not-needed', powerWas: was, forced: forced !== null, events: `/api/v1/machines/${mac}/events` };
  }

  return {
    reimage,
    resumeAll,
    onEvent(e) {
      if (e.type === 'state' && e.mac && e.data?.['event'] === 'retry' && e.data['to'] === 'reimaging') {
        const mac = e.mac;
        ctx.track(
          (async () => {
            const p = reimageProgress(await history(mac));
            if (p) await runReimage(mac, p.id);
          })(),
        );
      }
    },
    active: () => reimaging.size,
  };
}
