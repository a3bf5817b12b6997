import { join } from 'node:path';
import { newSshKeyPair } from '../server/lib/ssh-identity.js';
import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { readClusterSecrets } from '../server/lib/cluster-secrets.js';
import { createOrchestrator } from '../server/orchestrator/service.js';
import { createSshShell } from '../server/orchestrator/ssh.js';
import { tempStore } from './lib/inventory.js';
import { KubeBed, type Call } from './lib/kube-bed.js';
import { memoryLogger, phoneHome, testCa, testSettings, waitFor } from './lib/orch-harness.js';
import { requirements, skipNote } from './lib/tools.js';

// racksmith-test: both engines — the orchestrator's timers resume from persisted steps; short enough to run twice.

/**
 * Time and change, in-process with an injected clock against real sshd nodes: a control node
 * that becomes ready after the uploaded certificates' 2-hour life gets a re-upload first (the
 * stand-in refuses a join with expired certificates, as kubeadm does), and a control node added
 * later puts a new backend into the load balancer's haproxy, reloaded over SSH.
 */
const test = suite('orchestrator clock and LB update (real sshd)');
const missing = requirements(['sshd', 'ssh-keygen', 'sudo', 'unshare', 'haproxy', 'openssl'], { netns: true });

test('certificates re-uploaded before a control join past 2 h; LB updated when a control node is added', async () => {
  if (missing) return skipNote('orchestrator clock', missing);
  const bed = await KubeBed.create('o', [
    { name: 'lb1', role: 'loadbalancer' },
    { name: 'cp1', role: 'control-plane' },
    { name: 'cp2', role: 'control-plane' },
    { name: 'cp3', role: 'control-plane' },
  ], { version: '1.31.2' });
  const inv = await tempStore();
  const pair = newSshKeyPair();
  bed.authorize(pair.publicKey);
  let offset = 0;
  const { log, text } = memoryLogger();
  const orchestrator = createOrchestrator({
    inventory: inv,
    orchestration: inv.orchestration,
    shell: createSshShell(),
    privateKey: async () => pair.privateKey,
    settings: testSettings({ pollMs: 300, nodesReadyTimeoutMs: 20_000, cniManifests: { weave: 'https://x.test/w', flannel: 'https://x.test/f', calico: 'https://mirror.test/calico.yaml' } }),
    owner: 'clock-test',
    holder: 'clock test',
    now: () => new Date(Date.now() + offset),
    makeCa: testCa,
  });
  const abort = new AbortController();
  await orchestrator.start({ signal: abort.signal, log, fatal: () => undefined });
  const repo = inv.orchestration;
  const cluster = async (): Promise<string | undefined> => (await inv.clusters.get('lab'))?.state;
  const [lb, cp1, cp2, cp3] = ['lb1', 'cp1', 'cp2', 'cp3'].map((n) => bed.node(n));
  try {
    await inv.clusters.create({ name: 'lab', ubuntuRelease: '24.04', kubernetesVersion: '1.31.2', containerRuntime: 'containerd', cni: 'calico', podSubnet: '192.168.0.0/16', serviceSubnet: '10.96.0.0/12' });
    for (const n of [lb, cp1, cp2]) await inv.machines.create({ mac: n!.mac, hostname: n!.name, role: n!.role, cluster: 'lab', ip: n!.ip });
    for (const n of [lb, cp1]) await phoneHome(inv, n!.mac, [n!.hostKey]);
    await waitFor('CNI applied', async () => (await repo.steps('lab')).some((s) => s.id === 'cni' && s.state === 'done'), 60_000);
    const lb1 = (await repo.steps('lab')).find((s) => s.id === 'lb-config:1');
    assert.equal((lb1?.data['backends'] as { name: string }[]).map((b) => b.name), ['cp1', 'cp2'], 'every control node in the inventory, ready or not');

    // Two hours and ten minutes pass (for racksmith and for the "API server") before cp2 is ready.
    offset = (2 * 60 + 10) * 60_000;
    bed.setClockOffset(offset);
    await phoneHome(inv, cp2!.mac, [cp2!.hostKey]);
    orchestrator.kick('lab');
    await waitFor('cluster ready with cp2', async () => (await cluster()) === 'ready', 60_000);

    const secrets = await readClusterSecrets(inv.secrets, 'lab');
    const calls = bed.calls();
    const upload = calls.filter((c) => c.tool === 'kubeadm' && c.args.join(' ').startsWith('init phase upload-certs'));
    assert.is(upload.length, 1, 'one re-upload');
    assert.is(upload[0]?.node, 'cp1');
    assert.is(upload[0]?.args[upload[0].args.indexOf('--certificate-key') + 1], secrets?.certificateKey, "racksmith's key, so joins keep using it");
    const join2 = calls.find((c) => c.node === 'cp2' && c.args[0] === 'join') as Call;
    assert.is(join2.exit, 0, join2.err);
    assert.ok(join2.start > (upload[0] as Call).end, 'the re-upload ran before the control join');
    const ids = (await repo.steps('lab')).map((s) => s.id);
    assert.ok(ids.indexOf('upload-certs:1') < ids.indexOf(`join:${cp2!.mac}`));

    // A third control node is added to the inventory: the LB learns it, then it joins.
    await inv.machines.create({ mac: cp3!.mac, hostname: 'cp3', role: 'control-plane', cluster: 'lab', ip: cp3!.ip });
    orchestrator.kick('lab');
    await waitFor('LB updated', async () => (await repo.steps('lab')).some((s) => s.id === 'lb-config:2' && s.state === 'done'), 30_000);
    const cfg = bed.etcFile('lb1', 'haproxy/haproxy.cfg') ?? '';
    for (const n of [cp1, cp2, cp3]) assert.match(cfg, new RegExp(`server ${n!.name} ${n!.ip.replace(/\./g, '\\.')}:6443 check`));
    const lbCalls = bed.calls().filter((c) => c.node === 'lb1' && c.tool === 'systemctl' && c.args[0] !== 'is-active');
    assert.equal(lbCalls.map((c) => c.args.join(' ')), ['restart haproxy', 'reload haproxy'], 'started once, then reloaded');
    assert.is((await inv.machines.get(lb!.mac))?.state, 'joined');

    await phoneHome(inv, cp3!.mac, [cp3!.hostKey]);
    orchestrator.kick('lab');
    await waitFor('cluster ready with cp3', async () => (await cluster()) === 'ready' && (await inv.machines.get(cp3!.mac))?.state === 'joined', 60_000);
    const all = bed.calls();
    assert.is(all.filter((c) => c.args.join(' ').startsWith('init phase upload-certs')).length, 1, 'still fresh: no second upload');
    assert.is(all.find((c) => c.node === 'cp3' && c.args[0] === 'join')?.exit, 0);
    const init = all.find((c) => c.args[0] === 'init' && c.args[1] !== 'phase');
    assert.match(String(init?.files['/etc/kubernetes/racksmith/kubeadm-config.yaml']), /kubeadm\.k8s\.io\/v1beta4[\s\S]*kubeletExtraArgs:\n\s+- name: node-ip/);
    assert.not.ok(text().includes(secrets?.certificateKey ?? '?'), 'the certificate key is not in the log');
  } catch (err) {
    bed.keep(join(process.cwd(), 'test-artifacts', 'orchestrator-clock'));
    const steps = await repo.steps('lab').catch(() => []);
    process.stderr.write(`steps: ${steps.map((s) => `${s.id}=${s.state}`).join(' ')}\norchestrator log (tail):\n${text().trim().split('\n').slice(-25).join('\n')}\n`);
    throw err;
  } finally {
    abort.abort();
    await orchestrator.stop();
    await inv.destroy();
    await bed.destroy();
  }
});

test.run();
