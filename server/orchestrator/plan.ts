import type { Mac } from '../lib/mac.js';
import type { Cluster, ClusterState, PlanMachine } from '../inventory/model.js';
import type { StepRecord } from '../inventory/store.js';
import { API_SERVER_PORT, apiEndpoint, loadBalancerProblem } from '../clusters/load-balancers.js';
import { vrrpFor } from './lb-pair.js';
import { activeUpgrade, installVersion, planUpgrade, type UpgradePlan } from './upgrade.js';

/**
 * The bootstrap plan, as a pure function of the cluster, its machines, the persisted step
 * records, the open removal requests and the clock: which steps to start now, what the
 * cluster's state is, what it waits for, and which removal requests are answered. The order is
 * the manual recipe's (seed recipe steps 4–6):
 *
 *   load balancer ready ─► lb-config (haproxy backends = every control node still in the cluster)
 *   first control ready ─► prepare (CA + kubeadm config) ─► init --upload-certs ─► kubeconfig ─► cni
 *   ─► control joins, one at a time (upload-certs again first when the last upload is too old)
 *   ─► worker joins, in parallel (bounded)
 *   ─► nodes-ready (every joined node Ready) ─► cluster ready
 *
 * Reimage (docs/orchestrator.md, "Reimage"): a machine whose reimage asks for its removal gets a
 * `remove:<mac>:<reimage>` step run from a healthy control node (and, for a control node, an
 * LB update without it); the finished removal is answered to the power service, and it ends the
 * machine's *generation*: every machine-scoped step id of the next life carries `#<generation>`
 * (`join:<mac>#2`), so records of a previous life never make the plan think it joined
 * (docs/decisions/0607-machine-generations.md).
 *
 * The plan is re-evaluated after every step and every inventory change; running it again with
 * the same facts gives the same answer, which is what makes a restart resume where it stopped.
 */
export const STEP_KINDS = [
  'lb-config',
  'prepare',
  'init',
  'kubeconfig',
  'cni',
  'upload-certs',
  'token-refresh',
  'join-control',
  'join-worker',
  'nodes-ready',
  'remove-node',
  // The rolling upgrade's (upgrade.ts; listed here, not spread from it: the two modules import each other).
  'upgrade-preflight',
  'upgrade-snapshot',
  'upgrade-config',
  'upgrade-node',
  'upgrade-check',
  'upgrade-addons',
] as const;
export type StepKind = (typeof STEP_KINDS)[number];

/** A failure of one of these stops the cluster's plan (issue 6: "a failed init or control join stops"). */
export const CRITICAL_KINDS: ReadonlySet<string> = new Set<StepKind>(['lb-config', 'prepare', 'init', 'kubeconfig', 'cni', 'upload-certs', 'token-refresh', 'join-control']);

const CHAIN: readonly StepKind[] = ['prepare', 'init', 'kubeconfig', 'cni'];

export interface Backend {
  readonly name: string;
  readonly address: string;
  readonly port: number;
}

export interface PlannedStep {
  readonly id: string;
  readonly kind: StepKind;
  /** The machine it runs on — for `remove-node`, the machine it removes (it runs on `data.via`). */
  readonly mac: Mac;
  readonly hostname: string;
  /** lb-config: `{backends}`; nodes-ready: `{nodes}`; remove-node: see `RemovalData`. */
  readonly data: Readonly<Record<string, unknown>>;
}

/** What a `remove-node` step carries. */
export interface RemovalData {
  readonly reimage: string;
  /** Id of the power service's `remove-from-cluster` event this step answers. */
  readonly askedAt: number;
  /** The Kubernetes node name (the machine's host name). */
  readonly node: string;
  readonly role: 'control-plane' | 'worker';
  /** The healthy control node kubectl and etcdctl run on; null when the cluster was never initialised. */
  readonly via: Mac | null;
  readonly viaNode: string | null;
  /** The generation this removal ends. */
  readonly generation: number;
  /** `reimage` (power asked) or `delete` (the machine's record goes once its node is out). */
  readonly purpose?: 'reimage' | 'delete';
  /** A delete of a node that no longer answers: removed from the cluster side anyway. */
  readonly force?: boolean;
}

/** The power service asks (a `reimage` event with step `remove-from-cluster`, server/inventory/reimage.ts). */
export interface RemovalRequest {
  readonly mac: Mac;
  readonly reimage: string;
  /** Id of the event that asked; a newer ask after a failed answer is a new request. */
  readonly askedAt: number;
  readonly purpose?: 'reimage' | 'delete';
  readonly force?: boolean;
}

/** The fact to record for a request: `cluster.node-removed` or `cluster.node-removal-failed`. */
export interface RemovalAnswer {
  readonly mac: Mac;
  readonly reimage: string;
  readonly outcome: 'removed' | 'failed';
  readonly message: string;
  readonly reason: string | null;
  /** The step that did the work, when one did. */
  readonly step: string | null;
  readonly purpose?: 'reimage' | 'delete';
}

export interface PlanLimits {
  readonly workerConcurrency: number;
  /** Uploaded certificates are deleted after 2 h; this is 2 h minus a safety margin. */
  readonly certUploadMaxAgeMs: number;
  /** Bootstrap tokens are made with a 24 h TTL; this is 24 h minus a safety margin. */
  readonly tokenMaxAgeMs: number;
}

export interface PlanInput {
  readonly cluster: Cluster;
  readonly machines: readonly PlanMachine[];
  readonly steps: readonly StepRecord[];
  /** Ids of the steps this process is running right now; any other `running` record was interrupted. */
  readonly active: ReadonlySet<string>;
  readonly now: Date;
  readonly limits: PlanLimits;
  /** Open removal requests of the cluster's machines (none when absent). */
  readonly removals?: readonly RemovalRequest[] | undefined;
}

export interface Plan {
  readonly state: ClusterState;
  readonly run: readonly PlannedStep[];
  readonly waiting: readonly string[];
  readonly endpoint: string | null;
  /** The machine `kubeadm init` ran (or runs) on. */
  readonly initNode: Mac | null;
  /** The healthy control node cluster-wide commands run on now (token, certificates, checks, removals). */
  readonly controlNode: Mac | null;
  /**
   * Machines whose step is recorded done while they still read `joining`: the process stopped
   * between the two writes (kill -9). They are `joined`; the service records it.
   */
  readonly settle: readonly Mac[];
  /** Removal requests whose answer is known and not yet recorded; the service records them. */
  readonly answer: readonly RemovalAnswer[];
  /** The rolling upgrade's part (nodes to reimage, progress), when one is under way. */
  readonly upgrade: UpgradePlan | null;
}

export { API_SERVER_PORT };

/** The endpoint joins and kubectl use: explicit, else the pair's VIP, else the load balancer's address on :6443. */
export const controlPlaneEndpoint = apiEndpoint;

/** A machine-scoped step id in a generation: the first life keeps the plain id. */
export const inGeneration = (id: string, generation: number): string => (generation > 1 ? `${id}#${generation}` : id);
/** The generation a step id belongs to (`join:<mac>#3` → 3; no suffix → 1). */
export function generationOfId(id: string): number {
  const m = /#(\d+)$/.exec(id);
  return m ? Number(m[1]) : 1;
}
export const joinStepId = (mac: Mac, generation = 1): string => inGeneration(`join:${mac}`, generation);
export const removeStepId = (mac: Mac, reimage: string): string => `remove:${mac}:${reimage}`;

const finished = (r: StepRecord | undefined): boolean => r !== undefined && (r.state === 'done' || r.state === 'skipped');

/**
 * A machine's generation in its cluster: 1, plus one for every finished removal of it. A
 * removal ends a life (the machine is wiped next); the next join is a new step.
 */
export function machineGeneration(mac: Mac, steps: readonly StepRecord[]): number {
  return 1 + steps.filter((s) => s.kind === 'remove-node' && s.mac === mac && finished(s)).length;
}

const USABLE = new Set(['ready', 'joining', 'joined']);
const byName = (a: PlanMachine, b: PlanMachine): number => (a.hostname ?? a.mac).localeCompare(b.hostname ?? b.mac) || a.mac.localeCompare(b.mac);
const nameOf = (m: PlanMachine): string => m.hostname ?? m.mac;

function sameList(a: unknown, b: readonly unknown[]): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** The time a fact was established, from the newest finished step that records it. */
function newestTime(steps: readonly StepRecord[], kinds: readonly string[], field: string): number | null {
  let best: number | null = null;
  for (const s of steps) {
    if (!kinds.includes(s.kind) || !finished(s)) continue;
    const v = s.data[field];
    if (typeof v !== 'string') continue;
    const t = Date.parse(v);
    if (!Number.isNaN(t) && (best === null || t > best)) best = t;
  }
  return best;
}

/** The facts about generations and membership that every part of the plan reads. */
interface Lives {
  /** The machine's current generation. */
  gen(m: PlanMachine): number;
  /** The record of this machine's join in its current generation. */
  join(m: PlanMachine): StepRecord | undefined;
  /** The init node's machine, pinned by the first chain step that ran. */
  readonly pinned: Mac | null;
  /** Whether `kubeadm init` finished (in any attempt): the cluster exists. */
  readonly initFinished: boolean;
  /** The chain's generation: the init node's generation when its init ran (or runs now). */
  readonly chainGen: number;
  /** The machine is the init node in the life in which it ran init. */
  isInitLife(m: PlanMachine): boolean;
  /** Its node is in the cluster now, by the records (init or a join of its current life). */
  isMember(m: PlanMachine): boolean;
  /** A removal was asked for and not answered. */
  beingRemoved(m: PlanMachine): boolean;
}

function lives(machines: readonly PlanMachine[], steps: readonly StepRecord[], removals: readonly RemovalRequest[]): Lives {
  const record = new Map(steps.map((s) => [s.id, s]));
  const gens = new Map<Mac, number>();
  const gen = (m: PlanMachine): number => {
    let g = gens.get(m.mac);
    if (g === undefined) gens.set(m.mac, (g = machineGeneration(m.mac, steps)));
    return g;
  };
  const chainRecords = steps.filter((s) => (CHAIN as readonly string[]).includes(s.kind));
  const pinned = chainRecords[0]?.mac ?? null;
  const initDone = steps.find((s) => s.kind === 'init' && finished(s));
  const pinnedMachine = pinned ? machines.find((m) => m.mac === pinned) : undefined;
  // Until init finished, a removal of the init node voids the chain: it starts again in the
  // machine's next life (the CA and kubeadm config went with the old disk).
  const chainGen = initDone ? generationOfId(initDone.id) : pinnedMachine ? gen(pinnedMachine) : 1;
  const asked = new Set(removals.map((r) => r.mac));
  const isInitLife = (m: PlanMachine): boolean => m.mac === pinned && gen(m) === chainGen;
  const join = (m: PlanMachine): StepRecord | undefined => record.get(joinStepId(m.mac, gen(m)));
  return {
    gen,
    join,
    pinned,
    initFinished: initDone !== undefined,
    chainGen,
    isInitLife,
    isMember: (m) => !asked.has(m.mac) && ((isInitLife(m) && initDone !== undefined) || finished(join(m))),
    beingRemoved: (m) => asked.has(m.mac),
  };
}

export function planCluster(input: PlanInput): Plan {
  const { cluster, steps, active, now, limits } = input;
  const removals = (input.removals ?? []).filter((r) => input.machines.some((m) => m.mac === r.mac && m.cluster === cluster.name));
  const record = new Map(steps.map((s) => [s.id, s]));
  const all = input.machines.filter((m) => m.cluster === cluster.name);
  const life = lives(all, steps, removals);
  const settle = settled(all, steps, life);
  const members = all.map((m) => (settle.includes(m.mac) ? { ...m, state: 'joined' as const } : m));
  const latest = (kind: StepKind): StepRecord | undefined => steps.filter((s) => s.kind === kind).at(-1);
  const generation = (kind: StepKind): number => steps.filter((s) => s.kind === kind).length;
  const isActive = (id: string): boolean => active.has(id);
  const activeOn = (mac: Mac): boolean => [...active].some((id) => !id.startsWith('remove:') && (id.includes(mac) || record.get(id)?.mac === mac));
  const run: PlannedStep[] = [];
  const waiting: string[] = [];
  const answer: RemovalAnswer[] = [];
  const plan = (kind: StepKind, id: string, m: PlanMachine, data: Record<string, unknown> = {}): void => {
    if (!isActive(id)) run.push({ id, kind, mac: m.mac, hostname: nameOf(m), data });
  };
  /** A generational step (`kind:n`): the unfinished newest one again, or the next number. */
  const generationalId = (kind: StepKind): string => {
    const last = latest(kind);
    return last && !finished(last) ? last.id : `${kind}:${generation(kind) + 1}`;
  };

  // One load balancer, or a pair sharing the VIP (keepalived): each gets the same backends.
  const lbs = members.filter((m) => m.role === 'loadbalancer').sort(byName);
  const controls = members.filter((m) => m.role === 'control-plane').sort(byName);
  const workers = members.filter((m) => m.role === 'worker').sort(byName);
  const endpoint = controlPlaneEndpoint(cluster, members);
  const { initFinished } = life;
  const chainId = (kind: StepKind): string => inGeneration(kind, life.chainGen);
  const byMac = new Map(members.map((m) => [m.mac, m]));
  // A record stops counting once its machine moved on: an older life's join or chain step, or a
  // step of a machine whose removal is under way (the reimage is the repair).
  const stale = (s: StepRecord): boolean => {
    const m = s.mac ? byMac.get(s.mac) : undefined;
    if ((CHAIN as readonly string[]).includes(s.kind)) return s.id !== chainId(s.kind as StepKind);
    if (s.kind === 'join-control' || s.kind === 'join-worker') return !m || s.id !== joinStepId(m.mac, life.gen(m)) || life.beingRemoved(m);
    return false;
  };
  // Once the control plane is up, a failed load-balancer update degrades the cluster instead of
  // stopping it: the API still answers through the backends the LB already has.
  const criticalFailure = steps.find((s) => s.state === 'failed' && CRITICAL_KINDS.has(s.kind) && !(s.kind === 'lb-config' && initFinished) && !stale(s));

  const first = life.pinned ? (controls.find((c) => c.mac === life.pinned) ?? null) : (controls.find((c) => c.state === 'ready' && c.ip) ?? null);
  // Cluster-wide commands (token, certificates, node checks, removals) run on a healthy control
  // node: the init node while it is one, else the first healthy one by name.
  const healthy = controls.filter((c) => c.state === 'joined' && c.ip && life.isMember(c));
  const control = initFinished ? (healthy.find((c) => c.mac === life.pinned) ?? healthy[0] ?? null) : null;

  const derive = (): ClusterState => clusterState(input, life, { lbs, controls, workers, criticalFailure, run });
  let upgradePlan: UpgradePlan | null = null;
  const result = (): Plan => ({ state: derive(), run, waiting, endpoint, initNode: first?.mac ?? null, controlNode: control?.mac ?? null, settle, answer, upgrade: upgradePlan });

  // ── removals asked for by reimages ──────────────────────────────────────
  const lbRecords = (l: PlanMachine): StepRecord[] => steps.filter((s) => s.kind === 'lb-config' && s.mac === l.mac);
  const lastDoneOf = (l: PlanMachine): StepRecord | undefined => lbRecords(l).filter(finished).at(-1);
  const latestOf = (l: PlanMachine): StepRecord | undefined => lbRecords(l).at(-1);
  for (const r of removals) {
    const m = byMac.get(r.mac) as PlanMachine;
    const id = removeStepId(m.mac, r.reimage);
    const rec = record.get(id);
    const base = { mac: m.mac, reimage: r.reimage, ...(r.purpose === 'delete' ? { purpose: 'delete' as const } : {}) };
    if (isActive(id)) continue;
    if (m.role !== 'worker' && m.role !== 'control-plane') {
      answer.push({ ...base, outcome: 'removed', message: `${nameOf(m)} is no Kubernetes node: nothing to remove`, reason: null, step: null });
      continue;
    }
    if (finished(rec)) {
      // A control node is out only once no load balancer sends it API traffic any more.
      const routing = m.role === 'control-plane' && initFinished ? lbs.filter((l) => ((lastDoneOf(l)?.data['backends'] as Backend[] | undefined) ?? []).some((b) => b.address === m.ip)) : [];
      const active = routing.map((l) => latestOf(l)).find((r) => r !== undefined && isActive(r.id));
      const failedLb = routing.map((l) => latestOf(l)).find((r) => r?.state === 'failed');
      const away = routing.filter((l) => !USABLE.has(l.state));
      if (routing.length === 0) answer.push({ ...base, outcome: 'removed', message: `node ${nameOf(m)} removed from cluster ${cluster.name}${rec?.data['viaNode'] ? ` (from ${String(rec.data['viaNode'])})` : ''}`, reason: null, step: id });
      else if (active) waiting.push(`${nameOf(m)} leaves the load balancer (${active.id})`);
      else if (failedLb) answer.push({ ...base, outcome: 'failed', message: `node ${nameOf(m)} removed, but the load balancer still routes to it`, reason: `the load balancer update ${failedLb.id} failed: ${failedLb.error ?? 'no reason given'}`, step: id });
      else if (away.length === routing.length) answer.push({ ...base, outcome: 'removed', message: `node ${nameOf(m)} removed; load balancer ${away.map(nameOf).join(', ')} is ${away.map((l) => l.state).join(', ')} and gets the current backends when it is back`, reason: null, step: id });
      continue;
    }
    if (rec?.state === 'failed' && rec.data['askedAt'] === r.askedAt) {
      answer.push({ ...base, outcome: 'failed', message: `removing node ${nameOf(m)} failed`, reason: rec.error ?? 'no reason given', step: id });
      continue;
    }
    if (activeOn(m.mac)) {
      waiting.push(`the removal of ${nameOf(m)} waits for its running step`);
      continue;
    }
    // Never the node being removed: `control` is a member, and a machine being removed is none.
    const via = initFinished ? control : null;
    if (initFinished && !via) {
      const reason =
        m.role === 'control-plane'
          ? `${nameOf(m)} is the last healthy control-plane node of cluster ${cluster.name}: removing it would destroy the cluster`
          : `no healthy control-plane node in cluster ${cluster.name} to remove ${nameOf(m)} from`;
      answer.push({ ...base, outcome: 'failed', message: `cannot remove node ${nameOf(m)}`, reason, step: null });
      continue;
    }
    const data: RemovalData = { reimage: r.reimage, askedAt: r.askedAt, node: nameOf(m), role: m.role, via: via?.mac ?? null, viaNode: via ? nameOf(via) : null, generation: life.gen(m), ...(r.purpose === 'delete' ? { purpose: 'delete' as const, force: r.force ?? false } : {}) };
    plan('remove-node', id, m, { ...data });
  }

  if (criticalFailure) {
    waiting.push(`stopped: ${criticalFailure.id} failed${criticalFailure.error ? ` (${criticalFailure.error})` : ''}; fix the cause and retry`);
    return result();
  }
  if (!endpoint) waiting.push('no control-plane endpoint: add a load balancer machine with an IP, or set controlPlaneEndpoint');

  // ── load balancers ──────────────────────────────────────────────────────
  let lbConfigured = lbs.length === 0;
  const shape = loadBalancerProblem(cluster, members);
  if (shape) waiting.push(shape);
  else if (lbs.length > 0) {
    // Every control node with an address, except one leaving the cluster or not back in it
    // yet after a reimage: haproxy's health checks would find it down, but an operator reading
    // the LB should see the cluster as it is.
    const out = (c: PlanMachine): boolean => life.beingRemoved(c) || (life.gen(c) > 1 && !finished(life.join(c)) && !life.isInitLife(c));
    const backends: Backend[] = controls.filter((c) => c.ip && !out(c)).map((c) => ({ name: nameOf(c), address: c.ip as string, port: API_SERVER_PORT }));
    // Ids are numbered across the cluster's load balancers (`lb-config:N`); two planned in one look get two numbers.
    let nextNumber = generation('lb-config') + 1;
    for (const l of lbs) {
      const vrrp = vrrpFor(cluster, members, l);
      const data: Record<string, unknown> = vrrp ? { backends, vrrp } : { backends };
      const lastDone = lastDoneOf(l);
      // Only a `joined` load balancer has our configuration: one back to `ready` was reinstalled,
      // one left `joining` had its configuration cut short.
      const current = lastDone !== undefined && sameList(lastDone.data['backends'], backends) && sameList(lastDone.data['vrrp'] ?? null, vrrp as never) && l.state === 'joined';
      const hasFirst = first?.ip ? (lastDone?.data['backends'] as Backend[] | undefined)?.some((b) => b.address === first.ip) === true : false;
      // The API is reachable through the endpoint once one load balancer routes to the first node (a pair: keepalived gives it the VIP).
      if (lastDone !== undefined && hasFirst) lbConfigured = true;
      const lastTry = latestOf(l);
      if (lastTry?.state === 'failed') {
        waiting.push(`load balancer update ${lastTry.id} failed; fix the cause and retry`);
      } else if (!current) {
        if (!USABLE.has(l.state)) waiting.push(`load balancer ${nameOf(l)} is ${l.state}`);
        else if (!l.ip) waiting.push(`load balancer ${nameOf(l)} has no IP address`);
        else if (backends.length === 0) waiting.push('no control-plane node has an IP address for the load balancer');
        else if (lastTry && !finished(lastTry)) plan('lb-config', lastTry.id, l, data);
        else plan('lb-config', `lb-config:${nextNumber++}`, l, data);
      }
    }
  }

  // ── first control node: prepare → init → kubeconfig → cni ──────────────
  const next = CHAIN.find((k) => !finished(record.get(chainId(k))));
  // Once the chain is done the init node is one control node among others: it may be reimaged or gone.
  const chainDone = next === undefined;
  if (chainDone) {
    /* the cluster exists */
  } else if (!first) {
    waiting.push(life.pinned ? 'the init node is no longer in the inventory' : controls.length === 0 ? 'the cluster has no control-plane machine' : 'waiting for a control-plane node to be ready');
  } else {
    if (isActive(chainId(next))) {
      /* running */
    } else if (!USABLE.has(first.state) || !first.ip || life.beingRemoved(first)) {
      waiting.push(`control-plane node ${nameOf(first)} is ${first.ip ? first.state : 'without an IP address'}`);
    } else if (next === 'prepare') {
      if (!endpoint) {
        /* already noted */
      } else if (lbs.length > 0 && !lbs.some((l) => USABLE.has(l.state))) waiting.push(`waiting for load balancer ${lbs.map(nameOf).join(' or ')} before preparing ${nameOf(first)}`);
      else plan('prepare', chainId('prepare'), first);
    } else if (next === 'init') {
      if (lbConfigured) plan('init', chainId('init'), first);
      else waiting.push(`init waits for the load balancer to route to ${nameOf(first)}`);
    } else plan(next, chainId(next), first);
  }
  if (chainDone && !control) waiting.push('no healthy control-plane node (joined, reachable) to run cluster commands on');

  // ── joins ──────────────────────────────────────────────────────────────
  type JoinStatus = 'done' | 'failed' | 'active' | 'eligible' | 'waiting';
  const joinStatus = (m: PlanMachine): JoinStatus => {
    const id = joinStepId(m.mac, life.gen(m));
    const r = record.get(id);
    if (isActive(id)) return 'active';
    if (r?.state === 'failed' || m.state === 'failed') return 'failed';
    if (m.state === 'joined') return 'done';
    if ((m.state === 'ready' || m.state === 'joining') && m.ip) return 'eligible';
    return 'waiting';
  };
  const others = controls.filter((c) => !life.isInitLife(c));
  // Once an upgrade moved the control plane on, a node of the old version never joins.
  const joinData = (): Record<string, unknown> => (cluster.upgrade?.controlPlaneMoved ? { requiredVersion: installVersion(cluster) } : {});
  const certsAt = newestTime(steps, ['init', 'upload-certs'], 'certsUploadedAt');
  const tokenAt = newestTime(steps, ['init', 'token-refresh'], 'tokenCreatedAt');
  const certsFresh = certsAt !== null && now.getTime() - certsAt < limits.certUploadMaxAgeMs;
  const tokenFresh = tokenAt !== null && now.getTime() - tokenAt < limits.tokenMaxAgeMs;
  const refreshing = isActive(latest('upload-certs')?.id ?? '') || isActive(latest('token-refresh')?.id ?? '');

  let controlsSettled = true;
  if (chainDone && control) {
    const statuses = others.map((c) => ({ c, s: joinStatus(c) }));
    const activeControl = statuses.some((x) => x.s === 'active');
    // An interrupted join (machine left in `joining`) goes first, then name order.
    const candidate = statuses.filter((x) => x.s === 'eligible').sort((a, b) => Number(b.c.state === 'joining') - Number(a.c.state === 'joining'))[0]?.c;
    controlsSettled = !activeControl && candidate === undefined && !refreshing;
    if (!activeControl && candidate && !refreshing) {
      if (!tokenFresh) plan('token-refresh', generationalId('token-refresh'), control);
      else if (!certsFresh) plan('upload-certs', generationalId('upload-certs'), control);
      else plan('join-control', joinStepId(candidate.mac, life.gen(candidate)), candidate, joinData());
    }
    for (const x of statuses) if (x.s === 'waiting') waiting.push(`control-plane node ${nameOf(x.c)} is ${x.c.ip ? x.c.state : 'without an IP address'}`);

    const workerStatuses = workers.map((w) => ({ w, s: joinStatus(w) }));
    for (const x of workerStatuses) if (x.s === 'waiting') waiting.push(`worker ${nameOf(x.w)} is ${x.w.ip ? x.w.state : 'without an IP address'}`);
    const eligibleWorkers = workerStatuses.filter((x) => x.s === 'eligible').map((x) => x.w);
    if (controlsSettled && eligibleWorkers.length > 0) {
      if (!tokenFresh) plan('token-refresh', generationalId('token-refresh'), control);
      else {
        const slots = Math.max(0, limits.workerConcurrency - workerStatuses.filter((x) => x.s === 'active').length);
        for (const w of eligibleWorkers.sort((a, b) => Number(b.state === 'joining') - Number(a.state === 'joining')).slice(0, slots)) {
          plan('join-worker', joinStepId(w.mac, life.gen(w)), w, joinData());
        }
      }
    } else if (!controlsSettled && eligibleWorkers.length > 0) {
      waiting.push('workers join once the control-plane joins in progress are done');
    }
  }

  // ── the rolling upgrade ─────────────────────────────────────────────────
  const upgrade = activeUpgrade(cluster);
  if (chainDone && upgrade) {
    upgradePlan = planUpgrade({
      cluster,
      upgrade,
      controls,
      workers,
      control,
      record: (id) => record.get(id),
      isActive,
      generation: (m) => life.gen(m),
      currentJoin: (m) => life.join(m),
      isInitLife: (m) => life.isInitLife(m),
    });
    for (const u of upgradePlan.run) {
      const on = byMac.get(u.mac);
      if (on) plan(u.kind, u.id, on, u.data);
    }
    waiting.push(...upgradePlan.waiting);
  }

  // ── every joined node Ready ─────────────────────────────────────────────
  if (chainDone && control && run.length === 0 && active.size === 0) {
    const nodes = [...controls, ...workers].filter((m) => m.state === 'joined' && life.isMember(m)).map(nameOf).sort();
    const last = latest('nodes-ready');
    const checked = last !== undefined && sameList(last.data['nodes'], nodes);
    if (!(checked && (finished(last) || last?.state === 'failed'))) {
      const id = last && !finished(last) && last.state !== 'failed' ? last.id : `nodes-ready:${generation('nodes-ready') + 1}`;
      plan('nodes-ready', id, control, { nodes });
    }
  }

  return result();
}

/** The machines a finished step of their current life proves joined although their state was not moved yet. */
function settled(members: readonly PlanMachine[], steps: readonly StepRecord[], life: Lives): Mac[] {
  const out: Mac[] = [];
  for (const m of members) {
    const lastLb = steps.filter((s) => s.kind === 'lb-config' && s.mac === m.mac).at(-1);
    if (m.state !== 'joining') continue;
    const proof =
      finished(life.join(m)) ||
      (m.role === 'control-plane' && life.isInitLife(m) && steps.some((s) => s.kind === 'init' && s.mac === m.mac && finished(s) && generationOfId(s.id) === life.gen(m))) ||
      // The load balancer has no generations (it is never removed): only its newest configuration counts.
      (m.role === 'loadbalancer' && finished(lastLb));
    if (proof) out.push(m.mac);
  }
  return out;
}

interface StateFacts {
  readonly lbs: readonly PlanMachine[];
  readonly controls: readonly PlanMachine[];
  readonly workers: readonly PlanMachine[];
  readonly criticalFailure: StepRecord | undefined;
  readonly run: readonly PlannedStep[];
}

/**
 * What a person watching the rack reads: `pending` before anything ran, `bootstrapping` while
 * work is under way or machines are still on their way (a reimaged node coming back included),
 * `ready` when every machine joined and every node is Ready, `degraded` when the control plane
 * is up but some machine failed, and `failed` when a step that the whole cluster depends on
 * failed.
 */
function clusterState(input: PlanInput, life: Lives, f: StateFacts): ClusterState {
  const { steps, active } = input;
  if (f.criticalFailure) return 'failed';
  if (steps.length === 0 && active.size === 0 && f.run.length === 0) return 'pending';
  const settled = f.run.length === 0 && active.size === 0;
  const nodes = [...f.controls, ...f.workers];
  const all = [...f.lbs, ...nodes];
  const onTheWay = all.some((m) => m.state !== 'joined' && m.state !== 'failed');
  if (!settled || !life.initFinished || onTheWay) return 'bootstrapping';
  const lastCheck = steps.filter((s) => s.kind === 'nodes-ready').at(-1);
  const failedStep = steps.some((s) => s.state === 'failed' && s.kind !== 'remove-node' && !isOlderLife(s, input.machines, steps));
  const anyFailed = all.some((m) => m.state === 'failed') || lastCheck?.state === 'failed' || failedStep;
  if (anyFailed) return 'degraded';
  const expected = nodes.map(nameOf).sort();
  return finished(lastCheck) && sameList(lastCheck?.data['nodes'], expected) ? 'ready' : 'bootstrapping';
}

/** A join record of a life the machine has left (its failure is history, not the cluster's state). */
function isOlderLife(s: StepRecord, machines: readonly PlanMachine[], steps: readonly StepRecord[]): boolean {
  if (s.kind !== 'join-control' && s.kind !== 'join-worker' && !(CHAIN as readonly string[]).includes(s.kind)) return false;
  const m = machines.find((x) => x.mac === s.mac);
  return m !== undefined && generationOfId(s.id) < machineGeneration(m.mac, steps);
}
