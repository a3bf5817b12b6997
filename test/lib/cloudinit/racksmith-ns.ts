import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI_PATH } from '../../../server/lib/paths.js';
import type { Testbed } from '../netns.js';

/**
 * The real `racksmith serve` inside a test namespace, where the test process cannot reach it
 * directly: health checks and API calls go through curl run inside the same namespace.
 */
export interface NsRacksmith {
  readonly url: string;
  readonly dataDir: string;
  readonly adminToken: string;
  output(): string;
  /** An API call from inside the namespace; never throws on an HTTP error status. */
  api(method: string, path: string, body?: unknown): Promise<{ status: number; body: any; text: string }>;
  stop(): Promise<void>;
}

export async function nsCurl(tb: Testbed, ns: string, args: readonly string[], input?: string): Promise<{ status: number; text: string }> {
  const { stdout } = await tb.exec(ns, 'curl', ['-sS', '--max-time', '30', '-w', '\n%{http_code}', ...args], input === undefined ? { timeoutMs: 40_000 } : { timeoutMs: 40_000, input });
  const cut = stdout.lastIndexOf('\n');
  return { status: Number(stdout.slice(cut + 1)), text: stdout.slice(0, cut) };
}

export async function startRacksmithIn(tb: Testbed, ns: string, opts: { address: string; port: number; env: Record<string, string>; secretKey: string }): Promise<NsRacksmith> {
  const dataDir = mkdtempSync(join(tmpdir(), 'racksmith-ci-data-'));
  const adminToken = `ci-admin-${Date.now()}-0123456789abcdef`;
  const url = `http://${opts.address}:${opts.port}`;
  const env = {
    PATH: process.env['PATH'] ?? '/usr/bin:/bin',
    HOME: process.env['HOME'] ?? '/root',
    RACKSMITH_DATA_DIR: dataDir,
    RACKSMITH_HTTP_ADDRESS: opts.address,
    RACKSMITH_HTTP_PORT: String(opts.port),
    RACKSMITH_ADVERTISE_ADDRESS: opts.address,
    RACKSMITH_DHCP_MODE: 'off',
    RACKSMITH_TFTP_PORT: '0',
    RACKSMITH_LOG_LEVEL: 'info',
    RACKSMITH_ADMIN_TOKEN: adminToken,
    RACKSMITH_SECRET_KEY: opts.secretKey,
    ...opts.env,
  };
  const child: ChildProcess = tb.spawn(ns, process.execPath, ['--enable-source-maps', CLI_PATH, 'serve'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));

  let up = false;
  for (let i = 0; i < 100 && child.exitCode === null && !up; i++) {
    try {
      up = (await nsCurl(tb, ns, ['--max-time', '1', `${url}/healthz`])).status === 200;
    } catch {
      /* not listening yet */
    }
    if (!up) await new Promise((r) => setTimeout(r, 200));
  }
  if (!up) {
    child.kill('SIGKILL');
    rmSync(dataDir, { recursive: true, force: true });
    throw new Error(`racksmith did not become healthy at ${url} in ${ns}:\n${output.slice(-3000)}`);
  }

  return {
    url,
    dataDir,
    adminToken,
    output: () => output,
    async api(method, path, body) {
      const args = ['-X', method, '-H', `authorization: Bearer ${adminToken}`];
      if (body !== undefined) args.push('-H', 'content-type: application/json', '--data-binary', '@-');
      const r = await nsCurl(tb, ns, [...args, `${url}${path}`], body === undefined ? undefined : JSON.stringify(body));
      let parsed: unknown;
      try {
        parsed = r.text ? JSON.parse(r.text) : undefined;
      } catch {
        parsed = undefined;
      }
      return { status: r.status, body: parsed, text: r.text };
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
        await exited;
        clearTimeout(timer);
      }
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
