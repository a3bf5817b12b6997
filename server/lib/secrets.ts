import { createCipheriv, createDecipheriv, createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync, chmodSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Secrets at rest (BMC passwords, cluster secrets, seed tokens) are sealed with AES-256-GCM.
 * Sealed form: `v1.<iv b64url>.<tag b64url>.<ciphertext b64url>` — self-describing, so the key
 * or algorithm can change later with a new prefix.
 */
export interface SecretBox {
  seal(plain: string): string;
  open(sealed: string): string;
}

const IV_BYTES = 12;
export const SECRET_KEY_FILE = 'secret.key';

/** Opened secrets kept, by sealed form: a machine's seed token is opened for every boot script it fetches. */
const OPENED_MAX = 4096;

export function createSecretBox(key: Buffer): SecretBox {
  if (key.length !== 32) throw new Error(`the secrets key must be 32 bytes, got ${key.length}`);
  // Each sealing has its own IV, so a sealed form names one secret for good: what it opened to
  // can be kept. The process holds the key anyway; this holds nothing the key does not open.
  const opened = new Map<string, string>();
  return {
    seal(plain) {
      const iv = randomBytes(IV_BYTES);
      const cipher = createCipheriv('aes-256-gcm', key, iv);
      const body = Buffer.concat([cipher.update(plain, 'utf8'), cipher.final()]);
      return ['v1', iv.toString('base64url'), cipher.getAuthTag().toString('base64url'), body.toString('base64url')].join('.');
    },
    open(sealed) {
      const known = opened.get(sealed);
      if (known !== undefined) return known;
      const plain = openSealed(key, sealed);
      if (opened.size >= OPENED_MAX) opened.delete(opened.keys().next().value as string);
      opened.set(sealed, plain);
      return plain;
    },
  };
}

function openSealed(key: Buffer, sealed: string): string {
  const [version, iv, tag, body] = sealed.split('.');
  if (version !== 'v1' || iv === undefined || tag === undefined || body === undefined) {
    throw new Error('sealed secret has an unknown format');
  }
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(iv, 'base64url'));
    decipher.setAuthTag(Buffer.from(tag, 'base64url'));
    return Buffer.concat([decipher.update(Buffer.from(body, 'base64url')), decipher.final()]).toString('utf8');
  } catch {
    // GCM's tag check fails the same way for a wrong key and for tampering; the wrong key is
    // what an operator meets (a changed RACKSMITH_SECRET_KEY, a data directory moved without
    // its key file), so say that.
    throw Object.assign(
      new Error('a stored secret does not open with this secrets key: RACKSMITH_SECRET_KEY (or the data directory\'s secret.key) is not the key it was sealed with'),
      { code: 'ERR_SECRET_KEY' },
    );
  }
}

/**
 * The key from `RACKSMITH_SECRET_KEY` (64 hex chars or 32 bytes in base64), else from the key
 * file in the data directory, created with mode 0600 on first start.
 */
export function loadSecretKey(configured: string | undefined, dataDir: string): Buffer {
  if (configured) return decodeKey(configured, 'RACKSMITH_SECRET_KEY');
  const file = join(dataDir, SECRET_KEY_FILE);
  if (existsSync(file)) return decodeKey(readFileSync(file, 'utf8').trim(), file);
  const key = randomBytes(32);
  writeFileSync(file, key.toString('hex') + '\n', { mode: 0o600, flag: 'wx' });
  chmodSync(file, 0o600);
  return key;
}

function keyBytes(text: string): Buffer | null {
  if (/^[0-9a-fA-F]{64}$/.test(text)) return Buffer.from(text, 'hex');
  if (!/^[A-Za-z0-9+/_-]{42,44}={0,2}$/.test(text)) return null;
  const b64 = Buffer.from(text, 'base64');
  return b64.length === 32 ? b64 : null;
}

/** For the settings check: is this text a usable key? */
export function isSecretKeyText(text: string): boolean {
  return keyBytes(text) !== null;
}

function decodeKey(text: string, where: string): Buffer {
  const key = keyBytes(text);
  if (key) return key;
  throw new Error(`${where}: the secrets key must be 64 hex characters or 32 bytes in base64`);
}

/** Tokens are random and long, so one SHA-256 is a sound storage hash (no password stretching needed). */
export function hashToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

export function newToken(prefix: string, bytes = 32): string {
  return `${prefix}${randomBytes(bytes).toString('base64url')}`;
}

export function constantTimeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}
