import ssh2 from 'ssh2';
import type { SecretRepo } from '../inventory/store.js';

/**
 * racksmith's own SSH identity: one ed25519 key pair, made on first need and kept sealed in the
 * store. The seeds install the public key for the SSH user on every node; the orchestrator logs in
 * with the private key.
 */
export interface SshIdentity {
  readonly publicKey: string;
  readonly privateKey: string;
}

const SCOPE = 'global';
const MAX_TRIES = 16;

/**
 * A new ed25519 key pair in OpenSSH's formats. ssh2 (1.17) drops the leading zero bytes of an
 * ed25519 public key (mscdex/ssh2#1390, #1513): about one pair in 256 comes out malformed, so
 * ssh2 cannot load its private key and sshd cannot read its public one. Such a pair is made again.
 */
export function newSshKeyPair(comment = 'racksmith'): SshIdentity {
  for (let i = 0; i < MAX_TRIES; i++) {
    const pair = ssh2.utils.generateKeyPairSync('ed25519', { comment });
    if (usableKeyPair(pair.public, pair.private)) return { publicKey: pair.public.trim(), privateKey: pair.private };
  }
  throw new Error(`no usable ed25519 key pair in ${MAX_TRIES} tries`);
}

/** Both halves load, as ssh2 (the orchestrator) and sshd (the nodes) must read them. */
export function usableKeyPair(publicKey: string, privateKey: string): boolean {
  return !(ssh2.utils.parseKey(publicKey) instanceof Error) && !(ssh2.utils.parseKey(privateKey) instanceof Error);
}

/**
 * The stored identity, or a new one. A stored pair that cannot be loaded (made before the check
 * above) is replaced: no node can have accepted its malformed public key, so nothing is lost.
 */
export async function ensureSshIdentity(secrets: Pick<SecretRepo, 'get' | 'put'>): Promise<SshIdentity & { readonly replaced: boolean }> {
  const [pub, priv] = await Promise.all([secrets.get(SCOPE, 'ssh-public-key'), secrets.get(SCOPE, 'ssh-private-key')]);
  if (pub && priv && usableKeyPair(pub, priv)) return { publicKey: pub, privateKey: priv, replaced: false };
  const pair = newSshKeyPair();
  await secrets.put(SCOPE, 'ssh-private-key', pair.privateKey);
  await secrets.put(SCOPE, 'ssh-public-key', pair.publicKey);
  return { ...pair, replaced: Boolean(pub && priv) };
}
