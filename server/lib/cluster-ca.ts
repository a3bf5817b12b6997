import { spawn } from 'node:child_process';
import { X509Certificate, createPrivateKey, randomBytes, type KeyObject } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * The cluster CA racksmith makes before `kubeadm init`, so the discovery hash every join needs
 * is known up front (kubeadm-join.md: "By generating your CA in beforehand, you may workaround
 * this limitation"). Node 20's crypto has no certificate builder (`X509Certificate` only
 * parses), so Debian's `openssl req -x509 -newkey` makes the key and the self-signed
 * certificate in one run — see docs/decisions/0601-cluster-ca-with-openssl.md.
 *
 * openssl writes the key to its stdout (`-keyout -`): it never touches the disk and is never on
 * a command line. Only the (public) request config goes through a temporary file. node:crypto
 * then checks the pair and re-encodes the key as PKCS#1, the form kubeadm itself writes.
 */
export interface ClusterCa {
  readonly certPem: string;
  readonly keyPem: string;
}

export class CaError extends Error {
  readonly code = 'ERR_CLUSTER_CA';
  constructor(message: string) {
    super(message);
    this.name = 'CaError';
  }
}

/** What kubeadm itself puts in its CA (certs.go: KeyUsageKeyEncipherment|DigitalSignature|CertSign, IsCA). */
const REQUEST_CONFIG = `[req]
distinguished_name = dn
prompt = no
[dn]
CN = kubernetes
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, digitalSignature, keyEncipherment, keyCertSign
subjectKeyIdentifier = hash
`;

export interface CaOptions {
  /** kubeadm's own CA lives ten years. */
  readonly days?: number;
  readonly openssl?: string;
  readonly timeoutMs?: number;
}

export async function createClusterCa(opts: CaOptions = {}): Promise<ClusterCa> {
  const serial = randomBytes(16);
  serial[0] = (serial[0] ?? 0) & 0x7f; // RFC 5280 §4.1.2.2: a positive integer
  const dir = mkdtempSync(join(tmpdir(), 'racksmith-ca-'));
  let out: string;
  try {
    const config = join(dir, 'req.cnf');
    writeFileSync(config, REQUEST_CONFIG);
    // RSA 2048: kubeadm's default CA key, loadable by every kubeadm from 1.18 on.
    const args = ['req', '-x509', '-newkey', 'rsa:2048', '-noenc', '-keyout', '-', '-config', config, '-extensions', 'ca', '-days', String(opts.days ?? 3650), '-sha256', '-set_serial', `0x${serial.toString('hex')}`];
    out = await runOpenssl(opts.openssl ?? 'openssl', args, opts.timeoutMs ?? 30_000);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const keyBlock = /-----BEGIN PRIVATE KEY-----[\s\S]+?-----END PRIVATE KEY-----\n?/.exec(out)?.[0];
  const certPem = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/.exec(out)?.[0];
  if (!keyBlock || !certPem) throw new CaError('openssl did not print a key and a certificate');
  let cert: X509Certificate;
  let key: KeyObject;
  try {
    cert = new X509Certificate(certPem);
    key = createPrivateKey(keyBlock);
  } catch (err) {
    throw new CaError(`openssl printed something unreadable: ${(err as Error).message}`);
  }
  if (!cert.ca) throw new CaError('openssl made a certificate without CA:TRUE');
  if (!cert.checkPrivateKey(key)) throw new CaError('openssl signed a certificate for another key');
  return { certPem, keyPem: key.export({ type: 'pkcs1', format: 'pem' }).toString() };
}

function runOpenssl(bin: string, args: readonly string[], timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'], timeout: timeoutMs });
    let out = '';
    let err = '';
    child.stdout?.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr?.setEncoding('utf8').on('data', (d: string) => (err += d));
    child.on('error', (e) => reject(new CaError(`cannot run ${bin}: ${e.message} (install Debian's openssl package)`)));
    child.on('close', (code, signal) => {
      if (code === 0 && out.includes('-----BEGIN CERTIFICATE-----')) resolve(out);
      else reject(new CaError(`${bin} req -x509 failed (${code ?? signal}): ${err.trim().slice(-500)}`));
    });
  });
}
