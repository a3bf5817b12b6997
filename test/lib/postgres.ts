import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, chmodSync, chownSync, closeSync, existsSync, mkdtempSync, openSync, readFileSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import pg from 'pg';
import { waitAtMost } from '../../server/lib/sleep.js';
import { running } from './child.js';
import { isRoot, requirements } from './tools.js';

/** Debian's PostgreSQL 15 (the `postgresql` package): binaries outside PATH. */
export const PG_BIN = '/usr/lib/postgresql/15/bin';

/** Why PostgreSQL tests cannot run here (null when they can); throws under CI. */
export function pgMissing(): string | null {
  return requirements([`${PG_BIN}/initdb`, `${PG_BIN}/postgres`, `${PG_BIN}/pg_ctl`]);
}

/**
 * A private PostgreSQL server for one test process: a fresh cluster in a temporary directory,
 * listening on loopback on a free port, trust authentication (nothing but this machine reaches
 * it). PostgreSQL refuses to run as root, so under root it runs as the `postgres` user.
 */
export interface TestPostgres {
  readonly port: number;
  readonly dir: string;
  /** A URL for a new, empty database of its own (each inventory gets one). */
  newDatabase(prefix?: string): Promise<string>;
  /** The same database through the server's Unix socket (reachable from this process wherever the server listens). */
  local(url: string): string;
  /** kill -9 of the server (a database failure); `start()` brings it back on the same port. */
  crash(): Promise<void>;
  start(): Promise<void>;
  stop(): Promise<void>;
}

let shared: Promise<TestPostgres> | null = null;

/** One server per test process, started on first use and stopped when the process exits. */
export function testPostgres(): Promise<TestPostgres> {
  shared ??= startPostgres();
  return shared;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      s.close(() => resolve(port));
    });
  });
}

/**
 * Where and how the server runs. By default on loopback of this machine's namespace; a lab puts
 * it in a namespace of its own (a site's database host) on an address there, and a benchmark adds
 * addresses its instances in other namespaces reach over a veth. The test process itself always
 * reaches it through its Unix socket when it runs in another namespace.
 */
export interface PostgresOptions {
  readonly netns?: string;
  /** Addresses to listen on besides loopback. */
  readonly listen?: readonly string[];
  /** Client networks (CIDR) trusted over TCP besides loopback. */
  readonly allow?: readonly string[];
  /** fsync as a production server does (default off: nothing in a test must survive an OS crash). */
  readonly fsync?: boolean;
  /** More server settings (`-c name=value`). */
  readonly settings?: Readonly<Record<string, string>>;
}

const INITDB_ARGS = ['-U', 'postgres', '--auth=trust', '--no-sync', '-E', 'UTF8', '--locale=C'];

/**
 * A freshly initialised cluster, made once per PostgreSQL build and copied for every server:
 * initdb takes 1–3 s of a busy core and a copy of its 40 MB a fraction of that, and a run on
 * both engines starts some sixty servers. Made aside and renamed into place, so suites starting
 * at once never copy a half-made one; in the temporary directory, which the `postgres` user can
 * reach (root's home it cannot).
 */
function initialisedCluster(run: (cmd: string, args: string[]) => string): string {
  const version = run(`${PG_BIN}/postgres`, ['--version']).trim();
  const key = createHash('sha256').update(`${version}\n${INITDB_ARGS.join(' ')}`).digest('hex').slice(0, 16);
  const template = join(tmpdir(), `racksmith-pg-cluster-${key}`);
  if (existsSync(join(template, 'PG_VERSION'))) return template;
  const making = mkdtempSync(`${template}.making-`);
  chmodSync(making, 0o700);
  try {
    if (isRoot()) chownSync(making, postgresUid('-u'), postgresUid('-g'));
    run(`${PG_BIN}/initdb`, ['-D', making, ...INITDB_ARGS]);
    renameSync(making, template);
  } catch (err) {
    rmSync(making, { recursive: true, force: true });
    // Another suite renamed its own into place first: use that one.
    if (!existsSync(join(template, 'PG_VERSION'))) throw err;
  }
  return template;
}

const postgresUid = (flag: '-u' | '-g'): number => Number(execFileSync('id', [flag, 'postgres'], { encoding: 'utf8' }).trim());

export async function startPostgres(opts: PostgresOptions = {}): Promise<TestPostgres> {
  const dir = mkdtempSync(join(tmpdir(), 'racksmith-pg-'));
  chmodSync(dir, 0o755);
  const data = join(dir, 'data');
  const asPostgres = isRoot();
  const run = (cmd: string, args: string[]): string =>
    execFileSync(asPostgres ? 'runuser' : cmd, asPostgres ? ['-u', 'postgres', '--', cmd, ...args] : args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  if (asPostgres) chownSync(dir, postgresUid('-u'), postgresUid('-g'));
  run('cp', ['-a', initialisedCluster(run), data]);
  if (opts.allow?.length) appendFileSync(join(data, 'pg_hba.conf'), opts.allow.map((cidr) => `host all all ${cidr} trust\n`).join(''));
  // fsync off unless asked: nothing here must survive an OS crash. Commits stay synchronous, so a
  // killed server (crash()) keeps every commit, as a real one does.
  // In a namespace of its own the port is that namespace's; any free one of ours will do there.
  const port = await freePort();
  const listen = ['127.0.0.1', ...(opts.listen ?? [])].join(',');
  // The address URLs name: in a namespace of its own, the address it is reached at there.
  const urlHost = opts.netns ? (opts.listen?.[0] ?? '127.0.0.1') : '127.0.0.1';
  // Outside the server's namespace only its socket is reachable.
  const admin = opts.netns ? { host: dir, port, user: 'postgres' } : { host: '127.0.0.1', port, user: 'postgres' };
  let server: ChildProcess | null = null;
  const start = async (): Promise<void> => {
    const args = ['-D', data, '-p', String(port), '-k', dir, '-c', `listen_addresses=${listen}`, '-c', `config_file=${join(data, 'postgresql.conf')}`, ...(opts.fsync ? [] : ['-c', 'fsync=off', '-c', 'full_page_writes=off']), '-c', 'max_connections=200', ...Object.entries(opts.settings ?? {}).flatMap(([k, v]) => ['-c', `${k}=${v}`])];
    // Its log, for a start that fails (kept with the directory while it lives).
    const logFd = openSync(join(dir, 'server.log'), 'a');
    const stdio: ['ignore', number, number] = ['ignore', logFd, logFd];
    const [cmd, argv] = asPostgres ? ['runuser', ['-u', 'postgres', '--', `${PG_BIN}/postgres`, ...args]] : [`${PG_BIN}/postgres`, args];
    server = opts.netns ? spawn('ip', ['netns', 'exec', opts.netns, cmd, ...argv], { stdio, detached: true }) : spawn(cmd, argv, { stdio, detached: true });
    closeSync(logFd);
    server.unref();
    const deadline = Date.now() + 30_000;
    for (;;) {
      const c = new pg.Client({ ...admin, database: 'postgres' });
      try {
        await c.connect();
        await c.end();
        return;
      } catch (err) {
        await c.end().catch(() => undefined);
        if (Date.now() > deadline || server?.exitCode != null) {
          const log = readFileSync(join(dir, 'server.log'), 'utf8').trim().split('\n').slice(-5).join('\n');
          throw new Error(`PostgreSQL did not start on port ${port}: ${(err as Error).message}\n${log}`);
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  };
  const kill = async (signal: NodeJS.Signals): Promise<void> => {
    const s = server;
    server = null;
    if (!s?.pid) return;
    const exited = new Promise<void>((r) => (s.exitCode !== null ? r() : s.once('exit', () => r())));
    // The postmaster's children start sessions of their own, so the process group is runuser and
    // the postmaster only: a power cut takes the backends too.
    const all = signal === 'SIGKILL' ? descendants(s.pid) : [];
    try {
      process.kill(-s.pid, signal);
      for (const pid of all) process.kill(pid, 'SIGKILL');
    } catch {
      /* gone already */
    }
    await waitAtMost(exited, 15_000);
    if (signal === 'SIGKILL') {
      // Until the last backend is gone, its shared memory keeps a new postmaster from starting.
      for (let i = 0; i < 200 && all.some(running); i++) await new Promise((r) => setTimeout(r, 50));
      // What a killed postmaster leaves behind, as after a power cut: its pid file and socket lock.
      for (const f of [join(data, 'postmaster.pid'), join(dir, `.s.PGSQL.${port}.lock`), join(dir, `.s.PGSQL.${port}`)]) rmSync(f, { force: true });
    }
  };
  await start();
  const onExit = (): void => {
    const s = server;
    if (s?.pid) {
      try {
        process.kill(-s.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', onExit);
  // A signal's default course (the runner's timeout, ^C in a bench) skips 'exit': stop the server
  // first, then let the signal go on.
  const SIGNALS = ['SIGTERM', 'SIGINT', 'SIGHUP'] as const;
  const onSignal = (signal: NodeJS.Signals): void => {
    forget();
    onExit();
    process.kill(process.pid, signal);
  };
  const forget = (): void => {
    for (const sig of SIGNALS) process.off(sig, onSignal);
    process.off('exit', onExit);
  };
  for (const sig of SIGNALS) process.on(sig, onSignal);
  return {
    port,
    dir,
    async newDatabase(prefix = 'rs') {
      const name = `${prefix}_${randomBytes(6).toString('hex')}`;
      const c = new pg.Client({ ...admin, database: 'postgres' });
      await c.connect();
      try {
        await c.query(`CREATE DATABASE ${name}`);
      } finally {
        await c.end();
      }
      return `postgres://postgres@${urlHost}:${port}/${name}`;
    },
    local(url) {
      return `postgres://postgres@/${new URL(url).pathname.slice(1)}?host=${encodeURIComponent(dir)}&port=${port}`;
    },
    crash: () => kill('SIGKILL'),
    start,
    async stop() {
      await kill('SIGTERM');
      forget();
      rmSync(dir, { recursive: true, force: true });
      shared = null;
    },
  };
}

/** Every process below `root` (children's children too), read from /proc. */
function descendants(root: number): number[] {
  const parent = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      parent.set(Number(entry), ppid);
    } catch {
      /* ended meanwhile */
    }
  }
  const out: number[] = [];
  let frontier = [root];
  while (frontier.length > 0) {
    const next = [...parent].filter(([, pp]) => frontier.includes(pp)).map(([pid]) => pid);
    out.push(...next);
    frontier = next;
  }
  return out;
}
