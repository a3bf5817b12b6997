/**
 * `npm run bench:tftp`: racksmith's TFTP against tftpd-hpa, atftpd and dnsmasq, in the same run,
 * on the same veth between two namespaces, with the same clients:
 *
 *   1. one 30 MiB file, blksize 1468, lockstep          (atftp --option "blksize 1468")
 *   2. the same with windowsize 8                        (atftp --option "windowsize 8")
 *   3. 50 concurrent 1 MiB downloads from one process    (curl --parallel, --tftp-blksize 1468)
 *   4. 2 and 3 again through a user-space relay adding 1 ms towards the server
 *
 * Every server listens on port 69 of its own address on the same veth, all at once, and the runs
 * are interleaved (server by server within each round), so that a noisy moment on the shared
 * machine does not land on one server only; each figure is the median of the rounds. Prints MB/s and racksmith's ratio to
 * each peer; the goals of issue 4 are checked and printed, not asserted (a benchmark, not a test).
 * A fifth row, `ceiling` (bench/lib/tftp-ceiling.c, compiled here with cc), is no TFTP server: the
 * least a C program can do to send a file in windows (sendmmsg per window, mapped file), run
 * for the single-transfer rows only. It shows what this bed allows any server.
 * atftpd conflicts with tftpd-hpa as a Debian package, so it is fetched with `apt-get download`
 * and unpacked into a cache outside the clone. Run it alone on the machine: the npm script takes
 * the machine-wide lock.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { PACKAGE_ROOT } from '../server/lib/paths.js';
import { stopChild } from '../test/lib/child.js';
import { Testbed } from '../test/lib/netns.js';
import { cpuBusy, cpuSample, formatBusy } from './lib/cpu.js';
import { startRacksmith } from '../test/lib/racksmith.js';
import { RELAY_SCRIPT, patternBytes } from '../test/lib/tftp-bed.js';
import { requirements } from '../test/lib/tools.js';

const CLIENT = '10.77.0.2';
const ADDRESSES: Record<string, string> = { racksmith: '10.77.0.1', 'tftpd-hpa': '10.77.0.3', atftpd: '10.77.0.4', dnsmasq: '10.77.0.5', ceiling: '10.77.0.6' };
/** Not a peer: the bed's ceiling (see the header); not in the ratios against peers. */
const CEILING = 'ceiling';
const addressOf = (server: string): string => ADDRESSES[server] ?? '10.77.0.1';
const CACHE = process.env['RACKSMITH_BENCH_CACHE'] ?? '/var/cache/racksmith-bench';
const RUNS = Number(process.env['BENCH_RUNS'] ?? 3);
const BIG = 30 << 20;
const SMALL = 1 << 20;
const PARALLEL = 50;
/**
 * Servers on CPU 0 and clients on CPU 1 (BENCH_TFTP_PIN=0 turns it off), so that no server
 * competes with the client that measures it; the delay relay is left to the scheduler.
 */
const PIN = process.env['BENCH_TFTP_PIN'] !== '0';
const SERVER_CPU = PIN ? ['taskset', '-c', '0'] : [];
const pinned = (cpu: string, cmd: string, args: string[]): [string, string[]] => (PIN ? ['taskset', ['-c', cpu, cmd, ...args]] : [cmd, args]);

function atftpdBinary(): string {
  const bin = join(CACHE, 'atftpd', 'usr', 'sbin', 'atftpd');
  if (existsSync(bin)) return bin;
  mkdirSync(CACHE, { recursive: true });
  execFileSync('apt-get', ['download', 'atftpd'], { cwd: CACHE, stdio: 'ignore' });
  const deb = readdirSync(CACHE).find((f) => /^atftpd_.*\.deb$/.test(f));
  if (!deb) throw new Error(`apt-get download atftpd left no .deb in ${CACHE}`);
  execFileSync('dpkg', ['-x', join(CACHE, deb), join(CACHE, 'atftpd')]);
  return bin;
}

interface Run {
  readonly mbps: number;
  /** Percent busy per CPU during the run. */
  readonly busy: readonly number[];
}

/** Compiles the ceiling sender into the cache (again when its source is newer). */
function ceilingBinary(): string {
  const source = join(PACKAGE_ROOT, 'bench', 'lib', 'tftp-ceiling.c');
  const bin = join(CACHE, 'tftp-ceiling');
  if (!existsSync(bin) || statSync(bin).mtimeMs < statSync(source).mtimeMs) {
    mkdirSync(CACHE, { recursive: true });
    execFileSync('cc', ['-O2', '-Wall', '-o', bin, source], { stdio: 'inherit' });
  }
  return bin;
}

interface Server {
  readonly name: string;
  start(): Promise<() => Promise<void>>;
}

async function main(): Promise<void> {
  const missing = requirements(['in.tftpd', 'dnsmasq', 'atftp', 'curl', 'apt-get', 'dpkg', 'cc'], { netns: true });
  if (missing) {
    process.stdout.write(`bench:tftp cannot run here: ${missing}\n`);
    process.exitCode = 1;
    return;
  }
  const atftpd = atftpdBinary();
  const ceiling = ceilingBinary();
  const tb = new Testbed('tb');
  const dir = mkdtempSync(join(tmpdir(), 'racksmith-bench-tftp-'));
  const root = join(dir, 'root');
  const out = join(dir, 'out');
  mkdirSync(root);
  mkdirSync(out);
  chmodSync(dir, 0o755);
  chmodSync(root, 0o755);
  writeFileSync(join(root, 'f30m.bin'), patternBytes(BIG, 30));
  writeFileSync(join(root, 'f1m.bin'), patternBytes(SMALL, 1));
  try {
    const srv = await tb.addNamespace('s');
    const cli = await tb.addNamespace('c');
    await tb.veth(srv, 'sv', cli, 'cv', `${addressOf('racksmith')}/24`, `${CLIENT}/24`);
    for (const a of Object.values(ADDRESSES).slice(1)) await tb.ip(srv, ['addr', 'add', `${a}/24`, 'dev', tb.name('sv')]);

    const spawnServer = (cmd: string, args: string[]) => async () => {
      const child = tb.spawn(srv, ...pinned('0', cmd, args));
      return () => stopChild(child);
    };
    const servers: Server[] = [
      {
        name: 'racksmith',
        async start() {
          const rs = await startRacksmith({
            netns: srv,
            wrap: SERVER_CPU,
            env: { RACKSMITH_TFTP_PORT: '69', RACKSMITH_TFTP_ADDRESS: addressOf('racksmith'), RACKSMITH_TFTP_ROOT: root, RACKSMITH_TFTP_MAX_CLIENT_TRANSFERS: '64', RACKSMITH_LOG_LEVEL: 'warn' },
          });
          return async () => {
            await rs.stop();
            rs.cleanup();
          };
        },
      },
      { name: 'tftpd-hpa', start: spawnServer('in.tftpd', ['-L', '-a', `${addressOf('tftpd-hpa')}:69`, '-u', 'root', '-s', root]) },
      { name: 'atftpd', start: spawnServer(atftpd, ['--daemon', '--no-fork', '--port', '69', '--bind-address', addressOf('atftpd'), '--user', 'root.root', '--logfile', '/dev/null', '--maxthread', '200', root]) },
      {
        name: 'dnsmasq',
        start: spawnServer('dnsmasq', ['--no-daemon', '--port=0', '--conf-file=/dev/null', '--no-resolv', '--no-hosts', '--user=root', '--enable-tftp', `--tftp-root=${root}`, `--listen-address=${addressOf('dnsmasq')}`, '--bind-interfaces', '--tftp-max=200', '--quiet-tftp']),
      },
      { name: CEILING, start: spawnServer(ceiling, [addressOf(CEILING), root, '1']) },
    ];

    /** MB/s of one client run, and how busy each CPU was meanwhile. */
    const clientRun = async (cmd: string, args: string[], bytes: number, check: () => number): Promise<Run> => {
      const c0 = cpuSample();
      const t0 = performance.now();
      await tb.exec(cli, ...pinned('1', cmd, args), { timeoutMs: 300_000 });
      const seconds = (performance.now() - t0) / 1000;
      const busy = cpuBusy(c0, cpuSample());
      const got = check();
      if (got !== bytes) throw new Error(`${cmd} received ${got} bytes, expected ${bytes}`);
      return { mbps: bytes / 1e6 / seconds, busy };
    };
    const big = (port: number, window: boolean) => (host: string) => {
      const dest = join(out, 'big.bin');
      rmSync(dest, { force: true });
      const opts = ['--option', 'blksize 1468', ...(window ? ['--option', 'windowsize 8'] : [])];
      return clientRun('atftp', [...opts, '-g', '-r', 'f30m.bin', '-l', dest, host, String(port)], BIG, () => statSync(dest).size);
    };
    const parallel = (port: number) => (host: string) => {
      const args = ['-sS', '--fail', '--parallel', '--parallel-immediate', '--parallel-max', String(PARALLEL), '--tftp-blksize', '1468'];
      for (let i = 0; i < PARALLEL; i++) args.push('-o', join(out, `p${i}.bin`), `tftp://${host}:${port}/f1m.bin`);
      for (let i = 0; i < PARALLEL; i++) rmSync(join(out, `p${i}.bin`), { force: true });
      return clientRun('curl', args, PARALLEL * SMALL, () => Array.from({ length: PARALLEL }, (_, i) => statSync(join(out, `p${i}.bin`)).size).reduce((a, b) => a + b, 0));
    };
    /** `single`: one transfer at a time, the rows the ceiling runs. */
    const scenarios: { name: string; run: (host: string) => Promise<Run>; runs: number; single?: boolean }[] = [
      { name: '30 MiB, blksize 1468', run: big(69, false), runs: RUNS, single: true },
      { name: '30 MiB, blksize 1468, windowsize 8', run: big(69, true), runs: RUNS, single: true },
      { name: `${PARALLEL} × 1 MiB at once, one client`, run: parallel(69), runs: RUNS },
      { name: '+1 ms: 30 MiB, windowsize 8', run: big(6969, true), runs: 1, single: true },
      { name: `+1 ms: ${PARALLEL} × 1 MiB at once`, run: parallel(6969), runs: 1 },
    ];

    const stops: (() => Promise<void>)[] = [];
    const results = new Map<string, Map<string, number>>();
    const busyAt = new Map<string, Map<string, readonly number[]>>();
    try {
      for (const server of servers) {
        stops.push(await server.start());
        const host = addressOf(server.name);
        const relay = tb.spawn(srv, process.execPath, [RELAY_SCRIPT, '--listen', `${host}:6969`, '--target', `${host}:69`, '--delay-ms', '1', '--delay-to', 'server']);
        stops.push(() => stopChild(relay));
        // Ready when a download works.
        for (let i = 0; ; i++) {
          try {
            await tb.exec(cli, 'curl', ['-sS', '--fail', '-m', '2', '-o', '/dev/null', `tftp://${host}/f1m.bin`], { timeoutMs: 5000 });
            break;
          } catch (err) {
            if (i > 30) throw err;
            await new Promise((r) => setTimeout(r, 300));
          }
        }
        results.set(server.name, new Map());
        busyAt.set(server.name, new Map());
      }
      for (const s of scenarios) {
        const runners = servers.filter((sv) => sv.name !== CEILING || s.single);
        const figures = new Map<string, Run[]>(runners.map((sv) => [sv.name, []]));
        for (let r = 0; r < s.runs; r++) {
          for (const server of runners) figures.get(server.name)?.push(await s.run(addressOf(server.name)));
        }
        for (const server of runners) {
          const f = (figures.get(server.name) ?? []).sort((a, b) => a.mbps - b.mbps);
          const median = f[Math.floor(f.length / 2)] ?? { mbps: 0, busy: [] };
          results.get(server.name)?.set(s.name, median.mbps);
          busyAt.get(server.name)?.set(s.name, median.busy);
          const busy = PIN ? `  ${formatBusy(median.busy)}` : '';
          process.stdout.write(`  ${server.name.padEnd(10)} ${s.name.padEnd(36)} ${median.mbps.toFixed(1).padStart(7)} MB/s  (${f.map((x) => x.mbps.toFixed(1)).join(', ')})${busy}\n`);
        }
      }
    } finally {
      for (const stop of stops.reverse()) await stop();
    }

    const ours = results.get('racksmith') as Map<string, number>;
    const peers = servers.map((s) => s.name).filter((n) => n !== 'racksmith' && n !== CEILING);
    process.stdout.write(`\nMB/s (median of ${RUNS}; the +1 ms rows: one run; ${PIN ? 'servers on CPU 0, clients on CPU 1' : 'unpinned'}), and racksmith ÷ peer\n\n`);
    process.stdout.write(`| scenario | racksmith | ${peers.map((p) => `${p} | ×`).join(' | ')} |\n|---|---|${peers.map(() => '---|---').join('|')}|\n`);
    for (const s of scenarios) {
      const mine = ours.get(s.name) ?? 0;
      const cells = peers.map((p) => {
        const v = results.get(p)?.get(s.name) ?? 0;
        return `${v.toFixed(1)} | ${(mine / v).toFixed(2)}`;
      });
      process.stdout.write(`| ${s.name} | ${mine.toFixed(1)} | ${cells.join(' | ')} |\n`);
    }
    if (PIN) {
      // Which side bounds each figure: see bench/lib/cpu.ts.
      process.stdout.write(`\nCPU busy during the median run, server CPU / client CPU (%)\n\n| scenario | ${servers.map((s) => s.name).join(' | ')} |\n|---|${servers.map(() => '---').join('|')}|\n`);
      for (const s of scenarios) {
        const cells = servers.map((sv) => {
          const b = busyAt.get(sv.name)?.get(s.name);
          return b ? `${Math.round(b[0] ?? 0)} / ${Math.round(b[1] ?? 0)}` : '–';
        });
        process.stdout.write(`| ${s.name} | ${cells.join(' | ')} |\n`);
      }
    }
    const get = (server: string, scenario: string): number => results.get(server)?.get(scenario) ?? 0;
    const bestWindowedPeer = Math.max(...peers.map((p) => get(p, scenarios[1]?.name ?? '')));
    const goals: [string, number, number][] = [
      ['windowed 30 MiB ÷ best peer', get('racksmith', scenarios[1]?.name ?? '') / bestWindowedPeer, 1.5],
      ['+1 ms windowed ÷ tftpd-hpa', get('racksmith', scenarios[3]?.name ?? '') / get('tftpd-hpa', scenarios[3]?.name ?? ''), 3],
      [`${PARALLEL} at once ÷ dnsmasq`, get('racksmith', scenarios[2]?.name ?? '') / get('dnsmasq', scenarios[2]?.name ?? ''), 1.5],
    ];
    process.stdout.write('\nGoals (issue 4)\n');
    for (const [name, ratio, goal] of goals) process.stdout.write(`  ${name.padEnd(30)} ${ratio.toFixed(2)} × (goal ≥ ${goal}) ${ratio >= goal ? 'met' : 'NOT met'}\n`);
    // What the bed allows any server: the ceiling sender against the best peer.
    process.stdout.write(`\nThe bed's ceiling (${CEILING}: a minimal C sender, one sendmmsg per window)\n`);
    for (const s of scenarios.filter((x) => x.single)) {
      const top = Math.max(...peers.map((p) => get(p, s.name)));
      const c = get(CEILING, s.name);
      process.stdout.write(`  ${s.name.padEnd(36)} ${c.toFixed(1).padStart(7)} MB/s = ${(c / top).toFixed(2)} × the best peer; racksmith ${(get('racksmith', s.name) / c).toFixed(2)} × the ceiling\n`);
    }
  } finally {
    await tb.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
