import type { Mac } from '../server/lib/mac.js';
import { execFile } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { DEFAULT_INSTALLERS } from '../server/boot/releases.js';
import { rawRequest } from './lib/http.js';
import { artifactsFrontConfig, startNginx, type Nginx } from './lib/nginx.js';
import { api, freePort, startRacksmith, type RacksmithProcess } from './lib/racksmith.js';
import { requirements, skipNote } from './lib/tools.js';

const run = promisify(execFile);

/**
 * Installer artifacts as machines fetch them from the real `racksmith serve`: through its nginx
 * front (the shipped packaging/nginx template run by Debian's nginx, real curl downloading from a
 * machine's own loopback address: racksmith decides and records, nginx sends the bytes named in
 * X-Accel-Redirect), and from racksmith alone, whose file workers send whole files. Range, HEAD,
 * jailed paths and unknown names give the same answers either way, and the caller is found by
 * its address (its `ip`, a DHCP lease) without a MAC in the URL.
 */
const test = suite('artifacts over HTTP: the nginx front, the file workers, the caller by address');

const missing = requirements(['nginx', 'curl']);
const work = mkdtempSync(join(tmpdir(), 'racksmith-artifacts-http-'));
const ARTIFACTS = join(work, 'artifacts');
const CACHE = join(work, 'cache');
const ISO = DEFAULT_INSTALLERS['22.04'].iso as string;
const KERNEL = Buffer.from(Array.from({ length: 3 * 1024 * 1024 + 17 }, (_, i) => (i * 31 + (i >> 11)) % 256));
const BIG = Buffer.alloc(24 << 20, 0x5a);
const CACHED = Buffer.from('a file fetched earlier, in the cache\n');
const CP1 = '52:54:00:77:02:11';
const W1 = '52:54:00:77:02:21';
let rs: RacksmithProcess;
let nginx: Nginx;
let admin = '';
let front = '';

async function events(mac: string): Promise<any[]> {
  return (await api(rs.url, admin, 'GET', `/api/v1/machines/${mac}/events`)).body;
}
async function artifactEvents(mac: string): Promise<number> {
  return (await events(mac)).filter((e) => e.type === 'http.artifact').length;
}
/** A real curl from a machine's address; returns the status line's code, the headers and the body. */
async function curl(url: string, from: string, extra: string[] = []): Promise<{ status: number; headers: Record<string, string>; body: Buffer }> {
  const out = join(work, `curl-${Math.random().toString(36).slice(2)}`);
  const { stdout } = await run('curl', ['-sS', '--interface', from, '-D', '-', '-o', out, ...extra, url], { encoding: 'latin1', maxBuffer: 1 << 20, timeout: 60_000 });
  const blocks = stdout.split('\r\n\r\n').filter(Boolean);
  const lines = (blocks[blocks.length - 1] ?? '').split('\r\n');
  const headers: Record<string, string> = {};
  for (const l of lines.slice(1)) {
    const i = l.indexOf(':');
    if (i > 0) headers[l.slice(0, i).toLowerCase()] = l.slice(i + 1).trim();
  }
  let body = Buffer.alloc(0);
  try {
    body = readFileSync(out);
    rmSync(out);
  } catch {
    /* HEAD: no body file */
  }
  return { status: Number(/^HTTP\/[\d.]+ (\d+)/.exec(lines[0] ?? '')?.[1] ?? 0), headers, body };
}
async function health(): Promise<any> {
  return ((await (await fetch(`${rs.url}/healthz`)).json()) as any).services['artifact-workers'];
}

test.before(async () => {
  if (missing) return;
  chmodSync(work, 0o755); // nginx's workers run as nobody
  mkdirSync(join(ARTIFACTS, '22.04'), { recursive: true });
  mkdirSync(join(CACHE, '22.04'), { recursive: true });
  writeFileSync(join(ARTIFACTS, '22.04', 'vmlinuz'), KERNEL);
  writeFileSync(join(ARTIFACTS, '22.04', 'initrd'), 'initrd');
  writeFileSync(join(ARTIFACTS, '22.04', ISO), BIG);
  writeFileSync(join(ARTIFACTS, '22.04', '.hidden'), 'hidden');
  writeFileSync(join(work, 'outside'), 'outside the artifacts directory');
  symlinkSync(join(work, 'outside'), join(ARTIFACTS, '22.04', 'escape'));
  writeFileSync(join(CACHE, '22.04', 'cached.img'), CACHED);
  const frontPort = await freePort();
  front = `http://127.0.0.1:${frontPort}`;
  rs = await startRacksmith({
    env: {
      RACKSMITH_ARTIFACTS_DIR: ARTIFACTS,
      RACKSMITH_ARTIFACTS_CACHE_DIR: CACHE,
      RACKSMITH_ARTIFACTS_URL: front,
      RACKSMITH_ARTIFACTS_FRONTS: '127.0.0.1',
    },
  });
  nginx = await startNginx({
    dir: join(work, 'nginx'),
    servers: artifactsFrontConfig({ ARTIFACTS_LISTEN: `127.0.0.1:${frontPort}`, RACKSMITH_UPSTREAM: new URL(rs.url).host, ARTIFACTS_DIR: ARTIFACTS, ARTIFACTS_CACHE_DIR: CACHE }),
    readyUrl: `${front}/`,
  });
  admin = (await rs.cli(['token', 'create', '--role', 'admin'])).trim();
  assert.is((await api(rs.url, admin, 'POST', '/api/v1/clusters', { name: 'lab', ubuntuRelease: '22.04', kubernetesVersion: '1.28.4', containerRuntime: 'containerd', cni: 'flannel' })).status, 201);
  assert.is((await api(rs.url, admin, 'POST', '/api/v1/machines', { mac: CP1, hostname: 'cp1', role: 'control-plane', cluster: 'lab', ip: '127.0.0.31' })).status, 201);
  assert.is((await api(rs.url, admin, 'POST', '/api/v1/machines', { mac: W1, hostname: 'w1', role: 'worker', cluster: 'lab' })).status, 201);
});

test.after(async () => {
  await nginx?.stop();
  if (rs) {
    await rs.stop();
    rs.cleanup();
  }
  rmSync(work, { recursive: true, force: true });
});

test('the install script sends the kernel, the initrd and the ISO to the front (artifacts-url)', async () => {
  if (missing) return skipNote('artifacts front', missing);
  const s = (await rawRequest(`${rs.url}/boot.ipxe?mac=52-54-00-77-02-11&arch=x86_64&platform=efi`, { localAddress: '127.0.0.31' })).text();
  assert.match(s, new RegExp(`^kernel --name kernel ${front}/artifacts/22\\.04/vmlinuz\\?mac=52-54-00-77-02-11 `, 'm'));
  assert.match(s, new RegExp(`^initrd --name initrd ${front}/artifacts/22\\.04/initrd\\?mac=52-54-00-77-02-11`, 'm'));
  assert.ok(s.includes(` url=${front}/artifacts/22.04/${ISO} `), s);
  assert.ok(s.includes(`ds=nocloud-net;s=${rs.url}/seed/`), 'seeds stay with racksmith');
});

test('racksmith answers a trusted front with X-Accel-Redirect and an empty body, for the machine it names', async () => {
  if (missing) return skipNote('artifacts front', missing);
  const before = await artifactEvents(CP1);
  const r = await rawRequest(`${rs.url}/artifacts/22.04/vmlinuz`, { headers: { 'x-real-ip': '127.0.0.31', 'x-sendfile-type': 'X-Accel-Redirect' } });
  assert.is(r.status, 200);
  assert.is(r.headers['x-accel-redirect'], '/_racksmith/artifacts/local/22.04/vmlinuz');
  assert.is(r.body.length, 0);
  assert.is(await artifactEvents(CP1), before + 1, 'recorded on the machine at the address the front named');
  const cached = await rawRequest(`${rs.url}/artifacts/22.04/cached.img`, { headers: { 'x-sendfile-type': 'X-Accel-Redirect' } });
  assert.is(cached.headers['x-accel-redirect'], '/_racksmith/artifacts/cache/22.04/cached.img');
});

test('curl through nginx from a machine: the bytes from nginx, the event and the step in racksmith', async () => {
  if (missing) return skipNote('artifacts front', missing);
  const before = await artifactEvents(CP1);
  const r = await curl(`${front}/artifacts/22.04/vmlinuz`, '127.0.0.31');
  assert.is(r.status, 200);
  assert.ok(r.body.equals(KERNEL), `${r.body.length} bytes`);
  assert.match(r.headers['server'] ?? '', /^nginx/);
  assert.is(r.headers['x-accel-redirect'], undefined, 'the internal name stays inside');
  assert.is(r.headers['content-length'], String(KERNEL.length));
  assert.is(r.headers['cache-control'], 'public, max-age=3600');
  const ev = (await events(CP1)).filter((e) => e.type === 'http.artifact');
  assert.is(ev.length, before + 1);
  assert.is(ev[ev.length - 1].source, 'http 127.0.0.31', 'the machine, not the front');
  assert.equal([ev[ev.length - 1].data.file, ev[ev.length - 1].data.source], ['vmlinuz', 'local']);
  assert.is((await api(rs.url, admin, 'GET', `/api/v1/machines/${CP1}`)).body.lastStep, 'installer');
  const iso = await curl(`${front}/artifacts/22.04/${ISO}`, '127.0.0.31');
  assert.ok(iso.body.equals(BIG), 'the ISO');
  assert.ok((await curl(`${front}/artifacts/22.04/cached.img`, '127.0.0.31')).body.equals(CACHED), 'a file of the cache directory');
});

test('Range and HEAD through the front', async () => {
  if (missing) return skipNote('artifacts front', missing);
  const part = await curl(`${front}/artifacts/22.04/vmlinuz?mac=52-54-00-77-02-11`, '127.0.0.31', ['-r', '1000-1999']);
  assert.is(part.status, 206);
  assert.is(part.headers['content-range'], `bytes 1000-1999/${KERNEL.length}`);
  assert.ok(part.body.equals(KERNEL.subarray(1000, 2000)));
  const tail = await curl(`${front}/artifacts/22.04/vmlinuz`, '127.0.0.31', ['-r', '-100']);
  assert.ok(tail.body.equals(KERNEL.subarray(KERNEL.length - 100)));
  const head = await rawRequest(`${front}/artifacts/22.04/vmlinuz`, { method: 'HEAD', localAddress: '127.0.0.31' });
  assert.is(head.status, 200);
  assert.is(head.headers['content-length'], String(KERNEL.length));
  assert.is(head.headers['accept-ranges'], 'bytes');
  assert.is(head.body.length, 0);
});

test('jailed and unknown names: the same 404s with or without the front, and no filesystem path', async () => {
  if (missing) return skipNote('artifacts front', missing);
  // [path, racksmith's code, the front's code]: nginx resolves `../` itself, so that path never
  // reaches racksmith through the front — it gets the front's own 404, in the same shape.
  const cases: [string, string, string][] = [
    ['/artifacts/22.04/..%2F..%2Fetc%2Fpasswd', 'ERR_UNKNOWN_ARTIFACT', 'ERR_NOT_FOUND'],
    ['/artifacts/22.04/.hidden', 'ERR_UNKNOWN_ARTIFACT', 'ERR_UNKNOWN_ARTIFACT'],
    ['/artifacts/22.04/escape', 'ERR_UNKNOWN_ARTIFACT', 'ERR_UNKNOWN_ARTIFACT'],
    ['/artifacts/22.04/nosuchfile', 'ERR_UNKNOWN_ARTIFACT', 'ERR_UNKNOWN_ARTIFACT'],
    ['/artifacts/99.04/vmlinuz', 'ERR_UNKNOWN_RELEASE', 'ERR_UNKNOWN_RELEASE'],
  ];
  for (const [path, direct, fronted] of cases) {
    for (const [base, code] of [[rs.url, direct], [front, fronted]] as const) {
      const r = await curl(`${base}${path}`, '127.0.0.31');
      assert.is(r.status, 404, `${base}${path}`);
      const text = r.body.toString();
      assert.is(JSON.parse(text).error.code, code, `${base}${path}: ${text}`);
      assert.not.ok(text.includes(work), 'no filesystem path');
    }
  }
  // The front's own names for the directories are reachable only through racksmith's answer.
  for (const path of ['/_racksmith/artifacts/local/22.04/vmlinuz', '/_racksmith/artifacts/cache/22.04/cached.img', '/boot.ipxe', '/seed/x/user-data']) {
    assert.is((await curl(`${front}${path}`, '127.0.0.31')).status, 404, path);
  }
});

test('nobody but a trusted front can claim an address or ask for X-Accel-Redirect', async () => {
  if (missing) return skipNote('artifacts front', missing);
  const before = await artifactEvents(CP1);
  const r = await rawRequest(`${rs.url}/artifacts/22.04/vmlinuz`, { localAddress: '127.0.0.5', headers: { 'x-real-ip': '127.0.0.31', 'x-sendfile-type': 'X-Accel-Redirect' } });
  assert.is(r.status, 200);
  assert.is(r.headers['x-accel-redirect'], undefined);
  assert.ok(r.body.equals(KERNEL), 'racksmith sent the bytes itself');
  assert.is(await artifactEvents(CP1), before, 'not recorded on the machine whose address was claimed');
});

test('a machine without a MAC in the URL or an ip of its own is found by its DHCP lease', async () => {
  if (missing) return skipNote('artifacts front', missing);
  // The lease as racksmith's DHCP service writes it; the test writes it the same way.
  const store = await rs.openStore();
  try {
    const now = new Date();
    const [bound] = await store.leases.bindAll([{ ip: '127.0.0.22', mac: W1 as Mac, expiresAt: new Date(now.getTime() + 3600_000).toISOString() }], now);
    assert.ok(bound?.ok);
  } finally {
    await store.close();
  }
  const before = await artifactEvents(W1);
  const r = await curl(`${front}/artifacts/22.04/initrd`, '127.0.0.22');
  assert.is(r.body.toString(), 'initrd');
  assert.is(await artifactEvents(W1), before + 1);
  const unknown = await curl(`${front}/artifacts/22.04/initrd`, '127.0.0.23');
  assert.is(unknown.status, 200, 'an address racksmith cannot place still gets the file');
});

test('racksmith alone: whole files by the file workers, many at once; Range and HEAD in the main process', async () => {
  if (missing) return skipNote('file workers', missing);
  // The first download starts the workers; until they are ready the main process sends.
  let byWorker = false;
  for (let i = 0; i < 50 && !byWorker; i++) {
    const r = await rawRequest(`${rs.url}/artifacts/22.04/vmlinuz?mac=52-54-00-77-02-11`);
    assert.ok(r.body.equals(KERNEL));
    byWorker = r.headers['connection'] === 'close';
    if (!byWorker) await new Promise((res) => setTimeout(res, 100));
  }
  assert.ok(byWorker, 'a file worker answered');
  const urls = Array.from({ length: 12 }, (_, i) => `${rs.url}/artifacts/22.04/${i % 2 ? 'vmlinuz' : ISO}`);
  const bodies = await Promise.all(urls.map((u) => rawRequest(u, { localAddress: '127.0.0.31' })));
  bodies.forEach((r, i) => assert.ok(r.body.equals(i % 2 ? KERNEL : BIG), urls[i]));
  const h = await health();
  assert.ok(h.detail.handed >= 13, JSON.stringify(h));
  assert.is(h.detail.ready, 2);
  const part = await rawRequest(`${rs.url}/artifacts/22.04/vmlinuz`, { headers: { range: 'bytes=5-9' } });
  assert.is(part.status, 206);
  assert.ok(part.body.equals(KERNEL.subarray(5, 10)));
  const head = await rawRequest(`${rs.url}/artifacts/22.04/vmlinuz`, { method: 'HEAD' });
  assert.is(head.status, 200);
  assert.is(head.headers['content-length'], String(KERNEL.length));
  assert.is(head.body.length, 0);
  assert.is((await health()).detail.handed, h.detail.handed, 'neither went to a worker');
});

test('a file worker killed mid-download: that download is cut, another worker takes its place', async () => {
  if (missing) return skipNote('file workers', missing);
  const before = await health();
  const slow = run('curl', ['-sS', '--limit-rate', '1M', '-o', '/dev/null', '-w', '%{size_download}', `${rs.url}/artifacts/22.04/${ISO}`], { timeout: 60_000 }).then(
    (r) => ({ ok: true, out: r.stdout }),
    (err: { stdout?: string; code?: number }) => ({ ok: false, out: `${err.stdout ?? ''} exit ${err.code}` }),
  );
  for (let i = 0; i < 100 && (await health()).detail.inFlight === 0; i++) await new Promise((r) => setTimeout(r, 50));
  for (const pid of before.detail.pids as number[]) process.kill(pid, 'SIGKILL');
  const cut = await slow;
  assert.not.ok(cut.ok, `the download was cut: ${cut.out}`);
  // The cut reaches curl from the kernel, maybe before racksmith has heard of the exits: until
  // then its health still counts the killed workers as ready.
  const replaced = (d: typeof before.detail): boolean => d.ready === 2 && d.restarts >= before.detail.restarts + 2;
  let after = await health();
  for (let i = 0; i < 100 && !replaced(after.detail); i++) {
    await new Promise((r) => setTimeout(r, 100));
    after = await health();
  }
  assert.ok(replaced(after.detail), JSON.stringify(after));
  const again = await rawRequest(`${rs.url}/artifacts/22.04/vmlinuz`);
  assert.ok(again.body.equals(KERNEL));
  assert.is(again.headers['connection'], 'close', 'by a new worker');
});

test('SIGTERM with a download in flight: racksmith stops cleanly once the grace runs out; the front then answers 502', async () => {
  if (missing) return skipNote('file workers', missing);
  const slow = run('curl', ['-sS', '--limit-rate', '500K', '-o', '/dev/null', `${rs.url}/artifacts/22.04/${ISO}`], { timeout: 60_000 }).then(
    () => 'finished',
    () => 'cut',
  );
  for (let i = 0; i < 100 && (await health()).detail.inFlight === 0; i++) await new Promise((r) => setTimeout(r, 50));
  // The helper's stop kills after 15 s: an exit code of 0 means it stopped by itself.
  assert.is(await rs.stop(), 0);
  assert.is(await slow, 'cut');
  const r = await curl(`${front}/artifacts/22.04/vmlinuz`, '127.0.0.31');
  assert.is(r.status, 502, 'the front says racksmith is gone');
  assert.is(JSON.parse(r.body.toString()).error.code, 'ERR_UNREACHABLE');
});

test.run();
