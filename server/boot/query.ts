import { macRefusal, parseMac, type Mac } from '../lib/mac.js';
import type { Firmware } from '../inventory/model.js';

/**
 * The query string of `GET /boot.ipxe`, parsed once at the boundary. iPXE fills it from its own
 * settings (`${net0/mac:hexhyp}`, `${buildarch}`, `${platform}`, `${uuid}`), but anyone can send
 * anything: each value is checked against what iPXE can produce and dropped otherwise, so nothing
 * from a request ever reaches a script except through these narrow types.
 */
export const BUILD_ARCHES = ['i386', 'x86_64', 'arm32', 'arm64'] as const;
export type BuildArch = (typeof BUILD_ARCHES)[number];
export const PLATFORMS = ['pcbios', 'efi'] as const;
export type Platform = (typeof PLATFORMS)[number];

export interface BootQuery {
  /** null: no MAC given — answer with the chain script that asks again with one. */
  readonly mac: Mac | null;
  readonly arch: BuildArch | null;
  readonly platform: Platform | null;
  readonly uuid: string | null;
  /** How many times a waiting machine has asked (1 on the first). */
  readonly attempt: number;
  /** Signed GRUB's `$lockdown` (`y` when Secure Boot is enforced); null when not given. */
  readonly lockdown?: boolean | null;
}

export class BootQueryError extends Error {
  readonly code = 'ERR_BOOT_QUERY';
  readonly field: string;
  constructor(field: string, message: string) {
    super(message);
    this.name = 'BootQueryError';
    this.field = field;
  }
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function one(q: Record<string, unknown>, key: string): string | null {
  const v = q[key];
  if (v === undefined || v === '') return null;
  // A repeated key arrives as an array: ambiguous, so refused.
  if (typeof v !== 'string') throw new BootQueryError(key, `${key} must be given once`);
  return v;
}

export function parseBootQuery(q: Record<string, unknown>): BootQuery {
  const macText = one(q, 'mac');
  let mac: Mac | null = null;
  if (macText !== null) {
    mac = parseMac(macText);
    if (mac === null) throw new BootQueryError('mac', `mac: "${macText.slice(0, 40)}" is not a MAC address`);
    const refusal = macRefusal(mac);
    if (refusal !== null) throw new BootQueryError('mac', `mac: ${mac}: ${refusal}`);
  }
  const arch = one(q, 'arch');
  const platform = one(q, 'platform');
  const uuid = one(q, 'uuid');
  const attemptText = one(q, 'attempt');
  const attempt = attemptText !== null && /^\d{1,6}$/.test(attemptText) ? Math.max(1, Number(attemptText)) : 1;
  return {
    mac,
    arch: arch !== null && (BUILD_ARCHES as readonly string[]).includes(arch) ? (arch as BuildArch) : null,
    platform: platform !== null && (PLATFORMS as readonly string[]).includes(platform) ? (platform as Platform) : null,
    uuid: uuid !== null && UUID.test(uuid) ? uuid.toLowerCase() : null,
    attempt,
    lockdown: lockdownOf(one(q, 'lockdown')),
  };
}

function lockdownOf(v: string | null): boolean | null {
  return v === 'y' ? true : v === 'n' ? false : null;
}

/**
 * GRUB's per-machine config name, as racksmith's `grub/grub.cfg` asks for it over TFTP (or HTTP):
 * GRUB's own per-MAC name, `grub.cfg-01-<mac with dashes>` (GRUB manual, "Network"; the `01` is
 * the ARP hardware type, as PXELINUX spells it), then the same query as `/boot.ipxe`.
 */
export const GRUB_CONFIG_NAME = /^grub\/grub\.cfg-01-((?:[0-9a-f]{2}-){5}[0-9a-f]{2})(?:\?(.*))?$/i;

/** The query of a per-machine GRUB config name, or null when the name is not one. */
export function grubConfigQuery(name: string): Record<string, unknown> | null {
  const m = GRUB_CONFIG_NAME.exec(name);
  if (!m) return null;
  const q: Record<string, unknown> = {};
  for (const part of (m[2] ?? '').split('&')) {
    if (!part) continue;
    const eq = part.indexOf('=');
    const key = safeDecode(eq < 0 ? part : part.slice(0, eq));
    const value = safeDecode(eq < 0 ? '' : part.slice(eq + 1));
    if (key === null || value === null || key === 'mac') continue;
    // A repeated key is refused by the parser, as over HTTP.
    q[key] = key in q ? [q[key], value] : value;
  }
  q['mac'] = m[1];
  return q;
}

function safeDecode(s: string): string | null {
  try {
    return decodeURIComponent(s);
  } catch {
    return null;
  }
}

export function firmwareOf(platform: Platform | null): Firmware | null {
  return platform === 'pcbios' ? 'bios' : platform === 'efi' ? 'efi' : null;
}
