import { mkdirSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { buildGuest, type Guest } from './lib/guest/build.js';
import { domainXml, firstBootDevice, startLibvirtd, type Libvirtd } from './lib/libvirt.js';
import { PxeBed, SERVER_IP } from './lib/pxe.js';
import type { RacksmithProcess } from './lib/racksmith.js';
import { startSushy, sushyMissing, type Sushy } from './lib/sushy.js';
import { requirements, skipNote } from './lib/tools.js';

// racksmith-test: both engines — BMC credentials, power state and jobs are stored; short enough to run twice.

/**
 * Install and reimage through Redfish, end to end: sushy-emulator's libvirt driver in front of a
 * private libvirtd whose QEMU/TCG domain sits on the test bed's bridge. Power on through the API →
 * the domain PXE-boots racksmith's installer (the test initramfs) → `ready`. Then the domain's
 * boot order is set to disk first (as an installed machine's is), and a reimage through Redfish
 * must set the one-time PXE override (sushy rewrites the domain's boot device) and power it on →
 * it installs again with a rotated seed token → `ready`. Evidence: libvirt's domain XML, sushy's
 * view of the system, the VM's serial console, the machine's events.
 */
const test = suite('qemu: install and reimage through Redfish (sushy-emulator + libvirtd)');
const PASSWORD = 'Redfish-Qemu-Pw-3';
const HTTP_PORT = 8080;
const BASE = `http://${SERVER_IP}:${HTTP_PORT}`;
const BMC_IP = '10.77.0.2';
const VM = { mac: '52:54:00:77:00:22', ip: '10.77.0.22', hostname: 'w-redfish', uuid: 'c0ffee00-0000-4000-8000-000000000022' };
const VM_TIMEOUT_MS = 240_000;
const missing =
  requirements(['qemu-system-x86_64', 'libvirtd', 'virtlogd', 'virsh', 'unshare', 'dnsmasq', 'cpio', 'gzip', 'apt-get', 'dpkg', 'dropbearkey', 'curl'], { netns: true }) ??
  sushyMissing() ??
  (requirements(['/usr/lib/python3/dist-packages/libvirt.py']) ? 'python3-libvirt is not installed' : null);
if (missing && process.env['CI'] === 'true') throw new Error(`under CI nothing may skip: ${missing}`);

let bed: PxeBed | null = null;
let rs: RacksmithProcess | null = null;
let lv: Libvirtd | null = null;
let sushy: Sushy | null = null;
let work = '';
let admin = '';
let guest: Guest;
let serialLog = '';

const api = (method: string, path: string, body?: unknown) => bed!.api(BASE, admin, method, `/api/v1${path}`, body);
const serial = (): string => {
  try {
    return readFileSync(serialLog, 'latin1');
  } catch {
    return '';
  }
};
async function until<T>(what: string, fn: () => T | null | undefined | false | Promise<T | null | undefined | false>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const v = await fn();
    if (v) return v;
    await new Promise((r) => setTimeout(r, 1000));
  }
  throw new Error(`timed out waiting for ${what}; serial:\n${serial().slice(-1500)}\nlibvirtd: ${lv?.log().slice(-800)}\nsushy: ${sushy?.log().slice(-800)}`);
}
const domainState = async (): Promise<string> => (await lv!.virsh(['domstate', VM.uuid])).trim();
const bootDev = async (): Promise<string | null> => firstBootDevice(await lv!.virsh(['dumpxml', '--inactive', VM.uuid]));

test.before(async () => {
  if (missing) return;
  guest = await buildGuest();
  work = mkdtempSync(join(tmpdir(), 'racksmith-rfq-'));
  serialLog = join(work, 'serial.log');
  // An empty disk: "boot from disk" finds nothing bootable and never falls through to the network.
  writeFileSync(join(work, 'disk.img'), Buffer.alloc(0));
  truncateSync(join(work, 'disk.img'), 16 * 1024 * 1024);
  bed = await new PxeBed('rq').setup();
  await bed.tb.ip(bed.sw, ['addr', 'add', `${BMC_IP}/24`, 'dev', bed.bridge]);
  lv = await startLibvirtd(bed.sw);
  const xml = join(work, 'domain.xml');
  writeFileSync(xml, domainXml({ name: 'rs-redfish-vm', uuid: VM.uuid, mac: VM.mac, bridge: bed.bridge, serialLog, disk: join(work, 'disk.img'), boot: 'network' }));
  await lv.virsh(['define', xml]);
  sushy = await startSushy({ users: { admin: PASSWORD }, libvirtUri: lv.uri, netns: bed.sw, address: BMC_IP, port: 8000 });
});

test.after(async () => {
  await rs?.stop();
  rs?.cleanup();
  await sushy?.stop();
  await lv?.stop();
  await bed?.destroy();
  if (work) rmSync(work, { recursive: true, force: true });
});

test('power on through Redfish installs; a reimage sets the PXE override in libvirt, powers on, installs again', async () => {
  if (missing) return skipNote('Redfish in QEMU', missing);
  const artifacts = join(work, 'artifacts');
  mkdirSync(join(artifacts, '22.04'), { recursive: true });
  writeFileSync(join(artifacts, '22.04', 'vmlinuz'), readFileSync(guest.kernel));
  writeFileSync(join(artifacts, '22.04', 'initrd'), readFileSync(guest.initrd));
  // The BMC deadline stays inside curl's 30 s: a slow sushy or libvirtd is then racksmith's own
  // answer (a timeout naming the BMC call), not a request cut off without one.
  rs = await bed!.racksmith(work, artifacts, HTTP_PORT, { RACKSMITH_POWER_TIMEOUT_SECONDS: '20' });
  bed!.raSender();
  admin = (await rs.cli(['token', 'create', '--role', 'admin'])).trim();
  assert.is((await api('POST', '/clusters', { name: 'c22', ubuntuRelease: '22.04', kubernetesVersion: '1.28.4', containerRuntime: 'containerd', cni: 'flannel' })).status, 201);
  const created = await api('POST', '/machines', { mac: VM.mac, ip: VM.ip, hostname: VM.hostname, role: 'worker', cluster: 'c22', bmc: { driver: 'redfish', address: `http://${BMC_IP}:8000`, username: 'admin', password: PASSWORD, systemId: VM.uuid } });
  assert.is(created.status, 201, JSON.stringify(created.body));

  // Status through sushy → libvirt, with the facts: the domain's NIC is the machine's MAC.
  const st = await api('POST', `/machines/${VM.mac}/power`, { action: 'status' });
  assert.is(st.status, 200, JSON.stringify(st.body));
  assert.is(st.body.state, 'off');
  assert.is((await api('GET', `/machines/${VM.mac}`)).body.bmcFacts.macReported, true);

  // First install.
  const on = await api('POST', `/machines/${VM.mac}/power`, { action: 'on' });
  assert.is(on.status, 200, JSON.stringify(on.body));
  await until('the domain running', async () => (await domainState()) === 'running', 30_000);
  await until('the first install', () => /RACKSMITH-GUEST (DONE|FAIL)/.test(serial()), VM_TIMEOUT_MS);
  const first = serial();
  assert.not.match(first, /RACKSMITH-GUEST FAIL/, first.slice(-1500));
  const firstSeed = /RACKSMITH-GUEST SEED subiquity (\S+)/.exec(first)?.[1];
  assert.ok(firstSeed);
  await until('ready', async () => (await api('GET', `/machines/${VM.mac}`)).body.state === 'ready', 30_000);
  await until('the guest to power off', async () => (await domainState()) === 'shut off', 60_000);

  // An installed machine boots from its disk: set the domain so (through sushy, as a BIOS boot order would be).
  const hdd = await sushy!.get(`/redfish/v1/Systems/${VM.uuid}`);
  assert.is(hdd.status, 200);
  await bed!.tb.exec(bed!.sw, 'curl', ['-sf', '-u', `admin:${PASSWORD}`, '-X', 'PATCH', '-H', 'Content-Type: application/json', '-d', '{"Boot":{"BootSourceOverrideTarget":"Hdd"}}', `http://${BMC_IP}:8000/redfish/v1/Systems/${VM.uuid}`]);
  assert.is(await bootDev(), 'hd');
  writeFileSync(serialLog, '');

  // Reimage through Redfish: the override must make it netboot.
  const r = await api('POST', `/machines/${VM.mac}/reimage`, {});
  assert.is(r.status, 202, `${JSON.stringify(r.body)}\nlibvirtd: ${lv?.log().slice(-800)}\nsushy: ${sushy?.log().slice(-800)}`);
  assert.is(r.body.powerWas, 'off');
  await until('the domain running again', async () => (await domainState()) === 'running', 60_000);
  assert.is(await bootDev(), 'network', 'libvirt boots the domain from the network: the override was honoured');
  assert.is((await sushy!.get(`/redfish/v1/Systems/${VM.uuid}`)).json.Boot.BootSourceOverrideTarget, 'Pxe');
  await until('the second install', () => /RACKSMITH-GUEST (DONE|FAIL)/.test(serial()), VM_TIMEOUT_MS);
  const second = serial();
  assert.not.match(second, /RACKSMITH-GUEST FAIL/, second.slice(-1500));
  const secondSeed = /RACKSMITH-GUEST SEED subiquity (\S+)/.exec(second)?.[1];
  assert.ok(secondSeed);
  assert.is.not(secondSeed, firstSeed, 'the seed token was rotated');
  await until('ready again', async () => (await api('GET', `/machines/${VM.mac}`)).body.state === 'ready', 30_000);
  const events = (await api('GET', `/machines/${VM.mac}/events?limit=10000`)).body as any[];
  const states = events.filter((e) => e.type === 'state').map((e) => e.data.to);
  assert.equal(states.slice(states.lastIndexOf('reimaging')), ['reimaging', 'provisioning', 'installed', 'ready']);
  const steps = events.filter((e) => e.type === 'reimage');
  assert.equal(steps.map((e) => e.data.step), ['removed-from-cluster', 'next-boot-set', 'power-cycled']);
  assert.not.ok(rs.output().includes(PASSWORD));
});

test.run();
