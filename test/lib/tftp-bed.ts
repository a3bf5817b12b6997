import type { ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseMac, type Mac } from '../../server/lib/mac.js';
import { untilOutput } from './child.js';
import { Testbed } from './netns.js';
import { startRacksmith, type RacksmithProcess } from './racksmith.js';

/**
 * The TFTP test bed: a server namespace running the real `racksmith serve` (TFTP on, DHCP off)
 * and a client namespace joined by a veth, a temporary TFTP root with deterministic files, and a
 * canary outside that root. Clients run in the client namespace; evidence is read from
 * racksmith's API and log.
 */

export const SERVER_IP = '10.77.0.1';
export const CLIENT_IP = '10.77.0.2';
export const ADMIN_TOKEN = 'tftp-test-admin-token-0123456789';
export const RELAY_SCRIPT = fileURLToPath(new URL('./udp-relay.js', import.meta.url));

/** Deterministic bytes (xorshift32), so a failed comparison is reproducible. */
export function patternBytes(size: number, seed: number): Buffer {
  const buf = Buffer.allocUnsafe(size);
  let x = seed >>> 0 || 1;
  let i = 0;
  for (; i + 4 <= size; i += 4) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    buf.writeUInt32LE(x, i);
  }
  for (; i < size; i++) buf[i] = i & 0xff;
  return buf;
}

export function sha256(buf: Buffer): string {
  return createHash('sha256').update(buf).digest('hex');
}

export interface TftpBed {
  readonly tb: Testbed;
  readonly srv: string;
  readonly cli: string;
  readonly clientMac: Mac;
  /** Temporary folder holding `root/`, `outside/` and `out/`. */
  readonly dir: string;
  readonly root: string;
  readonly outside: string;
  readonly out: string;
  rs: RacksmithProcess | null;
  start(env?: Record<string, string>): Promise<RacksmithProcess>;
  /** Runs a command in the client namespace. */
  client(cmd: string, args: readonly string[], timeoutMs?: number): Promise<{ stdout: string; stderr: string }>;
  /** JSON API call from inside the server namespace, with the admin token. */
  api(method: string, path: string, body?: unknown): Promise<any>;
  tftpCounters(): Promise<Record<string, number>>;
  /** Starts the lossy/delaying relay in the server namespace on SERVER_IP:port → SERVER_IP:69. */
  relay(port: number, loss: number, seed: number, delayMs?: number, spareNegotiation?: boolean): Promise<ChildProcess>;
  destroy(): Promise<void>;
}

export async function createTftpBed(tag = 't'): Promise<TftpBed> {
  const tb = new Testbed(tag);
  const dir = mkdtempSync(join(tmpdir(), 'racksmith-tftp-'));
  const root = join(dir, 'root');
  const outside = join(dir, 'outside');
  const out = join(dir, 'out');
  for (const d of [root, outside, out]) mkdirSync(d, { recursive: true });
  try {
    const srv = await tb.addNamespace('s');
    const cli = await tb.addNamespace('c');
    await tb.veth(srv, 'sv', cli, 'cv', `${SERVER_IP}/24`, `${CLIENT_IP}/24`);
    const link = await tb.ip(cli, ['link', 'show', 'dev', tb.name('cv')]);
    const mac = parseMac(/link\/ether ([0-9a-f:]{17})/.exec(link)?.[1] ?? '');
    if (!mac) throw new Error(`no MAC on the client veth: ${link}`);
    const bed: TftpBed = {
      tb,
      srv,
      cli,
      clientMac: mac,
      dir,
      root,
      outside,
      out,
      rs: null,
      async start(env = {}) {
        const rs = await startRacksmith({
          netns: srv,
          host: '127.0.0.1',
          env: {
            RACKSMITH_TFTP_PORT: '69',
            RACKSMITH_TFTP_ADDRESS: SERVER_IP,
            RACKSMITH_TFTP_ROOT: root,
            RACKSMITH_ADMIN_TOKEN: ADMIN_TOKEN,
            RACKSMITH_ADVERTISE_ADDRESS: SERVER_IP,
            ...env,
          },
        });
        bed.rs = rs;
        return rs;
      },
      client: (cmd, args, timeoutMs = 120_000) => tb.exec(cli, cmd, args, { timeoutMs }),
      async api(method, path, body) {
        if (!bed.rs) throw new Error('racksmith is not running');
        const args = ['-sS', '-m', '20', '-X', method, '-H', `authorization: Bearer ${ADMIN_TOKEN}`];
        if (body !== undefined) args.push('-H', 'content-type: application/json', '--data-binary', JSON.stringify(body));
        const { stdout } = await tb.exec(srv, 'curl', [...args, `${bed.rs.url}${path}`]);
        return stdout ? JSON.parse(stdout) : undefined;
      },
      async tftpCounters() {
        const h = await bed.api('GET', '/healthz');
        return h.services.tftp.detail.counters as Record<string, number>;
      },
      async relay(port, loss, seed, delayMs = 0, spareNegotiation = false) {
        const child = tb.spawn(srv, process.execPath, [
          RELAY_SCRIPT,
          ...['--listen', `${SERVER_IP}:${port}`, '--target', `${SERVER_IP}:69`, '--loss', String(loss), '--seed', String(seed), '--delay-ms', String(delayMs)],
          ...(spareNegotiation ? ['--spare-negotiation', 'yes'] : []),
        ]);
        await untilOutput(child, 'ready', 'the UDP relay');
        return child;
      },
      async destroy() {
        try {
          if (bed.rs) {
            await bed.rs.stop();
            bed.rs.cleanup();
          }
        } finally {
          await tb.destroy();
          rmSync(dir, { recursive: true, force: true });
        }
      },
    };
    return bed;
  } catch (err) {
    await tb.destroy();
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

/** The three clients as the acceptance list names them, each as a command line for one download. */
export interface ClientCase {
  readonly name: string;
  readonly argv: (host: string, port: number, file: string, dest: string) => [string, string[]];
}

export const CLIENTS: readonly ClientCase[] = [
  { name: 'tftp-hpa tftp', argv: (h, p, f, d) => ['tftp', ['-m', 'octet', h, String(p), '-c', 'get', f, d]] },
  { name: 'curl', argv: (h, p, f, d) => ['curl', ['-sS', '--fail', '--max-time', '300', '-o', d, `tftp://${h}:${p}/${f}`]] },
  { name: 'curl --tftp-blksize 1468', argv: (h, p, f, d) => ['curl', ['-sS', '--fail', '--max-time', '300', '--tftp-blksize', '1468', '-o', d, `tftp://${h}:${p}/${f}`]] },
  { name: 'atftp blksize 1468', argv: (h, p, f, d) => ['atftp', ['--option', 'blksize 1468', '-g', '-r', f, '-l', d, h, String(p)]] },
  { name: 'atftp windowsize 8', argv: (h, p, f, d) => ['atftp', ['--option', 'blksize 1468', '--option', 'windowsize 8', '-g', '-r', f, '-l', d, h, String(p)]] },
];

export function writeFixture(bed: TftpBed, name: string, bytes: Buffer): string {
  const p = join(bed.root, name);
  writeFileSync(p, bytes);
  return sha256(bytes);
}

export function readOut(bed: TftpBed, name: string): Buffer {
  return readFileSync(join(bed.out, name));
}

export function link(target: string, at: string): void {
  symlinkSync(target, at);
}
