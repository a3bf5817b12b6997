import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import type { ClusterState, Machine } from '../server/inventory/model.js';
import type { MachineState } from '../server/inventory/lifecycle.js';
import type { StepRecord } from '../server/inventory/store.js';
import { planCluster, type PlanLimits, type RemovalRequest } from '../server/orchestrator/plan.js';
import { cluster, machine, step } from './lib/orch-fixtures.js';

/**
 * The plan as a table of named cases: the cluster's machines and persisted steps in, the
 * steps to start now and the cluster state out.
 */
const test = suite('orchestrator plan');

const NOW = new Date('2026-01-01T12:00:00.000Z');
const FRESH = '2026-01-01T11:30:00.000Z'; // 30 min ago
const STALE_CERTS = '2026-01-01T10:00:00.000Z'; // 2 h ago: past the 1 h 40 min limit
const STALE_TOKEN = '2025-12-31T10:00:00.000Z'; // 26 h ago
const LIMITS: PlanLimits = { workerConcurrency: 2, certUploadMaxAgeMs: 100 * 60_000, tokenMaxAgeMs: 23 * 3600_000 };

type S = MachineState;
function fleet(states: { lb?: S; cp1?: S; cp2?: S; cp3?: S; w1?: S; w2?: S; w3?: S } = {}, extra: Machine[] = []): Machine[] {
  const out: Machine[] = [];
  const add = (name: string, role: Machine['role'] & string, ip: string, st: S | undefined): void => {
    if (st) out.push(machine(name, role as never, st, { ip }));
  };
  add('lb1', 'loadbalancer', '10.0.0.10', states.lb);
  add('cp1', 'control-plane', '10.0.0.11', states.cp1);
  add('cp2', 'control-plane', '10.0.0.12', states.cp2);
  add('cp3', 'control-plane', '10.0.0.13', states.cp3);
  add('w1', 'worker', '10.0.0.21', states.w1);
  add('w2', 'worker', '10.0.0.22', states.w2);
  add('w3', 'worker', '10.0.0.23', states.w3);
  return [...out, ...extra];
}
const mac = (ip: string): Machine['mac'] => machine('x', 'worker', 'ready', { ip }).mac;
const CP1 = mac('10.0.0.11');
const CP2 = mac('10.0.0.12');
const CP3 = mac('10.0.0.13');
const LB = mac('10.0.0.10');
const W1 = mac('10.0.0.21');
const W2 = mac('10.0.0.22');
const W3 = mac('10.0.0.23');
const backends = (...cps: string[]): { name: string; address: string; port: number }[] =>
  cps.map((n) => ({ name: n, address: `10.0.0.${10 + Number(n.slice(2))}`, port: 6443 }));

/** Everything up to and including the CNI on cp1, with the certificate upload and token at `at`. */
function initialised(at = FRESH, lb = backends('cp1', 'cp2', 'cp3')): StepRecord[] {
  return [
    step('lb-config:1', 'lb-config', LB, 'done', { backends: lb }),
    step('prepare', 'prepare', CP1, 'done'),
    step('init', 'init', CP1, 'done', { certsUploadedAt: at, tokenCreatedAt: at }),
    step('kubeconfig', 'kubeconfig', CP1, 'done'),
    step('cni', 'cni', CP1, 'done'),
  ];
}
const joined = (id: string, kind: string, m: Machine['mac']): StepRecord => step(id, kind, m, 'done');

interface Case {
  readonly name: string;
  readonly machines: Machine[];
  readonly steps?: StepRecord[];
  readonly active?: string[];
  readonly endpoint?: string;
  readonly removals?: RemovalRequest[];
  readonly expect: {
    readonly state: ClusterState;
    readonly run: string[];
    readonly waiting?: RegExp;
    readonly data?: Record<string, unknown>;
    readonly settle?: string[];
    /** `<hostname> removed` or `<hostname> failed: <reason pattern>`. */
    readonly answer?: (string | RegExp)[];
  };
}

// ── reimage: removal, generations, rejoin ─────────────────────────────────
const ask = (m: Machine['mac'], reimage = 'r1', askedAt = 100): RemovalRequest => ({ mac: m, reimage, askedAt });
const removed = (m: Machine['mac'], reimage = 'r1', data: Record<string, unknown> = {}): StepRecord => step(`remove:${m}:${reimage}`, 'remove-node', m, 'done', { askedAt: 100, ...data });
/** A ready 1 LB + 3 control + 2 worker cluster, every node checked. */
function fullyJoined(): StepRecord[] {
  return [
    ...initialised(),
    joined(`join:${CP2}`, 'join-control', CP2),
    joined(`join:${CP3}`, 'join-control', CP3),
    joined(`join:${W1}`, 'join-worker', W1),
    joined(`join:${W2}`, 'join-worker', W2),
    step('nodes-ready:1', 'nodes-ready', CP1, 'done', { nodes: ['cp1', 'cp2', 'cp3', 'w1', 'w2'] }),
  ];
}
const REIMAGE_CASES: Case[] = [
  {
    name: 'reimage of a joined worker: its removal runs from the init node, nothing else',
    machines: fleet({ lb: 'joined', cp1: 'joined', cp2: 'joined', cp3: 'joined', w1: 'reimaging', w2: 'joined' }),
    steps: fullyJoined(),
    removals: [ask(W1)],
    expect: { state: 'bootstrapping', run: [`remove:${W1}:r1`], data: { reimage: 'r1', askedAt: 100, node: 'w1', role: 'worker', via: CP1, viaNode: 'cp1', generation: 1 } },
  },
  {
    name: 'the worker\'s removal is done: answered "removed"; the rest of the cluster is checked',
    machines: fleet({ lb: 'joined', cp1: 'joined', cp2: 'joined', cp3: 'joined', w1: 'reimaging', w2: 'joined' }),
    steps: [...fullyJoined(), removed(W1)],
    removals: [ask(W1)],
    expect: { state: 'bootstrapping', run: ['nodes-ready:2'], data: { nodes: ['cp1', 'cp2', 'cp3', 'w2'] }, answer: ['w1 removed'] },
  },
  {
    name: 'removal answered, the worker reinstalls: nothing to do, waiting for it',
    machines: fleet({ lb: 'joined', cp1: 'joined', cp2: 'joined', cp3: 'joined', w1: 'provisioning', w2: 'joined' }),
    steps: [...fullyJoined(), removed(W1), step('nodes-ready:2', 'nodes-ready', CP1, 'done', { nodes: ['cp1', 'cp2', 'cp3', 'w2'] })],
    expect: { state: 'bootstrapping', run: [], waiting: /worker w1 is provisioning/ },
  },
  {
    name: 'the reimaged worker is ready again: a join of its second life, not the old record',
    machines: fleet({ lb: 'joined', cp1: 'joined', cp2: 'joined', cp3: 'joined', w1: 'ready', w2: 'joined' }),
    steps: [...fullyJoined(), removed(W1), step('nodes-ready:2', 'nodes-ready', CP1, 'done', { nodes: ['cp1', 'cp2', 'cp3', 'w2'] })],
    expect: { state: 'bootstrapping', run: [`join:${W1}#2`] },
  },
  {
    name: 'killed during the rejoin: the old life\'s done join does not settle it; the new join runs again',
    machines: fleet({ lb: 'joined', cp1: 'joined', cp2: 'joined', cp3: 'joined', w1: 'joining', w2: 'joined' }),
    steps: [...fullyJoined(), removed(W1), step(`join:${W1}#2`, 'join-worker', W1, 'running')],
    expect: { state: 'bootstrapping', run: [`join:${W1}#2`], settle: [] },
  },
  {
    name: 'rejoined and every node Ready again: the cluster is ready',
    machines: fleet({ lb: 'joined', cp1: 'joined', cp2: 'joined', cp3: 'joined', w1: 'joined', w2: 'joined' }),
    steps: [...fullyJoined(), removed(W1), joined(`join:${W1}#2`, 'join-worker', W1), step('nodes-ready:2', 'nodes-ready', CP1, 'done', { nodes: ['cp1', 'cp2', 'cp3', 'w1', 'w2'] })],
    expect: { state: 'ready', run: [] },
  },
  {
    name: 'a worker whose join failed, reimaged: the failure is history, its next life joins',
    machines: fleet({ lb: 'joined', cp1: 'joined', w1: 'ready', w2: 'joined' }),
    steps: [...initialised(FRESH, backends('cp1')), step(`join:${W1}`, 'join-worker', W1, 'failed'), joined(`join:${W2}`, 'join-worker', W2), removed(W1)],
    expect: { state: 'bootstrapping', run: [`join:${W1}#2`] },
  },
  {
    name: 'the removal failed for this request: answered "failed" with the step\'s error',
    machines: fleet({ lb: 'joined', cp1: 'joined', w1: 'reimaging' }),
    steps: [...initialised(FRESH, backends('cp1')), joined(`join:${W1}`, 'join-worker', W1), step(`remove:${W1}:r1`, 'remove-node', W1, 'failed', { askedAt: 100 }, { error: 'kubectl drain w1 failed: disruption budget' })],
    removals: [ask(W1)],
    expect: { state: 'bootstrapping', run: ['nodes-ready:1'], answer: [/^w1 failed: kubectl drain w1 failed: disruption budget$/] },
  },
  {
    name: 'asked again after a failed removal (a retried reimage): the removal runs again',
    machines: fleet({ lb: 'joined', cp1: 'joined', w1: 'reimaging' }),
    steps: [...initialised(FRESH, backends('cp1')), joined(`join:${W1}`, 'join-worker', W1), step(`remove:${W1}:r1`, 'remove-node', W1, 'failed', { askedAt: 100 })],
    removals: [ask(W1, 'r1', 200)],
    expect: { state: 'bootstrapping', run: [`remove:${W1}:r1`] },
  },
  {
    name: 'a removal waits while a step still runs on that machine',
    machines: fleet({ lb: 'joined', cp1: 'joined', w1: 'reimaging' }),
    steps: [...initialised(FRESH, backends('cp1')), step(`join:${W1}`, 'join-worker', W1, 'running')],
    active: [`join:${W1}`],
    removals: [ask(W1)],
    expect: { state: 'bootstrapping', run: [], waiting: /removal of w1 waits for its running step/ },
  },
  {
    name: 'no healthy control node to remove a worker from: answered "failed" at once',
    machines: fleet({ lb: 'joined', cp1: 'failed', w1: 'reimaging' }),
    steps: [...initialised(FRESH, backends('cp1')), joined(`join:${W1}`, 'join-worker', W1)],
    removals: [ask(W1)],
    expect: { state: 'bootstrapping', run: [], answer: [/^w1 failed: no healthy control-plane node in cluster lab/] },
  },
  {
    name: 'reimage of a control node: its removal from the init node and an LB update without it, together',
    machines: fleet({ lb: 'joined', cp1: 'joined', cp2: 'reimaging', cp3: 'joined', w1: 'joined', w2: 'joined' }),
    steps: fullyJoined(),
    removals: [ask(CP2, 'r2')],
    expect: { state: 'bootstrapping', run: [`remove:${CP2}:r2`, 'lb-config:2'], data: { reimage: 'r2', askedAt: 100, node: 'cp2', role: 'control-plane', via: CP1, viaNode: 'cp1', generation: 1 } },
  },
  {
    name: 'control node removed but the LB still routes to it: no answer until the LB is rewritten',
    machines: fleet({ lb: 'joined', cp1: 'joined', cp2: 'reimaging', cp3: 'joined', w1: 'joined', w2: 'joined' }),
    steps: [...fullyJoined(), removed(CP2, 'r2')],
    removals: [ask(CP2, 'r2')],
    expect: { state: 'bootstrapping', run: ['lb-config:2'], data: { backends: backends('cp1', 'cp3') }, answer: [] },
  },
  {
    name: 'control node removed and gone from the LB: answered "removed"',
    machines: fleet({ lb: 'joined', cp1: 'joined', cp2: 'reimaging', cp3: 'joined', w1: 'joined', w2: 'joined' }),
    steps: [...fullyJoined(), removed(CP2, 'r2'), step('lb-config:2', 'lb-config', LB, 'done', { backends: backends('cp1', 'cp3') })],
    removals: [ask(CP2, 'r2')],
    expect: { state: 'bootstrapping', run: ['nodes-ready:2'], answer: ['cp2 removed'] },
  },
  {
    name: 'the LB update for a control removal failed: answered "failed"',
    machines: fleet({ lb: 'failed', cp1: 'joined', cp2: 'reimaging', cp3: 'joined' }),
    steps: [...initialised(), joined(`join:${CP2}`, 'join-control', CP2), joined(`join:${CP3}`, 'join-control', CP3), removed(CP2, 'r2'), step('lb-config:2', 'lb-config', LB, 'failed', { backends: backends('cp1', 'cp3') }, { error: 'haproxy -c: exited 1' })],
    removals: [ask(CP2, 'r2')],
    expect: { state: 'bootstrapping', run: ['nodes-ready:1'], answer: [/^cp2 failed: the load balancer update lb-config:2 failed: haproxy -c: exited 1$/] },
  },
  {
    name: 'the reimaged control node is ready again: a control join of its second life; the LB waits for it',
    machines: fleet({ lb: 'joined', cp1: 'joined', cp2: 'ready', cp3: 'joined', w1: 'joined', w2: 'joined' }),
    steps: [...fullyJoined(), removed(CP2, 'r2'), step('lb-config:2', 'lb-config', LB, 'done', { backends: backends('cp1', 'cp3') })],
    expect: { state: 'bootstrapping', run: [`join:${CP2}#2`] },
  },
  {
    name: 'rejoined: the LB gets it back',
    machines: fleet({ lb: 'joined', cp1: 'joined', cp2: 'joined', cp3: 'joined', w1: 'joined', w2: 'joined' }),
    steps: [...fullyJoined(), removed(CP2, 'r2'), step('lb-config:2', 'lb-config', LB, 'done', { backends: backends('cp1', 'cp3') }), joined(`join:${CP2}#2`, 'join-control', CP2)],
    expect: { state: 'bootstrapping', run: ['lb-config:3'], data: { backends: backends('cp1', 'cp2', 'cp3') } },
  },
  {
    name: 'a rejoin hours later: token and certificates first, then the control join',
    machines: fleet({ lb: 'joined', cp1: 'joined', cp2: 'ready', cp3: 'joined' }),
    steps: [...initialised(STALE_CERTS).map((s) => (s.id === 'init' ? { ...s, data: { certsUploadedAt: STALE_CERTS, tokenCreatedAt: FRESH } } : s)), joined(`join:${CP2}`, 'join-control', CP2), joined(`join:${CP3}`, 'join-control', CP3), removed(CP2, 'r2'), step('lb-config:2', 'lb-config', LB, 'done', { backends: backends('cp1', 'cp3') })],
    expect: { state: 'bootstrapping', run: ['upload-certs:1'] },
  },
  {
    name: 'reimage of the init node once the cluster is up: removed from another control node',
    machines: fleet({ lb: 'joined', cp1: 'reimaging', cp2: 'joined', cp3: 'joined', w1: 'joined', w2: 'joined' }),
    steps: fullyJoined(),
    removals: [ask(CP1, 'r3')],
    expect: { state: 'bootstrapping', run: [`remove:${CP1}:r3`, 'lb-config:2'], data: { reimage: 'r3', askedAt: 100, node: 'cp1', role: 'control-plane', via: CP2, viaNode: 'cp2', generation: 1 } },
  },
  {
    name: 'the init node away: cluster commands (the node check) run on another control node',
    machines: fleet({ lb: 'joined', cp1: 'provisioning', cp2: 'joined', cp3: 'joined', w1: 'joined', w2: 'joined' }),
    steps: [...fullyJoined(), removed(CP1, 'r3'), step('lb-config:2', 'lb-config', LB, 'done', { backends: backends('cp2', 'cp3') })],
    expect: { state: 'bootstrapping', run: ['nodes-ready:2'], data: { nodes: ['cp2', 'cp3', 'w1', 'w2'] } },
  },
  {
    name: 'the init node back ready: it joins as a control node (never init again); certificates from cp2',
    machines: fleet({ lb: 'joined', cp1: 'ready', cp2: 'joined', cp3: 'joined', w1: 'joined', w2: 'joined' }),
    steps: [...fullyJoined().map((s) => (s.id === 'init' ? { ...s, data: { certsUploadedAt: STALE_CERTS, tokenCreatedAt: FRESH } } : s)), removed(CP1, 'r3'), step('lb-config:2', 'lb-config', LB, 'done', { backends: backends('cp2', 'cp3') })],
    expect: { state: 'bootstrapping', run: ['upload-certs:1'] },
  },
  {
    name: 'the last healthy control node: its removal is refused',
    machines: fleet({ lb: 'joined', cp1: 'reimaging', w1: 'joined' }),
    steps: [...initialised(FRESH, backends('cp1')), joined(`join:${W1}`, 'join-worker', W1)],
    removals: [ask(CP1)],
    expect: { state: 'bootstrapping', run: [], answer: [/^cp1 failed: cp1 is the last healthy control-plane node of cluster lab/] },
  },
  {
    name: 'the init node reimaged before init succeeded: a removal with nothing to run from (only its reset)',
    machines: fleet({ lb: 'joined', cp1: 'reimaging', cp2: 'ready' }),
    steps: [step('lb-config:1', 'lb-config', LB, 'done', { backends: backends('cp1', 'cp2') }), step('prepare', 'prepare', CP1, 'done'), step('init', 'init', CP1, 'failed')],
    removals: [ask(CP1)],
    expect: { state: 'failed', run: [`remove:${CP1}:r1`], data: { reimage: 'r1', askedAt: 100, node: 'cp1', role: 'control-plane', via: null, viaNode: null, generation: 1 } },
  },
  {
    name: '…and in its next life the chain starts again on it: the old failed init is history',
    machines: fleet({ lb: 'joined', cp1: 'ready', cp2: 'ready' }),
    steps: [step('lb-config:1', 'lb-config', LB, 'done', { backends: backends('cp1', 'cp2') }), step('prepare', 'prepare', CP1, 'done'), step('init', 'init', CP1, 'failed'), removed(CP1)],
    expect: { state: 'bootstrapping', run: ['prepare#2'] },
  },
  {
    name: 'a reinstalled load balancer (ready again) gets its configuration again',
    machines: fleet({ lb: 'ready', cp1: 'joined', cp2: 'joined', cp3: 'joined', w1: 'joined', w2: 'joined' }),
    steps: fullyJoined(),
    expect: { state: 'bootstrapping', run: ['lb-config:2'], data: { backends: backends('cp1', 'cp2', 'cp3') } },
  },
  {
    name: 'a reinstalled LB killed mid-configuration: an older configuration does not settle it',
    machines: fleet({ lb: 'joining', cp1: 'joined', cp2: 'joined', cp3: 'joined', w1: 'joined', w2: 'joined' }),
    steps: [...fullyJoined(), step('lb-config:2', 'lb-config', LB, 'running', { backends: backends('cp1', 'cp2', 'cp3') })],
    expect: { state: 'bootstrapping', run: ['lb-config:2'], settle: [] },
  },
];

const CASES: Case[] = [
  {
    name: 'nothing has phoned home yet: pending, nothing to run',
    machines: fleet({ lb: 'provisioning', cp1: 'installed', cp2: 'assigned', w1: 'assigned' }),
    expect: { state: 'pending', run: [], waiting: /waiting for a control-plane node to be ready/ },
  },
  {
    name: 'load balancer ready first: its backends are every control node with an IP',
    machines: fleet({ lb: 'ready', cp1: 'provisioning', cp2: 'provisioning', cp3: 'provisioning' }),
    expect: { state: 'bootstrapping', run: ['lb-config:1'], data: { backends: backends('cp1', 'cp2', 'cp3') } },
  },
  {
    name: 'load balancer and first control node ready: LB config and prepare together',
    machines: fleet({ lb: 'ready', cp1: 'ready', cp2: 'provisioning', w1: 'ready' }),
    expect: { state: 'bootstrapping', run: ['lb-config:1', 'prepare'] },
  },
  {
    name: 'first control node ready but the LB is not: prepare waits for the load balancer',
    machines: fleet({ lb: 'provisioning', cp1: 'ready' }),
    expect: { state: 'pending', run: [], waiting: /waiting for load balancer lb1/ },
  },
  {
    name: 'prepared, LB configured: init on the first control node',
    machines: fleet({ lb: 'joined', cp1: 'joining', cp2: 'ready' }),
    steps: [step('lb-config:1', 'lb-config', LB, 'done', { backends: backends('cp1', 'cp2') }), step('prepare', 'prepare', CP1, 'done')],
    expect: { state: 'bootstrapping', run: ['init'] },
  },
  {
    name: 'prepared but the LB config is still running: init waits',
    machines: fleet({ lb: 'joining', cp1: 'joining' }),
    steps: [step('lb-config:1', 'lb-config', LB, 'running', { backends: backends('cp1') }), step('prepare', 'prepare', CP1, 'done')],
    active: ['lb-config:1'],
    expect: { state: 'bootstrapping', run: [], waiting: /init waits for the load balancer/ },
  },
  {
    name: 'init was interrupted (record running, nobody runs it): it is planned again (the probe decides)',
    machines: fleet({ lb: 'joined', cp1: 'joining' }),
    steps: [step('lb-config:1', 'lb-config', LB, 'done', { backends: backends('cp1') }), step('prepare', 'prepare', CP1, 'done'), step('init', 'init', CP1, 'running')],
    expect: { state: 'bootstrapping', run: ['init'] },
  },
  {
    name: 'init done: fetch admin.conf; then the CNI',
    machines: fleet({ lb: 'joined', cp1: 'joined' }),
    steps: initialised(FRESH, backends('cp1')).slice(0, 3),
    expect: { state: 'bootstrapping', run: ['kubeconfig'] },
  },
  {
    name: 'CNI after admin.conf',
    machines: fleet({ lb: 'joined', cp1: 'joined' }),
    steps: initialised(FRESH, backends('cp1')).slice(0, 4),
    expect: { state: 'bootstrapping', run: ['cni'] },
  },
  {
    name: 'control joins one at a time, in name order; workers wait for them',
    machines: fleet({ lb: 'joined', cp1: 'joined', cp2: 'ready', cp3: 'ready', w1: 'ready' }),
    steps: initialised(),
    expect: { state: 'bootstrapping', run: [`join:${CP2}`], waiting: /workers join once the control-plane joins/ },
  },
  {
    name: 'a control join running: nothing else starts',
    machines: fleet({ lb: 'joined', cp1: 'joined', cp2: 'joining', cp3: 'ready', w1: 'ready' }),
    steps: [...initialised(), step(`join:${CP2}`, 'join-control', CP2, 'running')],
    active: [`join:${CP2}`],
    expect: { state: 'bootstrapping', run: [] },
  },
  {
    name: 'an interrupted control join goes before a fresh one',
    machines: fleet({ lb: 'joined', cp1: 'joined', cp2: 'ready', cp3: 'joining' }),
    steps: [...initialised(), step(`join:${CP3}`, 'join-control', CP3, 'running')],
    expect: { state: 'bootstrapping', run: [`join:${CP3}`] },
  },
  {
    name: 'certificates uploaded longer ago than 2 h minus the margin: upload again before the control join',
    machines: fleet({ lb: 'joined', cp1: 'joined', cp2: 'ready' }),
    steps: initialised(STALE_CERTS, backends('cp1', 'cp2')).map((s) => (s.id === 'init' ? { ...s, data: { certsUploadedAt: STALE_CERTS, tokenCreatedAt: FRESH } } : s)),
    expect: { state: 'bootstrapping', run: ['upload-certs:1'] },
  },
  {
    name: 'after the re-upload the control join runs',
    machines: fleet({ lb: 'joined', cp1: 'joined', cp2: 'ready' }),
    steps: [
      ...initialised(STALE_CERTS, backends('cp1', 'cp2')).map((s) => (s.id === 'init' ? { ...s, data: { certsUploadedAt: STALE_CERTS, tokenCreatedAt: FRESH } } : s)),
      step('upload-certs:1', 'upload-certs', CP1, 'done', { certsUploadedAt: FRESH }),
    ],
    expect: { state: 'bootstrapping', run: [`join:${CP2}`] },
  },
  {
    name: 'a second stale upload gets the next number',
    machines: fleet({ lb: 'joined', cp1: 'joined', cp2: 'joined', cp3: 'ready' }),
    steps: [
      ...initialised(STALE_TOKEN, backends('cp1', 'cp2', 'cp3')).map((s) => (s.id === 'init' ? { ...s, data: { certsUploadedAt: STALE_TOKEN, tokenCreatedAt: FRESH } } : s)),
      step('upload-certs:1', 'upload-certs', CP1, 'done', { certsUploadedAt: STALE_CERTS }),
      joined(`join:${CP2}`, 'join-control', CP2),
    ],
    expect: { state: 'bootstrapping', run: ['upload-certs:2'] },
  },
  {
    name: 'init was skipped by its probe (upload time unknown): token refreshed, then certificates uploaded',
    machines: fleet({ lb: 'joined', cp1: 'joined', cp2: 'ready' }),
    steps: initialised(FRESH, backends('cp1', 'cp2')).map((s) => (s.id === 'init' ? { ...s, state: 'skipped' as const, data: {} } : s)),
    expect: { state: 'bootstrapping', run: ['token-refresh:1'] },
  },
  {
    name: 'bootstrap token near its 24 h end: refreshed before workers join',
    machines: fleet({ lb: 'joined', cp1: 'joined', w1: 'ready' }),
    steps: initialised(STALE_TOKEN, backends('cp1')),
    expect: { state: 'bootstrapping', run: ['token-refresh:1'] },
  },
  {
    name: 'workers join in parallel, bounded by the concurrency',
    machines: fleet({ lb: 'joined', cp1: 'joined', w1: 'ready', w2: 'ready', w3: 'ready' }),
    steps: initialised(FRESH, backends('cp1')),
    expect: { state: 'bootstrapping', run: [`join:${W1}`, `join:${W2}`] },
  },
  {
    name: 'one worker joining uses one slot',
    machines: fleet({ lb: 'joined', cp1: 'joined', w1: 'joining', w2: 'ready', w3: 'ready' }),
    steps: [...initialised(FRESH, backends('cp1')), step(`join:${W1}`, 'join-worker', W1, 'running')],
    active: [`join:${W1}`],
    expect: { state: 'bootstrapping', run: [`join:${W2}`] },
  },
  {
    name: 'workers do not wait for a control node that is still installing',
    machines: fleet({ lb: 'joined', cp1: 'joined', cp2: 'provisioning', w1: 'ready' }),
    steps: initialised(FRESH, backends('cp1', 'cp2')),
    expect: { state: 'bootstrapping', run: [`join:${W1}`], waiting: /cp2 is provisioning/ },
  },
  {
    name: 'every join done: check that every node is Ready',
    machines: fleet({ lb: 'joined', cp1: 'joined', cp2: 'joined', w1: 'joined' }),
    steps: [...initialised(FRESH, backends('cp1', 'cp2')), joined(`join:${CP2}`, 'join-control', CP2), joined(`join:${W1}`, 'join-worker', W1)],
    expect: { state: 'bootstrapping', run: ['nodes-ready:1'], data: { nodes: ['cp1', 'cp2', 'w1'] } },
  },
  {
    name: 'nodes Ready: the cluster is ready and nothing runs',
    machines: fleet({ lb: 'joined', cp1: 'joined', cp2: 'joined', w1: 'joined' }),
    steps: [
      ...initialised(FRESH, backends('cp1', 'cp2')),
      joined(`join:${CP2}`, 'join-control', CP2),
      joined(`join:${W1}`, 'join-worker', W1),
      step('nodes-ready:1', 'nodes-ready', CP1, 'done', { nodes: ['cp1', 'cp2', 'w1'] }),
    ],
    expect: { state: 'ready', run: [] },
  },
  {
    name: 'a worker that failed does not stop the others',
    machines: fleet({ lb: 'joined', cp1: 'joined', w1: 'failed', w2: 'ready' }),
    steps: [...initialised(FRESH, backends('cp1')), step(`join:${W1}`, 'join-worker', W1, 'failed')],
    expect: { state: 'bootstrapping', run: [`join:${W2}`] },
  },
  {
    name: 'the rest joined and Ready, one worker failed: degraded',
    machines: fleet({ lb: 'joined', cp1: 'joined', w1: 'failed', w2: 'joined' }),
    steps: [
      ...initialised(FRESH, backends('cp1')),
      step(`join:${W1}`, 'join-worker', W1, 'failed'),
      joined(`join:${W2}`, 'join-worker', W2),
      step('nodes-ready:1', 'nodes-ready', CP1, 'done', { nodes: ['cp1', 'w2'] }),
    ],
    expect: { state: 'degraded', run: [] },
  },
  {
    name: 'a failed control join stops the plan: failed, no worker starts',
    machines: fleet({ lb: 'joined', cp1: 'joined', cp2: 'failed', cp3: 'ready', w1: 'ready' }),
    steps: [...initialised(), step(`join:${CP2}`, 'join-control', CP2, 'failed')],
    expect: { state: 'failed', run: [], waiting: /stopped: join:.* failed/ },
  },
  {
    name: 'a failed init stops the plan',
    machines: fleet({ lb: 'joined', cp1: 'failed', w1: 'ready' }),
    steps: [step('lb-config:1', 'lb-config', LB, 'done', { backends: backends('cp1') }), step('prepare', 'prepare', CP1, 'done'), step('init', 'init', CP1, 'failed')],
    expect: { state: 'failed', run: [] },
  },
  {
    name: 'after retry (failed step pending, machine ready) the join runs again',
    machines: fleet({ lb: 'joined', cp1: 'joined', w1: 'ready', w2: 'joined' }),
    steps: [...initialised(FRESH, backends('cp1')), step(`join:${W1}`, 'join-worker', W1, 'pending'), joined(`join:${W2}`, 'join-worker', W2)],
    expect: { state: 'bootstrapping', run: [`join:${W1}`] },
  },
  {
    name: 'a control node added after the cluster was ready: the LB gets the new backend list',
    machines: fleet({ lb: 'joined', cp1: 'joined', cp2: 'provisioning', w1: 'joined' }),
    steps: [...initialised(FRESH, backends('cp1')), joined(`join:${W1}`, 'join-worker', W1), step('nodes-ready:1', 'nodes-ready', CP1, 'done', { nodes: ['cp1', 'w1'] })],
    expect: { state: 'bootstrapping', run: ['lb-config:2'], data: { backends: backends('cp1', 'cp2') } },
  },
  {
    name: 'a failed LB update after init degrades the cluster but does not stop joins',
    machines: fleet({ lb: 'failed', cp1: 'joined', cp2: 'joined', w1: 'ready' }),
    steps: [...initialised(FRESH, backends('cp1')), joined(`join:${CP2}`, 'join-control', CP2), step('lb-config:2', 'lb-config', LB, 'failed', { backends: backends('cp1', 'cp2') })],
    expect: { state: 'bootstrapping', run: [`join:${W1}`], waiting: /load balancer update lb-config:2 failed/ },
  },
  {
    name: 'a reimaged worker (ready again, old join done) joins again',
    machines: fleet({ lb: 'joined', cp1: 'joined', w1: 'ready' }),
    steps: [...initialised(FRESH, backends('cp1')), joined(`join:${W1}`, 'join-worker', W1), step('nodes-ready:1', 'nodes-ready', CP1, 'done', { nodes: ['cp1', 'w1'] })],
    expect: { state: 'bootstrapping', run: [`join:${W1}`] },
  },
  {
    name: 'killed between "init done" and "cp1 joined": cp1 is settled as joined, the plan goes on',
    machines: fleet({ lb: 'joined', cp1: 'joining' }),
    steps: initialised(FRESH, backends('cp1')).slice(0, 3),
    expect: { state: 'bootstrapping', run: ['kubeconfig'], settle: ['cp1'] },
  },
  {
    name: 'a join and an LB configuration recorded done with their machines still joining are settled',
    machines: fleet({ lb: 'joining', cp1: 'joined', w1: 'joining' }),
    steps: [...initialised(FRESH, backends('cp1')), joined(`join:${W1}`, 'join-worker', W1)],
    expect: { state: 'bootstrapping', run: ['nodes-ready:1'], settle: ['lb1', 'w1'] },
  },
  {
    name: 'no load balancer and no explicit endpoint: nothing can start',
    machines: fleet({ cp1: 'ready' }),
    expect: { state: 'pending', run: [], waiting: /no control-plane endpoint/ },
  },
  {
    name: 'an explicit endpoint without a load balancer machine: prepare at once',
    machines: fleet({ cp1: 'ready' }),
    endpoint: 'api.lab.example:6443',
    expect: { state: 'bootstrapping', run: ['prepare'] },
  },
];

for (const c of [...CASES, ...REIMAGE_CASES]) {
  test(c.name, () => {
    const p = planCluster({
      cluster: cluster(c.endpoint ? { controlPlaneEndpoint: c.endpoint } : {}),
      machines: c.machines,
      steps: c.steps ?? [],
      active: new Set(c.active ?? []),
      now: NOW,
      limits: LIMITS,
      removals: c.removals,
    });
    assert.equal(
      p.run.map((s) => s.id),
      c.expect.run,
      `run: ${JSON.stringify(p.run.map((s) => s.id))} waiting: ${JSON.stringify(p.waiting)}`,
    );
    assert.is(p.state, c.expect.state, `state (waiting: ${JSON.stringify(p.waiting)})`);
    if (c.expect.waiting) assert.ok(p.waiting.some((w) => c.expect.waiting?.test(w)), `waiting ${JSON.stringify(p.waiting)} lacks ${c.expect.waiting}`);
    if (c.expect.data) assert.equal(p.run[0]?.data, c.expect.data);
    const names = new Map(c.machines.map((m) => [m.mac, m.hostname]));
    assert.equal(p.settle.map((m) => names.get(m)).sort(), c.expect.settle ?? []);
    const answers = p.answer.map((a) => `${names.get(a.mac)} ${a.outcome}${a.reason ? `: ${a.reason}` : ''}`);
    assert.is(answers.length, (c.expect.answer ?? []).length, `answers: ${JSON.stringify(answers)}`);
    (c.expect.answer ?? []).forEach((want, i) => (typeof want === 'string' ? assert.is(answers[i], want) : assert.match(answers[i] ?? '', want)));
  });
}

test('the plan is a pure function: the same facts give the same answer', () => {
  const input = { cluster: cluster(), machines: fleet({ lb: 'joined', cp1: 'joined', cp2: 'ready', w1: 'ready' }), steps: initialised(), active: new Set<string>(), now: NOW, limits: LIMITS };
  assert.equal(planCluster(input), planCluster(input));
});

test('the first control node is pinned by the prepare record, not re-chosen by name', () => {
  const p = planCluster({
    cluster: cluster(),
    machines: fleet({ lb: 'joined', cp1: 'ready', cp2: 'joining' }),
    steps: [step('lb-config:1', 'lb-config', LB, 'done', { backends: backends('cp1', 'cp2') }), step('prepare', 'prepare', CP2, 'done')],
    active: new Set(),
    now: NOW,
    limits: LIMITS,
  });
  assert.is(p.initNode, CP2);
  assert.equal(p.run.map((s) => [s.id, s.mac]), [['init', CP2]]);
  void W3;
});

test.run();
