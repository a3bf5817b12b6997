import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { promisify } from 'node:util';
import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { createArtifactStore, type ArtifactStore } from '../server/artifacts/store.js';
import { findSignedChains, signedChainsAvailable } from '../server/boot/loaders.js';
import { DEFAULT_INSTALLERS } from '../server/boot/releases.js';
import { debFileName, fetchSignedDebs, listSignedBoot, signedBootDirs, type SignedDeb } from '../server/boot/signed-debs.js';
import { bootFiles } from '../server/boot/tftp-files.js';
import { loadConfig } from '../server/config/load.js';
import { silentLogger } from '../server/lib/log.js';
import { GUEST_CACHE } from './lib/guest/build.js';
import { startRacksmith } from './lib/racksmith.js';
import { requirements, skipNote } from './lib/tools.js';

const run = promisify(execFile);

/**
 * The signed shim and GRUB taken from Debian's real packages through the artifacts cache, for a
 * host without shim-signed/grub-efi-amd64-signed installed: the .debs (`apt-get download`, kept
 * in the test cache by version) served by an HTTP server of the test's own on loopback, pinned by
 * the SHA-256 `apt-cache show` prints; fetched once, unpacked, served over TFTP byte for byte as
 * the package holds them; no network on a restart; a wrong pin, a package without them and a
 * package dropped from the list leave nothing behind.
 */
const test = suite('artifacts: the signed chain from Debian packages');

const PACKAGES = ['shim-signed', 'grub-efi-amd64-signed'] as const;
const missing = requirements(['apt-get', 'apt-cache', 'dpkg-deb', 'ar', 'tar', 'xz']);
const debs: Record<string, { path: string; sha256: string; aptSha256: string }> = {};
let upstream: Server;
let base = '';
const hits: string[] = [];
let work = '';

async function candidate(pkg: string): Promise<{ version: string; sha256: string }> {
  const { stdout } = await run('apt-cache', ['show', '--no-all-versions', pkg]);
  const version = /^Version: (\S+)/m.exec(stdout)?.[1];
  const sha256 = /^SHA256: ([0-9a-f]{64})/m.exec(stdout)?.[1];
  if (!version || !sha256) throw new Error(`apt-cache show ${pkg}: no version or SHA256 (apt-get update?)`);
  return { version, sha256 };
}

/** The package from Debian's mirror, once per version, under the test cache. */
async function download(pkg: string): Promise<void> {
  const c = await candidate(pkg);
  const dir = join(GUEST_CACHE, 'signed-debs');
  const path = join(dir, `${pkg}_${c.version.replace(/[^A-Za-z0-9.+~-]/g, '_')}_amd64.deb`);
  if (!existsSync(path)) {
    mkdirSync(dir, { recursive: true });
    const dl = mkdtempSync(join(tmpdir(), 'racksmith-deb-'));
    try {
      await run('apt-get', ['download', `${pkg}=${c.version}`], { cwd: dl, timeout: 600_000 });
      const got = readdirSync(dl).find((f) => f.endsWith('.deb'));
      if (!got) throw new Error(`apt-get download ${pkg} produced no .deb`);
      renameSync(join(dl, got), path);
    } finally {
      rmSync(dl, { recursive: true, force: true });
    }
  }
  debs[pkg] = { path, sha256: createHash('sha256').update(readFileSync(path)).digest('hex'), aptSha256: c.sha256 };
}

/** A member of the package by another road than racksmith's (ar + tar, no dpkg-deb). */
async function member(deb: string, path: string): Promise<Buffer> {
  const { stdout } = await run('sh', ['-c', `ar p "$1" data.tar.xz | tar -xJO "./$2"`, 'sh', deb, path], { encoding: 'buffer', maxBuffer: 64 << 20 });
  return stdout;
}

function pins(...pkgs: string[]): SignedDeb[] {
  return pkgs.map((p) => ({ url: `${base}/debian/pool/${basename(debs[p]!.path)}`, sha256: debs[p]!.sha256 }));
}

function store(cacheDir: string): ArtifactStore {
  return createArtifactStore({ artifactsDir: join(work, 'local'), cacheDir, installers: DEFAULT_INSTALLERS, fetchIdleTimeoutMs: 5000, log: silentLogger() });
}

/** The chain as racksmith would find it, ignoring the packages installed on this test machine. */
const cacheOnly = (cacheDir: string) => findSignedChains(signedBootDirs(undefined, cacheDir), (p) => p.startsWith(cacheDir) && existsSync(p));

test.before(async () => {
  if (missing) return;
  for (const p of PACKAGES) await download(p);
  upstream = createServer((req, res) => {
    hits.push(req.url ?? '/');
    const name = (req.url ?? '').replace(/^\/debian\/pool\//, '');
    const found = Object.values(debs).find((d) => basename(d.path) === name);
    if (!found) return void res.writeHead(404).end();
    const body = readFileSync(found.path);
    res.writeHead(200, { 'content-length': String(body.length) }).end(body);
  });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', () => r()));
  const a = upstream.address();
  base = `http://127.0.0.1:${typeof a === 'object' && a ? a.port : 0}`;
});

test.after(async () => {
  if (missing) return;
  upstream.closeAllConnections();
  await new Promise((r) => upstream.close(r));
});

test.before.each(() => {
  work = mkdtempSync(join(tmpdir(), 'racksmith-signed-debs-'));
  hits.length = 0;
});
test.after.each(() => rmSync(work, { recursive: true, force: true }));

test('the pins are what apt-cache show prints for the packages', () => {
  for (const p of PACKAGES) assert.is(debs[p]!.sha256, debs[p]!.aptSha256, p);
});

test('fetched once through the cache, unpacked, and served over TFTP as the package holds them', async () => {
  const cache = join(work, 'cache');
  const s = store(cache);
  const [a, b] = await Promise.all([fetchSignedDebs({ debs: pins(...PACKAGES), store: s, cacheDir: cache, log: silentLogger() }), fetchSignedDebs({ debs: pins(...PACKAGES), store: s, cacheDir: cache, log: silentLogger() })]);
  assert.equal(a.failed, []);
  assert.equal(b.failed, []);
  assert.equal(hits.sort(), pins(...PACKAGES).map((d) => new URL(d.url).pathname).sort(), 'each package fetched once');
  assert.equal(await listSignedBoot(cache), ['x86_64/grubx64.efi', 'x86_64/shimx64.efi']);
  for (const d of pins(...PACKAGES)) assert.ok(existsSync(join(cache, 'signed-boot', 'debs', debFileName(d.url))), `${d.url} kept in the cache`);
  assert.is(readFileSync(join(cache, 'signed-boot', 'debs', `${debFileName(pins('shim-signed')[0]!.url)}.sha256`), 'utf8').split(' ')[0], debs['shim-signed']!.sha256);

  const shim = await member(debs['shim-signed']!.path, 'usr/lib/shim/shimx64.efi.signed');
  const grub = await member(debs['grub-efi-amd64-signed']!.path, 'usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed');
  assert.ok(shim.length > 100_000 && shim.subarray(0, 2).toString() === 'MZ', 'shim is a PE image');

  const chains = cacheOnly(cache);
  assert.ok(chains.x86_64, 'the x86_64 chain is found in the cache');
  assert.is(chains.arm64, undefined);
  const files = bootFiles({ serve: undefined as never, artifacts: s, chains, baseUrl: 'http://127.0.0.1' });
  for (const [name, want] of [['shim-grub/x86_64/shimx64.efi', shim], ['shim-grub/x86_64/grubx64.efi', grub]] as const) {
    const f = await files.open(name, { address: '10.77.0.11' });
    assert.ok((await f.read(0, f.size)).equals(want), `${name} is the package's bytes`);
  }
  assert.equal(signedChainsAvailable(signedBootDirs(undefined, cache)).x86_64, true);
});

test('a restart with the mirror out of reach keeps the chain without a request', async () => {
  const cache = join(work, 'cache');
  await fetchSignedDebs({ debs: pins(...PACKAGES), store: store(cache), cacheDir: cache, log: silentLogger() });
  hits.length = 0;
  const moved = pins(...PACKAGES).map((d) => ({ ...d, url: 'http://127.0.0.1:9/unreachable.deb' }));
  const again = await fetchSignedDebs({ debs: moved, store: store(cache), cacheDir: cache, log: silentLogger() });
  assert.equal(again.failed, []);
  assert.equal(hits, []);
  assert.equal([...again.files.keys()].sort(), ['x86_64/grubx64.efi', 'x86_64/shimx64.efi']);
});

test('a package whose SHA-256 is not the pinned one leaves nothing behind', async () => {
  const cache = join(work, 'cache');
  const wrong = pins('shim-signed').map((d) => ({ ...d, sha256: 'f'.repeat(64) }));
  const r = await fetchSignedDebs({ debs: wrong, store: store(cache), cacheDir: cache, log: silentLogger() });
  assert.is(r.failed.length, 1);
  assert.match(r.failed[0]!.reason, /SHA-256/);
  assert.equal(await listSignedBoot(cache), []);
  assert.equal(readdirSync(join(cache, 'signed-boot', 'debs')), [], 'no package, no partial file');
  assert.is(cacheOnly(cache).x86_64, undefined);
});

test('a package holding neither shim nor GRUB is refused; one dropped from the list is removed', async () => {
  const cache = join(work, 'cache');
  const s = store(cache);
  await fetchSignedDebs({ debs: pins(...PACKAGES), store: s, cacheDir: cache, log: silentLogger() });

  // A real .deb without the binaries, built with dpkg-deb and served beside the others.
  const tree = join(work, 'pkg');
  mkdirSync(join(tree, 'DEBIAN'), { recursive: true });
  mkdirSync(join(tree, 'usr', 'share', 'doc', 'empty'), { recursive: true });
  writeFileSync(join(tree, 'DEBIAN', 'control'), 'Package: empty\nVersion: 1\nArchitecture: all\nMaintainer: t <t@example.org>\nDescription: nothing signed\n');
  writeFileSync(join(tree, 'usr', 'share', 'doc', 'empty', 'README'), 'nothing\n');
  const emptyDeb = join(work, 'empty_1_all.deb');
  await run('dpkg-deb', ['--build', '--root-owner-group', tree, emptyDeb]);
  debs['empty'] = { path: emptyDeb, sha256: createHash('sha256').update(readFileSync(emptyDeb)).digest('hex'), aptSha256: '' };
  try {
    const r = await fetchSignedDebs({ debs: [...pins('shim-signed'), ...pins('empty')], store: s, cacheDir: cache, log: silentLogger() });
    assert.is(r.failed.length, 1);
    assert.match(r.failed[0]!.reason, /holds none of/);
    assert.equal(await listSignedBoot(cache), ['x86_64/shimx64.efi'], 'GRUB from the dropped package is gone');
    assert.is(cacheOnly(cache).x86_64, undefined, 'shim alone is no chain');
  } finally {
    delete debs['empty'];
  }
});

test('racksmith serve takes the chain from the packages at start, before its services', async () => {
  const cache = join(work, 'cache');
  const rs = await startRacksmith({ env: { RACKSMITH_ARTIFACTS_CACHE_DIR: cache, RACKSMITH_SIGNED_BOOT_DEBS: JSON.stringify(pins(...PACKAGES)) } });
  try {
    assert.equal(await listSignedBoot(cache), ['x86_64/grubx64.efi', 'x86_64/shimx64.efi'], 'laid out before /healthz answered');
    assert.equal(hits.sort(), pins(...PACKAGES).map((d) => new URL(d.url).pathname).sort());
    assert.match(rs.output(), /signed boot loaders taken from their package/);
  } finally {
    await rs.stop();
    rs.cleanup();
  }
});

test('pinned files: folders and names are jailed, a pin is required', async () => {
  const s = store(join(work, 'cache'));
  for (const [where, file, sha] of [['../etc', 'x.deb', 'a'.repeat(64)], ['signed-boot/.hidden', 'x.deb', 'a'.repeat(64)], ['signed-boot', '../x.deb', 'a'.repeat(64)], ['signed-boot', 'x.deb', 'nope']] as const) {
    await s.fetchPinned(where, file, `${base}/x.deb`, sha).then(
      () => assert.unreachable(`${where}/${file} accepted`),
      (err: Error) => assert.match(err.message, /cache folder|plain file name|SHA-256/),
    );
  }
  assert.equal(hits, []);
});

test('the setting: a JSON list of {url, sha256}; anything else is refused by name', () => {
  const ok = loadConfig({ env: { RACKSMITH_SIGNED_BOOT_DEBS: JSON.stringify([{ url: 'http://deb.example/pool/shim.deb', sha256: 'a'.repeat(64) }]) }, flags: {} });
  assert.equal(ok.signedBootDebs, [{ url: 'http://deb.example/pool/shim.deb', sha256: 'a'.repeat(64) }]);
  for (const bad of ['[{"url":"http://x/y.deb"}]', '[{"url":"ftp://x/y.deb","sha256":"' + 'a'.repeat(64) + '"}]', '{"url":"http://x"}', 'not json']) {
    assert.throws(() => loadConfig({ env: { RACKSMITH_SIGNED_BOOT_DEBS: bad }, flags: {} }), /signed-boot-debs|RACKSMITH_SIGNED_BOOT_DEBS/, bad);
  }
});

if (missing) skipNote('artifacts: the signed chain from Debian packages', missing);
else test.run();
