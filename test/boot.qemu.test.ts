import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { buildGuest, extraCpio, type Guest } from './lib/guest/build.js';
import { endBootProof, PxeBed, SERVER_IP, type Vm } from './lib/pxe.js';
import type { RacksmithProcess } from './lib/racksmith.js';
import { requirements, skipNote } from './lib/tools.js';

// racksmith-test: both engines — the whole boot chain writes the store at every step; short enough to run twice.

/**
 * The whole boot chain in QEMU (TCG) inside namespaces, racksmith alone serving DHCP, TFTP and
 * HTTP (dnsmasq only sends IPv6 router adverts):
 *
 *   BIOS VM (iPXE ROM) → DHCP (iPXE) → /boot.ipxe → d-i kernel+initrd (18.04 cluster)
 *   UEFI VM (OVMF, NIC ROM off) → firmware PXE → DHCP → TFTP ipxe.efi → iPXE → DHCP →
 *       /boot.ipxe → casper vmlinuz+initrd (22.04 cluster)
 *
 * The test's initramfs is served as each release's installer (RACKSMITH_ARTIFACTS_DIR) and plays
 * the installer and cloud-init: it reads the seed URL from /proc/cmdline, fetches and checks the
 * seed, posts /installed, phones home with a host key it generates, tries another machine's
 * token (which must be refused), and powers off. Then each VM boots again and must get the
 * boot-from-disk script, and an unknown MAC must end `discovered` without an installer.
 */
const test = suite('qemu: PXE → iPXE → installer → seed → installed → phone-home, BIOS and UEFI');

const HTTP_PORT = 8080;
const BASE = `http://${SERVER_IP}:${HTTP_PORT}`;
const BIOS = { mac: '52:54:00:77:00:11', ip: '10.77.0.11', hostname: 'cp1' };
const EFI = { mac: '52:54:00:77:00:12', ip: '10.77.0.12', hostname: 'w1' };
const DECOY = { mac: '52:54:00:77:00:13', ip: '10.77.0.13', hostname: 'w2' };
const STRANGER = '52:54:00:77:00:99';
// QEMU under TCG is CPU-heavy: the suite runner runs *.qemu suites one at a time, at most two VMs here.
const VM_TIMEOUT_MS = 240_000;

const missing = requirements(['qemu-system-x86_64', 'dnsmasq', 'cpio', 'gzip', 'apt-get', 'dpkg', 'dropbearkey', 'curl', 'flock', '/usr/share/ovmf/OVMF.fd', '/usr/lib/ipxe/ipxe.efi'], { netns: true });

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
  // 404 until the machine exists (a stranger before its first DHCP/iPXE request).
  return Array.isArray(r.body) ? r.body : [];
}
async function waitForEvent(mac: string, pred: (e: any) => boolean, timeoutMs: number, what: string): Promise<any> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const hit = (await events(mac)).find(pred);
    if (hit) return hit;
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error(`${mac}: no event "${what}" within ${timeoutMs} ms`);
}

test.before(async () => {
  if (missing) return;
  guest = await buildGuest();
  work = mkdtempSync(join(tmpdir(), 'racksmith-qemu-'));
  bed = await new PxeBed('bq').setup();
});

test.after(async () => {
  await endBootProof({ vms: vms, failed, work, rs, bed, evidence: 'boot-qemu' });
});

test('BIOS and UEFI machines install, phone home and end ready; next boot is from disk; strangers wait', async () => {
  if (missing) return skipNote('the QEMU boot chain', missing);
  const artifacts = join(work, 'artifacts');
  for (const r of ['18.04', '22.04']) mkdirSync(join(artifacts, r), { recursive: true });

  // racksmith alone serves DHCP (authoritative, reservations from the machines' ip), TFTP and HTTP.
  rs = await bed!.racksmith(work, artifacts, HTTP_PORT);
  admin = (await rs.cli(['token', 'create', '--role', 'admin'])).trim();
  // Only router adverts from elsewhere (iPXE would otherwise wait ~13 s for one on every DHCP).
  bed!.raSender();

  assert.is((await api('POST', '/clusters', { name: 'c18', ubuntuRelease: '18.04', kubernetesVersion: '1.18.6', containerRuntime: 'docker', cni: 'weave' })).status, 201);
  assert.is((await api('POST', '/clusters', { name: 'c22', ubuntuRelease: '22.04', kubernetesVersion: '1.28.4', containerRuntime: 'containerd', cni: 'flannel' })).status, 201);
  for (const [m, role, cluster] of [[BIOS, 'control-plane', 'c18'], [EFI, 'worker', 'c22'], [DECOY, 'worker', 'c22']] as const) {
    const r = await api('POST', '/machines', { mac: m.mac, hostname: m.hostname, role, cluster, ip: m.ip });
    assert.is(r.status, 201, JSON.stringify(r.body));
  }

  // The decoy "boots" once (from the server's own address) so that its token exists in a boot
  // script; the VMs will present it and must be refused.
  const decoyScript = await bed!.curl([`${BASE}/boot.ipxe?mac=52-54-00-77-00-13&platform=pcbios`]);
  const decoySeed = /s=(http:\/\/\S+?\/seed\/[A-Za-z0-9_-]+\/)/.exec(decoyScript)?.[1];
  assert.ok(decoySeed, decoyScript);
  const probe = await extraCpio({ 'probe-url': `${decoySeed}user-data` });
  const initrd = Buffer.concat([readFileSync(guest.initrd), probe]);
  const kernel = readFileSync(guest.kernel);
  writeFileSync(join(artifacts, '18.04', 'linux'), kernel);
  writeFileSync(join(artifacts, '18.04', 'initrd.gz'), initrd);
  writeFileSync(join(artifacts, '22.04', 'vmlinuz'), kernel);
  writeFileSync(join(artifacts, '22.04', 'initrd'), initrd);

  const bios = await bed!.vm({ name: 'bios', mac: BIOS.mac, firmware: 'bios', serialLog: join(work, 'bios.log') });
  const efi = await bed!.vm({ name: 'efi', mac: EFI.mac, firmware: 'efi', serialLog: join(work, 'efi.log') });
  vms.push(bios, efi);
  const [tb, te] = await Promise.all([bios.waitFor(/RACKSMITH-GUEST (DONE|FAIL)/, VM_TIMEOUT_MS), efi.waitFor(/RACKSMITH-GUEST (DONE|FAIL)/, VM_TIMEOUT_MS)]);
  process.stdout.write(`\n  BIOS done in ${tb.toFixed(1)} s, UEFI done in ${te.toFixed(1)} s\n`);
  for (const [vm, mode] of [[bios, 'debian-installer'], [efi, 'subiquity']] as const) {
    const log = vm.serial();
    assert.not.match(log, /RACKSMITH-GUEST FAIL/, log.slice(-2000));
    assert.match(log, new RegExp(`RACKSMITH-GUEST SEED ${mode} ${BASE}/seed/`));
    assert.match(log, /RACKSMITH-GUEST SEEDS ok instance=iid-/);
    assert.match(log, /RACKSMITH-GUEST INSTALLED .*"state":"installed"/);
    assert.match(log, /RACKSMITH-GUEST PHONED-HOME .*"state":"ready"/);
    assert.match(log, /RACKSMITH-GUEST PROBE 403/, 'another machine\'s token is refused');
  }
  assert.match(bios.serial(), /RACKSMITH-GUEST PRESEED ok/);
  await Promise.all([bios.exited, efi.exited]);

  for (const m of [BIOS, EFI]) {
    const machine = (await api('GET', `/machines/${m.mac}`)).body;
    assert.is(machine.state, 'ready', `${m.hostname}: ${JSON.stringify(machine)}`);
    assert.equal(machine.hostKeys, ['ssh-ed25519']);
    assert.is(machine.lastStep, 'ready');
    const types = new Set((await events(m.mac)).map((e) => e.type));
    for (const t of ['http.ipxe', 'http.artifact', 'http.seed', 'phone-home', 'state']) assert.ok(types.has(t), `${m.hostname}: event ${t}`);
    assert.ok(types.has('dhcp.ack'), `${m.hostname}: racksmith's DHCP acked it (${[...types].join(', ')})`);
    const states = (await events(m.mac)).filter((e) => e.type === 'state').map((e) => e.data?.to);
    assert.equal(states.slice(-3), ['provisioning', 'installed', 'ready'], `${m.hostname}: ${states.join(' → ')}`);
  }
  assert.ok((await events(EFI.mac)).some((e) => e.type === 'tftp.transfer'), 'the UEFI machine fetched iPXE over TFTP');
  assert.ok((await events(EFI.mac)).every((e) => e.type !== 'http.bootfile'), 'by firmware PXE, not the HTTP Boot fallback');
  const decoy = await events(DECOY.mac);
  assert.ok(decoy.filter((e) => e.type === 'http.seed.refused').length >= 2, 'both VMs were refused the decoy seed');

  // Second boot: the boot-from-disk script, not the installer again.
  const bios2 = await bed!.vm({ name: 'bios2', mac: BIOS.mac, firmware: 'bios', serialLog: join(work, 'bios2.log') });
  const efi2 = await bed!.vm({ name: 'efi2', mac: EFI.mac, firmware: 'efi', serialLog: join(work, 'efi2.log') });
  vms.push(bios2, efi2);
  for (const m of [BIOS, EFI]) {
    const e = await waitForEvent(m.mac, (x) => x.type === 'http.ipxe' && x.data?.script === 'local', VM_TIMEOUT_MS, 'local boot script');
    assert.match(e.message, /boot from local disk \(ready\)/);
    process.stdout.write(`  ${m.hostname}: boot-from-disk script after ${((Date.now() - bios2.started) / 1000).toFixed(1)} s\n`);
  }
  await Promise.all([bios2.stop(), efi2.stop()]);
  for (const m of [BIOS, EFI]) assert.is((await api('GET', `/machines/${m.mac}`)).body.state, 'ready');

  // A stranger: discovered, told to wait, asks again (the bounded loop runs in real iPXE), never installs.
  const stranger = await bed!.vm({ name: 'stranger', mac: STRANGER, firmware: 'bios', serialLog: join(work, 'stranger.log') });
  vms.push(stranger);
  await waitForEvent(STRANGER, (x) => x.type === 'http.ipxe' && x.data?.script === 'wait' && x.data?.attempt === 2, VM_TIMEOUT_MS, 'second wait');
  process.stdout.write(`  stranger: asked twice after ${((Date.now() - stranger.started) / 1000).toFixed(1)} s\n`);
  await stranger.stop();
  const s = (await api('GET', `/machines/${STRANGER}`)).body;
  assert.is(s.state, 'discovered');
  assert.is(s.firmware, 'bios');
  assert.ok((await events(STRANGER)).every((e) => e.type !== 'http.artifact' && e.data?.script !== 'install'), 'no installer for a stranger');
  failed = false;
});

test.run();
