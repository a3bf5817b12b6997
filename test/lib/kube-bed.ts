import { execFile, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { Role, SshHostKey } from '../../server/inventory/model.js';
import type { Mac } from '../../server/lib/mac.js';
import { PACKAGE_ROOT } from '../../server/lib/paths.js';
import { Testbed } from './netns.js';

const run = promisify(execFile);

/**
 * A rack of real OpenSSH servers for the orchestrator's tests: one network namespace per node,
 * all on one bridge, reachable from the test process (and a racksmith it starts) through a veth
 * whose root-side end has an address in 198.18.0.0/15 (RFC 2544's benchmarking range, so no
 * real network is shadowed). The veth pair disappears with the namespaces.
 *
 * Each sshd runs in its own mount namespace: /etc is an overlay whose upper layer is the node's
 * own folder (so /etc/kubernetes, /etc/haproxy, the test user and its sudo rule exist only on
 * that node), /run is a fresh tmpfs, and the node's stand-in wrappers are bound over
 * /usr/local/sbin — first on sudo's secure_path and on root's PATH. The real paths
 * (/etc/kubernetes/pki/ca.crt…) work unchanged; nothing on the host is modified.
 */
export interface NodeDef {
  readonly name: string;
  readonly role: Role;
}

export interface BedNode extends NodeDef {
  readonly ip: string;
  readonly mac: Mac;
  readonly ns: string;
  readonly dir: string;
  /** The node's real host key (as it would phone home); a reinstall makes a new one. */
  hostKey: SshHostKey;
  sshd: ChildProcess | null;
}

export interface Call {
  readonly node: string;
  /** The calling node's package version. */
  readonly version?: string;
  readonly tool: string;
  readonly args: string[];
  readonly files: Record<string, any>;
  readonly exit: number;
  readonly start: number;
  readonly end: number;
  readonly clock: number;
  readonly out: string;
  readonly err: string;
}

export const STANDIN = fileURLToPath(new URL('../fixtures/kubeadm-standin/standin.js', import.meta.url));
export const INSTANT = join(PACKAGE_ROOT, 'test', 'fixtures', 'kubeadm-standin', 'instant.sh');
export const SSH_USER = 'racksmith';

/** The HA shape the acceptance tests drive: a load balancer, three control-plane nodes, two workers. */
export const HA_RACK: readonly NodeDef[] = [
  { name: 'lb1', role: 'loadbalancer' },
  { name: 'cp1', role: 'control-plane' },
  { name: 'cp2', role: 'control-plane' },
  { name: 'cp3', role: 'control-plane' },
  { name: 'w1', role: 'worker' },
  { name: 'w2', role: 'worker' },
];

export interface BedOptions {
  /** kubeadm version the stand-in plays. */
  readonly version: string;
  /** The test-unique subnet octet (198.18.<octet>.0/24); random by default. */
  readonly octet?: number;
  /** The benchmark's instant POSIX-shell stand-in instead of the recording one. */
  readonly instant?: boolean;
  /** Plain namespaces on the nodes' bridge (no sshd): a client, a fake API backend. */
  readonly hosts?: readonly string[];
}

export interface BedHost {
  readonly name: string;
  readonly ns: string;
  readonly ip: string;
}

export class KubeBed {
  readonly tb: Testbed;
  readonly dir: string;
  readonly clusterDir: string;
  readonly nodes: BedNode[] = [];
  readonly hosts: BedHost[] = [];
  readonly subnet: string;
  private sw = '';
  private rootIf = '';

  private constructor(tag: string, private readonly opts: BedOptions) {
    this.tb = new Testbed(tag);
    this.dir = mkdtempSync(join(tmpdir(), 'racksmith-kubebed-'));
    chmodSync(this.dir, 0o755);
    this.clusterDir = join(this.dir, 'cluster');
    mkdirSync(this.clusterDir, { recursive: true });
    this.subnet = `198.18.${opts.octet ?? 1 + randomBytes(1)[0]! % 250}`;
  }

  get rootAddress(): string {
    return `${this.subnet}.1`;
  }

  static async create(tag: string, defs: readonly NodeDef[], opts: BedOptions): Promise<KubeBed> {
    const bed = new KubeBed(tag, opts);
    try {
      await bed.setup(defs);
      return bed;
    } catch (err) {
      await bed.destroy();
      throw err;
    }
  }

  private async setup(defs: readonly NodeDef[]): Promise<void> {
    this.sw = await this.tb.addNamespace('sw');
    const ports: string[] = [];
    // The root namespace's end, created from here and moved: its peer lives on the bridge.
    this.rootIf = this.tb.name('h0');
    const peer = this.tb.name('h1');
    await run('ip', ['link', 'add', this.rootIf, 'type', 'veth', 'peer', 'name', peer, 'netns', this.sw]);
    await run('ip', ['addr', 'add', `${this.rootAddress}/24`, 'dev', this.rootIf]);
    await run('ip', ['link', 'set', this.rootIf, 'up']);
    await this.tb.ip(this.sw, ['link', 'set', peer, 'up']);
    ports.push(peer);
    let host = 10;
    for (const d of defs) {
      const i = this.nodes.length;
      const ns = await this.tb.addNamespace(`n${i}`);
      const ip = `${this.subnet}.${host++}`;
      await this.tb.veth(ns, `n${i}a`, this.sw, `n${i}b`, `${ip}/24`);
      ports.push(this.tb.name(`n${i}b`));
      const dir = join(this.dir, d.name);
      const hostKey = await this.prepareNode(d, dir, ip);
      const last = Number(ip.split('.').at(-1));
      const octet = Number(this.subnet.split('.')[2]);
      const mac = `52:54:00:${octet.toString(16).padStart(2, '0')}:00:${last.toString(16).padStart(2, '0')}` as Mac;
      this.nodes.push({ ...d, ip, mac, ns, dir, hostKey, sshd: null });
    }
    let h = 200;
    for (const name of this.opts.hosts ?? []) {
      const i = this.hosts.length;
      const ns = await this.tb.addNamespace(`h${i}`);
      const ip = `${this.subnet}.${h++}`;
      await this.tb.veth(ns, `x${i}a`, this.sw, `x${i}b`, `${ip}/24`);
      ports.push(this.tb.name(`x${i}b`));
      this.hosts.push({ name, ns, ip });
    }
    await this.tb.bridge(this.sw, 'br', ports);
    await Promise.all(this.nodes.map((n) => this.startSshd(n)));
  }

  private async prepareNode(d: NodeDef, dir: string, ip: string): Promise<SshHostKey> {
    for (const sub of ['etc-up', 'etc-work', 'varlib-up', 'varlib-work', 'sbin', 'faults']) mkdirSync(join(dir, sub), { recursive: true });
    // The packages' version on this node (kubeadm, kubelet, kubectl); a reinstall may change it.
    writeFileSync(join(dir, 'version'), this.opts.version);
    chmodSync(dir, 0o755);
    await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', `root@${d.name}`, '-f', join(dir, 'ssh_host_ed25519_key')]);
    const up = join(dir, 'etc-up');
    // The SSH user exists on this node only, with passwordless sudo (what the seeds set up).
    writeFileSync(join(up, 'passwd'), readFileSync('/etc/passwd', 'utf8') + `${SSH_USER}:x:990:990:racksmith:${dir}:/bin/sh\n`);
    writeFileSync(join(up, 'shadow'), readFileSync('/etc/shadow', 'utf8') + `${SSH_USER}:*:19000:0:99999:7:::\n`, { mode: 0o640 });
    writeFileSync(join(up, 'group'), readFileSync('/etc/group', 'utf8') + `${SSH_USER}:x:990:\n`);
    mkdirSync(join(up, 'sudoers.d'), { recursive: true });
    writeFileSync(join(up, 'sudoers.d', 'racksmith'), `${SSH_USER} ALL=(ALL) NOPASSWD:ALL\n`, { mode: 0o440 });
    writeFileSync(join(up, 'hostname'), `${d.name}\n`);
    writeFileSync(join(dir, 'authorized_keys'), '');
    writeFileSync(
      join(dir, 'sshd_config'),
      [
        'ListenAddress 0.0.0.0:22',
        `HostKey ${join(dir, 'ssh_host_ed25519_key')}`,
        'PidFile none',
        'UsePAM no',
        'StrictModes no',
        `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
        'PasswordAuthentication no',
        'KbdInteractiveAuthentication no',
        'PermitRootLogin prohibit-password',
        'MaxStartups 100:30:200',
        'MaxSessions 50',
        'LogLevel VERBOSE',
        '',
      ].join('\n'),
    );
    for (const tool of ['kubeadm', 'kubectl', 'systemctl']) {
      const wrapper = join(dir, 'sbin', tool);
      writeFileSync(
        wrapper,
        `#!/bin/sh\nSTANDIN_NODE=${d.name} STANDIN_NODE_IP=${ip} STANDIN_NODE_DIR=${dir} STANDIN_CLUSTER_DIR=${this.clusterDir} STANDIN_VERSION=$(cat ${join(dir, 'version')}) exec ${this.opts.instant ? `/bin/sh ${INSTANT}` : `${process.execPath} ${STANDIN}`} ${tool} "$@"\n`,
        { mode: 0o755 },
      );
    }
    const pub = readFileSync(join(dir, 'ssh_host_ed25519_key.pub'), 'utf8').trim();
    return { type: 'ed25519', key: pub };
  }

  private async startSshd(n: BedNode): Promise<void> {
    const setup = [
      `mount -t overlay overlay -o lowerdir=/etc,upperdir=${join(n.dir, 'etc-up')},workdir=${join(n.dir, 'etc-work')} /etc`,
      'mount -t tmpfs tmpfs /run',
      // etcd's data directory (an etcd snapshot lands there) exists on this node only.
      `mount -t overlay overlay -o lowerdir=/var/lib,upperdir=${join(n.dir, 'varlib-up')},workdir=${join(n.dir, 'varlib-work')} /var/lib`,
      'mkdir -p /run/sshd',
      `mount --bind ${join(n.dir, 'sbin')} /usr/local/sbin`,
      `exec /usr/sbin/sshd -D -e -f ${join(n.dir, 'sshd_config')}`,
    ].join(' && ');
    const child = this.tb.spawn(n.ns, 'unshare', ['-m', '--propagation', 'private', 'sh', '-c', setup]);
    let log = '';
    child.stderr?.on('data', (d: Buffer) => {
      log += d.toString();
      if (log.length > 200_000) log = log.slice(-100_000);
      try {
        writeFileSync(join(n.dir, 'sshd.log'), log);
      } catch {
        /* the bed is being removed */
      }
    });
    n.sshd = child;
    const deadline = Date.now() + 10_000;
    while (!(await canConnect(n.ip, 22))) {
      if (child.exitCode !== null) throw new Error(`sshd on ${n.name} exited: ${log}`);
      if (Date.now() > deadline) throw new Error(`sshd on ${n.name} did not listen: ${log}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /**
   * What a reinstall leaves: the old system stops (sshd and everything in its mount namespace),
   * the node gets a fresh /etc/kubernetes and a new SSH host key, and the new system's sshd
   * starts. Returns the new key, which the test phones home as the boot chain would.
   */
  async reinstall(name: string, opts: { readonly version?: string } = {}): Promise<SshHostKey> {
    const n = this.node(name);
    await this.stopSshd(name);
    for (const sub of ['etc-up/kubernetes', 'etc-up/haproxy', 'etc-up/keepalived', 'varlib-up/etcd']) rmSync(join(n.dir, sub), { recursive: true, force: true });
    if (opts.version) writeFileSync(join(n.dir, 'version'), opts.version);
    rmSync(join(n.dir, 'ssh_host_ed25519_key'), { force: true });
    rmSync(join(n.dir, 'ssh_host_ed25519_key.pub'), { force: true });
    await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', `root@${name}`, '-f', join(n.dir, 'ssh_host_ed25519_key')]);
    n.hostKey = { type: 'ed25519', key: readFileSync(join(n.dir, 'ssh_host_ed25519_key.pub'), 'utf8').trim() };
    // The old sshd may need a moment to let go of port 22.
    const deadline = Date.now() + 5000;
    while ((await canConnect(n.ip, 22)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    await this.startSshd(n);
    return n.hostKey;
  }

  /** The node stops answering SSH (a hung or powered-off system). */
  async stopSshd(name: string): Promise<void> {
    const old = this.node(name).sshd;
    if (!old || old.exitCode !== null || old.signalCode !== null) return;
    const exited = new Promise((r) => old.once('exit', r));
    old.kill('SIGTERM');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
    if (old.exitCode === null && old.signalCode === null) {
      old.kill('SIGKILL');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 2000))]);
    }
  }

  /** The packages' version installed on a node. */
  version(name: string): string {
    return readFileSync(join(this.node(name).dir, 'version'), 'utf8').trim();
  }

  host(name: string): BedHost {
    const h = this.hosts.find((x) => x.name === name);
    if (!h) throw new Error(`no host ${name}`);
    return h;
  }

  node(name: string): BedNode {
    const n = this.nodes.find((x) => x.name === name);
    if (!n) throw new Error(`no node ${name}`);
    return n;
  }

  /** Installs racksmith's public key for the SSH user (and root) on every node, as the seeds do. */
  authorize(publicKey: string): void {
    for (const n of this.nodes) writeFileSync(join(n.dir, 'authorized_keys'), publicKey.trim() + '\n');
  }

  calls(): Call[] {
    const f = join(this.clusterDir, 'calls.jsonl');
    if (!existsSync(f)) return [];
    return readFileSync(f, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Call);
  }

  sshdLog(name: string): string {
    const f = join(this.node(name).dir, 'sshd.log');
    return existsSync(f) ? readFileSync(f, 'utf8') : '';
  }

  setFault(name: string, fault: string, value: string | null): void {
    const f = join(this.node(name).dir, 'faults', fault);
    if (value === null) rmSync(f, { force: true });
    else writeFileSync(f, value);
  }

  setClockOffset(ms: number): void {
    writeFileSync(join(this.clusterDir, 'clock-offset-ms'), String(ms));
  }

  /** A file on a node, read from its /etc overlay (e.g. `kubernetes/pki/ca.crt`). */
  etcFile(name: string, path: string): string | null {
    const f = join(this.node(name).dir, 'etc-up', path);
    return existsSync(f) ? readFileSync(f, 'utf8') : null;
  }

  stateJson(): Record<string, any> {
    return JSON.parse(readFileSync(join(this.clusterDir, 'state.json'), 'utf8')) as Record<string, any>;
  }

  /** Keeps the bed's files for a failed test to be looked at. */
  keep(to: string): void {
    mkdirSync(to, { recursive: true });
    for (const f of ['calls.jsonl', 'state.json']) if (existsSync(join(this.clusterDir, f))) copyFileSync(join(this.clusterDir, f), join(to, f));
    for (const n of this.nodes) if (existsSync(join(n.dir, 'sshd.log'))) copyFileSync(join(n.dir, 'sshd.log'), join(to, `${n.name}-sshd.log`));
    // CI shows the output, not the kept files: the gist goes to stderr as well.
    const calls = this.calls().slice(-15).map((c) => `  ${c.node} ${c.tool} ${c.args.join(' ').slice(0, 100)} -> ${c.exit}`);
    const sshd = this.nodes.map((n) => {
      const lines = existsSync(join(n.dir, 'sshd.log')) ? readFileSync(join(n.dir, 'sshd.log'), 'utf8').trim().split('\n').slice(-4) : [];
      return `  ${n.name} (${n.ip}): sshd ${n.sshd?.exitCode ?? n.sshd?.signalCode ?? 'running'}\n${lines.map((l) => `    ${l}`).join('\n')}`;
    });
    process.stderr.write(`kube bed ${this.subnet}.0/24, last stand-in calls:\n${calls.join('\n') || '  (none)'}\nnodes:\n${sshd.join('\n')}\n`);
  }

  async destroy(): Promise<void> {
    await this.tb.destroy();
    if (this.rootIf) await run('ip', ['link', 'del', this.rootIf]).catch(() => undefined);
    // Overlay work dirs hold root-only entries; a plain recursive remove copes.
    rmSync(this.dir, { recursive: true, force: true });
  }
}

function canConnect(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host, port, timeout: 500 });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
    s.once('timeout', () => {
      s.destroy();
      resolve(false);
    });
  });
}
