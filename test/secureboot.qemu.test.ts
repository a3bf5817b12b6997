import { copyFileSync, mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { BOOTFILE_STALL_SECONDS } from '../server/boot/loaders.js';
import { buildGuest, type Guest } from './lib/guest/build.js';
import { FIRMWARE_FILES, endBootProof, PxeBed, SERVER_IP, type Vm } from './lib/pxe.js';
import type { RacksmithProcess } from './lib/racksmith.js';
import { requirements, skipNote } from './lib/tools.js';

// racksmith-test: both engines — the signed chain records its loader and Secure Boot state in the store; short enough to run twice.

/**
 * Secure Boot, enforced, with real firmware: q35 + SMM, OVMF's Secure Boot build and the
 * Microsoft-keys variable store. racksmith alone serves DHCP, TFTP and HTTP.
 *
 *   sb-shim (bootLoader shim-grub): firmware PXE → TFTP Debian's signed shim → its signed
 *     network GRUB → grub/grub.cfg → grub/grub.cfg-01-<mac> (install) → the signed Debian kernel
 *     and the test initramfs over TFTP → seed → installed → phone-home → ready.
 *   sb-ipxe (bootLoader ipxe, same VM): firmware PXE → TFTP ipxe.efi → the firmware refuses the
 *     unsigned binary; racksmith shows the machine stuck after its bootfile, not progressing.
 */
const test = suite('qemu: Secure Boot — shim → GRUB → signed kernel ends ready; unsigned iPXE is refused and shows stuck');

const HTTP_PORT = 8080;
const BASE = `http://${SERVER_IP}:${HTTP_PORT}`;
const SHIM = { mac: '52:54:00:77:00:31', ip: '10.77.0.31', hostname: 'sb-shim' };
const IPXE = { mac: '52:54:00:77:00:32', ip: '10.77.0.32', hostname: 'sb-ipxe' };
const VM_TIMEOUT_MS = 150_000;

const missing = requirements(
  [...FIRMWARE_FILES.secureboot, 'dnsmasq', 'cpio', 'gzip', 'apt-get', 'dpkg', 'dropbearkey', 'curl', '/usr/lib/ipxe/ipxe.efi', '/usr/lib/shim/shimx64.efi.signed', '/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed'],
  { netns: true },
);

let bed: PxeBed | null = null;
let rs: RacksmithProcess | null = null;
let work = '';
let admin = '';
let guest: Guest;
const vms: Vm[] = [];
let failed = true;

async function api(method: string, path: string, body?: unknown) {
  return bed!.api(BASE, admin, method, `/api/v1${path}`, body);
}
async function events(mac: string): Promise<any[]> {
  const r = await api('GET', `/machines/${mac}/events?limit=10000`);
  return Array.isArray(r.body) ? r.body : [];
}

test.before(async () => {
  if (missing) return;
  guest = await buildGuest();
  work = mkdtempSync(join(tmpdir(), 'racksmith-sb-'));
  bed = await new PxeBed('sb').setup();
});

test.after(async () => {
  await endBootProof({ vms: vms, failed, work, rs, bed, evidence: 'secureboot-qemu' });
});

test('Secure Boot enforced: the signed chain installs and phones home; iPXE is refused and shows stuck after its bootfile', async () => {
  if (missing) return skipNote('the Secure Boot QEMU proof', missing);
  const started = Date.now();
  const artifacts = join(work, 'artifacts');
  mkdirSync(join(artifacts, '22.04'), { recursive: true });
  // Debian's cloud kernel is signed with Debian's key (which shim trusts); the initramfs is not
  // verified by GRUB, as on a real install.
  copyFileSync(guest.kernel, join(artifacts, '22.04', 'vmlinuz'));
  copyFileSync(guest.initrd, join(artifacts, '22.04', 'initrd'));

  rs = await bed!.racksmith(work, artifacts, HTTP_PORT, { RACKSMITH_BOOT_LOADER: 'ipxe' });
  admin = (await rs.cli(['token', 'create', '--role', 'admin'])).trim();
  assert.is((await api('POST', '/clusters', { name: 'sb', ubuntuRelease: '22.04', kubernetesVersion: '1.28.4', containerRuntime: 'containerd', cni: 'flannel' })).status, 201);
  const shimMachine = await api('POST', '/machines', { mac: SHIM.mac, hostname: SHIM.hostname, role: 'worker', cluster: 'sb', ip: SHIM.ip, bootLoader: 'shim-grub' });
  assert.is(shimMachine.status, 201, JSON.stringify(shimMachine.body));
  assert.is(shimMachine.body.bootLoader, 'shim-grub');
  // The site default (ipxe) applies to this one.
  assert.is((await api('POST', '/machines', { mac: IPXE.mac, hostname: IPXE.hostname, role: 'worker', cluster: 'sb', ip: IPXE.ip })).status, 201);

  const shim = await bed!.vm({ name: 'sb-shim', mac: SHIM.mac, firmware: 'secureboot', serialLog: join(work, 'sb-shim.log'), memoryMiB: 512 });
  const ipxe = await bed!.vm({ name: 'sb-ipxe', mac: IPXE.mac, firmware: 'secureboot', serialLog: join(work, 'sb-ipxe.log'), memoryMiB: 512 });
  vms.push(shim, ipxe);

  const t = await shim.waitFor(/RACKSMITH-GUEST (DONE|FAIL)/, VM_TIMEOUT_MS);
  process.stdout.write(`\n  shim → GRUB → kernel → phone-home in ${t.toFixed(1)} s\n`);
  const log = shim.serial();
  assert.not.match(log, /RACKSMITH-GUEST FAIL/, log.slice(-2000));
  assert.match(log, new RegExp(`RACKSMITH-GUEST SEED subiquity ${BASE}/seed/`));
  assert.match(log, /RACKSMITH-GUEST PHONED-HOME .*"state":"ready"/);
  // The kernel ran under Secure Boot (lockdown is the kernel's own word for it).
  assert.match(log, /secureboot: Secure boot enabled/, "the kernel booted with Secure Boot on");

  const m = (await api('GET', `/machines/${SHIM.mac}`)).body;
  assert.is(m.state, 'ready', JSON.stringify(m));
  assert.is(m.firmware, 'efi');
  assert.is(m.arch, 'x86_64');
  assert.is(m.secureBootSeen, 'enforced', 'signed GRUB reported $lockdown=y');
  assert.is(m.boot.lastLoader, 'shim-grub');
  assert.is(m.boot.stuck, null);
  const ev = await events(SHIM.mac);
  const offer = ev.find((e) => e.type === 'dhcp.offer');
  assert.is(offer?.data?.bootfile, 'shim-grub/x86_64/shimx64.efi', JSON.stringify(offer));
  const sent = ev.filter((e) => e.type === 'tftp.transfer' && e.data?.outcome === 'complete').map((e) => e.data.file.replace(/\?.*$/, '').replace(/^\//, ''));
  for (const f of ['shim-grub/x86_64/shimx64.efi', 'shim-grub/x86_64/grubx64.efi', 'grub/grub.cfg', `grub/grub.cfg-01-${SHIM.mac.replace(/:/g, '-')}`, 'artifacts/22.04/vmlinuz', 'artifacts/22.04/initrd']) {
    assert.ok(sent.includes(f), `TFTP sent ${f} (sent: ${sent.join(', ')})`);
  }
  const grub = ev.find((e) => e.type === 'boot.grub' && e.data?.script === 'install');
  assert.ok(grub, 'the GRUB config was the install one');
  assert.is(grub.data.lockdown, true);
  assert.is(grub.data.arch, 'x86_64');
  assert.ok(ev.every((e) => e.type !== 'http.ipxe'), 'no iPXE anywhere in the signed chain');
  const states = ev.filter((e) => e.type === 'state').map((e) => e.data?.to);
  assert.equal(states.slice(-3), ['provisioning', 'installed', 'ready'], states.join(' → '));

  // The unsigned iPXE: fetched by the firmware, never run.
  const deadline = Date.now() + VM_TIMEOUT_MS;
  let stuck: any = null;
  while (Date.now() < deadline) {
    stuck = (await api('GET', `/machines/${IPXE.mac}`)).body?.boot?.stuck ?? null;
    if (stuck) break;
    await new Promise((r) => setTimeout(r, 1000));
  }
  process.stdout.write(`  iPXE machine shown stuck after ${((Date.now() - ipxe.started) / 1000).toFixed(1)} s (threshold ${BOOTFILE_STALL_SECONDS} s)\n`);
  assert.ok(stuck, 'racksmith shows the iPXE machine stuck after its bootfile');
  assert.match(stuck.bootfile, /ipxe\.efi$/);
  assert.match(stuck.message, /stuck after the bootfile/);
  assert.match(ipxe.serial(), /Access Denied/, 'the firmware refused the unsigned binary');
  assert.not.match(ipxe.serial(), /iPXE initialising devices/, 'iPXE never ran');
  const iev = await events(IPXE.mac);
  assert.ok(iev.some((e) => (e.type === 'tftp.transfer' && /ipxe\.efi$/.test(e.data?.file ?? '') && e.data?.outcome === 'complete') || e.type === 'http.bootfile'), 'the bootfile was served');
  assert.ok(iev.every((e) => e.type !== 'http.ipxe' && !(e.type === 'dhcp.discover' && e.data?.ipxe)), 'no iPXE DHCP, no script: not progressing');
  const im = (await api('GET', `/machines/${IPXE.mac}`)).body;
  assert.ok(['assigned'].includes(im.state), `still waiting to install: ${im.state}`);
  assert.is(im.boot.lastLoader, 'ipxe');
  process.stdout.write(`  suite body ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
  failed = false;
});

test.run();
