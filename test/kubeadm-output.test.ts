import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { findEtcdMember, joinContinuations, parseEtcdMembers, parseJoinCommands, parseNodes } from '../server/orchestrator/kubeadm-output.js';
import { createRedactor, REDACTED } from '../server/orchestrator/redact.js';
import { drainScript, etcdctlScript, joinCommand, script, writeFile } from '../server/orchestrator/commands.js';

/** Reading kubeadm/kubectl output, and keeping secrets out of what racksmith shows. */
const test = suite('kubeadm output and redaction');

const HASH = 'sha256:' + 'ab'.repeat(32);
const KEY = '9c'.repeat(32);
// The tail of `kubeadm init --upload-certs` as 1.28 prints it (showjoincommand.go): tabs and `\`.
const INIT_1_28 = `[upload-certs] Storing the certificates in Secret "kubeadm-certs" in the "kube-system" Namespace
[upload-certs] Using certificate key:
${KEY}
[bootstrap-token] Using token: abcdef.0123456789abcdef
Your Kubernetes control-plane has initialized successfully!

You can now join any number of the control-plane node running the following command on each as root:

  kubeadm join 10.77.0.10:6443 --token abcdef.0123456789abcdef \\
	--discovery-token-ca-cert-hash ${HASH} \\
	--control-plane --certificate-key ${KEY}

Please note that the certificate-key gives access to cluster sensitive data, keep it secret!
As a safeguard, uploaded-certs will be deleted in two hours; If necessary, you can use
"kubeadm init phase upload-certs --upload-certs" to reload certs afterward.

Then you can join any number of worker nodes by running the following on each as root:

kubeadm join 10.77.0.10:6443 --token abcdef.0123456789abcdef \\
	--discovery-token-ca-cert-hash ${HASH}
`;

// 1.18-era docs print each command on one line.
const INIT_1_18 = `  kubeadm join 10.77.0.10:6443 --token abcdef.0123456789abcdef --discovery-token-ca-cert-hash ${HASH} --control-plane --certificate-key ${KEY}
kubeadm join 10.77.0.10:6443 --token abcdef.0123456789abcdef --discovery-token-ca-cert-hash ${HASH}
`;

test('join commands with continuations: control-plane and worker', () => {
  for (const text of [INIT_1_28, INIT_1_18]) {
    assert.equal(parseJoinCommands(text), [
      { endpoint: '10.77.0.10:6443', token: 'abcdef.0123456789abcdef', caCertHash: HASH, controlPlane: true, certificateKey: KEY },
      { endpoint: '10.77.0.10:6443', token: 'abcdef.0123456789abcdef', caCertHash: HASH, controlPlane: false, certificateKey: null },
    ]);
  }
  assert.not.match(joinContinuations(INIT_1_28), /\\\n/);
});

test('output without join commands gives none', () => {
  assert.equal(parseJoinCommands('[preflight] Running pre-flight checks\nerror execution phase preflight'), []);
});

test('kubectl get nodes, with and without headers', () => {
  const withHeaders = `NAME   STATUS     ROLES           AGE   VERSION
cp1    Ready      control-plane   5m    v1.28.4
w1     NotReady   <none>          1m    v1.28.4
w2     Ready,SchedulingDisabled   <none>   1m   v1.28.4
`;
  assert.equal(parseNodes(withHeaders), [
    { name: 'cp1', status: 'Ready', ready: true, version: 'v1.28.4' },
    { name: 'w1', status: 'NotReady', ready: false, version: 'v1.28.4' },
    { name: 'w2', status: 'Ready,SchedulingDisabled', ready: true, version: 'v1.28.4' },
  ]);
  assert.equal(parseNodes('cp1 Ready master 3m v1.18.6\n\n'), [{ name: 'cp1', status: 'Ready', ready: true, version: 'v1.18.6' }]);
  assert.equal(parseNodes('cp1 Ready\n'), [{ name: 'cp1', status: 'Ready', ready: true, version: null }], 'no version column: unknown');
});

const CA_KEY = `-----BEGIN RSA PRIVATE KEY-----
MIIEpAIBAAKCAQEAx1x2y3z4AbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcd
efghIJKLmnopQRSTuvwxYZ0123456789+/abcdefghijklmnopqrstuvwxyzABCD
-----END RSA PRIVATE KEY-----`;

test('etcdctl member list (simple format, with and without the learner column); members found by name or peer address', () => {
  const text = [
    '8e9e05c52164694d, started, cp1, https://10.0.0.11:2380, https://10.0.0.11:2379, false',
    '91bc3c398fb3c146, started, cp2, https://10.0.0.12:2380,https://[fd00::12]:2380, https://10.0.0.12:2379, false',
    'fd422379fda50e48, unstarted, , https://10.0.0.13:2380, , false',
    '{"level":"warn","msg":"noise from the client"}',
    'a1b2, started, old, http://10.0.0.9:2380, http://10.0.0.9:2379',
  ].join('\n');
  const members = parseEtcdMembers(text);
  assert.equal(members.map((m) => [m.id, m.started, m.name]), [['8e9e05c52164694d', true, 'cp1'], ['91bc3c398fb3c146', true, 'cp2'], ['fd422379fda50e48', false, ''], ['a1b2', true, 'old']]);
  assert.equal(members[1]?.peerUrls, ['https://10.0.0.12:2380', 'https://[fd00::12]:2380']);
  assert.equal(members[2]?.clientUrls, []);
  assert.is(findEtcdMember(members, 'cp2', '10.0.0.12')?.id, '91bc3c398fb3c146');
  assert.is(findEtcdMember(members, 'cp3', '10.0.0.13')?.id, 'fd422379fda50e48', 'an unstarted member by its peer address');
  assert.is(findEtcdMember(members, 'cp4', '10.0.0.14'), null);
  assert.is(findEtcdMember(members, 'cp4', null), null);
  assert.equal(parseEtcdMembers('Error: context deadline exceeded\n'), []);
});

test('removal commands: the drain flag follows kubectl\'s version; etcdctl runs in the etcd pod with its certificates', () => {
  assert.match(drainScript('w1', { kubernetesMinor: 18, timeoutSeconds: 300 }), /kubectl --kubeconfig \/etc\/kubernetes\/admin\.conf drain 'w1' --ignore-daemonsets --delete-local-data --force --timeout=300s/);
  assert.match(drainScript('w1', { kubernetesMinor: 20, timeoutSeconds: 12.4 }), /--delete-emptydir-data --force --timeout=12s/);
  const e = etcdctlScript('cp2', ['member', 'remove', '8e9e05c52164694d']);
  assert.match(e, /-n kube-system exec 'etcd-cp2' -- etcdctl '--endpoints' 'https:\/\/127\.0\.0\.1:2379' '--cacert' '\/etc\/kubernetes\/pki\/etcd\/ca\.crt' '--cert' '\/etc\/kubernetes\/pki\/etcd\/server\.crt' '--key' '\/etc\/kubernetes\/pki\/etcd\/server\.key' 'member' 'remove' '8e9e05c52164694d'/);
});

test('redaction: the exact secrets, the token secret half, PEM keys and kubeconfig credentials', () => {
  const redact = createRedactor(['abcdef.0123456789abcdef', KEY, CA_KEY]);
  const out = redact(INIT_1_28);
  assert.not.ok(out.includes('0123456789abcdef'), out);
  assert.not.ok(out.includes(KEY), out);
  assert.ok(out.includes(HASH), 'the discovery hash is public and stays');
  assert.ok(out.includes(REDACTED));
  assert.is(redact(CA_KEY.split('\n')[1] as string), REDACTED, 'one line of the CA key alone');
  assert.not.match(redact(`x\n${CA_KEY}\ny`), /MIIE/);
  assert.is(redact('    client-key-data: LS0tLS1CRUdJTi'), `    client-key-data: ${REDACTED}`);
  // Secrets racksmith did not make are caught by their shape.
  assert.is(redact('token create printed zyxwvu.9876543210fedcba'), `token create printed ${REDACTED}`);
  assert.is(redact(`--certificate-key ${'7'.repeat(64)} --x`), `--certificate-key ${REDACTED} --x`);
  assert.is(redact('[upload-certs] Using certificate key:'), '[upload-certs] Using certificate key:');
});

test('scripts: one group, stdin closed, set -e; files via quoted here-documents', () => {
  const s = script(['echo hi']);
  assert.ok(s.startsWith('{\nexec </dev/null\nset -e\n'));
  assert.ok(s.endsWith('\n}\n'));
  const lines = writeFile('/etc/kubernetes/pki/ca.key', 'SECRET $HOME `x`\n', '0600', 'DELIM');
  assert.ok(lines.some((l) => l.includes("<<'DELIM'\nSECRET $HOME `x`\nDELIM\n")));
  assert.throws(() => writeFile('/x', 'a\nDELIM\n', '0600', 'DELIM'));
});

test('the join command quotes every value', () => {
  const cmd = joinCommand({ endpoint: '10.0.0.10:6443', token: 'abcdef.0123456789abcdef', caCertHash: HASH, nodeName: 'w1', criSocket: 'unix:///run/x.sock', controlPlane: { certificateKey: KEY, advertiseAddress: '10.0.0.12' } });
  assert.is(
    cmd,
    `kubeadm join '10.0.0.10:6443' '--token' 'abcdef.0123456789abcdef' '--discovery-token-ca-cert-hash' '${HASH}' '--control-plane' '--certificate-key' '${KEY}' '--apiserver-advertise-address' '10.0.0.12' '--node-name' 'w1' '--cri-socket' 'unix:///run/x.sock'`,
  );
});

test.run();
