import type { Machine } from '../inventory/model.js';
import type { MachineState } from '../inventory/lifecycle.js';

/**
 * Who may use a seed token, as a pure decision. Seeds carry cluster secrets, so a token works
 * only from assignment until the machine phones home (`ready`), and only from the machine's own
 * address when racksmith knows it. Unknown and expired tokens look the same from outside (404),
 * so a token cannot be probed for.
 */
export type SeedUse = 'read' | 'report';

export type SeedAccess =
  | { readonly ok: true; readonly machine: Machine }
  | { readonly ok: false; readonly status: 403 | 404; readonly code: string; readonly message: string; readonly machine: Machine | null };

/** States in which a machine is being installed and may read its seed and report. */
export const SEED_STATES: readonly MachineState[] = ['assigned', 'provisioning', 'installed', 'reimaging'];

/** Tokens are 24 random bytes in base64url; anything else is not worth a database lookup. */
export function plausibleToken(token: string): boolean {
  return /^[A-Za-z0-9_-]{16,64}$/.test(token);
}

/** `::ffff:10.0.0.5` → `10.0.0.5`: an IPv4 client on a dual-stack socket. */
export function normalizeRemote(address: string | undefined): string | null {
  if (!address) return null;
  return address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address;
}

export function checkSeedAccess(machine: Machine | null, remote: string | null, use: SeedUse): SeedAccess {
  if (machine === null) return { ok: false, status: 404, code: 'ERR_UNKNOWN_TOKEN', message: 'unknown or expired seed token', machine: null };
  // An installer that failed may still send its last progress events; it may not read seeds.
  const live = SEED_STATES.includes(machine.state) || (use === 'report' && machine.state === 'failed' && SEED_STATES.includes(machine.failedFrom ?? 'discovered'));
  if (!live) return { ok: false, status: 404, code: 'ERR_UNKNOWN_TOKEN', message: 'unknown or expired seed token', machine };
  if (machine.ip && remote !== machine.ip) {
    return { ok: false, status: 403, code: 'ERR_WRONG_ADDRESS', message: 'this seed token belongs to another machine', machine };
  }
  return { ok: true, machine };
}
