import { execFile } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { buildArm64Guest, type Arm64Guest } from './lib/guest/arm64.js';
import { extraCpio } from './lib/guest/build.js';
import { FIRMWARE_FILES, endBootProof, PxeBed, SERVER_IP, type Vm } from './lib/pxe.js';
import type { RacksmithProcess } from './lib/racksmith.js';
import { requirements, skipNote } from './lib/tools.js';

// racksmith-test: both engines — an ARM64 machine's arch, bootfile and steps are stored; short enough to run twice.

const run = promisify(execFile);

/**
 * ARM64 with real firmware: qemu-system-aarch64 `virt` with AAVMF, firmware PXE (arch 11) →
 * racksmith's DHCP hands it Debian's signed arm64 shim (Debian ships no arm64 iPXE) → signed
 * network GRUB for arm64 → grub.cfg → the machine's config → Debian's arm64 kernel and an arm64
 * test initramfs over TFTP, from the arm64 installer artifacts → seed → phone-home → ready.
 * The guest and the signed chain come from Debian's arm64 packages (test/lib/guest/arm64.ts).
 */
const test = suite('qemu: ARM64 — AAVMF PXE → shim/GRUB for arm64 → arm64 kernel → ready');

const HTTP_PORT = 8080;
const BASE = `http://${SERVER_IP}:${HTTP_PORT}`;
const M = { mac: '52:54:00:77:00:51', ip: '10.77.0.51', hostname: 'arm1' };
const VM_TIMEOUT_MS = 170_000;

const missing = requirements([...FIRMWARE_FILES.arm64, 'cpio', 'gzip', 'apt-get', 'apt-cache', 'dpkg', 'dropbearkey', 'curl'], { netns: true });

let bed: PxeBed | null = null;
let rs: RacksmithProcess | null = null;
let work = '';
let admin = '';
let guest: Arm64Guest;
let vm: Vm | null = null;
let failed = true;

async function api(method: string, path: string, body?: unknown) {
  return bed!.api(BASE, admin, method, `/api/v1${path}`, body);
}

test.before(async () => {
  if (missing) return;
  guest = await buildArm64Guest();
  work = mkdtempSync(join(tmpdir(), 'racksmith-arm-'));
  bed = await new PxeBed('arm').setup();
});

test.after(async () => {
  await endBootProof({ vms: [vm], failed, work, rs, bed, evidence: 'arm64-qemu' });
});

test('an ARM64 machine boots the signed arm64 chain and the arm64 installer, and ends ready', async () => {
  if (missing) return skipNote('the ARM64 QEMU proof', missing);
  const arm64 = join(work, 'artifacts', '22.04', 'arm64');
  mkdirSync(arm64, { recursive: true });
  // The amd64 place of the same release holds decoys: an ARM64 machine must never be sent there.
  writeFileSync(join(work, 'artifacts', '22.04', 'vmlinuz'), 'amd64 decoy');
  writeFileSync(join(work, 'artifacts', '22.04', 'initrd'), 'amd64 decoy');
  copyFileSync(guest.kernel, join(arm64, 'vmlinuz'));
  await run('dropbearkey', ['-t', 'ed25519', '-f', join(work, 'hostkey')]);
  const pub = (await run('dropbearkey', ['-y', '-f', join(work, 'hostkey')])).stdout.split('\n').find((l) => l.startsWith('ssh-ed25519 ')) ?? '';
  writeFileSync(join(arm64, 'initrd'), Buffer.concat([readFileSync(guest.initrd), await extraCpio({ 'hostkey.pub': `${pub}\n` })]));

  rs = await bed!.racksmith(work, join(work, 'artifacts'), HTTP_PORT, { RACKSMITH_SIGNED_BOOT_DIR: guest.signedBootDir, RACKSMITH_INSTALLER_KERNEL_ARGS: 'console=ttyAMA0 panic=-1' });
  admin = (await rs.cli(['token', 'create', '--role', 'admin'])).trim();
  assert.is((await api('POST', '/clusters', { name: 'arm', ubuntuRelease: '22.04', kubernetesVersion: '1.28.4', containerRuntime: 'containerd', cni: 'flannel' })).status, 201);
  // No bootLoader: the site default is iPXE, which does not exist for arm64 here.
  assert.is((await api('POST', '/machines', { mac: M.mac, hostname: M.hostname, role: 'worker', cluster: 'arm', ip: M.ip })).status, 201);

  vm = await bed!.vm({ name: 'arm1', mac: M.mac, firmware: 'arm64', serialLog: join(work, 'arm1.log'), memoryMiB: 512 });
  const t = await vm.waitFor(/RACKSMITH-GUEST (DONE|FAIL)/, VM_TIMEOUT_MS);
  process.stdout.write(`\n  AAVMF → shim → GRUB → arm64 kernel → phone-home in ${t.toFixed(1)} s\n`);
  const log = vm.serial();
  assert.not.match(log, /RACKSMITH-GUEST FAIL/, log.slice(-2000));
  assert.match(log, /RACKSMITH-GUEST PHONED-HOME .*"state":"ready"/);
  assert.match(log, /Machine model: linux,dummy-virt|Booting Linux on physical CPU/, 'an arm64 kernel booted');

  const m = (await api('GET', `/machines/${M.mac}`)).body;
  assert.is(m.state, 'ready');
  assert.is(m.arch, 'arm64');
  assert.is(m.firmware, 'efi');
  assert.is(m.boot.lastLoader, 'shim-grub');
  assert.equal(m.hostKeys, ['ssh-ed25519']);
  const ev = (await api('GET', `/machines/${M.mac}/events?limit=10000`)).body as any[];
  const discover = ev.find((e) => e.type === 'dhcp.discover');
  assert.is(discover?.data?.archCode, 11, 'DHCP saw arch 11');
  assert.is(discover?.data?.arch, 'arm64');
  const offer = ev.find((e) => e.type === 'dhcp.offer');
  assert.is(offer?.data?.bootfile, 'shim-grub/arm64/shimaa64.efi', JSON.stringify(offer?.data));
  const sent = ev.filter((e) => e.type === 'tftp.transfer' && e.data?.outcome === 'complete').map((e) => e.data.file.replace(/\?.*$/, '').replace(/^\//, ''));
  for (const f of ['shim-grub/arm64/shimaa64.efi', 'shim-grub/arm64/grubaa64.efi', 'grub/grub.cfg', 'artifacts/22.04/arm64/vmlinuz', 'artifacts/22.04/arm64/initrd']) assert.ok(sent.includes(f), `TFTP sent ${f} (sent: ${sent.join(', ')})`);
  assert.ok(sent.every((f) => !/x86_64|x64|amd64/.test(f) && f !== 'artifacts/22.04/vmlinuz' && f !== 'artifacts/22.04/initrd'), `nothing amd64: ${sent.join(', ')}`);
  const grub = ev.find((e) => e.type === 'boot.grub' && e.data?.script === 'install');
  assert.is(grub?.data?.arch, 'arm64');
  assert.match(grub?.message ?? '', /arm64/);
  const states = ev.filter((e) => e.type === 'state').map((e) => e.data?.to);
  assert.equal(states.slice(-3), ['provisioning', 'installed', 'ready'], states.join(' → '));
  failed = false;
});

test.run();
