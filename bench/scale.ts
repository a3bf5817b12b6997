/**
 * `npm run bench:scale`: racksmith at site scale, two ways side by side in the same run.
 *
 *   A  one racksmith on its embedded SQLite serving one provisioning network;
 *   B  three racksmith instances on one PostgreSQL 15 (Debian's, fsync on as a site runs it),
 *      each serving its own network (namespace, authoritative DHCP with its own pool, TFTP).
 *
 * Both get the same inventory through the API's CSV import: `--machines` machines (default
 * 10,000) in racks of 40 (a cluster per rack: 1 load balancer, 3 control-plane nodes, 36
 * workers), the racks spread over B's three networks by address (A's network spans all three).
 * Then, for each instance: `GET /api/v1/machines` (whole list) and `?limit=100` (a page), a fixed
 * number of requests one at a time from the host, p50/p99. Then a power-on burst of `--burst`
 * workers (default 1,000; a third on each of B's networks): bench/lib/boot-burst.ts simulates
 * them from the networks' client namespaces — DHCP → TFTP of undionly.kpxe → iPXE's DHCP → boot
 * script → seed → phone-home — and the time until the API shows every one `ready` is measured
 * (a worker with no control plane up is `ready` after its phone-home: nothing needs SSH), with
 * each racksmith's CPU time and peak RSS and PostgreSQL's (all its processes) over the burst.
 *
 *   npm run bench:scale                          the defaults above
 *   npm run bench:scale -- --smoke               600 machines, a burst of 60 (to iterate)
 *   npm run bench:scale -- --machines 3000 --burst 300 --requests 50
 *
 * Nothing is pinned: the two cores are shared by the servers, PostgreSQL and the simulated
 * machines, as on a small real host; the clients' CPU is printed too. Nothing asserts a speed;
 * the run fails, naming the machines, if a burst does not end with every machine `ready`.
 * BENCH_NODE_OPTIONS is given to every racksmith (e.g. `--import` of a profiler).
 */
import { randomBytes } from 'node:crypto';
import { execFile, spawn } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { request, Agent } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { PACKAGE_ROOT } from '../server/lib/paths.js';
import { Testbed } from '../test/lib/netns.js';
import { pgMissing, startPostgres, type TestPostgres } from '../test/lib/postgres.js';
import { startRacksmith, type RacksmithProcess } from '../test/lib/racksmith.js';
import { requirements } from '../test/lib/tools.js';
import { serverNodeOptions } from './lib/node-options.js';

const run = promisify(execFile);

function flag(name: string, fallback: number, smoke: number): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i >= 0) {
    const v = Number(process.argv[i + 1]);
    if (!Number.isInteger(v) || v < 1) throw new Error(`--${name} takes a positive whole number`);
    return v;
  }
  return process.argv.includes('--smoke') ? smoke : fallback;
}
const MACHINES = flag('machines', 10_000, 600);
const BURST = flag('burst', 1000, 60);
const REQUESTS = flag('requests', 200, 20);
const PAGE_REQUESTS = flag('page-requests', 1000, 100);
const BURST_TIMEOUT_MS = flag('burst-timeout', 300, 120) * 1000;
const SKIP_TFTP = process.argv.includes('--skip-tftp');
/** PostgreSQL's synchronous_commit: `on` as it ships (each commit waits for its WAL flush), `off` as SQLite's WAL with synchronous=NORMAL. */
const PG_SYNC = process.argv[process.argv.indexOf('--pg-synchronous-commit') + 1] === 'off' && process.argv.includes('--pg-synchronous-commit') ? 'off' : 'on';
/** `--pg-log FILE`: every statement PostgreSQL ran, with its duration, kept in FILE (for finding where time goes). */
const PG_LOG = process.argv.includes('--pg-log') ? (process.argv[process.argv.indexOf('--pg-log') + 1] ?? null) : null;
const RACK = 40;
const NETWORKS = 3;
const HTTP_PORT = 8080;
if (BURST > MACHINES * (36 / RACK)) throw new Error(`--burst ${BURST} is more than the ${Math.floor(MACHINES * (36 / RACK))} workers of ${MACHINES} machines`);
if (Math.ceil(MACHINES / NETWORKS) > 250 * 250) throw new Error('--machines: at most 187,500 (three /16 networks)');

// ── the inventory ─────────────────────────────────────────────────────────────────────────────
interface Row {
  readonly mac: string;
  readonly hostname: string;
  readonly role: 'loadbalancer' | 'control-plane' | 'worker';
  readonly cluster: string;
  readonly rack: string;
  readonly net: number;
  readonly ip: string;
}

function inventory(n: number): Row[] {
  const rows: Row[] = [];
  const seq = new Array<number>(NETWORKS).fill(0);
  for (let i = 0; i < n; i++) {
    const rack = Math.floor(i / RACK);
    const net = rack % NETWORKS;
    const k = seq[net] ?? 0;
    seq[net] = k + 1;
    const slot = i % RACK;
    rows.push({
      mac: `52:54:20:${[(i >> 16) & 255, (i >> 8) & 255, i & 255].map((x) => x.toString(16).padStart(2, '0')).join(':')}`,
      hostname: `r${rack}-n${slot}`,
      role: slot === 0 ? 'loadbalancer' : slot < 4 ? 'control-plane' : 'worker',
      cluster: `rack${rack}`,
      rack: `r${rack}`,
      net,
      // Per network: 10.(100+net).(1…250).(10…259 → 10…259 mod): hosts from .1.10 up, never .0/.255.
      ip: `10.${100 + net}.${1 + Math.floor(k / 240)}.${10 + (k % 240)}`,
    });
  }
  return rows;
}

function csv(rows: readonly Row[]): string {
  return ['mac,hostname,role,cluster,ip,rack', ...rows.map((r) => `${r.mac},${r.hostname},${r.role},${r.cluster},${r.ip},${r.rack}`)].join('\n') + '\n';
}

// ── HTTP from the host to an instance's management address ───────────────────────────────────
const agent = new Agent({ keepAlive: true, maxSockets: 4 });
function call(base: string, token: string, method: string, path: string, body?: string, type = 'application/json'): Promise<{ status: number; text: string }> {
  const u = new URL(path, base);
  return new Promise((resolve, reject) => {
    const req = request(
      { host: u.hostname, port: u.port, path: u.pathname + u.search, method, agent, timeout: 120_000, headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': type, 'content-length': Buffer.byteLength(body) }) } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString() }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${method} ${path}: no answer in 120 s`)));
    req.on('error', reject);
    req.end(body);
  });
}

async function must(base: string, token: string, method: string, path: string, body?: string, type?: string): Promise<string> {
  const r = await call(base, token, method, path, body, type);
  if (r.status < 200 || r.status > 299) throw new Error(`${method} ${path} on ${base}: ${r.status} ${r.text.slice(0, 400)}`);
  return r.text;
}

/** `requests` GETs one at a time; latencies in ms, sorted. */
async function latencies(base: string, token: string, path: string, requests: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < requests; i++) {
    const t0 = performance.now();
    await must(base, token, 'GET', path);
    out.push(performance.now() - t0);
  }
  return out.sort((a, b) => a - b);
}
const pct = (sorted: readonly number[], p: number): number => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? Number.NaN;

// ── processes: CPU time and memory from /proc ────────────────────────────────────────────────
const TICK_MS = 10;
function statFields(pid: number): string[] | null {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return s.slice(s.lastIndexOf(')') + 2).split(' ');
  } catch {
    return null;
  }
}
/** utime + stime (+ reaped children's, for a postmaster whose backends come and go), ms. */
function cpuMs(pid: number, withChildren = false): number {
  const f = statFields(pid);
  if (!f) return 0;
  return (Number(f[11]) + Number(f[12]) + (withChildren ? Number(f[13]) + Number(f[14]) : 0)) * TICK_MS;
}
function children(root: number): number[] {
  const parent = new Map<number, number>();
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    const f = statFields(Number(e));
    if (f) parent.set(Number(e), Number(f[1]));
  }
  const out: number[] = [];
  let frontier = [root];
  while (frontier.length) {
    frontier = [...parent].filter(([, pp]) => frontier.includes(pp)).map(([pid]) => pid);
    out.push(...frontier);
  }
  return out;
}
function statusKb(pid: number, field: string): number {
  try {
    return Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
  } catch {
    return 0;
  }
}
function pssKb(pid: number): number {
  try {
    return Number(/^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'))?.[1] ?? 0);
  } catch {
    return 0;
  }
}
/** Resets a process's peak RSS (VmHWM) to its current RSS (proc(5), clear_refs 5). */
function resetPeak(pid: number): void {
  writeFileSync(`/proc/${pid}/clear_refs`, '5');
}

/** PostgreSQL: the postmaster and every backend; CPU includes backends that ended. */
class PgProcesses {
  private peakPss = 0;
  private timer: NodeJS.Timeout | null = null;
  constructor(readonly postmaster: number) {}
  cpuMs(): number {
    return cpuMs(this.postmaster, true) + children(this.postmaster).reduce((s, p) => s + cpuMs(p, true), 0);
  }
  pss(): number {
    return [this.postmaster, ...children(this.postmaster)].reduce((s, p) => s + pssKb(p), 0);
  }
  /** Samples the processes' summed PSS (shared buffers counted once) every 250 ms. */
  watch(): void {
    this.peakPss = this.pss();
    this.timer = setInterval(() => (this.peakPss = Math.max(this.peakPss, this.pss())), 250);
  }
  stop(): number {
    if (this.timer) clearInterval(this.timer);
    return Math.max(this.peakPss, this.pss());
  }
}

// ── the run ──────────────────────────────────────────────────────────────────────────────────
interface Instance {
  readonly side: 'A' | 'B';
  readonly name: string;
  readonly nets: readonly number[];
  /** The server's namespace, the client namespace and its link, the server's address. */
  readonly srv: string;
  readonly cli: string;
  readonly cliIf: string;
  readonly srvIf: string;
  readonly serverIp: string;
  readonly prefix: string;
  readonly pool: string;
  readonly netmask: string;
  /** The host's end of the management link (PostgreSQL listens there for B). */
  readonly mgmtHost: string;
  rs: RacksmithProcess | null;
  api: string;
  token: string;
}

interface Burst {
  readonly side: 'A' | 'B';
  readonly allReadyMs: number;
  readonly clientOkMs: number;
  readonly retried: number;
  readonly rebooted: number;
  readonly tftpBusy: number;
  readonly cpuMs: Map<string, number>;
  readonly peakRssKb: Map<string, number>;
  readonly pgCpuMs: number | null;
  readonly pgPeakPssKb: number | null;
  readonly clientCpuMs: number;
  readonly steps: Record<string, number>;
}

async function main(): Promise<void> {
  const missing = requirements(['ip', 'curl', '/usr/lib/ipxe/undionly.kpxe'], { netns: true }) ?? pgMissing();
  if (missing) throw new Error(`bench:scale needs ${missing}`);
  if (process.env['RACKSMITH_TEST_DATABASE'] === 'postgres') throw new Error('unset RACKSMITH_TEST_DATABASE: side A is the embedded SQLite');
  const t0 = Date.now();
  const rows = inventory(MACHINES);
  const work = mkdtempSync(join(tmpdir(), 'racksmith-bench-scale-'));
  const tb = new Testbed('sc');
  let pg: TestPostgres | null = null;
  const instances: Instance[] = [];
  const onSignal = (): void => void cleanup().finally(() => process.exit(130));
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  let cleaned = false;
  async function cleanup(): Promise<void> {
    if (cleaned) return;
    cleaned = true;
    for (const i of instances) {
      await i.rs?.stop().catch(() => null);
      i.rs?.cleanup();
    }
    await tb.destroy();
    if (PG_LOG && pg) copyFileSync(join(pg.dir, 'server.log'), PG_LOG);
    await pg?.stop().catch(() => undefined);
    rmSync(work, { recursive: true, force: true });
  }
  try {
    // Networks. Each server namespace has a provisioning link to its client namespace and a
    // management link to the host (the API from here, PostgreSQL from there).
    const mk = async (side: 'A' | 'B', index: number, nets: number[], serverCidr: string, poolStart: string, poolEnd: string, netmask: string): Promise<Instance> => {
      const tag = `${side.toLowerCase()}${index}`;
      const srv = await tb.addNamespace(`${tag}s`);
      const cli = await tb.addNamespace(`${tag}c`);
      await tb.veth(srv, `${tag}p`, cli, `${tag}q`, serverCidr);
      const mgmtHost = `10.250.${10 + instances.length}.1`;
      const mgmtNs = `10.250.${10 + instances.length}.2`;
      const hostIf = tb.name(`${tag}h`);
      const nsIf = tb.name(`${tag}m`);
      await run('ip', ['link', 'add', hostIf, 'type', 'veth', 'peer', 'name', nsIf, 'netns', srv]);
      await run('ip', ['addr', 'add', `${mgmtHost}/30`, 'dev', hostIf]);
      await run('ip', ['link', 'set', hostIf, 'up']);
      await tb.ip(srv, ['addr', 'add', `${mgmtNs}/30`, 'dev', nsIf]);
      await tb.ip(srv, ['link', 'set', nsIf, 'up']);
      const serverIp = serverCidr.split('/')[0] as string;
      const inst: Instance = {
        side, name: side === 'A' ? 'A' : `B${index}`, nets, srv, cli, cliIf: tb.name(`${tag}q`), srvIf: tb.name(`${tag}p`), serverIp, prefix: `${serverIp}/${serverCidr.split('/')[1]}`,
        pool: `${poolStart}-${poolEnd}`, netmask, mgmtHost, rs: null, api: `http://${mgmtNs}:${HTTP_PORT}`, token: '',
      };
      instances.push(inst);
      return inst;
    };
    const a = await mk('A', 0, [0, 1, 2], '10.100.0.1/14', '10.103.200.1', '10.103.255.250', '255.252.0.0');
    const bs: Instance[] = [];
    for (let k = 0; k < NETWORKS; k++) bs.push(await mk('B', k, [k], `10.${100 + k}.0.1/16`, `10.${100 + k}.255.1`, `10.${100 + k}.255.250`, '255.255.0.0'));

    pg = await startPostgres({ listen: bs.map((b) => b.mgmtHost), allow: bs.map((b) => `${b.mgmtHost.replace(/\.1$/, '.0')}/30`), fsync: true, settings: { synchronous_commit: PG_SYNC, ...(PG_LOG ? { log_min_duration_statement: '0', log_line_prefix: "'%m [%p] %a '" } : {}) } });
    const databaseUrl = (b: Instance, url: string): string => url.replace('127.0.0.1', b.mgmtHost);
    const dbUrl = await pg.newDatabase('scale');
    const secretKey = randomBytes(32).toString('hex');

    const start = async (i: Instance, extra: Record<string, string>): Promise<void> => {
      i.rs = await startRacksmith({
        netns: i.srv,
        host: i.serverIp,
        httpPort: HTTP_PORT,
        timeoutMs: 60_000,
        env: {
          RACKSMITH_LOG_LEVEL: 'warn',
          RACKSMITH_DHCP_MODE: 'authoritative',
          RACKSMITH_DHCP_INTERFACE: i.srvIf,
          RACKSMITH_DHCP_RANGE: i.pool,
          RACKSMITH_DHCP_NETMASK: i.netmask,
          RACKSMITH_TFTP_PORT: '69',
          RACKSMITH_SECRET_KEY: secretKey,
          ...serverNodeOptions,
          ...extra,
        },
      });
      if (readFileSync(`/proc/${i.rs.child.pid}/comm`, 'utf8').trim() !== 'node') throw new Error(`${i.name}: pid ${i.rs.child.pid} is not racksmith's node`);
      i.token = (await i.rs.cli(['token', 'create', '--role', 'admin'])).trim();
    };
    await start(a, {});
    for (const b of bs) await start(b, { RACKSMITH_DATABASE_URL: databaseUrl(b, dbUrl), RACKSMITH_INSTANCE_NAME: b.name });
    process.stdout.write(`${MACHINES} machines, burst ${BURST}; A on SQLite, B = ${bs.length} instances on PostgreSQL 15 (${pg.port}); set up in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);

    // Each phase starts with the servers idle: an import leaves work behind (B's instances each
    // hear of 10,000 new machines; every orchestrator looks at every cluster), and measuring one
    // instance while others digest would charge it for their CPU.
    const pgMaster = Number(readFileSync(join(pg.dir, 'data', 'postmaster.pid'), 'utf8').split('\n')[0]);
    /** Each server's CPU so far (ms): racksmith instances by name, then PostgreSQL with its backends. */
    const cpuBy = (): [string, number][] => [
      ...instances.map((i): [string, number] => [i.name, cpuMs(i.rs?.child.pid ?? 0)]),
      ['pg', cpuMs(pgMaster, true) + children(pgMaster).reduce((t, p) => t + cpuMs(p, true), 0)],
    ];
    /**
     * Waits until every server is idle; how long it waited (ms) and, for each 2 s step, who spent
     * the CPU (so that a long wait says whose work it was).
     */
    const settle = async (): Promise<{ ms: number; steps: string[] }> => {
      const t0 = Date.now();
      const steps: string[] = [];
      const until = Date.now() + 120_000;
      for (let before = cpuBy(); Date.now() < until; ) {
        await new Promise((r) => setTimeout(r, 2000));
        const now = cpuBy();
        const spent = now.map(([name, ms], k) => [name, ms - (before[k]?.[1] ?? 0)] as const);
        const total = spent.reduce((t, [, ms]) => t + ms, 0);
        steps.push(spent.filter(([, ms]) => ms > 0).map(([name, ms]) => `${name} ${ms}`).join(', ') || 'none');
        if (total < 100) return { ms: Date.now() - t0, steps }; // under 5 % of a core over 2 s
        before = now;
      }
      process.stdout.write('(the servers did not become idle within 120 s; measuring anyway)\n');
      return { ms: Date.now() - t0, steps };
    };

    // The inventory, through the API: clusters, then one CSV import (B: through its first instance).
    const imports = new Map<string, number>();
    const reimports = new Map<string, number>();
    const digests = new Map<string, number>();
    for (const target of [a, bs[0] as Instance]) {
      const clusters = [...new Set(rows.map((r) => r.cluster))];
      const tc = Date.now();
      for (const c of clusters) await must(target.api, target.token, 'POST', '/api/v1/clusters', JSON.stringify({ name: c, ubuntuRelease: '22.04', kubernetesVersion: '1.28.4', containerRuntime: 'containerd', cni: 'calico' }));
      const ti = Date.now();
      const body = JSON.parse(await must(target.api, target.token, 'POST', '/api/v1/machines/import', csv(rows), 'text/csv')) as { created: number };
      if (body.created !== rows.length) throw new Error(`${target.name}: imported ${body.created} of ${rows.length}`);
      imports.set(target.side, Date.now() - ti);
      // The same sheet again with --update, as a site re-syncing from its CMDB: nothing changes.
      // Timed once the servers are idle again: B's instances each hear of 10,000 new machines.
      const settled = await settle();
      digests.set(target.side, settled.ms);
      const tu = Date.now();
      const again = JSON.parse(await must(target.api, target.token, 'POST', '/api/v1/machines/import?mode=upsert', csv(rows), 'text/csv')) as { unchanged: number };
      if (again.unchanged !== rows.length) throw new Error(`${target.name}: the re-import left ${again.unchanged} of ${rows.length} unchanged`);
      reimports.set(target.side, Date.now() - tu);
      process.stdout.write(`${target.side}: ${clusters.length} clusters in ${((ti - tc) / 1000).toFixed(1)} s, ${rows.length} machines imported in ${((imports.get(target.side) ?? 0) / 1000).toFixed(1)} s (servers idle again ${((digests.get(target.side) ?? 0) / 1000).toFixed(0)} s later), re-imported unchanged in ${((Date.now() - tu) / 1000).toFixed(1)} s\n` +
          `  CPU ms per 2 s until idle: ${settled.steps.map((x) => `[${x}]`).join(' ')}\n`);
    }
    // Every instance of B sees the whole inventory before anything is measured.
    for (const b of bs) {
      const until = Date.now() + 60_000;
      for (;;) {
        const n = (JSON.parse(await must(b.api, b.token, 'GET', '/api/v1/machines')) as unknown[]).length;
        if (n === rows.length) break;
        if (Date.now() > until) throw new Error(`${b.name} shows ${n} of ${rows.length} machines after 60 s`);
        await new Promise((r) => setTimeout(r, 500));
      }
    }

    await settle();

    // 1. The API at rest.
    const api = new Map<string, { list: number[]; page: number[]; bytes: number }>();
    for (const i of instances) {
      const bytes = Buffer.byteLength(await must(i.api, i.token, 'GET', '/api/v1/machines'));
      const list = await latencies(i.api, i.token, '/api/v1/machines', REQUESTS);
      const page = await latencies(i.api, i.token, '/api/v1/machines?limit=100', PAGE_REQUESTS);
      api.set(i.name, { list, page, bytes });
      process.stdout.write(`${i.name.padEnd(2)} GET /machines (${(bytes / 1e6).toFixed(1)} MB) p50 ${pct(list, 50).toFixed(1)} ms p99 ${pct(list, 99).toFixed(1)} ms; ?limit=100 p50 ${pct(page, 50).toFixed(1)} ms p99 ${pct(page, 99).toFixed(1)} ms\n`);
    }

    // 2. The bursts: the same workers, A's network then B's three.
    const byNet = Array.from({ length: NETWORKS }, (_, k) => rows.filter((r) => r.net === k && r.role === 'worker'));
    const chosen: Row[] = [];
    for (let k = 0; chosen.length < BURST; k = (k + 1) % NETWORKS) {
      const next = byNet[k]?.shift();
      if (next) chosen.push(next);
    }
    const pgProcs = new PgProcesses(pgMaster);

    const burst = async (side: 'A' | 'B', serving: readonly Instance[]): Promise<Burst> => {
      // Each client namespace holds its machines' reserved addresses (host routes), as their NICs will.
      const plan = serving.map((i) => ({ i, machines: chosen.filter((r) => i.nets.includes(r.net)) }));
      for (const { i, machines } of plan) {
        const lines = [...machines.map((m) => `addr add ${m.ip}/32 dev ${i.cliIf}`), `route add ${i.prefix.replace(/\.1\//, '.0/')} dev ${i.cliIf}`, `route add 255.255.255.255/32 dev ${i.cliIf}`];
        await tb.exec(i.cli, 'ip', ['-batch', '-'], { input: lines.join('\n') + '\n' });
        writeFileSync(join(work, `${i.name}-machines.json`), JSON.stringify(machines.map((m) => ({ mac: m.mac, ip: m.ip }))));
      }
      await settle();
      const cpu0 = new Map(serving.map((i) => [i.name, cpuMs(i.rs?.child.pid ?? 0)]));
      for (const i of serving) resetPeak(i.rs?.child.pid ?? 0);
      const pgCpu0 = side === 'B' ? pgProcs.cpuMs() : 0;
      if (side === 'B') pgProcs.watch();
      const started = Date.now();
      const clients = plan.map(({ i }) => {
        const args = { machines: join(work, `${i.name}-machines.json`), server: i.serverIp, httpPort: HTTP_PORT, out: join(work, `${i.name}-results.jsonl`), spreadMs: 1000, skipTftp: SKIP_TFTP, timeoutMs: BURST_TIMEOUT_MS };
        const child = spawn('ip', ['netns', 'exec', i.cli, process.execPath, join(PACKAGE_ROOT, 'dist', 'bench', 'lib', 'boot-burst.js'), JSON.stringify(args)], { stdio: ['ignore', 'pipe', 'pipe'] });
        let out = '';
        let err = '';
        child.stdout.on('data', (d: Buffer) => (out += d.toString()));
        child.stderr.on('data', (d: Buffer) => (err += d.toString()));
        let lastCpu = 0;
        const sampler = setInterval(() => (lastCpu = Math.max(lastCpu, cpuMs(child.pid ?? 0))), 200);
        const done = new Promise<{ summary: Record<string, unknown>; cpuMs: number; endedMs: number }>((resolve, reject) => {
          const kill = setTimeout(() => child.kill('SIGKILL'), BURST_TIMEOUT_MS + 60_000);
          child.on('exit', (code) => {
            clearTimeout(kill);
            clearInterval(sampler);
            const endedMs = Date.now() - started;
            if (code !== 0) return reject(new Error(`${i.name}'s clients exited ${code}: ${err.slice(-2000)}`));
            try {
              resolve({ summary: JSON.parse(out) as Record<string, unknown>, cpuMs: lastCpu, endedMs });
            } catch {
              reject(new Error(`${i.name}'s clients said: ${out.slice(0, 500)} ${err.slice(-1000)}`));
            }
          });
        });
        return done;
      });
      // The API decides when the burst is over: every chosen machine `ready` (B: asked of its first instance).
      const want = new Set(chosen.map((r) => r.mac));
      const watcher = serving[0] as Instance;
      let ready = new Set<string>();
      let allReadyMs = -1;
      // Once every client has ended, nothing more will phone home: a few seconds for the API, then the verdict.
      let clientsEndedAt = 0;
      void Promise.allSettled(clients).then(() => (clientsEndedAt = Date.now()));
      while (Date.now() - started < BURST_TIMEOUT_MS && (clientsEndedAt === 0 || Date.now() - clientsEndedAt < 5000)) {
        await new Promise((r) => setTimeout(r, 500));
        const list = JSON.parse(await must(watcher.api, watcher.token, 'GET', '/api/v1/machines?state=ready&limit=10000')) as { mac: string }[];
        ready = new Set(list.map((m) => m.mac).filter((m) => want.has(m)));
        if (ready.size === want.size) {
          allReadyMs = Date.now() - started;
          break;
        }
      }
      const clientRuns = await Promise.allSettled(clients);
      const cpu = new Map(serving.map((i) => [i.name, cpuMs(i.rs?.child.pid ?? 0) - (cpu0.get(i.name) ?? 0)]));
      const peak = new Map(serving.map((i) => [i.name, statusKb(i.rs?.child.pid ?? 0, 'VmHWM')]));
      const pgCpu = side === 'B' ? pgProcs.cpuMs() - pgCpu0 : null;
      const pgPeak = side === 'B' ? pgProcs.stop() : null;
      const results = plan.flatMap(({ i }) => {
        try {
          return readFileSync(join(work, `${i.name}-results.jsonl`), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { mac: string; ok: boolean; error?: string; retries: number; [k: string]: unknown });
        } catch {
          return [];
        }
      });
      if (allReadyMs < 0) {
        const notReady = [...want].filter((m) => !ready.has(m));
        const why = new Map(results.filter((r) => !r.ok).map((r) => [r.mac, r.error ?? '?']));
        const failedClients = clientRuns.filter((c) => c.status === 'rejected').map((c) => String((c as PromiseRejectedResult).reason));
        throw new Error(
          `burst ${side}: ${notReady.length} of ${want.size} machines never became ready within ${BURST_TIMEOUT_MS / 1000} s:\n` +
            notReady.slice(0, 40).map((m) => `  ${m} ${rows.find((r) => r.mac === m)?.hostname ?? ''}: ${why.get(m) ?? 'no client error (phoned home? state not ready)'}`).join('\n') +
            (notReady.length > 40 ? `\n  … and ${notReady.length - 40} more` : '') +
            (failedClients.length ? `\n${failedClients.join('\n')}` : ''),
        );
      }
      const okRuns = clientRuns.filter((c): c is PromiseFulfilledResult<{ summary: Record<string, unknown>; cpuMs: number; endedMs: number }> => c.status === 'fulfilled').map((c) => c.value);
      const steps: Record<string, number> = {};
      for (const s of ['dhcp', 'tftp', 'ipxeDhcp', 'script', 'seed', 'phoneHome']) {
        const xs = results.map((r) => r[s]).filter((x): x is number => typeof x === 'number').sort((x, y) => x - y);
        if (xs.length) steps[s] = pct(xs, 50);
      }
      // Requests the TFTP services dropped at their transfer limit (RACKSMITH_TFTP_MAX_TRANSFERS).
      let tftpBusy = 0;
      for (const i of serving) {
        const h = JSON.parse(await must(i.api, i.token, 'GET', '/healthz')) as { services?: Record<string, { detail?: { counters?: Record<string, number> } }> };
        tftpBusy += h.services?.['tftp']?.detail?.counters?.['refusedBusy'] ?? 0;
      }
      // Leave no neighbour entries behind for the next burst (the kernel's table is shared).
      for (const i of serving) await tb.ip(i.srv, ['neigh', 'flush', 'all']).catch(() => undefined);
      return {
        side,
        allReadyMs,
        clientOkMs: Math.max(...okRuns.map((r) => r.endedMs)),
        retried: results.filter((r) => r.retries > 0).length,
        rebooted: results.filter((r) => Number(r['reboots'] ?? 0) > 0).length,
        tftpBusy,
        cpuMs: cpu,
        peakRssKb: peak,
        pgCpuMs: pgCpu,
        pgPeakPssKb: pgPeak,
        clientCpuMs: okRuns.reduce((s, r) => s + r.cpuMs, 0),
        steps,
      };
    };
    const bA = await burst('A', [a]);
    process.stdout.write(`A: all ${BURST} ready after ${(bA.allReadyMs / 1000).toFixed(1)} s\n`);
    const bB = await burst('B', bs);
    process.stdout.write(`B: all ${BURST} ready after ${(bB.allReadyMs / 1000).toFixed(1)} s\n`);
    // Every instance of B shows the burst's outcome.
    for (const b of bs) {
      const n = (JSON.parse(await must(b.api, b.token, 'GET', '/api/v1/machines?state=ready&limit=10000')) as unknown[]).length;
      if (n !== BURST) throw new Error(`${b.name} shows ${n} ready machines, not ${BURST}`);
    }

    // The table.
    const sum = (m: Map<string, number>): number => [...m.values()].reduce((s, x) => s + x, 0);
    const ms = (x: number): string => `${x.toFixed(1)} ms`;
    const s = (x: number): string => `${(x / 1000).toFixed(1)} s`;
    const mb = (kb: number): string => `${(kb / 1024).toFixed(0)} MiB`;
    const ratio = (x: number, y: number): string => (y > 0 ? (x / y).toFixed(2) : 'n/a');
    const apiA = api.get('A') as { list: number[]; page: number[]; bytes: number };
    const apiB = bs.map((b) => api.get(b.name) as { list: number[]; page: number[]; bytes: number });
    const worst = (f: (x: { list: number[]; page: number[] }) => number): number => Math.max(...apiB.map(f));
    const lines: [string, string, string, string][] = [
      [`import of ${MACHINES} machines (CSV, one request)`, s(imports.get('A') ?? 0), s(imports.get('B') ?? 0), ratio(imports.get('B') ?? 0, imports.get('A') ?? 0)],
      [`after the import, until every server is idle again (2 s steps)`, s(digests.get('A') ?? 0), s(digests.get('B') ?? 0), ''],
      [`the same sheet again with --update (nothing changed; servers idle)`, s(reimports.get('A') ?? 0), s(reimports.get('B') ?? 0), ratio(reimports.get('B') ?? 0, reimports.get('A') ?? 0)],
      [`GET /machines p50 (${(apiA.bytes / 1e6).toFixed(1)} MB; B: worst instance)`, ms(pct(apiA.list, 50)), ms(worst((x) => pct(x.list, 50))), ratio(worst((x) => pct(x.list, 50)), pct(apiA.list, 50))],
      [`GET /machines p99 (${REQUESTS} requests each)`, ms(pct(apiA.list, 99)), ms(worst((x) => pct(x.list, 99))), ratio(worst((x) => pct(x.list, 99)), pct(apiA.list, 99))],
      [`GET /machines?limit=100 p50`, ms(pct(apiA.page, 50)), ms(worst((x) => pct(x.page, 50))), ratio(worst((x) => pct(x.page, 50)), pct(apiA.page, 50))],
      [`GET /machines?limit=100 p99 (${PAGE_REQUESTS} requests each)`, ms(pct(apiA.page, 99)), ms(worst((x) => pct(x.page, 99))), ratio(worst((x) => pct(x.page, 99)), pct(apiA.page, 99))],
      [`burst of ${BURST}: all ready (API)`, s(bA.allReadyMs), s(bB.allReadyMs), ratio(bB.allReadyMs, bA.allReadyMs)],
      [`burst: median machine, power-on → phone-home`, ms(bA.steps['phoneHome'] ?? 0), ms(bB.steps['phoneHome'] ?? 0), ratio(bB.steps['phoneHome'] ?? 0, bA.steps['phoneHome'] ?? 0)],
      [`burst: machines that retried a step / rebooted`, `${bA.retried} / ${bA.rebooted}`, `${bB.retried} / ${bB.rebooted}`, ''],
      [`burst: TFTP requests dropped at the transfer limit (256 each)`, String(bA.tftpBusy), String(bB.tftpBusy), ''],
      [`racksmith CPU during the burst (B: sum of 3)`, s(sum(bA.cpuMs)), s(sum(bB.cpuMs)), ratio(sum(bB.cpuMs), sum(bA.cpuMs))],
      [`racksmith peak RSS during the burst (B: each)`, mb(sum(bA.peakRssKb)), bs.map((b) => mb(bB.peakRssKb.get(b.name) ?? 0)).join(' / '), ''],
      [`PostgreSQL CPU during the burst (all processes)`, '—', s(bB.pgCpuMs ?? 0), ''],
      [`PostgreSQL peak memory (summed PSS)`, '—', mb(bB.pgPeakPssKb ?? 0), ''],
      [`server CPU in all (racksmith + PostgreSQL)`, s(sum(bA.cpuMs)), s(sum(bB.cpuMs) + (bB.pgCpuMs ?? 0)), ratio(sum(bB.cpuMs) + (bB.pgCpuMs ?? 0), sum(bA.cpuMs))],
      [`simulated machines' CPU (clients)`, s(bA.clientCpuMs), s(bB.clientCpuMs), ''],
    ];
    const perInstance = bs.map((b) => `${b.name}: list p50/p99 ${ms(pct((api.get(b.name) as { list: number[] }).list, 50))}/${ms(pct((api.get(b.name) as { list: number[] }).list, 99))}, page ${ms(pct((api.get(b.name) as { page: number[] }).page, 50))}/${ms(pct((api.get(b.name) as { page: number[] }).page, 99))}, burst CPU ${s(bB.cpuMs.get(b.name) ?? 0)}`).join('\n  ');
    const stepLine = (b: Burst): string => Object.entries(b.steps).map(([k, v]) => `${k} ${(v / 1000).toFixed(2)}`).join(', ');
    process.stdout.write(
      [
        '',
        `racksmith at scale: ${MACHINES} machines in ${Math.ceil(MACHINES / RACK)} racks/clusters, a power-on burst of ${BURST} workers${SKIP_TFTP ? ' (TFTP skipped)' : ''}`,
        `A = 1 racksmith on SQLite (WAL, synchronous=NORMAL), 1 network; B = 3 racksmith on one PostgreSQL 15 (fsync on, synchronous_commit ${PG_SYNC}), 3 networks; ratio B/A (< 1: B faster or smaller)`,
        '',
        `| ${'figure'.padEnd(56)} | ${'A: SQLite, 1'.padEnd(14)} | ${'B: PostgreSQL, 3'.padEnd(25)} | B/A  |`,
        `|${'-'.repeat(58)}|${'-'.repeat(16)}|${'-'.repeat(27)}|------|`,
        ...lines.map(([f, x, y, r]) => `| ${f.padEnd(56)} | ${x.padEnd(14)} | ${y.padEnd(25)} | ${r.padEnd(4)} |`),
        '',
        `  ${perInstance}`,
        `  median seconds from power-on to the end of each step — A: ${stepLine(bA)}; B: ${stepLine(bB)}`,
        `  whole bench ${((Date.now() - t0) / 1000).toFixed(0)} s`,
        '',
      ].join('\n'),
    );
  } finally {
    await cleanup();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    agent.destroy();
  }
}

await main();
