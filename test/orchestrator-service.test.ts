import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { readClusterSecrets } from '../server/lib/cluster-secrets.js';
import { createMetrics } from '../server/lib/metrics.js';
import { FakeRack, HOSTNAMES } from './lib/fake-shell.js';
import { parsePromText, promValue } from './lib/prom-text.js';
import { tempStore, type TempStore } from './lib/inventory.js';
import { addMembers, member, onFakeRack, phoneHome, startOrchestrator, waitFor, type Member } from './lib/orch-harness.js';

/**
 * The orchestrator service in-process, against an in-memory rack behind `RemoteShell`: the
 * ordering, machine and cluster states, retries, failure rules, the lock, and resuming. The same
 * rules are proven against real sshd nodes and the real process in orchestrator.heavy.test.ts.
 */
const test = suite('orchestrator service');

const KEY = [{ type: 'ssh-ed25519', key: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForInMemoryRackOnly00000000000 root@x' }];
const LB = member('lb1', 'loadbalancer', '10.0.0.10');
const CP = [member('cp1', 'control-plane', '10.0.0.11'), member('cp2', 'control-plane', '10.0.0.12'), member('cp3', 'control-plane', '10.0.0.13')];
const W = [member('w1', 'worker', '10.0.0.21'), member('w2', 'worker', '10.0.0.22')];
const ALL: Member[] = [LB, ...CP, ...W];
for (const m of ALL) HOSTNAMES.set(m.ip, m.hostname);

async function cluster(inv: TempStore, members = ALL): Promise<void> {
  await inv.clusters.create({ name: 'lab', ubuntuRelease: '22.04', kubernetesVersion: '1.28.4', containerRuntime: 'containerd', cni: 'flannel', podSubnet: '10.244.0.0/16', serviceSubnet: '10.96.0.0/12' });
  await addMembers(inv, 'lab', members);
}
const state = async (inv: TempStore, want: string): Promise<boolean> => (await inv.clusters.get('lab'))?.state === want;

test('a whole cluster on fake nodes: order, states, and no secret in events or logs', async () => {
  await onFakeRack(async ({ inv, rack, h }) => {
    await cluster(inv);
    for (const m of ALL) await phoneHome(inv, m.mac, KEY);
    await waitFor('cluster ready', () => state(inv, 'ready'));

    const machines = await inv.machines.list({ cluster: 'lab' });
    assert.equal(machines.map((m) => `${m.hostname}:${m.state}`).sort(), ALL.map((m) => `${m.hostname}:joined`).sort());
    const steps = await inv.orchestration.steps('lab');
    assert.ok(steps.every((s) => s.state === 'done'), JSON.stringify(steps.map((s) => [s.id, s.state, s.error])));
    const order = steps.map((s) => s.kind);
    const at = (k: string): number => order.indexOf(k);
    assert.ok(at('prepare') < at('init') && at('init') < at('kubeconfig') && at('kubeconfig') < at('cni'));
    assert.ok(at('cni') < at('join-control'), 'CNI before control joins');
    assert.ok(order.lastIndexOf('join-control') < order.indexOf('join-worker'), 'controls before workers');
    assert.is(order.at(-1), 'nodes-ready');
    // Control joins never overlap.
    const cj = steps.filter((s) => s.kind === 'join-control').map((s) => [Date.parse(s.startedAt ?? ''), Date.parse(s.endedAt ?? '')] as const);
    assert.is(cj.length, 2);
    assert.ok((cj[0]?.[1] ?? 0) <= (cj[1]?.[0] ?? 0), 'serial control joins');
    assert.is(rack.calls.filter((c) => c.script.includes('kubeadm init --config')).length, 1);
    assert.ok(rack.callsOn(CP[0]!.ip)[0]?.script.includes('/etc/kubernetes/pki/ca.key'), 'the CA goes to cp1 first');

    const secrets = await readClusterSecrets(inv.secrets, 'lab');
    assert.ok(secrets);
    assert.ok(rack.calls.some((c) => c.script.includes(`'${secrets.bootstrapToken}'`)), 'the token reached the nodes');
    const events = JSON.stringify(await inv.events.list({ cluster: 'lab', limit: 10_000 }));
    const steptext = JSON.stringify(steps);
    for (const secret of [secrets.bootstrapToken, secrets.bootstrapToken.split('.')[1] ?? '?', secrets.certificateKey, ...secrets.caKeyPem.split('\n').filter((l) => l.length > 20 && !l.startsWith('-----'))]) {
      assert.not.ok(events.includes(secret), `a secret is in the events: ${secret.slice(0, 8)}…`);
      assert.not.ok(steptext.includes(secret), 'a secret is in a step record');
      assert.not.ok(h.logText().includes(secret), 'a secret is in the log');
    }
    // The log says when this instance took the cluster and when it let it go (nothing left to do).
    await waitFor('the lock released', async () => /cluster lock released/.test(h.logText()));
    const lockLines = h.logText().split('\n').filter((l) => /cluster lock (taken|released)/.test(l));
    assert.match(lockLines[0] ?? '', /cluster lock taken: this racksmith drives the cluster/);
    assert.match(lockLines.at(-1) ?? '', /"why":"nothing left to do for now"/);
    assert.ok(lockLines.every((l) => l.includes('"cluster":"lab"')), lockLines.join('\n'));
    assert.not.ok(events.includes('c2VjcmV0'), 'admin.conf credentials are never streamed');
    assert.match(events, /orchestration\.output/);
    assert.match((await h.orchestrator.kubeconfig('lab')) ?? '', /kind: Config/);
    const detail = await h.orchestrator.detail((await inv.clusters.get('lab'))!, machines);
    assert.equal((detail['orchestration'] as { waiting: string[] }).waiting, []);
  });
});

test('refused connections and a worker failing twice are retried; it joins', async () => {
  await onFakeRack(async ({ inv, rack }) => {
    rack.node(W[0]!.ip).refuse = 2;
    rack.node(W[1]!.ip).failJoins = 2;
    await cluster(inv, [LB, CP[0]!, ...W]);
    for (const m of [LB, CP[0]!, ...W]) await phoneHome(inv, m.mac, KEY);
    await waitFor('cluster ready', () => state(inv, 'ready'));
    const steps = await inv.orchestration.steps('lab');
    const w1 = steps.find((s) => s.id === `join:${W[0]!.mac}`);
    const w2 = steps.find((s) => s.id === `join:${W[1]!.mac}`);
    assert.is(w1?.attempts, 3);
    assert.is(w2?.attempts, 3);
    // The third join of w2 was preceded by kubeadm reset (leftovers of the failed tries).
    const w2calls = rack.callsOn(W[1]!.ip).filter((c) => c.script.includes('kubeadm join'));
    assert.is(w2calls.length, 3);
    assert.not.ok(w2calls[0]?.script.includes('kubeadm reset'));
    assert.ok(w2calls[2]?.script.includes('kubeadm reset -f'));
    const events = await inv.events.list({ mac: W[1]!.mac });
    assert.ok(events.some((e) => /attempt 1 failed: exited 1/.test(e.message)), 'the failed attempts are in the machine events');
  });
});

test('an always-failing worker: failed with step and output tail, others join, degraded; retry finishes it', async () => {
  const metrics = createMetrics();
  await onFakeRack(async ({ inv, rack, h }) => {
    rack.node(W[1]!.ip).failJoins = Infinity;
    await cluster(inv, [LB, CP[0]!, ...W]);
    for (const m of [LB, CP[0]!, ...W]) await phoneHome(inv, m.mac, KEY);
    await waitFor('cluster degraded', () => state(inv, 'degraded'));
    const bad = await inv.machines.get(W[1]!.mac);
    assert.is(bad?.state, 'failed');
    assert.is(bad?.failedStep, `join:${W[1]!.mac}`);
    assert.match(bad?.failedReason ?? '', /exited 1.*couldn't validate the identity/);
    assert.is((await inv.machines.get(W[0]!.mac))?.state, 'joined');

    rack.node(W[1]!.ip).failJoins = 0;
    const r = await h.orchestrator.retry('lab');
    assert.equal(r.machines, ['w2']);
    assert.equal(r.steps, [`join:${W[1]!.mac}`]);
    await waitFor('cluster ready after retry', () => state(inv, 'ready'));
    assert.is((await inv.machines.get(W[1]!.mac))?.state, 'joined');

    // Steps are timed by kind and outcome; the failed join is counted once, before its retry.
    const m = parsePromText(await metrics.text());
    const counts = m.get('racksmith_orchestration_step_duration_seconds')?.samples.filter((x) => x.name.endsWith('_count')) ?? [];
    const count = (step: string, outcome: string): number => counts.find((x) => x.labels['step'] === step && x.labels['outcome'] === outcome)?.value ?? 0;
    assert.is(count('init', 'ok'), 1, JSON.stringify(counts));
    assert.is(count('join-worker', 'ok'), 2);
    assert.is(count('join-worker', 'failed'), 1);
    assert.is(promValue(m, 'racksmith_orchestration_step_failures_total', { step: 'join-worker' }), 1);
    for (const x of counts) assert.not.match(JSON.stringify(x.labels), /w2|10\.0\.0|52:54/);
  }, { metrics });
});

test('a host key that differs from the phone-home: machine failed, nothing run on it', async () => {
  await onFakeRack(async ({ inv, rack }) => {
    rack.node(W[0]!.ip).hostKeyMismatch = true;
    await cluster(inv, [LB, CP[0]!, W[0]!]);
    for (const m of [LB, CP[0]!, W[0]!]) await phoneHome(inv, m.mac, KEY);
    await waitFor('cluster degraded', () => state(inv, 'degraded'));
    const m = await inv.machines.get(W[0]!.mac);
    assert.is(m?.state, 'failed');
    assert.match(m?.failedReason ?? '', /host key that differs from its phone-home/);
    assert.equal(rack.callsOn(W[0]!.ip), []);
    const step = (await inv.orchestration.steps('lab')).find((s) => s.mac === W[0]!.mac);
    assert.is(step?.attempts, 1, 'a host key mismatch is not retried');
  });
});

test('two orchestrators on one store never drive the same cluster', async () => {
  const inv = await tempStore();
  const rackA = new FakeRack();
  const rackB = new FakeRack();
  rackA.delayMs = rackB.delayMs = 15;
  const a = await startOrchestrator(inv, rackA, { owner: 'instance-a' });
  const b = await startOrchestrator(inv, rackB, { owner: 'instance-b' });
  try {
    await cluster(inv);
    for (const m of ALL) await phoneHome(inv, m.mac, KEY);
    for (let i = 0; i < 5; i++) {
      a.orchestrator.kick('lab');
      b.orchestrator.kick('lab');
    }
    await waitFor('cluster ready', () => state(inv, 'ready'), 30_000);
    const drivers = [rackA, rackB].filter((r) => r.calls.length > 0);
    assert.is(drivers.length, 1, `calls: A ${rackA.calls.length}, B ${rackB.calls.length}`);
  } finally {
    await a.stop();
    await b.stop();
    await inv.destroy();
  }
});

test('stopped right after init and started again: init is not run again, the joins complete', async () => {
  const inv = await tempStore();
  const rack = new FakeRack();
  rack.delayMs = 30;
  let h = await startOrchestrator(inv, rack, { owner: 'same-instance' });
  try {
    await cluster(inv);
    for (const m of ALL) await phoneHome(inv, m.mac, KEY);
    const repo = inv.orchestration;
    await waitFor('init done', async () => (await repo.steps('lab')).find((s) => s.id === 'init' && s.state === 'done'), 20_000, 5);
    await h.stop();
    const joinsBefore = rack.calls.filter((c) => c.script.includes('kubeadm join')).length;
    assert.is(joinsBefore, 0, 'stopped before any join');
    h = await startOrchestrator(inv, rack, { owner: 'same-instance' });
    await waitFor('cluster ready', () => state(inv, 'ready'));
    assert.is(rack.calls.filter((c) => c.script.includes('kubeadm init --config')).length, 1);
    assert.is(rack.calls.filter((c) => c.script.includes('kubeadm join')).length, 4);
  } finally {
    await h.stop();
    await inv.destroy();
  }
});

test('an init interrupted after it happened is skipped by its probe; a join recorded done settles its machine', async () => {
  const inv = await tempStore();
  const rack = new FakeRack();
  await cluster(inv, [LB, CP[0]!]);
  for (const m of [LB, CP[0]!]) await phoneHome(inv, m.mac, KEY);
  const repo = inv.orchestration;
  const t = new Date().toISOString();
  const base = { cluster: 'lab', attempts: 1, startedAt: t, output: [], error: null } as const;
  await repo.saveStep({ ...base, id: 'lb-config:1', kind: 'lb-config', mac: LB.mac, state: 'done', endedAt: t, data: { backends: [{ name: 'cp1', address: CP[0]!.ip, port: 6443 }] } });
  await repo.saveStep({ ...base, id: 'prepare', kind: 'prepare', mac: CP[0]!.mac, state: 'done', endedAt: t, data: {} });
  await repo.saveStep({ ...base, id: 'init', kind: 'init', mac: CP[0]!.mac, state: 'running', endedAt: null, data: {} });
  await inv.machines.transition(LB.mac, 'join-started', { source: 'test' });
  await inv.machines.transition(LB.mac, 'joined', { source: 'test' });
  await inv.machines.transition(CP[0]!.mac, 'join-started', { source: 'test' });
  // A worker whose join was recorded done just before the process died (machine still joining).
  await addMembers(inv, 'lab', [W[0]!]);
  await phoneHome(inv, W[0]!.mac, KEY);
  await inv.machines.transition(W[0]!.mac, 'join-started', { source: 'test' });
  await repo.saveStep({ ...base, id: `join:${W[0]!.mac}`, kind: 'join-worker', mac: W[0]!.mac, state: 'done', endedAt: t, data: {} });
  rack.node(W[0]!.ip).kubeletConf = true;
  rack.cluster.nodes.add(W[0]!.ip);
  rack.node(CP[0]!.ip).adminConf = true;
  rack.cluster.initialised = true;
  rack.cluster.nodes.add(CP[0]!.ip);
  const h = await startOrchestrator(inv, rack);
  try {
    await waitFor('cluster ready', () => state(inv, 'ready'));
    const init = (await repo.steps('lab')).find((s) => s.id === 'init');
    assert.is(init?.state, 'skipped');
    assert.is(rack.calls.filter((c) => c.script.includes('kubeadm init --config')).length, 0);
    assert.is((await inv.machines.get(CP[0]!.mac))?.state, 'joined');
    assert.is((await inv.machines.get(W[0]!.mac))?.state, 'joined', 'settled from its record');
    assert.equal(rack.callsOn(W[0]!.ip), [], 'and not joined again');
  } finally {
    await h.stop();
    await inv.destroy();
  }
});

test('the periodic look reads every cluster, its machines\' plan facts and its steps once, not once per cluster; a change still gets its cluster driven', async () => {
  const inv = await tempStore();
  const reads = { all: 0, wholeRows: 0, perCluster: 0, clusterGets: 0, allSteps: 0, clusterSteps: 0 };
  const counted = {
    ...inv,
    machines: {
      ...inv.machines,
      list: (filter?: Parameters<typeof inv.machines.list>[0], page?: Parameters<typeof inv.machines.list>[1]) => {
        if (filter?.cluster) reads.perCluster++;
        else reads.wholeRows++;
        return inv.machines.list(filter, page);
      },
      planFacts: () => {
        reads.all++;
        return inv.machines.planFacts();
      },
    },
    clusters: {
      ...inv.clusters,
      get: (name: string) => {
        reads.clusterGets++;
        return inv.clusters.get(name);
      },
    },
    orchestration: {
      ...inv.orchestration,
      steps: (cluster: string) => {
        reads.clusterSteps++;
        return inv.orchestration.steps(cluster);
      },
      allSteps: () => {
        reads.allSteps++;
        return inv.orchestration.allSteps();
      },
    },
  };
  const rack = new FakeRack();
  // 30 racks whose machines wait for their installs: nothing to do on any look.
  for (let r = 0; r < 30; r++) {
    await inv.clusters.create({ name: `rack${r}`, ubuntuRelease: '22.04', kubernetesVersion: '1.28.4', containerRuntime: 'containerd', cni: 'flannel' });
    for (let i = 0; i < 4; i++) await inv.machines.create({ mac: `52:54:00:7e:${r.toString(16).padStart(2, '0')}:${i.toString(16).padStart(2, '0')}` as never, hostname: `r${r}n${i}`, role: i === 0 ? 'control-plane' : 'worker', cluster: `rack${r}` });
  }
  const h = await startOrchestrator(counted as unknown as TempStore, rack, { settings: { pollMs: 100 } });
  try {
    await new Promise((r) => setTimeout(r, 150));
    await h.orchestrator.idle(10_000);
    const before = { ...reads };
    // Two looks of the 100 ms poll, however late they come: a fixed 450 ms may hold fewer in a
    // process starved of CPU.
    await waitFor('two periodic looks', async () => reads.all - before.all >= 2);
    const looks = reads.all - before.all;
    assert.ok(looks >= 2, `the poll looked ${looks} times`);
    assert.is(reads.wholeRows - before.wholeRows, 0, 'the look reads the plan facts of every machine, not whole rows');
    assert.is(reads.perCluster - before.perCluster, 0, 'no cluster read its machines on its own');
    assert.is(reads.clusterGets - before.clusterGets, 0, 'nor itself');
    assert.is(reads.clusterSteps - before.clusterSteps, 0, 'nor its steps');
    assert.is(reads.allSteps - before.allSteps, looks, 'the steps are read once a look');
    // A machine's phone-home still reaches its cluster's plan (the event, then the driver's own reads).
    await inv.clusters.create({ name: 'lab', ubuntuRelease: '22.04', kubernetesVersion: '1.28.4', containerRuntime: 'containerd', cni: 'flannel', podSubnet: '10.244.0.0/16', serviceSubnet: '10.96.0.0/12' });
    await addMembers(inv, 'lab', ALL);
    for (const m of ALL) await phoneHome(inv, m.mac, KEY);
    await waitFor('cluster ready', () => state(inv, 'ready'));
  } finally {
    await h.stop();
    await inv.destroy();
  }
});

test.run();
