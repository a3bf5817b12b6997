import { join } from 'node:path';
import { test } from '../lib/suite.js';
import * as assert from 'uvu/assert';
import type { InventoryEvent } from '../../server/inventory/model.js';
import type { Mac } from '../../server/lib/mac.js';
import { newDataDir, openDataDir, removeDataDir, serveInNamespace, waitFor, type ServeProcess } from '../lib/dhcp.js';
import { Testbed } from '../lib/netns.js';
import { requirements, skipNote } from '../lib/tools.js';

// racksmith-test: both engines — a real PXE ROM becomes a discovered machine with its DHCP steps; short enough to run twice.

/**
 * Real firmware, asserted from racksmith's own events: a BIOS VM's iPXE ROM is sent to
 * boot.ipxe (authoritative mode); a UEFI VM with the NIC ROM disabled (OVMF's own PXE) beside
 * dnsmasq is sent to the x64 EFI binary by the proxy (offer, then the boot server on 4011).
 * Two VMs, one after the other (TCG is CPU-bound); each stops as soon as the evidence is in.
 */
const OVMF = '/usr/share/ovmf/OVMF.fd';
const missing = requirements(['qemu-system-x86_64', OVMF, 'dnsmasq', 'curl'], { netns: true });
const BIOS_MAC = '52:54:00:77:00:41' as Mac;
const UEFI_MAC = '52:54:00:77:00:42' as Mac;

if (missing) {
  skipNote('dhcp with QEMU firmware', missing);
} else {
  const tb = new Testbed('dq');
  let srv = '', oth = '', br = '';

  test.before(async () => {
    srv = await tb.addNamespace('s');
    oth = await tb.addNamespace('o');
    await tb.veth(oth, 'ov', srv, 'so', '10.77.0.2/24');
    br = await tb.bridge(srv, 'br', [tb.name('so')]);
    await tb.ip(srv, ['addr', 'add', '10.77.0.1/24', 'dev', br]);
    for (const t of ['t1', 't2']) {
      await tb.ip(srv, ['tuntap', 'add', 'dev', tb.name(t), 'mode', 'tap']);
      await tb.ip(srv, ['link', 'set', tb.name(t), 'master', br, 'up']);
    }
  });
  test.after(() => tb.destroy());

  const vm = (tap: string, mac: string, uefi: boolean, log: string): ReturnType<Testbed['spawn']> =>
    tb.spawn(srv, 'qemu-system-x86_64', [
      '-machine', 'pc', '-accel', 'tcg', '-m', '256', '-smp', '1', '-nographic', '-monitor', 'none', '-nodefaults',
      '-serial', `file:${log}`, ...(uefi ? ['-bios', OVMF] : []),
      '-netdev', `tap,id=n0,ifname=${tap},script=no,downscript=no`,
      '-device', `virtio-net-pci,netdev=n0,mac=${mac}${uefi ? ',romfile=' : ''}`,
      '-boot', 'order=n', '-no-reboot',
    ]);

  const eventsOf = async (dataDir: string, mac: Mac): Promise<InventoryEvent[]> => {
    const inv = openDataDir(dataDir);
    try {
      return await inv.events.list({ mac });
    } finally {
      await inv.close();
    }
  };

  test('BIOS VM, iPXE ROM, authoritative: sent to boot.ipxe', async () => {
    const dataDir = newDataDir();
    let serve: ServeProcess | null = null;
    try {
      serve = await serveInNamespace(srv, {
        RACKSMITH_DHCP_MODE: 'authoritative',
        RACKSMITH_DHCP_INTERFACE: br,
        RACKSMITH_DHCP_RANGE: '10.77.0.100-10.77.0.199',
        RACKSMITH_ADVERTISE_ADDRESS: '10.77.0.1',
        RACKSMITH_HTTP_PORT: '8080',
      }, { dataDir });
      const q = vm(tb.name('t1'), BIOS_MAC, false, join(dataDir, 'bios.log'));
      try {
        const ack = await waitFor('the BIOS VM\'s DHCPACK event', async () => (await eventsOf(dataDir, BIOS_MAC)).find((e) => e.type === 'dhcp.ack'), 90_000);
        assert.is(ack.data?.['bootfile'], 'http://10.77.0.1:8080/boot.ipxe');
        assert.is(ack.data?.['ipxe'], true);
        assert.ok(/^10\.77\.0\.1\d\d$/.test(String(ack.data?.['ip'])));
        const types = (await eventsOf(dataDir, BIOS_MAC)).map((e) => e.type);
        assert.equal(types.slice(0, 5), ['state', 'dhcp.discover', 'dhcp.offer', 'dhcp.request', 'dhcp.ack']);
        const inv = openDataDir(dataDir);
        try {
          const m = await inv.machines.get(BIOS_MAC);
          assert.is(m?.state, 'discovered');
          assert.is(m?.firmware, 'bios');
        } finally {
          await inv.close();
        }
      } finally {
        q.kill('SIGKILL');
      }
    } finally {
      await serve?.stop();
      removeDataDir(dataDir);
    }
  });

  test('UEFI VM, OVMF PXE (NIC ROM disabled), proxy beside dnsmasq: sent to ipxe.efi', async () => {
    const dataDir = newDataDir();
    let serve: ServeProcess | null = null;
    try {
      tb.spawn(oth, 'dnsmasq', [
        '--no-daemon', '--conf-file=/dev/null', '--port=0', `--interface=${tb.name('ov')}`, '--bind-interfaces', '--no-ping',
        '--dhcp-range=10.77.0.100,10.77.0.199,255.255.255.0,10m', `--dhcp-leasefile=${join(dataDir, 'dnsmasq.leases')}`, '--dhcp-authoritative',
      ]);
      serve = await serveInNamespace(srv, {
        RACKSMITH_DHCP_MODE: 'proxy',
        RACKSMITH_DHCP_INTERFACE: br,
        RACKSMITH_ADVERTISE_ADDRESS: '10.77.0.1',
      }, { dataDir });
      const q = vm(tb.name('t2'), UEFI_MAC, true, join(dataDir, 'uefi.log'));
      try {
        const bootServer = await waitFor(
          'the UEFI VM asking the boot server on 4011',
          async () => (await eventsOf(dataDir, UEFI_MAC)).find((e) => e.type === 'dhcp.ack' && e.data?.['mode'] === 'boot-server'),
          100_000,
        );
        assert.is(bootServer.data?.['bootfile'], 'ipxe.efi');
        const events = await eventsOf(dataDir, UEFI_MAC);
        const offer = events.find((e) => e.type === 'dhcp.offer');
        assert.is(offer?.data?.['mode'], 'proxy');
        assert.is(offer?.data?.['bootfile'], 'ipxe.efi');
        assert.is(offer?.data?.['ip'], null, 'a proxy offer carries no address');
        const inv = openDataDir(dataDir);
        try {
          const m = await inv.machines.get(UEFI_MAC);
          assert.is(m?.firmware, 'efi');
          assert.is(m?.arch, 'x86_64');
        } finally {
          await inv.close();
        }
      } finally {
        q.kill('SIGKILL');
      }
    } finally {
      await serve?.stop();
      removeDataDir(dataDir);
    }
  });

  test.run();
}
