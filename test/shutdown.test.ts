import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { CLI_PATH } from '../server/lib/paths.js';
import { api, freePort, offlineUpstreams, startRacksmith, type RacksmithProcess } from './lib/racksmith.js';

/**
 * SIGTERM drains: a request in flight when the signal arrives still completes, new connections
 * are refused at once, idle keep-alive connections are closed, the process exits 0 with the
 * store closed (SQLite removes its WAL on a clean close), and a restart sees everything.
 */
const test = suite('shutdown: SIGTERM finishes in-flight requests, refuses new ones, exits 0');

let rs: RacksmithProcess;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function open(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

/** Reads from a socket until the peer closes it (bounded); `closed` is false on a timeout. */
function readAll(s: Socket, timeoutMs = 10_000): Promise<{ text: string; closed: boolean }> {
  return new Promise((resolve) => {
    let got = '';
    const timer = setTimeout(() => resolve({ text: got, closed: false }), timeoutMs);
    s.on('data', (d: Buffer) => (got += d.toString()));
    s.on('close', () => {
      clearTimeout(timer);
      resolve({ text: got, closed: true });
    });
    s.on('error', () => undefined);
  });
}

/** Polls (bounded) until `check` holds. */
async function until(what: string, check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** A whole HTTP response: its head, and as many body bytes as its Content-Length says. */
function whole(text: string): boolean {
  const end = text.indexOf('\r\n\r\n');
  const length = /\r\ncontent-length: *(\d+)/i.exec(text)?.[1];
  return end >= 0 && length !== undefined && Buffer.byteLength(text.slice(end + 4)) >= Number(length);
}

test.after(() => {
  if (rs) rmSync(rs.dataDir, { recursive: true, force: true });
});

test('an import in flight at SIGTERM completes; new connections are refused; exit 0; a restart sees it', async () => {
  rs = await startRacksmith({ env: { RACKSMITH_LOG_LEVEL: 'info' } });
  const admin = (await rs.cli(['token', 'create', '--role', 'admin'])).trim();
  const c = await api(rs.url, admin, 'POST', '/api/v1/clusters', { name: 'drain', ubuntuRelease: '22.04', kubernetesVersion: '1.28.4', containerRuntime: 'containerd', cni: 'flannel' });
  assert.is(c.status, 201);
  const port = Number(new URL(rs.url).port);

  const rows = Array.from({ length: 200 }, (_, i) => `52:54:00:d0:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')},d${i},worker,drain`);
  const body = Buffer.from(['mac,hostname,role,cluster', ...rows].join('\n') + '\n');
  const half = Math.floor(body.length / 2);

  // An idle keep-alive connection: a finished request, the socket left open.
  const idle = await open(port);
  const idleClosed = readAll(idle);
  let idleText = '';
  idle.on('data', (d: Buffer) => (idleText += d.toString()));
  idle.write(`GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n`);
  // Idle once its answer is here, not after a fixed wait: a server starved of CPU may not have
  // answered yet, and SIGTERM would then find the connection busy (or its request unread).
  await until('the keep-alive connection\'s answer', () => whole(idleText));

  // The in-flight request: headers and half the body sent, the rest held back.
  const busy = await open(port);
  const reply = readAll(busy, 20_000);
  busy.write(`POST /api/v1/machines/import HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer ${admin}\r\nContent-Type: text/csv\r\nContent-Length: ${body.length}\r\n\r\n`);
  busy.write(body.subarray(0, half));
  // In flight once racksmith has read its head: a request on a connection opened after it is
  // answered only then (connections are accepted, read and their requests started in arrival
  // order). After a fixed wait, a server starved of CPU could take SIGTERM first and close the
  // unread connection as idle.
  const probe = await open(port);
  const probed = readAll(probe);
  probe.write(`GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
  assert.match((await probed).text, /^HTTP\/1\.1 \d{3} /, 'the probe behind the import was answered');

  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => rs.child.once('exit', (code, signal) => resolve({ code, signal })));
  rs.child.kill('SIGTERM');

  // New connections are refused once the listener is closed (at once, but bounded here).
  let refused = false;
  for (let i = 0; i < 100 && !refused; i++) {
    try {
      (await open(port)).destroy();
      await sleep(20);
    } catch (err) {
      refused = (err as NodeJS.ErrnoException).code === 'ECONNREFUSED';
    }
  }
  assert.ok(refused, 'a new connection was still accepted after SIGTERM');
  const idleReply = await idleClosed;
  assert.match(idleReply.text, /^HTTP\/1\.1 200 /, 'the idle connection had its answer');
  assert.ok(idleReply.closed, 'the idle keep-alive connection was left open');
  assert.is(rs.child.exitCode, null, 'exited before the in-flight request finished');

  // The rest of the body, the socket left open for the answer, as an HTTP client does (a client
  // that half-closes first has its request aborted by Node's server, answer or not).
  busy.write(body.subarray(half));
  const answer = await reply;
  assert.match(answer.text, /^HTTP\/1\.1 201 /, answer.text.slice(0, 300));
  assert.match(answer.text, /"imported":200/);

  const { code, signal } = await exited;
  assert.is(signal, null);
  assert.is(code, 0, rs.output().slice(-2000));
  assert.match(rs.output(), /"reason":"SIGTERM".*"msg":"stopping"/);
  assert.match(rs.output(), /"msg":"stopped"/);
  // The last connection closed cleanly: SQLite checkpointed and removed its write-ahead log.
  assert.not.ok(existsSync(join(rs.dataDir, 'racksmith.db-wal')), 'the WAL is left over: the store was not closed');

  rs = await startRacksmith({ dataDir: rs.dataDir, env: { RACKSMITH_LOG_LEVEL: 'warn' } });
  const got = await api(rs.url, admin, 'GET', '/api/v1/machines?cluster=drain');
  assert.is(got.body.length, 200);
  assert.is(await rs.stop(), 0);
});

test('a SIGTERM while the services are still starting: they finish starting, then stop cleanly; exit 0', async () => {
  // What systemd does to a unit stopped while it comes up: the signal must not find the process
  // without its handler. It is sent when the instance lock's pid file appears, as the store opens.
  const data = mkdtempSync(join(tmpdir(), 'racksmith-early-term-'));
  const port = await freePort();
  const child = spawn(process.execPath, [CLI_PATH, 'serve'], {
    env: { PATH: process.env['PATH'] ?? '', RACKSMITH_DATA_DIR: data, RACKSMITH_HTTP_PORT: String(port), RACKSMITH_HTTP_ADDRESS: '127.0.0.1', RACKSMITH_DHCP_MODE: 'off', RACKSMITH_TFTP_PORT: '0', RACKSMITH_LOG_LEVEL: 'info', ...offlineUpstreams() },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  try {
    for (let i = 0; i < 20_000 && !existsSync(join(data, 'racksmith.pid')) && child.exitCode === null; i++) await sleep(1);
    assert.ok(existsSync(join(data, 'racksmith.pid')), `racksmith never took its data directory's lock:\n${output}`);
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    const code = await exited;
    clearTimeout(timer);
    assert.is(code, 0, `exit after a SIGTERM while starting:\n${output.slice(-2000)}`);
    assert.match(output, /"reason":"SIGTERM","msg":"stopping"/);
    assert.match(output, /"msg":"stopped"/);
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
    rmSync(data, { recursive: true, force: true });
  }
});

test.run();
