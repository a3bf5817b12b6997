import { execFile } from 'node:child_process';
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { promisify } from 'node:util';

const run = promisify(execFile);

/**
 * The Debian packages the virtual rack runs: QEMU with its iPXE ROMs and OVMF, the BMC simulator
 * and its client, the guests' programs (busybox, dropbear, haproxy), the image tools
 * (grub-mkrescue needs xorriso and mtools; the BIOS and EFI GRUB builds), and dnsmasq for IPv6
 * router adverts only.
 */
export const LAB_PACKAGES = [
  'qemu-system-x86', 'ipxe-qemu', 'ipxe', 'ovmf', 'busybox-static', 'openipmi', 'ipmitool', 'dropbear-bin', 'haproxy', 'keepalived',
  'grub-common', 'grub-pc-bin', 'grub-efi-amd64-bin', 'xorriso', 'mtools', 'cpio', 'gzip', 'dnsmasq-base', 'curl', 'iproute2', 'util-linux', 'e2fsprogs',
  'shim-signed', 'grub-efi-amd64-signed',
] as const;

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
export async function ensurePackages(log: (line: string) => void, extra: readonly string[] = []): Promise<void> {
  const missing = await missingPackages([...LAB_PACKAGES, ...extra]);
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
  const still = await missingPackages([...LAB_PACKAGES, ...extra]);
  if (still.length) throw new Error(`apt-get did not install: ${still.join(' ')}`);
}
