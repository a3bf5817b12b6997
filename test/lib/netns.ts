import { execFile, execFileSync, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';

const run = promisify(execFile);

/**
 * Network namespaces, veths and bridges for one test run. Every name starts with `rs` plus a
 * random tag, so parallel runs never collide; `destroy()` ends every process started inside the
 * namespaces (by PID) and deletes them, and is safe to call twice or after a failed setup.
 * Interface names stay within Linux's 15 characters.
 */
export class Testbed {
  readonly prefix: string;
  private readonly namespaces: string[] = [];
  private readonly children = new Set<ChildProcess>();

  constructor(tag: string) {
    if (!/^[a-z]{1,3}$/.test(tag)) throw new Error('testbed tag: 1–3 lower-case letters');
    this.prefix = `rs${tag}${randomBytes(2).toString('hex')}`;
  }

  /**
   * What `destroy()` does, synchronously, for a process that ends without it: a suite killed by
   * the runner's timeout or by ^C, or a setup that threw before the test kept the bed to destroy.
   */
  destroySync(): void {
    this.killChildren();
    for (const ns of this.namespaces.splice(0).reverse()) {
      try {
        const pids = execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8', timeout: 5000 });
        for (const pid of pids.split(/\s+/).filter(Boolean)) {
          try {
            process.kill(Number(pid), 'SIGKILL');
          } catch {
            /* already gone */
          }
        }
        execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore', timeout: 5000 });
      } catch {
        /* gone already, or the kernel still holds it: nothing more to do on the way out */
      }
    }
    live.delete(this);
  }

  private killChildren(): void {
    for (const child of this.children) {
      try {
        child.kill('SIGKILL');
      } catch {
        /* already gone */
      }
    }
  }

  /** `rs<tag><hex>-<suffix>`; the suffix keeps the whole within 15 characters. */
  name(suffix: string): string {
    const n = `${this.prefix}${suffix}`;
    if (n.length > 15) throw new Error(`name ${n} is longer than 15 characters`);
    return n;
  }

  async addNamespace(suffix: string): Promise<string> {
    const ns = this.name(suffix);
    await run('ip', ['netns', 'add', ns]);
    this.namespaces.push(ns);
    watch(this);
    await this.ip(ns, ['link', 'set', 'lo', 'up']);
    return ns;
  }

  /** Runs `ip …` inside a namespace. */
  async ip(ns: string, args: readonly string[]): Promise<string> {
    const { stdout } = await run('ip', ['-n', ns, ...args]);
    return stdout;
  }

  /** Runs a command to completion inside a namespace; rejects on a non-zero exit. */
  async exec(ns: string, cmd: string, args: readonly string[], opts: { timeoutMs?: number; input?: string } = {}): Promise<{ stdout: string; stderr: string }> {
    const child = execFile('ip', ['netns', 'exec', ns, cmd, ...args], { timeout: opts.timeoutMs ?? 60_000, maxBuffer: 64 * 1024 * 1024, encoding: 'utf8' });
    if (opts.input !== undefined) child.stdin?.end(opts.input);
    return new Promise((resolve, reject) => {
      let stdout = '';
      let stderr = '';
      child.stdout?.on('data', (d: string) => (stdout += d));
      child.stderr?.on('data', (d: string) => (stderr += d));
      child.on('error', reject);
      child.on('close', (code, signal) => {
        if (code === 0) resolve({ stdout, stderr });
        else reject(Object.assign(new Error(`${cmd} ${args.join(' ')} in ${ns} exited ${code ?? signal}: ${stderr.trim().slice(-2000)}`), { stdout, stderr, code }));
      });
    });
  }

  /** Starts a long-running process inside a namespace; it is ended by `destroy()`. */
  spawn(ns: string, cmd: string, args: readonly string[], opts: SpawnOptions = {}): ChildProcess {
    const child = spawn('ip', ['netns', 'exec', ns, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
    this.children.add(child);
    child.on('exit', () => this.children.delete(child));
    return child;
  }

  /** A veth pair between two namespaces, both ends up, with optional addresses (CIDR). */
  async veth(nsA: string, ifA: string, nsB: string, ifB: string, addrA?: string, addrB?: string): Promise<void> {
    const a = this.name(ifA);
    const b = this.name(ifB);
    await run('ip', ['link', 'add', a, 'netns', nsA, 'type', 'veth', 'peer', 'name', b, 'netns', nsB]);
    if (addrA) await this.ip(nsA, ['addr', 'add', addrA, 'dev', a]);
    if (addrB) await this.ip(nsB, ['addr', 'add', addrB, 'dev', b]);
    await this.ip(nsA, ['link', 'set', a, 'up']);
    await this.ip(nsB, ['link', 'set', b, 'up']);
  }

  /** A bridge inside a namespace; `ports` are interface names (full names) already in that namespace. */
  async bridge(ns: string, suffix: string, ports: readonly string[]): Promise<string> {
    const br = this.name(suffix);
    await this.ip(ns, ['link', 'add', br, 'type', 'bridge']);
    // No STP forwarding delay: a booting VM's first DHCP must pass at once.
    await this.ip(ns, ['link', 'set', br, 'type', 'bridge', 'forward_delay', '0', 'stp_state', '0']);
    for (const p of ports) await this.ip(ns, ['link', 'set', p, 'master', br]);
    await this.ip(ns, ['link', 'set', br, 'up']);
    return br;
  }

  /** Ends every process this testbed started, then any process left inside its namespaces, then deletes them. */
  async destroy(): Promise<void> {
    this.killChildren();
    for (const ns of this.namespaces.splice(0).reverse()) {
      try {
        const { stdout } = await run('ip', ['netns', 'pids', ns]);
        for (const pid of stdout.split(/\s+/).filter(Boolean)) {
          try {
            process.kill(Number(pid), 'SIGKILL');
          } catch {
            /* already gone */
          }
        }
      } catch {
        /* namespace already gone */
      }
      // The kernel may need a moment to reap what was killed before the namespace can go.
      for (let i = 0; i < 20; i++) {
        try {
          await run('ip', ['netns', 'del', ns]);
          break;
        } catch {
          await new Promise((r) => setTimeout(r, 50));
        }
      }
    }
    live.delete(this);
  }
}

/**
 * Test beds with namespaces not yet destroyed. While there are any, the process removes them
 * on its way out — on exit, and on SIGTERM/SIGINT/SIGHUP (the runner's timeout, ^C), after
 * which the signal takes its default course — so no `rs*` namespace outlives its suite.
 */
const live = new Set<Testbed>();
const SIGNALS = ['SIGTERM', 'SIGINT', 'SIGHUP'] as const;

function destroyLive(): void {
  for (const tb of [...live]) tb.destroySync();
}

function onSignal(signal: NodeJS.Signals): void {
  destroyLive();
  for (const s of SIGNALS) process.off(s, onSignal);
  process.off('exit', destroyLive);
  process.kill(process.pid, signal);
}

let watching = false;
function watch(tb: Testbed): void {
  if (!watching) {
    watching = true;
    process.on('exit', destroyLive);
    for (const s of SIGNALS) process.on(s, onSignal);
  }
  live.add(tb);
}
