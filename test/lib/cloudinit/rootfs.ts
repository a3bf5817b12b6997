import { execFile, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, openSync, closeSync, readFileSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { PACKAGE_ROOT } from '../../../server/lib/paths.js';
import { holdLock } from './lock.js';

/**
 * The cached Debian 12 root filesystem that the cloud-init test runs role configs in. It is built
 * once per machine with debootstrap (about a minute) into a system cache directory outside the
 * clone, under a name derived from everything that went into it, and reused read-only by every
 * later run (each case mounts it as the lower layer of an overlay, so a run costs seconds).
 */

/** Packages debootstrap puts in the root besides minbase: what an Ubuntu server install has. */
export const ROOTFS_INCLUDE = ['openssh-server', 'curl', 'iproute2', 'ca-certificates', 'gnupg', 'systemd', 'sudo', 'kmod', 'procps'] as const;

/**
 * Real Debian packages the test's mirror serves from its "Ubuntu archive": haproxy for the load
 * balancer, containerd (with runc) for Kubernetes >= 1.24 — its `containerd config default` is the
 * real one — and what the kubelet stand-in depends on, as the real package does. Each is
 * downloaded with the dependencies the root lacks.
 */
export const MIRROR_DEBIAN_PACKAGES = ['haproxy', 'containerd', 'socat', 'conntrack', 'ebtables', 'ethtool', 'iptables'] as const;

export const CACHE_DIR = process.env['RACKSMITH_TEST_CACHE'] ?? '/var/cache/racksmith-test';
const BUILDER = join(PACKAGE_ROOT, 'test', 'lib', 'cloudinit', 'build-rootfs.sh');

export interface DebianMirrors {
  readonly mirror: string;
  readonly security: string;
}

export interface RootfsImage {
  readonly key: string;
  readonly dir: string;
  /** The root filesystem: read-only by convention, used as an overlay's lower layer. */
  readonly root: string;
  /** Debian .deb files for the test mirror (haproxy and the dependencies the root lacks). */
  readonly debs: string;
  /** True when this call built it; false when the cache already had it. */
  readonly built: boolean;
  readonly seconds: number;
}

/**
 * The Debian mirror this machine's apt uses (deb822 `.sources` files or one-line `sources.list`),
 * for `bookworm` and `bookworm-security`, unless `RACKSMITH_TEST_DEBIAN_MIRROR` /
 * `RACKSMITH_TEST_DEBIAN_SECURITY` say otherwise.
 */
export function debianMirrors(aptDir = '/etc/apt'): DebianMirrors {
  const found = new Map<string, string>();
  const files: string[] = [];
  if (existsSync(join(aptDir, 'sources.list'))) files.push(join(aptDir, 'sources.list'));
  const dDir = join(aptDir, 'sources.list.d');
  if (existsSync(dDir)) for (const f of readdirSync(dDir).sort()) if (/\.(list|sources)$/.test(f)) files.push(join(dDir, f));
  for (const file of files) {
    const text = readFileSync(file, 'utf8');
    if (file.endsWith('.sources')) {
      for (const stanza of text.split(/\n\s*\n/)) {
        const field = (name: string): string[] => (new RegExp(`^${name}:\\s*(.*)$`, 'mi').exec(stanza)?.[1] ?? '').split(/\s+/).filter(Boolean);
        if (field('Enabled')[0] === 'no' || !field('Types').includes('deb')) continue;
        for (const suite of field('Suites')) for (const uri of field('URIs')) if (!found.has(suite)) found.set(suite, uri);
      }
    } else {
      for (const line of text.split('\n')) {
        const m = /^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)/.exec(line.trim());
        if (m?.[1] && m[2] && !found.has(m[2])) found.set(m[2], m[1]);
      }
    }
  }
  const mirror = process.env['RACKSMITH_TEST_DEBIAN_MIRROR'] ?? found.get('bookworm') ?? 'http://deb.debian.org/debian';
  const security = process.env['RACKSMITH_TEST_DEBIAN_SECURITY'] ?? found.get('bookworm-security') ?? 'http://deb.debian.org/debian-security';
  return { mirror, security };
}

/** The cache key: a hash of every input of the build, so a change to any of them builds anew. */
export function rootfsKey(mirrors: DebianMirrors): string {
  const debootstrap = execFileSync('dpkg-query', ['-W', '-f', '${Version}', 'debootstrap'], { encoding: 'utf8' }).trim();
  const inputs = {
    suite: 'bookworm',
    arch: process.arch,
    include: ROOTFS_INCLUDE,
    mirrorDebs: MIRROR_DEBIAN_PACKAGES,
    mirrors,
    debootstrap,
    builder: createHash('sha256').update(readFileSync(BUILDER)).digest('hex'),
  };
  return createHash('sha256').update(JSON.stringify(inputs)).digest('hex').slice(0, 16);
}

function imageAt(key: string, built: boolean, seconds: number): RootfsImage {
  const dir = join(CACHE_DIR, `rootfs-${key}`);
  return { key, dir, root: join(dir, 'root'), debs: join(dir, 'debs'), built, seconds };
}

/**
 * Returns the cached image, building it first if needed. The build (a minute or two on a fast
 * mirror, more on a slow one) runs under the cache's own lock (`rootfs.lock`), so two test
 * processes never build it twice — the second waits, then finds it built. It never takes the
 * machine-wide heavy lock: whoever runs the tests takes that around the whole command. It is
 * built in a temporary folder and renamed into place, so a visible `rootfs-<key>` folder is
 * always complete; a build killed half way (the runner's suite time limit) leaves a `.build-…`
 * folder that the next build removes.
 */
export async function ensureRootfs(opts: { log?: (line: string) => void; timeoutMs?: number; lockWaitSeconds?: number } = {}): Promise<RootfsImage> {
  const started = Date.now();
  const mirrors = debianMirrors();
  const key = rootfsKey(mirrors);
  const ready = imageAt(key, false, 0);
  if (existsSync(ready.dir)) return ready;

  mkdirSync(CACHE_DIR, { recursive: true });
  const lockPath = join(CACHE_DIR, 'rootfs.lock');
  closeSync(openSync(lockPath, 'a'));
  opts.log?.(`root filesystem ${key} not cached: taking ${lockPath}`);
  const lock = await holdLock(lockPath, opts.lockWaitSeconds ?? 600);
  try {
    // Another run may have built it while this one waited for the lock.
    if (existsSync(ready.dir)) return imageAt(key, false, (Date.now() - started) / 1000);
    // Under the lock, any temporary folder left behind is from a build that died.
    for (const entry of readdirSync(CACHE_DIR)) if (entry.startsWith('.build-')) rmSync(join(CACHE_DIR, entry), { recursive: true, force: true });
    const tmp = join(CACHE_DIR, `.build-${key}-${process.pid}`);
    const logFile = join(CACHE_DIR, `build-${key}.log`);
    opts.log?.(`building the cloud-init test root filesystem ${key} from ${mirrors.mirror} (log: ${logFile})`);
    await new Promise<void>((resolve, reject) => {
      const child = execFile(
        'sh',
        ['-c', 'exec "$@" > "$LOG" 2>&1', 'sh', BUILDER, tmp, mirrors.mirror, mirrors.security, ROOTFS_INCLUDE.join(','), MIRROR_DEBIAN_PACKAGES.join(' '), join(CACHE_DIR, 'downloads')],
        { env: { ...process.env, LOG: logFile, DEBIAN_FRONTEND: 'noninteractive' }, timeout: opts.timeoutMs ?? 30 * 60_000, killSignal: 'SIGKILL' },
        (err) => {
          if (!err) return resolve();
          let tail = '';
          try {
            tail = readFileSync(logFile, 'utf8').slice(-3000);
          } catch {
            /* no log */
          }
          rmSync(tmp, { recursive: true, force: true });
          reject(new Error(`building the root filesystem failed (${err.message.split('\n')[0]}); see ${logFile}:\n${tail}`));
        },
      );
      child.on('error', reject);
    });
    renameSync(tmp, ready.dir);
    return imageAt(key, true, (Date.now() - started) / 1000);
  } finally {
    await lock.release();
  }
}
