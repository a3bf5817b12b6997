import { spawn } from 'node:child_process';
import { X509Certificate, generateKeyPair, randomBytes } from 'node:crypto';
import { promisify } from 'node:util';

/**
 * The cluster CA racksmith makes before `kubeadm init`, so the discovery hash every join needs
 * is known up front (kubeadm-join.md: "By generating your CA in beforehand, you may workaround
 * this limitation"). Node 20's crypto makes and signs keys but has no certificate builder
 * (`X509Certificate` only parses), so the key is made by node:crypto and the self-signed
 * certificate by Debian's `openssl req -x509` — see docs/decisions/0601-cluster-ca-with-openssl.md.
 *
 * The key reaches openssl on its stdin and the request config on fd 3: nothing secret is ever
 * written to disk or put on a command line.
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

const generate = promisify(generateKeyPair);

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
  // RSA 2048: kubeadm's default CA key, loadable by every kubeadm from 1.18 on.
  const { privateKey } = await generate('rsa', { modulusLength: 2048 });
  const keyPem = privateKey.export({ type: 'pkcs1', format: 'pem' }).toString();
  const serial = randomBytes(16);
  serial[0] = (serial[0] ?? 0) & 0x7f; // RFC 5280 §4.1.2.2: a positive integer
  const args = ['req', '-x509', '-new', '-key', '/dev/stdin', '-config', '/dev/fd/3', '-extensions', 'ca', '-days', String(opts.days ?? 3650), '-sha256', '-set_serial', `0x${serial.toString('hex')}`];
  const certPem = await runOpenssl(opts.openssl ?? 'openssl', args, keyPem, REQUEST_CONFIG, opts.timeoutMs ?? 30_000);
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(certPem);
  } catch (err) {
    throw new CaError(`openssl printed something that is not a certificate: ${(err as Error).message}`);
  }
  if (!cert.ca) throw new CaError('openssl made a certificate without CA:TRUE');
  if (!cert.checkPrivateKey(privateKey)) throw new CaError('openssl signed a certificate for another key');
  return { certPem, keyPem };
}

function runOpenssl(bin: string, args: readonly string[], stdin: string, fd3: string, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, { stdio: ['pipe', 'pipe', 'pipe', 'pipe'], timeout: timeoutMs });
    let out = '';
    let err = '';
    child.stdout?.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr?.setEncoding('utf8').on('data', (d: string) => (err += d));
    child.on('error', (e) => reject(new CaError(`cannot run ${bin}: ${e.message} (install Debian's openssl package)`)));
    child.on('close', (code, signal) => {
      if (code === 0 && out.includes('-----BEGIN CERTIFICATE-----')) resolve(out);
      else reject(new CaError(`${bin} req -x509 failed (${code ?? signal}): ${err.trim().slice(-500)}`));
    });
    const extra = child.stdio[3];
    if (extra && 'end' in extra) extra.end(fd3);
    child.stdin?.end(stdin);
  });
}
