import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { promisify } from 'node:util';
import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { PACKAGE_ROOT } from '../server/lib/paths.js';
import { requirements, skipNote } from './lib/tools.js';

/**
 * The install disk rule (agent/disk-rule.sh) as the deploy agent and d-i run it: sourced by a
 * real shell — dash, and busybox's ash as in the agent and d-i — over a fake sysfs laid out the
 * way the kernel lays it out (/sys/block/<disk> links into /sys/devices/…, size in 512-byte
 * sectors, NVMe serial and model on the controller, the SCSI unit serial in VPD page 0x80).
 */
const run = promisify(execFile);
const test = suite('install disk rule: agent/disk-rule.sh over a fake sysfs, in dash and busybox sh');
const RULE = join(PACKAGE_ROOT, 'agent', 'disk-rule.sh');
const missing = requirements(['sh', 'busybox']);
const SHELLS: readonly (readonly string[])[] = [['sh'], ['busybox', 'sh']];
const GB = 1_000_000_000;

interface FakeDisk {
  readonly name: string;
  readonly bytes: number;
  /** PCI/USB device path under /sys/devices. */
  readonly device: string;
  readonly serial?: string;
  readonly model?: string;
  readonly vendor?: string;
  readonly removable?: boolean;
  readonly ro?: boolean;
  readonly wwid?: string;
  readonly partitions?: number;
}

function write(path: string, text: string | Buffer): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, text);
}

/** A sysfs tree holding these disks (and a loop device and a CD drive, which never count). */
function fakeSysfs(disks: readonly FakeDisk[]): string {
  const sys = mkdtempSync(join(tmpdir(), 'racksmith-sysfs-'));
  mkdirSync(join(sys, 'block'), { recursive: true });
  const all: FakeDisk[] = [...disks, { name: 'loop0', bytes: 100 * GB, device: 'virtual/block/loop0' }, { name: 'sr0', bytes: 4 * GB, device: 'pci0000:00/0000:00:1f.2/ata2/host1/target1:0:0/1:0:0:0/block/sr0', vendor: 'QEMU' }];
  for (const d of all) {
    const dev = join(sys, 'devices', d.device);
    write(join(dev, 'size'), `${d.bytes / 512}\n`);
    write(join(dev, 'removable'), d.removable ? '1\n' : '0\n');
    write(join(dev, 'ro'), d.ro ? '1\n' : '0\n');
    write(join(dev, 'queue', 'rotational'), '0\n');
    if (d.name.startsWith('nvme')) {
      // The namespace's `device` is the controller, which has the serial and model.
      const ctrl = join(dev, '..');
      write(join(ctrl, 'serial'), `${d.serial ?? ''}        \n`);
      write(join(ctrl, 'model'), `${d.model ?? ''}                \n`);
      symlinkSync(relative(dev, ctrl), join(dev, 'device'));
      if (d.wwid) write(join(dev, 'wwid'), `${d.wwid}\n`);
    } else if (d.name.startsWith('vd')) {
      if (d.serial) write(join(dev, 'serial'), `${d.serial}\n`);
    } else if (d.name.startsWith('sd') || d.name.startsWith('sr')) {
      const sdev = join(dev, '..', '..');
      write(join(sdev, 'vendor'), `${(d.vendor ?? 'ATA').padEnd(8)}\n`);
      write(join(sdev, 'model'), `${(d.model ?? '').padEnd(16)}\n`);
      if (d.serial) write(join(sdev, 'vpd_pg80'), Buffer.concat([Buffer.from([0, 0x80, 0, d.serial.length + 4]), Buffer.from(`    ${d.serial}`)]));
      if (d.wwid) write(join(sdev, 'wwid'), `${d.wwid}\n`);
      symlinkSync(relative(dev, sdev), join(dev, 'device'));
    }
    for (let p = 1; p <= (d.partitions ?? 0); p++) write(join(dev, `${d.name}${p}`, 'partition'), `${p}\n`);
    symlinkSync(relative(join(sys, 'block'), dev), join(sys, 'block', d.name));
  }
  return sys;
}

const nvme = (n: number, gb: number, serial: string): FakeDisk => ({ name: `nvme${n}n1`, bytes: gb * GB, device: `pci0000:00/0000:00:0${4 + n}.0/nvme/nvme${n}/nvme${n}n1`, serial, model: 'Samsung SSD 980 PRO 1TB' });
const sata = (letter: string, gb: number, serial: string, over: Partial<FakeDisk> = {}): FakeDisk => ({
  name: `sd${letter}`,
  bytes: gb * GB,
  device: `pci0000:00/0000:00:1f.2/ata${letter.charCodeAt(0) - 96}/host0/target0:0:0/0:0:0:0/block/sd${letter}`,
  serial,
  model: 'ST4000NM0035-1V4',
  ...over,
});
const virtio = (letter: string, gb: number, serial: string): FakeDisk => ({ name: `vd${letter}`, bytes: gb * GB, device: `pci0000:00/0000:00:0a.0/virtio${letter.charCodeAt(0)}/block/vd${letter}`, serial });
const usb = (letter: string, gb: number): FakeDisk => ({ name: `sd${letter}`, bytes: gb * GB, device: `pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host6/target6:0:0/6:0:0:0/block/sd${letter}`, serial: 'USB0001', vendor: 'SanDisk', removable: false });

interface Pick {
  readonly disk: string;
  readonly why: string;
}

async function pick(shell: readonly string[], sys: string, rule: string, minBytes: number, want = ''): Promise<Pick> {
  const [cmd, ...pre] = shell;
  const script = '. "$1"; if rs_pick_disk "$2" "$3" "$4" "$5"; then echo "ok|$RS_DISK"; else echo "no|$RS_DISK_WHY"; fi';
  const { stdout } = await run(cmd as string, [...pre, '-c', script, 'sh', RULE, sys, rule, String(minBytes), want], { timeout: 30_000 });
  const [status, text] = stdout.trim().split('|', 2) as [string, string];
  return status === 'ok' ? { disk: text, why: '' } : { disk: '', why: stdout.trim().slice(3) };
}

const trees: string[] = [];
function tree(disks: readonly FakeDisk[]): string {
  const t = fakeSysfs(disks);
  trees.push(t);
  return t;
}
test.after(() => {
  for (const t of trees) rmSync(t, { recursive: true, force: true });
});

// One server: a 480 GB NVMe boot SSD, two 4 TB SATA data disks, a 1 TB virtio disk, a USB stick,
// an empty removable card reader and a read-only disk.
const SERVER: readonly FakeDisk[] = [
  nvme(0, 480, 'S5GXNF0R123456'),
  sata('a', 4000, 'ZC1ABCDE'),
  sata('b', 4000, 'ZC1FGHIJ'),
  virtio('a', 1000, 'VIRTIO-DATA'),
  usb('c', 64),
  { name: 'sdd', bytes: 0, device: 'pci0000:00/0000:00:14.0/0000:02:00.0/host7/target7:0:0/7:0:0:0/block/sdd', vendor: 'Generic', removable: true },
  { ...sata('e', 2000, 'RO000001'), ro: true },
];

test('the rule picks as documented, the same in dash and busybox sh', async (ctx) => {
  if (missing) return skipNote(ctx.__test__, missing);
  const sys = tree(SERVER);
  const cases: [string, string, number, string, string][] = [
    // [what, rule, min bytes, installDisk, expected disk]
    ['smallest: the boot SSD beside big data disks', 'smallest', 8 * GB, '', 'nvme0n1'],
    ['largest: a 4 TB data disk, the first of the tie in kernel order', 'largest', 8 * GB, '', 'sda'],
    ['first: NVMe before SATA before virtio', 'first', 8 * GB, '', 'nvme0n1'],
    ['smallest above a higher floor skips the SSD', 'smallest', 500 * GB, '', 'vda'],
    ['installDisk /dev/NAME', 'smallest', 8 * GB, '/dev/sdb', 'sdb'],
    ['installDisk serial:', 'smallest', 8 * GB, 'serial:ZC1FGHIJ', 'sdb'],
    ['installDisk by-id, ATA model_serial', 'smallest', 8 * GB, '/dev/disk/by-id/ata-ST4000NM0035-1V4107_ZC1ABCDE', 'sda'],
    ['installDisk by-id, NVMe model_serial', 'smallest', 8 * GB, '/dev/disk/by-id/nvme-Samsung_SSD_980_PRO_1TB_S5GXNF0R123456', 'nvme0n1'],
    ['installDisk by-id, virtio serial', 'smallest', 8 * GB, '/dev/disk/by-id/virtio-VIRTIO-DATA', 'vda'],
    ['an explicit USB disk is the admin\'s choice', 'smallest', 8 * GB, '/dev/sdc', 'sdc'],
  ];
  for (const shell of SHELLS) {
    for (const [what, rule, min, want, expected] of cases) {
      const got = await pick(shell, sys, rule, min, want);
      assert.is(got.disk, expected, `${shell.join(' ')}: ${what}: ${got.why}`);
    }
  }
});

test('never a USB, removable, read-only or too small disk; ties by kernel order', async (ctx) => {
  if (missing) return skipNote(ctx.__test__, missing);
  for (const shell of SHELLS) {
    // Only excluded disks: nothing matches, and the reason names each one and why.
    const none = tree([usb('a', 64), { ...sata('b', 500, 'RO1'), ro: true }, { ...sata('c', 500, 'RM1'), removable: true }, nvme(0, 2, 'SMALL')]);
    const got = await pick(shell, none, 'smallest', 8 * GB);
    assert.is(got.disk, '');
    assert.match(got.why, /^no disk matched the rule smallest \(at least 8\.0 GB, not removable, not USB\)/);
    for (const reason of [/sda on USB/, /sdb read-only/, /sdc removable/, /nvme0n1 2\.0 GB, smaller than 8\.0 GB/]) assert.match(got.why, reason);
    // The machine: a 2 GB disk only.
    const tiny = tree([virtio('a', 2, 'ONLY')]);
    assert.match((await pick(shell, tiny, 'smallest', 4 * GB)).why, /no disk matched the rule smallest .*vda 2\.0 GB, smaller than 4\.0 GB/);
    // Ties: equal sizes go to the kernel's order, NVMe first, and sdb before sdaa.
    const ties = tree([sata('b', 1000, 'B'), nvme(1, 1000, 'N1'), nvme(0, 1000, 'N0'), virtio('a', 1000, 'V')]);
    assert.is((await pick(shell, ties, 'smallest', 8 * GB)).disk, 'nvme0n1');
    assert.is((await pick(shell, ties, 'largest', 8 * GB)).disk, 'nvme0n1');
    const order = tree([{ ...sata('b', 100, 'B'), name: 'sdaa', device: 'pci0000:00/0000:00:1f.2/ata27/host0/target0:0:0/0:0:0:0/block/sdaa' }, sata('b', 100, 'B2')]);
    assert.is((await pick(shell, order, 'first', 8 * GB)).disk, 'sdb');
    // The image-deployment proof's machine: a 6 GB NVMe and a 12 GB virtio disk.
    const proof = tree([virtio('a', 12, 'DATA'), nvme(0, 6, 'NVME0001')]);
    assert.is((await pick(shell, proof, 'smallest', 4 * GB)).disk, 'nvme0n1');
    assert.is((await pick(shell, proof, 'largest', 4 * GB)).disk, 'vda');
  }
});

test('an installDisk that names nothing, or too small a disk, is refused with the reason', async (ctx) => {
  if (missing) return skipNote(ctx.__test__, missing);
  const sys = tree(SERVER);
  for (const shell of SHELLS) {
    assert.match((await pick(shell, sys, 'smallest', 8 * GB, '/dev/sdz')).why, /installDisk \/dev\/sdz matches no disk here \(nvme0n1, sda, sdb/);
    assert.match((await pick(shell, sys, 'smallest', 8 * GB, 'serial:NOPE')).why, /installDisk serial:NOPE matches no disk/);
    // A by-id name whose bus does not fit the disk with that serial.
    assert.match((await pick(shell, sys, 'smallest', 8 * GB, '/dev/disk/by-id/nvme-X_ZC1ABCDE')).why, /matches no disk/);
    assert.match((await pick(shell, sys, 'smallest', 1000 * GB, '/dev/nvme0n1')).why, /installDisk \/dev\/nvme0n1 is nvme0n1, 480\.0 GB, smaller than 1000\.0 GB/);
    assert.match((await pick(shell, sys, 'sideways', 8 * GB)).why, /unknown install disk rule "sideways"/);
  }
});

test('the scan reports every disk with its kind, size, serial and model, loop and CD drives left out', async (ctx) => {
  if (missing) return skipNote(ctx.__test__, missing);
  const sys = tree(SERVER);
  const { stdout } = await run('busybox', ['sh', '-c', '. "$1"; rs_disk_scan "$2" 8000000000', 'sh', RULE, sys]);
  const rows = stdout.trim().split('\n').map((l) => l.split('|'));
  assert.equal(rows.map((r) => r[0]), ['nvme0n1', 'sda', 'sdb', 'sdd', 'sde', 'vda', 'sdc']);
  const byName = new Map(rows.map((r) => [r[0], r]));
  assert.equal(byName.get('nvme0n1')?.slice(1, 5), ['nvme', String(480 * GB), 'S5GXNF0R123456', 'Samsung SSD 980 PRO 1TB']);
  assert.equal(byName.get('sda')?.slice(1, 5), ['sata', String(4000 * GB), 'ZC1ABCDE', 'ST4000NM0035-1V4']);
  assert.equal(byName.get('vda')?.slice(1, 4), ['virtio', String(1000 * GB), 'VIRTIO-DATA']);
  assert.is(byName.get('sdc')?.[1], 'usb');
  assert.is(byName.get('sdd')?.[10], 'no medium');
  // A SAS disk is told from SATA by its SCSI vendor.
  const sas = tree([sata('a', 1200, 'SAS1', { vendor: 'SEAGATE' })]);
  assert.match((await run('sh', ['-c', '. "$1"; rs_disk_scan "$2" 1', 'sh', RULE, sas])).stdout, /^sda\|sas\|/);
});

test.run();
