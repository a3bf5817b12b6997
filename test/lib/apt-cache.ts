import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stopChild } from './child.js';
import type { Testbed } from './netns.js';

/**
 * The test bed's site package cache: Debian's apt-cacher-ng, reached by the machines at
 * `<address>:3142` on the test bridge, as a site's machines reach theirs — racksmith's
 * `--apt-proxy` names it in every seed.
 *
 * apt-cacher-ng needs the internet (Debian's mirror) and the machines must not have it, so it runs
 * in this machine's own network namespace bound to loopback only, and a small relay inside the
 * server namespace forwards the bridge port to it through a Unix socket (a file, which every
 * namespace sees). Two settings this machine needs (measured): a private configuration whose
 * `backends_debian` is deb.debian.org (the packaged remap points at ftp.debian.org, which does not
 * resolve here), and a port below 32768 (a higher one fails to bind).
 */
export const APT_CACHE_PORT = 3142;
export const APT_CACHE_DIR = process.env['RACKSMITH_TEST_APT_CACHE'] ?? '/var/cache/racksmith-test/apt-cacher-ng';

export interface AptCache {
  /** `http://<address>:3142` as the machines reach it. */
  readonly url: string;
  /** Paths apt-cacher-ng served since it started (its transfer log), for assertions. */
  served(): string[];
  /** apt-cacher-ng's own logs (transfers and errors), for the evidence of a failed run. */
  log(): string;
  stop(): Promise<void>;
}

export async function startAptCache(tb: Testbed, ns: string, address: string): Promise<AptCache> {
  const dir = mkdtempSync(join(tmpdir(), 'racksmith-acng-'));
  const conf = join(dir, 'conf');
  const logs = join(dir, 'log');
  mkdirSync(logs, { recursive: true });
  cpSync('/etc/apt-cacher-ng', conf, { recursive: true });
  writeFileSync(join(conf, 'backends_debian'), 'http://deb.debian.org/debian/\n');
  mkdirSync(APT_CACHE_DIR, { recursive: true });
  // A free loopback port below 32768: apt-cacher-ng refuses to bind higher ones here.
  const port = 20_000 + Math.floor(Math.random() * 12_000);
  // UnbufferLogs: each transfer is in the log as it ends. By default apt-cacher-ng flushes its log
  // when the client disconnects, and apt may keep its connection: `served()` would race that.
  const acng = spawn(
    'apt-cacher-ng',
    ['-c', conf, 'ForeGround=1', 'BindAddress=127.0.0.1', `Port=${port}`, `CacheDir=${APT_CACHE_DIR}`, `LogDir=${logs}`, 'ForceManaged=1', `PidFile=${join(dir, 'pid')}`, 'ExThreshold=4', 'UnbufferLogs=1'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let acngOut = '';
  acng.stdout?.on('data', (d: Buffer) => (acngOut += d.toString()));
  acng.stderr?.on('data', (d: Buffer) => (acngOut += d.toString()));
  const up = await waitTcp('127.0.0.1', port, 10_000);
  if (!up) {
    await stopChild(acng);
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`apt-cacher-ng did not listen on 127.0.0.1:${port}: ${acngOut.slice(-500)}`);
  }

  // Unix socket → apt-cacher-ng, served by this process.
  const sock = join(dir, 'relay.sock');
  // Each request's and answer's head goes to requests.log: what a machine sent is the evidence
  // when apt-cacher-ng refuses it.
  const heads = join(logs, 'requests.log');
  const bridge: Server = createServer((c) => {
    const up = connect(port, '127.0.0.1');
    logHeads(c, heads, '>');
    logHeads(up, heads, '<');
    c.pipe(up).pipe(c);
    c.on('error', () => up.destroy());
    up.on('error', () => c.destroy());
  });
  await new Promise<void>((r) => bridge.listen(sock, r));
  // Bridge address:3142 → the Unix socket, inside the server namespace.
  const relay: ChildProcess = tb.spawn(ns, process.execPath, [fileURLToPath(import.meta.url), address, String(APT_CACHE_PORT), sock]);
  let relayOut = '';
  relay.stdout?.on('data', (d: Buffer) => (relayOut += d.toString()));
  for (let i = 0; i < 100 && !relayOut.includes('relaying'); i++) await new Promise((r) => setTimeout(r, 50));
  if (!relayOut.includes('relaying')) throw new Error(`the apt cache relay did not start in ${ns}`);

  return {
    url: `http://${address}:${APT_CACHE_PORT}`,
    served() {
      const f = join(logs, 'apt-cacher.log');
      if (!existsSync(f)) return [];
      return readFileSync(f, 'utf8')
        .split('\n')
        .map((l) => l.split('|')[4] ?? '')
        .filter(Boolean);
    },
    log() {
      return ['apt-cacher.log', 'apt-cacher.err', 'requests.log']
        .map((f) => join(logs, f))
        .filter((f) => existsSync(f))
        .map((f) => `== ${f}\n${readFileSync(f, 'utf8')}`)
        .join('\n');
    },
    async stop() {
      await stopChild(relay, 2000);
      await new Promise((r) => bridge.close(r));
      await stopChild(acng, 5000);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Appends the first 2 KiB a socket carries (an HTTP head, as text) to `file`. */
function logHeads(s: Socket, file: string, dir: string): void {
  let seen = 0;
  const onData = (d: Buffer): void => {
    const part = d.subarray(0, 2048 - seen);
    seen += part.length;
    appendFileSync(file, part.toString('latin1').replace(/^/gm, `${dir} `).replace(/\r/g, '\\r') + '\n');
    if (seen >= 2048) s.off('data', onData);
  };
  s.on('data', onData);
}

function waitTcp(host: string, port: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve) => {
    const attempt = (): void => {
      const s = connect(port, host);
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => {
        s.destroy();
        if (Date.now() > deadline) resolve(false);
        else setTimeout(attempt, 100);
      });
    };
    attempt();
  });
}

// Run as a program (inside a namespace): relay TCP <host>:<port> to a Unix socket.
if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [host, port, path] = process.argv.slice(2);
  const server = createServer((c) => {
    const up = connect(path as string);
    c.pipe(up).pipe(c);
    c.on('error', () => up.destroy());
    up.on('error', () => c.destroy());
  });
  server.listen(Number(port), host, () => process.stdout.write(`relaying ${host}:${port} to ${path}\n`));
}
