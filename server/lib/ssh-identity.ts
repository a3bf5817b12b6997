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

export async function ensureSshIdentity(secrets: SecretRepo): Promise<SshIdentity> {
  const [pub, priv] = await Promise.all([secrets.get(SCOPE, 'ssh-public-key'), secrets.get(SCOPE, 'ssh-private-key')]);
  if (pub && priv) return { publicKey: pub, privateKey: priv };
  const pair = ssh2.utils.generateKeyPairSync('ed25519', { comment: 'racksmith' });
  await secrets.put(SCOPE, 'ssh-private-key', pair.private);
  await secrets.put(SCOPE, 'ssh-public-key', pair.public.trim());
  return { publicKey: pair.public.trim(), privateKey: pair.private };
}
