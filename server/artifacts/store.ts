import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, readFile, realpath, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { join, sep } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { AppError, errorMessage, notFound } from '../lib/errors.js';
import type { Logger } from '../lib/log.js';
import { UBUNTU_RELEASES, type UbuntuRelease } from '../inventory/model.js';
import type { ReleaseInstaller } from '../boot/releases.js';

/**
 * Installer artifacts (kernels, initrds, ISOs) for `GET /artifacts/<release>/<file>`.
 *
 * Lookup order: the operator's artifacts directory (served as is), then racksmith's cache in the
 * data directory, then the release's configured upstream URL — fetched once into the cache,
 * however many machines ask at the same moment (they all wait on the one download), so a rack
 * of 40 machines pulls each file from outside once. A download goes to a temporary name and is
 * renamed into place only when complete (and its SHA-256 matches, if one is configured), so a
 * failed or cut download never leaves a partial file that would be served later. The SHA-256
 * of every fetched file is recorded beside it (`<file>.sha256`, sha256sum format).
 *
 * Paths are jailed twice: names must be plain file names, and the resolved real path must stay
 * inside its directory (a symlink pointing out is refused).
 */
export interface ArtifactStoreOptions {
  readonly artifactsDir: string;
  readonly cacheDir: string;
  readonly installers: Readonly<Record<UbuntuRelease, ReleaseInstaller>>;
  /** A download that receives nothing for this long is abandoned. */
  readonly fetchIdleTimeoutMs: number;
  readonly log: Logger;
  /** Told about each completed download (for the event log). */
  readonly onFetched?: ((f: FetchedArtifact) => void) | undefined;
}

export type ArtifactSource = 'local' | 'cache' | 'fetched';

export interface ResolvedArtifact {
  readonly release: UbuntuRelease;
  readonly file: string;
  readonly path: string;
  readonly size: number;
  readonly source: ArtifactSource;
}

export interface FetchedArtifact {
  readonly release: UbuntuRelease;
  readonly file: string;
  readonly url: string;
  readonly size: number;
  readonly sha256: string;
  readonly seconds: number;
}

export interface ArtifactStore {
  resolve(release: string, file: string): Promise<ResolvedArtifact>;
  /** Downloads in progress (for health and tests). */
  inFlight(): number;
}

export const ARTIFACT_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export function isRelease(s: string): s is UbuntuRelease {
  return (UBUNTU_RELEASES as readonly string[]).includes(s);
}

async function fileIn(dir: string, release: string, file: string): Promise<{ path: string; size: number } | null> {
  const candidate = join(dir, release, file);
  let real: string;
  let root: string;
  try {
    [real, root] = await Promise.all([realpath(candidate), realpath(dir)]);
  } catch {
    return null;
  }
  if (!real.startsWith(root + sep)) return null;
  const st = await stat(real).catch(() => null);
  return st && st.isFile() ? { path: real, size: st.size } : null;
}

export function createArtifactStore(o: ArtifactStoreOptions): ArtifactStore {
  const downloads = new Map<string, Promise<ResolvedArtifact>>();

  async function download(release: UbuntuRelease, file: string, url: string, expected: string | undefined): Promise<ResolvedArtifact> {
    const dir = join(o.cacheDir, release);
    await mkdir(dir, { recursive: true });
    const final = join(dir, file);
    const tmp = join(dir, `.${file}.part-${process.pid}-${randomBytes(4).toString('hex')}`);
    const started = Date.now();
    const abort = new AbortController();
    let idle: NodeJS.Timeout = setTimeout(() => abort.abort(new Error(`no data for ${o.fetchIdleTimeoutMs} ms`)), o.fetchIdleTimeoutMs);
    const touch = (): void => {
      clearTimeout(idle);
      idle = setTimeout(() => abort.abort(new Error(`no data for ${o.fetchIdleTimeoutMs} ms`)), o.fetchIdleTimeoutMs);
    };
    const hash = createHash('sha256');
    let size = 0;
    o.log.info({ release, file, url }, 'fetching artifact from upstream');
    try {
      const res = await fetch(url, { signal: abort.signal, redirect: 'follow' });
      if (!res.ok || !res.body) throw new Error(`upstream answered HTTP ${res.status}`);
      const meter = new Transform({
        transform(chunk: Buffer, _enc, cb) {
          touch();
          hash.update(chunk);
          size += chunk.length;
          cb(null, chunk);
        },
      });
      await pipeline(Readable.fromWeb(res.body as WebReadableStream), meter, createWriteStream(tmp, { mode: 0o644 }), { signal: abort.signal });
      const declared = res.headers.get('content-length');
      if (declared !== null && Number(declared) !== size) throw new Error(`got ${size} bytes of ${declared}`);
      const sha256 = hash.digest('hex');
      if (expected && expected !== sha256) throw new Error(`SHA-256 ${sha256} does not match the configured ${expected}`);
      await writeFile(`${final}.sha256`, `${sha256}  ${file}\n`);
      await rename(tmp, final);
      const seconds = (Date.now() - started) / 1000;
      o.log.info({ release, file, url, size, sha256, seconds }, 'artifact cached');
      o.onFetched?.({ release, file, url, size, sha256, seconds });
      return { release, file, path: final, size, source: 'fetched' };
    } catch (err) {
      await unlink(tmp).catch(() => undefined);
      const why = abort.signal.aborted ? errorMessage(abort.signal.reason) : errorMessage(err);
      o.log.warn({ release, file, url, err: why }, 'artifact download failed');
      throw new AppError('unavailable', 'ERR_UPSTREAM', `cannot fetch ${release}/${file} from its upstream: ${why}`);
    } finally {
      clearTimeout(idle);
    }
  }

  return {
    async resolve(release, file) {
      if (!isRelease(release)) throw notFound('ERR_UNKNOWN_RELEASE', `no Ubuntu release "${release.slice(0, 20)}" (known: ${UBUNTU_RELEASES.join(', ')})`);
      if (!ARTIFACT_NAME.test(file)) throw notFound('ERR_UNKNOWN_ARTIFACT', 'artifact names are plain file names');
      const local = await fileIn(o.artifactsDir, release, file);
      if (local) return { release, file, ...local, source: 'local' };
      const cached = await fileIn(o.cacheDir, release, file);
      if (cached) return { release, file, ...cached, source: 'cache' };
      const inst = o.installers[release];
      const upstream = inst.upstream[file];
      if (!upstream) throw notFound('ERR_UNKNOWN_ARTIFACT', `no artifact ${release}/${file}: not in the artifacts directory and no upstream is configured for it`);
      if (upstream.startsWith('iso:')) {
        throw notFound('ERR_ARTIFACT_IN_ISO', `${release}/${file} comes from inside the ISO (${upstream}); extract it into the artifacts directory (RACKSMITH_ARTIFACTS_DIR/${release}/${file}) or configure an http(s) upstream for it`);
      }
      const key = `${release}/${file}`;
      let p = downloads.get(key);
      if (!p) {
        p = download(release, file, upstream, inst.sha256[file]).finally(() => downloads.delete(key));
        downloads.set(key, p);
      }
      return p;
    },
    inFlight() {
      return downloads.size;
    },
  };
}

/** The recorded SHA-256 of a cached file, if any. */
export async function recordedSha256(path: string): Promise<string | null> {
  try {
    return (await readFile(`${path}.sha256`, 'utf8')).split(/\s/)[0] ?? null;
  } catch {
    return null;
  }
}
