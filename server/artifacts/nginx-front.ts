import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { delimiter, isAbsolute, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../lib/log.js';
import { PACKAGE_ROOT } from '../lib/paths.js';
import { ServiceStartError, type Service, type ServiceContext, type ServiceHealth, type ServiceState } from '../lib/service.js';

/**
 * racksmith's own artifacts front (`artifacts-nginx-port`, docs/artifacts.md): Debian's nginx,
 * started and supervised by racksmith with the shipped server block
 * (packaging/nginx/racksmith-artifacts.conf.template), so that one service sends installer
 * artifacts with sendfile — the bytes never pass through Node — while racksmith still decides
 * and records every request through X-Accel-Redirect. MAAS's rack controller runs its nginx the
 * same way (a configuration it writes, a process it owns).
 */
export const TEMPLATE_PATH = join(PACKAGE_ROOT, 'packaging', 'nginx', 'racksmith-artifacts.conf.template');

export interface NginxFrontOptions {
  /** The nginx binary: a name looked up in PATH (and /usr/sbin, where Debian puts it), or a path. */
  readonly binary: string;
  /** racksmith's HTTP listener (`http-address`, `http-port`). */
  readonly httpAddress: string;
  readonly httpPort: number;
  /** Where machines reach the front. */
  readonly port: number;
  readonly artifactsDir: string;
  readonly cacheDir: string;
  /** Its configuration, pid file and temp files (under the data directory). */
  readonly dir: string;
  /** Worker processes; default nginx's `auto` (one per core). */
  readonly workers?: number;
  /** Grace for downloads in flight at stop (nginx's graceful quit), then they are cut. */
  readonly graceMs?: number;
  readonly log: Logger;
}

/**
 * Fills `${NAME}` in a configuration template the way the nginx image's templates directory does
 * (envsubst of the variables given), leaving nginx's own `$variables` alone; a `${NAME}` left
 * unfilled is an error, not an empty string.
 */
export function fillTemplate(text: string, vars: Readonly<Record<string, string>>): string {
  const out = text.replace(/\$\{([A-Z_][A-Z0-9_]*)\}/g, (whole, name: string) => vars[name] ?? whole);
  const left = /\$\{([A-Z_][A-Z0-9_]*)\}/.exec(out);
  if (left) throw new Error(`template variable ${left[1]} not given`);
  return out;
}

/** The address nginx connects to racksmith at, which is also the address racksmith sees it come from. */
export function frontUpstreamAddress(httpAddress: string): string {
  return httpAddress === '0.0.0.0' ? '127.0.0.1' : httpAddress;
}

/** The whole nginx.conf of the managed front: a main context for a process racksmith owns, and the shipped server block. */
export function nginxFrontConfig(o: Omit<NginxFrontOptions, 'binary' | 'log' | 'graceMs'>, template: string, runAsRoot: boolean): string {
  const listen = o.httpAddress === '0.0.0.0' ? String(o.port) : `${o.httpAddress}:${o.port}`;
  const server = fillTemplate(template, {
    ARTIFACTS_LISTEN: listen,
    RACKSMITH_UPSTREAM: `${frontUpstreamAddress(o.httpAddress)}:${o.httpPort}`,
    ARTIFACTS_DIR: o.artifactsDir,
    ARTIFACTS_CACHE_DIR: o.cacheDir,
  });
  const temp = ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((t) => `  ${t}_temp_path ${join(o.dir, `${t}_temp`)};`).join('\n');
  return [
    '# Written by racksmith at each start (artifacts-nginx-port); edits are lost.',
    'daemon off;',
    // Started as root, nginx's workers would become `nobody`, who cannot read a private data
    // directory: they read what racksmith's own file workers read, as the same user.
    ...(runAsRoot ? ['user root root;'] : []),
    `worker_processes ${o.workers ?? 'auto'};`,
    `pid ${join(o.dir, 'nginx.pid')};`,
    'error_log stderr warn;',
    'events { worker_connections 4096; }',
    'http {',
    '  default_type application/octet-stream;',
    '  server_tokens off;',
    '  keepalive_requests 10000;',
    temp,
    server,
    '}',
    '',
  ].join('\n');
}

/** The binary to run, or null: a path as given, a name from PATH or Debian's /usr/sbin. */
export function findBinary(binary: string, path = process.env['PATH'] ?? ''): string | null {
  const candidates = isAbsolute(binary) || binary.includes('/') ? [binary] : [...path.split(delimiter).filter(Boolean), '/usr/sbin', '/usr/local/sbin'].map((d) => join(d, binary));
  for (const c of candidates) {
    try {
      accessSync(c, constants.X_OK);
      return c;
    } catch {
      // next
    }
  }
  return null;
}

/** nginx's master leads its group (spawned detached): the group is the master and its workers. */
function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // gone
  }
}
function groupAlive(pid: number): boolean {
  try {
    process.kill(-pid, 0);
    return true;
  } catch {
    return false;
  }
}

const READY_TIMEOUT_MS = 15_000;
const RESTART_MS = 1000;
const RESTART_MAX_MS = 30_000;

export interface NginxFront extends Service {
  /** The address racksmith trusts as this front (X-Real-IP, X-Accel-Redirect). */
  readonly trustedAddress: string;
}

export function createNginxFront(o: NginxFrontOptions): NginxFront {
  let state: ServiceState = 'stopped';
  let child: ChildProcess | null = null;
  let restarts = 0;
  let lastExit: string | null = null;
  let stopping = false;
  let restartTimer: NodeJS.Timeout | null = null;
  /** A restart under way (stop waits for it, so that no nginx comes up after racksmith stopped). */
  let restarting: Promise<void> | null = null;
  const confPath = join(o.dir, 'nginx.conf');
  const pidPath = join(o.dir, 'nginx.pid');
  const grace = o.graceMs ?? 10_000;
  const probeHost = frontUpstreamAddress(o.httpAddress);
  let binary: string | null = null;

  /** nginx's stderr goes to racksmith's log, a line at a time (its error log is stderr). */
  function run(): ChildProcess {
    // Its own process group: workers left by a master that died are ended with the group.
    const c = spawn(binary as string, ['-p', o.dir, '-c', confPath, '-e', 'stderr'], { stdio: ['ignore', 'ignore', 'pipe'], detached: true });
    let tail = '';
    c.on('error', (err) => o.log.error({ err: err.message }, 'the artifacts nginx'));
    c.stderr?.setEncoding('utf8');
    c.stderr?.on('data', (d: string) => {
      const text = tail + d;
      const lines = text.split('\n');
      tail = (lines.pop() ?? '').slice(-4000);
      for (const line of lines) if (line.trim()) o.log.warn({ nginx: line.slice(0, 2000) }, 'nginx');
    });
    return c;
  }

  /** A front left behind by a racksmith that was killed (its pid file, still an nginx with our configuration) is ended first. */
  async function endLeftover(): Promise<void> {
    let pid: number;
    try {
      pid = Number.parseInt(readFileSync(pidPath, 'utf8').trim(), 10);
    } catch {
      return;
    }
    if (!Number.isInteger(pid) || pid <= 1) return;
    let cmdline: string;
    try {
      cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    } catch {
      return;
    }
    if (!cmdline.includes('nginx') || !cmdline.includes(confPath)) return;
    o.log.warn({ pid }, 'an artifacts nginx of an earlier racksmith is still running: ending it');
    signalGroup(pid, 'SIGTERM');
    for (let i = 0; i < 100 && groupAlive(pid); i++) await sleep(50);
    signalGroup(pid, 'SIGKILL');
  }

  /** The front answers as the front: its own 404 for a path outside /artifacts/ (another listener on the port does not). */
  async function answering(): Promise<boolean> {
    try {
      const host = probeHost.includes(':') ? `[${probeHost}]` : probeHost;
      const res = await fetch(`http://${host}:${o.port}/`, { signal: AbortSignal.timeout(1000) });
      return res.status === 404 && (await res.text()).includes('this front serves /artifacts/');
    } catch {
      return false;
    }
  }

  /** Starts nginx and resolves once it answers as the front; rejects with what nginx said if it exits first. */
  async function launch(): Promise<ChildProcess> {
    const c = run();
    let said = '';
    const onData = (d: string): void => {
      said = (said + d).slice(-2000);
    };
    c.stderr?.on('data', onData);
    const exited = new Promise<string>((resolve) => c.once('exit', (code, signal) => resolve(signal ? `killed by ${signal}` : `exit ${code}`)));
    let exit: string | null = null;
    void exited.then((e) => (exit = e));
    const spawnError = new Promise<Error>((resolve) => c.once('error', resolve));
    let failed: Error | null = null;
    void spawnError.then((e) => (failed = e));
    const deadline = Date.now() + READY_TIMEOUT_MS;
    while (Date.now() < deadline) {
      if (failed) throw failed;
      if (exit !== null) throw new Error(`nginx ended (${exit}): ${said.trim() || 'no message'}`);
      if ((await answering()) && exit === null) {
        c.stderr?.off('data', onData);
        return c;
      }
      await sleep(50);
    }
    if (c.pid) signalGroup(c.pid, 'SIGKILL');
    throw new Error(`nginx did not listen on ${probeHost}:${o.port} within ${READY_TIMEOUT_MS / 1000} s: ${said.trim() || 'no message'}`);
  }

  function supervise(c: ChildProcess): void {
    child = c;
    state = 'serving';
    c.once('exit', (code, signal) => {
      if (child === c) child = null;
      // Workers outlive a master that was killed, holding the port: end them with it.
      if (c.pid) signalGroup(c.pid, 'SIGKILL');
      if (stopping) return;
      lastExit = signal ? `killed by ${signal}` : `exit ${code}`;
      state = 'starting';
      o.log.error({ exit: lastExit, restartInMs: scheduleRestart(), restarts }, 'the artifacts nginx ended: restarting it');
    });
  }

  /** The next restart, after 1 s doubling to 30 s while nginx keeps failing; returns the wait. */
  function scheduleRestart(): number {
    const wait = Math.min(RESTART_MS * 2 ** Math.min(restarts, 5), RESTART_MAX_MS);
    restarts++;
    restartTimer = setTimeout(() => (restarting = restart().finally(() => (restarting = null))), wait);
    return wait;
  }

  /** Ends nginx's group: `first` (SIGQUIT lets downloads finish), SIGTERM after `graceMs`, SIGKILL 5 s later. */
  async function end(c: ChildProcess, first: NodeJS.Signals, graceMs: number): Promise<void> {
    const pid = c.pid as number;
    const gone = c.exitCode !== null || c.signalCode !== null ? Promise.resolve() : new Promise<void>((resolve) => c.once('exit', () => resolve()));
    if (first === 'SIGQUIT') c.kill(first);
    else signalGroup(pid, first);
    const cut = setTimeout(() => signalGroup(pid, 'SIGTERM'), graceMs);
    const kill = setTimeout(() => signalGroup(pid, 'SIGKILL'), graceMs + 5000);
    await gone;
    clearTimeout(cut);
    clearTimeout(kill);
    signalGroup(pid, 'SIGKILL');
  }

  async function restart(): Promise<void> {
    restartTimer = null;
    if (stopping) return;
    try {
      await endLeftover();
      const c = await launch();
      if (stopping) return await end(c, 'SIGTERM', 0);
      supervise(c);
      o.log.info({ pid: c.pid, port: o.port }, 'the artifacts nginx is serving again');
    } catch (err) {
      lastExit = err instanceof Error ? err.message : String(err);
      o.log.error({ err: lastExit }, 'the artifacts nginx did not start again');
      if (!stopping) scheduleRestart();
    }
  }

  return {
    name: 'artifacts-nginx',
    trustedAddress: probeHost,
    async start(_ctx: ServiceContext) {
      state = 'starting';
      const setting = `artifacts-nginx-port ${o.port}`;
      if (o.port === o.httpPort) {
        state = 'failed';
        throw new ServiceStartError('artifacts-nginx', setting, `the same port as http-port; the front needs its own`);
      }
      binary = findBinary(o.binary);
      if (binary === null) {
        state = 'failed';
        throw new ServiceStartError('artifacts-nginx', `nginx-binary ${o.binary}`, 'nginx is not installed here (Debian: apt-get install nginx-light), or name its path');
      }
      try {
        mkdirSync(o.dir, { recursive: true, mode: 0o700 });
        writeFileSync(confPath, nginxFrontConfig(o, readFileSync(TEMPLATE_PATH, 'utf8'), process.getuid?.() === 0));
        await endLeftover();
        supervise(await launch());
      } catch (err) {
        state = 'failed';
        throw new ServiceStartError('artifacts-nginx', setting, err instanceof Error ? err.message : String(err));
      }
      o.log.info({ pid: child?.pid, port: o.port, binary }, 'artifacts nginx serving');
    },
    async stop() {
      stopping = true;
      if (restartTimer) clearTimeout(restartTimer);
      restartTimer = null;
      await restarting;
      const c = child;
      if (c === null || c.exitCode !== null || c.signalCode !== null) {
        state = 'stopped';
        return;
      }
      state = 'stopping';
      // Graceful: nginx stops accepting and lets the downloads in flight finish, for the grace.
      await end(c, 'SIGQUIT', grace);
      child = null;
      state = 'stopped';
    },
    health(): ServiceHealth {
      return { state, detail: { port: o.port, pid: child?.pid ?? null, restarts, lastExit } };
    },
  };
}
