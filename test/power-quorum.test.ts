import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import type { MachineState } from '../server/inventory/lifecycle.js';
import type { InventoryEvent, Machine } from '../server/inventory/model.js';
import { NODE_REMOVAL_FAILED_EVENT, NODE_REMOVED_EVENT, awaitsClusterRemoval, needsClusterRemoval, reimageProgress } from '../server/inventory/reimage.js';
import type { Mac } from '../server/lib/mac.js';
import { quorumAfterRemoval } from '../server/power/quorum.js';

type M = Pick<Machine, 'mac' | 'hostname' | 'role' | 'state' | 'failedFrom'>;
const cp = (n: number, state: MachineState, failedFrom: MachineState | null = null): M => ({ mac: `52:54:00:00:00:0${n}` as Mac, hostname: `cp${n}`, role: 'control-plane', state, failedFrom });
const worker = (n: number, state: MachineState): M => ({ mac: `52:54:00:00:01:0${n}` as Mac, hostname: `w${n}`, role: 'worker', state, failedFrom: null });

const quorum = suite('etcd quorum when a control-plane node leaves');
const CASES: [string, M, M[], boolean][] = [
  ['3 healthy: one may go', cp(1, 'joined'), [cp(1, 'joined'), cp(2, 'joined'), cp(3, 'joined')], true],
  ['3 control, one already failed: a healthy one may not go', cp(1, 'joined'), [cp(1, 'joined'), cp(2, 'joined'), cp(3, 'failed', 'joined')], false],
  ['3 control, one failed: the failed one may go', cp(3, 'failed', 'joined'), [cp(1, 'joined'), cp(2, 'joined'), cp(3, 'failed', 'joined')], true],
  ['3 control, one being reimaged: another may not go', cp(1, 'joined'), [cp(1, 'joined'), cp(2, 'joined'), cp(3, 'reimaging')], false],
  ['3 control, one still joining: a healthy one may not go', cp(1, 'joined'), [cp(1, 'joined'), cp(2, 'joined'), cp(3, 'joining')], false],
  ['a control node that failed while provisioning is no member', cp(1, 'joined'), [cp(1, 'joined'), cp(2, 'joined'), cp(3, 'failed', 'provisioning')], true],
  ['5 control, one failed: a healthy one may go', cp(1, 'joined'), [cp(1, 'joined'), cp(2, 'joined'), cp(3, 'joined'), cp(4, 'joined'), cp(5, 'failed', 'joined')], true],
  ['5 control, two failed: a healthy one may not go', cp(1, 'joined'), [cp(1, 'joined'), cp(2, 'joined'), cp(3, 'joined'), cp(4, 'failed', 'joined'), cp(5, 'failed', 'joining')], false],
  ['2 healthy: one may go (etcd shrinks to 1)', cp(1, 'joined'), [cp(1, 'joined'), cp(2, 'joined')], true],
  ['the last member may not go', cp(1, 'joined'), [cp(1, 'joined'), worker(1, 'joined')], false],
  ['a control node that never joined may always go', cp(3, 'ready'), [cp(1, 'joined'), cp(2, 'failed', 'joined'), cp(3, 'ready')], true],
  ['a worker never touches etcd', worker(1, 'joined') as M, [cp(1, 'joined'), cp(2, 'failed', 'joined'), worker(1, 'joined')], true],
];
for (const [name, target, cluster, ok] of CASES) {
  quorum(name, () => {
    const v = quorumAfterRemoval(target, cluster);
    assert.is(v.ok, ok, JSON.stringify(v));
    assert.is(v.reason === null, ok);
  });
}
quorum('the refusal names the unhealthy member', () => {
  const v = quorumAfterRemoval(cp(1, 'joined'), [cp(1, 'joined'), cp(2, 'joined'), cp(3, 'failed', 'joined')]);
  assert.match(v.reason ?? '', /2 member\(s\) of which 1 healthy, below the quorum of 2 \(not healthy: cp3\)/);
});
quorum.run();

const removal = suite('reimage: does the node leave its cluster first?');
const REMOVAL: [string, Pick<Machine, 'role' | 'state' | 'failedFrom'>, boolean][] = [
  ['joined worker', { role: 'worker', state: 'joined', failedFrom: null }, true],
  ['joined control plane', { role: 'control-plane', state: 'joined', failedFrom: null }, true],
  ['joining worker (a join may have half happened)', { role: 'worker', state: 'joining', failedFrom: null }, true],
  ['worker failed after joining', { role: 'worker', state: 'failed', failedFrom: 'joined' }, true],
  ['ready: never joined', { role: 'worker', state: 'ready', failedFrom: null }, false],
  ['provisioning', { role: 'control-plane', state: 'provisioning', failedFrom: null }, false],
  ['failed while installing', { role: 'worker', state: 'failed', failedFrom: 'installed' }, false],
  ['the load balancer is no Kubernetes node', { role: 'loadbalancer', state: 'joined', failedFrom: null }, false],
];
for (const [name, m, want] of REMOVAL) removal(name, () => assert.is(needsClusterRemoval(m), want));
removal.run();

const progress = suite('reimage progress from the event log');
let nextId = 1;
const ev = (type: string, data: Record<string, unknown>): InventoryEvent => ({ id: nextId++, at: new Date(1_700_000_000_000 + nextId * 1000).toISOString(), mac: '52:54:00:00:00:01' as Mac, cluster: 'c', type, source: 'test', message: type, data });

progress('no reimage yet', () => assert.is(reimageProgress([ev('power', { outcome: 'ok' })]), null));
progress('accepted → remove-from-cluster → removed (orchestrator fact) → boot → cycled', () => {
  const events = [ev('state', { event: 'reimage', from: 'joined', to: 'reimaging', reimage: 'r1', removal: 'pending' })];
  let p = reimageProgress(events);
  assert.is(p?.step, 'accepted');
  assert.is(p?.removal, 'pending');
  events.push(ev('reimage', { reimage: 'r1', step: 'remove-from-cluster' }));
  p = reimageProgress(events);
  assert.ok(awaitsClusterRemoval({ state: 'reimaging' }, p));
  events.push(ev(NODE_REMOVED_EVENT, { reimage: 'r1' }));
  p = reimageProgress(events);
  assert.is(p?.removal, 'done');
  assert.not.ok(awaitsClusterRemoval({ state: 'reimaging' }, p));
  events.push(ev('reimage', { reimage: 'r1', step: 'removed-from-cluster' }), ev('reimage', { reimage: 'r1', step: 'next-boot-set' }), ev('reimage', { reimage: 'r1', step: 'power-cycled' }));
  assert.is(reimageProgress(events)?.step, 'power-cycled');
});
progress('a removal failure is recorded with its reason', () => {
  const p = reimageProgress([
    ev('state', { event: 'reimage', reimage: 'r2', removal: 'pending' }),
    ev('reimage', { reimage: 'r2', step: 'remove-from-cluster' }),
    ev(NODE_REMOVAL_FAILED_EVENT, { reimage: 'r2', reason: 'etcd member remove: context deadline exceeded' }),
  ]);
  assert.is(p?.removal, 'failed');
  assert.match(p?.removalReason ?? '', /deadline/);
});
progress('facts of an older reimage do not count for a newer one', () => {
  const p = reimageProgress([
    ev('state', { event: 'reimage', reimage: 'old', removal: 'pending' }),
    ev('state', { event: 'reimage', reimage: 'new', removal: 'pending' }),
    ev(NODE_REMOVED_EVENT, { reimage: 'old' }),
  ]);
  assert.is(p?.id, 'new');
  assert.is(p?.removal, 'pending');
});
progress('a failed step is remembered until the next step', () => {
  const events = [ev('state', { event: 'reimage', reimage: 'r3', removal: 'not-needed' }), ev('reimage', { reimage: 'r3', step: 'removed-from-cluster' }), ev('reimage', { reimage: 'r3', step: 'failed', failedStep: 'reimage.set-next-boot', reason: 'BMC said no' })];
  assert.equal(reimageProgress(events)?.failure, { step: 'reimage.set-next-boot', reason: 'BMC said no' });
  assert.is(reimageProgress(events)?.step, 'removed-from-cluster');
  events.push(ev('reimage', { reimage: 'r3', step: 'next-boot-set' }));
  assert.is(reimageProgress(events)?.failure, null);
});
progress('a failed reimage whose removal never happened still needs it next time', () => {
  const previous = reimageProgress([ev('state', { event: 'reimage', reimage: 'r4', removal: 'pending' }), ev('reimage', { reimage: 'r4', step: 'remove-from-cluster' })]);
  assert.ok(needsClusterRemoval({ role: 'worker', state: 'failed', failedFrom: 'reimaging' }, previous));
  const done = reimageProgress([ev('state', { event: 'reimage', reimage: 'r5', removal: 'pending' }), ev(NODE_REMOVED_EVENT, { reimage: 'r5' })]);
  assert.not.ok(needsClusterRemoval({ role: 'worker', state: 'failed', failedFrom: 'reimaging' }, done));
});
progress.run();
