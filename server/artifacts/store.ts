import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readFile, realpath, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { join, sep } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { AppError, errorMessage, notFound } from '../lib/errors.js';
import type { Logger } from '../lib/log.js';
import { UBUNTU_RELEASES } from '../inventory/model.js';
import type { InstallerKey } from '../inventory/os.js';
import type { ArtifactKey, ReleaseInstaller } from '../boot/releases.js';
import { locateInIso } from './iso-extract.js';
import { IsoError } from './iso9660.js';

/**
 * Installer artifacts (kernels, initrds, ISOs) for `GET /artifacts/<release>/<file>`.
 *
 * Lookup order: the operator's artifacts directory (served as is), then racksmith's cache in the
 * data directory, then the release's configured upstream — a URL, or `iso:<path>` for a file
 * inside the release's ISO (casper's kernel and initrd) — fetched or extracted once into the cache,
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
  readonly installers: Readonly<Record<InstallerKey, ReleaseInstaller>>;
  /**
   * The deploy agent's files (`/artifacts/agent/<file>`), built by racksmith when it is not in
   * the artifacts directory: file name → path.
   */
  readonly agent?: (() => Promise<Readonly<Record<string, string>>>) | undefined;
  /** Where an OS image of image deployment (`/artifacts/images/<file>`) comes from, when racksmith knows. */
  readonly imageUpstream?: ((file: string) => { readonly url: string; readonly sha256: string | null } | null) | undefined;
  /** A download that receives nothing for this long is abandoned. */
  readonly fetchIdleTimeoutMs: number;
  readonly log: Logger;
  /** Told about each completed download (for the event log). */
  readonly onFetched?: ((f: FetchedArtifact) => void) | undefined;
}

export type ArtifactSource = 'local' | 'cache' | 'fetched' | 'built';

export interface ResolvedArtifact {
  readonly release: ArtifactKey | 'images';
  readonly file: string;
  readonly path: string;
  readonly size: number;
  readonly source: ArtifactSource;
}

export interface FetchedArtifact {
  readonly release: ArtifactKey | 'images';
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

export const ARTIFACT_KEYS: readonly (ArtifactKey | 'images')[] = [...UBUNTU_RELEASES, 'debian-12', 'agent', 'images'];

export function isRelease(s: string): s is ArtifactKey | 'images' {
  return (ARTIFACT_KEYS as readonly string[]).includes(s);
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

  /**
   * Writes a stream into the cache as `<release>/<file>`: to a temporary name while hashing, then
   * renamed into place with its `.sha256` — or removed, on any failure.
   */
  async function materialize(release: InstallerKey | 'images', file: string, from: string, open: (signal: AbortSignal) => Promise<{ body: Readable; length: number | null }>, expected: string | undefined): Promise<ResolvedArtifact> {
    const dir = join(o.cacheDir, release);
    await mkdir(dir, { recursive: true });
    const final = join(dir, file);
    const tmp = join(dir, `.${file}.part-${process.pid}-${randomBytes(4).toString('hex')}`);
    const started = Date.now();
    const abort = new AbortController();
    const stall = (): void => abort.abort(new Error(`no data for ${o.fetchIdleTimeoutMs} ms`));
    let idle: NodeJS.Timeout = setTimeout(stall, o.fetchIdleTimeoutMs);
    const hash = createHash('sha256');
    let size = 0;
    o.log.info({ release, file, from }, 'caching artifact');
    try {
      const src = await open(abort.signal);
      const meter = new Transform({
        transform(chunk: Buffer, _enc, cb) {
          clearTimeout(idle);
          idle = setTimeout(stall, o.fetchIdleTimeoutMs);
          hash.update(chunk);
          size += chunk.length;
          cb(null, chunk);
        },
      });
      await pipeline(src.body, meter, createWriteStream(tmp, { mode: 0o644 }), { signal: abort.signal });
      if (src.length !== null && src.length !== size) throw new Error(`got ${size} bytes of ${src.length}`);
      const sha256 = hash.digest('hex');
      if (expected && expected !== sha256) throw new Error(`SHA-256 ${sha256} does not match the configured ${expected}`);
      await writeFile(`${final}.sha256`, `${sha256}  ${file}\n`);
      await rename(tmp, final);
      const seconds = (Date.now() - started) / 1000;
      o.log.info({ release, file, from, size, sha256, seconds }, 'artifact cached');
      o.onFetched?.({ release, file, url: from, size, sha256, seconds });
      return { release, file, path: final, size, source: 'fetched' };
    } catch (err) {
      await unlink(tmp).catch(() => undefined);
      const why = abort.signal.aborted ? errorMessage(abort.signal.reason) : errorMessage(err);
      o.log.warn({ release, file, from, err: why }, 'artifact not cached');
      if (err instanceof IsoError) throw new AppError('unavailable', err.code, `cannot take ${release}/${file} from ${from}: ${why}`);
      throw new AppError('unavailable', 'ERR_UPSTREAM', `cannot fetch ${release}/${file} from ${from}: ${why}`);
    } finally {
      clearTimeout(idle);
    }
  }

  function fromUrl(url: string) {
    return async (signal: AbortSignal): Promise<{ body: Readable; length: number | null }> => {
      const res = await fetch(url, { signal, redirect: 'follow' });
      if (!res.ok || !res.body) throw new Error(`upstream answered HTTP ${res.status}`);
      const declared = res.headers.get('content-length');
      return { body: Readable.fromWeb(res.body as WebReadableStream), length: declared === null ? null : Number(declared) };
    };
  }

  /** A file inside the release's ISO (itself local, cached or fetched first). */
  function fromIso(release: InstallerKey, inside: string) {
    return async (): Promise<{ body: Readable; length: number | null }> => {
      const iso = o.installers[release].iso;
      if (!iso) throw new Error(`Ubuntu ${release} has no ISO configured`);
      const art = await resolve(release, iso);
      const at = await locateInIso(art.path, inside);
      return { body: createReadStream(art.path, { start: at.offset, end: at.offset + at.size - 1 }), length: at.size };
    };
  }

  async function resolve(release: string, file: string): Promise<ResolvedArtifact> {
    if (!isRelease(release)) throw notFound('ERR_UNKNOWN_RELEASE', `no installer "${release.slice(0, 20)}" (known: ${ARTIFACT_KEYS.join(', ')})`);
    if (!ARTIFACT_NAME.test(file)) throw notFound('ERR_UNKNOWN_ARTIFACT', 'artifact names are plain file names');
    const local = await fileIn(o.artifactsDir, release, file);
    if (local) return { release, file, ...local, source: 'local' };
    if (release === 'agent') return builtAgent(file);
    const cached = await fileIn(o.cacheDir, release, file);
    if (cached) return { release, file, ...cached, source: 'cache' };
    if (release === 'images') return fetchImage(file);
    const inst = o.installers[release];
    const upstream = inst.upstream[file];
    if (!upstream) throw notFound('ERR_UNKNOWN_ARTIFACT', `no artifact ${release}/${file}: not in the artifacts directory and no upstream is configured for it`);
    const key = `${release}/${file}`;
    let p = downloads.get(key);
    if (!p) {
      const open = upstream.startsWith('iso:') ? fromIso(release, upstream.slice(4)) : fromUrl(upstream);
      p = materialize(release, file, upstream.startsWith('iso:') ? `${inst.iso ?? '?'}:${upstream.slice(4)}` : upstream, open, inst.sha256[file]).finally(() => downloads.delete(key));
      downloads.set(key, p);
    }
    return p;
  }

  async function fetchImage(file: string): Promise<ResolvedArtifact> {
    const up = o.imageUpstream?.(file);
    if (!up) throw notFound('ERR_UNKNOWN_ARTIFACT', `no image ${file}: not in the artifacts directory's images/ and no cluster names it`);
    const key = `images/${file}`;
    let p = downloads.get(key);
    if (!p) {
      p = materialize('images', file, up.url, fromUrl(up.url), up.sha256 ?? undefined).finally(() => downloads.delete(key));
      downloads.set(key, p);
    }
    return p;
  }

  async function builtAgent(file: string): Promise<ResolvedArtifact> {
    if (!o.agent) throw notFound('ERR_UNKNOWN_ARTIFACT', `no deploy agent file ${file} in the artifacts directory`);
    let files: Readonly<Record<string, string>>;
    try {
      files = await o.agent();
    } catch (err) {
      throw new AppError('unavailable', 'ERR_AGENT_BUILD', `the deploy agent is not built and cannot be built here: ${errorMessage(err)}`);
    }
    const path = files[file];
    if (!path) throw notFound('ERR_UNKNOWN_ARTIFACT', `the deploy agent has no file ${file} (it has ${Object.keys(files).join(', ')})`);
    const st = await stat(path);
    return { release: 'agent', file, path, size: st.size, source: 'built' };
  }

  return {
    resolve,
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
