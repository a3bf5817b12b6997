import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { promisify } from 'node:util';
import type { ArtifactStore } from '../artifacts/store.js';
import { ARTIFACT_NAME, recordedSha256 } from '../artifacts/store.js';
import { AppError, errorMessage } from '../lib/errors.js';
import type { Logger } from '../lib/log.js';
import type { ImageSpec } from './catalog.js';
import { STREAMABLE, baseName, sniffImageFormat, type ImageFormat } from './format.js';

const run = promisify(execFile);

/**
 * OS images for image deployment, made ready to stream onto a disk: found in the artifacts
 * directory's `images/` (served as they are) or downloaded into racksmith's cache through the
 * artifact store (once, however many machines wait), then — when they are not a raw or
 * compressed raw image the deploy agent can write as it comes — converted once with `qemu-img
 * convert` and compressed with zstd, beside the download. Every machine gets the same file, at
 * `/artifacts/images/<file>`, and the SHA-256 it must find in what it receives: the configured
 * one for a file served as it is (so the agent catches a file that is not what the operator
 * pinned), racksmith's own for the file it made.
 */
export interface PreparedImage {
  /** The file served under `/artifacts/images/`. */
  readonly file: string;
  readonly path: string;
  readonly size: number;
  readonly format: Extract<ImageFormat, 'raw' | 'gz' | 'xz' | 'zst'>;
  /** What the deploy agent must compute over the bytes it receives. */
  readonly sha256: string;
  /** The disk space the image needs, when known. */
  readonly rawSize: number | null;
  /** Where it came from: the artifacts directory, the cache, a download, or racksmith's conversion. */
  readonly origin: 'local' | 'cache' | 'fetched' | 'converted';
  readonly source: string;
}

export interface ImageStoreOptions {
  readonly artifactsDir: string;
  readonly cacheDir: string;
  readonly artifacts: ArtifactStore;
  readonly log: Logger;
  /** qemu-img and zstd may take long on a big image; never forever. */
  readonly convertTimeoutMs?: number;
  /** Told about each conversion (for the event log). */
  readonly onConverted?: ((f: { source: string; file: string; size: number; sha256: string; rawSize: number; seconds: number }) => void) | undefined;
}

export interface ImageStore {
  prepare(spec: ImageSpec): Promise<PreparedImage>;
  /** For the artifact store: the upstream of a file this store named. */
  upstreamOf(file: string): { url: string; sha256: string | null } | null;
}

const isUrl = (s: string): boolean => /^https?:\/\//.test(s);

/** The name a source is cached under: its own file name, after a short hash of the URL so two sites' `disk.img` never meet. */
export function cacheName(source: string): string {
  if (!isUrl(source)) return source;
  const last = basename(new URL(source).pathname) || 'image';
  const safe = last.replace(/[^A-Za-z0-9._-]/g, '_').replace(/^[._-]+/, '').slice(0, 100) || 'image';
  return `${createHash('sha256').update(source).digest('hex').slice(0, 8)}-${safe}`;
}

async function sha256Of(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

async function headOf(path: string): Promise<Buffer> {
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(512);
    const { bytesRead } = await fh.read(buf, 0, 512, 0);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

/** The decompressed size zstd or xz record in their headers, when they do. */
async function recordedRawSize(path: string, format: ImageFormat, size: number): Promise<number | null> {
  try {
    if (format === 'raw') return size;
    if (format === 'zst') {
      const { stdout } = await run('zstd', ['-lv', path], { timeout: 60_000 });
      const m = /Decompressed Size:.*\((\d+) B\)/.exec(stdout);
      return m ? Number(m[1]) : null;
    }
    if (format === 'xz') {
      const { stdout } = await run('xz', ['--robot', '-l', path], { timeout: 60_000 });
      const m = /^totals\t\d+\t\d+\t\d+\t(\d+)/m.exec(stdout);
      return m ? Number(m[1]) : null;
    }
  } catch {
    /* the tool is missing or cannot tell: the agent finds out while writing */
  }
  return null;
}

export function createImageStore(o: ImageStoreOptions): ImageStore {
  const upstreams = new Map<string, { url: string; sha256: string | null }>();
  const preparing = new Map<string, Promise<PreparedImage>>();
  // SHA-256 of files served as they are, by path, size and time: hashing a big image takes seconds.
  const hashes = new Map<string, { key: string; sha256: string }>();

  async function knownSha256(path: string): Promise<string> {
    const st = await stat(path);
    const key = `${st.size}:${st.mtimeMs}`;
    const hit = hashes.get(path);
    if (hit?.key === key) return hit.sha256;
    const recorded = await recordedSha256(path);
    const sha256 = recorded ?? (await sha256Of(path));
    hashes.set(path, { key, sha256 });
    return sha256;
  }

  /** qemu-img → raw → zstd, into the cache beside the download; kept for every later machine. */
  async function convert(src: string, file: string, source: string, format: ImageFormat): Promise<PreparedImage> {
    const dir = join(o.cacheDir, 'images');
    const out = join(dir, `${baseName(file)}.raw.zst`);
    const meta = `${out}.json`;
    try {
      const m = JSON.parse(await readFile(meta, 'utf8')) as { sha256: string; rawSize: number };
      const st = await stat(out);
      return { file: basename(out), path: out, size: st.size, format: 'zst', sha256: m.sha256, rawSize: m.rawSize, origin: 'converted', source };
    } catch {
      /* not converted yet */
    }
    await mkdir(dir, { recursive: true });
    const tag = `${process.pid}-${randomBytes(3).toString('hex')}`;
    const raw = join(dir, `.${baseName(file)}.raw-${tag}`);
    const zst = join(dir, `.${baseName(file)}.zst-${tag}`);
    const started = Date.now();
    const timeout = o.convertTimeoutMs ?? 3_600_000;
    o.log.info({ file, source }, 'converting image to raw');
    try {
      // The format named, never probed, and no backing file: a downloaded image must not make
      // qemu-img read anything of this host's but itself.
      const info = await run('qemu-img', ['info', '-U', '--output=json', '-f', format, src], { timeout: 60_000 }).then(
        (r) => JSON.parse(r.stdout) as { 'backing-filename'?: string; 'data-file'?: string },
        (err: unknown) => {
          throw new Error(`qemu-img info: ${errorMessage(err).split('\n').slice(-2).join(' ')} (racksmith converts qcow2, VMDK, VHDX and VDI images with qemu-img: apt-get install qemu-utils)`);
        },
      );
      if (info['backing-filename'] || info['data-file']) throw new Error(`it refers to another file (${info['backing-filename'] ?? info['data-file'] ?? ''}): only self-contained images are converted`);
      await run('qemu-img', ['convert', '-U', '-f', format, '-O', 'raw', src, raw], { timeout }).catch((err: unknown) => {
        throw new Error(`qemu-img convert: ${errorMessage(err).split('\n').slice(-2).join(' ')} (racksmith converts qcow2, VMDK, VHDX and VDI images with qemu-img: apt-get install qemu-utils)`);
      });
      const rawSize = (await stat(raw)).size;
      await run('zstd', ['-q', '-T0', '-3', raw, '-o', zst], { timeout }).catch((err: unknown) => {
        throw new Error(`zstd: ${errorMessage(err).split('\n').slice(-2).join(' ')} (apt-get install zstd)`);
      });
      const sha256 = await sha256Of(zst);
      await rename(zst, out);
      await writeFile(meta, JSON.stringify({ source, sha256, rawSize }) + '\n');
      const size = (await stat(out)).size;
      const seconds = (Date.now() - started) / 1000;
      o.log.info({ file: basename(out), size, rawSize, sha256, seconds }, 'image converted');
      o.onConverted?.({ source, file: basename(out), size, sha256, rawSize, seconds });
      return { file: basename(out), path: out, size, format: 'zst', sha256, rawSize, origin: 'converted', source };
    } finally {
      await unlink(raw).catch(() => undefined);
      await unlink(zst).catch(() => undefined);
    }
  }

  async function prepareNow(spec: ImageSpec): Promise<PreparedImage> {
    const file = cacheName(spec.source);
    if (!ARTIFACT_NAME.test(file)) throw new AppError('invalid', 'ERR_IMAGE_SOURCE', `image "${spec.source.slice(0, 80)}": a file name in the artifacts directory's images/ or an http(s) URL`);
    if (isUrl(spec.source)) upstreams.set(file, { url: spec.source, sha256: spec.sha256 });
    let art;
    try {
      // A file of the URL's own name in the artifacts directory wins: the site staged it.
      const plain = isUrl(spec.source) ? basename(new URL(spec.source).pathname) : null;
      const staged = plain && ARTIFACT_NAME.test(plain) ? await o.artifacts.resolve('images', plain).catch(() => null) : null;
      art = staged?.source === 'local' ? staged : await o.artifacts.resolve('images', file);
    } catch (err) {
      if (err instanceof AppError) throw new AppError(err.kind, err.code, `image ${spec.source}: ${err.message}`);
      throw err;
    }
    const format = sniffImageFormat(await headOf(art.path));
    const origin = art.source === 'local' ? 'local' : art.source === 'fetched' ? 'fetched' : 'cache';
    if (!STREAMABLE.includes(format)) {
      try {
        return await convert(art.path, art.file, spec.source, format);
      } catch (err) {
        throw new AppError('unavailable', 'ERR_IMAGE_CONVERT', `image ${spec.source} (${format}): ${errorMessage(err)}`);
      }
    }
    // Served as it is: the agent checks it against the pinned SHA-256, or racksmith's own.
    const sha256 = spec.sha256 ?? (await knownSha256(art.path));
    return { file: art.file, path: art.path, size: art.size, format: format as PreparedImage['format'], sha256, rawSize: await recordedRawSize(art.path, format, art.size), origin, source: spec.source };
  }

  return {
    prepare(spec) {
      const key = `${spec.source}\0${spec.sha256 ?? ''}`;
      let p = preparing.get(key);
      if (!p) {
        p = prepareNow(spec).finally(() => preparing.delete(key));
        preparing.set(key, p);
      }
      return p;
    },
    upstreamOf(file) {
      return upstreams.get(file) ?? null;
    },
  };
}
