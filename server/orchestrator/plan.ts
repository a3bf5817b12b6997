import type { Mac } from '../lib/mac.js';
import type { Cluster, ClusterState, Machine } from '../inventory/model.js';
import type { StepRecord } from '../inventory/store.js';

/**
 * The bootstrap plan, as a pure function of the cluster, its machines, the persisted step
 * records and the clock: which steps to start now, what the cluster's state is, and what it
 * waits for. The order is the manual recipe's (seed recipe steps 4–6):
 *
 *   load balancer ready ─► lb-config (haproxy backends = every control node)
 *   first control ready ─► prepare (CA + kubeadm config) ─► init --upload-certs ─► kubeconfig ─► cni
 *   ─► control joins, one at a time (upload-certs again first when the last upload is too old)
 *   ─► worker joins, in parallel (bounded)
 *   ─► nodes-ready (every joined node Ready) ─► cluster ready
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
] as const;
export type StepKind = (typeof STEP_KINDS)[number];

/** A failure of one of these stops the cluster's plan (issue 6: "a failed init or control join stops"). */
export const CRITICAL_KINDS: ReadonlySet<string> = new Set<StepKind>(['lb-config', 'prepare', 'init', 'kubeconfig', 'cni', 'upload-certs', 'token-refresh', 'join-control']);

export interface Backend {
  readonly name: string;
  readonly address: string;
  readonly port: number;
}

export interface PlannedStep {
  readonly id: string;
  readonly kind: StepKind;
  /** The machine it runs on. */
  readonly mac: Mac;
  readonly hostname: string;
  /** lb-config: `{backends}`; nodes-ready: `{nodes}`. */
  readonly data: Readonly<Record<string, unknown>>;
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
  readonly machines: readonly Machine[];
  readonly steps: readonly StepRecord[];
  /** Ids of the steps this process is running right now; any other `running` record was interrupted. */
  readonly active: ReadonlySet<string>;
  readonly now: Date;
  readonly limits: PlanLimits;
}

export interface Plan {
  readonly state: ClusterState;
  readonly run: readonly PlannedStep[];
  readonly waiting: readonly string[];
  readonly endpoint: string | null;
  readonly initNode: Mac | null;
  /**
   * Machines whose step is recorded done while they still read `joining`: the process stopped
   * between the two writes (kill -9). They are `joined`; the service records it.
   */
  readonly settle: readonly Mac[];
}

export const API_SERVER_PORT = 6443;

/** The endpoint joins and kubectl use: explicit, else the load balancer's address on :6443. */
export function controlPlaneEndpoint(cluster: Cluster, machines: readonly Machine[]): string | null {
  if (cluster.controlPlaneEndpoint) return cluster.controlPlaneEndpoint;
  const lb = machines.find((m) => m.cluster === cluster.name && m.role === 'loadbalancer' && m.ip);
  return lb?.ip ? `${lb.ip}:${API_SERVER_PORT}` : null;
}

export const joinStepId = (mac: Mac): string => `join:${mac}`;

const USABLE = new Set(['ready', 'joining', 'joined']);
const finished = (r: StepRecord | undefined): boolean => r !== undefined && (r.state === 'done' || r.state === 'skipped');
const byName = (a: Machine, b: Machine): number => (a.hostname ?? a.mac).localeCompare(b.hostname ?? b.mac) || a.mac.localeCompare(b.mac);
const nameOf = (m: Machine): string => m.hostname ?? m.mac;

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

export function planCluster(input: PlanInput): Plan {
  const { cluster, steps, active, now, limits } = input;
  const record = new Map(steps.map((s) => [s.id, s]));
  const settle = settled(input.machines.filter((m) => m.cluster === cluster.name), steps, record);
  const members = input.machines.filter((m) => m.cluster === cluster.name).map((m) => (settle.includes(m.mac) ? { ...m, state: 'joined' as const } : m));
  const latest = (kind: StepKind): StepRecord | undefined => steps.filter((s) => s.kind === kind).at(-1);
  const generation = (kind: StepKind): number => steps.filter((s) => s.kind === kind).length;
  const isActive = (id: string): boolean => active.has(id);
  const run: PlannedStep[] = [];
  const waiting: string[] = [];
  const plan = (kind: StepKind, id: string, m: Machine, data: Record<string, unknown> = {}): void => {
    if (!isActive(id)) run.push({ id, kind, mac: m.mac, hostname: nameOf(m), data });
  };
  /** A generational step (`kind:n`): the unfinished newest one again, or the next number. */
  const generationalId = (kind: StepKind): string => {
    const last = latest(kind);
    return last && !finished(last) ? last.id : `${kind}:${generation(kind) + 1}`;
  };

  const lb = members.filter((m) => m.role === 'loadbalancer').sort(byName)[0] ?? null;
  const controls = members.filter((m) => m.role === 'control-plane').sort(byName);
  const workers = members.filter((m) => m.role === 'worker').sort(byName);
  const endpoint = controlPlaneEndpoint(cluster, members);
  const initFinished = finished(record.get('init'));
  // Once the control plane is up, a failed load-balancer update degrades the cluster instead of
  // stopping it: the API still answers through the backends the LB already has.
  const criticalFailure = steps.find((s) => s.state === 'failed' && CRITICAL_KINDS.has(s.kind) && !(s.kind === 'lb-config' && initFinished));

  // The init node is pinned by the first step that ran on it, so a restart never picks another.
  const pinned = record.get('prepare')?.mac ?? record.get('init')?.mac ?? null;
  const first = pinned ? (controls.find((c) => c.mac === pinned) ?? null) : (controls.find((c) => c.state === 'ready' && c.ip) ?? null);

  const derive = (): ClusterState => clusterState(input, { lb, controls, workers, first, criticalFailure, run });
  if (criticalFailure) {
    waiting.push(`stopped: ${criticalFailure.id} failed${criticalFailure.error ? ` (${criticalFailure.error})` : ''}; fix the cause and retry`);
    return { state: derive(), run: [], waiting, endpoint, initNode: first?.mac ?? null, settle };
  }
  if (!endpoint) waiting.push('no control-plane endpoint: add a load balancer machine with an IP, or set controlPlaneEndpoint');

  // ── load balancer ───────────────────────────────────────────────────────
  let lbConfigured = lb === null;
  if (lb) {
    const backends: Backend[] = controls.filter((c) => c.ip).map((c) => ({ name: nameOf(c), address: c.ip as string, port: API_SERVER_PORT }));
    const lastDone = steps.filter((s) => s.kind === 'lb-config' && finished(s)).at(-1);
    const current = lastDone !== undefined && sameList(lastDone.data['backends'], backends);
    const hasFirst = first?.ip ? (lastDone?.data['backends'] as Backend[] | undefined)?.some((b) => b.address === first.ip) === true : false;
    lbConfigured = lastDone !== undefined && hasFirst;
    const lastTry = latest('lb-config');
    if (lastTry?.state === 'failed') {
      waiting.push(`load balancer update ${lastTry.id} failed; fix the cause and retry`);
    } else if (!current) {
      if (!USABLE.has(lb.state)) waiting.push(`load balancer ${nameOf(lb)} is ${lb.state}`);
      else if (!lb.ip) waiting.push(`load balancer ${nameOf(lb)} has no IP address`);
      else if (backends.length === 0) waiting.push('no control-plane node has an IP address for the load balancer');
      else {
        const id = generationalId('lb-config');
        plan('lb-config', id, lb, { backends });
      }
    }
  }

  // ── first control node: prepare → init → kubeconfig → cni ──────────────
  const chain: StepKind[] = ['prepare', 'init', 'kubeconfig', 'cni'];
  let chainDone = false;
  if (!first) {
    waiting.push(pinned ? 'the init node is no longer in the inventory' : controls.length === 0 ? 'the cluster has no control-plane machine' : 'waiting for a control-plane node to be ready');
  } else if (!USABLE.has(first.state) || !first.ip) {
    waiting.push(`control-plane node ${nameOf(first)} is ${first.ip ? first.state : 'without an IP address'}`);
  } else {
    const next = chain.find((k) => !finished(record.get(k)));
    if (next === undefined) chainDone = true;
    else if (isActive(next)) {
      /* running */
    } else if (next === 'prepare') {
      if (!endpoint) {
        /* already noted */
      } else if (lb && !USABLE.has(lb.state)) waiting.push(`waiting for load balancer ${nameOf(lb)} before preparing ${nameOf(first)}`);
      else plan('prepare', 'prepare', first);
    } else if (next === 'init') {
      if (lbConfigured) plan('init', 'init', first);
      else waiting.push(`init waits for the load balancer to route to ${nameOf(first)}`);
    } else plan(next, next, first);
  }
  const initDone = initFinished;

  // ── joins ──────────────────────────────────────────────────────────────
  type JoinStatus = 'done' | 'failed' | 'active' | 'eligible' | 'waiting';
  const joinStatus = (m: Machine): JoinStatus => {
    const id = joinStepId(m.mac);
    const r = record.get(id);
    if (isActive(id)) return 'active';
    if (r?.state === 'failed' || m.state === 'failed') return 'failed';
    if (m.state === 'joined') return 'done';
    if ((m.state === 'ready' || m.state === 'joining') && m.ip) return 'eligible';
    return 'waiting';
  };
  const others = controls.filter((c) => c.mac !== first?.mac);
  const certsAt = newestTime(steps, ['init', 'upload-certs'], 'certsUploadedAt');
  const tokenAt = newestTime(steps, ['init', 'token-refresh'], 'tokenCreatedAt');
  const certsFresh = certsAt !== null && now.getTime() - certsAt < limits.certUploadMaxAgeMs;
  const tokenFresh = tokenAt !== null && now.getTime() - tokenAt < limits.tokenMaxAgeMs;
  const refreshing = isActive(latest('upload-certs')?.id ?? '') || isActive(latest('token-refresh')?.id ?? '');

  let controlsSettled = true;
  if (chainDone && first) {
    const statuses = others.map((c) => ({ c, s: joinStatus(c) }));
    const activeControl = statuses.some((x) => x.s === 'active');
    // An interrupted join (machine left in `joining`) goes first, then name order.
    const candidate = statuses.filter((x) => x.s === 'eligible').sort((a, b) => Number(b.c.state === 'joining') - Number(a.c.state === 'joining'))[0]?.c;
    controlsSettled = !activeControl && candidate === undefined && !refreshing;
    if (!activeControl && candidate && !refreshing) {
      if (!tokenFresh) plan('token-refresh', generationalId('token-refresh'), first);
      else if (!certsFresh) plan('upload-certs', generationalId('upload-certs'), first);
      else plan('join-control', joinStepId(candidate.mac), candidate);
    }
    for (const x of statuses) if (x.s === 'waiting') waiting.push(`control-plane node ${nameOf(x.c)} is ${x.c.ip ? x.c.state : 'without an IP address'}`);

    const workerStatuses = workers.map((w) => ({ w, s: joinStatus(w) }));
    for (const x of workerStatuses) if (x.s === 'waiting') waiting.push(`worker ${nameOf(x.w)} is ${x.w.ip ? x.w.state : 'without an IP address'}`);
    const eligibleWorkers = workerStatuses.filter((x) => x.s === 'eligible').map((x) => x.w);
    if (controlsSettled && eligibleWorkers.length > 0) {
      if (!tokenFresh) plan('token-refresh', generationalId('token-refresh'), first);
      else {
        const slots = Math.max(0, limits.workerConcurrency - workerStatuses.filter((x) => x.s === 'active').length);
        for (const w of eligibleWorkers.sort((a, b) => Number(b.state === 'joining') - Number(a.state === 'joining')).slice(0, slots)) {
          plan('join-worker', joinStepId(w.mac), w);
        }
      }
    } else if (!controlsSettled && eligibleWorkers.length > 0) {
      waiting.push('workers join once the control-plane joins in progress are done');
    }
  }

  // ── every joined node Ready ─────────────────────────────────────────────
  if (chainDone && first && initDone && run.length === 0 && active.size === 0) {
    const nodes = [first, ...others, ...workers].filter((m) => m.mac === first.mac || (m.state === 'joined' && finished(record.get(joinStepId(m.mac))))).map(nameOf).sort();
    const last = latest('nodes-ready');
    const checked = last !== undefined && sameList(last.data['nodes'], nodes);
    if (!(checked && (finished(last) || last?.state === 'failed'))) {
      const id = last && !finished(last) && last.state !== 'failed' ? last.id : `nodes-ready:${generation('nodes-ready') + 1}`;
      plan('nodes-ready', id, first, { nodes });
    }
  }

  return { state: derive(), run, waiting, endpoint, initNode: first?.mac ?? null, settle };
}

/** The machines a finished step proves joined although their state was not moved yet. */
function settled(members: readonly Machine[], steps: readonly StepRecord[], record: ReadonlyMap<string, StepRecord>): Mac[] {
  const out: Mac[] = [];
  for (const m of members) {
    if (m.state !== 'joining') continue;
    const proof =
      finished(record.get(joinStepId(m.mac))) ||
      (m.role === 'control-plane' && record.get('init')?.mac === m.mac && finished(record.get('init'))) ||
      (m.role === 'loadbalancer' && steps.some((s) => s.kind === 'lb-config' && s.mac === m.mac && finished(s)));
    if (proof) out.push(m.mac);
  }
  return out;
}

interface StateFacts {
  readonly lb: Machine | null;
  readonly controls: readonly Machine[];
  readonly workers: readonly Machine[];
  readonly first: Machine | null;
  readonly criticalFailure: StepRecord | undefined;
  readonly run: readonly PlannedStep[];
}

/**
 * What a person watching the rack reads: `pending` before anything ran, `bootstrapping` while
 * work is under way or machines are still on their way, `ready` when every machine joined and
 * every node is Ready, `degraded` when the control plane is up but some machine failed, and
 * `failed` when a step that the whole cluster depends on failed.
 */
function clusterState(input: PlanInput, f: StateFacts): ClusterState {
  const { steps, active } = input;
  if (f.criticalFailure) return 'failed';
  if (steps.length === 0 && active.size === 0 && f.run.length === 0) return 'pending';
  const settled = f.run.length === 0 && active.size === 0;
  const initDone = finished(steps.find((s) => s.id === 'init'));
  const nodes = [...f.controls, ...f.workers];
  const all = f.lb ? [f.lb, ...nodes] : nodes;
  const onTheWay = all.some((m) => m.state !== 'joined' && m.state !== 'failed');
  if (!settled || !initDone || onTheWay) return 'bootstrapping';
  const lastCheck = steps.filter((s) => s.kind === 'nodes-ready').at(-1);
  const anyFailed = all.some((m) => m.state === 'failed') || lastCheck?.state === 'failed' || steps.some((s) => s.state === 'failed');
  if (anyFailed) return 'degraded';
  const expected = nodes.map(nameOf).sort();
  return finished(lastCheck) && sameList(lastCheck?.data['nodes'], expected) ? 'ready' : 'bootstrapping';
}
