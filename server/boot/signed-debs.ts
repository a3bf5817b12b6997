import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { copyFile, mkdir, mkdtemp, readFile, readdir, rename, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { promisify } from 'node:util';
import type { ArtifactStore } from '../artifacts/store.js';
import { ARTIFACT_NAME } from '../artifacts/store.js';
import { errorMessage } from '../lib/errors.js';
import type { Logger } from '../lib/log.js';
import { SIGNED_CHAIN, type LoaderArch } from './loaders.js';

const run = promisify(execFile);

/**
 * The signed shim and GRUB for sites where Debian's `shim-signed` and `grub-efi-<arch>-signed` are
 * not installed on racksmith's host (another distribution, a container, ARM64's on an amd64
 * server): the operator names the packages (`signed-boot-debs`: URL and SHA-256 of each .deb, as
 * `apt-cache show` prints them), racksmith fetches each once through the artifacts cache (checked
 * against its SHA-256), unpacks it with `dpkg-deb -x` and lays the signed binaries it recognises
 * out as a `signed-boot-dir` does:
 *
 *   <cache>/signed-boot/debs/<package>.deb           the package, with its .sha256
 *   <cache>/signed-boot/<arch>/shim*.efi, grub*.efi  what was taken out of it, each with
 *                                                    .sha256 (its own) and .deb (the package's)
 *
 * Nothing is built or re-signed: the bytes served are the package's. A package already unpacked
 * is not fetched again (a restart with no mirror in reach keeps its chain); binaries from a
 * package no longer configured are removed.
 */
export interface SignedDeb {
  readonly url: string;
  readonly sha256: string;
}

/** Where the fetched chain lives inside the artifacts cache (a `signed-boot-dir` layout). */
export const SIGNED_BOOT_CACHE = 'signed-boot';

export interface SignedMember {
  /** The path inside the package, without the leading slash. */
  readonly member: string;
  readonly arch: LoaderArch;
  /** The name on the wire (`shimx64.efi`, `grubx64.efi`, …). */
  readonly file: string;
}

/** Every signed binary racksmith takes from a package: Debian's install paths (loaders.ts). */
export const SIGNED_MEMBERS: readonly SignedMember[] = (['x86_64', 'arm64'] as const).flatMap((arch) => {
  const c = SIGNED_CHAIN[arch];
  return [...c.shimCandidates.map((p) => ({ member: p.slice(1), arch, file: c.shim })), ...c.grubCandidates.map((p) => ({ member: p.slice(1), arch, file: c.grub }))];
});

export interface SignedDebsResult {
  /** Binaries now in the cache's signed-boot folder: `<arch>/<file>` → the package's SHA-256. */
  readonly files: ReadonlyMap<string, string>;
  /** Packages that could not be had or unpacked, with the reason (logged too). */
  readonly failed: readonly { readonly url: string; readonly reason: string }[];
}

export interface SignedDebsOptions {
  readonly debs: readonly SignedDeb[];
  readonly store: Pick<ArtifactStore, 'fetchPinned'>;
  /** The artifacts cache folder (the store's `cacheDir`). */
  readonly cacheDir: string;
  readonly log: Logger;
  /** Unpacks a .deb into a folder (default `dpkg-deb -x`). */
  readonly unpack?: (deb: string, into: string) => Promise<void>;
}

/** The .deb's file name in the cache: the URL's last part, when it is a plain name. */
export function debFileName(url: string): string {
  const name = decodeURIComponent(basename(new URL(url).pathname)).replace(/[^A-Za-z0-9._-]/g, '_');
  const plain = name.endsWith('.deb') ? name : `${name}.deb`;
  return ARTIFACT_NAME.test(plain) ? plain : `package-${createHash('sha256').update(url).digest('hex').slice(0, 16)}.deb`;
}

async function dpkgUnpack(deb: string, into: string): Promise<void> {
  await run('dpkg-deb', ['-x', deb, into], { timeout: 120_000, maxBuffer: 1 << 20 });
}

async function readText(path: string): Promise<string | null> {
  return readFile(path, 'utf8').then(
    (s) => s.trim(),
    () => null,
  );
}

/** `<arch>/<file>` → the SHA-256 of the package it came from, for what is in the folder now. */
async function unpacked(root: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const m of SIGNED_MEMBERS) {
    const at = join(root, m.arch, m.file);
    const from = await readText(`${at}.deb`);
    if (from && (await stat(at).catch(() => null))?.isFile()) out.set(`${m.arch}/${m.file}`, from);
  }
  return out;
}

async function place(src: string, root: string, m: SignedMember, debSha: string): Promise<void> {
  const dir = join(root, m.arch);
  await mkdir(dir, { recursive: true, mode: 0o755 });
  const final = join(dir, m.file);
  const tmp = join(dir, `.${m.file}.part-${process.pid}-${randomBytes(4).toString('hex')}`);
  await copyFile(src, tmp);
  const sha = createHash('sha256').update(await readFile(tmp)).digest('hex');
  await writeFile(`${final}.sha256`, `${sha}  ${m.file}\n`);
  await rename(tmp, final);
  await writeFile(`${final}.deb`, `${debSha}\n`);
}

/**
 * Brings the cache's signed-boot folder in line with the configured packages. Never throws for a
 * package that cannot be had: the others are still laid out, and the failure is returned and
 * logged (the chain is then what the operator's folder or the installed packages offer).
 */
export async function fetchSignedDebs(o: SignedDebsOptions): Promise<SignedDebsResult> {
  const root = join(o.cacheDir, SIGNED_BOOT_CACHE);
  const unpack = o.unpack ?? dpkgUnpack;
  const failed: { url: string; reason: string }[] = [];
  const wanted = new Set(o.debs.map((d) => d.sha256));
  let have = await unpacked(root);

  // Binaries of packages no longer configured go first: the operator's list is the truth.
  for (const [key, sha] of have) {
    if (wanted.has(sha)) continue;
    const at = join(root, key);
    for (const f of [at, `${at}.sha256`, `${at}.deb`]) await unlink(f).catch(() => undefined);
    o.log.info({ file: key }, 'signed boot loader removed: its package is no longer configured');
  }
  have = await unpacked(root);
  const done = new Set(have.values());

  for (const deb of o.debs) {
    if (done.has(deb.sha256)) continue;
    let work: string | null = null;
    try {
      await mkdir(o.cacheDir, { recursive: true });
      work = await mkdtemp(join(o.cacheDir, '.signed-boot-unpack-'));
      const got = await o.store.fetchPinned(`${SIGNED_BOOT_CACHE}/debs`, debFileName(deb.url), deb.url, deb.sha256);
      await unpack(got.path, work);
      const found: SignedMember[] = [];
      for (const m of SIGNED_MEMBERS) {
        const src = join(work, m.member);
        if (!(await stat(src).catch(() => null))?.isFile()) continue;
        await place(src, root, m, deb.sha256);
        found.push(m);
      }
      if (found.length === 0) throw new Error(`the package holds none of ${SIGNED_MEMBERS.map((m) => m.member).join(', ')}`);
      o.log.info({ url: deb.url, files: found.map((m) => `${m.arch}/${m.file}`) }, 'signed boot loaders taken from their package');
      done.add(deb.sha256);
    } catch (err) {
      const reason = errorMessage(err);
      failed.push({ url: deb.url, reason });
      o.log.warn({ url: deb.url, err: reason }, 'signed boot loader package not available');
    } finally {
      if (work) await rm(work, { recursive: true, force: true });
    }
  }
  return { files: await unpacked(root), failed };
}

/** The folders the signed chain is looked for in, before Debian's install paths: the operator's, then the fetched. */
export function signedBootDirs(signedBootDir: string | undefined, cacheDir: string): string[] {
  return [...(signedBootDir ? [signedBootDir] : []), join(cacheDir, SIGNED_BOOT_CACHE)];
}

/** For tests and the docs: the names in a folder laid out by this module. */
export async function listSignedBoot(cacheDir: string): Promise<string[]> {
  const root = join(cacheDir, SIGNED_BOOT_CACHE);
  const out: string[] = [];
  for (const arch of ['x86_64', 'arm64']) {
    const names = await readdir(join(root, arch)).catch(() => [] as string[]);
    out.push(...names.filter((n) => n.endsWith('.efi')).map((n) => `${arch}/${n}`));
  }
  return out.sort();
}
