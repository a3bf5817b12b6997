import { createHash, createPublicKey, randomBytes } from 'node:crypto';
import type { SecretRepo } from '../inventory/store.js';
import { createClusterCa, type ClusterCa } from './cluster-ca.js';

/**
 * A cluster's kubeadm secrets, made by racksmith once and kept sealed in the store under the
 * scope `cluster:<name>`: the bootstrap token, the certificate key that encrypts the uploaded
 * control-plane certificates, and the cluster CA. Everything a join needs is therefore known
 * before `kubeadm init` runs, and nothing has to be scraped from its output (kubeadm-join.md: a CA generated beforehand makes the hash known).
 *
 * Seeds and the orchestrator both call `ensureClusterSecrets`; the first caller creates them,
 * atomically, and every later caller reads the same ones.
 */
export interface ClusterSecrets {
  /** `[a-z0-9]{6}.[a-z0-9]{16}` (kubeadm's bootstrap token format). */
  readonly bootstrapToken: string;
  /** 64 hex characters: the AES-256 key of the `kubeadm-certs` Secret. */
  readonly certificateKey: string;
  readonly caCertPem: string;
  readonly caKeyPem: string;
  /** `sha256:<hex>` of the CA's SubjectPublicKeyInfo (RFC 7469 pin; kubeadm's discovery hash). */
  readonly discoveryHash: string;
  readonly createdAt: string;
}

export const clusterScope = (cluster: string): string => `cluster:${cluster}`;
export const BOOTSTRAP_SECRET = 'kubeadm-bootstrap';
/** The admin kubeconfig fetched from the first control node after init. */
export const ADMIN_CONF_SECRET = 'admin-conf';

export const BOOTSTRAP_TOKEN_RE = /^([a-z0-9]{6})\.([a-z0-9]{16})$/;
const ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789';

/** Uniform over the alphabet: bytes ≥ 252 (7 × 36) are dropped instead of folded. */
function randomChars(n: number, random: (size: number) => Buffer): string {
  let out = '';
  while (out.length < n) {
    for (const b of random(n * 2)) {
      if (b >= 252) continue;
      out += ALPHABET[b % 36];
      if (out.length === n) break;
    }
  }
  return out;
}

export function newBootstrapToken(random: (size: number) => Buffer = randomBytes): string {
  return `${randomChars(6, random)}.${randomChars(16, random)}`;
}

export function newCertificateKey(): string {
  return randomBytes(32).toString('hex');
}

export function discoveryHash(caCertPem: string): string {
  const spki = createPublicKey(caCertPem).export({ type: 'spki', format: 'der' });
  return `sha256:${createHash('sha256').update(spki).digest('hex')}`;
}

interface StoredBootstrap {
  readonly version: 1;
  readonly bootstrapToken: string;
  readonly certificateKey: string;
  readonly caCertPem: string;
  readonly caKeyPem: string;
  readonly createdAt: string;
}

function fromStored(text: string): ClusterSecrets {
  const s = JSON.parse(text) as StoredBootstrap;
  if (s.version !== 1 || !BOOTSTRAP_TOKEN_RE.test(s.bootstrapToken) || !/^[0-9a-f]{64}$/.test(s.certificateKey)) {
    throw new Error('stored cluster secrets have an unknown shape');
  }
  return { ...s, discoveryHash: discoveryHash(s.caCertPem) };
}

export async function readClusterSecrets(secrets: SecretRepo, cluster: string): Promise<ClusterSecrets | null> {
  const text = await secrets.get(clusterScope(cluster), BOOTSTRAP_SECRET);
  return text === null ? null : fromStored(text);
}

export async function ensureClusterSecrets(
  secrets: SecretRepo,
  cluster: string,
  opts: { now?: () => Date; makeCa?: () => Promise<ClusterCa> } = {},
): Promise<ClusterSecrets> {
  const existing = await readClusterSecrets(secrets, cluster);
  if (existing) return existing;
  const ca = await (opts.makeCa ?? createClusterCa)();
  const fresh: StoredBootstrap = {
    version: 1,
    bootstrapToken: newBootstrapToken(),
    certificateKey: newCertificateKey(),
    caCertPem: ca.certPem,
    caKeyPem: ca.keyPem,
    createdAt: (opts.now ?? (() => new Date()))().toISOString(),
  };
  // Stored as one sealed value so the CA, its key and the token can never come from two writers.
  return fromStored(await secrets.putIfAbsent(clusterScope(cluster), BOOTSTRAP_SECRET, JSON.stringify(fresh)));
}
