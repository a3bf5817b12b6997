import type { MachineState } from './lifecycle.js';
import type { InventoryEvent, Machine } from './model.js';

/**
 * The reimage contract between the power service and the orchestrator, as facts in the store
 * (neither service imports the other). docs/power.md tells the whole story; in short:
 *
 * 1. power: the `reimage` transition (a `state` event whose data holds `reimage: <id>` and
 *    `removal: "pending" | "not-needed"`), then, when removal is pending, a `reimage` event with
 *    step `remove-from-cluster` (data: reimage id, cluster, hostname, role).
 * 2. orchestrator: sees a machine in `reimaging` whose progress is `remove-from-cluster`, removes
 *    the node (worker: drain + delete the node; control plane: etcd member remove, node delete,
 *    LB backend gone), then appends `cluster.node-removed` for the machine with data
 *    `{reimage: <id>}` — or `cluster.node-removal-failed` with `{reimage: <id>, reason}`.
 * 3. power: waits for that fact (with a timeout), then sets the next boot to PXE and power
 *    cycles; the boot chain reinstalls the machine and the orchestrator joins it again.
 *
 * Everything here is pure: event lists in, progress out.
 */

export const REIMAGE_EVENT = 'reimage';
export const NODE_REMOVED_EVENT = 'cluster.node-removed';
export const NODE_REMOVAL_FAILED_EVENT = 'cluster.node-removal-failed';

/** Steps in order; each is recorded as a `reimage` event once done (`accepted` is the state event). */
export const REIMAGE_STEPS = ['accepted', 'remove-from-cluster', 'removed-from-cluster', 'next-boot-set', 'power-cycled'] as const;
export type ReimageStep = (typeof REIMAGE_STEPS)[number];

export type RemovalState = 'not-needed' | 'pending' | 'done' | 'failed';

export interface ReimageProgress {
  readonly id: string;
  /** The last step completed. */
  readonly step: ReimageStep;
  readonly removal: RemovalState;
  /** Set when the workflow stopped on an error (the machine went to `failed`). */
  readonly failure: { readonly step: string; readonly reason: string } | null;
  /** Id and time of the event that recorded `step`. */
  readonly stepEventId: number;
  readonly stepAt: string;
  readonly removalReason: string | null;
}

const MEMBER_STATES: readonly MachineState[] = ['joining', 'joined'];

/**
 * Whether the node must leave its cluster before it is wiped: it is (or may be) a Kubernetes node
 * and etcd member only once a join started. A machine that never got that far has nothing to
 * remove; the load balancer is no Kubernetes node. A failed reimage whose removal was never
 * confirmed still counts as a member.
 */
export function needsClusterRemoval(m: Pick<Machine, 'role' | 'state' | 'failedFrom'>, previous: ReimageProgress | null = null): boolean {
  if (m.role !== 'worker' && m.role !== 'control-plane') return false;
  const where = m.state === 'failed' ? m.failedFrom : m.state;
  if (where === null) return false;
  if (MEMBER_STATES.includes(where)) return true;
  if (where === 'reimaging') return previous !== null && (previous.removal === 'pending' || previous.removal === 'failed');
  return false;
}

const str = (v: unknown): string | null => (typeof v === 'string' ? v : null);

/** The latest reimage of one machine, from its events in id order; null when it never had one. */
export function reimageProgress(events: readonly InventoryEvent[]): ReimageProgress | null {
  let p: ReimageProgress | null = null;
  for (const e of events) {
    const data = e.data ?? {};
    const id = str(data['reimage']);
    if (e.type === 'state' && data['event'] === 'reimage' && id) {
      const removal = data['removal'] === 'pending' ? 'pending' : 'not-needed';
      p = { id, step: 'accepted', removal, failure: null, stepEventId: e.id, stepAt: e.at, removalReason: null };
      continue;
    }
    if (!p || (id !== null && id !== p.id)) continue;
    if (e.type === REIMAGE_EVENT) {
      const step = str(data['step']);
      if (step === 'failed') p = { ...p, failure: { step: str(data['failedStep']) ?? 'unknown', reason: str(data['reason']) ?? 'no reason given' } };
      else if (step !== null && (REIMAGE_STEPS as readonly string[]).includes(step)) p = { ...p, step: step as ReimageStep, failure: null, stepEventId: e.id, stepAt: e.at };
    } else if (e.type === NODE_REMOVED_EVENT) {
      // A fact without a reimage id still counts: it came after this reimage was accepted.
      p = { ...p, removal: 'done', removalReason: null };
    } else if (e.type === NODE_REMOVAL_FAILED_EVENT) {
      p = { ...p, removal: 'failed', removalReason: str(data['reason']) ?? 'no reason given' };
    }
  }
  return p;
}

/**
 * For the orchestrator: does this machine wait for its node to be removed from the cluster? True
 * while it is `reimaging`, removal is pending and power has asked for it.
 */
export function awaitsClusterRemoval(m: Pick<Machine, 'state'>, progress: ReimageProgress | null): boolean {
  return m.state === 'reimaging' && progress !== null && progress.removal === 'pending' && progress.step === 'remove-from-cluster';
}
