import { execFileSync } from 'node:child_process';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { createClusterCa, type ClusterCa } from '../server/lib/cluster-ca.js';
import { BOOTSTRAP_TOKEN_RE, discoveryHash, ensureClusterSecrets, newBootstrapToken, newCertificateKey, readClusterSecrets } from '../server/lib/cluster-secrets.js';
import { storedRows, tempStore } from './lib/inventory.js';
import { requirements, skipNote } from './lib/tools.js';

/** The cluster's kubeadm secrets: their formats, the CA openssl makes, and how they are stored. */
const test = suite('cluster secrets');

let ca: ClusterCa | null = null;
const theCa = async (): Promise<ClusterCa> => (ca ??= await createClusterCa());

test('bootstrap tokens have kubeadm\'s format and use the whole alphabet', () => {
  const seen = new Set<string>();
  for (let i = 0; i < 2000; i++) {
    const t = newBootstrapToken();
    assert.match(t, BOOTSTRAP_TOKEN_RE);
    for (const c of t.replace('.', '')) seen.add(c);
  }
  assert.is(seen.size, 36);
});

test('a random source that only gives rejected bytes cannot bias the token (they are skipped)', () => {
  let calls = 0;
  const t = newBootstrapToken((n) => {
    calls++;
    return Buffer.alloc(n, calls < 3 ? 0xff : 0x05);
  });
  assert.is(t, 'ffffff.ffffffffffffffff');
});

test('certificate keys are 64 hex characters (AES-256)', () => {
  assert.match(newCertificateKey(), /^[0-9a-f]{64}$/);
  assert.is.not(newCertificateKey(), newCertificateKey());
});

test('the CA is a self-signed CA with kubeadm\'s usages, and its key matches', async () => {
  const { certPem, keyPem } = await theCa();
  const cert = new X509Certificate(certPem);
  assert.ok(cert.ca);
  assert.is(cert.subject, 'CN=kubernetes');
  assert.is(cert.issuer, 'CN=kubernetes');
  assert.ok(cert.verify(cert.publicKey));
  assert.ok(cert.checkPrivateKey(createPrivateKey(keyPem)));
  assert.match(keyPem, /^-----BEGIN RSA PRIVATE KEY-----/);
  assert.ok(Date.parse(cert.validTo) - Date.now() > 9 * 365 * 86400_000);
});

test('openssl agrees: the CA verifies, and the discovery hash is kubeadm-join.md\'s openssl pipeline', async () => {
  const missing = requirements(['openssl']);
  if (missing) return skipNote('openssl cross-check', missing);
  const { certPem } = await theCa();
  const dir = mkdtempSync(join(tmpdir(), 'racksmith-ca-'));
  try {
    const file = join(dir, 'ca.crt');
    writeFileSync(file, certPem);
    assert.match(execFileSync('openssl', ['verify', '-CAfile', file, file], { encoding: 'utf8' }), /OK/);
    const text = execFileSync('openssl', ['x509', '-in', file, '-noout', '-text'], { encoding: 'utf8' });
    assert.match(text, /CA:TRUE/);
    assert.match(text, /Certificate Sign/);
    const pub = execFileSync('openssl', ['x509', '-pubkey', '-noout', '-in', file]);
    const der = execFileSync('openssl', ['rsa', '-pubin', '-outform', 'der'], { input: pub, stdio: ['pipe', 'pipe', 'ignore'] });
    const hex = execFileSync('openssl', ['dgst', '-sha256', '-hex'], { input: der, encoding: 'utf8' }).trim().split(' ').at(-1);
    assert.is(discoveryHash(certPem), `sha256:${hex}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('ensureClusterSecrets: concurrent callers get one set; stored sealed; readable after', async () => {
  const inv = await tempStore();
  try {
    await inv.clusters.create({ name: 'lab', ubuntuRelease: '22.04', kubernetesVersion: '1.28.4', containerRuntime: 'containerd', cni: 'flannel' });
    let made = 0;
    const makeCa = async (): Promise<ClusterCa> => {
      made++;
      // Each caller makes its own CA; only the first to store it wins.
      return made === 1 ? theCa() : createClusterCa();
    };
    const all = await Promise.all([1, 2, 3].map(() => ensureClusterSecrets(inv.secrets, 'lab', { makeCa })));
    assert.ok(made >= 1);
    for (const s of all) assert.equal(s, all[0]);
    const again = await readClusterSecrets(inv.secrets, 'lab');
    assert.equal(again, all[0]);
    assert.match(all[0]?.discoveryHash ?? '', /^sha256:[0-9a-f]{64}$/);
    const raw = (await storedRows(inv, 'SELECT scope, name, sealed FROM secrets')) as { scope: string; name: string; sealed: string }[];
    const row = raw.find((r) => r.scope === 'cluster:lab');
    assert.ok(row, 'stored under cluster:<name>');
    for (const r of raw) {
      assert.not.match(r.sealed, /PRIVATE KEY|BEGIN/);
      assert.not.ok(r.sealed.includes(all[0]?.bootstrapToken ?? '?'));
    }
    await inv.clusters.delete('lab');
    assert.is(await readClusterSecrets(inv.secrets, 'lab'), null, 'deleted with the cluster');
  } finally {
    await inv.destroy();
  }
});

test('putIfAbsent keeps the first value', async () => {
  const inv = await tempStore();
  try {
    assert.is(await inv.secrets.putIfAbsent('global', 'x', 'one'), 'one');
    assert.is(await inv.secrets.putIfAbsent('global', 'x', 'two'), 'one');
    assert.is(await inv.secrets.get('global', 'x'), 'one');
  } finally {
    await inv.destroy();
  }
});

test.run();
