import type { Metrics } from '../lib/metrics.js';
import type { Cluster, InventoryEvent, Machine } from '../inventory/model.js';
import { NODE_REMOVAL_FAILED_EVENT, NODE_REMOVED_EVENT, REIMAGE_EVENT, awaitsClusterRemoval, reimageProgress } from '../inventory/reimage.js';
import type { Inventory, OrchestrationRepo, StepRecord } from '../inventory/store.js';
import type { ClusterCa } from '../lib/cluster-ca.js';
import { ADMIN_CONF_SECRET, clusterScope, ensureClusterSecrets } from '../lib/cluster-secrets.js';
import { notFound } from '../lib/errors.js';
import type { Logger } from '../lib/log.js';
import { AUTOINSTALL_DIR } from '../lib/paths.js';
import type { Service, ServiceState } from '../lib/service.js';
import { createRenderer, type Renderer } from '../render/templates.js';
import { KUBEADM_TEMPLATES_DIR } from './kubeadm-config.js';
import { planCluster, type Plan, type PlanLimits, type RemovalRequest } from './plan.js';
import { runStep, type RunnerDeps, type RunnerSettings } from './runner.js';
import type { RemoteShell } from './ssh.js';

/**
 * The orchestrator service: for every cluster with work to do, one driver takes the cluster's
 * lock in the store, evaluates the pure plan, starts the steps it names, and evaluates again
 * whenever a step ends or the inventory changes — until nothing is left to do, when it lets the
 * lock go. It reacts to inventory events at once and also re-reads every cluster on a bounded
 * interval (changes made by another process raise no event here).
 */
export interface OrchestratorSettings extends RunnerSettings {
  readonly pollMs: number;
  readonly lockTtlMs: number;
  readonly limits: PlanLimits;
}

export interface OrchestratorDeps {
  readonly inventory: Pick<Inventory, 'clusters' | 'machines' | 'events' | 'secrets'>;
  readonly orchestration: OrchestrationRepo;
  readonly shell: RemoteShell;
  readonly privateKey: () => Promise<string>;
  readonly settings: OrchestratorSettings;
  /** Identifies this racksmith instance in cluster locks (stable across its restarts). */
  readonly owner: string;
  /** Shown to people as the lock's holder (host and pid). */
  readonly holder: string;
  readonly now?: (() => Date) | undefined;
  readonly makeCa?: (() => Promise<ClusterCa>) | undefined;
  readonly kubeadmTemplates?: Renderer | undefined;
  readonly haproxyTemplates?: Renderer | undefined;
  readonly metrics?: Metrics | undefined;
}

export interface RetryResult {
  readonly machines: string[];
  readonly steps: string[];
}

export interface Orchestrator extends Service {
  /** Re-evaluates one cluster (or all) soon. */
  kick(cluster?: string): void;
  retry(cluster: string): Promise<RetryResult>;
  kubeconfig(cluster: string): Promise<string | null>;
  steps(cluster: Cluster, machines: readonly Machine[]): Promise<unknown[]>;
  detail(cluster: Cluster, machines: readonly Machine[]): Promise<Record<string, unknown>>;
  /** Resolves once no cluster is being driven (or rejects after `timeoutMs`). */
  idle(timeoutMs?: number): Promise<void>;
}

/**
 * What a machine fetched or reported on its way through the boot (a script, an artifact, a seed
 * file, an installer's progress): never an input of the plan — what changes a machine's place in
 * it comes as its own `state` event. Each would otherwise cost a look at the whole cluster, once
 * per boot script served (docs/artifacts.md).
 */
const BOOT_OBSERVATION = /^(dhcp|tftp|http|installer)\./;

/** Event pages read when replaying a reimaging machine's history (10,000 events each). */
const MAX_EVENT_PAGES = 50;

interface Driver {
  wake(): void;
  readonly active: Map<string, Promise<void>>;
}

export function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}

export function presentStep(s: StepRecord, machines: readonly Machine[]): Record<string, unknown> {
  const m = machines.find((x) => x.mac === s.mac);
  const { certsUploadedAt, tokenCreatedAt, backends, nodes, manifest, endpoint, server, reimage, viaNode, nodeFound, drained, reset, etcdMember, deleted } = s.data as Record<string, unknown>;
  return {
    id: s.id,
    kind: s.kind,
    machine: m?.hostname ?? s.mac,
    mac: s.mac,
    state: s.state,
    attempts: s.attempts,
    startedAt: s.startedAt,
    endedAt: s.endedAt,
    seconds: s.startedAt && s.endedAt ? (Date.parse(s.endedAt) - Date.parse(s.startedAt)) / 1000 : null,
    output: s.output,
    error: s.error,
    // Facts only; secrets never reach step data.
    facts: Object.fromEntries(Object.entries({ certsUploadedAt, tokenCreatedAt, backends, nodes, manifest, endpoint, server, reimage, via: viaNode, nodeFound, drained, reset, etcdMember, deleted }).filter(([, v]) => v !== undefined)),
  };
}

export function createOrchestrator(deps: OrchestratorDeps): Orchestrator {
  const { inventory, orchestration, settings } = deps;
  const now = deps.now ?? (() => new Date());
  const kubeadmTemplates = deps.kubeadmTemplates ?? createRenderer(KUBEADM_TEMPLATES_DIR);
  const haproxyTemplates = deps.haproxyTemplates ?? createRenderer(AUTOINSTALL_DIR);
  const drivers = new Map<string, Driver>();
  let state: ServiceState = 'stopped';
  let log: Logger | null = null;
  let stopAll = new AbortController();
  let pollTimer: NodeJS.Timeout | null = null;
  let unsubscribe: (() => void) | null = null;
  let privateKey = '';
  const running = new Set<Promise<void>>();

  function kick(cluster?: string): void {
    if (state !== 'serving') return;
    if (cluster === undefined) {
      void inventory.clusters.list().then(
        (all) => all.forEach((c) => kick(c.name)),
        (err: unknown) => log?.error({ err }, 'cannot list clusters'),
      );
      return;
    }
    const existing = drivers.get(cluster);
    if (existing) {
      existing.wake();
      return;
    }
    const p = drive(cluster).catch((err: unknown) => log?.error({ err, cluster }, 'cluster driver stopped on an error'));
    running.add(p);
    void p.finally(() => running.delete(p));
  }

  async function drive(name: string): Promise<void> {
    const l = (log as Logger).child({ cluster: name });
    const active = new Map<string, Promise<void>>();
    let wakeUp: (() => void) | null = null;
    let woken = false;
    const driver: Driver = {
      active,
      wake() {
        woken = true;
        wakeUp?.();
      },
    };
    drivers.set(name, driver);
    const stop = new AbortController();
    const onStopAll = (): void => stop.abort();
    stopAll.signal.addEventListener('abort', onStopAll, { once: true });
    let held = false;
    let renew: NodeJS.Timeout | null = null;
    try {
      // A cluster with nothing to do is left alone without a single write (no lock row, no
      // secrets): an idle racksmith does not touch its store.
      if (!(await hasWork(name))) return;
      const lock = await orchestration.acquireLock(name, deps.owner, deps.holder, settings.lockTtlMs);
      if (lock.owner !== deps.owner) {
        l.debug({ holder: lock.holder, until: lock.expiresAt }, 'another racksmith drives this cluster');
        return;
      }
      held = true;
      renew = setInterval(() => {
        void orchestration.renewLock(name, deps.owner, settings.lockTtlMs).then(
          (ok) => {
            if (!ok) {
              l.error('lost the cluster lock to another racksmith; stopping this cluster');
              held = false;
              stop.abort();
              driver.wake();
            }
          },
          (err: unknown) => l.warn({ err }, 'cannot renew the cluster lock'),
        );
      }, Math.max(1000, Math.floor(settings.lockTtlMs / 3)));

      while (!stop.signal.aborted) {
        woken = false;
        let idle = false;
        try {
          idle = await evaluate(name, active, stop.signal, driver, l);
        } catch (err) {
          l.error({ err }, 'cannot evaluate the cluster plan; trying again later');
        }
        if (idle) break;
        if (!woken) {
          await new Promise<void>((resolve) => {
            const t = setTimeout(resolve, settings.pollMs);
            wakeUp = () => {
              clearTimeout(t);
              resolve();
            };
          });
        }
        wakeUp = null;
      }
    } finally {
      if (renew) clearInterval(renew);
      await Promise.allSettled([...active.values()]);
      stopAll.signal.removeEventListener('abort', onStopAll);
      if (held) await orchestration.releaseLock(name, deps.owner).catch((err: unknown) => l.warn({ err }, 'cannot release the cluster lock'));
      drivers.delete(name);
    }
    // A change that arrived while this driver was letting go gets a fresh look.
    if (woken && !stopAll.signal.aborted) kick(name);
  }

  /** One look at the cluster: update its state, start what the plan says. True when nothing is left. */
  /** A read-only look: would the plan start a step, settle a machine or change the state? */
  async function hasWork(name: string): Promise<boolean> {
    const cluster = await inventory.clusters.get(name);
    if (!cluster) return false;
    const [members, steps] = await Promise.all([inventory.machines.list({ cluster: name }), orchestration.steps(name)]);
    const removals = await removalRequests(members);
    const plan = planCluster({ cluster, machines: members, steps, active: new Set(), now: now(), limits: settings.limits, removals });
    return plan.run.length > 0 || plan.settle.length > 0 || plan.answer.length > 0 || plan.state !== cluster.state;
  }

  async function history(mac: Machine['mac']): Promise<InventoryEvent[]> {
    const out: InventoryEvent[] = [];
    let after: number | undefined;
    for (let page = 0; page < MAX_EVENT_PAGES; page++) {
      const batch = await inventory.events.list({ mac, afterId: after, limit: 10_000 });
      out.push(...batch);
      if (batch.length < 10_000) break;
      after = batch[batch.length - 1]?.id;
    }
    return out;
  }

  /** The power service's open questions (server/inventory/reimage.ts): only machines in `reimaging` have any. */
  async function removalRequests(members: readonly Machine[]): Promise<RemovalRequest[]> {
    const out: RemovalRequest[] = [];
    for (const m of members) {
      if (m.state !== 'reimaging') continue;
      const p = reimageProgress(await history(m.mac));
      if (p && awaitsClusterRemoval(m, p)) out.push({ mac: m.mac, reimage: p.id, askedAt: p.stepEventId });
    }
    return out;
  }

  /**
   * Records the answers the plan found. A removed node's pinned host keys go with its old
   * system: the next connection to this machine needs the keys of its next phone-home.
   * Keys first, then the fact; a crash in between answers again (both writes are idempotent).
   */
  async function answer(name: string, plan: Plan, l: Logger): Promise<void> {
    for (const a of plan.answer) {
      if (a.outcome === 'removed') {
        await inventory.machines.setHostKeys(a.mac, []);
        await inventory.events.append({ mac: a.mac, cluster: name, type: NODE_REMOVED_EVENT, source: 'orchestrator', message: `${a.message}; its pinned SSH host keys were dropped until it phones home again`, data: { reimage: a.reimage, step: a.step } });
      } else {
        await inventory.events.append({ mac: a.mac, cluster: name, type: NODE_REMOVAL_FAILED_EVENT, source: 'orchestrator', message: `${a.message}: ${a.reason ?? ''}`, data: { reimage: a.reimage, reason: a.reason, step: a.step } });
      }
      l.info({ mac: a.mac, reimage: a.reimage, outcome: a.outcome, reason: a.reason }, 'removal answered');
    }
  }

  async function evaluate(name: string, active: Map<string, Promise<void>>, signal: AbortSignal, driver: Driver, l: Logger): Promise<boolean> {
    const cluster = await inventory.clusters.get(name);
    if (!cluster) return true;
    const [members, steps] = await Promise.all([inventory.machines.list({ cluster: name }), orchestration.steps(name)]);
    const removals = await removalRequests(members);
    const plan = planCluster({ cluster, machines: members, steps, active: new Set(active.keys()), now: now(), limits: settings.limits, removals });
    await answer(name, plan, l);
    // Made on first need: before the first step that uses them (seeds call the same function).
    const secrets = plan.run.length > 0 ? await ensureClusterSecrets(inventory.secrets, name, { now, makeCa: deps.makeCa }) : null;
    for (const mac of plan.settle) {
      await inventory.machines.transition(mac, 'joined', { source: 'orchestrator', message: `joined cluster ${name} (its step was recorded done before racksmith stopped)` });
    }
    if (plan.state !== cluster.state) {
      await inventory.clusters.setState(name, plan.state, `${plan.state}${plan.waiting[0] ? `: ${plan.waiting[0]}` : ''}`);
      l.info({ from: cluster.state, to: plan.state, waiting: plan.waiting }, 'cluster state');
    }
    const runner: RunnerDeps = {
      machines: inventory.machines,
      events: inventory.events,
      secrets: inventory.secrets,
      orchestration,
      shell: deps.shell,
      privateKey,
      kubeadmTemplates,
      haproxyTemplates,
      settings,
      now,
      log: l,
      sleep: abortableSleep,
      metrics: deps.metrics,
    };
    for (const step of plan.run) {
      if (active.has(step.id)) continue;
      const previous = steps.find((s) => s.id === step.id);
      if (!secrets) break;
      const p = runStep(runner, { cluster, step, endpoint: plan.endpoint ?? '', members, secrets, previous }, signal)
        .then(
          () => undefined,
          (err: unknown) => {
            if (!signal.aborted) l.error({ err, step: step.id }, 'step stopped on an unexpected error');
          },
        )
        .finally(() => {
          active.delete(step.id);
          driver.wake();
        });
      active.set(step.id, p);
    }
    // An answer changes what the next look sees: look once more before letting go.
    return active.size === 0 && plan.run.length === 0 && plan.answer.length === 0;
  }

  return {
    name: 'orchestrator',
    async start(c) {
      log = c.log;
      state = 'starting';
      stopAll = new AbortController();
      privateKey = await deps.privateKey();
      unsubscribe = inventory.events.subscribe((e) => {
        if (!e.cluster || e.source === 'orchestrator' || e.type.startsWith('orchestration')) return;
        if (BOOT_OBSERVATION.test(e.type)) return;
        // provisioning → provisioning (the installer served again): nothing moved.
        if (e.type === 'state' && e.data?.['from'] === e.data?.['to']) return;
        // The power service asks for a removal with a `reimage` event (the contract in server/inventory/reimage.ts).
        if (e.type === REIMAGE_EVENT && e.data?.['step'] !== 'remove-from-cluster') return;
        if (e.type === 'cluster.deleted') return;
        kick(e.cluster);
      });
      pollTimer = setInterval(() => kick(), settings.pollMs);
      state = 'serving';
      kick();
    },
    async stop() {
      if (state === 'stopped') return;
      state = 'stopping';
      unsubscribe?.();
      if (pollTimer) clearInterval(pollTimer);
      stopAll.abort();
      await Promise.allSettled([...running]);
      state = 'stopped';
    },
    health() {
      return { state, detail: { drivingClusters: [...drivers.keys()], runningSteps: [...drivers.values()].reduce((n, d) => n + d.active.size, 0) } };
    },
    kick,
    async retry(name) {
      const cluster = await inventory.clusters.get(name);
      if (!cluster) throw notFound('ERR_UNKNOWN_CLUSTER', `no cluster named "${name}"`);
      const retried: string[] = [];
      for (const m of await inventory.machines.list({ cluster: name })) {
        // Only what the orchestrator failed; an install failure is retried by reimaging.
        if (m.state === 'failed' && (m.failedFrom === 'ready' || m.failedFrom === 'joining' || m.failedFrom === 'joined')) {
          await inventory.machines.transition(m.mac, 'retry', { source: 'api', message: `retry of cluster ${name} requested` });
          retried.push(m.hostname ?? m.mac);
        }
      }
      const steps = await orchestration.resetFailed(name);
      if (cluster.state === 'failed' || cluster.state === 'degraded') await inventory.clusters.setState(name, 'bootstrapping', 'retry requested');
      kick(name);
      return { machines: retried, steps };
    },
    async kubeconfig(name) {
      return inventory.secrets.get(clusterScope(name), ADMIN_CONF_SECRET);
    },
    async steps(cluster, machines) {
      return (await orchestration.steps(cluster.name)).map((s) => presentStep(s, machines));
    },
    async detail(cluster, machines) {
      const [steps, lock, removals] = await Promise.all([orchestration.steps(cluster.name), orchestration.lock(cluster.name), removalRequests(machines)]);
      const driver = drivers.get(cluster.name);
      const plan = planCluster({ cluster, machines, steps, active: new Set(driver ? driver.active.keys() : []), now: now(), limits: settings.limits, removals });
      return {
        orchestration: {
          waiting: plan.waiting,
          next: plan.run.map((s) => s.id),
          running: driver ? [...driver.active.keys()] : [],
          lock: lock && Date.parse(lock.expiresAt) > Date.now() ? { holder: lock.holder, expiresAt: lock.expiresAt } : null,
        },
      };
    },
    async idle(timeoutMs = 60_000) {
      const deadline = Date.now() + timeoutMs;
      while (drivers.size > 0 || running.size > 0) {
        if (Date.now() > deadline) throw new Error(`the orchestrator was still busy after ${timeoutMs} ms`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
  };
}
