import { randomBytes } from 'node:crypto';
import * as assert from 'uvu/assert';
import { createSecretBox } from '../server/lib/secrets.js';
import { suite } from './lib/suite.js';

/**
 * The secret box keeps what it opened (a machine's seed token is opened for every boot script it
 * fetches): what it keeps must never open a form the key would refuse.
 */
const test = suite('secrets: sealed at rest, opened once per sealed form');

test('a sealed form opens to its secret, again and again; each sealing differs', () => {
  const box = createSecretBox(randomBytes(32));
  const a = box.seal('token-1');
  const b = box.seal('token-1');
  assert.is.not(a, b, 'each sealing has its own IV');
  for (let i = 0; i < 3; i++) assert.is(box.open(a), 'token-1');
  assert.is(box.open(b), 'token-1');
});

test('a form tampered with after it was opened is refused, opened or not', () => {
  const box = createSecretBox(randomBytes(32));
  const sealed = box.seal('bmc-password');
  assert.is(box.open(sealed), 'bmc-password');
  const [v, iv, tag, body] = sealed.split('.') as [string, string, string, string];
  const flipped = Buffer.from(body, 'base64url');
  flipped[0] = (flipped[0] ?? 0) ^ 1;
  assert.throws(() => box.open([v, iv, tag, flipped.toString('base64url')].join('.')), (e: Error & { code?: string }) => e.code === 'ERR_SECRET_KEY');
  assert.throws(() => box.open('v2.x.y.z'), /unknown format/);
});

test('another key opens nothing, even a form this process opened before with the right key', () => {
  const right = createSecretBox(randomBytes(32));
  const wrong = createSecretBox(randomBytes(32));
  const sealed = right.seal('cluster-ca-key');
  assert.is(right.open(sealed), 'cluster-ca-key');
  assert.throws(() => wrong.open(sealed), (e: Error & { code?: string }) => e.code === 'ERR_SECRET_KEY');
});

test('past its bound (4,096) every form still opens to its own secret, the let-go ones from the key', () => {
  const box = createSecretBox(randomBytes(32));
  const forms = Array.from({ length: 5000 }, (_, i) => box.seal(`s${i}`));
  for (const f of forms) box.open(f);
  // Twice round, in another order: the first 904 were let go and come back from the key.
  forms.forEach((f, i) => assert.is(box.open(f), `s${i}`));
  [...forms].reverse().forEach((f, i) => assert.is(box.open(f), `s${4999 - i}`));
});

test.run();
