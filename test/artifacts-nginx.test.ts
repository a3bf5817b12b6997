import { execFile } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import * as assert from 'uvu/assert';
import { DEFAULT_INSTALLERS } from '../server/boot/releases.js';
import { nginxFrontConfig, TEMPLATE_PATH } from '../server/artifacts/nginx-front.js';
import { rawRequest } from './lib/http.js';
import { api, freePort, offlineUpstreams, runCli, startRacksmith, type RacksmithProcess } from './lib/racksmith.js';
import { suite } from './lib/suite.js';
import { requirements, skipNote } from './lib/tools.js';

const run = promisify(execFile);

/**
 * racksmith's own artifacts front (`artifacts-nginx-port`): the real `racksmith serve` writes the
 * configuration of Debian's nginx from the shipped template, starts it as its child, points the
 * install scripts at it, trusts it, restarts it when it dies, ends it at stop — and ends one left
 * behind by a racksmith that was killed. Machines download with real curl from their own
 * loopback addresses.
 */
const test = suite('artifacts over HTTP: racksmith runs its own nginx front');

const missing = requirements(['nginx', 'curl']);
const work = mkdtempSync(join(tmpdir(), 'racksmith-artifacts-nginx-'));
const ARTIFACTS = join(work, 'artifacts');
const ISO = DEFAULT_INSTALLERS['22.04'].iso as string;
const KERNEL = Buffer.from(Array.from({ length: 2 * 1024 * 1024 + 5 }, (_, i) => (i * 7 + (i >> 9)) % 256));
const CP1 = '52:54:00:77:03:11';
let rs: RacksmithProcess;
let admin = '';
let frontPort = 0;
let front = '';
const dataDir = join(work, 'data');
/** Every nginx pid this suite saw, ended in teardown if a failed test left one. */
const seen = new Set<number>();

function env(): Record<string, string> {
  return { RACKSMITH_ARTIFACTS_DIR: ARTIFACTS, RACKSMITH_ARTIFACTS_NGINX_PORT: String(frontPort) };
}
async function frontHealth(r: RacksmithProcess = rs): Promise<any> {
  return ((await (await fetch(`${r.url}/healthz`)).json()) as any).services['artifacts-nginx'];
}
/** Running (a zombie waiting for whoever adopted it to reap it is not). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}
/** The processes whose parent is `pid` (nginx's workers under its master). */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push(Number(d));
    } catch {
      // gone
    }
  }
  return out;
}
function parentOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
}
async function until(what: string, check: () => Promise<boolean> | boolean, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.unreachable(`${what} within ${ms / 1000} s`);
}
async function curl(url: string, from: string, extra: string[] = []): Promise<{ status: number; body: Buffer; server: string }> {
  const out = join(work, `curl-${Math.random().toString(36).slice(2)}`);
  const { stdout } = await run('curl', ['-sS', '--interface', from, '-o', out, '-w', '%{http_code} %header{server}', ...extra, url], { timeout: 60_000 });
  const body = readFileSync(out);
  rmSync(out);
  const [status, server] = stdout.split(' ');
  return { status: Number(status), body, server: server ?? '' };
}
async function artifactEvents(mac: string): Promise<any[]> {
  return ((await api(rs.url, admin, 'GET', `/api/v1/machines/${mac}/events`)).body as any[]).filter((e) => e.type === 'http.artifact');
}

test.before(async () => {
  if (missing) return;
  chmodSync(work, 0o755);
  mkdirSync(join(ARTIFACTS, '22.04'), { recursive: true });
  writeFileSync(join(ARTIFACTS, '22.04', 'vmlinuz'), KERNEL);
  writeFileSync(join(ARTIFACTS, '22.04', 'initrd'), 'initrd');
  writeFileSync(join(ARTIFACTS, '22.04', ISO), Buffer.alloc(8 << 20, 0x33));
  frontPort = await freePort();
  front = `http://127.0.0.1:${frontPort}`;
  rs = await startRacksmith({ dataDir, env: env() });
  admin = (await rs.cli(['token', 'create', '--role', 'admin'])).trim();
  assert.is((await api(rs.url, admin, 'POST', '/api/v1/clusters', { name: 'lab', ubuntuRelease: '22.04', kubernetesVersion: '1.28.4', containerRuntime: 'containerd', cni: 'flannel' })).status, 201);
  assert.is((await api(rs.url, admin, 'POST', '/api/v1/machines', { mac: CP1, hostname: 'cp1', role: 'control-plane', cluster: 'lab', ip: '127.0.0.41' })).status, 201);
});

test.after(async () => {
  if (rs) await rs.stop();
  for (const pid of seen) if (alive(pid)) process.kill(pid, 'SIGKILL');
  rmSync(work, { recursive: true, force: true });
});

test('the generated configuration is one nginx accepts (nginx -t), with the front where racksmith says', async () => {
  if (missing) return skipNote('artifacts nginx', missing);
  const dir = join(work, 'conf-check');
  mkdirSync(dir);
  const opts = { httpAddress: '0.0.0.0', httpPort: 8080, port: 8081, artifactsDir: '/srv/a', cacheDir: '/srv/c', dir };
  const asRoot = nginxFrontConfig(opts, readFileSync(TEMPLATE_PATH, 'utf8'), true);
  assert.match(asRoot, /^\s*listen 8081;$/m);
  assert.match(asRoot, /^\s*server 127\.0\.0\.1:8080;$/m, 'racksmith on all addresses: nginx asks it on loopback');
  assert.match(asRoot, /^user root root;$/m);
  assert.not.match(nginxFrontConfig(opts, readFileSync(TEMPLATE_PATH, 'utf8'), false), /^user /m, 'not root: no user switch');
  const bound = nginxFrontConfig({ ...opts, httpAddress: '10.77.0.1' }, readFileSync(TEMPLATE_PATH, 'utf8'), false);
  assert.match(bound, /^\s*listen 10\.77\.0\.1:8081;$/m);
  assert.match(bound, /^\s*server 10\.77\.0\.1:8080;$/m);
  writeFileSync(join(dir, 'nginx.conf'), asRoot);
  const checked = await run('nginx', ['-t', '-p', dir, '-c', join(dir, 'nginx.conf'), '-e', 'stderr']).then(
    (r) => r.stderr,
    (err: { stderr?: string }) => `failed: ${err.stderr ?? ''}`,
  );
  assert.match(checked, /syntax is ok/, checked);
  assert.match(checked, /test is successful/, checked);
});

test('racksmith starts nginx as its child and the install script sends the artifacts to it', async () => {
  if (missing) return skipNote('artifacts nginx', missing);
  const h = await frontHealth();
  assert.is(h.state, 'serving', JSON.stringify(h));
  assert.is(h.detail.port, frontPort);
  seen.add(h.detail.pid);
  assert.is(parentOf(h.detail.pid), rs.child.pid, "racksmith's child");
  assert.ok(childrenOf(h.detail.pid).length >= 1, 'with its workers');
  const s = (await rawRequest(`${rs.url}/boot.ipxe?mac=52-54-00-77-03-11&arch=x86_64&platform=efi`, { localAddress: '127.0.0.41' })).text();
  assert.match(s, new RegExp(`^kernel --name kernel ${front}/artifacts/22\\.04/vmlinuz\\?mac=52-54-00-77-03-11 `, 'm'));
  assert.match(s, new RegExp(`^initrd --name initrd ${front}/artifacts/22\\.04/initrd\\?mac=`, 'm'));
  assert.ok(s.includes(` url=${front}/artifacts/22.04/${ISO} `), s);
  assert.ok(s.includes(`ds=nocloud-net;s=${rs.url}/seed/`), 'seeds stay with racksmith');
});

test('a machine downloads through it: bytes from nginx, the event on the machine it named (trusted without artifacts-fronts)', async () => {
  if (missing) return skipNote('artifacts nginx', missing);
  const before = (await artifactEvents(CP1)).length;
  const r = await curl(`${front}/artifacts/22.04/vmlinuz`, '127.0.0.41');
  assert.is(r.status, 200);
  assert.ok(r.body.equals(KERNEL), `${r.body.length} bytes`);
  assert.match(r.server, /^nginx/);
  const ev = await artifactEvents(CP1);
  assert.is(ev.length, before + 1);
  assert.is(ev[ev.length - 1].source, 'http 127.0.0.41', 'the machine, not the front');
  const part = await curl(`${front}/artifacts/22.04/vmlinuz`, '127.0.0.41', ['-r', '100-199']);
  assert.is(part.status, 206);
  assert.ok(part.body.equals(KERNEL.subarray(100, 200)));
  const unknown = await curl(`${front}/artifacts/22.04/nosuchfile`, '127.0.0.41');
  assert.is(unknown.status, 404);
  assert.is(JSON.parse(unknown.body.toString()).error.code, 'ERR_UNKNOWN_ARTIFACT', 'racksmith decided');
  // A machine talking to racksmith itself is not the front: its headers are ignored.
  const direct = await rawRequest(`${rs.url}/artifacts/22.04/vmlinuz`, { localAddress: '127.0.0.42', headers: { 'x-real-ip': '127.0.0.41', 'x-sendfile-type': 'X-Accel-Redirect' } });
  assert.is(direct.headers['x-accel-redirect'], undefined);
  assert.ok(direct.body.equals(KERNEL));
});

test('nginx killed: racksmith says so in /healthz and starts it again', async () => {
  if (missing) return skipNote('artifacts nginx', missing);
  const first = await frontHealth();
  const workers = childrenOf(first.detail.pid);
  workers.forEach((p) => seen.add(p));
  assert.ok(workers.length >= 1);
  process.kill(first.detail.pid, 'SIGKILL');
  await until('nginx running again', async () => {
    const h = await frontHealth();
    return h.state === 'serving' && h.detail.pid !== first.detail.pid;
  });
  const again = await frontHealth();
  seen.add(again.detail.pid);
  assert.is(again.detail.restarts, 1);
  assert.match(again.detail.lastExit, /SIGKILL/);
  for (const p of workers) assert.not.ok(alive(p), `the killed master's worker ${p}, which held the port`);
  assert.ok((await curl(`${front}/artifacts/22.04/vmlinuz`, '127.0.0.41')).body.equals(KERNEL));
});

test('racksmith killed leaves nginx behind; the next racksmith on that data directory ends it and runs its own', async () => {
  if (missing) return skipNote('artifacts nginx', missing);
  const left = (await frontHealth()).detail.pid as number;
  await rs.kill9();
  assert.ok(alive(left), 'an orphan, as after a crash');
  rs = await startRacksmith({ dataDir, env: env() });
  const h = await frontHealth();
  seen.add(h.detail.pid);
  assert.is(h.state, 'serving');
  assert.is.not(h.detail.pid, left);
  await until('the leftover nginx gone', () => !alive(left), 5000);
  assert.ok((await curl(`${front}/artifacts/22.04/initrd`, '127.0.0.41')).body.equals(Buffer.from('initrd')));
});

test('racksmith stopped: nginx and its workers end with it', async () => {
  if (missing) return skipNote('artifacts nginx', missing);
  const pid = (await frontHealth()).detail.pid as number;
  const workers = childrenOf(pid);
  assert.ok(workers.length >= 1);
  workers.forEach((p) => seen.add(p));
  assert.is(await rs.stop(), 0);
  for (const p of [pid, ...workers]) assert.not.ok(alive(p), `process ${p} still running`);
  const refused = await run('curl', ['-sS', '-m', '5', '-o', '/dev/null', `${front}/`]).then(
    () => 'answered',
    (err: { code?: number }) => `curl exit ${err.code}`,
  );
  assert.is(refused, 'curl exit 7', 'nothing listens on the front port');
});

test('a front that cannot start stops racksmith with one line: the port taken, nginx missing, the HTTP port', async () => {
  if (missing) return skipNote('artifacts nginx', missing);
  const base = (dir: string, port: number): Record<string, string> => ({
    RACKSMITH_DATA_DIR: join(work, dir),
    RACKSMITH_HTTP_ADDRESS: '127.0.0.1',
    RACKSMITH_HTTP_PORT: String(port),
    RACKSMITH_DHCP_MODE: 'off',
    RACKSMITH_TFTP_PORT: '0',
    RACKSMITH_ARTIFACTS_DIR: ARTIFACTS,
    ...offlineUpstreams(),
  });
  const taken = createServer();
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
  const takenPort = (taken.address() as { port: number }).port;
  try {
    const busy = await runCli(['serve'], { ...base('busy', await freePort()), RACKSMITH_ARTIFACTS_NGINX_PORT: String(takenPort) }, 40_000);
    assert.is(busy.code, 1, busy.stderr);
    assert.match(busy.stderr, new RegExp(`artifacts-nginx: cannot start \\(artifacts-nginx-port ${takenPort}\\): .*Address already in use`));
  } finally {
    taken.close();
  }
  const none = await runCli(['serve'], { ...base('none', await freePort()), RACKSMITH_ARTIFACTS_NGINX_PORT: String(await freePort()), RACKSMITH_NGINX_BINARY: 'no-such-nginx' }, 40_000);
  assert.is(none.code, 1, none.stderr);
  assert.match(none.stderr, /artifacts-nginx: cannot start \(nginx-binary no-such-nginx\): nginx is not installed here/);
  const same = await freePort();
  const clash = await runCli(['serve'], { ...base('clash', same), RACKSMITH_ARTIFACTS_NGINX_PORT: String(same) }, 40_000);
  assert.is(clash.code, 1, clash.stderr);
  assert.match(clash.stderr, /artifacts-nginx: cannot start \(artifacts-nginx-port \d+\): the same port as http-port/);
});

test('racksmith stopped while nginx cannot start again (its port taken): it stops, and no nginx is left', async () => {
  if (missing) return skipNote('artifacts nginx', missing);
  const dir = join(work, 'data-stuck');
  rs = await startRacksmith({ dataDir: dir, env: env() });
  const first = (await frontHealth()).detail.pid as number;
  seen.add(first);
  process.kill(first, 'SIGKILL');
  // Someone else takes the port as soon as the killed nginx's workers let it go.
  const squatter = createServer();
  await until('the port taken by another program', async () => {
    const ok = await new Promise<boolean>((resolve) => {
      squatter.once('error', () => resolve(false));
      squatter.listen(frontPort, '127.0.0.1', () => resolve(true));
    });
    return ok;
  }, 5000);
  try {
    await until('a failed restart reported', async () => /Address already in use|did not listen/.test(String((await frontHealth()).detail.lastExit ?? '')), 20_000);
    const started = Date.now();
    assert.is(await rs.stop(), 0);
    assert.ok(Date.now() - started < 15_000, `stopped after ${Date.now() - started} ms`);
    const conf = join(dir, 'artifacts-nginx', 'nginx.conf');
    const left = readdirSync('/proc')
      .filter((d) => /^\d+$/.test(d))
      .filter((d) => {
        try {
          return readFileSync(`/proc/${d}/cmdline`, 'utf8').includes(conf) && alive(Number(d));
        } catch {
          return false;
        }
      });
    assert.equal(left, [], 'an nginx of this racksmith still running');
  } finally {
    squatter.close();
  }
});

test.run();
