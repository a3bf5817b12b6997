import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from '../lib/suite.js';
import * as assert from 'uvu/assert';
import type { Mac } from '../../server/lib/mac.js';
import { dhclientEvents, dhclientScript, newDataDir, openDataDir, removeDataDir, serveInNamespace, udhcpcScript, waitFor, type ServeProcess } from '../lib/dhcp.js';
import { Testbed } from '../lib/netns.js';
import { requirements, skipNote } from '../lib/tools.js';

/**
 * Authoritative mode against real clients: dhclient (known MAC with a reservation) and udhcpc
 * (unknown MAC, pool address) in a client namespace, racksmith serve in the server namespace.
 */
const missing = requirements(['dhclient', 'udhcpc', 'ip'], { netns: true });
const KNOWN = '52:54:00:77:00:0a' as Mac;
const UNKNOWN = '52:54:00:77:00:0b';
const PXE_ROM = '52:54:00:77:00:0c' as Mac;

if (missing) {
  skipNote('dhcp clients', missing);
} else {
  const tb = new Testbed('d');
  let serve: ServeProcess | null = null;
  const dataDir = newDataDir();
  let srv = '';
  let cli = '';

  test.before(async () => {
    srv = await tb.addNamespace('s');
    cli = await tb.addNamespace('c');
    await tb.veth(srv, 'sa', cli, 'ca');
    await tb.veth(srv, 'sb', cli, 'cb');
    await tb.veth(srv, 'sc', cli, 'cc');
    const br = await tb.bridge(srv, 'br', [tb.name('sa'), tb.name('sb'), tb.name('sc')]);
    await tb.ip(cli, ['link', 'set', tb.name('cc'), 'address', PXE_ROM]);
    await tb.ip(srv, ['addr', 'add', '10.77.0.1/24', 'dev', br]);
    await tb.ip(cli, ['link', 'set', tb.name('ca'), 'address', KNOWN]);
    await tb.ip(cli, ['link', 'set', tb.name('cb'), 'address', UNKNOWN]);
    // A known machine with a reservation, written before serve starts (the API is another test's).
    const inv = openDataDir(dataDir);
    await inv.clusters.create({ name: 'c1', ubuntuRelease: '22.04', kubernetesVersion: '1.30.0', containerRuntime: 'containerd', cni: 'flannel' });
    await inv.machines.create({ mac: KNOWN, hostname: 'node-a', role: 'worker', cluster: 'c1', ip: '10.77.0.50' });
    await inv.close();
    serve = await serveInNamespace(srv, {
      RACKSMITH_DHCP_MODE: 'authoritative',
      RACKSMITH_DHCP_INTERFACE: br,
      RACKSMITH_DHCP_RANGE: '10.77.0.100-10.77.0.199',
      RACKSMITH_DHCP_ROUTER: '10.77.0.254',
      RACKSMITH_DHCP_DNS: '10.77.0.53,10.77.0.54',
      RACKSMITH_DHCP_LEASE_SECONDS: '600',
      RACKSMITH_ADVERTISE_ADDRESS: '10.77.0.1',
      RACKSMITH_HTTP_PORT: '8080',
    }, { dataDir });
  });

  test.after(async () => {
    await serve?.stop();
    await tb.destroy();
    removeDataDir(dataDir);
  });

  const dhclient = async (args: string[], script: string): Promise<void> => {
    await tb.exec(cli, 'dhclient', ['-1', '-v', '-sf', script, '-lf', join(dataDir, 'dhclient.leases'), '-pf', join(dataDir, 'dhclient.pid'), ...args, tb.name('ca')], { timeoutMs: 40_000 });
  };

  test('dhclient, known MAC: its reserved address with mask, router, DNS and lease time', async () => {
    const dh = dhclientScript(dataDir);
    await dhclient([], dh.script);
    const bound = dhclientEvents(readFileSync(dh.log, 'utf8')).find((e) => e['reason'] === 'BOUND');
    assert.ok(bound, readFileSync(dh.log, 'utf8'));
    assert.is(bound['new_ip_address'], '10.77.0.50');
    assert.is(bound['new_subnet_mask'], '255.255.255.0');
    assert.is(bound['new_routers'], '10.77.0.254');
    assert.is(bound['new_domain_name_servers'], '10.77.0.53 10.77.0.54');
    assert.is(bound['new_dhcp_lease_time'], '600');
    assert.is(bound['new_dhcp_server_identifier'], '10.77.0.1');
    const inv = openDataDir(dataDir);
    try {
      assert.is((await inv.leases.byMac(KNOWN))?.ip, '10.77.0.50');
      const types = (await inv.events.list({ mac: KNOWN })).map((e) => e.type);
      assert.ok(types.includes('dhcp.ack'), types.join(','));
    } finally {
      await inv.close();
    }
  });

  test('dhclient again (INIT-REBOOT from its lease file): the same address', async () => {
    const dh = dhclientScript(dataDir);
    await tb.exec(cli, 'dhclient', ['-x', '-pf', join(dataDir, 'dhclient.pid')]).catch(() => undefined);
    await dhclient([], dh.script);
    const events = dhclientEvents(readFileSync(dh.log, 'utf8'));
    const last = events.filter((e) => ['BOUND', 'REBOOT'].includes(e['reason'] ?? '')).pop();
    assert.is(last?.['new_ip_address'], '10.77.0.50');
  });

  test('dhclient -r: the lease is released in the store', async () => {
    const dh = dhclientScript(dataDir);
    await tb.exec(cli, 'dhclient', ['-r', '-v', '-sf', dh.script, '-lf', join(dataDir, 'dhclient.leases'), '-pf', join(dataDir, 'dhclient.pid'), tb.name('ca')], { timeoutMs: 20_000 });
    const inv = openDataDir(dataDir);
    try {
      await waitFor('the released lease', async () => (await inv.leases.byMac(KNOWN))?.state === 'released', 10_000);
    } finally {
      await inv.close();
    }
  });

  test('udhcpc, unknown MAC: a pool address; SIGUSR1 renewal keeps it; SIGUSR2 releases it', async () => {
    const ud = udhcpcScript(dataDir);
    const child = tb.spawn(cli, 'udhcpc', ['-f', '-i', tb.name('cb'), '-s', ud.script, '-t', '5', '-T', '2', '-A', '2']);
    try {
      const bound = await waitFor('udhcpc bound', () => /event=bound ip=(\S+) subnet=(\S+) router=(\S+) dns=(.*) lease=(\d+)/.exec(safeRead(ud.log)), 30_000);
      const ip = bound[1] as string;
      const n = Number(ip.split('.')[3]);
      assert.ok(ip.startsWith('10.77.0.') && n >= 100 && n <= 199, ip);
      assert.is(bound[2], '255.255.255.0');
      assert.is(bound[3], '10.77.0.254');
      assert.is(bound[4]?.trim(), '10.77.0.53 10.77.0.54');
      assert.is(bound[5], '600');
      const inv = openDataDir(dataDir);
      try {
        const written = await inv.leases.byMac(UNKNOWN as Mac);
        assert.is(written?.ip, ip);
        // RENEWING: a unicast REQUEST with ciaddr; the ACK keeps the address. Seconds after the
        // binding, the lease is reused (RACKSMITH_DHCP_CACHE_THRESHOLD, 0.25 by default): the
        // ACK gives what is left of it, and the store's row is not written again.
        child.kill('SIGUSR1');
        const renew = await waitFor('udhcpc renew', () => /event=renew ip=(\S+) .* lease=(\d+)/.exec(safeRead(ud.log)), 20_000);
        assert.is(renew[1], ip);
        const left = Number(renew[2]);
        assert.ok(left > 450 && left < 600, `lease time on the reused ACK: ${left}`);
        assert.equal(await inv.leases.byMac(UNKNOWN as Mac), written, 'the row as it was bound');
        child.kill('SIGUSR2');
        await waitFor('the released pool lease', async () => (await inv.leases.byMac(UNKNOWN as Mac))?.state === 'released', 10_000);
        // Not a PXE client: no machine is recorded for it.
        assert.is(await inv.machines.get(UNKNOWN as Mac), null);
      } finally {
        await inv.close();
      }
    } finally {
      child.kill('SIGKILL');
    }
  });

  test('a REQUEST for a foreign address gets a NAK (and the client then gets a good one)', async () => {
    const dh = dhclientScript(dataDir);
    const leases = join(dataDir, 'foreign.leases');
    // dhclient believes it holds 10.99.0.5 from us: INIT-REBOOT asks for it, racksmith NAKs.
    const { writeFileSync } = await import('node:fs');
    writeFileSync(
      leases,
      `lease {\n  interface "${tb.name('ca')}";\n  fixed-address 10.99.0.5;\n  option subnet-mask 255.255.255.0;\n  option dhcp-server-identifier 10.77.0.1;\n  renew 4 2099/01/01 00:00:00;\n  rebind 4 2099/01/01 00:00:00;\n  expire 4 2099/01/01 00:00:00;\n}\n`,
    );
    await tb.exec(cli, 'dhclient', ['-1', '-v', '-sf', dh.script, '-lf', leases, '-pf', join(dataDir, 'dhclient2.pid'), tb.name('ca')], { timeoutMs: 40_000 });
    await tb.exec(cli, 'dhclient', ['-x', '-pf', join(dataDir, 'dhclient2.pid')]).catch(() => undefined);
    const inv = openDataDir(dataDir);
    try {
      const naks = (await inv.events.list({ mac: KNOWN })).filter((e) => e.type === 'dhcp.nak');
      assert.ok(naks.some((e) => e.data?.['reason'] === 'nak-wrong-network'), JSON.stringify(naks));
      const bound = dhclientEvents(readFileSync(dh.log, 'utf8')).filter((e) => e['reason'] === 'BOUND').pop();
      assert.is(bound?.['new_ip_address'], '10.77.0.50');
    } finally {
      await inv.close();
    }
  });

  test('a BIOS PXE ROM that fetched undionly.kpxe: its next DISCOVER (same ROM options) is the chained iPXE', async () => {
    // udhcpc posing as a vendor PXE ROM: vendor class PXEClient, arch 0, no iPXE user class.
    const rom = async (): Promise<void> => {
      const ud = udhcpcScript(dataDir);
      await tb.exec(cli, 'udhcpc', ['-i', tb.name('cc'), '-s', ud.script, '-n', '-q', '-t', '3', '-T', '1', '-V', 'PXEClient:Arch:00000:UNDI:002001', '-x', '0x5d:0000'], { timeoutMs: 30_000 });
    };
    const lastAck = async (): Promise<Record<string, unknown> | null | undefined> => {
      const inv = openDataDir(dataDir);
      try {
        return (await inv.events.list({ mac: PXE_ROM })).filter((e) => e.type === 'dhcp.ack').pop()?.data;
      } finally {
        await inv.close();
      }
    };
    await rom();
    assert.is((await lastAck())?.['bootfile'], 'undionly.kpxe');
    // The TFTP service records the download as the machine's last step.
    const inv = openDataDir(dataDir);
    await inv.machines.setLastStep(PXE_ROM, 'tftp');
    await inv.close();
    await new Promise((r) => setTimeout(r, 1100));
    await rom();
    const chained = await lastAck();
    assert.is(chained?.['bootfile'], 'http://10.77.0.1:8080/boot.ipxe');
    assert.is(chained?.['rule'], 'ipxe (chainloaded, by state)');
    // Without a TFTP download in between, the ROM is a ROM again.
    await new Promise((r) => setTimeout(r, 1100));
    await rom();
    assert.is((await lastAck())?.['bootfile'], 'undionly.kpxe');
  });

  test.run();
}

function safeRead(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}
