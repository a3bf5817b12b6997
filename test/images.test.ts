import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { createArtifactStore } from '../server/artifacts/store.js';
import { DEFAULT_INSTALLERS } from '../server/boot/releases.js';
import { DEFAULT_IMAGES, imageFor } from '../server/images/catalog.js';
import { baseName, sniffImageFormat } from '../server/images/format.js';
import { cacheName, createImageStore, type ImageStore } from '../server/images/store.js';
import { createLogger } from '../server/lib/log.js';
import { requirements, skipNote } from './lib/tools.js';

/**
 * OS images for image deployment: told apart by their first bytes, served as they are when the
 * deploy agent can write them (raw, gzip, xz, zstd), converted once by the real qemu-img (and
 * zstd) when they are qcow2; a download's pinned SHA-256 is enforced, a local file's is handed to
 * the agent to check.
 */
const run = promisify(execFile);
const test = suite('images: formats, sources, the qcow2 conversion, checksums');
const missing = requirements(['qemu-img', 'zstd', 'xz']);
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

let work = '';
let server: Server;
let base = '';
let served: Record<string, Buffer> = {};

test.before(async () => {
  work = mkdtempSync(join(tmpdir(), 'racksmith-images-'));
  server = createServer((req, res) => {
    const body = served[req.url ?? ''];
    if (!body) return void res.writeHead(404).end();
    res.writeHead(200, { 'content-length': body.length }).end(body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const a = server.address();
  base = `http://127.0.0.1:${typeof a === 'object' && a ? a.port : 0}`;
});
test.after(async () => {
  await new Promise((r) => server.close(r));
  rmSync(work, { recursive: true, force: true });
});

function store(dir: string): { images: ImageStore; converted: string[] } {
  const converted: string[] = [];
  const log = createLogger('silent');
  let images: ImageStore | null = null;
  const artifacts = createArtifactStore({ artifactsDir: join(dir, 'site'), cacheDir: join(dir, 'cache'), installers: DEFAULT_INSTALLERS, fetchIdleTimeoutMs: 10_000, log, imageUpstream: (f) => images?.upstreamOf(f) ?? null });
  images = createImageStore({ artifactsDir: join(dir, 'site'), cacheDir: join(dir, 'cache'), artifacts, log, onConverted: (f) => converted.push(f.file) });
  return { images, converted };
}

/** A "disk": a partition-table-like header, zeros, some data at the end. */
function rawDisk(): Buffer {
  const b = Buffer.alloc(4 * 1024 * 1024);
  b.write('racksmith test disk', 0);
  b.writeUInt16LE(0xaa55, 510);
  b.write('the end of the disk', b.length - 512);
  return b;
}

test('formats come from the first bytes, never the name', () => {
  const cases: [string, number[] | string, string][] = [
    ['qcow2 (Ubuntu names it .img)', [0x51, 0x46, 0x49, 0xfb, 0, 0, 0, 3], 'qcow2'],
    ['zstd', [0x28, 0xb5, 0x2f, 0xfd, 0x24], 'zst'],
    ['xz', [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 0x00], 'xz'],
    ['gzip', [0x1f, 0x8b, 0x08], 'gz'],
    ['VMDK', 'KDMV\u0001', 'vmdk'],
    ['VHDX', 'vhdxfile', 'vhdx'],
    ['an MBR: raw', [0xeb, 0x63, 0x90], 'raw'],
    ['empty: raw', [], 'raw'],
    ['a short prefix of a magic: raw', [0x28, 0xb5], 'raw'],
  ];
  for (const [what, bytes, expected] of cases) assert.is(sniffImageFormat(typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : Buffer.from(bytes)), expected, what);
  const vdi = Buffer.alloc(0x48);
  vdi.set([0x7f, 0x10, 0xda, 0xbe], 0x40);
  assert.is(sniffImageFormat(vdi), 'vdi');
  assert.is(baseName('debian-12-generic-amd64.qcow2'), 'debian-12-generic-amd64');
  assert.is(baseName('ubuntu-22.04-server-cloudimg-amd64.img'), 'ubuntu-22.04-server-cloudimg-amd64');
});

test('which image a cluster gets: its own, else the setting, else the distribution\'s cloud image', () => {
  const c = { os: 'debian-12' as const, imageUrl: null, imageSha256: null };
  assert.equal(imageFor(c, undefined), { source: DEFAULT_IMAGES['debian-12'], sha256: null });
  assert.match(DEFAULT_IMAGES['debian-12'], /debian-12-generic-amd64\.qcow2$/, 'generic, not genericcloud: a kernel with hardware drivers');
  assert.equal(imageFor(c, { 'debian-12': { url: 'site.img.zst', sha256: 'b'.repeat(64) } }), { source: 'site.img.zst', sha256: 'b'.repeat(64) });
  assert.equal(imageFor({ ...c, imageUrl: 'https://x.example/c.img', imageSha256: 'c'.repeat(64) }, { 'debian-12': { url: 'site.img.zst' } }), { source: 'https://x.example/c.img', sha256: 'c'.repeat(64) });
  // Two sites' disk.img never share a cache entry.
  assert.is.not(cacheName('https://a.example/disk.img'), cacheName('https://b.example/disk.img'));
  assert.match(cacheName('https://a.example/images/disk.img?x=1'), /^[0-9a-f]{8}-disk\.img$/);
  assert.is(cacheName('local.img.zst'), 'local.img.zst');
});

test('qcow2 is converted once with qemu-img to zstd-compressed raw; the agent gets racksmith\'s SHA-256', async (ctx) => {
  if (missing) return skipNote(ctx.__test__, missing);
  const dir = join(work, 'convert');
  mkdirSync(join(dir, 'site', 'images'), { recursive: true });
  const raw = rawDisk();
  writeFileSync(join(dir, 'disk.raw'), raw);
  await run('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', join(dir, 'disk.raw'), join(dir, 'site', 'images', 'site-disk.qcow2')]);
  const { images, converted } = store(dir);
  const [a, b] = await Promise.all([images.prepare({ source: 'site-disk.qcow2', sha256: null }), images.prepare({ source: 'site-disk.qcow2', sha256: null })]);
  assert.equal(a, b);
  assert.is(a.file, 'site-disk.raw.zst');
  assert.is(a.format, 'zst');
  assert.is(a.origin, 'converted');
  assert.is(a.rawSize, raw.length);
  assert.is(a.sha256, sha(readFileSync(a.path)));
  const { stdout } = await run('zstd', ['-d', '-c', a.path], { encoding: 'buffer', maxBuffer: 64 * 1024 * 1024 });
  assert.ok(Buffer.compare(stdout as unknown as Buffer, raw) === 0, 'the conversion holds the same bytes');
  // Kept: a new store (a restart) finds it converted.
  const again = await store(dir).images.prepare({ source: 'site-disk.qcow2', sha256: null });
  assert.is(again.sha256, a.sha256);
  assert.equal(converted, ['site-disk.raw.zst']);
  // A file that only claims to be qcow2 fails with qemu-img's reason.
  writeFileSync(join(dir, 'site', 'images', 'broken.qcow2'), Buffer.concat([Buffer.from([0x51, 0x46, 0x49, 0xfb]), Buffer.alloc(100)]));
  await images.prepare({ source: 'broken.qcow2', sha256: null }).then(
    () => assert.unreachable('a broken qcow2 was converted'),
    (err: Error) => assert.match(err.message, /image broken\.qcow2 \(qcow2\): qemu-img info/),
  );
  // One that would make qemu-img read another file of this host is refused.
  await run('qemu-img', ['create', '-f', 'qcow2', '-F', 'raw', '-b', join(dir, 'disk.raw'), join(dir, 'site', 'images', 'backed.qcow2')]);
  await images.prepare({ source: 'backed.qcow2', sha256: null }).then(
    () => assert.unreachable('an image with a backing file was converted'),
    (err: Error) => assert.match(err.message, /refers to another file .*disk\.raw\): only self-contained images are converted/),
  );
});

test('a compressed raw image is served as it is, with the pinned SHA-256 for the agent to check', async (ctx) => {
  if (missing) return skipNote(ctx.__test__, missing);
  const dir = join(work, 'asis');
  mkdirSync(join(dir, 'site', 'images'), { recursive: true });
  writeFileSync(join(dir, 'disk.raw'), rawDisk());
  await run('zstd', ['-q', join(dir, 'disk.raw'), '-o', join(dir, 'site', 'images', 'disk.img.zst')]);
  await run('xz', ['-k', '-c', join(dir, 'disk.raw')], { encoding: 'buffer', maxBuffer: 64 * 1024 * 1024 }).then(({ stdout }) => writeFileSync(join(dir, 'site', 'images', 'disk.img.xz'), stdout as unknown as Buffer));
  const { images } = store(dir);
  const own = await images.prepare({ source: 'disk.img.zst', sha256: null });
  assert.is(own.origin, 'local');
  assert.is(own.format, 'zst');
  assert.is(own.rawSize, 4 * 1024 * 1024, 'zstd records the size it decompresses to');
  assert.is(own.sha256, sha(readFileSync(join(dir, 'site', 'images', 'disk.img.zst'))));
  // A pinned checksum is passed on even when the file differs: the agent refuses the image.
  const pinned = await images.prepare({ source: 'disk.img.zst', sha256: 'f'.repeat(64) });
  assert.is(pinned.sha256, 'f'.repeat(64));
  const xz = await images.prepare({ source: 'disk.img.xz', sha256: null });
  assert.equal([xz.format, xz.rawSize], ['xz', 4 * 1024 * 1024]);
  await images.prepare({ source: 'nowhere.img', sha256: null }).then(
    () => assert.unreachable('a missing local image was found'),
    (err: Error) => assert.match(err.message, /image nowhere\.img: no image nowhere\.img/),
  );
});

test('a URL is downloaded once into the cache; its pinned SHA-256 is enforced; a staged file of its name wins', async (ctx) => {
  if (missing) return skipNote(ctx.__test__, missing);
  const dir = join(work, 'fetch');
  const disk = rawDisk();
  served = { '/images/up.img': disk };
  const { images } = store(dir);
  const wrong = await images.prepare({ source: `${base}/images/up.img`, sha256: '0'.repeat(64) }).catch((e: Error) => e);
  assert.ok(wrong instanceof Error && /SHA-256 [0-9a-f]{64} does not match the configured 0{64}/.test(wrong.message), String(wrong));
  const ok = await images.prepare({ source: `${base}/images/up.img`, sha256: sha(disk) });
  assert.equal([ok.origin, ok.format, ok.sha256, ok.rawSize], ['fetched', 'raw', sha(disk), disk.length]);
  assert.match(ok.file, /^[0-9a-f]{8}-up\.img$/);
  served = {};
  const cached = await images.prepare({ source: `${base}/images/up.img`, sha256: sha(disk) });
  assert.equal([cached.origin, cached.path], ['cache', ok.path]);
  // The site staged a file of the URL's name: used, never downloaded.
  mkdirSync(join(dir, 'site', 'images'), { recursive: true });
  writeFileSync(join(dir, 'site', 'images', 'staged.img'), disk);
  const staged = await images.prepare({ source: `${base}/elsewhere/staged.img`, sha256: null });
  assert.equal([staged.origin, staged.file], ['local', 'staged.img']);
  assert.ok(statSync(staged.path).size === disk.length);
});

test.run();
