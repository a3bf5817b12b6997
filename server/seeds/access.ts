import type { Machine } from '../inventory/model.js';
import type { MachineState } from '../inventory/lifecycle.js';

/**
 * Who may use a seed token, as a pure decision. Seeds and reports move a machine's install
 * along, so a token works only from assignment until the machine phones home (`ready`), and only
 * from the machine's own addresses: the one that fetched the boot script carrying the token
 * (iPXE, then the installer and the installed system on the same DHCP lease) and the machine's
 * `ip` when the inventory has one (a static address after installation). Unknown and expired
 * tokens look the same from outside (404), so a token cannot be probed for.
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

export function checkSeedAccess(machine: Machine | null, remote: string | null, use: SeedUse, boundTo: string | null): SeedAccess {
  if (machine === null) return { ok: false, status: 404, code: 'ERR_UNKNOWN_TOKEN', message: 'unknown or expired seed token', machine: null };
  // An installer that failed may still send its last progress events; it may not read seeds.
  const live = SEED_STATES.includes(machine.state) || (use === 'report' && machine.state === 'failed' && SEED_STATES.includes(machine.failedFrom ?? 'discovered'));
  if (!live) return { ok: false, status: 404, code: 'ERR_UNKNOWN_TOKEN', message: 'unknown or expired seed token', machine };
  if (remote !== null && (remote === boundTo || remote === machine.ip)) return { ok: true, machine };
  const owners = [boundTo, machine.ip].filter((a): a is string => a !== null);
  const message = owners.length === 0 ? 'this seed token was not handed out by a boot script yet' : 'this seed token belongs to another machine';
  return { ok: false, status: 403, code: 'ERR_WRONG_ADDRESS', message, machine };
}

/**
 * Whether a boot script for this machine, asked from `remote`, may carry its seed token. The
 * machine's `ip` always may. Otherwise, when racksmith's own DHCP leased the machine's MAC an
 * address, the request must come from it: anyone else asking with that MAC is not the machine.
 * Without a lease (proxy mode, static addressing) the asker gets a token bound to its address.
 */
export function checkBootAddress(machine: Pick<Machine, 'ip'>, remote: string | null, leased: string | null): { ok: true } | { ok: false; message: string } {
  if (remote === null) return { ok: false, message: 'the boot script was asked for from an unknown address' };
  if (remote === machine.ip || leased === null || leased === remote) return { ok: true };
  return { ok: false, message: `this MAC holds racksmith's DHCP lease ${leased}; its boot script was asked for from ${remote}` };
}
