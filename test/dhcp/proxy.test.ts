import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { test } from '../lib/suite.js';
import * as assert from 'uvu/assert';
import type { Mac } from '../../server/lib/mac.js';
import { PACKAGE_ROOT } from '../../server/lib/paths.js';
import { newDataDir, openDataDir, removeDataDir, serveInNamespace, udhcpcScript, waitFor, type ServeProcess } from '../lib/dhcp.js';
import { Testbed } from '../lib/netns.js';
import { requirements, skipNote } from '../lib/tools.js';

/**
 * ProxyDHCP beside a real site DHCP server (dnsmasq) on one bridge: a PXE client gets its
 * address from dnsmasq and its bootfile from racksmith (proxy offer, then the boot server on
 * 4011); a plain client is answered by dnsmasq alone.
 */
const missing = requirements(['dnsmasq', 'udhcpc', 'curl'], { netns: true });
const PXE_MAC = '52:54:00:77:00:31' as Mac;
const PLAIN_MAC = '52:54:00:77:00:32' as Mac;

if (missing) {
  skipNote('dhcp proxy', missing);
} else {
  const tb = new Testbed('d');
  const dataDir = newDataDir();
  let serve: ServeProcess | null = null;
  let sw = '', srv = '', oth = '', pxe = '', plain = '';

  test.before(async () => {
    sw = await tb.addNamespace('w');
    srv = await tb.addNamespace('s');
    oth = await tb.addNamespace('o');
    pxe = await tb.addNamespace('p');
    plain = await tb.addNamespace('u');
    await tb.veth(srv, 'sv', sw, 'ws', '10.77.0.1/24');
    await tb.veth(oth, 'ov', sw, 'wo', '10.77.0.2/24');
    await tb.veth(pxe, 'pv', sw, 'wp');
    await tb.veth(plain, 'uv', sw, 'wu');
    await tb.bridge(sw, 'br', [tb.name('ws'), tb.name('wo'), tb.name('wp'), tb.name('wu')]);
    await tb.ip(pxe, ['link', 'set', tb.name('pv'), 'address', PXE_MAC]);
    await tb.ip(plain, ['link', 'set', tb.name('uv'), 'address', PLAIN_MAC]);
    // No address yet, like firmware: a device route lets the client's UDP socket broadcast.
    await tb.ip(pxe, ['route', 'add', 'default', 'dev', tb.name('pv')]);
    tb.spawn(oth, 'dnsmasq', [
      '--no-daemon', '--conf-file=/dev/null', '--port=0', `--interface=${tb.name('ov')}`, '--bind-interfaces',
      '--dhcp-range=10.77.0.100,10.77.0.199,255.255.255.0,10m', `--dhcp-leasefile=${join(dataDir, 'dnsmasq.leases')}`,
      '--dhcp-authoritative', '--no-ping', '--log-dhcp',
    ]);
    serve = await serveInNamespace(srv, {
      RACKSMITH_DHCP_MODE: 'proxy',
      RACKSMITH_DHCP_INTERFACE: tb.name('sv'),
      RACKSMITH_ADVERTISE_ADDRESS: '10.77.0.1',
    }, { dataDir });
    // The PXE client broadcasts one DISCOVER: both servers must be listening by then. Polled, not
    // a fixed wait (dnsmasq or racksmith starved of CPU may still be binding).
    await waitFor('racksmith\'s DHCP serving', async () => (await serve?.health())?.services['dhcp']?.state === 'serving');
    await waitFor('dnsmasq on port 67', async () => (await tb.exec(oth, 'ss', ['-Hlun', 'sport = :67'])).stdout.trim() !== '');
  });

  test.after(async () => {
    await serve?.stop();
    await tb.destroy();
    removeDataDir(dataDir);
  });

  test('a UEFI PXE client: address from dnsmasq, bootfile from racksmith (offer and port 4011)', async () => {
    const { stdout } = await tb.exec(pxe, process.execPath, [join(PACKAGE_ROOT, 'dist', 'test', 'lib', 'pxe-client.js'), JSON.stringify({ iface: tb.name('pv'), mac: PXE_MAC, arch: 7 })], { timeoutMs: 30_000 });
    const r = JSON.parse(stdout) as Record<string, any>;
    assert.is(r['error'], undefined, stdout);
    const offers = r['offers'] as any[];
    const site = offers.find((o) => o.serverId === '10.77.0.2');
    const ours = offers.find((o) => o.serverId === '10.77.0.1');
    assert.ok(site && /^10\.77\.0\.1\d\d$/.test(site.yiaddr), JSON.stringify(offers));
    assert.ok(ours, 'no proxy offer');
    assert.is(ours.yiaddr, '0.0.0.0');
    assert.is(ours.vendorClass, 'PXEClient');
    assert.is(ours.file, 'ipxe.efi');
    assert.is(ours.siaddr, '10.77.0.1');
    assert.is(ours.hasOption43, false, 'UEFI clients get no option 43');
    assert.ok(ours.guidEchoed);
    assert.is(r['ack'].serverId, '10.77.0.2');
    assert.is(r['bootServer']?.from, '10.77.0.1:4011', JSON.stringify(r['bootServer']));
    assert.is(r['bootServer'].file, 'ipxe.efi');
    assert.is(r['bootServer'].type, 'ack');

    const inv = openDataDir(dataDir);
    try {
      const m = await inv.machines.get(PXE_MAC);
      assert.is(m?.state, 'discovered');
      assert.is(m?.firmware, 'efi');
      assert.is(m?.arch, 'x86_64');
      assert.is(m?.vendorClass, 'PXEClient:Arch:00007:UNDI:003000');
      assert.is(m?.lastStep, 'dhcp');
      const events = await inv.events.list({ mac: PXE_MAC });
      const offer = events.find((e) => e.type === 'dhcp.offer');
      const ack = events.find((e) => e.type === 'dhcp.ack');
      assert.is(offer?.data?.['mode'], 'proxy');
      assert.is(offer?.data?.['bootfile'], 'ipxe.efi');
      assert.is(ack?.data?.['mode'], 'boot-server');
      assert.is(ack?.data?.['bootfile'], 'ipxe.efi');
    } finally {
      await inv.close();
    }
  });

  test('a plain client is answered by dnsmasq only', async () => {
    const ud = udhcpcScript(dataDir);
    await tb.exec(plain, 'udhcpc', ['-i', tb.name('uv'), '-s', ud.script, '-n', '-q', '-t', '5', '-T', '2'], { timeoutMs: 30_000 });
    const log = readFileSync(ud.log, 'utf8');
    assert.match(log, /event=bound ip=10\.77\.0\.1\d\d .*serverid=10\.77\.0\.2/);
    const health = await waitFor('racksmith counted the plain client', async () => {
      const h = await serve?.health();
      const dropped = h?.services['dhcp']?.detail?.['dropped'] as Record<string, number> | undefined;
      return (dropped?.['ignored-not-pxe'] ?? 0) >= 1 ? h : null;
    });
    assert.is(health.services['dhcp']?.state, 'serving');
    const inv = openDataDir(dataDir);
    try {
      assert.is(await inv.machines.get(PLAIN_MAC), null);
    } finally {
      await inv.close();
    }
  });

  test.run();
}
