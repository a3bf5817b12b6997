import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { discoveryHash } from '../server/lib/cluster-secrets.js';
import { createRenderer } from '../server/render/templates.js';
import { KUBEADM_TEMPLATES_DIR, renderKubeadmConfig } from '../server/orchestrator/kubeadm-config.js';
import { parseJoinCommands } from '../server/orchestrator/kubeadm-output.js';
import { withKubernetesVersion } from '../server/orchestrator/upgrade.js';
import { STANDIN } from './lib/kube-bed.js';
import { cluster } from './lib/orch-fixtures.js';
import { testCa } from './lib/orch-harness.js';
import { requirements, skipNote } from './lib/tools.js';

/**
 * The acceptance tests are only as good as the kubeadm stand-in: it must refuse what kubeadm
 * refuses. Run directly, with each "node" in its own folder instead of /etc/kubernetes.
 */
const test = suite('kubeadm stand-in');
const missing = requirements(['openssl']);

const TOKEN = 'abcdef.0123456789abcdef';
const KEY = 'c0'.repeat(32);
const ENDPOINT = '10.9.0.10:6443';
let root = '';

function node(name: string): string {
  const dir = join(root, name);
  mkdirSync(join(dir, 'k8s'), { recursive: true });
  mkdirSync(join(dir, 'faults'), { recursive: true });
  return dir;
}

const IPS = new Map<string, string>([['cp1', '10.9.0.11']]);
const ipOf = (name: string): string => {
  if (!IPS.has(name)) IPS.set(name, `10.9.0.${20 + IPS.size}`);
  return IPS.get(name) as string;
};

function run(name: string, tool: string, args: string[], version = '1.28.4'): { code: number; out: string; err: string } {
  const dir = join(root, name);
  const r = spawnSync(process.execPath, [STANDIN, tool, ...args], {
    env: { ...process.env, STANDIN_NODE: name, STANDIN_NODE_IP: ipOf(name), STANDIN_NODE_DIR: dir, STANDIN_CLUSTER_DIR: join(root, 'cluster'), STANDIN_K8S_DIR: join(dir, 'k8s'), STANDIN_VERSION: version },
    encoding: 'utf8',
  });
  return { code: r.status ?? -1, out: r.stdout, err: r.stderr };
}

function config(): string {
  return renderKubeadmConfig(createRenderer(KUBEADM_TEMPLATES_DIR), {
    cluster: cluster(),
    endpoint: ENDPOINT,
    node: { name: 'cp1', ip: '10.9.0.11' },
    loadBalancer: { hostname: 'lb1', ip: '10.9.0.10' },
    bootstrapToken: TOKEN,
    certificateKey: KEY,
    podSubnet: '10.244.0.0/16',
    serviceSubnet: '10.96.0.0/12',
    imageRepository: 'registry.k8s.io',
  });
}

const joinArgs = (over: { token?: string; hash?: string; key?: string | null; endpoint?: string } = {}, hash = ''): string[] => [
  'join',
  over.endpoint ?? ENDPOINT,
  '--token',
  over.token ?? TOKEN,
  '--discovery-token-ca-cert-hash',
  over.hash ?? hash,
  ...(over.key === null ? [] : ['--control-plane', '--certificate-key', over.key ?? KEY]),
];

test.before(() => {
  root = mkdtempSync(join(tmpdir(), 'racksmith-standin-'));
  mkdirSync(join(root, 'cluster'));
});
test.after(() => rmSync(root, { recursive: true, force: true }));

test('init uses the CA in pki, prints kubeadm\'s join commands; a second init is refused', async () => {
  if (missing) return skipNote('stand-in', missing);
  const ca = await testCa();
  const cp1 = node('cp1');
  mkdirSync(join(cp1, 'k8s', 'pki'));
  writeFileSync(join(cp1, 'k8s', 'pki', 'ca.crt'), ca.certPem);
  writeFileSync(join(cp1, 'k8s', 'pki', 'ca.key'), ca.keyPem);
  writeFileSync(join(cp1, 'config.yaml'), config());
  const r = run('cp1', 'kubeadm', ['init', '--config', join(cp1, 'config.yaml'), '--upload-certs']);
  assert.is(r.code, 0, r.err);
  assert.match(r.out, /Using existing ca certificate authority/);
  assert.match(r.out, / \\\n\t--discovery-token-ca-cert-hash/);
  const joins = parseJoinCommands(r.out);
  assert.equal(joins.map((j) => [j.endpoint, j.token, j.caCertHash, j.controlPlane, j.certificateKey]), [
    [ENDPOINT, TOKEN, discoveryHash(ca.certPem), true, KEY],
    [ENDPOINT, TOKEN, discoveryHash(ca.certPem), false, null],
  ]);
  const again = run('cp1', 'kubeadm', ['init', '--config', join(cp1, 'config.yaml'), '--upload-certs']);
  assert.is(again.code, 1);
  assert.match(again.err, /\[ERROR FileAvailable--etc-kubernetes-admin\.conf\]/);
});

test('joins are refused for a wrong endpoint, token, hash or certificate key', async () => {
  if (missing) return skipNote('stand-in', missing);
  const hash = discoveryHash((await testCa()).certPem);
  node('cp2');
  const cases: [string[], RegExp][] = [
    [joinArgs({ endpoint: '10.9.0.99:6443' }, hash), /connection refused/],
    [joinArgs({ token: 'zzzzzz.0123456789abcdef' }, hash), /could not find a JWS signature/],
    [joinArgs({ hash: 'sha256:' + '0'.repeat(64) }), /none of the public keys .* are pinned/],
    [joinArgs({ key: 'd0'.repeat(32) }, hash), /message authentication failed/],
  ];
  for (const [args, why] of cases) {
    const r = run('cp2', 'kubeadm', args);
    assert.is(r.code, 1, args.join(' '));
    assert.match(r.err, why);
  }
});

test('a control join more than 2 h after the upload is refused until the certificates are uploaded again', async () => {
  if (missing) return skipNote('stand-in', missing);
  const hash = discoveryHash((await testCa()).certPem);
  writeFileSync(join(root, 'cluster', 'clock-offset-ms'), String(2 * 3600_000 + 60_000));
  const late = run('cp2', 'kubeadm', joinArgs({}, hash));
  assert.is(late.code, 1);
  assert.match(late.err, /This Secret might have expired/);
  const up = run('cp1', 'kubeadm', ['init', 'phase', 'upload-certs', '--upload-certs', '--certificate-key', KEY]);
  assert.is(up.code, 0, up.err);
  const ok = run('cp2', 'kubeadm', joinArgs({}, hash));
  assert.is(ok.code, 0, ok.err);
  assert.match(ok.out, /a new control plane instance was created/);
  const twice = run('cp2', 'kubeadm', joinArgs({}, hash));
  assert.is(twice.code, 1);
  assert.match(twice.err, /kubelet\.conf already exists/);
});

test('nodes are NotReady until a CNI is applied; a worker joins without a certificate key', async () => {
  if (missing) return skipNote('stand-in', missing);
  const hash = discoveryHash((await testCa()).certPem);
  node('w1');
  assert.is(run('w1', 'kubeadm', joinArgs({ key: null }, hash)).code, 0);
  const kc = ['--kubeconfig', join(root, 'cp1', 'k8s', 'admin.conf')];
  assert.match(run('cp1', 'kubectl', [...kc, 'get', 'nodes', '--no-headers']).out, /^w1\s+NotReady\s+<none>/m);
  assert.is(run('cp1', 'kubectl', [...kc, 'apply', '-f', 'https://x.test/kube-flannel.yml']).code, 0);
  const nodes = run('cp1', 'kubectl', [...kc, 'get', 'nodes']).out;
  assert.match(nodes, /^NAME\s+STATUS\s+ROLES\s+AGE\s+VERSION$/m);
  assert.match(nodes, /^cp1\s+Ready\s+control-plane/m);
  assert.match(nodes, /^w1\s+Ready\s+<none>/m);
});

test('taking nodes out: drain, delete, etcd member list/remove, reset; joins again only once removed', async () => {
  if (missing) return skipNote('stand-in', missing);
  const hash = discoveryHash((await testCa()).certPem);
  const kc = ['--kubeconfig', join(root, 'cp1', 'k8s', 'admin.conf')];
  const etcdctl = (...a: string[]): string[] => [...kc, '-n', 'kube-system', 'exec', 'etcd-cp1', '--', 'etcdctl', '--endpoints', 'https://127.0.0.1:2379', '--cacert', '/etc/kubernetes/pki/etcd/ca.crt', '--cert', '/etc/kubernetes/pki/etcd/server.crt', '--key', '/etc/kubernetes/pki/etcd/server.key', ...a];
  const members = run('cp1', 'kubectl', etcdctl('member', 'list'));
  assert.is(members.code, 0, members.err);
  // etcdctl's simple format: ID, STATUS, NAME, PEER ADDRS, CLIENT ADDRS, IS LEARNER.
  assert.match(members.out, /^[0-9a-f]{1,16}, started, cp1, https:\/\/10\.9\.0\.11:2380, https:\/\/10\.9\.0\.11:2379, false$/m);
  const cp2 = /^([0-9a-f]+), started, cp2, https:\/\/([\d.]+):2380/m.exec(members.out);
  assert.ok(cp2, members.out);
  assert.is(run('cp1', 'kubectl', [...kc, '-n', 'kube-system', 'exec', 'etcd-w1', '--', 'etcdctl', 'member', 'list']).code, 1, 'a worker has no etcd pod');
  assert.match(run('cp1', 'kubectl', [...kc, '-n', 'kube-system', 'exec', 'etcd-cp1', '--', 'etcdctl', 'member', 'list']).err, /context deadline exceeded/, 'no client certificate, no answer');

  // A worker: the drain flag follows kubectl's version; drain cordons; delete removes it.
  const noHeaders = (): string => run('cp1', 'kubectl', [...kc, 'get', 'nodes', '--no-headers']).out;
  assert.match(run('cp1', 'kubectl', [...kc, 'drain', 'w1', '--ignore-daemonsets', '--delete-emptydir-data', '--force', '--timeout=60s'], '1.18.6').err, /unknown flag: --delete-emptydir-data/);
  assert.match(run('cp1', 'kubectl', [...kc, 'drain', 'w1', '--ignore-daemonsets', '--delete-local-data', '--force', '--timeout=60s'], '1.31.2').err, /unknown flag: --delete-local-data/);
  const drained = run('cp1', 'kubectl', [...kc, 'drain', 'w1', '--ignore-daemonsets', '--delete-emptydir-data', '--force', '--timeout=60s']);
  assert.is(drained.code, 0, drained.err);
  assert.match(drained.out, /^node\/w1 cordoned$[\s\S]*^node\/w1 drained$/m);
  assert.match(noHeaders(), /^w1\s+Ready,SchedulingDisabled\s/m);
  assert.match(run('cp1', 'kubectl', [...kc, 'drain', 'w1', '--ignore-daemonsets', '--delete-emptydir-data', '--force', '--timeout=60s']).out, /already cordoned/);
  // Joining again under a live Node's name is refused (kubeadm's kubelet-start check).
  rmSync(join(root, 'w1', 'k8s', 'kubelet.conf'));
  assert.match(run('w1', 'kubeadm', joinArgs({ key: null }, hash)).err, /a Node with name "w1" and status "Ready" already exists/);
  assert.match(run('cp1', 'kubectl', [...kc, 'delete', 'node', 'w1']).out, /^node "w1" deleted$/m);
  assert.not.match(noHeaders(), /^w1\s/m);
  assert.match(run('cp1', 'kubectl', [...kc, 'get', 'node', 'w1']).err, /NotFound\): nodes "w1" not found/);
  assert.is(run('cp1', 'kubectl', [...kc, 'delete', 'node', 'w1']).code, 1);
  assert.is(run('cp1', 'kubectl', [...kc, 'delete', 'node', 'w1', '--ignore-not-found']).code, 0);
  const back = run('w1', 'kubeadm', joinArgs({ key: null }, hash));
  assert.is(back.code, 0, back.err);
  assert.match(noHeaders(), /^w1\s+Ready\s/m);

  // A control node: while its member is there it cannot join again; reset leaves etcd, and the Node turns NotReady.
  const reset = run('cp2', 'kubeadm', ['reset', '-f']);
  assert.is(reset.code, 0, reset.err);
  assert.match(reset.out, /Removing member cp2 from the etcd cluster/);
  assert.match(noHeaders(), /^cp2\s+NotReady\s/m);
  assert.not.match(run('cp1', 'kubectl', etcdctl('member', 'list')).out, /cp2/);
  const gone = run('cp1', 'kubectl', etcdctl('member', 'remove', cp2?.[1] ?? ''));
  assert.is(gone.code, 1);
  assert.match(gone.err, /etcdserver: member not found/);
  // A member left behind (the node was off, nobody removed it) blocks the control join.
  const state = JSON.parse(readFileSync(join(root, 'cluster', 'state.json'), 'utf8'));
  state.members.push({ id: 'abc123', name: 'cp2', peerUrl: `https://${cp2?.[2]}:2380`, clientUrl: `https://${cp2?.[2]}:2379` });
  writeFileSync(join(root, 'cluster', 'state.json'), JSON.stringify(state));
  assert.match(run('cp2', 'kubeadm', joinArgs({}, hash)).err, /Peer URLs already exists/);
  const removed = run('cp1', 'kubectl', etcdctl('member', 'remove', 'abc123'));
  assert.is(removed.code, 0, removed.err);
  assert.match(removed.out, /^Member {11}abc123 removed from cluster +[0-9a-f]+$/m, JSON.stringify(removed.out));
  assert.is(run('cp1', 'kubectl', [...kc, 'delete', 'node', 'cp2']).code, 0);
  const rejoin = run('cp2', 'kubeadm', joinArgs({}, hash));
  assert.is(rejoin.code, 0, rejoin.err);
  assert.match(run('cp1', 'kubectl', etcdctl('member', 'list')).out, /, started, cp2, /);
});

test('versions, etcd health, snapshots and etcd\'s reconfiguration check, as kubeadm and etcd answer them', async () => {
  if (missing) return skipNote('stand-in', missing);
  const hash = discoveryHash((await testCa()).certPem);
  const kc = ['--kubeconfig', join(root, 'cp1', 'k8s', 'admin.conf')];
  const etcdctl = (...a: string[]): string[] => [...kc, '-n', 'kube-system', 'exec', 'etcd-cp1', '--', 'etcdctl', '--endpoints', 'https://127.0.0.1:2379', '--cacert', '/etc/kubernetes/pki/etcd/ca.crt', '--cert', '/etc/kubernetes/pki/etcd/server.crt', '--key', '/etc/kubernetes/pki/etcd/server.key', ...a];
  node('w9');
  const join_ = (version: string): { code: number; out: string; err: string } => run('w9', 'kubeadm', joinArgs({ key: null }, hash), version);
  // kubeadm's KubeletVersion preflight, both ways (the cluster is at 1.28.4).
  assert.match(join_('1.27.9').err, /\[ERROR KubeletVersion\]: the kubelet version is lower than the control plane version/);
  assert.match(join_('1.29.1').err, /\[ERROR KubeletVersion\]: the kubelet version is higher than the control plane version\. This is not a supported version skew/);
  assert.match(run('w9', 'kubeadm', ['version', '-o', 'short'], '1.29.1').out, /^v1\.29\.1$/m);

  // The cluster configuration moves to 1.29.1 (as racksmith's upgrade does it).
  const cfg = run('cp1', 'kubectl', [...kc, '-n', 'kube-system', 'get', 'configmap', 'kubeadm-config', '-o', 'jsonpath={.data.ClusterConfiguration}']);
  assert.is(cfg.code, 0, cfg.err);
  assert.match(cfg.out, /^kubernetesVersion: v1\.28\.4$/m);
  const patch = join(root, 'patch.json');
  writeFileSync(patch, JSON.stringify({ data: { ClusterConfiguration: withKubernetesVersion(cfg.out, '1.29.1') } }));
  assert.is(run('cp1', 'kubectl', [...kc, '-n', 'kube-system', 'patch', 'configmap', 'kubeadm-config', '--type', 'merge', '--patch-file', patch]).code, 0);
  // Skipping a minor: kubeadm 1.31 refuses a control plane at 1.29.
  assert.match(join_('1.31.0').err, /only supports deploying clusters with the control plane version >= 1\.30\.0\. Current version: v1\.29\.1/);
  assert.match(join_('1.28.4').err, /kubelet version is lower/, 'an old node never joins after the control plane moved on');
  const ok = join_('1.29.1');
  assert.is(ok.code, 0, ok.err);
  assert.match(run('cp1', 'kubectl', [...kc, 'get', 'nodes', '--no-headers']).out, /^w9\s+Ready\s+<none>\s+\S+\s+v1\.29\.1$/m, 'each node lists its own kubelet version');

  // etcd: health per member (exit 1 when one is unhealthy), snapshots, the reconfiguration check.
  const healthy = run('cp1', 'kubectl', etcdctl('endpoint', 'health', '--cluster'));
  assert.is(healthy.code, 0, healthy.err);
  assert.is(healthy.out.match(/ is healthy: successfully committed proposal/g)?.length, 2);
  writeFileSync(join(root, 'cluster', 'etcd-down-cp2'), '');
  const sick = run('cp1', 'kubectl', etcdctl('endpoint', 'health', '--cluster'));
  assert.is(sick.code, 1);
  assert.match(sick.out, /^https:\/\/[\d.]+:2379 is unhealthy: failed to commit proposal/m);
  assert.match(sick.err, /unhealthy cluster/);
  const ids = Object.fromEntries([...run('cp1', 'kubectl', etcdctl('member', 'list')).out.matchAll(/^([0-9a-f]+), started, (\w+),/gm)].map((m) => [m[2], m[1]]));
  const noQuorum = run('cp1', 'kubectl', etcdctl('member', 'remove', ids['cp1'] ?? ''));
  assert.is(noQuorum.code, 1, 'cp2 is down: removing cp1 would leave no healthy quorum');
  assert.match(noQuorum.err, /re-configuration failed due to not enough started members/);
  rmSync(join(root, 'cluster', 'etcd-down-cp2'));
  const snap = join(root, 'var-lib-etcd', 'racksmith-snapshot.db');
  const saved = run('cp1', 'kubectl', etcdctl('snapshot', 'save', snap));
  assert.is(saved.code, 0, saved.err);
  assert.match(saved.out, /Snapshot saved at /);
  assert.is(JSON.parse(readFileSync(snap, 'utf8')).clusterVersion, '1.29.1');
  assert.is(run('cp1', 'kubectl', etcdctl('member', 'remove', ids['cp2'] ?? '')).code, 0);
  const last = run('cp1', 'kubectl', etcdctl('member', 'remove', ids['cp1'] ?? ''));
  assert.is(last.code, 1, 'never the last member');
  assert.match(last.err, /not enough started members/);
});

test('without a CA in pki, init makes its own (whose hash racksmith would not know)', async () => {
  if (missing) return skipNote('stand-in', missing);
  rmSync(join(root, 'cluster'), { recursive: true });
  mkdirSync(join(root, 'cluster'));
  const fresh = node('solo');
  writeFileSync(join(fresh, 'config.yaml'), config());
  const r = run('solo', 'kubeadm', ['init', '--config', join(fresh, 'config.yaml'), '--upload-certs']);
  assert.is(r.code, 0, r.err);
  assert.match(r.out, /Generating "ca" certificate and key/);
  assert.is.not(parseJoinCommands(r.out)[0]?.caCertHash, discoveryHash((await testCa()).certPem));
});

test.run();
