import { join } from 'node:path';
import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { openPgStore } from '../server/inventory/postgres/index.js';
import { openSqliteInventory } from '../server/inventory/sqlite/index.js';
import type { Store, StepWrite } from '../server/inventory/store.js';
import type { Mac } from '../server/lib/mac.js';
import { TEST_ENGINE, tempInventory, tempStore } from './lib/inventory.js';

/** Orchestration steps and the per-cluster lock, in the real store of the run's engine. */
const test = suite(`orchestration store (${TEST_ENGINE})`);

const NEW_CLUSTER = { name: 'lab', ubuntuRelease: '22.04', kubernetesVersion: '1.28.4', containerRuntime: 'containerd', cni: 'flannel' } as const;
const MAC = '52:54:00:00:00:11' as Mac;

function write(id: string, state: StepWrite['state'], over: Partial<StepWrite> = {}): StepWrite {
  return { cluster: 'lab', id, kind: id.split(':')[0] ?? id, mac: MAC, state, attempts: 1, startedAt: '2026-01-01T00:00:00.000Z', endedAt: null, output: [], error: null, data: {}, ...over };
}

test('schema version 3 is applied', async () => {
  const inv = tempInventory();
  try {
    assert.ok((inv.db.pragma('user_version', { simple: true }) as number) >= 3);
  } finally {
    await inv.destroy();
  }
});

test('steps: insert, replace in place, order of first creation, reset of failed ones', async () => {
  const inv = await tempStore();
  try {
    await inv.clusters.create(NEW_CLUSTER);
    const repo = inv.orchestration;
    await repo.saveStep(write('prepare', 'running'));
    await repo.saveStep(write('init', 'running'));
    const done = await repo.saveStep(write('prepare', 'done', { endedAt: '2026-01-01T00:00:02.000Z', output: ['CA in place'], data: { endpoint: '10.0.0.10:6443' } }));
    assert.is(done.seq, 1);
    await repo.saveStep(write('init', 'failed', { error: 'exited 1', attempts: 1 }));
    const steps = await repo.steps('lab');
    assert.equal(steps.map((s) => [s.id, s.state, s.seq]), [['prepare', 'done', 1], ['init', 'failed', 2]]);
    assert.equal(steps[0]?.output, ['CA in place']);
    assert.equal(steps[0]?.data, { endpoint: '10.0.0.10:6443' });
    assert.equal(await repo.resetFailed('lab'), ['init']);
    const after = await repo.steps('lab');
    assert.equal(after.map((s) => [s.id, s.state, s.attempts, s.error]), [['prepare', 'done', 1, null], ['init', 'pending', 0, null]]);
  } finally {
    await inv.destroy();
  }
});

test('all steps at once: each cluster\'s in its own order, the same as read cluster by cluster', async () => {
  const inv = await tempStore();
  try {
    await inv.clusters.create({ ...NEW_CLUSTER, name: 'rack-b' });
    await inv.clusters.create({ ...NEW_CLUSTER, name: 'rack-a' });
    const repo = inv.orchestration;
    await repo.saveStep(write('init', 'running', { cluster: 'rack-b' }));
    await repo.saveStep(write('prepare', 'running', { cluster: 'rack-a' }));
    await repo.saveStep(write('join', 'pending', { cluster: 'rack-b' }));
    await repo.saveStep(write('init', 'done', { cluster: 'rack-b', endedAt: '2026-01-01T00:00:05.000Z' }));
    const all = await repo.allSteps();
    assert.equal(all.map((s) => [s.cluster, s.id, s.seq, s.state]), [['rack-a', 'prepare', 1, 'running'], ['rack-b', 'init', 1, 'done'], ['rack-b', 'join', 2, 'pending']]);
    assert.equal(all.filter((s) => s.cluster === 'rack-b'), await repo.steps('rack-b'));
  } finally {
    await inv.destroy();
  }
});

test('lock: one owner at a time; expiry hands it over; renew fails once taken; the same owner takes it back at once', async () => {
  let t = Date.parse('2026-01-01T00:00:00.000Z');
  const inv = await tempStore({ now: () => new Date(t) });
  try {
    await inv.clusters.create(NEW_CLUSTER);
    const repo = inv.orchestration;
    assert.is((await repo.acquireLock('lab', 'A', 'host-a pid 1', 60_000)).owner, 'A');
    const seen = await repo.acquireLock('lab', 'B', 'host-b pid 2', 60_000);
    assert.is(seen.owner, 'A', 'B does not take a live lock');
    assert.is(seen.holder, 'host-a pid 1');
    assert.ok(await repo.renewLock('lab', 'A', 60_000));
    t += 59_000;
    assert.is((await repo.acquireLock('lab', 'B', 'host-b', 60_000)).owner, 'A', 'renewed: still A');
    t += 61_000;
    assert.is((await repo.acquireLock('lab', 'B', 'host-b', 60_000)).owner, 'B', 'expired: B takes it');
    assert.not.ok(await repo.renewLock('lab', 'A', 60_000), 'A learns it lost the lock');
    await repo.releaseLock('lab', 'A');
    assert.is((await repo.lock('lab'))?.owner, 'B', 'a non-owner cannot release');
    assert.is((await repo.acquireLock('lab', 'B', 'host-b restarted', 60_000)).holder, 'host-b restarted', 'its own lock is taken back at once');
    await repo.releaseLock('lab', 'B');
    assert.is(await repo.lock('lab'), null);
  } finally {
    await inv.destroy();
  }
});

test('two connections to one database (two processes): exactly one holds the lock', async () => {
  const inv = await tempStore();
  const other: Store =
    inv.engine === 'sqlite'
      ? openSqliteInventory({ file: join(inv.dir, 'racksmith.db'), box: inv.box })
      : await openPgStore({ url: inv.url ?? '', box: inv.box });
  try {
    await inv.clusters.create(NEW_CLUSTER);
    const a = inv.orchestration;
    const b = other.orchestration;
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 ? a : b).acquireLock('lab', i % 2 ? 'A' : 'B', 'x', 60_000)));
    const owners = new Set(results.map((r) => r.owner));
    assert.is(owners.size, 1);
  } finally {
    await other.close();
    await inv.destroy();
  }
});

test('deleting the cluster deletes its steps and lock', async () => {
  const inv = await tempStore();
  try {
    await inv.clusters.create(NEW_CLUSTER);
    const repo = inv.orchestration;
    await repo.saveStep(write('prepare', 'done'));
    await repo.acquireLock('lab', 'A', 'x', 60_000);
    await inv.clusters.delete('lab');
    assert.equal(await repo.steps('lab'), []);
    assert.is(await repo.lock('lab'), null);
  } finally {
    await inv.destroy();
  }
});

test.run();
