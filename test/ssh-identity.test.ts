import ssh2 from 'ssh2';
import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { ensureSshIdentity, newSshKeyPair, usableKeyPair } from '../server/lib/ssh-identity.js';
import { tempStore } from './lib/inventory.js';

/**
 * racksmith's SSH identity must load in ssh2 (the orchestrator logs in with it) and in sshd (the
 * seeds install its public key). ssh2's own ed25519 generator makes a malformed pair about once in
 * 256 (mscdex/ssh2#1390): such an install could never bootstrap a cluster.
 */
const test = suite('ssh identity');

/** A pair as ssh2 makes it that neither ssh2 nor sshd can load (about 1 in 256 tries). */
function malformedPair(): { public: string; private: string } {
  for (let i = 0; i < 20_000; i++) {
    const p = ssh2.utils.generateKeyPairSync('ed25519', { comment: 'racksmith' });
    if (ssh2.utils.parseKey(p.public) instanceof Error) return p;
  }
  throw new Error('ssh2 made no malformed pair in 20,000 tries: its generator may be fixed');
}

test('2,000 new pairs: every one loads, public and private', () => {
  // ssh2's generator alone would make about 8 bad pairs in 2,000 (none: 0.04 %).
  let bad = 0;
  for (let i = 0; i < 2000; i++) {
    const p = newSshKeyPair();
    if (!usableKeyPair(p.publicKey, p.privateKey)) bad++;
    assert.match(p.publicKey, /^ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI[A-Za-z0-9+/]{43} racksmith$/);
  }
  assert.is(bad, 0);
});

test('a malformed pair is not usable', () => {
  const p = malformedPair();
  assert.not.ok(usableKeyPair(p.public, p.private));
});

test('made once and kept; a stored malformed pair is replaced by a usable one', async () => {
  const store = await tempStore();
  try {
    const first = await ensureSshIdentity(store.secrets);
    assert.ok(usableKeyPair(first.publicKey, first.privateKey));
    assert.is(first.replaced, false);
    const again = await ensureSshIdentity(store.secrets);
    assert.equal([again.publicKey, again.privateKey, again.replaced], [first.publicKey, first.privateKey, false]);

    const bad = malformedPair();
    await store.secrets.put('global', 'ssh-public-key', bad.public.trim());
    await store.secrets.put('global', 'ssh-private-key', bad.private);
    const mended = await ensureSshIdentity(store.secrets);
    assert.is(mended.replaced, true);
    assert.ok(usableKeyPair(mended.publicKey, mended.privateKey));
    assert.is.not(mended.publicKey, bad.public.trim());
    const kept = await ensureSshIdentity(store.secrets);
    assert.equal([kept.publicKey, kept.replaced], [mended.publicKey, false]);
  } finally {
    await store.destroy();
  }
});

test.run();
