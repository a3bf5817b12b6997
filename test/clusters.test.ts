import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { checkCompatibility, cniManifestUrl, COMPATIBILITY, floatingManifest, KUBERNETES_MINORS, OS_IDS, osOfRelease, type ClusterSpec, type OsId } from '../server/clusters/compatibility.js';
import { checkPlacements, checkTopology, type Member } from '../server/clusters/topology.js';
import { decideClusterChange } from '../server/clusters/changes.js';
import { installingClusters } from '../server/clusters/power-on.js';
import { SETTINGS } from '../server/config/settings.js';
import type { Mac } from '../server/lib/mac.js';
import { fixtureCluster, fixtureMachine } from './lib/seed-fixtures.js';

/**
 * Issue 17, items 3 and 4: the cluster domain's pure rules — one compatibility table (Kubernetes
 * minor × OS release × runtime × CNI) with its pins, the change rule for live clusters, and the
 * topology rules — each as a table of named cases.
 */
const test = suite('clusters: compatibility table, pins, change and topology rules');

const spec = (os: OsId, kubernetesVersion: string, containerRuntime: ClusterSpec['containerRuntime'], cni: ClusterSpec['cni']): ClusterSpec => ({ os, kubernetesVersion, containerRuntime, cni });

test('compatibility: named cases, accepted with their pins or refused naming the field', () => {
  const cases: Array<[string, ClusterSpec, { field: string; match: RegExp } | { docker: string | null; cni: string; packages: string }]> = [
    ['the seed recipe: 18.04 + 1.18.6 + Docker + Weave', spec('ubuntu-18.04', '1.18.6', 'docker', 'weave'), { docker: '5:19.03.*', cni: 'v2.8.1', packages: 'legacy' }],
    ['1.23 with Docker takes Docker CE 20.10', spec('ubuntu-20.04', '1.23.17', 'docker', 'flannel'), { docker: '5:20.10.*', cni: 'v0.27.4', packages: 'legacy' }],
    ['22.04 + 1.30 + containerd + flannel', spec('ubuntu-22.04', '1.30.6', 'containerd', 'flannel'), { docker: null, cni: 'v0.27.4', packages: 'pkgs.k8s.io' }],
    ['24.04 + 1.31 + calico pins 3.29', spec('ubuntu-24.04', '1.31.2', 'containerd', 'calico'), { docker: null, cni: 'v3.29.3', packages: 'pkgs.k8s.io' }],
    ['22.04 + 1.28 + calico pins 3.28', spec('ubuntu-22.04', '1.28.4', 'containerd', 'calico'), { docker: null, cni: 'v3.28.2', packages: 'pkgs.k8s.io' }],
    ['debian-12 + 1.30', spec('debian-12', '1.30.6', 'containerd', 'flannel'), { docker: null, cni: 'v0.27.4', packages: 'pkgs.k8s.io' }],
    ['1.24 on 20.04 (cgroup v1)', spec('ubuntu-20.04', '1.24.17', 'containerd', 'flannel'), { docker: null, cni: 'v0.27.4', packages: 'pkgs.k8s.io' }],
    ['1.35 on 24.04', spec('ubuntu-24.04', '1.35.0', 'containerd', 'flannel'), { docker: null, cni: 'v0.27.4', packages: 'pkgs.k8s.io' }],
    ['a Kubernetes nobody released: 1.99.0', spec('ubuntu-22.04', '1.99.0', 'containerd', 'flannel'), { field: 'kubernetesVersion', match: /1\.99\.0 is not in racksmith's compatibility table: it supports 1\.18 to 1\.35/ }],
    ['below the table: 1.17.0', spec('ubuntu-18.04', '1.17.0', 'docker', 'weave'), { field: 'kubernetesVersion', match: /1\.18 to 1\.35/ }],
    ['1.18 on 22.04: cgroup v2 only', spec('ubuntu-22.04', '1.18.6', 'docker', 'weave'), { field: 'os', match: /Kubernetes 1\.18 does not run on Ubuntu 22\.04: it boots with cgroup v2 only, which the kubelet supports from Kubernetes 1\.25 \(Kubernetes 1\.18 runs on Ubuntu 18\.04, Ubuntu 20\.04; Ubuntu 22\.04 runs Kubernetes 1\.25 to 1\.35\)/ }],
    ['1.24 on 24.04: cgroup v2 only', spec('ubuntu-24.04', '1.24.17', 'containerd', 'flannel'), { field: 'os', match: /cgroup v2 only/ }],
    ['1.23 on debian-12: cgroup v2 only', spec('debian-12', '1.23.17', 'containerd', 'flannel'), { field: 'os', match: /Debian 12/ }],
    ['1.35 on 20.04: the kubelet refuses cgroup v1', spec('ubuntu-20.04', '1.35.0', 'containerd', 'flannel'), { field: 'os', match: /cgroup v1, which the kubelet refuses from Kubernetes 1\.35/ }],
    ['Docker on 1.24: no dockershim', spec('ubuntu-20.04', '1.24.17', 'docker', 'flannel'), { field: 'containerRuntime', match: /no dockershim: use containerd \(Docker is supported for Kubernetes 1\.18 to 1\.23\)/ }],
    ['Weave on 1.28: not pinned', spec('ubuntu-22.04', '1.28.4', 'containerd', 'weave'), { field: 'cni', match: /weave is not pinned for Kubernetes 1\.28 \(racksmith pins weave for Kubernetes 1\.18 to 1\.23\): use flannel or calico/ }],
    ['Calico on 1.18: not pinned', spec('ubuntu-18.04', '1.18.6', 'docker', 'calico'), { field: 'cni', match: /calico is not pinned for Kubernetes 1\.18/ }],
  ];
  for (const [name, s, want] of cases) {
    const got = checkCompatibility(s);
    if ('field' in want) {
      assert.not.ok(got.ok, `${name}: accepted`);
      if (!got.ok) {
        assert.is(got.field, want.field, name);
        assert.match(got.message, want.match, `${name}: ${got.message}`);
      }
    } else {
      assert.ok(got.ok, `${name}: ${got.ok ? '' : got.message}`);
      if (got.ok) {
        assert.is(got.pins.docker?.apt ?? null, want.docker, name);
        assert.is(got.pins.cni.version, want.cni, name);
        assert.is(got.pins.packages, want.packages, name);
      }
    }
  }
});

test('the table: rows do not overlap, cover 1.18 to 1.35 without a gap, pin a version for every CNI they allow, and Docker only before 1.24', () => {
  const minors = COMPATIBILITY.flatMap((r) => Array.from({ length: r.kubernetes[1] - r.kubernetes[0] + 1 }, (_, i) => r.kubernetes[0] + i));
  assert.equal(minors, Array.from({ length: KUBERNETES_MINORS[1] - KUBERNETES_MINORS[0] + 1 }, (_, i) => KUBERNETES_MINORS[0] + i));
  assert.equal(KUBERNETES_MINORS, [18, 35]);
  for (const r of COMPATIBILITY) {
    for (const v of Object.values(r.cnis)) assert.match(v, /^v\d+\.\d+\.\d+$/, 'a pinned release, never "latest"');
    if (r.runtimes.docker) assert.ok(r.kubernetes[1] < 24, 'dockershim left in 1.24');
    for (const os of r.os) assert.ok(OS_IDS.includes(os));
  }
  assert.is(osOfRelease('22.04'), 'ubuntu-22.04');
});

test('CNI manifests: the settings are pinned by version, and {version} takes the row\'s release', () => {
  for (const k of ['cniManifestWeave', 'cniManifestFlannel', 'cniManifestCalico'] as const) {
    const d = SETTINGS[k].default;
    assert.not.ok(floatingManifest(d), `${k} default ${d} follows latest`);
    assert.ok(d.includes('{version}'), `${k} takes the pinned release`);
    assert.not.ok(SETTINGS[k].schema.safeParse('https://github.com/flannel-io/flannel/releases/latest/download/kube-flannel.yml').success, `${k} refuses latest`);
    assert.ok(SETTINGS[k].schema.safeParse('http://mirror.example/cni/kube-flannel-v0.27.4.yml').success, `${k} takes a fixed mirror file`);
  }
  assert.is(cniManifestUrl(SETTINGS.cniManifestFlannel.default, { cni: 'flannel', version: 'v0.27.4' }), 'https://github.com/flannel-io/flannel/releases/download/v0.27.4/kube-flannel.yml');
  assert.is(cniManifestUrl(SETTINGS.cniManifestCalico.default, { cni: 'calico', version: 'v3.29.3' }), 'https://raw.githubusercontent.com/projectcalico/calico/v3.29.3/manifests/calico.yaml');
  assert.is(cniManifestUrl('http://m/x.yml', { cni: 'flannel', version: 'v0.27.4' }), 'http://m/x.yml');
});

test('a change to a cluster: checked against the table; refused with 409 once nodes joined or machines hold the packages', () => {
  const base = fixtureCluster('22.04');
  const member = (host: string, state: Parameters<typeof fixtureMachine>[5]) => fixtureMachine(base.name, `52:54:00:00:00:${host.slice(-2)}`, host, 'worker', null, state);
  const cases: Array<[string, Parameters<typeof decideClusterChange>[1], ReturnType<typeof member>[], { ok: true } | { status: number; code: string; field: string; match: RegExp }]> = [
    ['no machines yet: any compatible change', { kubernetesVersion: '1.30.6' }, [], { ok: true }],
    ['assigned machines have nothing installed', { cni: 'calico' }, [member('w01', 'assigned')], { ok: true }],
    ['an unrelated field on a live cluster', { podSubnet: '10.1.0.0/16' } as never, [member('w01', 'joined')], { ok: true }],
    ['1.99.0 is refused as input', { kubernetesVersion: '1.99.0' }, [], { status: 400, code: 'ERR_INCOMPATIBLE', field: 'kubernetesVersion', match: /1\.99\.0/ }],
    ['a version the release cannot run', { kubernetesVersion: '1.24.17' }, [], { status: 400, code: 'ERR_INCOMPATIBLE', field: 'ubuntuRelease', match: /Kubernetes 1\.24 does not run on Ubuntu 22\.04/ }],
    ['a move to a release the version cannot run on', { ubuntuRelease: '20.04', kubernetesVersion: '1.35.0' }, [], { status: 400, code: 'ERR_INCOMPATIBLE', field: 'ubuntuRelease', match: /does not run on Ubuntu 20\.04/ }],
    ['the version of a cluster with joined nodes', { kubernetesVersion: '1.29.0' }, [member('w01', 'joined'), member('w02', 'ready')], { status: 409, code: 'ERR_CLUSTER_LIVE', field: 'kubernetesVersion', match: /has joined nodes \(w01\): kubernetesVersion 1\.28\.4 → 1\.29\.0 is an upgrade, not an edit — use POST \/api\/v1\/clusters\/lab2204\/upgrade/ }],
    ['the CNI of a cluster with a node joining', { cni: 'calico' }, [member('w01', 'joining')], { status: 409, code: 'ERR_CLUSTER_LIVE', field: 'cni', match: /upgrade/ }],
    ['the runtime while machines are installed', { kubernetesVersion: '1.28.5' }, [member('w01', 'installed')], { status: 409, code: 'ERR_MACHINES_INSTALLED', field: 'kubernetesVersion', match: /already given its packages \(w01\): reimage or remove them/ }],
    ['a failed join still counts as joined', { cni: 'calico' }, [{ ...member('w01', 'failed'), failedFrom: 'joining' }], { status: 409, code: 'ERR_CLUSTER_LIVE', field: 'cni', match: /joined nodes/ }],
    ['the same values again are no change', { kubernetesVersion: '1.28.4', cni: 'flannel' }, [member('w01', 'joined')], { ok: true }],
  ];
  for (const [name, patch, members, want] of cases) {
    const d = decideClusterChange(base, patch, members);
    if ('ok' in want) {
      assert.ok(d.ok, `${name}: ${d.ok ? '' : d.message}`);
    } else {
      assert.not.ok(d.ok, name);
      if (!d.ok) {
        assert.is(d.status, want.status, name);
        assert.is(d.code, want.code, name);
        assert.is(d.field, want.field, name);
        assert.match(d.message, want.match, `${name}: ${d.message}`);
      }
    }
  }
});

const m = (mac: string, hostname: string, role: Member['role'], cluster: string | null = 'lab') => ({ mac: mac as Mac, hostname, role, cluster });

test('topology: one load balancer; an even number of control-plane nodes is a warning', () => {
  const cases: Array<[string, Member[], { problems: string[]; warnings: RegExp[] }]> = [
    ['empty', [], { problems: [], warnings: [] }],
    ['lb + 3 control planes', [m('a', 'lb1', 'loadbalancer'), m('b', 'cp1', 'control-plane'), m('c', 'cp2', 'control-plane'), m('d', 'cp3', 'control-plane')], { problems: [], warnings: [] }],
    ['two load balancers', [m('a', 'lb1', 'loadbalancer'), m('b', 'lb2', 'loadbalancer')], { problems: ['load-balancers'], warnings: [] }],
    ['2 control planes: no failure tolerated', [m('b', 'cp1', 'control-plane'), m('c', 'cp2', 'control-plane')], { problems: [], warnings: [/2 control-plane nodes: etcd needs a majority, so 2 tolerate no failure, no more than 1 would; use 1 or 3/] }],
    ['4 control planes: as many failures as 3', [1, 2, 3, 4].map((i) => m(`c${i}`, `cp${i}`, 'control-plane')), { problems: [], warnings: [/4 tolerate 1 failure, no more than 3 would; use 3 or 5/] }],
    ['1 control plane: no warning', [m('b', 'cp1', 'control-plane')], { problems: [], warnings: [] }],
  ];
  for (const [name, members, want] of cases) {
    const t = checkTopology({ name: 'lab' }, members);
    assert.equal(t.problems.map((p) => p.rule), want.problems, name);
    assert.is(t.warnings.length, want.warnings.length, `${name}: ${t.warnings.join(' | ')}`);
    for (const [i, re] of want.warnings.entries()) assert.match(t.warnings[i] ?? '', re, name);
  }
});

test('placements: a second load balancer is refused naming the newcomer and its CSV row; an old problem does not block unrelated changes', () => {
  const existing = [m('a', 'lb1', 'loadbalancer'), m('b', 'cp1', 'control-plane'), m('x', 'lbx', 'loadbalancer', 'other')];
  const second = checkPlacements(existing, [{ ...m('c', 'lb2', 'loadbalancer'), row: 4 }]);
  assert.is(second.problems.length, 1);
  assert.is(second.problems[0]?.row, 4);
  assert.is(second.problems[0]?.cluster, 'lab');
  assert.match(second.problems[0]?.message ?? '', /cluster lab would have 2 load balancers \(lb1, lb2\): one per cluster, or a pair sharing a virtual IP — set the cluster.s vip first/);
  // Moving the other cluster's load balancer in is the same problem.
  assert.is(checkPlacements(existing, [m('x', 'lbx', 'loadbalancer', 'lab')]).problems.length, 1);
  // A worker joins: no problem, and the even control-plane count is not worse than before.
  assert.equal(checkPlacements(existing, [m('d', 'w1', 'worker')]), { problems: [], warnings: [] });
  // A second control plane: allowed, with the warning.
  const cp2 = checkPlacements(existing, [m('e', 'cp2', 'control-plane')]);
  assert.equal(cp2.problems, []);
  assert.match(cp2.warnings[0] ?? '', /2 control-plane nodes/);
  // A cluster that already had two (from before this rule) is not refused a worker.
  const legacy = [m('a', 'lb1', 'loadbalancer'), m('b', 'lb2', 'loadbalancer')];
  assert.equal(checkPlacements(legacy, [m('d', 'w1', 'worker')]).problems, []);
  // Turning the load balancer into a worker and adding another in one import is fine.
  assert.equal(checkPlacements(existing, [m('a', 'lb1', 'worker'), m('c', 'lb2', 'loadbalancer')]).problems, []);
});

test('a power-on preflights the clusters of machines that will install, not of those already running', () => {
  const at = (state: Parameters<typeof fixtureMachine>[5], cluster: string, mac = '52:54:00:00:00:01') => fixtureMachine(cluster, mac, 'h', 'worker', null, state);
  assert.equal(
    installingClusters([at('assigned', 'b'), at('joined', 'c'), at('reimaging', 'a'), at('provisioning', 'b'), { ...at('failed', 'd'), failedFrom: 'installed' }, { ...at('failed', 'e'), failedFrom: 'joining' }, { ...at('discovered', 'f'), role: null, cluster: null }]),
    ['a', 'b', 'd'],
  );
});

test.run();
