import type { InventoryEvent, Machine } from '../../inventory/model.js';
import type { MachineState } from '../../inventory/lifecycle.js';

/**
 * When racksmith holds a machine's serial console (IPMI SOL), as pure decisions.
 *
 * - Explicit: the machine's `bmc.solCapture`, else its rack in the `sol-capture-racks` setting.
 * - Bounded: only while the machine installs (reimaging → provisioning → installed); `ready`,
 *   `failed`, a deletion or any later state closes it. One session per BMC.
 * - Yielding: a BMC has one SOL slot. When a person asks for it (the API's detach, or their own
 *   `ipmitool sol deactivate`, which ends racksmith's session), racksmith lets go and does not
 *   attach again until the next install or an explicit attach. A slot someone else holds is never
 *   taken (racksmith never runs `sol deactivate`); it is asked for again later.
 */
export const CAPTURE_STATES: readonly MachineState[] = ['reimaging', 'provisioning', 'installed'];

export type CaptureState = 'off' | 'attaching' | 'attached' | 'busy' | 'yielded' | 'detached' | 'ended' | 'failed';

export interface CaptureFacts {
  readonly state: CaptureState;
  /** A person detached it (API) or took the slot: no automatic attach until the install ends. */
  readonly heldBack: boolean;
}

/** Does this machine want its console captured now (setting-wise, state aside)? */
export function captureWanted(m: Pick<Machine, 'bmc' | 'rack'>, racks: readonly string[]): boolean {
  if (!m.bmc || m.bmc.driver !== 'ipmi' || !m.bmc.hasPassword) return false;
  if (m.bmc.solCapture !== null) return m.bmc.solCapture;
  return racks.includes('*') || (m.rack !== null && racks.includes(m.rack));
}

export type CaptureAction = 'attach' | 'detach' | 'none';

/**
 * Whether an inventory event may change what `captureStep` decides for its machine, so that the
 * machine is worth reading: its state, BMC settings or existence changed. Not for
 * `provisioning → provisioning` (the installer served again: a rack in a boot loop sends a
 * thousand a second), nor for a move outside the install states while no capture is open (an
 * import of 10,000 machines is 10,000 `assigned` events, heard by every instance). The periodic
 * scan still sees every machine.
 */
export function eventMayMoveCapture(e: Pick<InventoryEvent, 'type' | 'data'>, captureOpen: boolean): boolean {
  if (e.type === 'machine.updated' || e.type === 'machine.deleted') return true;
  if (e.type !== 'state') return false;
  const to = e.data?.['to'];
  if (e.data?.['from'] === to) return false;
  return captureOpen || CAPTURE_STATES.includes(to as MachineState);
}

export function captureStep(m: Pick<Machine, 'bmc' | 'rack' | 'state'> | null, facts: CaptureFacts | null, racks: readonly string[]): CaptureAction {
  const running = facts !== null && (facts.state === 'attaching' || facts.state === 'attached' || facts.state === 'busy');
  if (!m || !CAPTURE_STATES.includes(m.state) || !captureWanted(m, racks)) return running ? 'detach' : 'none';
  if (running || facts?.heldBack) return 'none';
  return 'attach';
}

/** Settings list: "r1,r2", "*" for every rack, "" for none. */
export function parseRackList(text: string): string[] {
  return text
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}

/** What ipmitool's exit means for the next step. */
export function sessionEnd(output: string, operational: boolean, stoppedByUs: boolean): { state: CaptureState; reason: string; retryable: boolean } {
  if (stoppedByUs) return { state: 'detached', reason: 'racksmith closed the session', retryable: false };
  if (/payload already active on another session/i.test(output)) return { state: 'busy', reason: 'someone else holds the SOL session; racksmith will ask again later and never takes it', retryable: true };
  if (/invalid (authentication|integrity|confidentiality) algorithm|no matching cipher suite/i.test(output)) return { state: 'failed', reason: 'the BMC refused the cipher suite', retryable: true };
  if (/RAKP 2 HMAC is invalid|unauthorized name|Invalid user name|Activate Session error/i.test(output)) return { state: 'failed', reason: 'the BMC refused the login', retryable: false };
  if (/SOL payload disabled|SOL is disabled|Error: SOL/i.test(output)) return { state: 'failed', reason: 'SOL is disabled on this BMC (enable it: ipmitool sol set enabled true)', retryable: false };
  if (operational) return { state: 'yielded', reason: 'the SOL session was ended from outside (sol deactivate, or the BMC dropped it); racksmith does not attach again during this install', retryable: false };
  const last = output.trim().split('\n').pop() ?? '';
  return { state: 'failed', reason: `ipmitool sol activate ended: ${last.slice(0, 200) || 'no output'}`, retryable: true };
}
