import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import type { Store } from '../server/inventory/store.js';
import { startBmcSim, type BmcSim } from './lib/bmc-sim.js';
import { HA_RACK, KubeBed, type BedNode, type Call } from './lib/kube-bed.js';
import { phoneHome, waitFor } from './lib/orch-harness.js';
import { api, startRacksmith, type RacksmithProcess } from './lib/racksmith.js';
import { requirements, skipNote } from './lib/tools.js';

// racksmith-test: both engines — a reimage persists its steps and resumes from the store; short enough to run twice.

/**
 * Reimage end to end on the orchestrator's side: the real `racksmith serve`, real OpenSSH nodes
 * (1 LB, 3 control, 2 workers) with the kubeadm/kubectl stand-in, and an ipmi_sim BMC per
 * reimaged machine whose chassis program records every call. Each reimage goes through
 * `POST /machines/{mac}/reimage`; the power service asks, the orchestrator removes the node over
 * SSH, power sets PXE and cycles the BMC. The boot chain's reinstall is played by the test: the
 * node's old system stops, it comes back with a fresh /etc/kubernetes and a new SSH host key,
 * and phones home (the store transitions the seed URLs would make). Then the orchestrator joins
 * it again. Asserted from the stand-in's records (calls, nodes, etcd members), haproxy's
 * configuration on the LB and the simulators' chassis logs — not only racksmith's word.
 */
const test = suite('orchestrator reimage acceptance (real racksmith, real sshd, ipmi_sim)');
const missing = requirements(['sshd', 'ssh-keygen', 'sudo', 'unshare', 'haproxy', 'openssl', 'ipmi_sim', 'ipmitool', 'mkfifo'], { netns: true });

const PASSWORD = 'Pw-reimage-4Tq7-bmc';
const ENV = {
  RACKSMITH_ORCHESTRATOR_POLL_SECONDS: '1',
  RACKSMITH_ORCHESTRATOR_RETRY_DELAY_MS: '200',
  RACKSMITH_ORCHESTRATOR_LOCK_SECONDS: '10',
  RACKSMITH_ORCHESTRATOR_STEP_TIMEOUT_SECONDS: '120',
  RACKSMITH_ORCHESTRATOR_NODES_READY_TIMEOUT_SECONDS: '30',
  RACKSMITH_ORCHESTRATOR_DRAIN_TIMEOUT_SECONDS: '60',
  RACKSMITH_SSH_CONNECT_TIMEOUT_SECONDS: '5',
  RACKSMITH_CNI_MANIFEST_FLANNEL: 'https://mirror.lab.example/flannel/v0.26.1/kube-flannel.yml',
  RACKSMITH_POWER_TIMEOUT_SECONDS: '10',
  RACKSMITH_REIMAGE_REMOVAL_TIMEOUT_SECONDS: '300',
};

let rs: RacksmithProcess | null = null;
let bed: KubeBed | null = null;
let db: Store | null = null;
let admin = '';
let operator = '';
let viewer = '';
const bmcs = new Map<string, BmcSim>();

async function call(token: string, method: string, path: string, body?: unknown) {
  if (!rs) throw new Error('racksmith is not running');
  return api(rs.url, token, method, `/api/v1${path}`, body);
}
const B = (): KubeBed => bed as KubeBed;
const node = (name: string): BedNode => B().node(name);
const calls = (pred: (c: Call) => boolean): Call[] => B().calls().filter(pred);
const kubectl = (c: Call, ...words: string[]): boolean => c.tool === 'kubectl' && words.every((w) => c.args.includes(w));
const etcdMembers = (): string[] => ((B().stateJson()['members'] ?? []) as { name: string }[]).map((m) => m.name).sort();
const apiNodes = (): string[] => ((B().stateJson()['nodes'] ?? []) as { name: string }[]).map((n) => n.name).sort();
/** The server lines of the LB's live haproxy configuration. */
const lbBackends = (): string[] => [...(B().etcFile('lb1', 'haproxy/haproxy.cfg') ?? '').matchAll(/^\s*server (\S+) [\d.]+:6443 /gm)].map((m) => m[1] as string).sort();
const eventsOf = async (name: string): Promise<any[]> => (await call(viewer, 'GET', `/machines/${node(name).mac}/events`)).body as any[];

async function clusterView(): Promise<any> {
  return (await call(viewer, 'GET', '/clusters/lab')).body;
}

async function waitReady(what: string, timeoutMs = 90_000): Promise<void> {
  await waitFor(what, async () => {
    const v = await clusterView();
    return v.state === 'ready' && (v.machines as any[]).every((m) => m.state === 'joined');
  }, timeoutMs, 250).catch(async (err: unknown) => {
    process.stdout.write(`cluster view:\n${JSON.stringify(await clusterView(), null, 1).slice(0, 8000)}\n`);
    throw err;
  });
}

/** POST /reimage, then wait until power has cycled the BMC (the orchestrator answered first). */
async function reimage(name: string): Promise<{ id: string; cycledAt: number }> {
  const r = await call(operator, 'POST', `/machines/${node(name).mac}/reimage`, {});
  assert.is(r.status, 202, r.text);
  assert.is(r.body.removal, 'pending', `${name} joined: its node must leave the cluster first`);
  const id = r.body.reimage as string;
  await waitFor(`${name}: power cycled`, async () => (await eventsOf(name)).some((e) => e.type === 'reimage' && e.data.reimage === id && (e.data.step === 'power-cycled' || e.data.step === 'failed')), 120_000, 250);
  const evs = await eventsOf(name);
  const failed = evs.find((e) => e.type === 'reimage' && e.data.reimage === id && e.data.step === 'failed');
  assert.not.ok(failed, `reimage failed: ${failed?.message}`);
  return { id, cycledAt: Date.parse(evs.find((e) => e.data?.step === 'power-cycled' && e.data.reimage === id).at) };
}

/** The orchestrator's fact, and proof from the simulator that PXE and the cycle came after it. */
async function assertRemovedBeforeBmc(name: string, id: string, chassisBefore: number): Promise<void> {
  const evs = await eventsOf(name);
  const facts = evs.filter((e) => (e.type === 'cluster.node-removed' || e.type === 'cluster.node-removal-failed') && e.data?.reimage === id);
  assert.is(facts.length, 1, JSON.stringify(facts));
  assert.is(facts[0].type, 'cluster.node-removed', facts[0].message);
  assert.is(facts[0].source, 'orchestrator');
  const removedAt = Date.parse(facts[0].at);
  const sets = (bmcs.get(name) as BmcSim).sets().slice(chassisBefore);
  const pxe = sets.find((c) => c.args === 'set boot pxe');
  assert.ok(pxe, `the BMC got no PXE boot: ${JSON.stringify(sets)}`);
  assert.ok(pxe.start * 1000 >= removedAt, 'PXE only after the node left the cluster');
  assert.ok(sets.some((c) => /^set power [01]$/.test(c.args) && c.start >= pxe.start), 'then a power cycle');
  assert.is((bmcs.get(name) as BmcSim).boot(), 'pxe');
}

/** The boot chain's part: reinstalled (new key, fresh disk), installer served, installed, phoned home. */
async function reinstall(name: string): Promise<string> {
  const n = node(name);
  const oldKey = n.hostKey.key;
  const inv = db as Store;
  const m = await inv.machines.get(n.mac);
  assert.is(m?.state, 'reimaging');
  assert.equal(m?.hostKeys, [], 'the old system\'s pinned key was dropped at the removal');
  const key = await B().reinstall(name);
  assert.is.not(key.key, oldKey);
  await phoneHome(inv, n.mac, [key]);
  return key.key;
}

test.before(async () => {
  if (missing) return;
  bed = await KubeBed.create('r', HA_RACK, { version: '1.28.4' });
  for (const name of ['cp1', 'cp2', 'w1', 'w2']) bmcs.set(name, await startBmcSim({ name: `r${name}`, password: PASSWORD }));
  rs = await startRacksmith({ env: ENV });
  admin = (await rs.cli(['token', 'create', '--role', 'admin'])).trim();
  operator = (await rs.cli(['token', 'create', '--role', 'operator'])).trim();
  viewer = (await rs.cli(['token', 'create', '--role', 'viewer'])).trim();
  db = await rs.openStore();
  B().authorize((await call(viewer, 'GET', '/ssh-key')).text);
  const c = await call(admin, 'POST', '/clusters', { name: 'lab', ubuntuRelease: '22.04', kubernetesVersion: '1.28.4', containerRuntime: 'containerd', cni: 'flannel' });
  assert.is(c.status, 201, c.text);
  for (const n of B().nodes) {
    const sim = bmcs.get(n.name);
    const bmc = sim ? { driver: 'ipmi', address: '127.0.0.1', port: sim.port, username: 'admin', password: PASSWORD } : undefined;
    const m = await call(admin, 'POST', '/machines', { mac: n.mac, hostname: n.name, role: n.role, cluster: 'lab', ip: n.ip, ...(bmc ? { bmc } : {}) });
    assert.is(m.status, 201, m.text);
  }
  for (const n of B().nodes) await phoneHome(db, n.mac, [n.hostKey]);
  await waitReady('the cluster bootstrapped');
});

test.after(async () => {
  await db?.close();
  await rs?.stop();
  if (rs) rmSync(rs.dataDir, { recursive: true, force: true });
  for (const s of bmcs.values()) await s.stop();
  if (bed) await bed.destroy();
});

function keepArtifacts(name: string): void {
  bed?.keep(join(process.cwd(), 'test-artifacts', name));
  process.stdout.write(`racksmith output (tail):\n${rs?.output().slice(-6000) ?? ''}\n`);
}

test('a joined worker reimaged through the API: drained and deleted, PXE and cycle after that, back with a new key, joined again', async () => {
  if (missing) return skipNote('reimage acceptance', missing);
  try {
    assert.equal(apiNodes(), ['cp1', 'cp2', 'cp3', 'w1', 'w2']);
    const before = (bmcs.get('w1') as BmcSim).sets().length;
    const { id } = await reimage('w1');
    await assertRemovedBeforeBmc('w1', id, before);
    const drain = calls((c) => kubectl(c, 'drain', 'w1'));
    assert.is(drain.length, 1);
    assert.is(drain[0]?.node, 'cp1', 'run from the init node, a healthy control node');
    assert.is(drain[0]?.exit, 0, drain[0]?.err);
    assert.ok(drain[0]?.args.includes('--ignore-daemonsets') && drain[0].args.includes('--delete-emptydir-data') && drain[0].args.includes('--force'));
    assert.ok(drain[0]?.args.some((a) => /^--timeout=\d+s$/.test(a)));
    const del = calls((c) => kubectl(c, 'delete', 'node', 'w1'));
    assert.is(del.length, 1);
    assert.ok((del[0]?.start ?? 0) > (drain[0]?.end ?? Infinity), 'deleted after the drain');
    const reset = calls((c) => c.node === 'w1' && c.tool === 'kubeadm' && c.args[0] === 'reset');
    assert.is(reset.length, 1, 'kubeadm reset -f on the node while it still answered');
    assert.is(reset[0]?.exit, 0);
    assert.equal(apiNodes(), ['cp1', 'cp2', 'cp3', 'w2'], 'w1 is gone from kubectl get nodes');
    assert.is(B().etcFile('w1', 'kubernetes/kubelet.conf'), null, 'reset cleared its /etc/kubernetes');
    assert.equal(etcdMembers(), ['cp1', 'cp2', 'cp3'], 'a worker removal touches no etcd member');
    assert.equal(calls((c) => c.node === 'w1' && c.tool === 'kubectl'), [], 'nothing of the removal ran on w1 but its reset');

    const joinsBefore = calls((c) => c.node === 'w1' && c.tool === 'kubeadm' && c.args[0] === 'join').length;
    await reinstall('w1');
    await waitReady('w1 rejoined');
    const joins = calls((c) => c.node === 'w1' && c.tool === 'kubeadm' && c.args[0] === 'join');
    assert.is(joins.length, joinsBefore + 1, 'joined again, once');
    assert.is(joins.at(-1)?.exit, 0, joins.at(-1)?.err);
    assert.not.ok(joins.at(-1)?.args.includes('--control-plane'));
    assert.match(B().sshdLog('w1'), /Accepted publickey for racksmith/, 'racksmith logged in to the new system (its new pinned key)');
    assert.equal(apiNodes(), ['cp1', 'cp2', 'cp3', 'w1', 'w2']);
    const steps = (await clusterView()).steps as any[];
    assert.is(steps.find((s) => s.id === `join:${node('w1').mac}`)?.state, 'done', 'the first life stays in the history');
    assert.is(steps.find((s) => s.id === `join:${node('w1').mac}#2`)?.state, 'done');
    const removal = steps.find((s) => s.id === `remove:${node('w1').mac}:${id}`);
    assert.is(removal?.state, 'done');
    assert.equal([removal.facts.via, removal.facts.drained, removal.facts.reset, removal.facts.deleted], ['cp1', true, 'done', true]);
  } catch (err) {
    keepArtifacts('reimage-worker');
    throw err;
  }
});

test('a control node of three that no longer answers: etcd member removed from cp1, LB without it, then with it again after the rejoin', async () => {
  if (missing) return;
  try {
    assert.equal(lbBackends(), ['cp1', 'cp2', 'cp3']);
    // Hung: its own `kubeadm reset` (which would leave etcd by itself) cannot run, so the member
    // must be removed through another control node's etcd.
    await B().stopSshd('cp2');
    const before = (bmcs.get('cp2') as BmcSim).sets().length;
    const { id } = await reimage('cp2');
    await assertRemovedBeforeBmc('cp2', id, before);
    assert.equal(etcdMembers(), ['cp1', 'cp3'], 'its etcd member is gone');
    assert.equal(apiNodes(), ['cp1', 'cp3', 'w1', 'w2']);
    assert.equal(lbBackends(), ['cp1', 'cp3'], 'haproxy no longer routes to it');
    const list = calls((c) => kubectl(c, 'exec', 'etcd-cp1', 'member', 'list'));
    assert.ok(list.length >= 1 && list.every((c) => c.node === 'cp1' && c.exit === 0));
    assert.match(list.at(-1)?.out ?? '', /, started, cp2, https:\/\//, 'etcdctl printed cp2 before its removal');
    const remove = calls((c) => kubectl(c, 'exec', 'member', 'remove'));
    assert.is(remove.length, 1);
    assert.is(remove[0]?.exit, 0, remove[0]?.err);
    assert.match(remove[0]?.out ?? '', /^Member +[0-9a-f]+ removed from cluster/);
    // The rewritten configuration passed `haproxy -c` and haproxy was reloaded with it.
    const applied = calls((c) => c.node === 'lb1' && c.tool === 'systemctl' && c.args[0] === 'reload');
    assert.ok(applied.length >= 1, 'haproxy reloaded');
    const removal = ((await clusterView()).steps as any[]).find((s) => s.id === `remove:${node('cp2').mac}:${id}`);
    assert.match(String(removal?.facts.reset), /^skipped: /, 'no reset on a node that does not answer');
    assert.match(String(removal?.facts.etcdMember), /^[0-9a-f]+$/);

    await reinstall('cp2');
    await waitReady('cp2 rejoined');
    const join = calls((c) => c.node === 'cp2' && c.tool === 'kubeadm' && c.args[0] === 'join').at(-1);
    assert.is(join?.exit, 0, join?.err);
    assert.ok(join?.args.includes('--control-plane'), 'a control-plane join');
    assert.equal(etcdMembers(), ['cp1', 'cp2', 'cp3'], 'a member again');
    assert.equal(lbBackends(), ['cp1', 'cp2', 'cp3'], 'and a backend again');
  } catch (err) {
    keepArtifacts('reimage-control');
    throw err;
  }
});

test('the init node: removed through another control node, rejoined as a control node (never init again)', async () => {
  if (missing) return;
  try {
    const initsBefore = calls((c) => c.tool === 'kubeadm' && c.args[0] === 'init' && c.args[1] !== 'phase').length;
    const before = (bmcs.get('cp1') as BmcSim).sets().length;
    const t0 = Date.now();
    const { id } = await reimage('cp1');
    await assertRemovedBeforeBmc('cp1', id, before);
    // cp1 still answered: its own kubeadm reset left etcd, and etcdctl on cp2 found no member to remove.
    const reset = calls((c) => c.node === 'cp1' && c.tool === 'kubeadm' && c.args[0] === 'reset' && c.start > t0);
    assert.is(reset.length, 1);
    assert.match(reset[0]?.out ?? '', /Removing member cp1 from the etcd cluster/);
    const list = calls((c) => kubectl(c, 'exec', 'member', 'list') && c.start > t0);
    assert.ok(list.length >= 1 && list.every((c) => c.node === 'cp2' && c.args.includes('etcd-cp2')), 'etcdctl ran on cp2');
    assert.not.match(list.at(-1)?.out ?? '', /cp1/);
    assert.equal(calls((c) => kubectl(c, 'exec', 'member', 'remove') && c.start > t0), []);
    assert.equal(calls((c) => c.node === 'cp1' && c.start > t0 && !(c.tool === 'kubeadm' && c.args[0] === 'reset')), [], 'on cp1 only its own reset ran');
    assert.ok(calls((c) => kubectl(c, 'drain', 'cp1') && c.start > t0).every((c) => c.node === 'cp2'), 'drained from cp2');
    assert.equal(etcdMembers(), ['cp2', 'cp3']);
    assert.equal(lbBackends(), ['cp2', 'cp3']);

    await reinstall('cp1');
    await waitReady('cp1 rejoined');
    assert.is(calls((c) => c.tool === 'kubeadm' && c.args[0] === 'init' && c.args[1] !== 'phase').length, initsBefore, 'init never ran again');
    const join = calls((c) => c.node === 'cp1' && c.tool === 'kubeadm' && c.args[0] === 'join').at(-1);
    assert.is(join?.exit, 0, join?.err);
    assert.ok(join?.args.includes('--control-plane'));
    assert.equal(etcdMembers(), ['cp1', 'cp2', 'cp3']);
    assert.equal(lbBackends(), ['cp1', 'cp2', 'cp3']);
    const kc = await call(admin, 'GET', '/clusters/lab/kubeconfig');
    assert.is(kc.status, 200, 'the kubeconfig stays available');
    assert.match(kc.text, /kind: Config/);
  } catch (err) {
    keepArtifacts('reimage-init-node');
    throw err;
  }
});

test('kill -9 while the node is being drained: the restarted racksmith finishes the removal, power goes on, the worker rejoins', async () => {
  if (missing) return;
  const controls = ['cp1', 'cp2', 'cp3'];
  try {
    for (const c of controls) B().setFault(c, 'hold-drain', 'until the test removes this file');
    const before = (bmcs.get('w2') as BmcSim).sets().length;
    const r = await call(operator, 'POST', `/machines/${node('w2').mac}/reimage`, {});
    assert.is(r.status, 202, r.text);
    const id = r.body.reimage as string;
    await waitFor('the drain to be held', async () => controls.some((c) => existsSync(join(node(c).dir, 'held-drain'))), 60_000, 100);
    await (rs as RacksmithProcess).kill9();
    assert.equal((bmcs.get('w2') as BmcSim).sets().slice(before), [], 'the BMC untouched while the node is still in the cluster');
    for (const c of controls) B().setFault(c, 'hold-drain', null);
    rs = await startRacksmith({ env: ENV, dataDir: (rs as RacksmithProcess).dataDir });

    await waitFor('w2: power cycled after the restart', async () => (await eventsOf('w2')).some((e) => e.type === 'reimage' && e.data.reimage === id && e.data.step === 'power-cycled'), 120_000, 250);
    await assertRemovedBeforeBmc('w2', id, before);
    const drains = calls((c) => kubectl(c, 'drain', 'w2'));
    assert.ok(drains.length >= 2, `the drain ran again after the restart (${drains.length})`);
    assert.ok(drains.every((c) => c.exit === 0), 'a drain of a cordoned node succeeds again');
    assert.is(calls((c) => kubectl(c, 'delete', 'node', 'w2')).length, 1);
    assert.equal(apiNodes(), ['cp1', 'cp2', 'cp3', 'w1']);
    assert.match((rs as RacksmithProcess).output(), /resuming reimage/, 'power resumed its side too');

    await reinstall('w2');
    await waitReady('w2 rejoined');
    assert.equal(apiNodes(), ['cp1', 'cp2', 'cp3', 'w1', 'w2']);
  } catch (err) {
    keepArtifacts('reimage-kill');
    throw err;
  } finally {
    for (const c of controls) B().setFault(c, 'hold-drain', null);
    if (rs && (rs.child.exitCode !== null || rs.child.signalCode !== null)) rs = await startRacksmith({ env: ENV, dataDir: rs.dataDir });
  }
});

test.run();
