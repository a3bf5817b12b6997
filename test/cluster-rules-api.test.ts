import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import type { Store } from '../server/inventory/store.js';
import type { Mac } from '../server/lib/mac.js';
import type { MachineEventType } from '../server/inventory/lifecycle.js';
import { api, startRacksmith, type RacksmithProcess } from './lib/racksmith.js';

/**
 * Issue 17, items 3 and 4, through the real server: POST and PATCH /clusters keep to the
 * compatibility table; a live cluster's build changes only through an upgrade; a second load
 * balancer is refused (API and CSV, naming the row); an even number of control-plane nodes is
 * accepted with a warning in the API and in `clusters show`.
 */
const test = suite('cluster rules over the API: compatibility, live clusters, topology');

let rs: RacksmithProcess;
let store: Store;
let admin = '';

const call = (method: string, path: string, body?: unknown, type?: string) => api(rs.url, admin, method, `/api/v1${path}`, body, type);

test.before(async () => {
  rs = await startRacksmith();
  admin = (await rs.cli(['token', 'create', '--role', 'admin'])).trim();
  store = await rs.openStore();
});

test.after(async () => {
  await store?.close();
  await rs?.stop();
  rs?.cleanup();
});

test('POST /clusters: a version nobody released, and 1.18 on a cgroup-v2-only release, are refused naming the field', async () => {
  for (const [body, field, message] of [
    [{ name: 'future', ubuntuRelease: '22.04', kubernetesVersion: '1.99.0', containerRuntime: 'containerd', cni: 'flannel' }, 'kubernetesVersion', /Kubernetes 1\.99\.0 is not in racksmith's compatibility table: it supports 1\.18 to 1\.35/],
    [{ name: 'old', ubuntuRelease: '22.04', kubernetesVersion: '1.18.6', containerRuntime: 'docker', cni: 'weave' }, 'ubuntuRelease', /Kubernetes 1\.18 does not run on Ubuntu 22\.04: it boots with cgroup v2 only/],
    [{ name: 'old2', ubuntuRelease: '24.04', kubernetesVersion: '1.23.17', containerRuntime: 'containerd', cni: 'flannel' }, 'ubuntuRelease', /cgroup v2 only/],
    [{ name: 'weave', ubuntuRelease: '22.04', kubernetesVersion: '1.30.6', containerRuntime: 'containerd', cni: 'weave' }, 'cni', /weave is not pinned for Kubernetes 1\.30/],
  ] as const) {
    const r = await call('POST', '/clusters', body);
    assert.is(r.status, 400, `${body.name}: ${r.text}`);
    assert.is(r.body.error.field, field, body.name);
    assert.match(r.body.error.message, message);
  }
  assert.is((await call('GET', '/clusters')).body.length, 0, 'nothing was stored');
  const ok = await call('POST', '/clusters', { name: 'recipe', ubuntuRelease: '18.04', kubernetesVersion: '1.18.6', containerRuntime: 'docker', cni: 'weave' });
  assert.is(ok.status, 201, ok.text);
  assert.equal(ok.body.warnings, []);
});

async function advance(mac: string, events: MachineEventType[]): Promise<void> {
  for (const e of events) await store.machines.transition(mac as Mac, e, { source: 'test' });
}

test('PATCH /clusters: checked against the table; a live cluster changes only through an upgrade (409)', async () => {
  assert.is((await call('POST', '/clusters', { name: 'live', ubuntuRelease: '22.04', kubernetesVersion: '1.28.4', containerRuntime: 'containerd', cni: 'flannel' })).status, 201);
  const bad = await call('PATCH', '/clusters/live', { kubernetesVersion: '1.99.0' });
  assert.is(bad.status, 400);
  assert.is(bad.body.error.code, 'ERR_INCOMPATIBLE');
  assert.is(bad.body.error.field, 'kubernetesVersion');
  // Nothing installed yet: a compatible change is an edit.
  const edit = await call('PATCH', '/clusters/live', { kubernetesVersion: '1.28.5' });
  assert.is(edit.status, 200, edit.text);
  assert.is(edit.body.kubernetesVersion, '1.28.5');
  assert.is((await call('POST', '/machines', { mac: '52:54:00:17:03:01', hostname: 'live-cp1', role: 'control-plane', cluster: 'live' })).status, 201);
  await advance('52:54:00:17:03:01', ['installer-served', 'installed']);
  const installed = await call('PATCH', '/clusters/live', { cni: 'calico' });
  assert.is(installed.status, 409);
  assert.is(installed.body.error.code, 'ERR_MACHINES_INSTALLED');
  await advance('52:54:00:17:03:01', ['phoned-home', 'join-started', 'joined']);
  for (const patch of [{ kubernetesVersion: '1.29.3' }, { containerRuntime: 'docker' }, { cni: 'calico' }]) {
    const r = await call('PATCH', '/clusters/live', patch);
    assert.is(r.status, r.body.error?.code === 'ERR_INCOMPATIBLE' ? 400 : 409, r.text);
    if (r.status === 409) {
      assert.is(r.body.error.code, 'ERR_CLUSTER_LIVE');
      assert.match(r.body.error.message, /^cluster live has joined nodes \(live-cp1\): .* is an upgrade, not an edit — use POST \/api\/v1\/clusters\/live\/upgrade/);
    }
  }
  assert.is((await call('GET', '/clusters/live')).body.kubernetesVersion, '1.28.5', 'the live cluster kept its version');
  // Not its build: still an edit.
  assert.is((await call('PATCH', '/clusters/live', { controlPlaneEndpoint: '10.0.0.10:6443' })).status, 200);
});

test('topology: a second load balancer is refused (API and CSV, naming the row); two control planes are accepted with a warning', async () => {
  assert.is((await call('POST', '/clusters', { name: 'topo', ubuntuRelease: '22.04', kubernetesVersion: '1.30.6', containerRuntime: 'containerd', cni: 'flannel' })).status, 201);
  const lb1 = await call('POST', '/machines', { mac: '52:54:00:17:04:01', hostname: 'topo-lb1', role: 'loadbalancer', cluster: 'topo' });
  assert.is(lb1.status, 201);
  assert.equal(lb1.body.warnings, []);
  const lb2 = await call('POST', '/machines', { mac: '52:54:00:17:04:02', hostname: 'topo-lb2', role: 'loadbalancer', cluster: 'topo' });
  assert.is(lb2.status, 409, lb2.text);
  assert.is(lb2.body.error.code, 'ERR_TOPOLOGY');
  assert.is(lb2.body.error.field, 'role');
  assert.match(lb2.body.error.message, /cluster topo would have 2 load balancers \(topo-lb1, topo-lb2\): one per cluster, or a pair sharing a virtual IP — set the cluster.s vip first/);
  // A worker may not become the second one either.
  assert.is((await call('POST', '/machines', { mac: '52:54:00:17:04:03', hostname: 'topo-w1', role: 'worker', cluster: 'topo' })).status, 201);
  assert.is((await call('PATCH', '/machines/52:54:00:17:04:03', { role: 'loadbalancer' })).status, 409);
  // The CSV: all or nothing, the row named.
  const csv = ['mac,hostname,role,cluster,ip,rack', '52:54:00:17:04:04,topo-cp1,control-plane,topo,,', '52:54:00:17:04:05,topo-lb3,loadbalancer,topo,,'].join('\n');
  const imp = await call('POST', '/machines/import', csv, 'text/csv');
  assert.is(imp.status, 409, imp.text);
  assert.equal(imp.body.error.details.map((d: { row: number }) => d.row), [2]);
  assert.is((await call('GET', '/machines?cluster=topo')).body.length, 2, 'nothing was imported');
  // Two control planes: accepted, with a warning in the response, the cluster view and `clusters show`.
  const cp1 = await call('POST', '/machines', { mac: '52:54:00:17:04:06', hostname: 'topo-cp1', role: 'control-plane', cluster: 'topo' });
  assert.equal(cp1.body.warnings, []);
  const cp2 = await call('POST', '/machines', { mac: '52:54:00:17:04:07', hostname: 'topo-cp2', role: 'control-plane', cluster: 'topo' });
  assert.is(cp2.status, 201);
  assert.match(cp2.body.warnings[0], /cluster topo has 2 control-plane nodes: etcd needs a majority, so 2 tolerate no failure, no more than 1 would; use 1 or 3/);
  assert.equal((await call('GET', '/clusters/topo')).body.warnings, cp2.body.warnings);
  assert.equal((await call('GET', '/clusters')).body.find((c: { name: string }) => c.name === 'topo').warnings, cp2.body.warnings);
  const shown = await rs.cli(['clusters', 'show', 'topo', '--token', admin]);
  assert.match(shown, /^warning: cluster topo has 2 control-plane nodes/m);
  const added = await rs.cli(['machines', 'add', '--mac', '52:54:00:17:04:08', '--hostname', 'topo-cp3', '--role', 'control-plane', '--cluster', 'topo', '--token', admin]);
  assert.not.match(added, /warning/, 'three control planes: no warning');
  const fourth = await rs.cli(['machines', 'add', '--mac', '52:54:00:17:04:09', '--hostname', 'topo-cp4', '--role', 'control-plane', '--cluster', 'topo', '--token', admin]);
  assert.match(fourth, /^warning: cluster topo has 4 control-plane nodes: etcd needs a majority, so 4 tolerate 1 failure, no more than 3 would/m);
});

test.run();
