/**
 * The machine lifecycle (DESIGN.md), as pure functions of (machine, event):
 *
 *   discovered → assigned → provisioning → installed → ready → joining → joined
 *   any working state → failed (step, reason)      failed → retry → where it failed
 *   installed… → reimaging → provisioning           assigned → unassign → discovered
 *
 * A transition that is not in the table is refused with a TransitionError (HTTP 409), never a
 * silent overwrite.
 */
export const MACHINE_STATES = [
  'discovered',
  'assigned',
  'provisioning',
  'installed',
  'ready',
  'joining',
  'joined',
  'failed',
  'reimaging',
] as const;
export type MachineState = (typeof MACHINE_STATES)[number];

export const MACHINE_EVENTS = [
  'assign',
  'unassign',
  'installer-served',
  'installed',
  'phoned-home',
  'join-started',
  'joined',
  'fail',
  'retry',
  'reimage',
] as const;
export type MachineEventType = (typeof MACHINE_EVENTS)[number];

export interface LifecycleFacts {
  readonly state: MachineState;
  /** For `failed`: the state the machine was in when it failed. */
  readonly failedFrom?: MachineState | null;
}

export interface TransitionResult {
  readonly state: MachineState;
  readonly failedFrom: MachineState | null;
}

export class TransitionError extends Error {
  readonly code = 'ERR_TRANSITION';
  readonly from: MachineState;
  readonly event: MachineEventType;
  constructor(from: MachineState, event: MachineEventType) {
    super(`a machine in state "${from}" cannot take "${event}"`);
    this.name = 'TransitionError';
    this.from = from;
    this.event = event;
  }
}

/** States in which a machine is being worked on, and so can fail. */
const FAILABLE: readonly MachineState[] = ['assigned', 'provisioning', 'installed', 'ready', 'joining', 'joined', 'reimaging'];

/** Where `retry` takes a failed machine: an install starts over, a join is tried again. */
const RETRY_TARGET: Record<MachineState, MachineState> = {
  discovered: 'discovered',
  assigned: 'assigned',
  provisioning: 'assigned',
  installed: 'installed',
  ready: 'ready',
  joining: 'ready',
  joined: 'joined',
  failed: 'assigned',
  reimaging: 'reimaging',
};

const TABLE: Record<MachineEventType, Partial<Record<MachineState, MachineState>>> = {
  assign: { discovered: 'assigned' },
  unassign: { assigned: 'discovered' },
  // Served again while provisioning: the installer was restarted (power blip); stay.
  'installer-served': { assigned: 'provisioning', provisioning: 'provisioning', reimaging: 'provisioning' },
  installed: { provisioning: 'installed' },
  'phoned-home': { installed: 'ready' },
  'join-started': { ready: 'joining' },
  joined: { joining: 'joined' },
  fail: Object.fromEntries(FAILABLE.map((s) => [s, 'failed'])),
  retry: { failed: 'failed' },
  reimage: {
    assigned: 'reimaging',
    provisioning: 'reimaging',
    installed: 'reimaging',
    ready: 'reimaging',
    joining: 'reimaging',
    joined: 'reimaging',
    failed: 'reimaging',
  },
};

export function canTransition(from: MachineState, event: MachineEventType): boolean {
  return TABLE[event][from] !== undefined;
}

export function transition(machine: LifecycleFacts, event: MachineEventType): TransitionResult {
  const to = TABLE[event][machine.state];
  if (to === undefined) throw new TransitionError(machine.state, event);
  if (event === 'fail') return { state: 'failed', failedFrom: machine.state };
  if (event === 'retry') return { state: RETRY_TARGET[machine.failedFrom ?? 'failed'], failedFrom: null };
  return { state: to, failedFrom: null };
}

export function isMachineState(s: string): s is MachineState {
  return (MACHINE_STATES as readonly string[]).includes(s);
}
