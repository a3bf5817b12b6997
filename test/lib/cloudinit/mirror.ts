import { execFile } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';

const run = promisify(execFile);

/**
 * A site's package mirror in one folder, served over HTTP by the test: apt repositories in the
 * layouts their upstreams use (a `dists/` archive with suites and components, or pkgs.k8s.io's
 * flat `/` repository), indexed with apt-ftparchive and signed with GPG keys made for the run —
 * one key per repository, as upstream has, so a repository configured with another's key fails.
 */

export interface SigningKey {
  readonly name: string;
  readonly fingerprint: string;
  /** ASCII-armoured public key, as upstreams publish it (Release.key, docker's `gpg`). */
  readonly armored: string;
  /** The same key as a binary keyring (`gpg --dearmor` output), for `signed-by=` files. */
  readonly binary: Buffer;
}

/** A GnuPG home for the run's keys; `close()` stops its agent and removes it. */
export class Keyring {
  readonly home: string;
  private constructor(home: string) {
    this.home = home;
  }

  static create(parent: string): Keyring {
    const home = mkdtempSync(join(parent, 'gnupg-'));
    return new Keyring(home);
  }

  private gpg(args: readonly string[], input?: string): Promise<{ stdout: string; stderr: string }> {
    return new Promise((resolve, reject) => {
      const child = execFile('gpg', ['--batch', '--quiet', '--homedir', this.home, '--pinentry-mode', 'loopback', '--passphrase', '', ...args], { timeout: 60_000, encoding: 'utf8' }, (err, stdout, stderr) => {
        if (err) reject(new Error(`gpg ${args.join(' ')}: ${stderr || err.message}`));
        else resolve({ stdout, stderr });
      });
      if (input !== undefined) child.stdin?.end(input);
    });
  }

  /** An Ed25519 signing key (fast to make; apt's gpgv verifies it on every Ubuntu release). */
  async generate(name: string): Promise<SigningKey> {
    const uid = `racksmith test ${name} repository <${name}@racksmith.invalid>`;
    await this.gpg(['--quick-gen-key', uid, 'ed25519', 'sign', 'never']);
    const { stdout: colons } = await this.gpg(['--with-colons', '--list-keys', uid]);
    const fingerprint = /^fpr:+([0-9A-F]{40}):/m.exec(colons)?.[1];
    if (!fingerprint) throw new Error(`gpg made no key for ${uid}`);
    const { stdout: armored } = await this.gpg(['--armor', '--export', fingerprint]);
    const binary = await new Promise<Buffer>((resolve, reject) =>
      execFile('gpg', ['--batch', '--homedir', this.home, '--export', fingerprint], { encoding: 'buffer', timeout: 60_000 }, (err, out) => (err ? reject(err) : resolve(out))),
    );
    return { name, fingerprint, armored, binary };
  }

  /** Writes `InRelease` (clear-signed) and `Release.gpg` (detached) beside `release`. */
  async sign(key: SigningKey, release: string, dir: string): Promise<void> {
    await this.gpg(['--yes', '--local-user', key.fingerprint, '--digest-algo', 'SHA512', '--clearsign', '--output', join(dir, 'InRelease'), release]);
    await this.gpg(['--yes', '--local-user', key.fingerprint, '--digest-algo', 'SHA512', '--armor', '--detach-sign', '--output', join(dir, 'Release.gpg'), release]);
  }

  async close(): Promise<void> {
    try {
      await run('gpgconf', ['--homedir', this.home, '--kill', 'all'], { timeout: 10_000 });
    } catch {
      /* no agent was started */
    }
    rmSync(this.home, { recursive: true, force: true });
  }
}

async function ftparchive(args: readonly string[], cwd: string): Promise<string> {
  const { stdout } = await run('apt-ftparchive', [...args], { cwd, timeout: 60_000, maxBuffer: 64 * 1024 * 1024 });
  return stdout;
}

function writeIndex(dir: string, packages: string): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'Packages'), packages);
  writeFileSync(join(dir, 'Packages.gz'), gzipSync(packages));
}

export interface SuiteSpec {
  readonly suite: string;
  /** component → .deb files (absolute paths) */
  readonly components: Readonly<Record<string, readonly string[]>>;
}

/**
 * A `dists/` repository at `root` (the URL a sources line names): one pool per suite and
 * component, Packages per component, a signed Release per suite.
 */
export async function buildDistsRepo(root: string, suites: readonly SuiteSpec[], key: SigningKey, keyring: Keyring, origin: string): Promise<void> {
  for (const s of suites) {
    const components = Object.keys(s.components);
    for (const [component, debs] of Object.entries(s.components)) {
      const pool = join('pool', s.suite, component);
      mkdirSync(join(root, pool), { recursive: true });
      for (const d of debs) copyFileSync(d, join(root, pool, basename(d)));
      const packages = debs.length > 0 ? await ftparchive(['packages', pool], root) : '';
      writeIndex(join(root, 'dists', s.suite, component, 'binary-amd64'), packages);
    }
    const dist = join(root, 'dists', s.suite);
    const release = await ftparchive(
      [
        '-o', `APT::FTPArchive::Release::Origin=${origin}`,
        '-o', `APT::FTPArchive::Release::Label=${origin}`,
        '-o', `APT::FTPArchive::Release::Suite=${s.suite}`,
        '-o', `APT::FTPArchive::Release::Codename=${s.suite}`,
        '-o', 'APT::FTPArchive::Release::Architectures=amd64',
        '-o', `APT::FTPArchive::Release::Components=${components.join(' ')}`,
        'release', '.',
      ],
      dist,
    );
    writeFileSync(join(dist, 'Release'), release);
    await keyring.sign(key, join(dist, 'Release'), dist);
  }
}

/** A flat repository (`deb URL /`), the layout of pkgs.k8s.io's per-minor repositories. */
export async function buildFlatRepo(root: string, debs: readonly string[], key: SigningKey, keyring: Keyring, origin: string): Promise<void> {
  mkdirSync(join(root, 'amd64'), { recursive: true });
  for (const d of debs) copyFileSync(d, join(root, 'amd64', basename(d)));
  writeIndex(root, await ftparchive(['packages', 'amd64'], root));
  const release = await ftparchive(['-o', `APT::FTPArchive::Release::Origin=${origin}`, '-o', `APT::FTPArchive::Release::Label=${origin}`, '-o', 'APT::FTPArchive::Release::Architectures=amd64', 'release', '.'], root);
  writeFileSync(join(root, 'Release'), release);
  await keyring.sign(key, join(root, 'Release'), root);
}

/** Every .deb under a folder (the Debian packages the root filesystem build downloaded). */
export function debsIn(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => f.endsWith('.deb'))
    .sort()
    .map((f) => join(dir, f));
}

/** `Package: x` / `Version: y` pairs of a Packages index, for assertions on what a mirror holds. */
export function packagesIndex(text: string): Array<{ name: string; version: string }> {
  const out: Array<{ name: string; version: string }> = [];
  for (const stanza of text.split(/\n\n+/)) {
    const name = /^Package: (.+)$/m.exec(stanza)?.[1];
    const version = /^Version: (.+)$/m.exec(stanza)?.[1];
    if (name && version) out.push({ name, version });
  }
  return out;
}

export function readIndex(root: string, rel: string): string {
  return readFileSync(join(root, rel, 'Packages'), 'utf8');
}
