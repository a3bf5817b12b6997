import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { AGENT_MODULES } from '../server/agent/build.js';
import { PACKAGE_ROOT } from '../server/lib/paths.js';
import { ensureDebianImage, IMAGE_SIZE_MIB } from './lib/debian-image/index.js';
import { GUEST_CACHE } from './lib/guest/build.js';
import { runCli } from './lib/racksmith.js';
import { requirements, skipNote } from './lib/tools.js';

/**
 * What image deployment's QEMU proofs boot, built (or found) in the test cache before them: the
 * deploy agent, by the real `racksmith agent build`, and the Debian 12 disk image. This suite
 * sorts before them (`debian-image.heavy` < `debian-installer.qemu` < `image-deploy*.qemu`), so
 * on a fresh CI machine the cold builds get the runner's per-suite limit to themselves. It also
 * checks that what the cache holds is what the proofs rely on.
 */
const run = promisify(execFile);
const test = suite('image deployment: the deploy agent (racksmith agent build) and the Debian 12 test image, cached');
const missing = requirements(['apt-get', 'dpkg', 'depmod', 'cpio', 'busybox', 'sfdisk', 'resize2fs', 'zstd', 'efibootmgr', 'debootstrap', 'sgdisk', 'mkfs.fat', 'mcopy', 'grub-mkimage', 'unshare'], { root: true });

async function sha256(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const c of createReadStream(path)) h.update(c as Buffer);
  return h.digest('hex');
}

test('racksmith agent build: the distribution kernel and an initramfs of Debian packages, cached by its inputs', async (ctx) => {
  if (missing) return skipNote(ctx.__test__, missing);
  // The same cache the proofs use: <data dir>/agent with the data dir in the test cache.
  const first = await runCli(['agent', 'build', '--data-dir', GUEST_CACHE, '--json'], {}, 1_200_000);
  assert.is(first.code, 0, first.stderr);
  const b = JSON.parse(first.stdout) as { key: string; kernel: string; initrd: string; kernelVersion: string; built: boolean; seconds: number };
  process.stdout.write(`\n  agent ${b.key}: ${b.built ? `built in ${b.seconds.toFixed(0)} s` : 'from the cache'}, kernel ${b.kernelVersion}\n`);
  assert.ok(relative(PACKAGE_ROOT, b.kernel).startsWith('..'), 'cached outside the clone');
  assert.match(b.kernelVersion, /^\d+\.\d+\.\d+-\d+-amd64$/, 'the distribution kernel of linux-image-amd64');
  const manifest = JSON.parse(readFileSync(join(b.kernel, '..', 'manifest.json'), 'utf8')) as { tools: Record<string, string>; modules: number };
  assert.equal(Object.keys(manifest.tools).sort(), ['busybox-static', 'e2fsprogs', 'efibootmgr', 'fdisk', 'zstd']);
  assert.ok(manifest.modules >= AGENT_MODULES.length, `${manifest.modules} modules`);
  // The initramfs holds the agent, the rule, busybox, the tools, their libraries and the drivers.
  const { stdout } = await run('sh', ['-c', 'zcat "$1" | cpio -t --quiet', 'sh', b.initrd], { maxBuffer: 16 * 1024 * 1024 });
  const files = new Set(stdout.split('\n'));
  for (const f of ['init', 'lib/racksmith/disk-rule.sh', 'bin/busybox', 'sbin/modprobe', 'usr/sbin/sfdisk', 'usr/sbin/resize2fs', 'usr/bin/zstd', 'usr/bin/efibootmgr', 'lib64/ld-linux-x86-64.so.2', 'etc/racksmith-agent-version']) assert.ok(files.has(f), f);
  for (const m of ['nvme.ko', 'virtio_net.ko', 'ahci.ko', 'ext4.ko', 'efivarfs.ko', 'vfat.ko']) assert.ok([...files].some((f) => f.endsWith(`/${m}`)), m);
  assert.ok([...files].some((f) => /^lib\/modules\/[^/]+\/modules\.alias$/.test(f)), 'modules.alias: the agent loads drivers by alias');
  // Again: nothing to do.
  const again = await runCli(['agent', 'build', '--data-dir', GUEST_CACHE, '--json'], {}, 120_000);
  assert.equal([again.code, JSON.parse(again.stdout).built, JSON.parse(again.stdout).key], [0, false, b.key]);
  // A kernel package that does not exist is a clear error, not a crash.
  const bad = await runCli(['agent', 'build', '--data-dir', GUEST_CACHE, '--agent-kernel-package', 'linux-image-nonexistent-flavour'], {}, 120_000);
  assert.is(bad.code, 1);
  assert.match(bad.stderr, /^racksmith: apt-cache knows no kernel package behind linux-image-nonexistent-flavour/m);
});

test('the Debian 12 image: systemd, cloud-init 22.4, sshd and a kernel; GRUB for BIOS and UEFI; no HAProxy', async (ctx) => {
  if (missing) return skipNote(ctx.__test__, missing);
  const image = await ensureDebianImage({ log: (l) => process.stdout.write(`  ${l}\n`) });
  process.stdout.write(`  image ${image.key}: ${image.built ? `built in ${image.seconds.toFixed(0)} s` : 'from the cache'}, ${(statSync(image.path).size / 1e6).toFixed(0)} MB compressed\n`);
  assert.ok(relative(PACKAGE_ROOT, image.dir).startsWith('..'), 'cached outside the clone');
  assert.is(image.sha256, await sha256(image.path));
  assert.is(image.rawSize, IMAGE_SIZE_MIB * 1024 * 1024);
  for (const p of ['systemd-sysv', 'cloud-init', 'openssh-server', 'linux-image-cloud-amd64', 'ifupdown', 'sudo', 'liblua5.3-0']) assert.ok(image.packages.has(p), p);
  assert.match(image.packages.get('cloud-init') ?? '', /^22\.4/);
  assert.not.ok(image.packages.has('haproxy'), 'HAProxy comes through the site\'s package cache on first boot');
  // The disk's layout: what the agent grows (the last partition: the root) and what UEFI boots.
  const head = join(image.dir, '..', `.probe-${process.pid}.img`);
  try {
    await run('sh', ['-c', 'zstd -d -c -q "$1" | head -c 1048576 > "$2"', 'sh', image.path, head]);
    const mbr = readFileSync(head);
    assert.is(mbr.readUInt16LE(510), 0xaa55, 'a protective MBR');
    assert.is(mbr.subarray(512, 520).toString('latin1'), 'EFI PART', 'a GPT');
    assert.is(mbr.readBigUInt64LE(0x5c), 2048n, "GRUB's boot.img points at core.img in partition 14");
  } finally {
    if (existsSync(head)) await run('rm', ['-f', head]);
  }
});

test.run();
