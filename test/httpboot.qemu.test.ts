import { copyFileSync, mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { buildGuest, type Guest } from './lib/guest/build.js';
import { FIRMWARE_FILES, endBootProof, PxeBed, SERVER_IP, type Vm } from './lib/pxe.js';
import type { RacksmithProcess } from './lib/racksmith.js';
import { requirements, skipNote } from './lib/tools.js';

// racksmith-test: both engines — UEFI HTTP Boot records its bootfile and steps in the store; short enough to run twice.

/**
 * UEFI HTTP Boot with real firmware and no TFTP at all: OVMF with its PXE options turned off
 * (so its HTTP boot option is the first network one) sends DHCP with vendor class HTTPClient and
 * arch 16; racksmith answers with a URL and HTTPClient; the firmware downloads iPXE over HTTP,
 * iPXE asks for /boot.ipxe, and the installer (the test guest) phones home → ready.
 * racksmith runs with TFTP off (RACKSMITH_TFTP_PORT=0).
 */
const test = suite('qemu: UEFI HTTP Boot, no TFTP → iPXE over HTTP → installer → ready');

const HTTP_PORT = 8080;
const BASE = `http://${SERVER_IP}:${HTTP_PORT}`;
const M = { mac: '52:54:00:77:00:41', ip: '10.77.0.41', hostname: 'hb1' };
const VM_TIMEOUT_MS = 150_000;

const missing = requirements([...FIRMWARE_FILES['efi-http'], 'dnsmasq', 'cpio', 'gzip', 'apt-get', 'dpkg', 'dropbearkey', 'curl', '/usr/lib/ipxe/ipxe.efi'], { netns: true });

let bed: PxeBed | null = null;
let rs: RacksmithProcess | null = null;
let work = '';
let admin = '';
let guest: Guest;
let vm: Vm | null = null;
let failed = true;

async function api(method: string, path: string, body?: unknown) {
  return bed!.api(BASE, admin, method, `/api/v1${path}`, body);
}

test.before(async () => {
  if (missing) return;
  guest = await buildGuest();
  work = mkdtempSync(join(tmpdir(), 'racksmith-hb-'));
  bed = await new PxeBed('hb').setup();
});

test.after(async () => {
  await endBootProof({ vms: [vm], failed, work, rs, bed, evidence: 'httpboot-qemu' });
});

test('HTTP boot option first, TFTP off: the machine installs over HTTP only and ends ready', async () => {
  if (missing) return skipNote('the UEFI HTTP Boot QEMU proof', missing);
  const artifacts = join(work, 'artifacts');
  mkdirSync(join(artifacts, '22.04'), { recursive: true });
  copyFileSync(guest.kernel, join(artifacts, '22.04', 'vmlinuz'));
  copyFileSync(guest.initrd, join(artifacts, '22.04', 'initrd'));

  rs = await bed!.racksmith(work, artifacts, HTTP_PORT, { RACKSMITH_TFTP_PORT: '0' });
  admin = (await rs.cli(['token', 'create', '--role', 'admin'])).trim();
  bed!.raSender();
  const health = JSON.parse(await bed!.curl([`${BASE}/healthz`]));
  assert.is(health.services?.tftp?.state ?? health.tftp?.state, 'off', JSON.stringify(health));
  assert.is((await api('POST', '/clusters', { name: 'hb', ubuntuRelease: '22.04', kubernetesVersion: '1.28.4', containerRuntime: 'containerd', cni: 'flannel' })).status, 201);
  assert.is((await api('POST', '/machines', { mac: M.mac, hostname: M.hostname, role: 'worker', cluster: 'hb', ip: M.ip })).status, 201);

  vm = await bed!.vm({ name: 'hb1', mac: M.mac, firmware: 'efi-http', serialLog: join(work, 'hb1.log') });
  const t = await vm.waitFor(/RACKSMITH-GUEST (DONE|FAIL)/, VM_TIMEOUT_MS);
  process.stdout.write(`\n  HTTP boot → phone-home in ${t.toFixed(1)} s\n`);
  const log = vm.serial();
  assert.not.match(log, /RACKSMITH-GUEST FAIL/, log.slice(-2000));
  assert.match(log, /RACKSMITH-GUEST PHONED-HOME .*"state":"ready"/);
  assert.not.match(log, /PXEv4/, 'the firmware never tried PXE');

  const m = (await api('GET', `/machines/${M.mac}`)).body;
  assert.is(m.state, 'ready');
  assert.is(m.secureBootSeen, 'off', 'iPXE ran on EFI');
  assert.is(m.boot.lastLoader, 'ipxe');
  const ev = (await api('GET', `/machines/${M.mac}/events?limit=10000`)).body as any[];
  const discover = ev.find((e) => e.type === 'dhcp.discover' && e.data?.archCode === 16);
  assert.ok(discover, 'the firmware asked as arch 16');
  assert.match(discover.data.vendorClass, /^HTTPClient/);
  const offer = ev.find((e) => e.type === 'dhcp.offer' && e.data?.bootfileKind === 'http' && e.data?.rule?.startsWith('uefi-http'));
  assert.is(offer?.data?.bootfile, `${BASE}/ipxe/ipxe.efi`, JSON.stringify(offer));
  assert.ok(ev.some((e) => e.type === 'http.bootfile' && e.data?.file === 'ipxe.efi'), 'iPXE fetched over HTTP');
  assert.ok(ev.some((e) => e.type === 'http.ipxe' && e.data?.script === 'install'));
  assert.ok(ev.every((e) => e.type !== 'tftp.transfer'), 'no TFTP at all');
  const states = ev.filter((e) => e.type === 'state').map((e) => e.data?.to);
  assert.equal(states.slice(-3), ['provisioning', 'installed', 'ready'], states.join(' → '));
  failed = false;
});

test.run();
