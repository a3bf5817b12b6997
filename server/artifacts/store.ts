import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { chmod, mkdir, readFile, realpath, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { dirname, join, sep } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { AppError, errorMessage, notFound } from '../lib/errors.js';
import type { Logger } from '../lib/log.js';
import { UBUNTU_RELEASES } from '../inventory/model.js';
import type { InstallerKey } from '../inventory/os.js';
import { DEFAULT_ARM64_INSTALLERS, INSTALLER_ARCHES, type ArtifactKey, type InstallerArch, type ReleaseInstaller } from '../boot/releases.js';
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
  /** The arm64 table (default: the built-in one); amd64's is `installers`. */
  readonly arm64Installers?: Readonly<Partial<Record<InstallerKey, ReleaseInstaller>>>;
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
  /** Absent for amd64 (stored as `<release>/<file>`); arm64 files are `<release>/arm64/<file>`. */
  readonly arch?: InstallerArch;
  readonly file: string;
  /** The real path (links resolved), inside `root`. */
  readonly path: string;
  readonly size: number;
  /** Last modification, for Last-Modified (milliseconds since the epoch). */
  readonly mtimeMs: number;
  readonly source: ArtifactSource;
  /** Which directory holds it (the artifacts directory, or the cache) and its real path there. */
  readonly root: 'local' | 'cache';
  readonly relative: string;
}

export interface FetchedArtifact {
  /** The release, or the cache folder of a pinned file (`fetchPinned`). */
  readonly release: ArtifactKey | 'images' | string;
  readonly file: string;
  readonly url: string;
  readonly size: number;
  readonly sha256: string;
  readonly seconds: number;
}

/** A download in progress: how far it got. */
export interface DownloadProgress {
  readonly release: ArtifactKey | 'images' | string;
  readonly file: string;
  readonly from: string;
  readonly bytes: number;
  /** From the upstream's Content-Length (or the file's size inside the ISO); null when unknown. */
  readonly total: number | null;
  readonly startedAt: number;
}

/** Where a file would come from, without fetching it (the preflight's question). */
export type ArtifactLocation =
  | { readonly source: 'local' | 'cache'; readonly path: string; readonly size: number }
  | { readonly source: 'upstream'; readonly url: string }
  | { readonly source: 'iso'; readonly iso: string; readonly path: string }
  | { readonly source: 'none'; readonly message: string };

export interface ArtifactStore {
  /** `arch` defaults to amd64; an ARM64 machine asks with `arm64` and never gets amd64 files. */
  resolve(release: string, file: string, arch?: string): Promise<ResolvedArtifact>;
  locate(release: string, file: string): Promise<ArtifactLocation>;
  /**
   * A file that is not an installer artifact, pinned by its SHA-256 (the signed boot loaders'
   * packages): `<cache>/<where>/<file>` when it is there with that SHA-256 recorded, else fetched
   * once from `url` like an artifact, and refused unless its SHA-256 matches.
   */
  fetchPinned(where: string, file: string, url: string, sha256: string): Promise<PinnedFile>;
  /** Downloads in progress (for health and tests). */
  inFlight(): number;
  /** The progress of the download of `release/file`, if one is running (a prefetch shows it). */
  progress(release: string, file: string): DownloadProgress | null;
}

export interface PinnedFile {
  readonly path: string;
  readonly size: number;
  readonly sha256: string;
  readonly source: 'cache' | 'fetched';
}

type Opener = (signal: AbortSignal) => Promise<{ body: Readable; length: number | null }>;

/** A cache folder for pinned files: plain names joined by `/`, no `..`, nothing hidden. */
const PINNED_WHERE = /^[A-Za-z0-9][A-Za-z0-9._-]*(\/[A-Za-z0-9][A-Za-z0-9._-]*)*$/;

export const ARTIFACT_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export const ARTIFACT_KEYS: readonly (ArtifactKey | 'images')[] = [...UBUNTU_RELEASES, 'debian-12', 'agent', 'images'];

export function isRelease(s: string): s is ArtifactKey | 'images' {
  return (ARTIFACT_KEYS as readonly string[]).includes(s);
}

async function fileIn(dir: string, release: string, file: string): Promise<{ path: string; size: number; mtimeMs: number; relative: string } | null> {
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
  return st && st.isFile() ? { path: real, size: st.size, mtimeMs: st.mtimeMs, relative: real.slice(root.length + 1) } : null;
}

export function createArtifactStore(o: ArtifactStoreOptions): ArtifactStore {
  const downloads = new Map<string, Promise<ResolvedArtifact>>();
  const pinned = new Map<string, Promise<PinnedFile>>();
  const meters = new Map<string, { -readonly [K in keyof DownloadProgress]: DownloadProgress[K] }>();

  /**
   * Writes a stream into the cache as `<release>/<file>`: to a temporary name while hashing, then
   * renamed into place with its `.sha256` — or removed, on any failure.
   */
  async function materialize(release: InstallerKey | 'images', arch: InstallerArch, file: string, from: string, open: Opener, expected: string | undefined): Promise<ResolvedArtifact> {
    const where = subdir(release, arch);
    const got = await download(where, release, file, from, open, expected);
    return { release, ...archField(arch), file, path: got.path, size: got.size, mtimeMs: got.mtimeMs, source: 'fetched', root: 'cache', relative: join(where, file) };
  }

  async function download(where: string, label: string, file: string, from: string, open: Opener, expected: string | undefined): Promise<{ path: string; size: number; mtimeMs: number; sha256: string }> {
    const release = label;
    const dir = join(o.cacheDir, where);
    const final = join(dir, file);
    const tmp = join(dir, `.${file}.part-${process.pid}-${randomBytes(4).toString('hex')}`);
    const started = Date.now();
    const abort = new AbortController();
    const stall = (): void => abort.abort(new Error(`no data for ${o.fetchIdleTimeoutMs} ms`));
    let idle: NodeJS.Timeout = setTimeout(stall, o.fetchIdleTimeoutMs);
    const hash = createHash('sha256');
    let size = 0;
    const progress = { release, file, from, bytes: 0, total: null as number | null, startedAt: started };
    meters.set(`${release}/${file}`, progress);
    o.log.info({ release, file, from }, 'caching artifact');
    try {
      // Installer artifacts are public files that an artifacts front (nginx, as another user)
      // reads: readable by others whatever the process's umask (the systemd unit's is 0077).
      const made = await mkdir(dir, { recursive: true });
      for (let p = dir; made !== undefined; p = dirname(p)) {
        await chmod(p, 0o755);
        if (p === made || p === dirname(p)) break;
      }
      const src = await open(abort.signal);
      progress.total = src.length;
      const meter = new Transform({
        transform(chunk: Buffer, _enc, cb) {
          clearTimeout(idle);
          idle = setTimeout(stall, o.fetchIdleTimeoutMs);
          hash.update(chunk);
          size += chunk.length;
          progress.bytes = size;
          cb(null, chunk);
        },
      });
      await pipeline(src.body, meter, createWriteStream(tmp, { mode: 0o644 }), { signal: abort.signal });
      if (src.length !== null && src.length !== size) throw new Error(`got ${size} bytes of ${src.length}`);
      const sha256 = hash.digest('hex');
      if (expected && expected !== sha256) throw new Error(`SHA-256 ${sha256} does not match the configured ${expected}`);
      await writeFile(`${final}.sha256`, `${sha256}  ${file}\n`);
      await chmod(tmp, 0o644);
      await rename(tmp, final);
      const { mtimeMs } = await stat(final);
      const seconds = (Date.now() - started) / 1000;
      o.log.info({ release, file, from, size, sha256, seconds }, 'artifact cached');
      o.onFetched?.({ release, file, url: from, size, sha256, seconds });
      return { path: final, size, mtimeMs, sha256 };
    } catch (err) {
      await unlink(tmp).catch(() => undefined);
      const why = abort.signal.aborted ? errorMessage(abort.signal.reason) : errorMessage(err);
      o.log.warn({ release, file, from, err: why }, 'artifact not cached');
      if (err instanceof IsoError) throw new AppError('unavailable', err.code, `cannot take ${release}/${file} from ${from}: ${why}`);
      throw new AppError('unavailable', 'ERR_UPSTREAM', `cannot fetch ${release}/${file} from ${from}: ${abort.signal.aborted ? why : withoutPaths(err)}`);
    } finally {
      clearTimeout(idle);
      meters.delete(`${release}/${file}`);
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

  const tableOf = (arch: InstallerArch): Readonly<Partial<Record<InstallerKey, ReleaseInstaller>>> => (arch === 'arm64' ? (o.arm64Installers ?? DEFAULT_ARM64_INSTALLERS) : o.installers);

  /** A file inside the release's ISO (itself local, cached or fetched first). */
  function fromIso(release: InstallerKey, arch: InstallerArch, inside: string) {
    return async (): Promise<{ body: Readable; length: number | null }> => {
      const iso = tableOf(arch)[release]?.iso;
      if (!iso) throw new Error(`${release} (${arch}) has no ISO configured`);
      const art = await resolve(release, iso, arch);
      const at = await locateInIso(art.path, inside);
      return { body: createReadStream(art.path, { start: at.offset, end: at.offset + at.size - 1 }), length: at.size };
    };
  }

  async function resolve(release: string, file: string, archName = 'amd64'): Promise<ResolvedArtifact> {
    if (!isRelease(release)) throw notFound('ERR_UNKNOWN_RELEASE', `no installer "${release.slice(0, 20)}" (known: ${ARTIFACT_KEYS.join(', ')})`);
    if (!(INSTALLER_ARCHES as readonly string[]).includes(archName)) throw notFound('ERR_UNKNOWN_ARCH', `no installer architecture "${archName.slice(0, 20)}" (known: ${INSTALLER_ARCHES.join(', ')})`);
    const arch = archName as InstallerArch;
    if (!ARTIFACT_NAME.test(file)) throw notFound('ERR_UNKNOWN_ARTIFACT', 'artifact names are plain file names');
    const where = subdir(release, arch);
    const local = await fileIn(o.artifactsDir, where, file);
    if (local) return { release, ...archField(arch), file, ...local, source: 'local', root: 'local' };
    // The agent and images are amd64-only folders (arm64 has no deploy agent yet).
    if (release === 'agent' && arch === 'amd64') return builtAgent(file);
    const cached = await fileIn(o.cacheDir, where, file);
    if (cached) return { release, ...archField(arch), file, ...cached, source: 'cache', root: 'cache' };
    if (release === 'images' && arch === 'amd64') return fetchImage(file);
    const inst = release === 'agent' || release === 'images' ? undefined : tableOf(arch)[release];
    const upstream = inst?.upstream[file];
    if (!inst || !upstream || release === 'agent' || release === 'images') throw notFound('ERR_UNKNOWN_ARTIFACT', `no artifact ${where}/${file}: not in the artifacts directory and no upstream is configured for it`);
    const key = `${where}/${file}`;
    let p = downloads.get(key);
    if (!p) {
      const open = upstream.startsWith('iso:') ? fromIso(release, arch, upstream.slice(4)) : fromUrl(upstream);
      p = materialize(release, arch, file, upstream.startsWith('iso:') ? `${inst.iso ?? '?'}:${upstream.slice(4)}` : upstream, open, inst.sha256[file]).finally(() => downloads.delete(key));
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
      p = materialize('images', 'amd64', file, up.url, fromUrl(up.url), up.sha256 ?? undefined).finally(() => downloads.delete(key));
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
    // Built into the cache: a front may send it (an empty relative name means racksmith sends it).
    const [real, cacheRoot] = await Promise.all([realpath(path), realpath(o.cacheDir).catch(() => o.cacheDir)]);
    const relative = real.startsWith(cacheRoot + sep) ? real.slice(cacheRoot.length + 1) : '';
    return { release: 'agent', file, path, size: st.size, mtimeMs: st.mtimeMs, source: 'built', root: 'cache', relative };
  }

  async function locate(release: string, file: string): Promise<ArtifactLocation> {
    if (!isRelease(release)) return { source: 'none', message: `no installer "${release.slice(0, 20)}"` };
    if (!ARTIFACT_NAME.test(file)) return { source: 'none', message: 'artifact names are plain file names' };
    const local = await fileIn(o.artifactsDir, release, file);
    if (local) return { source: 'local', ...local };
    const cached = await fileIn(o.cacheDir, release, file);
    if (cached) return { source: 'cache', ...cached };
    // The deploy agent is built, not fetched: locating it builds it once (cached by its inputs).
    if (release === 'agent') {
      try {
        const built = await builtAgent(file);
        return { source: 'cache', path: built.path, size: built.size };
      } catch (err) {
        return { source: 'none', message: errorMessage(err) };
      }
    }
    if (release === 'images') {
      const up = o.imageUpstream?.(file);
      return up ? { source: 'upstream', url: up.url } : { source: 'none', message: `no image ${file}: not in the artifacts directory's images/ and no cluster names it` };
    }
    const upstream = o.installers[release].upstream[file];
    if (!upstream) return { source: 'none', message: `not in the artifacts directory (${join(release, file)}) and no upstream is configured for it` };
    if (upstream.startsWith('iso:')) return { source: 'iso', iso: o.installers[release].iso ?? '?', path: upstream.slice(4) };
    return { source: 'upstream', url: upstream };
  }

  async function fetchPinned(where: string, file: string, url: string, sha256: string): Promise<PinnedFile> {
    if (!PINNED_WHERE.test(where) || where.split('/').includes('..')) throw new AppError('invalid', 'ERR_INVALID', `not a cache folder: ${where.slice(0, 60)}`);
    if (!ARTIFACT_NAME.test(file)) throw new AppError('invalid', 'ERR_INVALID', `not a plain file name: ${file.slice(0, 60)}`);
    if (!/^[0-9a-f]{64}$/.test(sha256)) throw new AppError('invalid', 'ERR_INVALID', 'a pinned file needs its SHA-256 (64 hex digits)');
    const path = join(o.cacheDir, where, file);
    const st = await stat(path).catch(() => null);
    if (st?.isFile() && (await recordedSha256(path)) === sha256) return { path, size: st.size, sha256, source: 'cache' };
    const key = `${where}/${file}`;
    let p = pinned.get(key);
    if (!p) {
      p = download(where, where, file, url, fromUrl(url), sha256)
        .then((got): PinnedFile => ({ path: got.path, size: got.size, sha256: got.sha256, source: 'fetched' }))
        .finally(() => pinned.delete(key));
      pinned.set(key, p);
    }
    return p;
  }

  return {
    resolve,
    locate,
    fetchPinned,
    inFlight() {
      return downloads.size + pinned.size;
    },
    progress(release, file) {
      const m = meters.get(`${release}/${file}`);
      return m ? { ...m } : null;
    },
  };
}

/**
 * A failure as a machine may read it: a file-system error names the call and its code, not the
 * path on racksmith's disk (the log has the whole message).
 */
function withoutPaths(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  if (typeof e?.code === 'string' && typeof e.syscall === 'string') return `the artifacts cache: ${e.syscall} failed (${e.code})`;
  return errorMessage(err);
}

/** amd64 files stay where they always were (`<release>/`); others under `<release>/<arch>/`. */
function subdir(release: ArtifactKey | 'images', arch: InstallerArch): string {
  return arch === 'amd64' ? release : join(release, arch);
}

function archField(arch: InstallerArch): { arch?: InstallerArch } {
  return arch === 'amd64' ? {} : { arch };
}

/** The recorded SHA-256 of a cached file, if any. */
export async function recordedSha256(path: string): Promise<string | null> {
  try {
    return (await readFile(`${path}.sha256`, 'utf8')).split(/\s/)[0] ?? null;
  } catch {
    return null;
  }
}
