import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { parseAllDocuments } from 'yaml';
import { AUTOINSTALL_DIR, PACKAGE_ROOT } from '../server/lib/paths.js';
import { createRenderer } from '../server/render/templates.js';
import {
  KUBEADM_TEMPLATES_DIR,
  criSocket,
  kubeadmApiVersion,
  renderHaproxyConfig,
  renderKubeadmConfig,
  type KubeadmConfigInput,
} from '../server/orchestrator/kubeadm-config.js';
import { cluster } from './lib/orch-fixtures.js';
import { requirements, skipNote } from './lib/tools.js';

/**
 * kubeadm configurations per config API, compared with saved files (regenerate with
 * UPDATE_GOLDEN=1), and the haproxy configuration checked by haproxy itself.
 */
const test = suite('kubeadm config');
const GOLDEN = join(PACKAGE_ROOT, 'test', 'golden', 'kubeadm');
const renderer = createRenderer(KUBEADM_TEMPLATES_DIR);

function input(version: string, runtime: 'docker' | 'containerd', cni: 'weave' | 'flannel' | 'calico'): KubeadmConfigInput {
  return {
    cluster: cluster({ name: 'rack7', kubernetesVersion: version, containerRuntime: runtime, cni, podSubnet: cni === 'weave' ? '10.32.0.0/12' : '10.244.0.0/16' }),
    endpoint: '10.77.0.10:6443',
    node: { name: 'cp1', ip: '10.77.0.11' },
    loadBalancer: { hostname: 'lb1', ip: '10.77.0.10' },
    bootstrapToken: 'abcdef.0123456789abcdef',
    certificateKey: 'f'.repeat(64),
    podSubnet: cni === 'weave' ? '10.32.0.0/12' : '10.244.0.0/16',
    serviceSubnet: '10.96.0.0/12',
    imageRepository: 'registry.k8s.io',
  };
}

const GOLDENS = [
  { file: '1.18.6.yaml', input: input('1.18.6', 'docker', 'weave'), api: 'kubeadm.k8s.io/v1beta2', socket: '/var/run/dockershim.sock' },
  { file: '1.28.yaml', input: input('1.28.4', 'containerd', 'flannel'), api: 'kubeadm.k8s.io/v1beta3', socket: 'unix:///var/run/containerd/containerd.sock' },
  { file: '1.31.yaml', input: input('1.31.2', 'containerd', 'calico'), api: 'kubeadm.k8s.io/v1beta4', socket: 'unix:///var/run/containerd/containerd.sock' },
];

for (const g of GOLDENS) {
  test(`golden ${g.file}`, () => {
    const text = renderKubeadmConfig(renderer, g.input);
    const path = join(GOLDEN, g.file);
    if (process.env['UPDATE_GOLDEN'] === '1' || !existsSync(path)) {
      if (process.env['UPDATE_GOLDEN'] !== '1') throw new Error(`${path} is missing: run with UPDATE_GOLDEN=1 to write it`);
      mkdirSync(GOLDEN, { recursive: true });
      writeFileSync(path, text);
    }
    assert.fixture(text, readFileSync(path, 'utf8'));

    const docs = parseAllDocuments(text).map((d) => d.toJS() as Record<string, any>);
    assert.equal(
      docs.map((d) => `${d['apiVersion']} ${d['kind']}`),
      [`${g.api} InitConfiguration`, `${g.api} ClusterConfiguration`, 'kubelet.config.k8s.io/v1beta1 KubeletConfiguration'],
    );
    const [init, cfg, kubelet] = docs as [Record<string, any>, Record<string, any>, Record<string, any>];
    assert.match(init['bootstrapTokens'][0].token, /^[a-z0-9]{6}\.[a-z0-9]{16}$/);
    assert.is(init['certificateKey'], 'f'.repeat(64));
    assert.is(init['nodeRegistration'].criSocket, g.socket);
    assert.is(cfg['controlPlaneEndpoint'], '10.77.0.10:6443');
    assert.equal(cfg['apiServer'].certSANs, ['10.77.0.10', 'lb1']);
    assert.is(cfg['kubernetesVersion'], `v${g.input.cluster.kubernetesVersion}`);
    assert.is(kubelet['cgroupDriver'], 'systemd');
    // v1beta4 turned extraArgs maps into lists of {name, value} (kubernetes/kubernetes#125029).
    const extra = init['nodeRegistration'].kubeletExtraArgs;
    if (g.api.endsWith('v1beta4')) assert.equal(extra, [{ name: 'node-ip', value: '10.77.0.11' }]);
    else assert.equal(extra, { 'node-ip': '10.77.0.11' });
  });
}

const VERSIONS: [string, string][] = [
  ['1.18.6', 'v1beta2'],
  ['1.21.14', 'v1beta2'],
  ['1.22.0', 'v1beta3'],
  ['1.30.9', 'v1beta3'],
  ['1.31.0', 'v1beta4'],
  ['1.34.1', 'v1beta4'],
];
for (const [version, api] of VERSIONS) {
  test(`Kubernetes ${version} → kubeadm ${api}`, () => assert.is(kubeadmApiVersion(version), api));
}

test('versions before 1.18 are refused with a code', () => {
  try {
    kubeadmApiVersion('1.17.3');
    assert.unreachable();
  } catch (err) {
    assert.is((err as { code?: string }).code, 'ERR_KUBERNETES_VERSION');
  }
});

test('criSocket follows runtime and API', () => {
  assert.is(criSocket({ containerRuntime: 'containerd', kubernetesVersion: '1.20.1' }), '/var/run/containerd/containerd.sock');
  assert.is(criSocket({ containerRuntime: 'docker', kubernetesVersion: '1.23.1' }), 'unix:///var/run/dockershim.sock');
});

test('a value that would break the YAML is quoted, not injected', () => {
  const bad = { ...input('1.28.4', 'containerd', 'flannel'), node: { name: 'cp1\nkind: Evil', ip: '10.77.0.11' } };
  const docs = parseAllDocuments(renderKubeadmConfig(renderer, bad)).map((d) => d.toJS() as Record<string, any>);
  assert.is(docs[0]?.['nodeRegistration'].name, 'cp1\nkind: Evil');
  assert.is(docs[0]?.['kind'], 'InitConfiguration');
});

const haproxy = createRenderer(AUTOINSTALL_DIR);
const backends = [
  { name: 'cp1', address: '10.77.0.11', port: 6443 },
  { name: 'cp2', address: '10.77.0.12', port: 6443 },
];

test('haproxy: TCP, round robin, one checked server line per control node', () => {
  const cfg = renderHaproxyConfig(haproxy, backends);
  assert.match(cfg, /^\s+mode tcp$/m);
  assert.match(cfg, /^\s+bind \*:6443$/m);
  assert.match(cfg, /^\s+balance roundrobin$/m);
  assert.equal(
    cfg.split('\n').filter((l) => l.trim().startsWith('server ')).map((l) => l.trim()),
    ['server cp1 10.77.0.11:6443 check check-ssl verify none inter 3s fall 3 rise 2', 'server cp2 10.77.0.12:6443 check check-ssl verify none inter 3s fall 3 rise 2'],
  );
});

test('haproxy: a backend that could break the server line is refused', () => {
  for (const b of [{ name: 'cp1 backup', address: '10.0.0.1', port: 6443 }, { name: 'cp1', address: '10.0.0.1\nlisten x', port: 6443 }, { name: 'cp1', address: '10.0.0.1', port: 70000 }]) {
    try {
      renderHaproxyConfig(haproxy, [b]);
      assert.unreachable();
    } catch (err) {
      assert.is((err as { code?: string }).code, 'ERR_HAPROXY_BACKEND');
    }
  }
});

test('haproxy -c accepts the rendered configuration (real haproxy)', () => {
  const missing = requirements(['haproxy']);
  if (missing) return skipNote('haproxy -c', missing);
  const dir = mkdtempSync(join(tmpdir(), 'racksmith-haproxy-'));
  try {
    for (const list of [backends, []]) {
      const file = join(dir, 'haproxy.cfg');
      writeFileSync(file, renderHaproxyConfig(haproxy, list));
      const out = execFileSync('haproxy', ['-c', '-f', file], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
      assert.match(out, /Configuration file is valid/);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
