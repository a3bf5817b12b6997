import { mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { silentLogger } from '../server/lib/log.js';
import { createRedfishDriver, type RedfishDriver } from '../server/power/redfish/driver.js';
import { createBmcGate } from '../server/power/scheduler.js';
import { domainXml, firstBootDevice, startLibvirtd, type Libvirtd } from './lib/libvirt.js';
import { Testbed } from './lib/netns.js';
import { startSushy, sushyMissing, type Sushy } from './lib/sushy.js';
import { requirements, skipNote } from './lib/tools.js';

/**
 * The boot override as libvirt records it, without starting a VM: sushy-emulator's libvirt
 * driver in front of a private libvirtd; racksmith's Redfish driver sets the one-time PXE
 * override and libvirt's domain definition says `<boot dev='network'/>`; back to disk, `hd`.
 * The QEMU suite (power-redfish.qemu) then boots it; this one runs in seconds.
 */
const test = suite('power: Redfish boot override recorded by libvirt (sushy-emulator libvirt driver)');
const PASSWORD = 'Redfish-Lv-Pw-8';
const UUID = 'c0ffee00-0000-4000-8000-000000000031';
const missing =
  requirements(['libvirtd', 'virtlogd', 'virsh', 'unshare', 'qemu-system-x86_64'], { netns: true }) ??
  sushyMissing() ??
  (requirements(['/usr/lib/python3/dist-packages/libvirt.py']) ? 'python3-libvirt is not installed' : null);
if (missing && process.env['CI'] === 'true') throw new Error(`under CI nothing may skip: ${missing}`);

let tb: Testbed | null = null;
let ns = '';
let lv: Libvirtd | null = null;
let sushy: Sushy | null = null;
let driver: RedfishDriver | null = null;
let work = '';

const bootDev = async (): Promise<string | null> => firstBootDevice(await lv!.virsh(['dumpxml', '--inactive', UUID]));

test.before(async () => {
  if (missing) return;
  work = mkdtempSync(join(tmpdir(), 'rs-rflv-'));
  writeFileSync(join(work, 'disk.img'), Buffer.alloc(0));
  truncateSync(join(work, 'disk.img'), 16 * 1024 * 1024);
  tb = new Testbed('lv');
  ns = await tb.addNamespace('n');
  const br = await tb.bridge(ns, 'b', []);
  await tb.ip(ns, ['addr', 'add', '10.77.0.2/24', 'dev', br]);
  lv = await startLibvirtd(ns);
  writeFileSync(join(work, 'd.xml'), domainXml({ name: 'rs-rflv', uuid: UUID, mac: '52:54:00:77:00:31', bridge: br, serialLog: join(work, 'serial.log'), disk: join(work, 'disk.img'), boot: 'hd' }));
  await lv.virsh(['define', join(work, 'd.xml')]);
  sushy = await startSushy({ users: { admin: PASSWORD }, libvirtUri: lv.uri, netns: ns, address: '10.77.0.2', port: 8000 });
  driver = createRedfishDriver({ deadlineMs: 20_000, retry: { maxAttempts: 2, baseDelayMs: 200, maxDelayMs: 1000 }, gate: createBmcGate(2), log: silentLogger() });
});

test.after(async () => {
  await driver?.close();
  await sushy?.stop();
  await lv?.stop();
  await tb?.destroy();
  if (work) rmSync(work, { recursive: true, force: true });
});

test('next boot PXE through Redfish is the domain booting from the network; back to disk is hd', async () => {
  if (missing) return skipNote('Redfish + libvirt', missing);
  const t = { driver: 'redfish' as const, address: 'http://10.77.0.2:8000', port: 0, username: 'admin', password: PASSWORD, cipherSuite: null, systemId: UUID };
  assert.is(await bootDev(), 'hd');
  const status = await tb!.exec(ns, process.execPath, ['--input-type=module', '-e', redfishCall('status', t)]);
  assert.match(status.stdout, /"state":"off"/);
  await tb!.exec(ns, process.execPath, ['--input-type=module', '-e', redfishCall('pxe', t)]);
  assert.is(await bootDev(), 'network', 'libvirt records the PXE override');
  assert.is((await sushy!.get(`/redfish/v1/Systems/${UUID}`)).json.Boot.BootSourceOverrideTarget, 'Pxe');
  const facts = await tb!.exec(ns, process.execPath, ['--input-type=module', '-e', redfishCall('facts', t)]);
  assert.match(facts.stdout, /"nics":\["52:54:00:77:00:31"\]/);
  await tb!.exec(ns, process.execPath, ['--input-type=module', '-e', redfishCall('disk', t)]);
  assert.is(await bootDev(), 'hd');
});

/** A one-shot racksmith driver call run inside the namespace (where the BMC address lives). */
function redfishCall(what: 'status' | 'pxe' | 'disk' | 'facts', t: Record<string, unknown>): string {
  const mod = (p: string): string => JSON.stringify(new URL(p, import.meta.url).pathname);
  return `
    const { createRedfishDriver } = await import(${mod('../server/power/redfish/driver.js')});
    const { createBmcGate } = await import(${mod('../server/power/scheduler.js')});
    const { silentLogger } = await import(${mod('../server/lib/log.js')});
    const d = createRedfishDriver({ deadlineMs: 20000, retry: { maxAttempts: 2, baseDelayMs: 200, maxDelayMs: 1000 }, gate: createBmcGate(1), log: silentLogger() });
    const t = ${JSON.stringify(t)};
    const r = ${what === 'status' ? 'await d.status(t)' : what === 'facts' ? 'await d.facts(t)' : `await d.setNextBoot(t, ${JSON.stringify(what)}, { efi: false, persistent: false })`};
    process.stdout.write(JSON.stringify(r.facts ?? r));
    await d.close();
  `;
}

test.run();
