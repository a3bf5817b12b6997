import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { PACKAGE_ROOT } from '../server/lib/paths.js';
import { buildGuest, ensureKernel, GUEST_CACHE, libsOf, type Guest } from '../test/lib/guest/build.js';

const run = promisify(execFile);

/**
 * The virtual rack's two guest images, cached outside the clone (`RACKSMITH_TEST_CACHE`, default
 * ~/.cache/racksmith-test) under names keyed by every input:
 *
 * - the installer: the boot chain's test guest (Debian's cloud kernel + a busybox initramfs that
 *   plays d-i/subiquity), served by racksmith as the release's installer artifacts;
 * - the system disk: a hybrid ISO 9660 image made by grub-mkrescue, which boots as a hard disk on
 *   SeaBIOS (GRUB in the MBR) and on OVMF (an EFI system partition with GRUB's BOOTX64.EFI). It
 *   holds the installed system: the same kernel, a small initramfs (`lab/guest/system-init.sh`),
 *   and under /usr the programs it runs — Node.js with the kubeadm/kubectl/API-server stand-in,
 *   Debian's haproxy and dropbear — with the libraries `ldd` names. Every machine gets it
 *   read-only, beside its own small data disk for what the installer writes.
 */
export interface LabImages {
  readonly installer: Guest;
  readonly systemDisk: string;
  /** A FAT EFI system partition with Debian's signed shim and GRUB (Secure Boot machines), when asked for. */
  readonly secureBootEsp?: string;
}

const SIGNED_SHIM = '/usr/lib/shim/shimx64.efi.signed';
const SIGNED_GRUB = '/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed';

/**
 * What Debian's signed GRUB reads on the ESP (its prefix is /EFI/debian): find the system disk's
 * kernel and use the system disk's own config, as an installed Debian's ESP stub does.
 */
const ESP_GRUB_CFG = `search --no-floppy --file --set=root /boot/vmlinuz
set prefix=($root)/boot/grub
configfile /boot/grub/grub.cfg
`;

/**
 * The Secure Boot machines' boot disk: a 16 MiB FAT image holding /EFI/BOOT/BOOTX64.EFI (Debian's
 * Microsoft-signed shim), grubx64.efi beside it (Debian's signed GRUB, which shim loads from its
 * own folder) and the GRUB stub config. Built with mtools, cached by the binaries' contents.
 */
export async function buildSecureBootEsp(): Promise<string> {
  const key = createHash('sha256').update(readFileSync(SIGNED_SHIM)).update(readFileSync(SIGNED_GRUB)).update(ESP_GRUB_CFG).digest('hex').slice(0, 16);
  const out = join(GUEST_CACHE, `esp-${key}.img`);
  if (existsSync(out)) return out;
  mkdirSync(GUEST_CACHE, { recursive: true });
  const work = mkdtempSync(join(tmpdir(), 'racksmith-lab-esp-'));
  try {
    const cfg = join(work, 'grub.cfg');
    writeFileSync(cfg, ESP_GRUB_CFG);
    const tmp = join(work, 'esp.img');
    await run('truncate', ['-s', '16M', tmp]);
    // FAT16 at this size (FAT32 needs more clusters); UEFI reads FAT12/16/32 alike.
    await run('mformat', ['-i', tmp, '::']);
    await run('mmd', ['-i', tmp, '::/EFI', '::/EFI/BOOT', '::/EFI/debian']);
    await run('mcopy', ['-i', tmp, SIGNED_SHIM, '::/EFI/BOOT/BOOTX64.EFI']);
    await run('mcopy', ['-i', tmp, SIGNED_GRUB, '::/EFI/BOOT/grubx64.efi']);
    await run('mcopy', ['-i', tmp, cfg, '::/EFI/debian/grub.cfg']);
    copyFileSync(tmp, `${out}.tmp-${process.pid}`);
    renameSync(`${out}.tmp-${process.pid}`, out);
    return out;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

const GUEST_SRC = join(PACKAGE_ROOT, 'lab', 'guest');
const STANDIN_DIST = fileURLToPath(new URL('../test/fixtures/kubeadm-standin/', import.meta.url));
const STANDIN_FILES = ['standin.js', 'remote.js', 'apiserver.js'];
const PROGRAMS: Record<string, string> = {
  'usr/bin/node': process.execPath,
  'usr/sbin/haproxy': '/usr/sbin/haproxy',
  // A load balancer of a pair: keepalived holds the VIP; its health check is a bash script.
  'usr/sbin/keepalived': '/usr/sbin/keepalived',
  'usr/bin/bash': '/bin/bash',
  'usr/sbin/dropbear': '/usr/sbin/dropbear',
  'usr/bin/dropbearkey': '/usr/bin/dropbearkey',
};
const SYSTEM_MODULES = ['failover', 'net_failover', 'virtio_ring', 'virtio', 'virtio_pci_modern_dev', 'virtio_pci_legacy_dev', 'virtio_pci', 'virtio_net', 'virtio_blk', 'cdrom', 'isofs'];

function wrapper(tool: string): string {
  return `#!/bin/sh
# The kubeadm/kubectl stand-in (its state is remote: the API server stand-in behind the endpoint).
set -a
. /etc/standin.env
set +a
exec /usr/bin/node /usr/lib/standin/standin.js ${tool} "$@"
`;
}

/**
 * GRUB boots the installed system only when the installer left its mark on the data disk; a
 * blank machine's GRUB returns to the firmware (EFI), which goes on to its next boot entry: the
 * network. That is what a disk without an OS looks like to firmware.
 */
function grubCfg(): string {
  return `set timeout=0
serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
insmod part_gpt
insmod part_msdos
insmod ext2
if search --no-floppy --file --set=data /installed; then
  linux /boot/vmlinuz console=ttyS0,115200 quiet panic=-1
  initrd /boot/initrd.gz
  boot
fi
echo "racksmith lab: no system installed on this machine's disk"
exit
`;
}

async function hashFile(h: ReturnType<typeof createHash>, path: string): Promise<void> {
  h.update(path);
  h.update(readFileSync(path));
}

export async function buildImages(log: (line: string) => void = () => undefined): Promise<LabImages> {
  const installer = await buildGuest();
  const kernel = await ensureKernel();
  const missing = STANDIN_FILES.filter((f) => !existsSync(join(STANDIN_DIST, f)));
  if (missing.length) throw new Error(`the kubeadm stand-in is not built (${missing.join(', ')} under ${STANDIN_DIST}): run npm run build`);

  const libs = new Set<string>();
  for (const p of Object.values(PROGRAMS)) for (const l of await libsOf(p)) libs.add(l);
  const h = createHash('sha256');
  h.update(kernel.version);
  for (const f of ['system-init.sh', 'systemctl.sh']) await hashFile(h, join(GUEST_SRC, f));
  await hashFile(h, join(PACKAGE_ROOT, 'test', 'lib', 'guest', 'udhcpc.script'));
  await hashFile(h, '/bin/busybox');
  for (const f of STANDIN_FILES) await hashFile(h, join(STANDIN_DIST, f));
  h.update(readFileSync(join(PACKAGE_ROOT, 'node_modules', 'yaml', 'package.json')));
  h.update(grubCfg() + wrapper('x'));
  for (const p of [...Object.values(PROGRAMS), ...[...libs].sort()]) {
    const st = statSync(p);
    h.update(`${p} ${st.size} ${st.mtimeMs}`);
  }
  const key = h.digest('hex').slice(0, 16);
  const out = join(GUEST_CACHE, `system-${key}.iso`);
  if (existsSync(out)) return { installer, systemDisk: out };

  log(`building the installed-system disk image (${out})`);
  mkdirSync(GUEST_CACHE, { recursive: true });
  const work = mkdtempSync(join(tmpdir(), 'racksmith-lab-image-'));
  try {
    const tree = join(work, 'tree');
    const ird = join(work, 'initrd');
    // The initramfs: static busybox, the init script, the DHCP hook and the kernel modules.
    for (const d of ['bin', 'lib/modules']) mkdirSync(join(ird, d), { recursive: true });
    copyFileSync('/bin/busybox', join(ird, 'bin', 'busybox'));
    chmodSync(join(ird, 'bin', 'busybox'), 0o755);
    copyFileSync(join(GUEST_SRC, 'system-init.sh'), join(ird, 'init'));
    chmodSync(join(ird, 'init'), 0o755);
    copyFileSync(join(PACKAGE_ROOT, 'test', 'lib', 'guest', 'udhcpc.script'), join(ird, 'udhcpc.script'));
    chmodSync(join(ird, 'udhcpc.script'), 0o755);
    for (const m of SYSTEM_MODULES) {
      const f = join(kernel.dir, 'modules', `${m}.ko`);
      if (existsSync(f)) copyFileSync(f, join(ird, 'lib', 'modules', `${m}.ko`));
    }
    mkdirSync(join(tree, 'boot', 'grub'), { recursive: true });
    await run('sh', ['-c', `cd "${ird}" && find . | cpio -o -H newc --quiet | gzip -1 > "${join(tree, 'boot', 'initrd.gz')}"`], { timeout: 120_000 });
    copyFileSync(join(kernel.dir, 'vmlinuz'), join(tree, 'boot', 'vmlinuz'));
    writeFileSync(join(tree, 'boot', 'grub', 'grub.cfg'), grubCfg());

    // /usr: programs, their libraries (merged-/usr layout), the stand-in.
    for (const [to, from] of Object.entries(PROGRAMS)) {
      mkdirSync(join(tree, dirname(to)), { recursive: true });
      copyFileSync(from, join(tree, to));
      chmodSync(join(tree, to), 0o755);
    }
    for (const lib of libs) {
      const name = lib.slice(lib.lastIndexOf('/') + 1);
      const to = name.startsWith('ld-linux') ? join(tree, 'usr', 'lib64', name) : join(tree, 'usr', 'lib', 'x86_64-linux-gnu', name);
      mkdirSync(dirname(to), { recursive: true });
      copyFileSync(lib, to);
    }
    const bin = join(tree, 'usr', 'bin');
    writeFileSync(join(bin, 'systemctl'), readFileSync(join(GUEST_SRC, 'systemctl.sh')), { mode: 0o755 });
    for (const tool of ['kubeadm', 'kubectl']) writeFileSync(join(bin, tool), wrapper(tool), { mode: 0o755 });
    const standin = join(tree, 'usr', 'lib', 'standin');
    mkdirSync(join(standin, 'node_modules'), { recursive: true });
    for (const f of STANDIN_FILES) copyFileSync(join(STANDIN_DIST, f), join(standin, f));
    writeFileSync(join(standin, 'package.json'), '{"type":"module","private":true}\n');
    const yaml = join(PACKAGE_ROOT, 'node_modules', 'yaml');
    mkdirSync(join(standin, 'node_modules', 'yaml'), { recursive: true });
    copyFileSync(join(yaml, 'package.json'), join(standin, 'node_modules', 'yaml', 'package.json'));
    cpSync(join(yaml, 'dist'), join(standin, 'node_modules', 'yaml', 'dist'), { recursive: true });

    const tmp = `${out}.tmp-${process.pid}`;
    await run('grub-mkrescue', ['-o', tmp, tree, '--', '-volid', 'RACKSMITH_SYSTEM'], { timeout: 300_000, maxBuffer: 16 * 1024 * 1024 });
    if (statSync(tmp).size < 50 * 1024 * 1024) throw new Error('the system disk image came out suspiciously small');
    renameSync(tmp, out);
    // Older images of other inputs are of no use any more.
    for (const f of readdirSync(GUEST_CACHE)) if (/^system-[0-9a-f]{16}\.iso$/.test(f) && join(GUEST_CACHE, f) !== out) rmSync(join(GUEST_CACHE, f), { force: true });
    return { installer, systemDisk: out };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
