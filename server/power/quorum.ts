import type { Machine } from '../inventory/model.js';

/**
 * Would taking this control-plane node out lose etcd quorum? Stacked etcd: every control-plane
 * node that joined is an etcd member. Removing a member shrinks the cluster to n-1 members, whose
 * quorum is ⌊(n-1)/2⌋+1; the members still healthy must reach it, or etcd stops accepting writes
 * and the API server with it (etcd FAQ, "Why an odd number of cluster members?"; kubeadm HA docs).
 *
 * Healthy = `joined`. A member that is not healthy: `joining`, `failed` after joining, or
 * `reimaging` (its removal may not have happened yet — counted against us, on purpose).
 */
export type EtcdStanding = 'healthy' | 'unhealthy' | 'not-member';

export function etcdStanding(m: Pick<Machine, 'role' | 'state' | 'failedFrom'>): EtcdStanding {
  if (m.role !== 'control-plane') return 'not-member';
  if (m.state === 'joined') return 'healthy';
  if (m.state === 'joining' || m.state === 'reimaging') return 'unhealthy';
  if (m.state === 'failed' && (m.failedFrom === 'joined' || m.failedFrom === 'joining' || m.failedFrom === 'reimaging')) return 'unhealthy';
  return 'not-member';
}

export interface QuorumVerdict {
  readonly ok: boolean;
  /** Where the member list came from: etcd itself (through a healthy control node), or racksmith's machine states. */
  readonly source?: 'etcd' | 'inventory';
  readonly membersAfter: number;
  readonly healthyAfter: number;
  readonly quorumAfter: number;
  /** Why not, in an operator's words; null when ok. */
  readonly reason: string | null;
}

/** `cluster` is every machine of the target's cluster (the target included). */
export function quorumAfterRemoval(target: Pick<Machine, 'mac' | 'role' | 'state' | 'failedFrom'>, cluster: readonly Pick<Machine, 'mac' | 'role' | 'state' | 'failedFrom' | 'hostname'>[]): QuorumVerdict {
  const others = cluster.filter((m) => m.mac !== target.mac);
  const members = others.filter((m) => etcdStanding(m) !== 'not-member');
  const healthy = members.filter((m) => etcdStanding(m) === 'healthy');
  const membersAfter = members.length;
  const quorumAfter = Math.floor(membersAfter / 2) + 1;
  const base = { membersAfter, healthyAfter: healthy.length, quorumAfter };
  if (etcdStanding(target) === 'not-member') return { ...base, ok: true, reason: null };
  if (membersAfter === 0) {
    return { ...base, ok: false, reason: 'it is the last etcd member of its cluster: reimaging it destroys the cluster state' };
  }
  if (healthy.length < quorumAfter) {
    const down = members.filter((m) => etcdStanding(m) === 'unhealthy').map((m) => m.hostname ?? m.mac);
    return {
      ...base,
      ok: false,
      reason:
        `etcd would keep ${membersAfter} member(s) of which ${healthy.length} healthy, below the quorum of ${quorumAfter}` +
        (down.length ? ` (not healthy: ${down.join(', ')})` : '') +
        '; repair or reimage the unhealthy member(s) first, or pass force',
    };
  }
  return { ...base, ok: true, reason: null };
}

/**
 * The live check (the orchestrator asks etcd through a healthy control node): a verdict, or null
 * when no control node answered — the reimage then falls back to the machine states above.
 */
export type LiveQuorumCheck = (target: Machine) => Promise<QuorumVerdict | null>;
