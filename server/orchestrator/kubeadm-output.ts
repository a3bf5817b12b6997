/**
 * Reading what kubeadm and kubectl print. racksmith does not need the join commands (it made
 * the token, certificate key and CA itself), but it reads them back from `kubeadm init` as a
 * cross-check: a hash that differs from racksmith's means kubeadm did not use the CA that was
 * placed in /etc/kubernetes/pki, and no join could ever succeed.
 */
export interface JoinCommand {
  readonly endpoint: string;
  readonly token: string;
  readonly caCertHash: string;
  readonly controlPlane: boolean;
  readonly certificateKey: string | null;
}

/** kubeadm prints join commands over several lines ending in `\` (showjoincommand.go). */
export function joinContinuations(text: string): string {
  return text.replace(/[ \t]*\\\r?\n[ \t]*/g, ' ');
}

// The join lines of cmd/kubeadm/app/cmd/phases/init/showjoincommand.go, continuations joined.
const JOIN_RE = /kubeadm join (\S+)\s+--token (\S+)\s+--discovery-token-ca-cert-hash (sha256:[0-9a-f]{64})(\s+--control-plane\s+--certificate-key ([0-9a-f]{64}))?/g;

export function parseJoinCommands(text: string): JoinCommand[] {
  const out: JoinCommand[] = [];
  for (const m of joinContinuations(text).matchAll(JOIN_RE)) {
    out.push({
      endpoint: m[1] as string,
      token: m[2] as string,
      caCertHash: m[3] as string,
      controlPlane: m[4] !== undefined,
      certificateKey: m[5] ?? null,
    });
  }
  return out;
}

export interface NodeStatus {
  readonly name: string;
  readonly ready: boolean;
  readonly status: string;
  /** The kubelet's version (`v1.30.6`), when listed. */
  readonly version: string | null;
}

/**
 * `kubectl get nodes` (with or without `--no-headers`): NAME STATUS ROLES AGE VERSION. The
 * STATUS column may read `Ready,SchedulingDisabled`; only `Ready` as its first condition counts.
 */
export function parseNodes(text: string): NodeStatus[] {
  const out: NodeStatus[] = [];
  for (const line of text.split('\n')) {
    const cols = line.trim().split(/\s+/);
    const [name, status] = cols;
    if (!name || !status || (name === 'NAME' && status === 'STATUS')) continue;
    // NAME STATUS ROLES AGE VERSION (--no-headers keeps the order): the kubelet's version is the fifth column.
    const version = cols[4] && /^v\d+\.\d+\.\d+/.test(cols[4]) ? cols[4] : null;
    out.push({ name, status, ready: status.split(',')[0] === 'Ready', version });
  }
  return out;
}

/** The last `n` non-empty lines of a text. */
export function tailLines(lines: readonly string[], n: number): string[] {
  return lines.filter((l) => l.trim() !== '').slice(-n);
}

export interface EtcdMember {
  /** Hex, as etcdctl prints and takes it. */
  readonly id: string;
  readonly started: boolean;
  /** Empty for a member that was added but never started. */
  readonly name: string;
  readonly peerUrls: readonly string[];
  readonly clientUrls: readonly string[];
}

/**
 * `etcdctl member list` in its default (simple) format, one member a line:
 * `ID, STATUS, NAME, PEER ADDRS, CLIENT ADDRS[, IS LEARNER]` with URLs joined by `,` (etcdctl
 * printer_simple.go; the learner column exists from etcd 3.4). Lines that are not members are
 * skipped.
 */
export function parseEtcdMembers(text: string): EtcdMember[] {
  const out: EtcdMember[] = [];
  for (const line of text.split('\n')) {
    const cols = line.trim().split(', ');
    const [id, status, name, peers, clients] = cols;
    if (cols.length < 5 || !id || !/^[0-9a-f]{1,16}$/.test(id) || (status !== 'started' && status !== 'unstarted')) continue;
    const urls = (s: string | undefined): string[] => (s ?? '').split(',').filter(Boolean);
    out.push({ id, started: status === 'started', name: name ?? '', peerUrls: urls(peers), clientUrls: urls(clients) });
  }
  return out;
}

/** A member is a node's by its name (kubeadm names members after nodes) or, unstarted, by its peer address. */
export function findEtcdMember(members: readonly EtcdMember[], node: string, ip: string | null): EtcdMember | null {
  const host = (u: string): string => {
    try {
      return new URL(u).hostname;
    } catch {
      return '';
    }
  };
  return members.find((m) => m.name === node) ?? (ip ? members.find((m) => m.peerUrls.some((u) => host(u) === ip)) : undefined) ?? null;
}
