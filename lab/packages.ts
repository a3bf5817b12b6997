import { execFile } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { PACKAGE_ROOT } from '../server/lib/paths.js';

const run = promisify(execFile);

/**
 * The Debian packages racksmith drives, from the one list `.ci/run`, `npm test` and the lab share
 * (`.ci/packages`: a package per line, tags after it). The virtual rack needs those tagged `lab`:
 * QEMU with its iPXE ROMs and OVMF, the BMC simulator and its client, the guests' programs
 * (busybox, dropbear, haproxy), the image tools (grub-mkrescue needs xorriso and mtools; the BIOS
 * and EFI GRUB builds), and dnsmasq for IPv6 router adverts only.
 */
export const PACKAGE_LIST = join(PACKAGE_ROOT, '.ci', 'packages');

export function readPackageList(tag?: string, file = PACKAGE_LIST): string[] {
  const out: string[] = [];
  for (const raw of readFileSync(file, 'utf8').split('\n')) {
    const [name, ...tags] = raw.replace(/#.*/, '').trim().split(/\s+/);
    if (name && (tag === undefined || tags.includes(tag))) out.push(name);
  }
  return out;
}

export const LAB_PACKAGES: readonly string[] = readPackageList('lab');

/**
 * Image deployment adds: the Debian image's build (debootstrap, gdisk, dosfstools, zstd), the
 * deploy agent's build (busybox-static, fdisk, e2fsprogs, zstd, kmod's depmod), the site package
 * cache (apt-cacher-ng) and the stand-in Kubernetes repository (apt-utils, gnupg).
 */
export const IMAGE_PACKAGES = ['debootstrap', 'gdisk', 'dosfstools', 'zstd', 'fdisk', 'efibootmgr', 'kmod', 'apt-cacher-ng', 'apt-utils', 'gnupg'] as const;

export async function missingPackages(names: readonly string[] = LAB_PACKAGES): Promise<string[]> {
  const missing: string[] = [];
  for (const p of names) {
    try {
      const { stdout } = await run('dpkg-query', ['-W', '-f=${Status}', p]);
      if (!stdout.includes('install ok installed')) missing.push(p);
    } catch {
      missing.push(p);
    }
  }
  return missing;
}

/** apt-get installs only what is missing; services must not start in the host's own namespace on install. */
export async function ensurePackages(log: (line: string) => void, names: readonly string[] = LAB_PACKAGES): Promise<void> {
  const missing = await missingPackages(names);
  if (missing.length === 0) return;
  log(`installing Debian packages: ${missing.join(' ')}`);
  const policy = '/usr/sbin/policy-rc.d';
  const made = !existsSync(policy);
  if (made) writeFileSync(policy, '#!/bin/sh\nexit 101\n', { mode: 0o755 });
  try {
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    await run('apt-get', ['update'], { env, timeout: 600_000, maxBuffer: 64 * 1024 * 1024 });
    await run('apt-get', ['install', '-y', '--no-install-recommends', ...missing], { env, timeout: 1_200_000, maxBuffer: 64 * 1024 * 1024 });
  } finally {
    if (made) rmSync(policy, { force: true });
  }
  const still = await missingPackages(names);
  if (still.length) throw new Error(`apt-get did not install: ${still.join(' ')}`);
}

/** Root on a Debian machine with apt: where `npm test` and the lab install what they need. */
export function canInstallPackages(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0 && existsSync('/etc/debian_version') && existsSync('/usr/bin/apt-get');
}
