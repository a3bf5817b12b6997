import { readFileSync } from 'node:fs';

/**
 * The site admins' own SSH keys, put on every node beside racksmith's (as MAAS puts its users'
 * keys): one authorized_keys file, plain keys only. Each line is checked — a known key type whose
 * base64 blob decodes and names that same type — so a typo fails at start, not as a node nobody
 * can log in to.
 */
const KEY_TYPES = new Set([
  'ssh-ed25519',
  'ssh-rsa',
  'ecdsa-sha2-nistp256',
  'ecdsa-sha2-nistp384',
  'ecdsa-sha2-nistp521',
  'sk-ssh-ed25519@openssh.com',
  'sk-ecdsa-sha2-nistp256@openssh.com',
]);

export class AdminKeyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AdminKeyError';
  }
}

/** The key of one authorized_keys line, or an error naming the line's problem; null for blanks and comments. */
export function parseAdminKey(line: string): string | null {
  const text = line.trim();
  if (text === '' || text.startsWith('#')) return null;
  const [type = '', blob = '', ...comment] = text.split(/\s+/);
  if (!KEY_TYPES.has(type)) {
    throw new AdminKeyError(KEY_TYPES.has(blob) ? 'key options (from=, command=, …) are not supported: give the plain key' : `"${type.slice(0, 40)}" is not an SSH public key type (${[...KEY_TYPES].slice(0, 3).join(', ')}, …)`);
  }
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(blob)) throw new AdminKeyError(`the ${type} key is not base64`);
  const raw = Buffer.from(blob, 'base64');
  const len = raw.length >= 4 ? raw.readUInt32BE(0) : -1;
  if (len !== type.length || raw.subarray(4, 4 + len).toString('latin1') !== type) throw new AdminKeyError(`the ${type} key's data does not name ${type} (a truncated or mixed-up key)`);
  return [type, blob, ...comment].join(' ');
}

export function parseAdminKeys(text: string, source: string): string[] {
  const keys: string[] = [];
  text.split('\n').forEach((line, i) => {
    try {
      const key = parseAdminKey(line);
      if (key !== null) keys.push(key);
    } catch (err) {
      throw new AdminKeyError(`${source}, line ${i + 1}: ${(err as Error).message}`);
    }
  });
  return keys;
}

export function readAdminKeys(path: string): string[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new AdminKeyError(`cannot read the admin SSH keys file ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  return parseAdminKeys(text, path);
}
