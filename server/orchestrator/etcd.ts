import { mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { QuorumVerdict } from '../power/quorum.js';
import { script } from './commands.js';
import { etcdctlScript } from './commands.js';
import { findEtcdMember, type EtcdMember } from './kubeadm-output.js';

/**
 * What racksmith asks the stacked etcd before it takes a control-plane node away: the member
 * list and each member's health (`etcdctl endpoint health --cluster`, through the etcd pod of a
 * healthy control node), the quorum verdict that follows, and a snapshot of the keyspace kept in
 * racksmith's data directory (`clusters/<name>/etcd-<time>.db`, the newest N).
 */

export interface EndpointHealth {
  /** The client URL etcdctl checked. */
  readonly endpoint: string;
  readonly healthy: boolean;
  readonly detail: string;
}

/**
 * `etcdctl endpoint health` lines: `<url> is healthy: successfully committed proposal: took = …`
 * or `<url> is unhealthy: failed to commit proposal: …` (etcdctl's ep_command.go); it exits 1 when
 * any endpoint is unhealthy, so the output is read whatever the exit code.
 */
export function parseEndpointHealth(text: string): EndpointHealth[] {
  const out: EndpointHealth[] = [];
  for (const line of text.split('\n')) {
    const m = /^(https?:\/\/\S+) is (healthy|unhealthy)(?::\s*(.*))?$/.exec(line.trim());
    if (m) out.push({ endpoint: m[1] as string, healthy: m[2] === 'healthy', detail: (m[3] ?? '').slice(0, 200) });
  }
  return out;
}

/** `etcdctl endpoint health --cluster`: every member's client URL, as the member list has them. */
export function endpointHealthScript(viaNode: string): string {
  return etcdctlScript(viaNode, ['endpoint', 'health', '--cluster']);
}

export interface EtcdView {
  readonly members: readonly EtcdMember[];
  readonly health: readonly EndpointHealth[];
}

/** A member is healthy when one of its client URLs answered healthy. */
export function memberHealthy(m: EtcdMember, health: readonly EndpointHealth[]): boolean {
  return m.started && m.clientUrls.some((u) => health.some((h) => h.healthy && h.endpoint === u));
}

/**
 * Would taking this node's member away leave etcd without quorum? After the removal the cluster
 * has n-1 members and needs ⌊(n-1)/2⌋+1 of them healthy (etcd FAQ, "Why an odd number of
 * cluster members?"). A node with no member (never joined, already removed) changes nothing.
 */
export function liveQuorumAfterRemoval(view: EtcdView, node: string, ip: string | null): QuorumVerdict {
  const target = findEtcdMember(view.members, node, ip);
  const others = view.members.filter((m) => m !== target);
  const healthy = others.filter((m) => memberHealthy(m, view.health));
  const membersAfter = target ? others.length : view.members.length;
  const quorumAfter = Math.floor(membersAfter / 2) + 1;
  const base = { source: 'etcd' as const, membersAfter, healthyAfter: healthy.length, quorumAfter };
  if (!target) return { ...base, ok: true, reason: null };
  if (others.length === 0) return { ...base, ok: false, reason: `${node} holds the last etcd member: removing it destroys the cluster state` };
  if (healthy.length < quorumAfter) {
    const down = others.filter((m) => !memberHealthy(m, view.health)).map((m) => m.name || m.id);
    return {
      ...base,
      ok: false,
      reason:
        `etcd would keep ${membersAfter} member(s) of which ${healthy.length} healthy, below the quorum of ${quorumAfter}` +
        (down.length ? ` (not healthy: ${down.join(', ')})` : '') +
        '; repair the unhealthy member(s) first',
    };
  }
  return { ...base, ok: true, reason: null };
}

/** Every member started and healthy: the next control node may go (an upgrade's wait). */
export function etcdAllHealthy(view: EtcdView): boolean {
  return view.members.length > 0 && view.members.every((m) => memberHealthy(m, view.health));
}

/**
 * The snapshot is written by etcdctl inside the etcd pod into its data directory, which kubeadm
 * mounts from the node (`/var/lib/etcd`), then read back base64-encoded over SSH and removed.
 */
export const SNAPSHOT_ON_NODE = '/var/lib/etcd/racksmith-snapshot.db';

export function snapshotSaveScript(viaNode: string): string {
  return etcdctlScript(viaNode, ['snapshot', 'save', SNAPSHOT_ON_NODE]);
}

export function snapshotReadScript(): string {
  // coreutils' base64 wraps unless told not to; busybox's may not know -w.
  return script([`base64 -w 0 ${SNAPSHOT_ON_NODE} 2>/dev/null || base64 ${SNAPSHOT_ON_NODE} | tr -d '\\n'`, `rm -f ${SNAPSHOT_ON_NODE}`]);
}

/** `etcd-20260103T101500Z.db`: sorts by time. */
export function snapshotFileName(at: Date): string {
  return `etcd-${at.toISOString().replace(/[-:]/g, '').replace(/\.\d{3}Z$/, 'Z')}.db`;
}

/**
 * Writes the snapshot under `<dir>/<cluster>/` (atomically: a temporary name, then rename) and
 * removes the oldest beyond `keep`. Returns the file's path.
 */
export function keepSnapshot(dir: string, cluster: string, at: Date, bytes: Buffer, keep: number): { path: string; pruned: string[] } {
  const folder = join(dir, cluster);
  mkdirSync(folder, { recursive: true, mode: 0o700 });
  let name = snapshotFileName(at);
  // Two snapshots in one second (a retried step) keep both.
  for (let i = 1; readdirSync(folder).includes(name); i++) name = snapshotFileName(at).replace(/\.db$/, `-${i}.db`);
  const path = join(folder, name);
  writeFileSync(`${path}.tmp`, bytes, { mode: 0o600 });
  renameSync(`${path}.tmp`, path);
  const all = readdirSync(folder)
    .filter((f) => /^etcd-\d{8}T\d{6}Z(-\d+)?\.db$/.test(f))
    .sort();
  const pruned = all.slice(0, Math.max(0, all.length - Math.max(1, keep)));
  for (const f of pruned) rmSync(join(folder, f), { force: true });
  return { path, pruned };
}
