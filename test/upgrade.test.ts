import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import type { ClusterUpgrade, Machine, PlanMachine } from '../server/inventory/model.js';
import type { StepRecord } from '../server/inventory/store.js';
import { keepSnapshot, liveQuorumAfterRemoval, parseEndpointHealth, snapshotFileName } from '../server/orchestrator/etcd.js';
import type { EtcdMember } from '../server/orchestrator/kubeadm-output.js';
import { joinStepId, planCluster, removeStepId } from '../server/orchestrator/plan.js';
import { checkStepId, installVersion, nodeRecordId, phaseStepId, planUpgrade, skewProblem, withKubernetesVersion, type UpgradeFacts } from '../server/orchestrator/upgrade.js';
import { cluster, machine, step } from './lib/orch-fixtures.js';

/** The rolling upgrade's rules and plan, and the etcd facts the guards read: named tables. */
const test = suite('upgrade: skew rules, plan, etcd guards, snapshots');

test('skew rules: one minor at a time, or a newer patch; never down, never across a major', () => {
  const cases: [string, string, RegExp | null][] = [
    ['1.29.6', '1.30.2', null],
    ['1.29.6', '1.29.9', null],
    ['v1.29.6', 'v1.30.0', null],
    ['1.29.6', '1.31.1', /one minor version at a time: from 1.29.6 the next upgrade is to 1.30.x/],
    ['1.30.2', '1.29.9', /downgrades are not supported/],
    ['1.30.2', '1.30.2', /not newer/],
    ['1.30.2', '2.0.0', /major/],
    ['1.30', '1.31.0', /cannot read/],
  ];
  for (const [from, to, want] of cases) {
    const got = skewProblem(from, to);
    if (want === null) assert.is(got, null, `${from} → ${to}`);
    else assert.match(got ?? '', want, `${from} → ${to}`);
  }
});

test('ClusterConfiguration: only kubernetesVersion changes', () => {
  const text = 'apiServer: {}\napiVersion: kubeadm.k8s.io/v1beta3\ncontrolPlaneEndpoint: 10.0.0.100:6443\nkind: ClusterConfiguration\nkubernetesVersion: v1.29.6\nnetworking:\n  podSubnet: 10.244.0.0/16\n';
  const out = withKubernetesVersion(text, '1.30.2');
  assert.match(out, /^kubernetesVersion: v1\.30\.2$/m);
  assert.match(out, /^controlPlaneEndpoint: 10\.0\.0\.100:6443$/m);
  assert.match(out, /podSubnet: 10\.244\.0\.0\/16/);
  assert.throws(() => withKubernetesVersion('kind: InitConfiguration\n', '1.30.2'), /no ClusterConfiguration/);
});

const U = (over: Partial<ClusterUpgrade> = {}): ClusterUpgrade => ({ id: 'u1', from: '1.29.6', to: '1.30.2', state: 'running', maxUnavailable: 2, requestedAt: '', updatedAt: '', reason: null, controlPlaneMoved: false, ...over });

test('install version: the new one only once the control plane moved, and not after a failed upgrade', () => {
  const c = cluster({ kubernetesVersion: '1.29.6' });
  assert.is(installVersion(c), '1.29.6');
  assert.is(installVersion({ ...c, upgrade: U() }), '1.29.6');
  assert.is(installVersion({ ...c, upgrade: U({ controlPlaneMoved: true }) }), '1.30.2');
  assert.is(installVersion({ ...c, upgrade: U({ controlPlaneMoved: true, state: 'aborted' }) }), '1.30.2', 'an aborted upgrade that moved the control plane: new nodes must match it');
  assert.is(installVersion({ ...c, upgrade: U({ controlPlaneMoved: false, state: 'aborted' }) }), '1.29.6');
});

// ── the plan ──────────────────────────────────────────────────────────────
const CP = ['cp1', 'cp2', 'cp3'].map((n, i) => machine(n, 'control-plane', 'joined', { ip: `10.0.0.${11 + i}` }));
const WK = ['w1', 'w2', 'w3'].map((n, i) => machine(n, 'worker', 'joined', { ip: `10.0.0.${21 + i}` }));
const [cp1, cp2, cp3] = CP as [Machine, Machine, Machine];
const [w1, w2, w3] = WK as [Machine, Machine, Machine];
const phases = ['upgrade-preflight', 'upgrade-snapshot', 'upgrade-config'] as const;
const donePhases = (): StepRecord[] => phases.map((k) => step(phaseStepId(k, 'u1'), k, cp1.mac, 'done'));
/** A node upgraded: its next life's join at the new version, and its check. */
const upgraded = (m: Machine, checked = true): StepRecord[] => [
  step(removeStepId(m.mac, `r-${m.hostname}`), 'remove-node', m.mac, 'done'),
  step(joinStepId(m.mac, 2), m.role === 'worker' ? 'join-worker' : 'join-control', m.mac, 'done', { version: '1.30.2' }),
  ...(checked ? [step(checkStepId(m.mac, 'u1'), 'upgrade-check', cp1.mac, 'done')] : []),
];
const asked = (m: Machine, reimage: string | null = 'x'): StepRecord => step(nodeRecordId(m.mac, 'u1'), 'upgrade-node', m.mac, 'running', { generation: 1, reimage });

function facts(steps: readonly StepRecord[], over: Partial<UpgradeFacts> & { machines?: Machine[] } = {}): UpgradeFacts {
  const record = new Map(steps.map((s) => [s.id, s]));
  const ms = over.machines ?? [...CP, ...WK];
  const gen = (m: PlanMachine): number => 1 + steps.filter((s) => s.kind === 'remove-node' && s.mac === m.mac && s.state === 'done').length;
  return {
    cluster: cluster({ kubernetesVersion: '1.29.6', upgrade: over.upgrade ?? U() }),
    upgrade: over.upgrade ?? U(),
    controls: ms.filter((m) => m.role === 'control-plane'),
    workers: ms.filter((m) => m.role === 'worker'),
    control: over.control === undefined ? cp1 : over.control,
    record: (id) => record.get(id),
    isActive: over.isActive ?? (() => false),
    generation: gen,
    currentJoin: (m) => record.get(joinStepId(m.mac, gen(m))),
    isInitLife: (m) => m.mac === cp1.mac && gen(m) === 1,
  };
}

interface PlanCase {
  readonly name: string;
  readonly steps: StepRecord[];
  readonly over?: Partial<UpgradeFacts> & { machines?: Machine[] };
  readonly run?: string[];
  readonly reimage?: Machine[];
  readonly waiting?: RegExp;
  readonly finished?: boolean;
  readonly moved?: boolean;
}

const PLAN_CASES: PlanCase[] = [
  { name: 'nothing done yet: the preflight first', steps: [], run: [phaseStepId('upgrade-preflight', 'u1')], reimage: [], moved: false },
  { name: 'then the snapshot, then the configuration', steps: donePhases().slice(0, 1), run: [phaseStepId('upgrade-snapshot', 'u1')], reimage: [] },
  { name: 'a failed preflight stops it', steps: [step(phaseStepId('upgrade-preflight', 'u1'), 'upgrade-preflight', cp1.mac, 'failed', {}, { error: 'etcd is not healthy: cp2' })], run: [], reimage: [], waiting: /upgrade stopped: .*etcd is not healthy: cp2.*resume/ },
  { name: 'paused before the configuration: nothing starts', steps: donePhases().slice(0, 2), over: { upgrade: U({ state: 'paused' }) }, run: [], reimage: [], waiting: /upgrade paused/ },
  { name: 'configuration moved: the first control node is reimaged, one only', steps: donePhases(), run: [], reimage: [cp1], moved: true },
  { name: 'a control node on its way: the next waits', steps: [...donePhases(), asked(cp1)], run: [], reimage: [], waiting: /1 on their way, 2 to go/ },
  { name: 'a crash between the record and the ask: asked again', steps: [...donePhases(), asked(cp1, null)], run: [], reimage: [cp1] },
  { name: 'back at the new version: checked before the next leaves', steps: [...donePhases(), asked(cp1), ...upgraded(cp1, false)], run: [checkStepId(cp1.mac, 'u1')], reimage: [] },
  { name: 'checked: the next control node', steps: [...donePhases(), asked(cp1), ...upgraded(cp1)], run: [], reimage: [cp2] },
  { name: 'control plane done: workers, maxUnavailable at a time', steps: [...donePhases(), ...[cp1, cp2, cp3].flatMap((m) => upgraded(m))], run: [], reimage: [w1, w2] },
  { name: 'one worker on its way with maxUnavailable 2: one more', steps: [...donePhases(), ...[cp1, cp2, cp3].flatMap((m) => upgraded(m)), asked(w1)], run: [], reimage: [w2] },
  { name: 'a worker failed: stops', steps: [...donePhases(), ...[cp1, cp2, cp3].flatMap((m) => upgraded(m))], over: { machines: [...CP, { ...w1, state: 'failed' }, w2, w3] }, run: [], reimage: [], waiting: /upgrade stopped: w1 failed/ },
  { name: 'aborted with a worker on its way: it is still checked, nothing else starts', steps: [...donePhases(), ...[cp1, cp2, cp3, w1].flatMap((m) => upgraded(m)), asked(w2), ...upgraded(w2, false)], over: { upgrade: U({ state: 'aborted' }) }, run: [checkStepId(w2.mac, 'u1')], reimage: [], waiting: /upgrade aborted: 1 worker/ },
  { name: 'every node done: kube-proxy', steps: [...donePhases(), ...[...CP, ...WK].flatMap((m) => upgraded(m))], run: [phaseStepId('upgrade-addons', 'u1')], reimage: [], finished: false },
  { name: 'addons done: finished', steps: [...donePhases(), ...[...CP, ...WK].flatMap((m) => upgraded(m)), step(phaseStepId('upgrade-addons', 'u1'), 'upgrade-addons', cp1.mac, 'done')], run: [], reimage: [], finished: true },
  { name: 'no healthy control node: waits', steps: donePhases().slice(0, 1), over: { control: null }, run: [], reimage: [], waiting: /healthy control-plane node/ },
];

for (const c of PLAN_CASES) {
  test(`plan: ${c.name}`, () => {
    const p = planUpgrade(facts(c.steps, c.over));
    if (c.run) assert.equal(p.run.map((s) => s.id), c.run);
    if (c.reimage) assert.equal(p.reimage, c.reimage.map((m) => m.mac));
    if (c.waiting) assert.match(p.waiting.join(' | '), c.waiting);
    if (c.finished !== undefined) assert.is(p.finished, c.finished);
    if (c.moved !== undefined) assert.is(p.controlPlaneMoved, c.moved);
  });
}

test('the cluster plan: joins carry the required version once the control plane moved; the upgrade steps run on the control node', () => {
  const lb = machine('lb1', 'loadbalancer', 'joined', { ip: '10.0.0.10' });
  const back = { ...cp2, state: 'ready' as const };
  const base = [
    step('lb-config:1', 'lb-config', lb.mac, 'done', { backends: [cp1, cp2, cp3].map((m) => ({ name: m.hostname, address: m.ip, port: 6443 })) }),
    step('prepare', 'prepare', cp1.mac, 'done'),
    step('init', 'init', cp1.mac, 'done', { certsUploadedAt: new Date().toISOString(), tokenCreatedAt: new Date().toISOString() }),
    step('kubeconfig', 'kubeconfig', cp1.mac, 'done'),
    step('cni', 'cni', cp1.mac, 'done'),
    step(joinStepId(cp2.mac), 'join-control', cp2.mac, 'done'),
    step(joinStepId(cp3.mac), 'join-control', cp3.mac, 'done'),
    step(removeStepId(cp2.mac, 'r'), 'remove-node', cp2.mac, 'done'),
    ...donePhases(),
    asked(cp2),
  ];
  const p = planCluster({
    cluster: cluster({ kubernetesVersion: '1.29.6', upgrade: U({ controlPlaneMoved: true }) }),
    machines: [lb, cp1, back, cp3],
    steps: base,
    active: new Set(),
    now: new Date(),
    limits: { workerConcurrency: 2, certUploadMaxAgeMs: 3600_000, tokenMaxAgeMs: 3600_000 },
  });
  const join = p.run.find((s) => s.id === joinStepId(cp2.mac, 2));
  assert.ok(join, JSON.stringify(p.run.map((s) => s.id)));
  assert.equal(join?.data, { requiredVersion: '1.30.2' });
  assert.equal(p.upgrade?.progress, { cp1: 'todo', cp2: 'in-flight', cp3: 'todo' });
  assert.equal(p.upgrade?.reimage, [], 'one control node at a time');
});

// ── etcd ──────────────────────────────────────────────────────────────────
const member = (name: string, ip: string): EtcdMember => ({ id: Buffer.from(name).toString('hex'), started: true, name, peerUrls: [`https://${ip}:2380`], clientUrls: [`https://${ip}:2379`] });
const M3 = [member('cp1', '10.0.0.11'), member('cp2', '10.0.0.12'), member('cp3', '10.0.0.13')];
const health = (...down: string[]): ReturnType<typeof parseEndpointHealth> =>
  parseEndpointHealth(M3.map((m) => `${m.clientUrls[0]} is ${down.includes(m.name) ? 'unhealthy: failed to commit proposal: context deadline exceeded' : 'healthy: successfully committed proposal: took = 9.1ms'}`).join('\n') + '\nError: unhealthy cluster\n');

test('etcdctl endpoint health is read whatever else is printed', () => {
  const h = health('cp2');
  assert.equal(h.map((x) => [x.endpoint, x.healthy]), [['https://10.0.0.11:2379', true], ['https://10.0.0.12:2379', false], ['https://10.0.0.13:2379', true]]);
  assert.equal(parseEndpointHealth('garbage\n{"level":"warn"}\n'), []);
});

test('live quorum: named cases', () => {
  const cases: [string, readonly EtcdMember[], string[], string, boolean, RegExp | null][] = [
    ['3 healthy, remove one', M3, [], 'cp3', true, null],
    ['one other down: 1 healthy of 2, quorum 2', M3, ['cp2'], 'cp3', false, /2 member\(s\) of which 1 healthy, below the quorum of 2 \(not healthy: cp2\)/],
    ['the down one itself may go', M3, ['cp2'], 'cp2', true, null],
    ['the last member', [member('cp1', '10.0.0.11')], [], 'cp1', false, /last etcd member/],
    ['no member of that node', M3, ['cp1', 'cp2'], 'w1', true, null],
  ];
  for (const [name, members, down, node, ok, reason] of cases) {
    const v = liveQuorumAfterRemoval({ members, health: health(...down) }, node, null);
    assert.is(v.ok, ok, name);
    assert.is(v.source, 'etcd');
    if (reason) assert.match(v.reason ?? '', reason, name);
  }
});

test('snapshots: time-ordered names, the newest N kept, none lost to a same-second retry', () => {
  const dir = mkdtempSync(join(tmpdir(), 'racksmith-snap-'));
  try {
    assert.is(snapshotFileName(new Date('2026-01-03T10:15:00.123Z')), 'etcd-20260103T101500Z.db');
    writeFileSync(join(dir, 'unrelated.txt'), 'x');
    for (let i = 0; i < 5; i++) keepSnapshot(dir, 'lab', new Date(Date.UTC(2026, 0, 3, 10, i)), Buffer.from(`s${i}`), 3);
    assert.equal(readdirSync(join(dir, 'lab')).sort(), ['etcd-20260103T100200Z.db', 'etcd-20260103T100300Z.db', 'etcd-20260103T100400Z.db']);
    const again = keepSnapshot(dir, 'lab', new Date(Date.UTC(2026, 0, 3, 10, 4)), Buffer.from('retry'), 10);
    assert.match(again.path, /etcd-20260103T100400Z-1\.db$/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
