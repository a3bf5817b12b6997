import { randomBytes } from 'node:crypto';
import { shellQuote } from '../render/templates.js';
import { TOKEN_TTL } from './kubeadm-config.js';
import { KEEPALIVED_PATHS, fillInterfaceLines } from './lb-pair.js';

/**
 * The shell scripts racksmith runs on nodes, one per step, as plain data. Every script goes to
 * the node on the standard input of `sh -s` (through `sudo -n` unless the SSH user is root):
 * secrets never appear on a command line, so they stay out of sudo's log and of `ps` for the
 * shell itself. The body is one `{ … }` group, which sh parses whole before running it, so no
 * command inside can swallow the rest of the script from stdin.
 */
export const PATHS = {
  adminConf: '/etc/kubernetes/admin.conf',
  kubeletConf: '/etc/kubernetes/kubelet.conf',
  pki: '/etc/kubernetes/pki',
  configDir: '/etc/kubernetes/racksmith',
  config: '/etc/kubernetes/racksmith/kubeadm-config.yaml',
  haproxyCfg: '/etc/haproxy/haproxy.cfg',
} as const;

/**
 * The command that reads a script from stdin, as the SSH user. coreutils `timeout` (inside
 * sudo, so it may signal root's processes) ends the script and everything it started when the
 * step's time is up, even if the SSH connection is already gone.
 */
export function shellCommand(user: string, timeoutMs: number): string {
  // A few seconds after racksmith's own timer, so racksmith reports the timeout, not exit 124.
  const limit = `timeout -k 10 ${Math.ceil(timeoutMs / 1000) + 5}`;
  return user === 'root' ? `${limit} sh -s` : `sudo -n ${limit} sh -s`;
}

export function script(lines: readonly string[], opts: { errexit?: boolean } = {}): string {
  return `{\nexec </dev/null\n${opts.errexit === false ? '' : 'set -e\n'}${lines.join('\n')}\n}\n`;
}

/** A file written through a quoted here-document (no expansion), with its mode set before any byte lands. */
export function writeFile(path: string, content: string, mode: '0600' | '0644' | '0755', delimiter = `RACKSMITH_${randomBytes(8).toString('hex').toUpperCase()}`): string[] {
  if (content.includes(delimiter)) throw new Error('here-document delimiter collides with the content');
  const body = content.endsWith('\n') ? content : content + '\n';
  const tmp = `${path}.racksmith-new`;
  return [`rm -f ${shellQuote(tmp)}`, `(umask 077 && cat > ${shellQuote(tmp)} <<'${delimiter}'\n${body}${delimiter}\n)`, `chmod ${mode} ${shellQuote(tmp)}`, `mv -f ${shellQuote(tmp)} ${shellQuote(path)}`];
}

/**
 * One kubeadm at a time on a node: init and joins hold this lock (an open descriptor that kubeadm
 * inherits) for as long as they run. A racksmith that takes a cluster over from one that died
 * mid-init must not start a second init while the first still runs on the node; its probe waits
 * for the lock first. `flock` is util-linux's, on every Debian and Ubuntu system; a node without
 * it runs unguarded, as before.
 */
export const KUBEADM_LOCK = '/run/racksmith-kubeadm.lock';
/** The probe's exit status when an earlier kubeadm still holds the node's lock. */
export const PROBE_BUSY = 75;
const holdKubeadmLock = (waitSeconds?: number): string =>
  `if command -v flock >/dev/null 2>&1; then exec 9>${KUBEADM_LOCK}; flock ${waitSeconds === undefined ? '' : `-w ${waitSeconds} `}9 || exit ${PROBE_BUSY}; fi`;

/**
 * Exit 0 when the step already happened: kubeadm's own files are the proof (admin.conf is written
 * by init, kubelet.conf by a join; kubeadm-init.md, kubeadm-join.md) — once no kubeadm runs on
 * the node any more (PROBE_BUSY when one still does after 20 s).
 */
export function probeScript(kind: 'init' | 'join', waitSeconds = 20): string {
  return script([holdKubeadmLock(waitSeconds), `test -f ${kind === 'init' ? PATHS.adminConf : PATHS.kubeletConf}`], { errexit: false });
}
export const probes = { init: probeScript('init'), join: probeScript('join') } as const;

export function prepareScript(caCertPem: string, caKeyPem: string, kubeadmConfig: string): string {
  return script([
    `mkdir -p ${PATHS.pki} ${PATHS.configDir}`,
    `chmod 0700 ${PATHS.configDir}`,
    ...writeFile(`${PATHS.pki}/ca.crt`, caCertPem, '0644'),
    ...writeFile(`${PATHS.pki}/ca.key`, caKeyPem, '0600'),
    ...writeFile(PATHS.config, kubeadmConfig, '0600'),
    `echo "CA and kubeadm configuration in place"`,
  ]);
}

export function initScript(): string {
  return script([holdKubeadmLock(), `kubeadm init --config ${PATHS.config} --upload-certs`]);
}

export function readAdminConfScript(): string {
  return script([`cat ${PATHS.adminConf}`]);
}

export function applyCniScript(manifestUrl: string): string {
  return script([`kubectl --kubeconfig ${PATHS.adminConf} apply -f ${shellQuote(manifestUrl)}`]);
}

/** Re-uploads the control-plane certificates with racksmith's key, so joins keep using it. */
export function uploadCertsScript(certificateKey: string): string {
  return script([`kubeadm init phase upload-certs --upload-certs --certificate-key ${shellQuote(certificateKey)}`]);
}

/**
 * Makes the bootstrap token valid again for another TTL. Deleting first: `token create` refuses
 * a token that still exists, and the token cleaner may already have removed an expired one.
 */
export function tokenRefreshScript(token: string): string {
  const id = token.split('.')[0] ?? '';
  return script([`kubeadm token delete ${shellQuote(id)} >/dev/null 2>&1 || true`, `kubeadm token create ${shellQuote(token)} --ttl ${TOKEN_TTL}`]);
}

export interface JoinArgs {
  readonly endpoint: string;
  readonly token: string;
  readonly caCertHash: string;
  readonly nodeName: string;
  readonly criSocket: string;
  /** For control-plane joins. */
  readonly controlPlane?: { readonly certificateKey: string; readonly advertiseAddress: string } | undefined;
}

export function joinCommand(a: JoinArgs): string {
  const words = ['kubeadm', 'join', a.endpoint, '--token', a.token, '--discovery-token-ca-cert-hash', a.caCertHash];
  if (a.controlPlane) words.push('--control-plane', '--certificate-key', a.controlPlane.certificateKey, '--apiserver-advertise-address', a.controlPlane.advertiseAddress);
  words.push('--node-name', a.nodeName, '--cri-socket', a.criSocket);
  return words.map((w, i) => (i < 2 ? w : shellQuote(w))).join(' ');
}

/**
 * A join, after `kubeadm reset -f` when an earlier attempt may have left files behind: kubeadm's
 * preflight refuses to join over them (FileAvailable/DirAvailable checks; kubeadm-reset.md).
 */
export function joinScript(a: JoinArgs, opts: { resetFirst: boolean }): string {
  return script([holdKubeadmLock(), ...(opts.resetFirst ? [`kubeadm reset -f --cri-socket ${shellQuote(a.criSocket)}`] : []), joinCommand(a)]);
}

export function getNodesScript(): string {
  return script([`kubectl --kubeconfig ${PATHS.adminConf} get nodes --no-headers`]);
}

/**
 * The new haproxy configuration is checked by haproxy itself before it replaces the old one,
 * then haproxy reloads (a reload keeps established connections; restart only when it is not
 * running yet).
 */
export function haproxyScript(config: string, keepalived?: KeepalivedFiles): string {
  const next = `${PATHS.haproxyCfg}.racksmith-new`;
  const delimiter = `RACKSMITH_${randomBytes(8).toString('hex').toUpperCase()}`;
  return script([
    'mkdir -p /etc/haproxy',
    `cat > ${next} <<'${delimiter}'\n${config.endsWith('\n') ? config : config + '\n'}${delimiter}`,
    `haproxy -c -f ${next}`,
    `mv -f ${next} ${PATHS.haproxyCfg}`,
    'if systemctl is-active --quiet haproxy; then systemctl reload haproxy; else systemctl restart haproxy; fi',
    'echo "haproxy configuration applied"',
    ...(keepalived ? keepalivedLines(keepalived) : []),
  ]);
}

/** A load balancer of a pair: keepalived's configuration (with placeholders) and its health check. */
export interface KeepalivedFiles {
  readonly config: string;
  readonly checkScript: string;
  /** The load balancer's own address: the interface holding it carries the VIP. */
  readonly address: string;
}

/**
 * keepalived after haproxy, so the health check passes once the VIP arrives. The configuration
 * is checked by keepalived itself (`-t`) before it replaces the old one; a reload keeps the VIP
 * where it is.
 */
function keepalivedLines(k: KeepalivedFiles): string[] {
  const next = `${KEEPALIVED_PATHS.conf}.racksmith-new`;
  return [
    'mkdir -p /etc/keepalived',
    ...writeFile(KEEPALIVED_PATHS.check, k.checkScript, '0755'),
    `rm -f ${next}`,
    ...writeFile(next, k.config, '0644'),
    ...fillInterfaceLines(next, k.address),
    `keepalived -t -f ${next}`,
    `mv -f ${next} ${KEEPALIVED_PATHS.conf}`,
    'if systemctl is-active --quiet keepalived; then systemctl reload keepalived; else systemctl enable keepalived >/dev/null 2>&1 || true; systemctl restart keepalived; fi',
    'echo "keepalived configuration applied"',
  ];
}

// ── removing a node (reimage) ───────────────────────────────────────────────

const KUBECTL = `kubectl --kubeconfig ${PATHS.adminConf}`;

/** The etcd client certificates kubeadm writes on every stacked-etcd control node (kubeadm's etcd phase). */
export const ETCD_PKI = {
  ca: '/etc/kubernetes/pki/etcd/ca.crt',
  cert: '/etc/kubernetes/pki/etcd/server.crt',
  key: '/etc/kubernetes/pki/etcd/server.key',
} as const;

/** `kubectl get node`: exit 0 with its row, or non-zero with `NotFound` when it is gone. */
export function nodeStatusScript(node: string): string {
  return script([`${KUBECTL} get node ${shellQuote(node)} --no-headers`]);
}

/**
 * `kubectl drain`. `--delete-emptydir-data` replaced `--delete-local-data` in kubectl 1.20
 * (kubernetes/kubernetes#95076); the old flag is gone by 1.31, the new one unknown before 1.20.
 */
export function drainScript(node: string, opts: { readonly kubernetesMinor: number; readonly timeoutSeconds: number }): string {
  const emptyDir = opts.kubernetesMinor >= 20 ? '--delete-emptydir-data' : '--delete-local-data';
  return script([`${KUBECTL} drain ${shellQuote(node)} --ignore-daemonsets ${emptyDir} --force --timeout=${Math.max(1, Math.round(opts.timeoutSeconds))}s`]);
}

/**
 * etcdctl inside the etcd static pod of a healthy control node (`etcd-<node name>`), against
 * its local member: the pod has the binary and the certificates; the node itself may have
 * neither installed.
 */
export function etcdctlScript(viaNode: string, args: readonly string[]): string {
  const words = ['--endpoints', 'https://127.0.0.1:2379', '--cacert', ETCD_PKI.ca, '--cert', ETCD_PKI.cert, '--key', ETCD_PKI.key, ...args];
  return script([`${KUBECTL} -n kube-system exec ${shellQuote(`etcd-${viaNode}`)} -- etcdctl ${words.map(shellQuote).join(' ')}`]);
}

export function deleteNodeScript(node: string): string {
  return script([`${KUBECTL} delete node ${shellQuote(node)} --ignore-not-found`]);
}

/**
 * On the node being removed, while its old system still answers: `kubeadm reset -f` stops the
 * kubelet and wipes /etc/kubernetes (on a control node it also leaves etcd itself). Best
 * effort: the disk is wiped next anyway.
 */
export function resetScript(criSocket: string): string {
  return script([`kubeadm reset -f --cri-socket ${shellQuote(criSocket)}`]);
}
