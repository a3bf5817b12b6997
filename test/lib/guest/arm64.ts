import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { PACKAGE_ROOT } from '../../../server/lib/paths.js';
import { GUEST_CACHE } from './build.js';

const run = promisify(execFile);

/**
 * The ARM64 test guest and the ARM64 signed boot chain, from Debian's arm64 packages on this
 * amd64 machine: `dpkg --add-architecture arm64` once, then `apt-get download <pkg>:arm64` and
 * `dpkg -x` — nothing is installed. Cached under the test cache keyed by package versions and the
 * init script, like the amd64 guest.
 *
 * - the guest: Debian's signed cloud arm64 kernel, static busybox for arm64 and the same
 *   `init.sh`; no dropbearkey (its arm64 libraries would triple the size): the test puts a host
 *   key generated here into the initramfs, which the guest phones home with.
 * - the chain: `shimaa64.efi` (shim-signed) and `grubaa64.efi` (grub-efi-arm64-signed's network
 *   image), laid out as racksmith's `signed-boot-dir` expects (`arm64/<file>`).
 */
export interface Arm64Guest {
  readonly kernel: string;
  readonly initrd: string;
  readonly kernelPackage: string;
  /** A folder for RACKSMITH_SIGNED_BOOT_DIR holding `arm64/shimaa64.efi` and `arm64/grubaa64.efi`. */
  readonly signedBootDir: string;
}

const SRC = join(PACKAGE_ROOT, 'test', 'lib', 'guest');
const MODULES = ['failover', 'net_failover', 'virtio_ring', 'virtio', 'virtio_pci_modern_dev', 'virtio_pci_legacy_dev', 'virtio_pci', 'virtio_net'];

async function ensureArm64Architecture(): Promise<void> {
  const { stdout } = await run('dpkg', ['--print-foreign-architectures']);
  if (stdout.split('\n').includes('arm64')) {
    // The package lists may still lack arm64 (added by hand without an update).
    const probe = await run('apt-cache', ['policy', 'busybox-static:arm64']).catch(() => ({ stdout: '' }));
    if (/Candidate: (?!\(none\))/.test(probe.stdout)) return;
  } else {
    await run('dpkg', ['--add-architecture', 'arm64']);
  }
  await run('apt-get', ['update'], { timeout: 600_000 });
}

async function candidate(pkg: string): Promise<string> {
  const { stdout } = await run('apt-cache', ['policy', pkg]);
  const v = /Candidate: (\S+)/.exec(stdout)?.[1];
  if (!v || v === '(none)') throw new Error(`no candidate for ${pkg}`);
  return v;
}

/** Downloads `<pkg>:arm64` and unpacks it into `into`. */
async function unpack(pkg: string, into: string): Promise<void> {
  const dl = mkdtempSync(join(tmpdir(), 'racksmith-arm64-deb-'));
  try {
    await run('apt-get', ['download', `${pkg}:arm64`], { cwd: dl, timeout: 600_000 });
    const deb = readdirSync(dl).find((f) => f.endsWith('.deb'));
    if (!deb) throw new Error(`apt-get download ${pkg}:arm64 produced no .deb`);
    await run('dpkg', ['-x', join(dl, deb), into], { timeout: 300_000 });
  } finally {
    rmSync(dl, { recursive: true, force: true });
  }
}

function sha(...parts: (string | Buffer)[]): string {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest('hex').slice(0, 16);
}

export async function buildArm64Guest(): Promise<Arm64Guest> {
  await ensureArm64Architecture();
  const { stdout } = await run('apt-cache', ['depends', 'linux-image-cloud-arm64:arm64']);
  const kernelPackage = /Depends: (linux-image-\S+-cloud-arm64)/.exec(stdout)?.[1];
  if (!kernelPackage) throw new Error(`cannot find the cloud kernel behind linux-image-cloud-arm64:arm64:\n${stdout}`);
  const versions = await Promise.all(['busybox-static:arm64', 'shim-signed:arm64', 'grub-efi-arm64-signed:arm64'].map(candidate));
  const init = readFileSync(join(SRC, 'init.sh'));
  const hook = readFileSync(join(SRC, 'udhcpc.script'));
  const dir = join(GUEST_CACHE, `arm64-${sha(kernelPackage, ...versions, init, hook)}`);
  const out: Arm64Guest = { kernel: join(dir, 'vmlinuz'), initrd: join(dir, 'initrd.cpio.gz'), kernelPackage, signedBootDir: join(dir, 'signed-boot') };
  if (existsSync(out.initrd) && existsSync(join(out.signedBootDir, 'arm64', 'grubaa64.efi'))) return out;

  const work = mkdtempSync(join(tmpdir(), 'racksmith-arm64-'));
  try {
    const x = join(work, 'x');
    for (const pkg of [kernelPackage, 'busybox-static', 'shim-signed', 'grub-efi-arm64-signed']) await unpack(pkg, x);
    const stage = `${dir}.tmp-${process.pid}`;
    rmSync(stage, { recursive: true, force: true });
    mkdirSync(join(stage, 'signed-boot', 'arm64'), { recursive: true });
    copyFileSync(join(x, 'usr/lib/shim/shimaa64.efi.signed'), join(stage, 'signed-boot', 'arm64', 'shimaa64.efi'));
    copyFileSync(join(x, 'usr/lib/grub/arm64-efi-signed/grubnetaa64.efi.signed'), join(stage, 'signed-boot', 'arm64', 'grubaa64.efi'));
    const vmlinuz = readdirSync(join(x, 'boot')).find((f) => f.startsWith('vmlinuz-'));
    if (!vmlinuz) throw new Error('no vmlinuz in the arm64 kernel package');
    copyFileSync(join(x, 'boot', vmlinuz), join(stage, 'vmlinuz'));

    const root = join(work, 'root');
    for (const d of ['bin', 'lib/modules', 'proc', 'sys', 'dev', 'tmp']) mkdirSync(join(root, d), { recursive: true });
    copyFileSync(join(x, 'bin', 'busybox'), join(root, 'bin', 'busybox'));
    chmodSync(join(root, 'bin', 'busybox'), 0o755);
    writeFileSync(join(root, 'init'), init, { mode: 0o755 });
    writeFileSync(join(root, 'udhcpc.script'), hook, { mode: 0o755 });
    const found = await run('find', [join(x, 'lib', 'modules'), '-name', '*.ko']);
    const byName = new Map(found.stdout.split('\n').filter(Boolean).map((p) => [p.slice(p.lastIndexOf('/') + 1, -3), p]));
    // Modules built in (=y) in this kernel are simply absent; init.sh loads what is there.
    for (const m of MODULES) {
      const p = byName.get(m);
      if (p) copyFileSync(p, join(root, 'lib', 'modules', `${m}.ko`));
    }
    const tmp = join(stage, 'initrd.cpio.gz');
    await run('sh', ['-c', `cd "${root}" && find . | cpio -o -H newc --quiet | gzip -1 > "${tmp}"`], { timeout: 120_000 });
    if (statSync(tmp).size < 500_000) throw new Error('the arm64 initramfs came out suspiciously small');
    rmSync(dir, { recursive: true, force: true });
    renameSync(stage, dir);
    return out;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
