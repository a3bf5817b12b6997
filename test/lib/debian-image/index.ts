import { execFile, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { PACKAGE_ROOT } from '../../../server/lib/paths.js';
import { CACHE_DIR, debianMirrors, type DebianMirrors } from '../cloudinit/rootfs.js';
import { holdLock } from '../cloudinit/lock.js';
import { GUEST_CACHE } from '../guest/build.js';

/**
 * The Debian 12 disk image the image-deployment tests deploy: made on the host from Debian
 * packages by build-image.sh (debootstrap, the cloud kernel, systemd, cloud-init, openssh-server,
 * GRUB for BIOS and UEFI), zstd-compressed, cached under a name derived from every input — like
 * the cloud-init root filesystem — so only the first run on a machine pays the build (a few
 * minutes, mostly downloads; the .deb files are shared with the root filesystem's build).
 *
 * Pre-baked so that the guest's own dpkg work (very slow under TCG) stays small: curl, gnupg,
 * sudo and HAProxy's libraries. HAProxy itself is not in the image: the load balancer's role
 * config installs it through the site's apt proxy on first boot.
 */
export const IMAGE_INCLUDE = ['systemd-sysv', 'udev', 'ifupdown', 'isc-dhcp-client', 'openssh-server', 'sudo', 'curl', 'ca-certificates', 'gnupg', 'iproute2', 'kmod', 'procps', 'locales'] as const;
export const IMAGE_EXTRA = ['linux-image-cloud-amd64', 'initramfs-tools', 'cloud-init', 'liblua5.3-0', 'libopentracing-c-wrapper0'] as const;
export const IMAGE_SIZE_MIB = 1280;
const BUILDER = join(PACKAGE_ROOT, 'test', 'lib', 'debian-image', 'build-image.sh');

export interface DebianImage {
  readonly key: string;
  readonly dir: string;
  /** The zstd-compressed raw disk image. */
  readonly path: string;
  readonly sha256: string;
  readonly rawSize: number;
  readonly packages: ReadonlyMap<string, string>;
  readonly built: boolean;
  readonly seconds: number;
}

function version(pkg: string): string {
  return execFileSync('dpkg-query', ['-W', '-f', '${Version}', pkg], { encoding: 'utf8' }).trim();
}

export function debianImageKey(mirrors: DebianMirrors): string {
  const inputs = {
    suite: 'bookworm',
    include: IMAGE_INCLUDE,
    extra: IMAGE_EXTRA,
    sizeMib: IMAGE_SIZE_MIB,
    mirrors,
    debootstrap: version('debootstrap'),
    grub: [version('grub-pc-bin'), version('grub-efi-amd64-bin')],
    builder: createHash('sha256').update(readFileSync(BUILDER)).digest('hex'),
  };
  return createHash('sha256').update(JSON.stringify(inputs)).digest('hex').slice(0, 16);
}

function imageAt(dir: string, key: string, built: boolean, seconds: number): DebianImage {
  const path = join(dir, 'disk.img.zst');
  const packages = new Map(
    readFileSync(join(dir, 'packages.txt'), 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => l.split(' ') as [string, string]),
  );
  return { key, dir, path, sha256: readFileSync(join(dir, 'disk.img.zst.sha256'), 'utf8').split(' ')[0] ?? '', rawSize: Number(readFileSync(join(dir, 'raw-size'), 'utf8')), packages, built, seconds };
}

/** The cached image, built first when needed, under the cache's own lock (never the heavy lock). */
export async function ensureDebianImage(opts: { log?: (line: string) => void; timeoutMs?: number } = {}): Promise<DebianImage> {
  const started = Date.now();
  const mirrors = debianMirrors();
  const key = debianImageKey(mirrors);
  const dir = join(GUEST_CACHE, `debian-image-${key}`);
  if (existsSync(join(dir, 'disk.img.zst.sha256'))) return imageAt(dir, key, false, 0);
  mkdirSync(GUEST_CACHE, { recursive: true });
  const lockPath = join(GUEST_CACHE, 'debian-image.lock');
  closeSync(openSync(lockPath, 'a'));
  const lock = await holdLock(lockPath, 1800);
  try {
    if (existsSync(join(dir, 'disk.img.zst.sha256'))) return imageAt(dir, key, false, (Date.now() - started) / 1000);
    for (const e of readdirSync(GUEST_CACHE)) if (e.startsWith('.debian-image-build-')) rmSync(join(GUEST_CACHE, e), { recursive: true, force: true });
    const tmp = join(GUEST_CACHE, `.debian-image-build-${key}-${process.pid}`);
    const log = join(GUEST_CACHE, `debian-image-${key}.log`);
    opts.log?.(`building the Debian 12 test image ${key} from ${mirrors.mirror} (log: ${log})`);
    await new Promise<void>((resolve, reject) => {
      execFile(
        'sh',
        ['-c', 'exec "$@" > "$LOG" 2>&1', 'sh', BUILDER, tmp, mirrors.mirror, mirrors.security, IMAGE_INCLUDE.join(','), IMAGE_EXTRA.join(' '), join(CACHE_DIR, 'downloads'), String(IMAGE_SIZE_MIB)],
        { env: { ...process.env, LOG: log, DEBIAN_FRONTEND: 'noninteractive' }, timeout: opts.timeoutMs ?? 40 * 60_000, killSignal: 'SIGKILL' },
        (err) => {
          if (!err) return resolve();
          let tail = '';
          try {
            tail = readFileSync(log, 'utf8').slice(-3000);
          } catch {
            /* no log */
          }
          rmSync(tmp, { recursive: true, force: true });
          reject(new Error(`building the Debian image failed (${err.message.split('\n')[0]}); see ${log}:\n${tail}`));
        },
      );
    });
    const sha = execFileSync('sha256sum', [join(tmp, 'disk.img.zst')], { encoding: 'utf8' }).split(' ')[0] ?? '';
    execFileSync('sh', ['-c', 'printf "%s  disk.img.zst\\n" "$1" > "$2"', 'sh', sha, join(tmp, 'disk.img.zst.sha256')]);
    // Older images of other inputs are of no use any more.
    for (const e of readdirSync(GUEST_CACHE)) if (/^debian-image-[0-9a-f]{16}$/.test(e)) rmSync(join(GUEST_CACHE, e), { recursive: true, force: true });
    renameSync(tmp, dir);
    return imageAt(dir, key, true, (Date.now() - started) / 1000);
  } finally {
    await lock.release();
  }
}
