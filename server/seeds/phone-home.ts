import type { SshHostKey } from '../inventory/model.js';
import type { InstallerKind } from '../boot/releases.js';

/**
 * cloud-init's phone_home POST (cloudinit/config/cc_phone_home.py): form-encoded, with
 * `pub_key_rsa`, `pub_key_ecdsa`, `pub_key_ed25519` (20.2+), `pub_key_dsa` (until 24.1, so
 * Ubuntu 18.04 still sends it), `instance_id`, `hostname`, `fqdn`; a missing value is `N/A`.
 * JSON with the same fields is accepted too. Parsed once, at the boundary.
 */
export interface PhoneHome {
  readonly hostKeys: readonly SshHostKey[];
  readonly instanceId: string | null;
  readonly hostname: string | null;
  readonly fqdn: string | null;
}

export class PhoneHomeError extends Error {
  readonly code: string;
  readonly field: string | undefined;
  constructor(code: string, message: string, field?: string) {
    super(message);
    this.name = 'PhoneHomeError';
    this.code = code;
    this.field = field;
  }
}

const KEY_FIELDS = ['pub_key_rsa', 'pub_key_ecdsa', 'pub_key_ed25519', 'pub_key_dsa'] as const;
const KEY_TYPES = ['ssh-rsa', 'ssh-dss', 'ssh-ed25519', 'ecdsa-sha2-nistp256', 'ecdsa-sha2-nistp384', 'ecdsa-sha2-nistp521'];

function text(body: Record<string, unknown>, key: string, max: number): string | null {
  const v = body[key];
  if (v === undefined || v === null) return null;
  if (typeof v !== 'string') throw new PhoneHomeError('ERR_PHONE_HOME', `${key} must be a string`, key);
  const s = v.trim();
  if (s === '' || s === 'N/A') return null;
  if (s.length > max || /[\r\n\0]/.test(s)) throw new PhoneHomeError('ERR_PHONE_HOME', `${key} is not a single line of at most ${max} characters`, key);
  return s;
}

/** An OpenSSH public key line `<type> <base64> [comment]`, kept as `<type> <base64>`. */
export function parseHostKey(line: string, field: string): SshHostKey {
  const [type, b64] = line.split(/\s+/);
  if (!type || !b64 || !KEY_TYPES.includes(type) || !/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) {
    throw new PhoneHomeError('ERR_HOST_KEY', `${field} is not an OpenSSH public key`, field);
  }
  // The key blob starts with its own type name (RFC 4253 §6.6): a mismatch is a forged line.
  const blob = Buffer.from(b64, 'base64');
  const n = blob.length >= 4 ? blob.readUInt32BE(0) : -1;
  if (n < 0 || 4 + n > blob.length || blob.subarray(4, 4 + n).toString('latin1') !== type) {
    throw new PhoneHomeError('ERR_HOST_KEY', `${field}: the key data does not match its type ${type}`, field);
  }
  return { type, key: b64 };
}

export function parsePhoneHome(body: unknown): PhoneHome {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw new PhoneHomeError('ERR_PHONE_HOME', 'expected a form-encoded or JSON body with pub_key_* fields');
  }
  const b = body as Record<string, unknown>;
  const hostKeys: SshHostKey[] = [];
  for (const field of KEY_FIELDS) {
    const line = text(b, field, 16_384);
    if (line !== null) hostKeys.push(parseHostKey(line, field));
  }
  if (hostKeys.length === 0) throw new PhoneHomeError('ERR_NO_HOST_KEY', 'a phone-home must carry at least one SSH host key (pub_key_*)', 'pub_key_ed25519');
  return { hostKeys, instanceId: text(b, 'instance_id', 256), hostname: text(b, 'hostname', 253), fqdn: text(b, 'fqdn', 253) };
}

/**
 * Whether a phone-home's instance id shows another install than racksmith's current one. Only
 * debian-installer's and the deploy agent's systems run with racksmith's meta-data (the preseed's
 * late_command copies the seed into the installed system; the agent writes its instance id). subiquity gives the installed system's cloud-init an
 * instance-id of its own, a random UUID (the `None` datasource in 99-installer.cfg), so on 20.04+
 * there is nothing to compare — every ordinary install would look like another instance.
 */
export function otherInstance(kind: InstallerKind | null, reported: string | null, current: string | null): boolean {
  return (kind === 'debian-installer' || kind === 'deploy-agent') && reported !== null && reported !== current;
}
