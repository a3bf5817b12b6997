import { execFile, execFileSync, spawn } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { createServer as createTcpServer, type Server as TcpServer, type Socket } from 'node:net';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { DEFAULT_INSTALLERS } from '../server/boot/releases.js';
import { SETTINGS } from '../server/config/settings.js';
import { PACKAGE_ROOT } from '../server/lib/paths.js';
import { AptIndexError, matchesVersion, packageVersions, parseRelease, parseStanzas, unsign } from '../server/clusters/apt-index.js';
import { httpGet, type HttpGet } from '../server/clusters/http-get.js';
import { formatReport, legacyGoneMessage, legacyRepositoryGone, planPreflight, runPreflight, type PreflightSettings } from '../server/clusters/preflight.js';
import type { ArtifactLocation } from '../server/artifacts/store.js';
import { NASTY_STRINGS, Rng, seedFromEnv } from './lib/fuzz.js';
import { api, startRacksmith, type RacksmithProcess } from './lib/racksmith.js';
import { requirements, skipNote, which } from './lib/tools.js';

/**
 * Issue 17, item 2: the preflight. Upstreams are served by the test's own HTTP server on loopback
 * in the layouts the real ones use (a `dists/` archive, pkgs.k8s.io's flat repository, Docker's
 * suite per codename): present, a pinned version missing, a 404, a server that never answers. The
 * default upstream URLs are never contacted: a recording fetch proves the legacy repository's
 * default is recognised as gone without a request, and the real server's other upstreams point
 * at the test's server.
 */
const test = suite('preflight: every upstream a cluster uses, checked from racksmith\'s host');

const PACKAGES = (rows: Array<[string, string]>): string => rows.map(([p, v]) => `Package: ${p}\nVersion: ${v}\nArchitecture: amd64\nDescription: stand-in\n multi-line description\n`).join('\n');

function releaseFile(suite: string, files: string[]): string {
  return [`Origin: Test`, `Suite: ${suite}`, `Codename: ${suite}`, `Date: Mon, 01 Jan 2024 00:00:00 UTC`, `Architectures: amd64`, `SHA256:`, ...files.map((f) => ` ${'0'.repeat(64)} 123 ${f}`)].join('\n') + '\n';
}

let upstream: Server;
let silent: TcpServer;
const held: Socket[] = [];
let base = '';
let silentBase = '';
const seen: string[] = [];
/** Who asked for each path: racksmith itself, or the apt proxy on its behalf. */
const agents: string[] = [];
const files = new Map<string, Buffer | string>();
let work = '';
let rs: RacksmithProcess | null = null;
let token = '';

/** apt-cacher-ng 3.7 cannot use ports from 32768 on (it binds nothing, and answers 503 for upstreams there). */
async function freePortBelow(limit: number): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const port = 20_000 + Math.floor(Math.random() * (limit - 20_000));
    const free = await new Promise<boolean>((resolve) => {
      const probe = createTcpServer();
      probe.once('error', () => resolve(false));
      probe.listen(port, '127.0.0.1', () => probe.close(() => resolve(true)));
    });
    if (free) return port;
  }
  throw new Error(`no free port below ${limit}`);
}

function put(path: string, body: string | Buffer): void {
  files.set(path, body);
}

test.before(async () => {
  // The Ubuntu archive: bionic and jammy, with -updates.
  for (const s of ['bionic', 'bionic-updates', 'jammy', 'jammy-updates']) put(`/ubuntu/dists/${s}/Release`, releaseFile(s, []));
  // The legacy repository (a site's mirror of it): 1.18.6 and 1.18.8, gzip index only.
  put('/legacy/dists/kubernetes-xenial/Release', releaseFile('kubernetes-xenial', ['main/binary-amd64/Packages.gz']));
  put('/legacy/dists/kubernetes-xenial/main/binary-amd64/Packages.gz', gzipSync(PACKAGES(['kubelet', 'kubeadm', 'kubectl'].flatMap((p) => [[p, '1.18.6-00'], [p, '1.18.8-00']] as Array<[string, string]>))));
  put('/legacy/apt-key.gpg', 'key');
  // pkgs.k8s.io: a flat repository per minor, plain index; only InRelease, like some mirrors.
  put('/pkgs/core:/stable:/v1.30/deb/InRelease', `-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\n${releaseFile('', ['Packages'])}-----BEGIN PGP SIGNATURE-----\nxx\n-----END PGP SIGNATURE-----\n`);
  put('/pkgs/core:/stable:/v1.30/deb/Packages', PACKAGES(['kubelet', 'kubeadm', 'kubectl', 'cri-tools'].flatMap((p) => [[p, '1.30.6-1.1'], [p, '1.30.8-1.1']] as Array<[string, string]>)));
  put('/pkgs/core:/stable:/v1.30/deb/Release.key', 'key');
  // Docker CE for bionic: the pinned 19.03 and a newer 20.10.
  put('/docker/dists/bionic/Release', releaseFile('bionic', ['stable/binary-amd64/Packages', 'stable/binary-amd64/Packages.gz']));
  put(
    '/docker/dists/bionic/stable/binary-amd64/Packages.gz',
    gzipSync(PACKAGES([['docker-ce', '5:19.03.12~3-0~ubuntu-bionic'], ['docker-ce-cli', '5:19.03.12~3-0~ubuntu-bionic'], ['docker-ce', '5:20.10.24~3-0~ubuntu-bionic'], ['docker-ce-cli', '5:20.10.24~3-0~ubuntu-bionic'], ['containerd.io', '1.6.20-1']])),
  );
  put('/docker/gpg', 'key');
  put('/cni/weave-v2.8.1.yaml', 'kind: List\n');
  put('/cni/flannel-v0.27.4.yml', 'kind: List\n');
  put('/releases/ubuntu-22.04.5-live-server-amd64.iso', Buffer.alloc(4096, 1));

  upstream = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    seen.push(path);
    agents.push(`${String(req.headers['user-agent'])} ${path}`);
    const body = files.get(path);
    if (body === undefined) {
      res.writeHead(404).end('not found\n');
      return;
    }
    res.writeHead(200, { 'content-length': String(Buffer.byteLength(body)) }).end(body);
  });
  // Below the ephemeral range: the apt proxy test's apt-cacher-ng reaches it too.
  const low = await freePortBelow(32768);
  await new Promise<void>((r) => upstream.listen(low, '127.0.0.1', r));
  base = `http://127.0.0.1:${(upstream.address() as { port: number }).port}`;
  // A server that takes the connection and never answers: the timeout must end the check.
  silent = createTcpServer((s) => held.push(s));
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  silentBase = `http://127.0.0.1:${(silent.address() as { port: number }).port}`;
  work = mkdtempSync(join(tmpdir(), 'racksmith-preflight-'));
});

test.after(async () => {
  await rs?.stop();
  rs?.cleanup();
  for (const s of held) s.destroy();
  await new Promise<void>((r) => silent?.close(() => r()));
  await new Promise<void>((r) => upstream?.close(() => r()));
  if (work) rmSync(work, { recursive: true, force: true });
});

const localSettings = (): PreflightSettings => ({
  ubuntuMirror: `${base}/ubuntu`,
  kubernetesRepo: `${base}/pkgs/core:/stable:`,
  kubernetesLegacyRepo: `${base}/legacy/`,
  kubernetesLegacyGpgUrl: `${base}/legacy/apt-key.gpg`,
  dockerRepo: `${base}/docker`,
  dockerGpgUrl: `${base}/docker/gpg`,
  cniManifests: { weave: `${base}/cni/weave-{version}.yaml`, flannel: `${base}/cni/flannel-{version}.yml`, calico: `${base}/cni/calico-{version}.yaml` },
});

/** The artifacts store's answers, as a function: 18.04's files are local, 22.04's ISO upstream on the test server. */
const locate = async (release: string, file: string): Promise<ArtifactLocation> => {
  if (release === '18.04') return { source: 'local', path: `/x/${file}`, size: 5_000_000 };
  if (file.endsWith('.iso')) return { source: 'upstream', url: `${base}/releases/${file}` };
  return { source: 'iso', iso: 'ubuntu-22.04.5-live-server-amd64.iso', path: `casper/${file}` };
};

/** The real fetch, recording every URL asked for. */
function recording(): { get: HttpGet; asked: string[] } {
  const asked: string[] = [];
  return { asked, get: (url, opts) => (asked.push(url), httpGet(url, opts)) };
}

const recipe = { name: 'recipe', os: 'ubuntu-18.04', kubernetesVersion: '1.18.6', containerRuntime: 'docker', cni: 'weave' } as const;
const current = { name: 'current', os: 'ubuntu-22.04', kubernetesVersion: '1.30.6', containerRuntime: 'containerd', cni: 'flannel' } as const;

test('apt indexes: Release (plain and clear-signed), Packages stanzas, apt version globs', () => {
  const rel = parseRelease(releaseFile('jammy', ['main/binary-amd64/Packages.gz', 'main/binary-amd64/Packages']));
  assert.is(rel.suite, 'jammy');
  assert.equal(rel.files, ['main/binary-amd64/Packages.gz', 'main/binary-amd64/Packages']);
  assert.is(parseRelease(`-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nSuite: x\n-----BEGIN PGP SIGNATURE-----\n\nab\n-----END PGP SIGNATURE-----\n`).suite, 'x');
  assert.throws(() => parseRelease('<html>not found</html>'), (e: unknown) => e instanceof AptIndexError);
  const v = packageVersions(PACKAGES([['kubelet', '1.30.6-1.1'], ['kubelet', '1.30.8-1.1'], ['kubeadm', '1.30.6-1.1']]));
  assert.equal(v.get('kubelet'), ['1.30.6-1.1', '1.30.8-1.1']);
  assert.equal(parseStanzas('A: 1\n b\n\n\nC: 2\n').map((s) => Object.fromEntries(s)), [{ a: '1\nb' }, { c: '2' }]);
  for (const [pattern, version, want] of [
    ['1.30.6-*', '1.30.6-1.1', true],
    ['1.30.6-*', '1.30.60-1.1', false],
    ['1.18.6-*', '1.18.6-00', true],
    ['5:19.03.*', '5:19.03.12~3-0~ubuntu-bionic', true],
    ['5:19.03.*', '5:20.10.24~3-0~ubuntu-bionic', false],
    ['5:19.03.*', '19.03.12', false],
    ['1.2?.0', '1.23.0', true],
  ] as const) {
    assert.is(matchesVersion(pattern, version), want, `${pattern} ~ ${version}`);
  }
});

test('fuzz: any text is a Release, a Packages index or the typed error — never a crash', () => {
  const rng = new Rng(seedFromEnv(0x17a));
  const pieces = ['Package: ', 'Version: ', 'Suite: ', 'SHA256:', '\n', '\n\n', ' ', ':', '-----BEGIN PGP SIGNED MESSAGE-----', '-----BEGIN PGP SIGNATURE-----', 'kubelet', '1.30.6-1.1', '\r\n', ...NASTY_STRINGS];
  for (let i = 0; i < 3000; i++) {
    const text = Array.from({ length: rng.range(0, 40) }, () => rng.pick(pieces)).join('');
    try {
      const r = parseRelease(text);
      assert.ok(Array.isArray(r.files));
    } catch (err) {
      assert.ok(err instanceof AptIndexError, `seed ${rng.seed} #${i}: ${String(err)}`);
    }
    assert.ok(packageVersions(text) instanceof Map);
    try {
      unsign(text);
    } catch (err) {
      assert.ok(err instanceof AptIndexError);
    }
  }
});

test('the seed recipe with the default legacy repository fails: gone upstream, a site mirror must be configured — without a request to it', async () => {
  const s = { ...localSettings(), kubernetesLegacyRepo: SETTINGS.kubernetesLegacyRepo.default, kubernetesLegacyGpgUrl: SETTINGS.kubernetesLegacyGpgUrl.default };
  assert.ok(legacyRepositoryGone(s.kubernetesLegacyRepo));
  assert.ok(legacyRepositoryGone('https://packages.cloud.google.com/apt/'));
  assert.not.ok(legacyRepositoryGone(`${base}/legacy/`));
  const { get, asked } = recording();
  const report = await runPreflight('recipe', planPreflight(recipe, s, DEFAULT_INSTALLERS['18.04']), { get, locate, timeoutMs: 5000 });
  assert.not.ok(report.ok);
  const failed = report.checks.filter((c) => c.state === 'failed');
  assert.equal(failed.map((c) => c.id), ['kubernetes-repo'], formatReport(report));
  assert.is(failed[0]?.detail, legacyGoneMessage('1.18.6'));
  assert.match(failed[0]?.detail ?? '', /^the legacy Kubernetes apt repository \(apt\.kubernetes\.io, suite kubernetes-xenial\), the only source of Kubernetes 1\.18\.6, is gone upstream: .*Configure a site mirror of it: --kubernetes-legacy-repo URL/);
  assert.is(failed[0]?.url, 'https://apt.kubernetes.io/');
  assert.equal(report.checks.filter((c) => c.state === 'skipped').map((c) => c.id), ['kubernetes-packages', 'kubernetes-key']);
  // Nothing was asked of the legacy hosts, and every request stayed on the test's server.
  assert.ok(asked.length > 0);
  assert.ok(asked.every((u) => u.startsWith(base)), asked.join('\n'));
  // The rest of the recipe is fine: OS mirror, installer, Docker CE 19.03 pinned, Weave 2.8.1.
  const byId = new Map(report.checks.map((c) => [c.id, c]));
  assert.is(byId.get('os-mirror:bionic')?.state, 'ok');
  assert.is(byId.get('installer:18.04/linux')?.state, 'ok');
  assert.match(byId.get('docker-packages')?.detail ?? '', /^docker-ce 5:19\.03\.12~3-0~ubuntu-bionic, docker-ce-cli 5:19\.03\.12~3-0~ubuntu-bionic, containerd\.io 1\.6\.20-1$/);
  assert.is(byId.get('cni-manifest')?.url, `${base}/cni/weave-v2.8.1.yaml`);
  assert.is(byId.get('cni-manifest')?.state, 'ok');
});

test('a site mirror of the legacy repository: the pinned versions are found in its (gzip) Packages index', async () => {
  const report = await runPreflight('recipe', planPreflight(recipe, localSettings(), DEFAULT_INSTALLERS['18.04']), { get: httpGet, locate, timeoutMs: 5000 });
  assert.ok(report.ok, formatReport(report));
  const pk = report.checks.find((c) => c.id === 'kubernetes-packages');
  assert.is(pk?.detail, 'kubelet 1.18.6-00, kubeadm 1.18.6-00, kubectl 1.18.6-00');
  assert.is(pk?.url, `${base}/legacy/dists/kubernetes-xenial/main/binary-amd64/Packages.gz`);
  assert.is(pk?.status, 200);
});

test('pkgs.k8s.io: present (InRelease-only mirror, plain index); a pinned version missing is named with what there is', async () => {
  const ok = await runPreflight('current', planPreflight(current, localSettings(), DEFAULT_INSTALLERS['22.04']), { get: httpGet, locate, timeoutMs: 5000 });
  assert.ok(ok.ok, formatReport(ok));
  assert.is(ok.checks.find((c) => c.id === 'kubernetes-repo')?.url, `${base}/pkgs/core:/stable:/v1.30/deb/InRelease`);
  assert.match(ok.checks.find((c) => c.id === 'installer:22.04/ubuntu-22.04.5-live-server-amd64.iso')?.detail ?? '', /^HTTP 200, not cached yet/);
  assert.match(ok.checks.find((c) => c.id === 'installer:22.04/vmlinuz')?.detail ?? '', /taken from ubuntu-22\.04\.5-live-server-amd64\.iso \(casper\/vmlinuz\)/);
  const missing = await runPreflight('current', planPreflight({ ...current, kubernetesVersion: '1.30.7' }, localSettings(), DEFAULT_INSTALLERS['22.04']), { get: httpGet, locate, timeoutMs: 5000 });
  assert.not.ok(missing.ok);
  const pk = missing.checks.find((c) => c.id === 'kubernetes-packages');
  assert.is(pk?.state, 'failed');
  assert.is(pk?.detail, `kubelet has no version 1.30.7-* (it has 1.30.6-1.1, 1.30.8-1.1); kubeadm has no version 1.30.7-* (it has 1.30.6-1.1, 1.30.8-1.1); kubectl has no version 1.30.7-* (it has 1.30.6-1.1, 1.30.8-1.1) in ${base}/pkgs/core:/stable:/v1.30/deb/Packages`);
});

test('a 404 names the status; a minor the mirror lacks fails its repository, its packages and its key', async () => {
  const r = await runPreflight('c', planPreflight({ ...current, kubernetesVersion: '1.31.2' }, localSettings(), DEFAULT_INSTALLERS['22.04']), { get: httpGet, locate, timeoutMs: 5000 });
  const failed = r.checks.filter((c) => c.state === 'failed');
  assert.equal(failed.map((c) => c.id), ['kubernetes-repo', 'kubernetes-packages', 'kubernetes-key']);
  assert.is(failed[0]?.detail, 'HTTP 404');
  assert.is(failed[0]?.status, 404);
  assert.is(failed[0]?.url, `${base}/pkgs/core:/stable:/v1.31/deb/Release`);
  // The Docker repository without a suite for the release.
  const focal = await runPreflight('f', planPreflight({ ...recipe, os: 'ubuntu-20.04' }, localSettings(), null), { get: httpGet, locate, timeoutMs: 5000 });
  assert.match(focal.checks.find((c) => c.id === 'docker-repo')?.detail ?? '', /^HTTP 404$/);
  assert.is(focal.checks.find((c) => c.id === 'installer')?.state, 'failed');
  assert.match(formatReport(focal), /^FAILED {2}Docker CE repository, suite focal: HTTP 404 {2}\[http:\/\/127\.0\.0\.1:\d+\/docker\/dists\/focal\/Release\]$/m);
});

test('every request is bounded: an upstream that never answers fails its check after the timeout', async () => {
  const s = { ...localSettings(), ubuntuMirror: `${silentBase}/ubuntu` };
  const t = Date.now();
  const r = await runPreflight('current', planPreflight(current, s, DEFAULT_INSTALLERS['22.04']), { get: httpGet, locate, timeoutMs: 800 });
  const took = Date.now() - t;
  const mirror = r.checks.find((c) => c.id === 'os-mirror:jammy');
  assert.is(mirror?.state, 'failed');
  assert.match(mirror?.detail ?? '', /^no answer from 127\.0\.0\.1:\d+ within 1 s$/);
  assert.ok(took < 30_000, `bounded (${took} ms)`);
});

const acngMissing = requirements(['apt-cacher-ng']);


test('the apt proxy (real apt-cacher-ng): apt repositories are checked through it, as the nodes\' apt will reach them; a proxy that is down fails them', async (ctx) => {
  if (acngMissing) return skipNote(ctx.__test__, acngMissing);
  const dir = join(work, 'acng');
  mkdirSync(join(dir, 'cache'), { recursive: true });
  mkdirSync(join(dir, 'log'), { recursive: true });
  const port = await freePortBelow(32768);
  const upstreamPort = new URL(base).port;
  // Its own cache, log and socket; AllowUserPorts lets it reach the test's upstream port.
  // PassThroughPattern: CONNECT tunnels (https) to the test's own addresses.
  const acng = spawn(which('apt-cacher-ng') as string, ['-c', '/etc/apt-cacher-ng', 'ForeGround=1', `Port=${port}`, 'BindAddress=127.0.0.1', `CacheDir=${dir}/cache`, `LogDir=${dir}/log`, `PidFile=${dir}/acng.pid`, `SocketPath=${dir}/acng.sock`, `AllowUserPorts=${upstreamPort}`, 'PassThroughPattern=^127\\.0\\.0\\.1:[0-9]+$'], { stdio: 'ignore' });
  try {
    const proxy = `http://127.0.0.1:${port}`;
    for (let i = 0; i < 50; i++) {
      const up = await fetch(`${proxy}/acng-report.html`).then((r) => r.status > 0, () => false);
      if (up) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const s = { ...localSettings(), aptProxy: proxy };
    const before = agents.length;
    const r = await runPreflight('current', planPreflight(current, s, DEFAULT_INSTALLERS['22.04']), { get: httpGet, locate, timeoutMs: 5000 }, proxy);
    assert.ok(r.ok, formatReport(r));
    assert.match(r.checks.find((c) => c.id === 'apt-proxy')?.detail ?? '', new RegExp(`^${proxy} answers \\(HTTP 200 for ${base}/ubuntu/dists/jammy/Release\\)$`));
    // The Release files and the Packages index reached the upstream from apt-cacher-ng, not from racksmith.
    const asked = agents.slice(before);
    const viaProxy = asked.filter((a) => !a.startsWith('racksmith-preflight '));
    for (const path of ['/ubuntu/dists/jammy/Release', '/pkgs/core:/stable:/v1.30/deb/Packages']) assert.ok(viaProxy.some((a) => a.endsWith(` ${path}`)), `${path} through the proxy:\n${asked.join('\n')}`);
    assert.ok(asked.filter((a) => a.startsWith('racksmith-preflight ')).every((a) => /Release\.key$|\/cni\/|\.iso$/.test(a)), 'keys, manifests and installers directly');
    // An https repository goes through a CONNECT tunnel, as apt's https method does: a TLS
    // upstream of the test's own, its certificate trusted by a child process that runs the check.
    const cert = join(dir, 'tls.crt');
    const key = join(dir, 'tls.key');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', key, '-out', cert], { stdio: 'ignore' });
    const tls = createHttpsServer({ cert: readFileSync(cert), key: readFileSync(key) }, (req, res) => {
      agents.push(`tls ${req.url ?? ''}`);
      res.writeHead(200).end('Suite: tls\n');
    });
    const tlsPort = await freePortBelow(32768);
    await new Promise<void>((r) => tls.listen(tlsPort, '127.0.0.1', r));
    try {
      const tunnelled = await new Promise<string>((resolve, reject) =>
        execFile(
          process.execPath,
          ['--input-type=module', '-e', `import { httpGet } from ${JSON.stringify(join(PACKAGE_ROOT, 'dist/server/clusters/http-get.js'))}; const r = await httpGet(process.argv[1], { timeoutMs: 5000, body: true, proxy: process.argv[2] }); console.log(r.status, r.body.toString().trim());`, `https://127.0.0.1:${tlsPort}/dists/x/Release`, proxy],
          { env: { ...process.env, NODE_EXTRA_CA_CERTS: cert }, timeout: 30_000 },
          (err, stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout.trim())),
        ),
      );
      assert.is(tunnelled, '200 Suite: tls');
      assert.ok(agents.includes('tls /dists/x/Release'));
    } finally {
      await new Promise<void>((r) => tls.close(() => r()));
    }

    // A proxy that does not answer: every apt check fails, saying so.
    const down = await runPreflight('current', planPreflight(current, { ...s, aptProxy: 'http://127.0.0.1:9' }, DEFAULT_INSTALLERS['22.04']), { get: httpGet, locate, timeoutMs: 5000 }, 'http://127.0.0.1:9');
    const failed = down.checks.filter((c) => c.state === 'failed').map((c) => c.id);
    assert.equal(failed, ['os-mirror:jammy', 'os-mirror:jammy-updates', 'apt-proxy', 'kubernetes-repo', 'kubernetes-packages']);
    assert.match(down.checks[0]?.detail ?? '', /^the proxy 127\.0\.0\.1:9 refused the connection \(through the apt proxy http:\/\/127\.0\.0\.1:9\)$/);
  } finally {
    acng.kill('SIGTERM');
    await new Promise((r) => acng.once('exit', r));
  }
});

test('the real server: `racksmith clusters preflight` prints one line per check and exits 1; the API answers JSON; the rack power-on gate uses it', async () => {
  const artifacts = join(work, 'artifacts');
  mkdirSync(join(artifacts, '18.04'), { recursive: true });
  writeFileSync(join(artifacts, '18.04', 'linux'), 'kernel');
  writeFileSync(join(artifacts, '18.04', 'initrd.gz'), 'initrd');
  const s = localSettings();
  rs = await startRacksmith({
    env: {
      RACKSMITH_ARTIFACTS_DIR: artifacts,
      RACKSMITH_UBUNTU_MIRROR: s.ubuntuMirror,
      RACKSMITH_DOCKER_REPO: s.dockerRepo,
      RACKSMITH_DOCKER_GPG_URL: s.dockerGpgUrl,
      RACKSMITH_KUBERNETES_REPO: s.kubernetesRepo,
      RACKSMITH_CNI_MANIFEST_WEAVE: s.cniManifests.weave,
      // The seed recipe's default settings: the legacy repository as racksmith ships it.
      RACKSMITH_KUBERNETES_LEGACY_REPO: SETTINGS.kubernetesLegacyRepo.default,
      RACKSMITH_KUBERNETES_LEGACY_GPG_URL: SETTINGS.kubernetesLegacyGpgUrl.default,
      RACKSMITH_PREFLIGHT_TIMEOUT_SECONDS: '5',
    },
  });
  token = (await rs.cli(['token', 'create', '--role', 'operator'])).trim();
  const admin = (await rs.cli(['token', 'create', '--role', 'admin'])).trim();
  const c = await api(rs.url, admin, 'POST', '/api/v1/clusters', { name: 'recipe', ubuntuRelease: '18.04', kubernetesVersion: '1.18.6', containerRuntime: 'docker', cni: 'weave' });
  assert.is(c.status, 201, c.text);
  const before = seen.length;
  const out: string = await rs.cli(['clusters', 'preflight', 'recipe', '--token', token, '--url', rs.url]).then(
    (stdout) => assert.unreachable(`exit 0 on a failed preflight:\n${stdout}`) as never,
    (err: { code?: number; stdout?: string }) => {
      assert.is(err.code, 1);
      return err.stdout ?? '';
    },
  );
  process.stdout.write(`\n  racksmith clusters preflight recipe (the seed recipe, default legacy repository):\n${out.replace(/^/gm, '    ')}\n`);
  const lines = out.trim().split('\n');
  assert.is(lines.length, 12, out);
  assert.match(out, /^ok {6}Ubuntu 18\.04 mirror, suite bionic: Test bionic, Mon, 01 Jan 2024 00:00:00 UTC {2}\[http:\/\/127\.0\.0\.1:\d+\/ubuntu\/dists\/bionic\/Release\]$/m);
  assert.match(out, /^ok {6}installer 18\.04\/linux: in the artifacts directory \(6 bytes\)$/m);
  assert.match(out, /^FAILED {2}Kubernetes apt repository \(legacy, kubernetes-xenial\): the legacy Kubernetes apt repository \(apt\.kubernetes\.io, suite kubernetes-xenial\), the only source of Kubernetes 1\.18\.6, is gone upstream: .* Configure a site mirror of it: --kubernetes-legacy-repo URL \(RACKSMITH_KUBERNETES_LEGACY_REPO\) and --kubernetes-legacy-gpg-url URL for its key {2}\[https:\/\/apt\.kubernetes\.io\/\]$/m);
  assert.match(out, /^skipped kubelet, kubeadm, kubectl 1\.18\.6-\*: not checked: their repository is gone$/m);
  assert.match(out, /^ok {6}Docker CE 19\.03 \(docker-ce, docker-ce-cli 5:19\.03\.\*; containerd\.io\): docker-ce 5:19\.03\.12~3-0~ubuntu-bionic/m);
  assert.match(out, /^ok {6}CNI manifest \(weave v2\.8\.1\): HTTP 200/m);
  assert.match(lines[lines.length - 1] ?? '', /^cluster recipe: 1 of 11 checks failed$/);
  assert.ok(seen.length > before, 'the checks reached the test upstream');

  const r = await api(rs.url, token, 'POST', '/api/v1/clusters/recipe/preflight');
  assert.is(r.status, 200);
  assert.is(r.body.ok, false);
  assert.is(r.body.cluster, 'recipe');
  assert.is(r.body.checks.length, 11);
  for (const k of ['id', 'title', 'url', 'state', 'status', 'detail', 'ms']) assert.ok(k in r.body.checks[0], k);
  assert.is((await api(rs.url, token, 'POST', '/api/v1/clusters/nope/preflight')).status, 404);
  const viewer = (await rs.cli(['token', 'create', '--role', 'viewer'])).trim();
  assert.is((await api(rs.url, viewer, 'POST', '/api/v1/clusters/recipe/preflight')).status, 403);
  const history = await api(rs.url, admin, 'GET', '/api/v1/clusters/recipe');
  assert.is(history.status, 200);

  // A rack power-on of the recipe's machines is refused by the same preflight: no job, no power.
  const m = await api(rs.url, admin, 'POST', '/api/v1/machines', { mac: '52:54:00:17:00:01', hostname: 'w1', role: 'worker', cluster: 'recipe', rack: 'r17' });
  assert.is(m.status, 201, m.text);
  const on = await api(rs.url, token, 'POST', '/api/v1/racks/r17/power', { action: 'on' });
  assert.is(on.status, 409, on.text);
  assert.is(on.body.error.code, 'ERR_PREFLIGHT');
  assert.match(on.body.error.message, /the preflight of cluster recipe failed \(1 check\(s\); the first: Kubernetes apt repository \(legacy, kubernetes-xenial\): the legacy Kubernetes apt repository \(apt\.kubernetes\.io, suite kubernetes-xenial\), the only source of Kubernetes 1\.18\.6, is gone upstream/);
  const cli = await rs.cli(['rack', 'power', 'r17', '--action', 'on', '--token', token, '--url', rs.url]).then(
    () => '',
    (err: { code?: number; stderr?: string }) => `${err.code} ${err.stderr ?? ''}`,
  );
  assert.match(cli, /^1 racksmith: 409 ERR_PREFLIGHT: rack r17: the preflight of cluster recipe failed/);
  // Forced: the job starts (the machine has no BMC, so it is skipped), without a prefetch.
  const forced = await api(rs.url, token, 'POST', '/api/v1/racks/r17/power', { action: 'on', force: true });
  assert.is(forced.status, 202, forced.text);
  assert.is(forced.body.prefetch, null);
});

test('a Debian 12 cluster on the real server: --debian-mirror is the archive and the installer checked, --apt-proxy is checked and carries the apt checks', async () => {
  // The Debian archive with bookworm, and d-i's netboot files where a Debian mirror keeps them.
  for (const s of ['bookworm', 'bookworm-updates']) put(`/debian/dists/${s}/Release`, releaseFile(s, []));
  const netboot = '/debian/dists/bookworm/main/installer-amd64/current/images/netboot/debian-installer/amd64/';
  put(`${netboot}linux`, 'kernel');
  put(`${netboot}initrd.gz`, 'initrd');
  const s = localSettings();
  const env = {
    RACKSMITH_DEBIAN_MIRROR: `${base}/debian`,
    RACKSMITH_KUBERNETES_REPO: s.kubernetesRepo,
    RACKSMITH_CNI_MANIFEST_FLANNEL: s.cniManifests.flannel,
    RACKSMITH_PREFLIGHT_TIMEOUT_SECONDS: '5',
  };
  const check = async (extra: Record<string, string>): Promise<{ ok: boolean; checks: Array<{ id: string; title: string; state: string; detail: string; url: string | null }> }> => {
    const srv = await startRacksmith({ env: { ...env, ...extra } });
    try {
      const admin = (await srv.cli(['token', 'create', '--role', 'admin'])).trim();
      const c = await api(srv.url, admin, 'POST', '/api/v1/clusters', { name: 'deb', os: 'debian-12', installMethod: 'preseed', kubernetesVersion: '1.30.6', containerRuntime: 'containerd', cni: 'flannel' });
      assert.is(c.status, 201, c.text);
      const r = await api(srv.url, admin, 'POST', '/api/v1/clusters/deb/preflight');
      assert.is(r.status, 200, r.text);
      return r.body;
    } finally {
      await srv.stop();
      srv.cleanup();
    }
  };
  const direct = await check({});
  assert.ok(direct.ok, JSON.stringify(direct.checks, null, 2));
  const byId = new Map(direct.checks.map((c) => [c.id, c]));
  assert.is(byId.get('os-mirror:bookworm')?.title, 'Debian 12 mirror, suite bookworm');
  assert.is(byId.get('os-mirror:bookworm')?.url, `${base}/debian/dists/bookworm/Release`);
  assert.ok(byId.has('os-mirror:bookworm-updates'));
  assert.match(byId.get('installer:debian-12/linux')?.detail ?? '', /upstream|HTTP 200/);
  assert.not.ok(byId.has('apt-proxy'), 'no proxy configured, none checked');
  // With --apt-proxy (down here): the proxy is a check of its own, and the apt checks went through it.
  const proxied = await check({ RACKSMITH_APT_PROXY: 'http://127.0.0.1:9' });
  assert.is(proxied.ok, false);
  const failed = proxied.checks.filter((c) => c.state === 'failed').map((c) => c.id);
  assert.equal(failed, ['os-mirror:bookworm', 'os-mirror:bookworm-updates', 'apt-proxy', 'kubernetes-repo', 'kubernetes-packages']);
  assert.match(proxied.checks.find((c) => c.id === 'apt-proxy')?.detail ?? '', /127\.0\.0\.1:9/);
});

test('--help names the command and what it checks', async () => {
  const help = await (rs as RacksmithProcess).cli(['clusters', 'preflight', '--help']);
  assert.match(help, /^Usage: racksmith clusters preflight NAME/);
  assert.match(help, /Packages index/);
  const main = await (rs as RacksmithProcess).cli(['--help']);
  assert.match(main, /clusters preflight NAME/);
  assert.match(main, /artifacts prefetch CLUSTER/);
});

test.run();
