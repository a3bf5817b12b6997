import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { PACKAGE_ROOT } from '../../../server/lib/paths.js';

const run = promisify(execFile);

/**
 * The test guest: a Debian cloud kernel and a tiny initramfs (static busybox, an /init script,
 * the virtio NIC modules, dropbearkey) that plays the installer and cloud-init. The kernel comes
 * from Debian's archive with `apt-get download` + `dpkg -x`; both are cached outside the clone,
 * keyed by their inputs (kernel package version; init script, busybox and dropbearkey contents),
 * so a second run costs nothing.
 */
export interface Guest {
  readonly kernel: string;
  /** gzip-compressed newc cpio. */
  readonly initrd: string;
  readonly kernelVersion: string;
}

export const GUEST_CACHE = process.env['RACKSMITH_TEST_CACHE'] ?? join(homedir(), '.cache', 'racksmith-test');
const SRC = join(PACKAGE_ROOT, 'test', 'lib', 'guest');
const MODULES = ['failover', 'net_failover', 'virtio_ring', 'virtio', 'virtio_pci_modern_dev', 'virtio_pci_legacy_dev', 'virtio_pci', 'virtio_net'];
/** The virtual rack's disks: virtio_blk for both, isofs (with cdrom) for the installed system's ISO 9660 disk. */
export const DISK_MODULES = ['virtio_blk', 'cdrom', 'isofs'];

function sha(...parts: (string | Buffer)[]): string {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest('hex').slice(0, 16);
}

async function kernelPackage(): Promise<string> {
  const { stdout } = await run('apt-cache', ['depends', 'linux-image-cloud-amd64']);
  const dep = /Depends: (linux-image-\S+-cloud-amd64)/.exec(stdout)?.[1];
  if (!dep) throw new Error(`cannot find the cloud kernel package behind linux-image-cloud-amd64:\n${stdout}`);
  return dep;
}

/** vmlinuz + the NIC modules of one kernel package, extracted once. */
export async function ensureKernel(): Promise<{ dir: string; version: string }> {
  const pkg = await kernelPackage();
  const dir = join(GUEST_CACHE, `kernel-${pkg}`);
  if (existsSync(join(dir, 'vmlinuz')) && [...MODULES, ...DISK_MODULES].every((m) => existsSync(join(dir, 'modules', `${m}.ko`)))) return { dir, version: pkg };
  const work = mkdtempSync(join(tmpdir(), 'racksmith-kernel-'));
  try {
    await run('apt-get', ['download', pkg], { cwd: work, timeout: 300_000 });
    const deb = readdirSync(work).find((f) => f.endsWith('.deb'));
    if (!deb) throw new Error(`apt-get download ${pkg} produced no .deb`);
    await run('dpkg', ['-x', join(work, deb), join(work, 'x')], { timeout: 300_000 });
    const stage = `${dir}.tmp-${process.pid}`;
    mkdirSync(join(stage, 'modules'), { recursive: true });
    const boot = join(work, 'x', 'boot');
    const vmlinuz = readdirSync(boot).find((f) => f.startsWith('vmlinuz-'));
    if (!vmlinuz) throw new Error('no vmlinuz in the kernel package');
    copyFileSync(join(boot, vmlinuz), join(stage, 'vmlinuz'));
    const { stdout } = await run('find', [join(work, 'x'), '-name', '*.ko']);
    const byName = new Map(stdout.split('\n').filter(Boolean).map((p) => [p.slice(p.lastIndexOf('/') + 1, -3), p]));
    for (const m of [...MODULES, ...DISK_MODULES]) {
      const p = byName.get(m);
      if (p) copyFileSync(p, join(stage, 'modules', `${m}.ko`));
    }
    rmSync(dir, { recursive: true, force: true });
    renameSync(stage, dir);
    return { dir, version: pkg };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

export async function libsOf(binary: string): Promise<string[]> {
  const { stdout } = await run('ldd', [binary]);
  return [...stdout.matchAll(/(\/\S+\.so[.\d]*)/g)].map((m) => m[1] as string);
}

export async function buildGuest(): Promise<Guest> {
  const kernel = await ensureKernel();
  const init = readFileSync(join(SRC, 'init.sh'));
  const hook = readFileSync(join(SRC, 'udhcpc.script'));
  const busybox = readFileSync('/bin/busybox');
  const dropbearkey = '/usr/bin/dropbearkey';
  const libs = await libsOf(dropbearkey);
  const key = sha(init, hook, busybox, readFileSync(dropbearkey), kernel.version, ...libs);
  const out = join(GUEST_CACHE, `initrd-${key}.cpio.gz`);
  if (existsSync(out)) return { kernel: join(kernel.dir, 'vmlinuz'), initrd: out, kernelVersion: kernel.version };

  const root = mkdtempSync(join(tmpdir(), 'racksmith-initrd-'));
  try {
    for (const d of ['bin', 'lib/modules', 'proc', 'sys', 'dev', 'tmp']) mkdirSync(join(root, d), { recursive: true });
    copyFileSync('/bin/busybox', join(root, 'bin', 'busybox'));
    chmodSync(join(root, 'bin', 'busybox'), 0o755);
    writeFileSync(join(root, 'init'), init, { mode: 0o755 });
    writeFileSync(join(root, 'udhcpc.script'), hook, { mode: 0o755 });
    copyFileSync(dropbearkey, join(root, 'bin', 'dropbearkey'));
    chmodSync(join(root, 'bin', 'dropbearkey'), 0o755);
    for (const lib of libs) {
      mkdirSync(join(root, dirname(lib)), { recursive: true });
      copyFileSync(lib, join(root, lib));
    }
    for (const m of readdirSync(join(kernel.dir, 'modules')).filter((f) => !DISK_MODULES.includes(f.slice(0, -3)) || f === 'virtio_blk.ko')) copyFileSync(join(kernel.dir, 'modules', m), join(root, 'lib', 'modules', m));
    const tmp = `${out}.tmp-${process.pid}`;
    await run('sh', ['-c', `cd "${root}" && find . | cpio -o -H newc --quiet | gzip -1 > "${tmp}"`], { timeout: 120_000 });
    if (statSync(tmp).size < 100_000) throw new Error('the initramfs came out suspiciously small');
    renameSync(tmp, out);
    return { kernel: join(kernel.dir, 'vmlinuz'), initrd: out, kernelVersion: kernel.version };
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

/**
 * A second, tiny cpio archive with extra files (the kernel unpacks concatenated archives in
 * order), for per-test data such as another machine's seed URL.
 */
export async function extraCpio(files: Record<string, string>): Promise<Buffer> {
  const root = mkdtempSync(join(tmpdir(), 'racksmith-extra-'));
  try {
    for (const [name, content] of Object.entries(files)) writeFileSync(join(root, name), content);
    const { stdout } = await run('sh', ['-c', `cd "${root}" && find . | cpio -o -H newc --quiet | gzip -1 | base64 -w0`], { maxBuffer: 16 * 1024 * 1024 });
    return Buffer.from(stdout, 'base64');
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}
