import type { ExecOptions, ExecResult, RemoteSession, RemoteShell, SshTarget } from '../../server/orchestrator/ssh.js';
import { SshError } from '../../server/orchestrator/ssh.js';

/**
 * An in-memory stand-in for a rack of nodes behind the `RemoteShell` interface, for fast tests
 * of the orchestrator's service logic (the real ssh2 + sshd path has its own heavy tests). It
 * understands the scripts racksmith sends just enough to keep kubeadm-like state per node.
 */
export interface FakeCall {
  readonly host: string;
  readonly script: string;
  readonly at: number;
}

export interface FakeNode {
  adminConf: boolean;
  kubeletConf: boolean;
  files: Map<string, string>;
  /** Connection attempts to refuse (ECONNREFUSED) before accepting. */
  refuse: number;
  /** Joins to fail before one succeeds; Infinity for always. */
  failJoins: number;
  hostKeyMismatch: boolean;
  /** Drains to fail (a disruption budget) before one succeeds. */
  failDrains: number;
  /** No connection at all (a powered-off machine). */
  down: boolean;
}

export class FakeRack implements RemoteShell {
  readonly nodes = new Map<string, FakeNode>();
  readonly calls: FakeCall[] = [];
  readonly connects: string[] = [];
  readonly cluster = { initialised: false, token: '', nodes: new Set<string>(), cni: false, members: new Map<string, string>() };
  private memberSeq = 0x8e9e05c52164694dn;
  /** Artificial latency per command, to let tests act in between. */
  delayMs = 0;

  node(host: string): FakeNode {
    let n = this.nodes.get(host);
    if (!n) {
      n = { adminConf: false, kubeletConf: false, files: new Map(), refuse: 0, failJoins: 0, hostKeyMismatch: false, failDrains: 0, down: false };
      this.nodes.set(host, n);
    }
    return n;
  }

  async connect(target: SshTarget, signal?: AbortSignal): Promise<RemoteSession> {
    this.connects.push(target.host);
    const n = this.node(target.host);
    if (signal?.aborted) throw new SshError('aborted', 'aborted');
    if (n.down) throw new SshError('timeout', `${target.host}: no answer within ${target.connectTimeoutMs} ms`);
    if (n.hostKeyMismatch) throw new SshError('host-key', `${target.host} presented an SSH host key that differs from its phone-home; refused before logging in`);
    if (n.refuse > 0) {
      n.refuse--;
      throw new SshError('transport', `${target.host}: ECONNREFUSED (connect ECONNREFUSED ${target.host}:22)`);
    }
    return {
      exec: (command, opts) => this.exec(target.host, command, opts),
      close: () => undefined,
    };
  }

  /** A reinstall: a fresh disk, nothing of Kubernetes on it. */
  reinstall(host: string): void {
    const n = this.node(host);
    n.adminConf = false;
    n.kubeletConf = false;
    n.files.clear();
  }

  private addMember(host: string): void {
    this.cluster.members.set(hostnameOf(host), (this.memberSeq++).toString(16));
  }

  private async exec(host: string, _command: string, opts: ExecOptions): Promise<ExecResult> {
    const script = opts.stdin ?? '';
    this.calls.push({ host, script, at: Date.now() });
    if (this.delayMs) await new Promise((r) => setTimeout(r, this.delayMs));
    const n = this.node(host);
    const out = (stdout: string, code = 0): ExecResult => {
      if (stdout) opts.onData?.(stdout, 'stdout');
      return { code, signal: null, stdout, stderr: '', timedOut: false };
    };
    const quoted = (after: string): string => new RegExp(`${after} '([^']*)'`).exec(script)?.[1] ?? '';
    const hostOf = (name: string): string => [...HOSTNAMES].find(([, h]) => h === name)?.[0] ?? name;
    if (script.includes('kubeadm reset -f') && !script.includes('kubeadm join')) {
      if (n.adminConf) this.cluster.members.delete(hostnameOf(host));
      n.adminConf = false;
      n.kubeletConf = false;
      return out('[reset] Stopping the kubelet service\n');
    }
    if (script.includes(' -- etcdctl ')) {
      if (script.includes(`'endpoint' 'health'`)) return out([...this.cluster.members].map(([name]) => `https://${hostOf(name)}:2379 is healthy: successfully committed proposal: took = 2.1ms`).join('\n') + '\n');
      if (script.includes(`'member' 'list'`)) return out([...this.cluster.members].map(([name, id]) => `${id}, started, ${name}, https://${hostOf(name)}:2380, https://${hostOf(name)}:2379, false`).join('\n') + '\n');
      const id = /'member' 'remove' '([0-9a-f]+)'/.exec(script)?.[1];
      const name = [...this.cluster.members].find(([, v]) => v === id)?.[0];
      if (!name) return out('Error: etcdserver: member not found\n', 1);
      this.cluster.members.delete(name);
      return out(`Member ${id} removed from cluster 1c45a069f3a1d796\n`);
    }
    if (script.includes(' drain ')) {
      const name = quoted('drain');
      if (!this.cluster.nodes.has(hostOf(name))) return out(`Error from server (NotFound): nodes "${name}" not found\n`, 1);
      if (n.failDrains > 0) {
        n.failDrains--;
        return out(`error when evicting pods/"web-1" -n "default": Cannot evict pod as it would violate the pod's disruption budget.\n`, 1);
      }
      return out(`node/${name} cordoned\nnode/${name} drained\n`);
    }
    if (script.includes(' get node ')) {
      const name = quoted('get node');
      if (!this.cluster.nodes.has(hostOf(name))) return out(`Error from server (NotFound): nodes "${name}" not found\n`, 1);
      return out(`${name}   ${this.cluster.cni ? 'Ready' : 'NotReady'}   <none>   1m   v1.28.4\n`);
    }
    if (script.includes(' delete node ')) {
      this.cluster.nodes.delete(hostOf(quoted('delete node')));
      return out(`node "${quoted('delete node')}" deleted\n`);
    }
    if (script.includes('test -f /etc/kubernetes/admin.conf')) return out('', n.adminConf ? 0 : 1);
    if (script.includes('test -f /etc/kubernetes/kubelet.conf')) return out('', n.kubeletConf ? 0 : 1);
    if (script.includes('haproxy -c')) return out('Configuration file is valid\nhaproxy configuration applied\n');
    if (script.includes('/etc/kubernetes/pki/ca.key')) {
      n.files.set('ca.crt', /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(script)?.[0] ?? '');
      n.files.set('config', script);
      return out('CA and kubeadm configuration in place\n');
    }
    if (script.includes('kubeadm init --config')) {
      if (this.cluster.initialised) return out('[ERROR Port-6443]: Port 6443 is in use\n', 1);
      const token = /token: "([a-z0-9.]+)"/.exec(n.files.get('config') ?? '')?.[1] ?? '';
      this.cluster.initialised = true;
      this.cluster.token = token;
      this.cluster.nodes.add(host);
      this.addMember(host);
      n.adminConf = true;
      n.kubeletConf = true;
      return out(`[bootstrap-token] Using token: ${token}\nYour Kubernetes control-plane has initialized successfully!\n`);
    }
    if (script.includes('cat /etc/kubernetes/admin.conf')) {
      return out('apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    server: https://10.0.0.10:6443\n  name: lab\nusers:\n- name: admin\n  user:\n    client-key-data: c2VjcmV0\n');
    }
    if (script.includes('apply -f')) {
      this.cluster.cni = true;
      return out('daemonset.apps/kube-flannel-ds created\n');
    }
    if (script.includes('upload-certs')) return out('[upload-certs] Using certificate key:\n' + (/--certificate-key '([0-9a-f]+)'/.exec(script)?.[1] ?? '') + '\n');
    if (script.includes('kubeadm token create')) return out(`${this.cluster.token}\n`);
    if (script.includes('kubeadm join')) {
      if (n.failJoins > 0) {
        n.failJoins--;
        return out('error execution phase preflight: couldn\'t validate the identity of the API Server: connection refused\n', 1);
      }
      const token = /--token' '([a-z0-9.]+)'/.exec(script)?.[1];
      if (!this.cluster.initialised || token !== this.cluster.token) return out('error execution phase preflight: unknown token\n', 1);
      if (this.cluster.nodes.has(host)) return out(`error execution phase kubelet-start: a Node with name "${hostnameOf(host)}" and status "Ready" already exists in the cluster\n`, 1);
      if (script.includes('--control-plane')) {
        if (this.cluster.members.has(hostnameOf(host))) return out('error execution phase control-plane-join/etcd: etcdserver: Peer URLs already exists\n', 1);
        this.addMember(host);
        n.adminConf = true;
      }
      n.kubeletConf = true;
      this.cluster.nodes.add(host);
      return out('This node has joined the cluster:\n');
    }
    if (script.includes('get nodes')) {
      return out([...this.cluster.nodes].map((h) => `${hostnameOf(h)}   ${this.cluster.cni ? 'Ready' : 'NotReady'}   <none>   1m   v1.28.4`).join('\n') + '\n');
    }
    return out(`unknown script\n`, 127);
  }

  callsOn(host: string): FakeCall[] {
    return this.calls.filter((c) => c.host === host);
  }
}

/** The fake fleet names its hosts by address; tests map them back to host names. */
export const HOSTNAMES = new Map<string, string>();
function hostnameOf(ip: string): string {
  return HOSTNAMES.get(ip) ?? ip;
}
