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
    out.push({ name, status, ready: status.split(',')[0] === 'Ready' });
  }
  return out;
}

/** The last `n` non-empty lines of a text. */
export function tailLines(lines: readonly string[], n: number): string[] {
  return lines.filter((l) => l.trim() !== '').slice(-n);
}
