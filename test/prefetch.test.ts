import { createServer, type Server } from 'node:http';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { createArtifactStore } from '../server/artifacts/store.js';
import { prefetchArtifacts, prefetchLine, prefetchList, type PrefetchItem } from '../server/artifacts/prefetch.js';
import { DEFAULT_INSTALLERS, resolveInstallers } from '../server/boot/releases.js';
import { silentLogger } from '../server/lib/log.js';
import { startBmcSim, type BmcSim } from './lib/bmc-sim.js';
import { api, startRacksmith, type RacksmithProcess } from './lib/racksmith.js';
import { requirements, skipNote } from './lib/tools.js';

/**
 * Issue 17, item 12: installer artifacts fetched before the rush. The artifacts store with an
 * upstream of the test's own (a slow one, so progress shows), single-flight with a machine's
 * request; then the real server: `racksmith artifacts prefetch`, its NDJSON API, and a rack
 * power-on whose first phase caches the installer before the BMC is asked to power on.
 */
const test = suite('prefetch: installer artifacts cached before the machines ask, with progress');

const ISO = 'ubuntu-20.04.6-live-server-amd64.iso';
const ISO_BYTES = Buffer.from(Array.from({ length: 3 * 1024 * 1024 }, (_, i) => (i * 7) % 251));
let upstream: Server;
let base = '';
const gets: string[] = [];
let isoDoneAt = 0;
const work = mkdtempSync(join(tmpdir(), 'racksmith-prefetch-'));
const files = new Map<string, Buffer | string>();

test.before(async () => {
  files.set(`/releases/${ISO}`, ISO_BYTES);
  files.set('/releases/vmlinuz', 'kernel');
  files.set('/releases/initrd', 'initrd');
  // What the cluster's preflight reads before a power-on (all present: the power-on may go ahead).
  const release = (suite: string, list: string[]) => `Origin: Test\nSuite: ${suite}\nSHA256:\n${list.map((f) => ` ${'0'.repeat(64)} 1 ${f}`).join('\n')}\n`;
  for (const s of ['focal', 'focal-updates']) files.set(`/ubuntu/dists/${s}/Release`, release(s, []));
  files.set('/pkgs/core:/stable:/v1.30/deb/Release', release('', ['Packages']));
  files.set('/pkgs/core:/stable:/v1.30/deb/Packages', ['kubelet', 'kubeadm', 'kubectl'].map((p) => `Package: ${p}\nVersion: 1.30.6-1.1\n`).join('\n'));
  files.set('/pkgs/core:/stable:/v1.30/deb/Release.key', 'key');
  files.set('/cni/flannel-v0.27.4.yml', 'kind: List\n');
  upstream = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    // The preflight's requests (status only) say who they are; downloads are the store's.
    gets.push(`${req.method} ${path}${req.headers['user-agent'] === 'racksmith-preflight' ? ' (preflight)' : ''}`);
    const body = files.get(path);
    if (body === undefined) {
      res.writeHead(404).end('not found\n');
      return;
    }
    const buf = Buffer.from(body);
    res.writeHead(200, { 'content-length': String(buf.length) });
    if (req.method === 'HEAD' || buf.length < 1024 * 1024) {
      res.end(req.method === 'HEAD' ? undefined : buf);
      return;
    }
    // A slow upstream: 96 KiB every 100 ms, so a download takes 3 s: the server reports progress
    // each second and the CLI asks every half second, so a 1 s download could end unseen.
    let at = 0;
    const tick = (): void => {
      if (res.destroyed) return;
      const part = buf.subarray(at, at + 96 * 1024);
      at += part.length;
      if (at >= buf.length) {
        res.end(part, () => (isoDoneAt = Date.now()));
        return;
      }
      res.write(part);
      setTimeout(tick, 100);
    };
    tick();
  });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(upstream.address() as { port: number }).port}`;
});

test.after(async () => {
  await rs?.stop();
  rs?.cleanup();
  await sim?.stop();
  await new Promise<void>((r) => upstream?.close(() => r()));
  rmSync(work, { recursive: true, force: true });
});

const installerOverrides = () => ({ '20.04': { upstream: { [ISO]: `${base}/releases/${ISO}`, vmlinuz: `${base}/releases/vmlinuz`, initrd: `${base}/releases/initrd` } } });

test('the list: per release, the ISO first (its kernel and initrd may come out of it), each release once', () => {
  assert.equal(prefetchList([DEFAULT_INSTALLERS['22.04'], DEFAULT_INSTALLERS['18.04'], DEFAULT_INSTALLERS['22.04']]), [
    { release: '22.04', file: 'ubuntu-22.04.5-live-server-amd64.iso' },
    { release: '22.04', file: 'vmlinuz' },
    { release: '22.04', file: 'initrd' },
    { release: '18.04', file: 'linux' },
    { release: '18.04', file: 'initrd.gz' },
  ]);
  assert.is(prefetchLine({ release: '22.04', file: 'x.iso', state: 'fetching', source: null, bytes: 512 * 1024 * 1024, total: 2 * 1024 ** 3, error: null }), '22.04/x.iso  fetching  512.0 MiB of 2.00 GiB (25%)');
  assert.is(prefetchLine({ release: '18.04', file: 'linux', state: 'failed', source: null, bytes: 0, total: null, error: 'HTTP 404' }), '18.04/linux  FAILED: HTTP 404');
});

test('the store: progress while it downloads, one download for a prefetch and a machine asking at once, cached afterwards', async () => {
  const dir = join(work, 'store');
  const store = createArtifactStore({ artifactsDir: join(dir, 'local'), cacheDir: join(dir, 'cache'), installers: resolveInstallers(installerOverrides()), fetchIdleTimeoutMs: 10_000, log: silentLogger() });
  const seen: PrefetchItem[][] = [];
  const before = gets.length;
  const list = prefetchList([resolveInstallers(installerOverrides())['20.04']]);
  const running = prefetchArtifacts(store, list, { intervalMs: 100, onProgress: (items) => seen.push(items.map((i) => ({ ...i }))) });
  // A machine asks for the ISO while the prefetch downloads it: it joins the same download. Once
  // the upstream has the prefetch's request, not after a fixed wait that a starved process may
  // end before the prefetch has asked.
  for (let i = 0; i < 200 && !gets.slice(before).includes(`GET /releases/${ISO}`); i++) await new Promise((r) => setTimeout(r, 50));
  assert.ok(gets.slice(before).includes(`GET /releases/${ISO}`), 'the prefetch is downloading the ISO');
  const machine = await store.resolve('20.04', ISO);
  const result = await running;
  assert.ok(result.ok, JSON.stringify(result));
  assert.equal(result.items.map((i) => [i.file, i.state, i.source, i.bytes]), [[ISO, 'done', 'fetched', ISO_BYTES.length], ['vmlinuz', 'done', 'fetched', 6], ['initrd', 'done', 'fetched', 6]]);
  assert.is(machine.source, 'fetched');
  assert.equal(gets.slice(before).filter((g) => g.endsWith(ISO)), [`GET /releases/${ISO}`], 'one upstream request for the ISO');
  // Progress: the ISO seen part-way (bytes growing, of its total) before it was done.
  const partial = seen.map((s) => s[0] as PrefetchItem).filter((i) => i.state === 'fetching' && i.bytes > 0 && i.bytes < ISO_BYTES.length);
  assert.ok(partial.length >= 2, `progress reports while downloading: ${partial.length}`);
  assert.ok(partial.every((i) => i.total === ISO_BYTES.length));
  assert.ok(partial.every((p, i) => i === 0 || p.bytes >= (partial[i - 1] as PrefetchItem).bytes), 'bytes only grow');
  assert.ok(readFileSync(join(dir, 'cache', '20.04', ISO)).equals(ISO_BYTES));
  // Again: everything is in the cache, nothing is asked of the upstream.
  const n = gets.length;
  const again = await prefetchArtifacts(store, list);
  assert.equal(again.items.map((i) => i.source), ['cache', 'cache', 'cache']);
  assert.is(gets.length, n);
  // An upstream that has not got the file: that item fails with the status, the rest go on.
  const broken = createArtifactStore({ artifactsDir: join(dir, 'local'), cacheDir: join(dir, 'cache2'), installers: resolveInstallers({ '20.04': { upstream: { [ISO]: `${base}/nothing.iso`, vmlinuz: `${base}/releases/vmlinuz`, initrd: `${base}/releases/initrd` } } }), fetchIdleTimeoutMs: 10_000, log: silentLogger() });
  const failed = await prefetchArtifacts(broken, list);
  assert.not.ok(failed.ok);
  assert.equal(failed.items.map((i) => i.state), ['failed', 'done', 'done']);
  assert.match(failed.items[0]?.error ?? '', /upstream answered HTTP 404/);
  assert.not.ok(existsSync(join(dir, 'cache2', '20.04', ISO)), 'no partial file left');
});

let rs: RacksmithProcess | null = null;
let sim: BmcSim | null = null;
const missing = requirements(['ipmi_sim', 'ipmitool']);

test('the real server: a rack power-on caches the installer first (its progress in the job), then powers; artifacts prefetch then finds it cached', async (ctx) => {
  if (missing) return skipNote(ctx.__test__, missing);
  sim = await startBmcSim({ name: 'pf0', password: 'Pw-prefetch-17' });
  rs = await startRacksmith({
    env: {
      RACKSMITH_INSTALLERS: JSON.stringify(installerOverrides()),
      RACKSMITH_UBUNTU_MIRROR: `${base}/ubuntu`,
      RACKSMITH_KUBERNETES_REPO: `${base}/pkgs/core:/stable:`,
      RACKSMITH_CNI_MANIFEST_FLANNEL: `${base}/cni/flannel-{version}.yml`,
      RACKSMITH_RACK_POWER_DELAY_SECONDS: '0',
    },
  });
  const admin = (await rs.cli(['token', 'create', '--role', 'admin'])).trim();
  const c = await api(rs.url, admin, 'POST', '/api/v1/clusters', { name: 'lab', ubuntuRelease: '20.04', kubernetesVersion: '1.30.6', containerRuntime: 'containerd', cni: 'flannel' });
  assert.is(c.status, 201, c.text);
  const m = await api(rs.url, admin, 'POST', '/api/v1/machines', { mac: '52:54:00:17:12:01', hostname: 'w1', role: 'worker', cluster: 'lab', rack: 'r12', bmc: { driver: 'ipmi', address: '127.0.0.1', port: sim.port, username: 'admin', password: 'Pw-prefetch-17' } });
  assert.is(m.status, 201, m.text);

  const isoGetsBefore = gets.filter((g) => g.endsWith(ISO)).length;
  const out = await rs.cli(['rack', 'power', 'r12', '--action', 'on', '--token', admin]);
  // Off a terminal: the prefetch lines first, each file as it moves, then the machine.
  const lines = out.trim().split('\n');
  assert.match(out, new RegExp(`prefetch 20\\.04/${ISO.replace(/\./g, '\\.')}  fetching  [\\d.]+ (KiB|MiB) of 3\\.0 MiB \\(\\d+%\\)`), out);
  assert.match(out, new RegExp(`prefetch 20\\.04/${ISO.replace(/\./g, '\\.')}  fetched \\(3\\.0 MiB\\)`));
  assert.match(out, /prefetch 20\.04\/vmlinuz {2}fetched \(6 bytes\)/);
  const firstMachine = lines.findIndex((l) => /w1 +52:54:00:17:12:01 {2}(running|ok)/.test(l));
  const lastPrefetch = lines.map((l, i) => (l.includes('prefetch ') ? i : -1)).reduce((a, b) => Math.max(a, b), -1);
  assert.ok(firstMachine > lastPrefetch, `the machine after the prefetch:\n${out}`);
  assert.match(lines[lines.length - 1] ?? '', /done: 1 ok/);
  // The BMC was asked to power on only once the ISO had arrived whole.
  const on = sim.sets().find((s) => s.args === 'set power 1');
  assert.ok(on, JSON.stringify(sim.calls()));
  // The chassis log has seconds; the upstream, milliseconds.
  assert.ok(isoDoneAt > 0 && on.start * 1000 >= isoDoneAt - 50, `power on at ${on.start} s, ISO complete at ${isoDoneAt} ms`);
  assert.is(gets.filter((g) => g.endsWith(ISO)).length - isoGetsBefore, 1);
  // The machine then takes the kernel from racksmith's cache.
  const kernel = await fetch(`${rs.url}/artifacts/20.04/vmlinuz`);
  assert.is(await kernel.text(), 'kernel');

  // `racksmith artifacts prefetch`: every file already cached; exit 0.
  const again = await rs.cli(['artifacts', 'prefetch', 'lab', '--token', admin]);
  assert.match(again, new RegExp(`20\\.04/${ISO.replace(/\./g, '\\.')}  (cached|in the artifacts directory) \\(3\\.0 MiB\\)`), again);
  assert.not.match(again, /fetching/, 'nothing was downloaded again');
  assert.match(again, /cluster lab: 3 installer artifact\(s\) in the cache \(\d+\.\d s\)\n$/);
  // The API streams NDJSON: progress, then the result.
  const raw = await fetch(`${rs.url}/api/v1/clusters/lab/prefetch`, { method: 'POST', headers: { authorization: `Bearer ${admin}` } });
  assert.match(raw.headers.get('content-type') ?? '', /^application\/x-ndjson/);
  const objects = (await raw.text()).trim().split('\n').map((l) => JSON.parse(l) as { type: string; ok?: boolean });
  assert.is(objects[0]?.type, 'progress');
  assert.equal(objects[objects.length - 1], { ...objects[objects.length - 1], type: 'result', ok: true });
  // An unknown cluster is a 404 before any streaming; `--help` describes the command.
  assert.is((await api(rs.url, admin, 'POST', '/api/v1/clusters/nope/prefetch')).status, 404);
  assert.match(await rs.cli(['artifacts', 'prefetch', '--help']), /^Usage: racksmith artifacts prefetch CLUSTER/);
  const events = await api(rs.url, admin, 'GET', '/api/v1/clusters/lab');
  assert.is(events.status, 200);
});

test.run();
