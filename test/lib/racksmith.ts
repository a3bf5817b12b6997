import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { openStore } from '../../server/inventory/open.js';
import type { Store } from '../../server/inventory/store.js';
import { TEST_ENGINE } from './inventory.js';
import { testPostgres } from './postgres.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CLI_PATH } from '../../server/lib/paths.js';
import { DEFAULT_INSTALLERS } from '../../server/boot/releases.js';

const run = promisify(execFile);

/**
 * The real `racksmith serve` process, started from the compiled CLI exactly as an operator would
 * (optionally inside a test's network namespace), driven over HTTP only.
 */
export interface RacksmithProcess {
  readonly url: string;
  readonly dataDir: string;
  readonly child: ChildProcess;
  /** Everything the process wrote to stdout and stderr so far. */
  output(): string;
  /** Runs the CLI against the same data directory (and namespace), returns stdout. */
  cli(args: readonly string[], env?: Record<string, string>): Promise<string>;
  /** SIGTERM and wait; returns the exit code. */
  stop(): Promise<number | null>;
  /** SIGKILL, as a crash would. */
  kill9(): Promise<void>;
  /** Removes the data directory (only if this helper created it). */
  cleanup(): void;
  /** What puts a CLI command on this racksmith's store: its data directory, and its database on PostgreSQL runs. */
  readonly storeEnv: Record<string, string>;
  /** This racksmith's store opened beside it, as a CLI command would (close it when done). */
  openStore(): Promise<Store>;
}

export interface StartOptions {
  /** Reuse a data directory (restart tests); default: a fresh temporary one. */
  readonly dataDir?: string;
  readonly env?: Record<string, string>;
  /** Run inside this network namespace (`ip netns exec`). */
  readonly netns?: string;
  /** Host to reach HTTP on (default 127.0.0.1). */
  readonly host?: string;
  readonly httpPort?: number;
  readonly timeoutMs?: number;
  /** A command that runs racksmith (benchmarks pin it to a CPU with `taskset -c 0`). */
  readonly wrap?: readonly string[];
  /** The racksmith CLI to run (default: this checkout's): one assembled as the Docker image is, or another build's (a benchmark's baseline). */
  readonly cliPath?: string;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const a = srv.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Where a test's racksmith finds its upstreams unless the test says otherwise: a loopback port
 * nobody listens on, so a preflight, a prefetch or an artifact download refuses at once and
 * nothing a test starts ever reaches the internet. Tests that serve upstreams override these.
 */
export const NO_UPSTREAM = 'http://127.0.0.1:9';

export function offlineUpstreams(): Record<string, string> {
  const installers: Record<string, { upstream: Record<string, string> }> = {};
  for (const [release, inst] of Object.entries(DEFAULT_INSTALLERS)) {
    // Debian's installer follows the Debian mirror (below), so a test's --debian-mirror takes it along.
    if (release === 'debian-12') continue;
    const upstream = Object.fromEntries(Object.entries(inst.upstream).filter(([, u]) => /^https?:/.test(u)).map(([f, u]) => [f, `${NO_UPSTREAM}${new URL(u).pathname}`]));
    installers[release] = { upstream };
  }
  return {
    RACKSMITH_UBUNTU_MIRROR: `${NO_UPSTREAM}/ubuntu`,
    RACKSMITH_DEBIAN_MIRROR: `${NO_UPSTREAM}/debian`,
    RACKSMITH_KUBERNETES_REPO: `${NO_UPSTREAM}/pkgs.k8s.io/core:/stable:`,
    RACKSMITH_KUBERNETES_LEGACY_REPO: `${NO_UPSTREAM}/apt.kubernetes.io/`,
    RACKSMITH_KUBERNETES_LEGACY_GPG_URL: `${NO_UPSTREAM}/apt-key.gpg`,
    RACKSMITH_DOCKER_REPO: `${NO_UPSTREAM}/docker/linux/ubuntu`,
    RACKSMITH_DOCKER_GPG_URL: `${NO_UPSTREAM}/docker/gpg`,
    RACKSMITH_CNI_MANIFEST_WEAVE: `${NO_UPSTREAM}/cni/weave-{version}.yaml`,
    RACKSMITH_CNI_MANIFEST_FLANNEL: `${NO_UPSTREAM}/cni/flannel-{version}.yml`,
    RACKSMITH_CNI_MANIFEST_CALICO: `${NO_UPSTREAM}/cni/calico-{version}.yaml`,
    RACKSMITH_INSTALLERS: JSON.stringify(installers),
  };
}

function command(netns: string | undefined, args: readonly string[], wrap: readonly string[] = [], cli = CLI_PATH): [string, string[]] {
  const node = [...wrap, process.execPath, '--enable-source-maps', cli, ...args];
  return netns ? ['ip', ['netns', 'exec', netns, ...node]] : [node[0] as string, node.slice(1)];
}

const databases = new Map<string, string>();
async function databaseFor(dataDir: string): Promise<string> {
  let url = databases.get(dataDir);
  if (!url) {
    url = await (await testPostgres()).newDatabase();
    databases.set(dataDir, url);
  }
  return url;
}

export async function startRacksmith(opts: StartOptions = {}): Promise<RacksmithProcess> {
  const ownDir = opts.dataDir === undefined;
  const dataDir = opts.dataDir ?? mkdtempSync(join(tmpdir(), 'racksmith-test-'));
  const port = opts.httpPort ?? (await freePort());
  const host = opts.host ?? '127.0.0.1';
  const env: Record<string, string> = {
    PATH: process.env['PATH'] ?? '/usr/bin:/bin',
    HOME: process.env['HOME'] ?? '/root',
    RACKSMITH_DATA_DIR: dataDir,
    RACKSMITH_HTTP_PORT: String(port),
    RACKSMITH_HTTP_ADDRESS: opts.netns ? '0.0.0.0' : '127.0.0.1',
    RACKSMITH_ADVERTISE_ADDRESS: host,
    RACKSMITH_DHCP_MODE: 'off',
    RACKSMITH_TFTP_PORT: '0',
    RACKSMITH_LOG_LEVEL: 'debug',
    ...offlineUpstreams(),
    ...opts.env,
  };
  // On PostgreSQL runs, each data directory has its own database (a restart on it finds its rows).
  // A racksmith in a namespace reaches it through its Unix socket: loopback there is the namespace's own.
  if (TEST_ENGINE === 'postgres' && env['RACKSMITH_DATABASE_URL'] === undefined) {
    const url = await databaseFor(dataDir);
    env['RACKSMITH_DATABASE_URL'] = opts.netns ? (await testPostgres()).local(url) : url;
  }
  const storeEnv: Record<string, string> = { RACKSMITH_DATA_DIR: dataDir, ...(env['RACKSMITH_DATABASE_URL'] ? { RACKSMITH_DATABASE_URL: env['RACKSMITH_DATABASE_URL'] } : {}) };
  const [cmd, args] = command(opts.netns, ['serve'], opts.wrap, opts.cliPath);
  const child = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const url = `http://${host}:${port}`;

  const deadline = Date.now() + (opts.timeoutMs ?? 20_000);
  let up = false;
  while (Date.now() < deadline && child.exitCode === null) {
    try {
      if (opts.netns) {
        // The test process lives in the root namespace and cannot reach an address inside
        // the test's namespace: ask from inside it.
        await run('ip', ['netns', 'exec', opts.netns, 'curl', '-sf', '-m', '1', '-o', '/dev/null', `${url}/healthz`], { timeout: 3000 });
        up = true;
        break;
      }
      const res = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(1000) });
      if (res.ok) {
        up = true;
        break;
      }
    } catch {
      /* not listening yet */
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  if (!up) {
    child.kill('SIGKILL');
    throw new Error(`racksmith did not become healthy at ${url}:\n${output.slice(-3000)}`);
  }

  return {
    url,
    dataDir,
    child,
    output: () => output,
    async cli(cliArgs, extraEnv = {}) {
      const [c, a] = command(opts.netns, cliArgs, [], opts.cliPath);
      const { stdout } = await run(c, a, { env: { ...env, RACKSMITH_URL: url, ...extraEnv }, timeout: 60_000 });
      return stdout;
    },
    async stop() {
      if (child.exitCode !== null) return child.exitCode;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
    async kill9() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGKILL');
      await exited;
    },
    cleanup() {
      if (ownDir) rmSync(dataDir, { recursive: true, force: true });
    },
    storeEnv,
    openStore: () => openStore({ dataDir, secretKey: env['RACKSMITH_SECRET_KEY'] || undefined, databaseUrl: env['RACKSMITH_DATABASE_URL'] || undefined, instanceName: 'test' }),
  };
}

export interface CliRun {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Runs the real CLI to completion (bounded) and returns its exit code and output, whatever the
 * code: for tests of exit codes and error lines. Only PATH and the given variables are passed.
 */
export function runCli(args: readonly string[], env: Record<string, string> = {}, timeoutMs = 30_000): Promise<CliRun> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI_PATH, ...args], { env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** fetch's failure for a connection that was closed or reset under the request (not a refusal or a timeout). */
function closedUnderneath(err: Error): boolean {
  const cause = err.cause as { code?: string } | undefined;
  return err.name === 'TypeError' && (cause?.code === 'ECONNRESET' || cause?.code === 'UND_ERR_SOCKET' || cause?.code === 'EPIPE');
}

/** A small JSON client for tests: returns status and parsed body, never throws on HTTP errors. */
export async function api(base: string, token: string | null, method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<{ status: number; body: any; text: string; headers: Headers }> {
  const headers: Record<string, string> = {};
  if (token) headers['authorization'] = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = contentType;
  const send = (): Promise<Response> =>
    fetch(`${base}${path.startsWith('/api') || path.startsWith('/') ? path : '/' + path}`, {
      method,
      headers,
      body: body === undefined ? null : typeof body === 'string' ? body : JSON.stringify(body),
      signal: AbortSignal.timeout(30_000),
    });
  const res = await send()
    .catch((err: Error) => {
      // A kept-alive connection the server closed just as it was reused (a test process starved
      // past the server's 5 s keep-alive): a GET is sent again once, as browsers do (RFC 9112 §9.3.1).
      if ((method === 'GET' || method === 'HEAD') && closedUnderneath(err)) return send();
      throw err;
    })
    .catch((err: Error) => {
      // undici says only "fetch failed"; what failed (a reset, a refusal) is in its cause.
      throw new Error(`${method} ${path}: ${err.message} (${String((err.cause as Error | undefined)?.message ?? err.cause ?? 'no cause given')})`);
    });
  const text = await res.text();
  let parsed: unknown = undefined;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    parsed = undefined;
  }
  return { status: res.status, body: parsed, text, headers: res.headers };
}
