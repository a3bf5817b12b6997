import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { NODE_REMOVAL_FAILED_EVENT, NODE_REMOVED_EVENT, REIMAGE_EVENT } from '../server/inventory/reimage.js';
import type { InventoryEvent } from '../server/inventory/model.js';
import type { Mac } from '../server/lib/mac.js';
import { FakeRack, HOSTNAMES } from './lib/fake-shell.js';
import { tempStore, type TempStore } from './lib/inventory.js';
import { addMembers, member, onFakeRack, phoneHome, startOrchestrator, waitFor, type Member } from './lib/orch-harness.js';

/**
 * The orchestrator's side of a reimage, in-process against the in-memory rack: the test plays
 * the power service exactly as the contract says (server/inventory/reimage.ts — the `reimage`
 * transition, then a `reimage` event with step `remove-from-cluster`) and the boot chain (a
 * reinstall, a phone-home with a new host key). The real process, sshd nodes, the stand-in and an
 * ipmi_sim BMC are in orchestrator-reimage.heavy.test.ts.
 */
const test = suite('orchestrator: reimage (removal, generations, rejoin)');

const OLD_KEY = [{ type: 'ssh-ed25519', key: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyOfTheFirstInstall00000000000000 root@x' }];
const NEW_KEY = [{ type: 'ssh-ed25519', key: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyOfTheSecondInstall0000000000000 root@x' }];
const LB = member('lb1', 'loadbalancer', '10.0.0.10');
const CP = [member('cp1', 'control-plane', '10.0.0.11'), member('cp2', 'control-plane', '10.0.0.12'), member('cp3', 'control-plane', '10.0.0.13')];
const W = [member('w1', 'worker', '10.0.0.21'), member('w2', 'worker', '10.0.0.22')];
const ALL: Member[] = [LB, ...CP, ...W];
for (const m of ALL) HOSTNAMES.set(m.ip, m.hostname);
type Inv = TempStore;

async function readyCluster(inv: Inv, members: readonly Member[]): Promise<void> {
  await inv.clusters.create({ name: 'lab', ubuntuRelease: '22.04', kubernetesVersion: '1.28.4', containerRuntime: 'containerd', cni: 'flannel' });
  await addMembers(inv, 'lab', members);
  for (const m of members) await phoneHome(inv, m.mac, OLD_KEY);
  await waitFor('cluster ready', async () => (await inv.clusters.get('lab'))?.state === 'ready');
}

/** What the power service writes (docs/power.md, "The contract with the orchestrator"). */
async function askRemoval(inv: Inv, m: Member, id: string): Promise<void> {
  await inv.machines.transition(m.mac, 'reimage', { source: 'power', message: `reimage ${id} accepted`, data: { reimage: id, removal: 'pending' } });
  await inv.events.append({ mac: m.mac, cluster: 'lab', type: REIMAGE_EVENT, source: 'power', message: 'waiting for the orchestrator', data: { reimage: id, step: 'remove-from-cluster', cluster: 'lab', hostname: m.hostname, role: m.role } });
}

async function answerOf(inv: Inv, mac: Mac, id: string, timeoutMs = 20_000): Promise<InventoryEvent> {
  return waitFor(`the orchestrator's answer for ${mac}`, async () => (await inv.events.list({ mac })).find((e) => (e.type === NODE_REMOVED_EVENT || e.type === NODE_REMOVAL_FAILED_EVENT) && e.data?.['reimage'] === id), timeoutMs);
}

/** What the boot chain does after the power cycle: installer served, OS on disk, phone-home with the new system's key. */
async function reinstall(inv: Inv, rack: FakeRack, m: Member): Promise<void> {
  rack.reinstall(m.ip);
  await phoneHome(inv, m.mac, NEW_KEY);
}

const scriptsOn = (rack: FakeRack, m: Member, needle: string): string[] => rack.callsOn(m.ip).map((c) => c.script).filter((s) => s.includes(needle));
const steps = (inv: Inv) => inv.orchestration.steps('lab');
const joinedAll = async (inv: Inv, members: readonly Member[]): Promise<boolean> => {
  const ms = await inv.machines.list({ cluster: 'lab' });
  return (await inv.clusters.get('lab'))?.state === 'ready' && members.every((x) => ms.find((m) => m.mac === x.mac)?.state === 'joined');
};

test('DELETE of joined nodes: a control node leaves (etcd member, Node, LB) and its record goes; a worker that does not answer is refused without force and removed with it', async () => {
  await onFakeRack(async ({ inv, rack, h }) => {
    const members = [LB, ...CP, W[0]!];
    await readyCluster(inv, members);
    const [, , cp3] = CP as [Member, Member, Member];
    const m3 = await inv.machines.get(cp3.mac);
    const pending = await h.orchestrator.removeFromCluster(m3!, { force: false });
    assert.is(pending?.['removal'], 'pending');
    await waitFor('cp3 deleted', async () => (await inv.machines.get(cp3.mac)) === null);
    assert.equal([...rack.cluster.members.keys()].sort(), ['cp1', 'cp2'], 'its etcd member is gone');
    assert.not.ok(rack.cluster.nodes.has(cp3.ip));
    const lbScripts = rack.callsOn(LB.ip).map((c) => [...c.script.matchAll(/server (\S+) [\d.]+:6443/g)].map((m) => m[1] as string));
    assert.equal(lbScripts.at(-1), ['cp1', 'cp2'], 'the LB no longer routes to it');
    const facts = await inv.events.list({ mac: cp3.mac });
    assert.ok(facts.some((e) => e.type === NODE_REMOVED_EVENT && e.data?.['request'] === pending?.['request']));

    const w1 = W[0]!;
    rack.node(w1.ip).down = true;
    const m1 = await inv.machines.get(w1.mac);
    const refused = await h.orchestrator.removeFromCluster(m1!, { force: false });
    const failed = await waitFor('refused', async () => (await inv.events.list({ mac: w1.mac })).find((e) => e.type === NODE_REMOVAL_FAILED_EVENT && e.data?.['request'] === refused?.['request']));
    assert.match(failed.message, /does not answer over SSH.*with force/);
    assert.ok(await inv.machines.get(w1.mac), 'kept');
    const forced = await h.orchestrator.removeFromCluster(m1!, { force: true });
    assert.is.not(forced?.['request'], refused?.['request'], 'a new request');
    await waitFor('w1 deleted', async () => (await inv.machines.get(w1.mac)) === null);
    assert.not.ok(rack.cluster.nodes.has(w1.ip));
  });
});

test('a delete whose answer is out is over, even before its record is marked answered: asking again (with force) right after the refusal is a new request', async () => {
  await onFakeRack(async ({ inv, h }) => {
    await readyCluster(inv, [LB, CP[0]!, W[0]!]);
    // The driver stopped between the two writes of an answer: the event is out, the record not yet marked.
    await h.stop();
    const w1 = (await inv.machines.get(W[0]!.mac))!;
    const step = `remove:${w1.mac}:del-open`;
    await inv.orchestration.saveStep({ cluster: 'lab', id: step, kind: 'remove-node', mac: w1.mac, state: 'failed', attempts: 1, startedAt: null, endedAt: null, output: [], error: 'does not answer over SSH', data: { purpose: 'delete', reimage: 'del-open', askedAt: Date.now(), force: false } });
    const again = await h.orchestrator.removeFromCluster(w1, { force: true });
    assert.is(again?.['request'], 'del-open', 'while unanswered, the open request is the answer');
    await inv.events.append({ mac: w1.mac, cluster: 'lab', type: NODE_REMOVAL_FAILED_EVENT, source: 'orchestrator', message: 'refused', data: { request: 'del-open', step } });
    const forced = await h.orchestrator.removeFromCluster(w1, { force: true });
    assert.is.not(forced?.['request'], 'del-open', 'a new request once the refusal is out');
    assert.is(forced?.['force'], true, 'and it carries the force asked for');
    assert.ok((await inv.orchestration.steps('lab')).some((s) => s.id === forced?.['step'] && s.data['force'] === true));
  });
});

test('a worker: drained and deleted from the init node, reset, answered; back with a new key it joins again as a new step', async () => {
  await onFakeRack(async ({ inv, rack }) => {
    const members = [LB, CP[0]!, ...W];
    await readyCluster(inv, members);
    const w1 = W[0]!;
    await askRemoval(inv, w1, 'r1');
    const fact = await answerOf(inv, w1.mac, 'r1');
    assert.is(fact.type, NODE_REMOVED_EVENT, fact.message);
    assert.is(fact.source, 'orchestrator');
    assert.is(fact.data?.['step'], `remove:${w1.mac}:r1`);
    const cp1 = CP[0]!;
    const drain = scriptsOn(rack, cp1, ' drain ');
    assert.is(drain.length, 1);
    assert.match(drain[0] ?? '', /drain 'w1' --ignore-daemonsets --delete-emptydir-data --force --timeout=10s/);
    assert.is(scriptsOn(rack, cp1, " delete node 'w1' --ignore-not-found").length, 1);
    assert.ok(rack.callsOn(w1.ip).some((c) => c.script.includes('kubeadm reset -f')), 'best-effort reset on the node itself');
    assert.not.ok(rack.cluster.nodes.has(w1.ip), 'gone from the nodes');
    assert.equal(scriptsOn(rack, cp1, 'etcdctl'), [], 'a worker has no etcd member');
    // The old system's pinned key is dropped: only the next phone-home can pin one.
    assert.equal((await inv.machines.get(w1.mac))?.hostKeys, []);
    const rec = (await steps(inv)).find((s) => s.id === `remove:${w1.mac}:r1`);
    assert.is(rec?.state, 'done');
    assert.equal([rec?.data['viaNode'], rec?.data['nodeFound'], rec?.data['drained'], rec?.data['reset'], rec?.data['deleted']], ['cp1', true, true, 'done', true]);
    const evs = await inv.events.list({ mac: w1.mac });
    assert.ok(evs.some((e) => e.type === 'orchestration.output' && /node\/w1 drained/.test(e.message)), 'the drain output is in the machine events');

    const joinsBefore = scriptsOn(rack, w1, 'kubeadm join').length;
    await reinstall(inv, rack, w1);
    await waitFor('w1 joined again, cluster ready', () => joinedAll(inv, members));
    assert.is(scriptsOn(rack, w1, 'kubeadm join').length, joinsBefore + 1);
    const all = await steps(inv);
    assert.is(all.find((s) => s.id === `join:${w1.mac}`)?.state, 'done', 'the first life stays in the history');
    assert.is(all.find((s) => s.id === `join:${w1.mac}#2`)?.state, 'done');
    assert.equal((await inv.machines.get(w1.mac))?.hostKeys, NEW_KEY);
    assert.ok(rack.cluster.nodes.has(w1.ip));
  });
});

test('control nodes: etcd member and node removed, LB without it, then with it again; the init node too, from another control node', async () => {
  await onFakeRack(async ({ inv, rack, h }) => {
    const members = [LB, ...CP, W[0]!];
    const [cp1, cp2] = CP as [Member, Member, Member];
    const backendsApplied = (): string[][] => rack.callsOn(LB.ip).map((c) => [...c.script.matchAll(/server (\S+) [\d.]+:6443/g)].map((m) => m[1] as string));
    await readyCluster(inv, members);
    assert.equal(backendsApplied().at(-1), ['cp1', 'cp2', 'cp3']);
    assert.equal([...rack.cluster.members.keys()].sort(), ['cp1', 'cp2', 'cp3']);

    await askRemoval(inv, cp2, 'r2');
    assert.is((await answerOf(inv, cp2.mac, 'r2')).type, NODE_REMOVED_EVENT);
    assert.equal([...rack.cluster.members.keys()].sort(), ['cp1', 'cp3'], 'its etcd member is gone');
    assert.ok(scriptsOn(rack, cp1, "'member' 'list'").length >= 1, 'etcdctl ran on the init node');
    assert.equal(backendsApplied().at(-1), ['cp1', 'cp3'], 'the LB no longer routes to it');
    await reinstall(inv, rack, cp2);
    await waitFor('cp2 back', () => joinedAll(inv, members));
    assert.equal(backendsApplied().at(-1), ['cp1', 'cp2', 'cp3'], 'and routes to it again after the rejoin');
    assert.ok(rack.cluster.members.has('cp2'));
    assert.match(scriptsOn(rack, cp2, 'kubeadm join').at(-1) ?? '', /--control-plane/);

    // The init node: removed through another control node, rejoined as a control node — never init again.
    const listsOnCp1 = scriptsOn(rack, cp1, "'member' 'list'").length;
    await askRemoval(inv, cp1, 'r3');
    const fact = await answerOf(inv, cp1.mac, 'r3');
    assert.is(fact.type, NODE_REMOVED_EVENT, fact.message);
    assert.match(fact.message, /from cp2/);
    assert.ok(scriptsOn(rack, cp2, "'member' 'list'").length >= 1, 'etcdctl ran on cp2');
    assert.equal(scriptsOn(rack, cp1, "'member' 'list'").length, listsOnCp1, 'nothing of the removal ran on cp1 itself');
    assert.equal([...rack.cluster.members.keys()].sort(), ['cp2', 'cp3']);
    assert.equal(backendsApplied().at(-1), ['cp2', 'cp3']);
    await reinstall(inv, rack, cp1);
    await waitFor('cp1 back', () => joinedAll(inv, members));
    assert.is(rack.calls.filter((c) => c.script.includes('kubeadm init --config')).length, 1, 'init ran once, ever');
    assert.match(scriptsOn(rack, cp1, 'kubeadm join').at(-1) ?? '', /--control-plane/);
    assert.equal(backendsApplied().at(-1), ['cp1', 'cp2', 'cp3']);
    assert.match((await h.orchestrator.kubeconfig('lab')) ?? '', /kind: Config/, 'the kubeconfig stays available');
    const all = await steps(inv);
    assert.is(all.find((s) => s.id === `join:${cp1.mac}#2`)?.kind, 'join-control');
  });
});

test('a powered-off worker: no reset, still removed; a drain refused by a budget is retried, then answered "failed"', async () => {
  await onFakeRack(async ({ inv, rack }) => {
    const members = [LB, CP[0]!, ...W];
    await readyCluster(inv, members);
    rack.node(W[0]!.ip).down = true;
    await askRemoval(inv, W[0]!, 'off1');
    const off = await answerOf(inv, W[0]!.mac, 'off1');
    assert.is(off.type, NODE_REMOVED_EVENT, off.message);
    const rec = (await steps(inv)).find((s) => s.id === `remove:${W[0]!.mac}:off1`);
    assert.match(String(rec?.data['reset']), /^skipped: .*no answer/);

    rack.node(CP[0]!.ip).failDrains = Infinity;
    await askRemoval(inv, W[1]!, 'pdb1');
    const failed = await answerOf(inv, W[1]!.mac, 'pdb1');
    assert.is(failed.type, NODE_REMOVAL_FAILED_EVENT);
    assert.match(String(failed.data?.['reason']), /kubectl drain w2 failed: .*disruption budget/);
    assert.is(scriptsOn(rack, CP[0]!, " drain 'w2'").length, 3, 'tried as often as configured');
    assert.ok(rack.cluster.nodes.has(W[1]!.ip), 'not deleted');
    assert.equal((await inv.machines.get(W[1]!.mac))?.hostKeys, OLD_KEY, 'keys kept: the old system still runs');
    assert.is((await inv.machines.get(W[1]!.mac))?.state, 'reimaging', 'the orchestrator fails no machine; power does');
  });
});

test('stopped mid-removal, a new start finishes it; the last healthy control node is never removed', async () => {
  const inv = await tempStore();
  const rack = new FakeRack();
  let h = await startOrchestrator(inv, rack, { owner: 'same' });
  const members = [LB, CP[0]!, ...W];
  try {
    await readyCluster(inv, members);
    rack.delayMs = 400;
    await askRemoval(inv, W[0]!, 'cut');
    await waitFor('the removal running', async () => (await steps(inv)).find((s) => s.id === `remove:${W[0]!.mac}:cut` && s.state === 'running'), 10_000, 10);
    await h.stop();
    assert.not.ok((await inv.events.list({ mac: W[0]!.mac })).some((e) => e.type === NODE_REMOVED_EVENT), 'not answered yet');
    rack.delayMs = 0;
    h = await startOrchestrator(inv, rack, { owner: 'same' });
    assert.is((await answerOf(inv, W[0]!.mac, 'cut')).type, NODE_REMOVED_EVENT);
    assert.is((await steps(inv)).find((s) => s.id === `remove:${W[0]!.mac}:cut`)?.state, 'done');

    await askRemoval(inv, CP[0]!, 'last');
    const refused = await answerOf(inv, CP[0]!.mac, 'last');
    assert.is(refused.type, NODE_REMOVAL_FAILED_EVENT);
    assert.match(String(refused.data?.['reason']), /cp1 is the last healthy control-plane node of cluster lab/);
    assert.equal(scriptsOn(rack, CP[0]!, 'etcdctl'), []);
  } finally {
    await h.stop();
    await inv.destroy();
  }
});

test.run();
