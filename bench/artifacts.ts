/**
 * `npm run bench:artifacts`: the machine-facing HTTP paths that carry a rack's boot traffic,
 * racksmith against nginx in the same run.
 *
 *   1. 50 parallel downloads of a 30 MiB artifact (wrk -c50): MB/s and server CPU seconds per GB
 *      of racksmith alone (the default: one process, nothing to install), of racksmith running
 *      its own nginx (`artifacts-nginx-port`: one service, nginx its child), of racksmith behind
 *      an nginx front started apart (packaging/nginx/racksmith-artifacts.conf.template: racksmith
 *      decides and records, nginx sends the bytes named in X-Accel-Redirect), of nginx alone serving the
 *      file (sendfile on, and off: what a server that copies through user space gets).
 *   2. `/boot.ipxe` at 64 connections over 150 machines (a third waiting for a role, a third
 *      installing, a third booting from disk): req/s, p50, p99, against nginx serving the same
 *      scripts as static files.
 *
 * Servers (racksmith and every nginx started here, one worker process each; racksmith's own
 * nginx has nginx's `auto`, two workers, on the same CPU) run on CPU 0 and wrk on CPU 1
 * (BENCH_PIN=0: unpinned), so no server competes with the client that measures it; the servers
 * take turns within each round, so a noisy moment on a shared machine does not land on one
 * server only, and each figure is the median over the rounds. BENCH_BASELINE_CLI=<another
 * build's dist/server/cli.js> adds that build (e.g. main before a change) as one more server;
 * BENCH_WORKERS=1,4 adds racksmith with other `artifact-workers` counts; BENCH_FLOOR_CHUNKS
 * (65536,1048576) sets the read sizes of the Node floor — a bare node:http server piping the
 * file, what any Node process pays per byte before racksmith does anything.
 * racksmith logs at its default level (info), as an operator runs it. Run it alone: the npm
 * script takes the machine-wide lock. Environment: BENCH_ROUNDS (5), BENCH_SECONDS (5),
 * BENCH_WARMUP_SECONDS (3: unrecorded load on each server before the first round),
 * BENCH_PARTS (artifacts,boot,both: which measurements to run; all by default), BENCH_LOG_LEVEL
 * (info), BENCH_NODE_OPTIONS (given to every racksmith measured, e.g. `--trace-gc` or `--import`
 * of a profiler: Node refuses `--cpu-prof` there).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { DEFAULT_INSTALLERS } from '../server/boot/releases.js';
import { api, freePort, startRacksmith, type RacksmithProcess } from '../test/lib/racksmith.js';
import { artifactsFrontConfig, startNginx, type Nginx } from '../test/lib/nginx.js';
import { requirements } from '../test/lib/tools.js';
import { stopChild, untilOutput } from '../test/lib/child.js';
import { serverNodeOptions } from './lib/node-options.js';

const run = promisify(execFile);
const ROUNDS = Math.max(1, Number(process.env['BENCH_ROUNDS'] ?? 5));
const SECONDS = Math.max(1, Number(process.env['BENCH_SECONDS'] ?? 5));
/** Every server's first seconds (JIT, caches) are not a round: each gets this much load, unrecorded, first. */
const WARMUP_SECONDS = Math.max(0, Number(process.env['BENCH_WARMUP_SECONDS'] ?? 3));
const PIN = process.env['BENCH_PIN'] !== '0';
const BASELINE = process.env['BENCH_BASELINE_CLI'];
/** More racksmith processes with other worker counts (the default, 2, is always measured). */
const WORKER_COUNTS = (process.env['BENCH_WORKERS'] ?? '').split(',').filter(Boolean).map(Number).filter((n) => Number.isInteger(n) && n > 0 && n !== 2);
/** Read sizes for the Node floor: a bare node:http server piping the file, nothing else. */
/** racksmith's log level: info, as an operator runs it (every request logged). */
const LOG_LEVEL = process.env['BENCH_LOG_LEVEL'] ?? 'info';
const SERVER_ENV = { RACKSMITH_LOG_LEVEL: LOG_LEVEL, ...serverNodeOptions };
const PARTS = new Set((process.env['BENCH_PARTS'] ?? 'artifacts,boot,both').split(',').map((p) => p.trim()));
const FLOOR_CHUNKS = (process.env['BENCH_FLOOR_CHUNKS'] ?? '65536,1048576').split(',').filter(Boolean).map(Number);
const SERVER_CPU = PIN ? ['taskset', '-c', '0'] : [];
const CLIENT_CPU = PIN ? ['taskset', '-c', '1'] : [];
const ARTIFACT_BYTES = 30 << 20;
const DOWNLOADS = 50;
const BOOT_CONNECTIONS = 64;
const PER_KIND = 50;
const RELEASE = '22.04';
const ISO = DEFAULT_INSTALLERS[RELEASE].iso ?? 'live-server.iso';

interface Load {
  readonly rps: number;
  readonly mbps: number;
  readonly p50ms: number;
  readonly p99ms: number;
  readonly errors: number;
  /** Server CPU seconds (user + system, every process of the server) per GB sent. */
  readonly cpuPerGb: number;
}

const UNIT: Record<string, number> = { B: 1, KB: 1024, MB: 1024 ** 2, GB: 1024 ** 3, TB: 1024 ** 4 };

function ms(text: string): number {
  const m = /^([\d.]+)(us|ms|s|m)$/.exec(text.trim());
  if (!m) return Number.NaN;
  const v = Number(m[1]);
  return m[2] === 'us' ? v / 1000 : m[2] === 's' ? v * 1000 : m[2] === 'm' ? v * 60_000 : v;
}

/** CPU ticks (user + system) of a process and all its descendants, from /proc. */
function treeTicks(pid: number): number {
  const parents = new Map<number, number[]>();
  const ticks = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const ppid = Number(f[1]);
      parents.set(ppid, [...(parents.get(ppid) ?? []), Number(entry)]);
      ticks.set(Number(entry), Number(f[11]) + Number(f[12]));
    } catch {
      /* gone meanwhile */
    }
  }
  let sum = 0;
  const todo = [pid];
  while (todo.length) {
    const p = todo.pop() as number;
    sum += ticks.get(p) ?? 0;
    todo.push(...(parents.get(p) ?? []));
  }
  return sum;
}

async function wrk(url: string, connections: number, serverPid: number, script?: string, seconds = SECONDS): Promise<Load> {
  const argv = [...CLIENT_CPU, 'wrk', '-t1', `-c${connections}`, `-d${seconds}s`, '--latency', '--timeout', '30s', ...(script ? ['-s', script] : []), url];
  const before = treeTicks(serverPid);
  const { stdout } = await run(argv[0] as string, argv.slice(1), { maxBuffer: 1 << 20 });
  const cpuSeconds = (treeTicks(serverPid) - before) / 100;
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(stdout)?.[1]);
  const read = /requests in ([\d.]+)(\w+), ([\d.]+)(\w+) read/.exec(stdout);
  const took = read ? ms(`${read[1]}${read[2]}`) / 1000 : seconds;
  const bytes = read ? Number(read[3]) * (UNIT[read[4] ?? 'B'] ?? 1) : 0;
  const p50 = ms(/^\s+50%\s+(\S+)/m.exec(stdout)?.[1] ?? '');
  const p99 = ms(/^\s+99%\s+(\S+)/m.exec(stdout)?.[1] ?? '');
  const non2xx = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(stdout)?.[1] ?? 0);
  const socketErrors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(stdout);
  const errors = non2xx + (socketErrors ? socketErrors.slice(1).reduce((a, b) => a + Number(b), 0) : 0);
  if (!Number.isFinite(rps) || !read) throw new Error(`cannot read wrk's output:\n${stdout}`);
  return { rps, mbps: bytes / took / 1e6, p50ms: p50, p99ms: p99, errors, cpuPerGb: bytes > 0 ? cpuSeconds / (bytes / 1e9) : Number.NaN };
}

function median(xs: readonly number[]): number {
  const s = [...xs].filter(Number.isFinite).sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

function machinesCsv(): { csv: string; macs: Record<'wait' | 'install' | 'local', string[]> } {
  const lines = ['mac,hostname,role,cluster,ip,rack,bmc_address,bmc_username,bmc_password'];
  const macs: Record<'wait' | 'install' | 'local', string[]> = { wait: [], install: [], local: [] };
  for (let i = 0; i < PER_KIND * 3; i++) {
    const mac = `52:54:20:00:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`;
    const kind = (['wait', 'install', 'local'] as const)[i % 3] as 'wait' | 'install' | 'local';
    macs[kind].push(mac);
    // Machines waiting for a role are not in the inventory: they become `discovered` on their first request.
    if (kind !== 'wait') lines.push(`${mac},node-${i},worker,bench,,r${i % 4},,,`);
  }
  return { csv: lines.join('\n') + '\n', macs };
}

const hyphen = (mac: string): string => mac.replace(/:/g, '-');

/** Puts the inventory in the bench's shape and returns each machine's script as racksmith serves it. */
async function prepare(rs: RacksmithProcess, macs: Record<'wait' | 'install' | 'local', string[]>, csv: string): Promise<Map<string, string>> {
  const admin = (await rs.cli(['token', 'create', '--role', 'admin'])).trim();
  const c = await api(rs.url, admin, 'POST', '/api/v1/clusters', { name: 'bench', ubuntuRelease: RELEASE, kubernetesVersion: '1.28.4', containerRuntime: 'containerd', cni: 'calico' });
  if (c.status !== 201) throw new Error(c.text);
  const imported = await api(rs.url, admin, 'POST', '/api/v1/machines/import', csv, 'text/csv');
  if (imported.status !== 201) throw new Error(imported.text.slice(0, 500));
  const scripts = new Map<string, string>();
  const script = async (mac: string): Promise<string> => {
    const r = await fetch(`${rs.url}/boot.ipxe?mac=${hyphen(mac)}&arch=x86_64&platform=efi`);
    if (!r.ok) throw new Error(`boot.ipxe for ${mac}: ${r.status}`);
    return r.text();
  };
  for (const mac of macs.local) {
    // Installed: the installer's report moves it on, and from then on it boots from disk.
    const s = await script(mac);
    const seed = /s=(http:\/\/\S+?\/seed\/[A-Za-z0-9_-]+\/)/.exec(s)?.[1];
    if (!seed) throw new Error(`no seed URL in the install script of ${mac}`);
    const r = await fetch(`${seed}installed`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: '' });
    if (!r.ok) throw new Error(`installed for ${mac}: ${r.status} ${await r.text()}`);
  }
  for (const mac of [...macs.wait, ...macs.install, ...macs.local]) scripts.set(mac, await script(mac));
  return scripts;
}

async function main(): Promise<void> {
  const missing = requirements(['wrk', 'nginx', ...(PIN ? ['taskset'] : [])]);
  if (missing) throw new Error(`bench:artifacts needs ${missing}`);
  const work = mkdtempSync(join(tmpdir(), 'racksmith-bench-artifacts-'));
  chmodSync(work, 0o755); // nginx's workers run as nobody
  const artifacts = join(work, 'artifacts');
  mkdirSync(join(artifacts, RELEASE), { recursive: true });
  const payload = Buffer.alloc(ARTIFACT_BYTES);
  for (let i = 0; i < payload.length; i += 4) payload.writeUInt32LE((i * 2654435761) >>> 0, i);
  writeFileSync(join(artifacts, RELEASE, ISO), payload);
  const www = join(work, 'www');
  mkdirSync(join(www, 'boot'), { recursive: true });
  mkdirSync(join(www, 'artifacts', RELEASE), { recursive: true });
  writeFileSync(join(www, 'artifacts', RELEASE, ISO), payload);

  const { csv, macs } = machinesCsv();
  const started: { stop(): Promise<unknown> }[] = [];
  const cleanups: (() => void)[] = [];
  try {
    const ours = await startRacksmith({ wrap: SERVER_CPU, env: { ...SERVER_ENV, RACKSMITH_ARTIFACTS_DIR: artifacts, RACKSMITH_ARTIFACTS_FRONTS: '127.0.0.1' } });
    started.push(ours);
    cleanups.push(() => ours.cleanup());
    const scripts = await prepare(ours, macs, csv);
    // The same build with the file workers off: the main process sends the bytes itself.
    const single = await startRacksmith({ wrap: SERVER_CPU, env: { ...SERVER_ENV, RACKSMITH_ARTIFACTS_DIR: artifacts, RACKSMITH_ARTIFACT_WORKERS: '0' } });
    started.push(single);
    cleanups.push(() => single.cleanup());
    await prepare(single, macs, csv);
    // racksmith running its own nginx front (artifacts-nginx-port): one service, nginx its child.
    const ownFrontPort = await freePort();
    const own = await startRacksmith({ wrap: SERVER_CPU, env: { ...SERVER_ENV, RACKSMITH_ARTIFACTS_DIR: artifacts, RACKSMITH_ARTIFACTS_NGINX_PORT: String(ownFrontPort) } });
    started.push(own);
    cleanups.push(() => own.cleanup());
    await prepare(own, macs, csv);
    const others: { workers: number; rs: RacksmithProcess }[] = [];
    for (const workers of WORKER_COUNTS) {
      const rs = await startRacksmith({ wrap: SERVER_CPU, env: { ...SERVER_ENV, RACKSMITH_ARTIFACTS_DIR: artifacts, RACKSMITH_ARTIFACT_WORKERS: String(workers) } });
      started.push(rs);
      cleanups.push(() => rs.cleanup());
      await prepare(rs, macs, csv);
      others.push({ workers, rs });
    }
    const floors: { chunk: number; port: number; child: ChildProcess }[] = [];
    for (const chunk of FLOOR_CHUNKS) {
      const port = await freePort();
      const file = join(artifacts, RELEASE, ISO);
      const code = `const fs=require('fs');const size=fs.statSync(${JSON.stringify(file)}).size;require('http').createServer((q,r)=>{r.writeHead(200,{'content-type':'application/octet-stream','content-length':size});fs.createReadStream(${JSON.stringify(file)},{highWaterMark:${chunk}}).pipe(r)}).listen(${port},'127.0.0.1',()=>console.log('ready'))`;
      const argv = [...SERVER_CPU, process.execPath, '-e', code];
      const child = spawn(argv[0] as string, argv.slice(1), { stdio: ['ignore', 'pipe', 'inherit'] });
      await untilOutput(child, 'ready', 'the Node floor');
      started.push({ stop: () => stopChild(child) });
      floors.push({ chunk, port, child });
    }
    let base: RacksmithProcess | null = null;
    if (BASELINE) {
      base = await startRacksmith({ cliPath: BASELINE, wrap: SERVER_CPU, env: { ...SERVER_ENV, RACKSMITH_ARTIFACTS_DIR: artifacts } });
      started.push(base);
      const b = base;
      cleanups.push(() => b.cleanup());
      await prepare(base, macs, csv);
    }
    for (const [mac, s] of scripts) writeFileSync(join(www, 'boot', `${hyphen(mac)}.ipxe`), s);

    const staticPort = await freePort();
    const plainPort = await freePort();
    const frontPort = await freePort();
    const staticServer = (port: number, sendfile: 'on' | 'off'): string => `
  server {
    listen 127.0.0.1:${port};
    root ${www};
    sendfile ${sendfile};
    tcp_nopush on;
    location = /boot.ipxe { default_type text/plain; try_files /boot/$arg_mac.ipxe =404; }
  }`;
    const nginx: Nginx = await startNginx({ dir: join(work, 'nginx'), wrap: SERVER_CPU, servers: staticServer(staticPort, 'on'), readyUrl: `http://127.0.0.1:${staticPort}/` });
    started.push(nginx);
    const plain: Nginx = await startNginx({ dir: join(work, 'nginx-plain'), wrap: SERVER_CPU, servers: staticServer(plainPort, 'off'), readyUrl: `http://127.0.0.1:${plainPort}/` });
    started.push(plain);
    const oursPort = new URL(ours.url).port;
    const front: Nginx = await startNginx({
      dir: join(work, 'nginx-front'),
      wrap: SERVER_CPU,
      servers: artifactsFrontConfig({ ARTIFACTS_LISTEN: `127.0.0.1:${frontPort}`, RACKSMITH_UPSTREAM: `127.0.0.1:${oursPort}`, ARTIFACTS_DIR: artifacts, ARTIFACTS_CACHE_DIR: join(ours.dataDir, 'artifacts') }),
      readyUrl: `http://127.0.0.1:${frontPort}/`,
    });
    started.push(front);

    const mac = hyphen(macs.install[0] as string);
    const artifactPath = `/artifacts/${RELEASE}/${ISO}?mac=${mac}`;
    const check = async (url: string): Promise<void> => {
      const r = await fetch(url);
      const body = Buffer.from(await r.arrayBuffer());
      if (r.status !== 200 || !body.equals(payload)) throw new Error(`${url}: ${r.status}, ${body.length} bytes, not the artifact`);
    };
    // Racksmith and nginx share CPU 0: racksmith's own share of a front run is in its CPU figure.
    type Side = { name: string; url: string; pids: number[] };
    const artifactSides: Side[] = [
      { name: 'racksmith', url: `${ours.url}${artifactPath}`, pids: [ours.child.pid as number] },
      ...others.map((o) => ({ name: `racksmith, ${o.workers} worker${o.workers > 1 ? 's' : ''}`, url: `${o.rs.url}${artifactPath}`, pids: [o.rs.child.pid as number] })),
      { name: 'racksmith, workers off', url: `${single.url}${artifactPath}`, pids: [single.child.pid as number] },
      ...(base ? [{ name: 'baseline racksmith', url: `${base.url}${artifactPath}`, pids: [base.child.pid as number] }] : []),
      ...floors.map((f) => ({ name: `Node floor, ${f.chunk >> 10} KiB reads`, url: `http://127.0.0.1:${f.port}/`, pids: [f.child.pid as number] })),
      { name: 'racksmith, its own nginx', url: `http://127.0.0.1:${ownFrontPort}${artifactPath}`, pids: [own.child.pid as number] },
      { name: 'racksmith + nginx front', url: `http://127.0.0.1:${frontPort}${artifactPath}`, pids: [front.child.pid as number, ours.child.pid as number] },
      { name: 'nginx alone', url: `http://127.0.0.1:${staticPort}/artifacts/${RELEASE}/${ISO}`, pids: [nginx.child.pid as number] },
      { name: 'nginx, sendfile off', url: `http://127.0.0.1:${plainPort}/artifacts/${RELEASE}/${ISO}`, pids: [plain.child.pid as number] },
    ];
    for (const s of artifactSides) await check(s.url);

    const lua = join(work, 'boot.lua');
    const all = [...macs.wait, ...macs.install, ...macs.local].map(hyphen);
    writeFileSync(
      lua,
      `local macs = {${all.map((m) => `"${m}"`).join(',')}}
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", "/boot.ipxe?mac=" .. macs[(i % #macs) + 1] .. "&arch=x86_64&platform=efi")
end
`,
    );
    const bootSides: Side[] = [
      { name: 'racksmith', url: ours.url, pids: [ours.child.pid as number] },
      ...(base ? [{ name: 'baseline racksmith', url: base.url, pids: [base.child.pid as number] }] : []),
      { name: 'nginx (static files)', url: `http://127.0.0.1:${staticPort}`, pids: [nginx.child.pid as number] },
    ];

    const results = new Map<string, Load[]>();
    const record = (key: string, l: Load): void => {
      results.set(key, [...(results.get(key) ?? []), l]);
    };
    const cpuOf = async (s: Side, connections: number, url: string, script?: string): Promise<Load> => {
      // CPU of every process on the server side of this run (the front and racksmith behind it).
      const extra = s.pids.slice(1).map(treeTicks);
      const l = await wrk(url, connections, s.pids[0] as number, script);
      const extraSeconds = s.pids.slice(1).reduce((sum, p, i) => sum + (treeTicks(p) - (extra[i] ?? 0)) / 100, 0);
      const gb = (l.mbps * SECONDS) / 1000;
      return gb > 0 && extraSeconds > 0 ? { ...l, cpuPerGb: l.cpuPerGb + extraSeconds / gb } : l;
    };
    if (WARMUP_SECONDS > 0) {
      for (const s of PARTS.has('artifacts') ? artifactSides : []) await wrk(s.url, DOWNLOADS, s.pids[0] as number, undefined, WARMUP_SECONDS);
      for (const s of PARTS.has('boot') ? bootSides : []) await wrk(`${s.url}/boot.ipxe`, BOOT_CONNECTIONS, s.pids[0] as number, lua, WARMUP_SECONDS);
    }
    // Each round starts with the next server: the one measured first in a round had the higher
    // p99 in three runs of three builds, whichever build it was (docs/artifacts.md).
    const turn = <T>(xs: readonly T[], round: number): T[] => xs.map((_, i) => xs[(i + round - 1) % xs.length] as T);
    for (let round = 1; round <= ROUNDS; round++) {
      for (const s of PARTS.has('artifacts') ? turn(artifactSides, round) : []) {
        const l = await cpuOf(s, DOWNLOADS, s.url);
        record(`artifact ${s.name}`, l);
        process.stdout.write(`  round ${round} artifacts ${s.name.padEnd(24)} ${l.mbps.toFixed(0).padStart(6)} MB/s  ${l.cpuPerGb.toFixed(2)} CPU s/GB${l.errors ? `  errors ${l.errors}` : ''}\n`);
      }
      for (const s of PARTS.has('boot') ? turn(bootSides, round) : []) {
        const l = await cpuOf(s, BOOT_CONNECTIONS, `${s.url}/boot.ipxe`, lua);
        record(`boot ${s.name}`, l);
        process.stdout.write(`  round ${round} boot.ipxe ${s.name.padEnd(24)} ${l.rps.toFixed(0).padStart(6)} req/s  p50 ${l.p50ms.toFixed(1)} ms  p99 ${l.p99ms.toFixed(1)} ms${l.errors ? `  errors ${l.errors}` : ''}\n`);
      }
    }

    // Boot scripts while a rack downloads: does sending the bytes slow the decisions down?
    const underLoad: Side[] = [
      { name: 'racksmith', url: ours.url, pids: [ours.child.pid as number] },
      { name: 'racksmith, workers off', url: single.url, pids: [single.child.pid as number] },
      ...(base ? [{ name: 'baseline racksmith', url: base.url, pids: [base.child.pid as number] }] : []),
    ];
    for (let round = 1; round <= (PARTS.has('both') ? ROUNDS : 0); round++) {
      for (const s of turn(underLoad, round)) {
        const [bytes, boot] = await Promise.all([wrk(`${s.url}${artifactPath}`, DOWNLOADS, s.pids[0] as number), wrk(`${s.url}/boot.ipxe`, BOOT_CONNECTIONS, s.pids[0] as number, lua)]);
        record(`loaded boot ${s.name}`, boot);
        record(`loaded artifact ${s.name}`, bytes);
        process.stdout.write(`  round ${round} both      ${s.name.padEnd(24)} ${bytes.mbps.toFixed(0).padStart(6)} MB/s  boot.ipxe ${boot.rps.toFixed(0)} req/s p99 ${boot.p99ms.toFixed(1)} ms\n`);
      }
    }

    const med = (key: string, f: (l: Load) => number): number => median((results.get(key) ?? []).map(f));
    const nginxMb = med('artifact nginx alone', (l) => l.mbps);
    const section = (part: string, ls: string[]): string[] => (PARTS.has(part) ? ls : []);
    const lines: string[] = [
      ...section('artifacts', [
      '',
      `Artifacts: ${DOWNLOADS} parallel downloads of a ${ARTIFACT_BYTES >> 20} MiB file (wrk -t1 -c${DOWNLOADS} -d${SECONDS}s), median of ${ROUNDS} interleaved rounds after ${WARMUP_SECONDS} s of unrecorded load on each server, ${PIN ? 'servers on CPU 0, wrk on CPU 1' : 'unpinned'}`,
      '',
      '| server | MB/s | ÷ nginx alone | server CPU s per GB | rounds (MB/s) |',
      '|---|---|---|---|---|',
      ...artifactSides.map((s) => {
        const key = `artifact ${s.name}`;
        const mb = med(key, (l) => l.mbps);
        return `| ${s.name} | ${mb.toFixed(0)} | ${(mb / nginxMb).toFixed(2)} | ${med(key, (l) => l.cpuPerGb).toFixed(2)} | ${(results.get(key) ?? []).map((l) => l.mbps.toFixed(0)).join(', ')} |`;
      }),
      ]),
      ...section('boot', [
      '',
      `/boot.ipxe: ${PER_KIND * 3} machines (waiting, installing, booting from disk), wrk -t1 -c${BOOT_CONNECTIONS} -d${SECONDS}s, median of ${ROUNDS}`,
      '',
      '| server | req/s | ÷ nginx | p50 ms | p99 ms | rounds (p99 ms) |',
      '|---|---|---|---|---|---|',
      ...bootSides.map((s) => {
        const key = `boot ${s.name}`;
        const rps = med(key, (l) => l.rps);
        return `| ${s.name} | ${rps.toFixed(0)} | ${(rps / med('boot nginx (static files)', (l) => l.rps)).toFixed(3)} | ${med(key, (l) => l.p50ms).toFixed(1)} | ${med(key, (l) => l.p99ms).toFixed(1)} | ${(results.get(key) ?? []).map((l) => l.p99ms.toFixed(0)).join(', ')} |`;
      }),
      ]),
      ...section('both', [
      '',
      `/boot.ipxe (as above) while ${DOWNLOADS} downloads run against the same racksmith, both wrk on CPU 1, median of ${ROUNDS}`,
      '',
      '| server | artifacts MB/s | boot.ipxe req/s | p50 ms | p99 ms | rounds (p99 ms) |',
      '|---|---|---|---|---|---|',
      ...underLoad.map((s) => {
        const key = `loaded boot ${s.name}`;
        return `| ${s.name} | ${med(`loaded artifact ${s.name}`, (l) => l.mbps).toFixed(0)} | ${med(key, (l) => l.rps).toFixed(0)} | ${med(key, (l) => l.p50ms).toFixed(1)} | ${med(key, (l) => l.p99ms).toFixed(1)} | ${(results.get(key) ?? []).map((l) => l.p99ms.toFixed(0)).join(', ')} |`;
      }),
      ]),
      '',
    ];
    const errors = [...results.entries()].filter(([, ls]) => ls.some((l) => l.errors > 0)).map(([k, ls]) => `${k}: ${ls.map((l) => l.errors).join(', ')}`);
    if (errors.length) lines.push(`errors (non-2xx or socket errors) per round: ${errors.join('; ')}`, '');
    process.stdout.write(lines.join('\n'));
  } finally {
    for (const s of started.reverse()) await s.stop().catch(() => undefined);
    for (const c of cleanups) c();
    rmSync(work, { recursive: true, force: true });
  }
}

await main();
