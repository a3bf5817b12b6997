import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { table } from '../server/cli/table.js';
import { spawn } from 'node:child_process';
import { CLI_PATH } from '../server/lib/paths.js';
import { CLUSTER, IMAGE_FILE, KUBERNETES_VERSION, VIP, type LabMachine, type Rack } from './rack.js';

/**
 * What an admin and a tech do with the virtual rack, through racksmith's public CLI and API only:
 * a token, a cluster, the rack's CSV, the rack powered on through its BMCs, a live table until
 * the cluster is ready (or something failed), then the figures.
 */
export const STATES = ['provisioning', 'installed', 'ready', 'joining', 'joined'] as const;

export interface MachineJson {
  mac: string;
  hostname: string;
  role: string;
  ip: string | null;
  state: string;
  lastStep: string | null;
  stateChangedAt: string;
  failure: { from: string; step: string; reason: string } | null;
}

export interface EventJson {
  id: number;
  at: string;
  type: string;
  message: string;
  data: Record<string, unknown> | null;
}

export interface Figures {
  readonly name: string;
  readonly role: string;
  readonly firmware: string;
  /** Seconds from the start (power request) to the first time in each state. */
  readonly at: Partial<Record<(typeof STATES)[number], number>>;
}

export interface FlowOptions {
  /** Give up after this long (ms). */
  readonly timeoutMs: number;
  readonly print: (text: string) => void;
  /** Redraw the table in place (a terminal); otherwise print a line per change. */
  readonly tty: boolean;
}

/** What the live table and the figures look at: one rack, or a site's racks together. */
export interface RackView {
  readonly machines: readonly LabMachine[];
  booting(): number;
  readonly maxBooting: number;
}

export class LabClient {
  token = '';
  /** `rack`: the racksmith this client talks to; `view`: the machines it shows (a site's, across its networks). */
  constructor(
    readonly rack: Rack,
    readonly view: RackView = rack,
  ) {}

  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- JSON bodies, read by field
  async api(method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> {
    return this.rack.bed.api(this.rack.base, this.token, method, `/api/v1${path}`, body);
  }

  /** The racksmith CLI, run inside the server namespace against the server. */
  async cli(args: readonly string[]): Promise<string> {
    const rs = this.rack.rs;
    if (!rs) throw new Error('racksmith is not running');
    return rs.cli(args, this.token ? { RACKSMITH_TOKEN: this.token } : {});
  }

  /** The CLI for a long command (an upgrade with --wait): its output as it goes, its exit code, bounded by `timeoutMs`. */
  cliResult(args: readonly string[], timeoutMs = 3 * 3600_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
    return new Promise((resolve) => {
      const child = spawn('ip', ['netns', 'exec', this.rack.bed.srv, process.execPath, CLI_PATH, ...args], { env: { ...process.env, RACKSMITH_URL: this.rack.base, RACKSMITH_TOKEN: this.token }, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout?.on('data', (d: Buffer) => {
        stdout += d.toString();
        process.stdout.write(d);
      });
      child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      child.on('close', (code) => {
        clearTimeout(timer);
        resolve({ code, stdout, stderr: stderr || (code === 0 ? '' : stdout.slice(-2000)) });
      });
    });
  }

  async machines(): Promise<MachineJson[]> {
    const r = await this.api('GET', `/machines?cluster=${CLUSTER}`);
    if (r.status !== 200) throw new Error(`GET /machines: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body as MachineJson[];
  }

  async events(mac: string): Promise<EventJson[]> {
    const r = await this.api('GET', `/machines/${mac}/events?limit=10000`);
    if (r.status !== 200) throw new Error(`GET events of ${mac}: ${r.status}`);
    return r.body as EventJson[];
  }
}

export function elapsed(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  return s < 60 ? `${s}s` : `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
}

export function liveTable(machines: readonly MachineJson[], rack: RackView, startedAt: number, now = Date.now()): string {
  const byMac = new Map(rack.machines.map((m) => [m.mac, m]));
  const rows = [...machines]
    .sort((a, b) => a.hostname.localeCompare(b.hostname))
    .map((m) => [m.hostname, m.role, byMac.get(m.mac)?.firmware ?? '-', m.ip, m.state, m.failure ? `${m.failure.step}: ${m.failure.reason}`.slice(0, 70) : m.lastStep, elapsed(now - Date.parse(m.stateChangedAt))]);
  return table(['machine', 'role', 'firmware', 'ip', 'state', 'last step', 'in state'], rows) + `elapsed ${elapsed(now - startedAt)}, machines booting now: ${rack.booting()} (at most ${rack.maxBooting})\n`;
}

/** Creates the cluster, imports the rack, powers it on; returns when the power job is accepted. */
export async function provision(c: LabClient, print: (t: string) => void): Promise<number> {
  const rs = c.rack.rs;
  if (!rs) throw new Error('racksmith is not running');
  c.token = (await rs.cli(['token', 'create', '--role', 'admin', '--name', 'lab'])).trim();
  const os = c.rack.imageMode ? ['--os', 'debian-12', '--install-method', 'image', '--image-url', IMAGE_FILE] : ['--ubuntu-release', '22.04'];
  // Two load balancers share the API's VIP (keepalived); the endpoint is then VIP:6443.
  const pair = c.rack.machines.filter((m) => m.role === 'loadbalancer').length === 2;
  const vip = pair ? ['--vip', VIP] : [];
  const create = ['clusters', 'create', '--name', CLUSTER, ...os, '--kubernetes-version', KUBERNETES_VERSION, '--container-runtime', 'containerd', '--cni', 'flannel', ...vip];
  print(`$ racksmith ${create.join(' ')}\n`);
  print(await c.cli(create));
  const csv = join(c.rack.work, 'rack.csv');
  writeFileSync(csv, c.rack.csv(), { mode: 0o600 });
  print(`$ racksmith machines import rack.csv   (${c.rack.machines.length} machines, BMC addresses and credentials)\n`);
  print(await c.cli(['machines', 'import', csv]));
  const startedAt = Date.now();
  // --force: the virtual rack has no upstreams to preflight (its installer and packages are stand-ins on its own disk).
  print(`$ racksmith rack power ${c.rack.rackName} --action on --concurrency ${c.rack.maxBooting} --force --no-wait\n`);
  print(await c.cli(['rack', 'power', c.rack.rackName, '--action', 'on', '--concurrency', String(c.rack.maxBooting), '--force', '--no-wait']));
  return startedAt;
}

export type Outcome = { readonly ok: true } | { readonly ok: false; readonly reason: string };

/**
 * Shows the live table until `done` says so, a machine fails, the cluster fails, or time is up.
 */
export async function watch(c: LabClient, startedAt: number, opts: FlowOptions, done: (ms: MachineJson[], clusterState: string) => boolean): Promise<Outcome> {
  const deadline = Date.now() + opts.timeoutMs;
  let lastLines = 0;
  let lastKey = '';
  while (Date.now() < deadline) {
    const ms = await c.machines();
    const cluster = await c.api('GET', `/clusters/${CLUSTER}`);
    const state = String(cluster.body?.state ?? 'unknown');
    const text = liveTable(ms, c.view, startedAt) + `cluster ${CLUSTER}: ${state}\n`;
    if (opts.tty) {
      opts.print((lastLines ? `\x1b[${lastLines}A\x1b[J` : '') + text);
      lastLines = text.split('\n').length - 1;
    } else {
      const key = ms.map((m) => `${m.hostname}:${m.state}:${m.lastStep}`).join(' ') + state;
      if (key !== lastKey) opts.print(`[${elapsed(Date.now() - startedAt)}] ` + ms.map((m) => `${m.hostname}=${m.state}${m.lastStep ? `(${m.lastStep})` : ''}`).join(' ') + ` cluster=${state}\n`);
      lastKey = key;
    }
    const failed = ms.find((m) => m.state === 'failed');
    if (failed) return { ok: false, reason: `${failed.hostname} failed at ${failed.failure?.step ?? '?'}: ${failed.failure?.reason ?? '?'}` };
    if (state === 'failed') return { ok: false, reason: `cluster ${CLUSTER} failed: ${JSON.stringify(((cluster.body?.steps ?? []) as { state: string }[]).filter((s) => s.state === 'failed'))}` };
    if (done(ms, state)) return { ok: true };
    await new Promise((r) => setTimeout(r, 1000));
  }
  return { ok: false, reason: `timed out after ${elapsed(opts.timeoutMs)}` };
}

/** Per machine, seconds from `since` to the first time it entered each state after it. */
export async function figures(c: LabClient, since: number): Promise<Figures[]> {
  const out: Figures[] = [];
  for (const m of c.view.machines) {
    const at: Partial<Record<(typeof STATES)[number], number>> = {};
    for (const e of await c.events(m.mac)) {
      const t = Date.parse(e.at);
      const to = e.data?.['to'];
      if (e.type !== 'state' || t < since || typeof to !== 'string') continue;
      if ((STATES as readonly string[]).includes(to) && at[to as (typeof STATES)[number]] === undefined) at[to as (typeof STATES)[number]] = (t - since) / 1000;
    }
    out.push({ name: m.name, role: m.role, firmware: m.firmware, at });
  }
  return out;
}

export function figuresTable(f: readonly Figures[]): string {
  return table(
    ['machine', 'role', 'firmware', ...STATES],
    f.map((x) => [x.name, x.role, x.firmware, ...STATES.map((s) => (x.at[s] === undefined ? '-' : `${x.at[s]!.toFixed(1)}s`))]),
  );
}

export function machineOf(rack: RackView, name: string): LabMachine {
  const m = rack.machines.find((x) => x.name === name);
  if (!m) throw new Error(`no machine ${name}`);
  return m;
}
