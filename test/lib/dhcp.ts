import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DB_FILE } from '../../server/inventory/sqlite/db.js';
import { openSqliteInventory, type SqliteInventory } from '../../server/inventory/sqlite/index.js';
import { CLI_PATH } from '../../server/lib/paths.js';
import { createSecretBox, loadSecretKey } from '../../server/lib/secrets.js';

/**
 * The real `racksmith serve` inside a test's server namespace, for DHCP tests. Readiness is read
 * from its log ("serving"), not over HTTP: the root namespace has no route into the test's.
 * Assertions read the same SQLite file the process writes (WAL lets both open it).
 */
const execFileP = promisify(execFile);

export interface ServeProcess {
  readonly dataDir: string;
  readonly httpPort: number;
  /** GET /healthz from inside the namespace: each service's state and details. */
  health(): Promise<{ services: Record<string, { state: string; detail?: Record<string, unknown> }> }>;
  readonly child: ChildProcess;
  output(): string;
  /** Log lines (pino JSON) parsed, in order. */
  logs(): Record<string, unknown>[];
  stop(): Promise<number | null>;
  kill9(): Promise<void>;
}

export function newDataDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'racksmith-dhcp-'));
  mkdirSync(d, { recursive: true, mode: 0o700 });
  return d;
}

/** Opens the data directory's inventory (creating its key file the way `serve` would). */
export function openDataDir(dataDir: string): SqliteInventory {
  return openSqliteInventory({ file: join(dataDir, DB_FILE), box: createSecretBox(loadSecretKey(undefined, dataDir)) });
}

export async function serveInNamespace(
  ns: string,
  env: Record<string, string>,
  opts: { dataDir?: string; timeoutMs?: number; wrap?: readonly string[]; nodeArgs?: readonly string[]; /** Another build's cli.js (bench:dhcp's baseline). */ cli?: string } = {},
): Promise<ServeProcess> {
  const dataDir = opts.dataDir ?? newDataDir();
  const fullEnv: Record<string, string> = {
    PATH: process.env['PATH'] ?? '/usr/bin:/bin',
    HOME: process.env['HOME'] ?? '/root',
    RACKSMITH_DATA_DIR: dataDir,
    RACKSMITH_HTTP_ADDRESS: '127.0.0.1',
    // Below Linux's ephemeral ports (32768 on): a curl's closed connection in TIME_WAIT on the
    // chosen port made the bind fail once ("already in use").
    RACKSMITH_HTTP_PORT: String(20000 + Math.floor(Math.random() * 12000)),
    RACKSMITH_TFTP_PORT: '0',
    RACKSMITH_LOG_LEVEL: 'info',
    ...env,
  };
  const node = [process.execPath, '--enable-source-maps', ...(opts.nodeArgs ?? []), opts.cli ?? CLI_PATH, 'serve'];
  const child = spawn('ip', ['netns', 'exec', ns, ...(opts.wrap ?? []), ...node], { env: fullEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const httpPort = Number(fullEnv['RACKSMITH_HTTP_PORT']);
  const health = async (): Promise<{ services: Record<string, { state: string; detail?: Record<string, unknown> }> }> => {
    const { stdout } = await execFileP('ip', ['netns', 'exec', ns, 'curl', '-sS', '--max-time', '5', `http://127.0.0.1:${httpPort}/healthz`]);
    return JSON.parse(stdout) as { services: Record<string, { state: string; detail?: Record<string, unknown> }> };
  };
  // Ready when /healthz answers from inside the namespace (whatever the log level).
  const deadline = Date.now() + (opts.timeoutMs ?? 20_000);
  let ready = false;
  while (!ready && Date.now() < deadline && child.exitCode === null && child.signalCode === null) {
    ready = await health().then(
      (h) => h.services['dhcp'] !== undefined,
      () => false,
    );
    if (!ready) await new Promise((r) => setTimeout(r, 100));
  }
  if (!ready) {
    child.kill('SIGKILL');
    throw new Error(`racksmith serve did not start in ${ns}:\n${out.slice(-4000)}`);
  }
  const parse = (): Record<string, unknown>[] =>
    out
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .flatMap((l) => {
        try {
          return [JSON.parse(l) as Record<string, unknown>];
        } catch {
          return [];
        }
      });
  return {
    dataDir,
    httpPort,
    health,
    child,
    output: () => out,
    logs: parse,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
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
  };
}

export function removeDataDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

/**
 * A dhclient hook script that never touches the host: it records the environment dhclient
 * passes (new_ip_address, new_subnet_mask, …) and sets only the address (the stock script
 * rewrites /etc/resolv.conf even inside a namespace).
 */
export function dhclientScript(dir: string): { script: string; log: string } {
  const log = join(dir, 'dhclient-env.log');
  const script = join(dir, 'dhclient-script');
  writeFileSync(
    script,
    `#!/bin/sh
{ echo "reason=$reason"; echo "interface=$interface"; env | grep -E '^(new|old)_' | sort; echo "--"; } >> ${log}
case "$reason" in
  BOUND|RENEW|REBIND|REBOOT) ip addr flush dev "$interface"; ip addr add "$new_ip_address/$new_subnet_mask" dev "$interface" ;;
  EXPIRE|FAIL|RELEASE|STOP) ip addr flush dev "$interface" ;;
esac
exit 0
`,
    { mode: 0o755 },
  );
  return { script, log };
}

/** A udhcpc hook script that records each event and its variables (ip, subnet, router, dns, lease). */
export function udhcpcScript(dir: string): { script: string; log: string } {
  const log = join(dir, 'udhcpc-env.log');
  const script = join(dir, 'udhcpc-script');
  writeFileSync(
    script,
    `#!/bin/sh
echo "event=$1 ip=$ip subnet=$subnet router=$router dns=$dns lease=$lease serverid=$serverid" >> ${log}
case "$1" in
  bound|renew) ip addr flush dev "$interface"; ip addr add "$ip/$mask" dev "$interface" ;;
  deconfig) ip addr flush dev "$interface" ;;
esac
exit 0
`,
    { mode: 0o755 },
  );
  return { script, log };
}

/** Parses dhclient's recorded environment blocks (one per hook call). */
export function dhclientEvents(text: string): Record<string, string>[] {
  return text
    .split('--\n')
    .map((block) => Object.fromEntries(block.split('\n').filter((l) => l.includes('=')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1).replace(/^'|'$/g, '')])))
    .filter((o) => Object.keys(o).length > 0);
}

export async function waitFor<T>(what: string, fn: () => T | null | undefined | false | Promise<T | null | undefined | false>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
