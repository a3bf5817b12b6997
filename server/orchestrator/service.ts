import type { Metrics } from '../lib/metrics.js';
import { logFailure } from '../inventory/unavailable.js';
import type { Cluster, ClusterUpgrade, InventoryEvent, Machine, PlanMachine } from '../inventory/model.js';
import { NODE_REMOVAL_FAILED_EVENT, NODE_REMOVED_EVENT, REIMAGE_EVENT, awaitsClusterRemoval, reimageProgress } from '../inventory/reimage.js';
import type { Inventory, OrchestrationRepo, StepRecord } from '../inventory/store.js';
import type { ClusterCa } from '../lib/cluster-ca.js';
import { ADMIN_CONF_SECRET, clusterScope, ensureClusterSecrets } from '../lib/cluster-secrets.js';
import { randomBytes } from 'node:crypto';
import { conflict, errorMessage, invalid, notFound } from '../lib/errors.js';
import type { Mac } from '../lib/mac.js';
import { quorumAfterRemoval, type QuorumVerdict } from '../power/quorum.js';
import { liveQuorumAfterRemoval } from './etcd.js';
import type { Logger } from '../lib/log.js';
import { AUTOINSTALL_DIR } from '../lib/paths.js';
import type { Service, ServiceState } from '../lib/service.js';
import { createRenderer, type Renderer } from '../render/templates.js';
import { KUBEADM_TEMPLATES_DIR } from './kubeadm-config.js';
import { machineGeneration, planCluster, removeStepId, type Plan, type PlanLimits, type RemovalRequest } from './plan.js';
import { UPGRADE_STEP_KINDS, nodeRecordId, parseVersion, skewProblem } from './upgrade.js';
import { groupBy } from '../lib/group.js';
import { sleepUnlessAborted } from '../lib/sleep.js';
import { inspectEtcd, runStep, type RunnerDeps, type RunnerSettings } from './runner.js';
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
  /** Workers reimaged at once by a rolling upgrade unless the request says otherwise. */
  readonly upgradeMaxUnavailable?: number | undefined;
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
  /** The power service's reimage (a rolling upgrade reimages its nodes); without it an upgrade cannot start. */
  readonly reimage?: ((mac: Mac, opts: { readonly force: boolean; readonly source: string }) => Promise<Record<string, unknown>>) | undefined;
  /**
   * The upgrade's package preflight: do the new version's packages exist in the configured
   * repositories? (The cluster preflight of `POST /clusters/{name}/preflight` is the one to hand
   * in.) Without it only the skew rules are checked.
   */
  readonly checkPackages?: ((cluster: Cluster, version: string) => Promise<{ readonly ok: boolean; readonly lines: readonly string[] }>) | undefined;
}

export interface UpgradeRequest {
  readonly kubernetesVersion: string;
  readonly maxUnavailable?: number | undefined;
  /** Skip the upstream preflight (a site whose mirrors racksmith's host cannot reach); the skew rules still hold. */
  readonly force?: boolean | undefined;
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
  /** etcd's own view through a healthy control node: would removing this control node keep quorum? Null when no control node answered. */
  liveQuorum(m: Machine): Promise<QuorumVerdict | null>;
  /**
   * `DELETE /machines/{mac}` of a node of its cluster: asks for its removal (drain, etcd member,
   * Node object, load balancers) after which the record is deleted. Null when the machine is
   * no node of a cluster (the record may go at once).
   */
  removeFromCluster(m: Machine, opts: { readonly force: boolean }): Promise<Record<string, unknown> | null>;
  /** `POST /clusters/{name}/upgrade`: checks the skew rules and the packages, then starts the rolling upgrade. */
  startUpgrade(cluster: string, req: UpgradeRequest, source: string): Promise<ClusterUpgrade>;
  /** pause: no further node is reimaged (those on their way finish); resume; abort: stop for good. */
  controlUpgrade(cluster: string, action: 'pause' | 'resume' | 'abort', source: string): Promise<ClusterUpgrade>;
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

export function presentStep(s: StepRecord, machines: readonly Machine[]): Record<string, unknown> {
  const m = machines.find((x) => x.mac === s.mac);
  const { certsUploadedAt, tokenCreatedAt, backends, nodes, manifest, endpoint, server, reimage, viaNode, nodeFound, drained, reset, etcdMember, deleted, vrrp, snapshot, version, to, node, purpose } = s.data as Record<string, unknown>;
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
    facts: Object.fromEntries(Object.entries({ certsUploadedAt, tokenCreatedAt, backends, nodes, manifest, endpoint, server, reimage, via: viaNode, nodeFound, drained, reset, etcdMember, deleted, vrrp, snapshot, version, to, node, purpose }).filter(([, v]) => v !== undefined)),
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
  let surveying = false;

  /**
   * Another instance holds the cluster: look again just after its lock would lapse, so that a
   * holder that died is replaced within one lock lifetime (renewals push the look further out).
   */
  const lockWatches = new Map<string, NodeJS.Timeout>();
  function watchLock(cluster: string, expiresAt: string): void {
    if (lockWatches.has(cluster)) return;
    const delay = Math.min(Math.max(Date.parse(expiresAt) - now().getTime() + 250, 250), 2 ** 31 - 1);
    const t = setTimeout(() => {
      lockWatches.delete(cluster);
      kick(cluster);
    }, delay);
    t.unref();
    lockWatches.set(cluster, t);
  }

  function kick(cluster?: string): void {
    if (state !== 'serving') return;
    if (cluster === undefined) {
      // One look at a time: a slow store must not stack them up, poll after poll.
      if (surveying) return;
      surveying = true;
      void survey()
        .catch((err: unknown) => {
          if (log) logFailure(log, err, 'cannot look at the clusters');
        })
        .finally(() => (surveying = false));
      return;
    }
    wakeOrStart(cluster, false);
  }

  /** Wakes the cluster's driver, or starts one; `checked`: its plan was just found to have work, so the driver goes straight to the lock. */
  function wakeOrStart(cluster: string, checked: boolean): void {
    const existing = drivers.get(cluster);
    if (existing) {
      existing.wake();
      return;
    }
    const p = drive(cluster, checked).catch((err: unknown) => {
      if (log) logFailure(log, err, 'cluster driver stopped on an error', { cluster });
    });
    running.add(p);
    void p.finally(() => running.delete(p));
  }

  /**
   * The periodic look at every cluster (and the first at start): the clusters, their machines and
   * their steps read once for all of them, instead of per cluster — on a site of 250 racks, three
   * instances each made some 750 statements every poll (docs/instances.md). A
   * cluster whose plan has nothing to do gets no driver; one that has is driven, and reads all
   * again under its lock. A change made meanwhile kicks its cluster through its event.
   */
  async function survey(): Promise<void> {
    const [clusters, machines, steps] = await Promise.all([inventory.clusters.list(), inventory.machines.planFacts(), orchestration.allSteps()]);
    const members = groupBy(machines, (m) => m.cluster);
    const stepsOf = groupBy(steps, (s) => s.cluster);
    for (const c of clusters) {
      if (state !== 'serving') return;
      // A driver started meanwhile (by an event) is woken instead.
      if (drivers.has(c.name) || (await hasWork(c.name, { cluster: c, members: members.get(c.name) ?? [], steps: stepsOf.get(c.name) ?? [] }))) wakeOrStart(c.name, true);
    }
  }

  async function drive(name: string, checked: boolean): Promise<void> {
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
      if (!checked && !(await hasWork(name))) return;
      const lock = await orchestration.acquireLock(name, deps.owner, deps.holder, settings.lockTtlMs);
      if (lock.owner !== deps.owner) {
        l.debug({ holder: lock.holder, until: lock.expiresAt }, 'another racksmith drives this cluster');
        watchLock(name, lock.expiresAt);
        return;
      }
      held = true;
      // Which instance drove a cluster, from when to when: the log tells a site with several.
      l.info({ until: lock.expiresAt }, 'cluster lock taken: this racksmith drives the cluster');
      let renewedAt = Date.now();
      const letGo = (why: string): void => {
        l.error(why);
        held = false;
        stop.abort();
        driver.wake();
      };
      renew = setInterval(() => {
        void orchestration.renewLock(name, deps.owner, settings.lockTtlMs).then(
          (ok) => {
            if (!ok) letGo('lost the cluster lock to another racksmith; stopping this cluster');
            else renewedAt = Date.now();
          },
          (err: unknown) => {
            l.warn({ err }, 'cannot renew the cluster lock');
            // Unrenewed for a whole lifetime, the lock may be another instance's by now: stop driving.
            if (Date.now() - renewedAt >= settings.lockTtlMs) letGo('the cluster lock could not be renewed for its whole lifetime; stopping this cluster until the store answers');
          },
        );
      }, Math.max(1000, Math.floor(settings.lockTtlMs / 3)));

      while (!stop.signal.aborted) {
        woken = false;
        let idle = false;
        try {
          idle = await evaluate(name, active, stop.signal, driver, l);
        } catch (err) {
          logFailure(l, err, 'cannot evaluate the cluster plan; trying again later');
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
      if (held) {
        // Said before the release, so that no other instance's "taken" can come before it in time.
        l.info({ why: stopAll.signal.aborted ? 'stopping' : 'nothing left to do for now' }, 'cluster lock released');
        await orchestration.releaseLock(name, deps.owner).catch((err: unknown) => l.warn({ err }, 'cannot release the cluster lock'));
      }
      drivers.delete(name);
    }
    // A change that arrived while this driver was letting go gets a fresh look.
    if (woken && !stopAll.signal.aborted) kick(name);
  }

  /** A read-only look: would the plan start a step, settle a machine or change the state? `read`: the cluster and its machines, already read. */
  async function hasWork(name: string, read?: { readonly cluster: Cluster; readonly members: readonly PlanMachine[]; readonly steps: readonly StepRecord[] }): Promise<boolean> {
    const cluster = read ? read.cluster : await inventory.clusters.get(name);
    if (!cluster) return false;
    const [members, steps] = read ? [read.members, read.steps] : await Promise.all([inventory.machines.list({ cluster: name }), orchestration.steps(name)]);
    const removals = await removalRequests(members, steps);
    const plan = planCluster({ cluster, machines: members, steps, active: new Set(), now: now(), limits: settings.limits, removals });
    return plan.run.length > 0 || plan.settle.length > 0 || plan.answer.length > 0 || plan.state !== cluster.state || upgradeWrites(cluster, plan);
  }

  /** Would the upgrade's part of the plan write something: a reimage to ask, a flag to set, the end? */
  function upgradeWrites(cluster: Cluster, plan: Plan): boolean {
    const u = plan.upgrade;
    return u !== null && (u.reimage.length > 0 || u.doneNodes.length > 0 || (u.controlPlaneMoved && cluster.upgrade?.controlPlaneMoved !== true) || u.finished);
  }

  /**
   * The upgrade's writes: the control plane moved on (installs get the new version), nodes to
   * reimage (the record first, so a restart never asks twice), and the end.
   */
  async function applyUpgrade(cluster: Cluster, plan: Plan, steps: readonly StepRecord[], l: Logger): Promise<void> {
    const u = plan.upgrade;
    let upgrade = cluster.upgrade;
    if (!u || !upgrade) return;
    if (u.controlPlaneMoved && !upgrade.controlPlaneMoved) {
      upgrade = { ...upgrade, controlPlaneMoved: true, updatedAt: now().toISOString() };
      await inventory.clusters.setUpgrade(cluster.name, upgrade, `upgrade to ${upgrade.to}: the cluster configuration names ${upgrade.to}; machines installed from now on get it`);
    }
    for (const mac of u.reimage) {
      const id = nodeRecordId(mac, upgrade.id);
      const m = await inventory.machines.get(mac);
      if (!m) continue;
      const base = { cluster: cluster.name, id, kind: 'upgrade-node', mac, attempts: 1, startedAt: now().toISOString(), endedAt: null, output: [], error: null } as const;
      const data = { upgrade: upgrade.id, to: upgrade.to, generation: machineGeneration(mac, steps), reimage: null as string | null };
      await orchestration.saveStep({ ...base, state: 'running', data });
      if (!deps.reimage) {
        await orchestration.saveStep({ ...base, state: 'failed', endedAt: now().toISOString(), error: 'this racksmith has no power service to reimage with', data });
        continue;
      }
      try {
        const r = await deps.reimage(mac, { force: false, source: 'orchestrator' });
        await orchestration.saveStep({ ...base, state: 'running', data: { ...data, reimage: String(r['reimage'] ?? '') || 'asked' }, output: [`reimage ${String(r['reimage'] ?? '')} of ${m.hostname ?? mac} into Kubernetes ${upgrade.to}`] });
        l.info({ mac, reimage: r['reimage'], to: upgrade.to }, 'upgrade: node reimaged');
      } catch (err) {
        await orchestration.saveStep({ ...base, state: 'failed', endedAt: now().toISOString(), error: errorMessage(err), data });
        l.warn({ mac, err: errorMessage(err) }, 'upgrade: the reimage was refused');
      }
    }
    for (const mac of u.doneNodes) {
      const rec = steps.find((s) => s.id === nodeRecordId(mac, upgrade.id));
      if (rec) await orchestration.saveStep({ ...rec, state: 'done', endedAt: now().toISOString() });
    }
    if (u.finished && upgrade.state !== 'done') {
      const done = { ...upgrade, state: 'done' as const, updatedAt: now().toISOString(), reason: null };
      await inventory.clusters.setUpgrade(cluster.name, done, `upgrade done: every node runs Kubernetes ${upgrade.to}`, { kubernetesVersion: upgrade.to });
      l.info({ to: upgrade.to }, 'upgrade done');
    }
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

  /**
   * The open removal requests: the power service's (server/inventory/reimage.ts; only machines
   * in `reimaging` have any) and the deletes asked through the API, kept as `remove-node`
   * records of purpose `delete` until they are done or answered.
   */
  async function removalRequests(members: readonly PlanMachine[], steps: readonly StepRecord[]): Promise<RemovalRequest[]> {
    const out: RemovalRequest[] = [];
    for (const s of steps) {
      // Open until answered: a finished removal is answered (and the record deleted) on the next look.
      if (s.kind !== 'remove-node' || s.data['purpose'] !== 'delete' || s.data['answered'] === true) continue;
      const m = members.find((x) => x.mac === s.mac);
      if (m) out.push({ mac: m.mac, reimage: String(s.data['reimage']), askedAt: Number(s.data['askedAt']), purpose: 'delete', force: s.data['force'] === true });
    }
    for (const m of members) {
      if (out.some((r) => r.mac === m.mac)) continue;
      if (m.state !== 'reimaging') continue;
      const p = reimageProgress(await history(m.mac));
      if (p && awaitsClusterRemoval(m, p)) out.push({ mac: m.mac, reimage: p.id, askedAt: p.stepEventId });
    }
    return out;
  }

  /**
   * The delete asked for this machine and not answered yet. Its answer (the event) goes out just
   * before its record is marked answered, and whoever saw that event may ask again at once (with
   * force, after a refusal): a request whose answer is out is over, whatever its record says.
   */
  async function openDelete(cluster: string, mac: Mac): Promise<StepRecord | undefined> {
    const open = (await orchestration.steps(cluster)).find((s) => s.kind === 'remove-node' && s.mac === mac && s.data['purpose'] === 'delete' && s.data['answered'] !== true);
    if (!open) return undefined;
    for (const type of [NODE_REMOVAL_FAILED_EVENT, NODE_REMOVED_EVENT]) {
      const answers = await inventory.events.list({ mac, type, newest: true, limit: 20 });
      if (answers.some((e) => e.data?.['request'] === open.data['reimage'])) return undefined;
    }
    return open;
  }

  /**
   * Records the answers the plan found. A removed node's pinned host keys go with its old
   * system: the next connection to this machine needs the keys of its next phone-home.
   * Keys first, then the fact; a crash in between answers again (both writes are idempotent).
   */
  async function answer(name: string, plan: Plan, steps: readonly StepRecord[], l: Logger): Promise<void> {
    for (const a of plan.answer) {
      const rec = a.purpose === 'delete' ? steps.find((s) => s.id === removeStepId(a.mac, a.reimage)) : undefined;
      if (a.purpose === 'delete') {
        // The node is out of its cluster (or could not be taken out): the fact, then the record goes.
        const type = a.outcome === 'removed' ? NODE_REMOVED_EVENT : NODE_REMOVAL_FAILED_EVENT;
        await inventory.events.append({ mac: a.mac, cluster: name, type, source: 'orchestrator', message: a.outcome === 'removed' ? `${a.message}; the machine's record is deleted` : `${a.message}: ${a.reason ?? ''}; the machine is kept`, data: { request: a.reimage, reason: a.reason, step: a.step } });
        if (rec) await orchestration.saveStep({ ...rec, data: { ...rec.data, answered: true } });
        if (a.outcome === 'removed') await inventory.machines.delete(a.mac).catch((err: unknown) => l.warn({ err, mac: a.mac }, 'cannot delete the removed machine\'s record'));
        l.info({ mac: a.mac, request: a.reimage, outcome: a.outcome, reason: a.reason }, 'delete answered');
        continue;
      }
      if (a.outcome === 'removed') {
        await inventory.machines.setHostKeys(a.mac, []);
        await inventory.events.append({ mac: a.mac, cluster: name, type: NODE_REMOVED_EVENT, source: 'orchestrator', message: `${a.message}; its pinned SSH host keys were dropped until it phones home again`, data: { reimage: a.reimage, step: a.step } });
      } else {
        await inventory.events.append({ mac: a.mac, cluster: name, type: NODE_REMOVAL_FAILED_EVENT, source: 'orchestrator', message: `${a.message}: ${a.reason ?? ''}`, data: { reimage: a.reimage, reason: a.reason, step: a.step } });
      }
      l.info({ mac: a.mac, reimage: a.reimage, outcome: a.outcome, reason: a.reason }, 'removal answered');
    }
  }

  /** One look at the cluster: update its state, start what the plan says. True when nothing is left. */
  async function evaluate(name: string, active: Map<string, Promise<void>>, signal: AbortSignal, driver: Driver, l: Logger): Promise<boolean> {
    const cluster = await inventory.clusters.get(name);
    if (!cluster) return true;
    const [members, steps] = await Promise.all([inventory.machines.list({ cluster: name }), orchestration.steps(name)]);
    const removals = await removalRequests(members, steps);
    const plan = planCluster({ cluster, machines: members, steps, active: new Set(active.keys()), now: now(), limits: settings.limits, removals });
    await answer(name, plan, steps, l);
    await applyUpgrade(cluster, plan, steps, l);
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
      sleep: sleepUnlessAborted,
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
            if (!signal.aborted) logFailure(l, err, 'step stopped on an unexpected error', { step: step.id });
          },
        )
        .finally(() => {
          active.delete(step.id);
          driver.wake();
        });
      active.set(step.id, p);
    }
    // An answer changes what the next look sees: look once more before letting go.
    return active.size === 0 && plan.run.length === 0 && plan.answer.length === 0 && !upgradeWrites(cluster, plan);
  }

  /** etcd's own view through a healthy control node (the one cluster commands use first). */
  async function liveQuorum(m: Machine): Promise<QuorumVerdict | null> {
    if (m.role !== 'control-plane' || !m.cluster) return null;
    const cluster = await inventory.clusters.get(m.cluster);
    if (!cluster) return null;
    const [members, steps] = await Promise.all([inventory.machines.list({ cluster: cluster.name }), orchestration.steps(cluster.name)]);
    const plan = planCluster({ cluster, machines: members, steps, active: new Set(), now: now(), limits: settings.limits, removals: [] });
    // Every healthy control node may answer: another than the node in question first (the one
    // cluster commands use, then the others), the node itself only when no other does.
    const rank = (c: Machine): number => (c.mac === m.mac ? 2 : c.mac === plan.controlNode ? 0 : 1);
    const candidates = members.filter((c) => c.role === 'control-plane' && c.state === 'joined' && c.ip).sort((a, b) => rank(a) - rank(b));
    for (const via of candidates.slice(0, 3)) {
      try {
        const view = await inspectEtcd({ shell: deps.shell, privateKey, settings }, via, stopAll.signal);
        return liveQuorumAfterRemoval(view, m.hostname ?? m.mac, m.ip);
      } catch (err) {
        log?.warn({ err: errorMessage(err), via: via.hostname, cluster: cluster.name }, 'cannot read etcd through this control node');
      }
    }
    return null;
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
      for (const t of lockWatches.values()) clearTimeout(t);
      lockWatches.clear();
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
      const [steps, lock] = await Promise.all([orchestration.steps(cluster.name), orchestration.lock(cluster.name)]);
      const removals = await removalRequests(machines, steps);
      const driver = drivers.get(cluster.name);
      const plan = planCluster({ cluster, machines, steps, active: new Set(driver ? driver.active.keys() : []), now: now(), limits: settings.limits, removals });
      return {
        orchestration: {
          waiting: plan.waiting,
          next: plan.run.map((s) => s.id),
          running: driver ? [...driver.active.keys()] : [],
          lock: lock && Date.parse(lock.expiresAt) > Date.now() ? { holder: lock.holder, expiresAt: lock.expiresAt } : null,
        },
        ...(cluster.upgrade ? { upgrade: { ...cluster.upgrade, nodes: plan.upgrade?.progress ?? {} } } : {}),
      };
    },
    liveQuorum,
    async removeFromCluster(m, opts) {
      if (!m.cluster || (m.role !== 'worker' && m.role !== 'control-plane')) return null;
      if (m.state === 'reimaging') throw conflict('ERR_REIMAGE_IN_PROGRESS', `${m.hostname ?? m.mac} is being reimaged; delete it once the reimage is over`, 'mac');
      const where = m.state === 'failed' ? m.failedFrom : m.state;
      if (where !== 'joining' && where !== 'joined') return null;
      const cluster = m.cluster;
      const name = m.hostname ?? m.mac;
      if (m.role === 'control-plane') {
        const verdict = (await liveQuorum(m)) ?? { ...quorumAfterRemoval(m, await inventory.machines.list({ cluster })), source: 'inventory' as const };
        if (!verdict.ok) throw conflict('ERR_QUORUM', `removing ${name} would lose etcd quorum (${verdict.source ?? 'inventory'}): ${verdict.reason ?? ''}`, 'mac');
      }
      const open = await openDelete(cluster, m.mac);
      const request = open ? String(open.data['reimage']) : `del-${randomBytes(4).toString('hex')}`;
      const id = removeStepId(m.mac, request);
      if (!open) {
        await orchestration.saveStep({ cluster, id, kind: 'remove-node', mac: m.mac, state: 'pending', attempts: 0, startedAt: null, endedAt: null, output: [], error: null, data: { purpose: 'delete', reimage: request, askedAt: Date.now(), force: opts.force } });
        await inventory.events.append({ mac: m.mac, cluster, type: 'cluster.node-removal-requested', source: 'api', message: `node ${name} leaves cluster ${cluster} before its record is deleted${opts.force ? ' (forced: removed from the cluster side even if it does not answer)' : ''}`, data: { request, force: opts.force, step: id } });
      }
      kick(cluster);
      return { removal: 'pending', request, step: id, mac: m.mac, hostname: m.hostname, cluster, force: open ? open.data['force'] === true : opts.force, events: `/api/v1/machines/${m.mac}/events` };
    },
    async startUpgrade(name, req, source) {
      const cluster = await inventory.clusters.get(name);
      if (!cluster) throw notFound('ERR_UNKNOWN_CLUSTER', `no cluster named "${name}"`);
      const to = req.kubernetesVersion.replace(/^v/, '');
      const previous = cluster.upgrade ?? null;
      if (previous && (previous.state === 'running' || previous.state === 'paused')) throw conflict('ERR_UPGRADE_IN_PROGRESS', `cluster ${name} is already being upgraded to ${previous.to} (${previous.state}); resume or abort it first`, 'kubernetesVersion');
      // An aborted upgrade that already moved the control plane can only be finished.
      const unfinished = previous?.state === 'aborted' && previous.controlPlaneMoved ? previous : null;
      if (unfinished && unfinished.to !== to) throw conflict('ERR_UPGRADE_UNFINISHED', `an aborted upgrade already moved cluster ${name}'s control plane to ${unfinished.to}: upgrade to ${unfinished.to} to finish it`, 'kubernetesVersion');
      const skew = skewProblem(cluster.kubernetesVersion, to);
      if (skew) throw invalid('ERR_VERSION_SKEW', skew, 'kubernetesVersion');
      if (cluster.containerRuntime === 'docker' && (parseVersion(to)?.minor ?? 0) >= 24) throw invalid('ERR_VERSION_SKEW', 'Kubernetes 1.24 and later have no dockershim: a cluster on Docker cannot be upgraded past 1.23', 'kubernetesVersion');
      if (cluster.state !== 'ready') throw conflict('ERR_CLUSTER_NOT_READY', `cluster ${name} is ${cluster.state}: an upgrade starts from a ready cluster (every machine joined, every node Ready)`, 'name');
      if (!deps.reimage) throw conflict('ERR_NO_POWER', 'an upgrade reimages its nodes, and this racksmith has no power service', 'name');
      const members = await inventory.machines.list({ cluster: name });
      const noBmc = members.filter((m) => (m.role === 'control-plane' || m.role === 'worker') && !m.bmc).map((m) => m.hostname ?? m.mac);
      if (noBmc.length) throw conflict('ERR_NO_BMC', `an upgrade reimages every node, and ${noBmc.join(', ')} ha${noBmc.length === 1 ? 's' : 've'} no BMC`, 'name');
      if (deps.checkPackages && !req.force) {
        const pre = await deps.checkPackages(cluster, to);
        if (!pre.ok) throw conflict('ERR_PREFLIGHT', `the packages of Kubernetes ${to} are not all available: ${pre.lines.filter((x) => /fail|missing|not/i.test(x)).join('; ') || pre.lines.join('; ')}`, 'kubernetesVersion');
      }
      const at = now().toISOString();
      const upgrade: ClusterUpgrade = {
        id: randomBytes(4).toString('hex'),
        from: cluster.kubernetesVersion,
        to,
        state: 'running',
        maxUnavailable: req.maxUnavailable ?? settings.upgradeMaxUnavailable ?? 1,
        requestedAt: at,
        updatedAt: at,
        reason: null,
        controlPlaneMoved: unfinished !== null,
      };
      await inventory.clusters.setUpgrade(name, upgrade, `upgrade ${upgrade.id} from ${upgrade.from} to ${to} requested (${upgrade.maxUnavailable} worker(s) at a time)`, { source });
      kick(name);
      return upgrade;
    },
    async controlUpgrade(name, action, source) {
      const cluster = await inventory.clusters.get(name);
      if (!cluster) throw notFound('ERR_UNKNOWN_CLUSTER', `no cluster named "${name}"`);
      const u = cluster.upgrade ?? null;
      const allowed: Record<typeof action, readonly string[]> = { pause: ['running'], resume: ['paused', 'running'], abort: ['running', 'paused'] };
      if (!u || !allowed[action].includes(u.state)) throw conflict('ERR_UPGRADE_STATE', u ? `the upgrade to ${u.to} is ${u.state}: it cannot ${action}` : `cluster ${name} has no upgrade to ${action}`, 'name');
      const state = action === 'pause' ? 'paused' : action === 'resume' ? 'running' : 'aborted';
      if (action === 'resume') {
        // What stopped it (a refused reimage, a failed check) is tried again.
        for (const s of await orchestration.steps(name)) {
          if (s.state === 'failed' && (UPGRADE_STEP_KINDS as readonly string[]).includes(s.kind) && String(s.id).endsWith(`:${u.id}`)) await orchestration.saveStep({ ...s, state: 'pending', attempts: 0, error: null });
        }
      }
      const next: ClusterUpgrade = { ...u, state, updatedAt: now().toISOString(), reason: action === 'resume' ? null : `${action} requested by ${source}` };
      const nodes = action === 'resume' ? '' : '; nodes already on their way finish their reinstall and rejoin';
      await inventory.clusters.setUpgrade(name, next, `upgrade to ${u.to} ${state}${nodes}`, { source });
      kick(name);
      return next;
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
