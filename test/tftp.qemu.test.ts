import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { Testbed } from './lib/netns.js';
import { startRacksmith, type RacksmithProcess } from './lib/racksmith.js';
import { requirements, skipNote } from './lib/tools.js';

// racksmith-test: both engines — the TFTP bootfile step and GRUB configs come from the store; short enough to run twice.

/**
 * The real UEFI chain: OVMF's own PXE (the NIC's iPXE ROM disabled with `romfile=`) gets an
 * address and the bootfile name from a small dnsmasq DHCP-only responder of the test (racksmith's
 * DHCP is another component's), fetches the x64 iPXE binary from racksmith's TFTP — with EDK2's
 * tsize probe and error-8 abort first — and starts it. Asserted from racksmith's own evidence
 * (counters, the machine's events) and from the serial console showing iPXE's banner. The TFTP
 * root is the default one, Debian's /usr/lib/ipxe, whose ipxe.efi is a link into /boot.
 */

const OVMF = '/usr/share/ovmf/OVMF.fd';
const MAC = '52:54:00:77:00:41';
const ADMIN = 'tftp-qemu-admin-token-0123456789';
const test = suite('tftp qemu: OVMF PXE loads iPXE from racksmith');
const missing = requirements(['qemu-system-x86_64', 'dnsmasq', 'flock', 'curl', OVMF, '/usr/lib/ipxe/ipxe.efi'], { netns: true });

const tb = new Testbed('tq');
const dir = mkdtempSync(join(tmpdir(), 'racksmith-tftp-qemu-'));
let rs: RacksmithProcess | null = null;
let srv = '';

async function api(method: string, path: string, body?: unknown): Promise<any> {
  const args = ['-sS', '-m', '20', '-X', method, '-H', `authorization: Bearer ${ADMIN}`];
  if (body !== undefined) args.push('-H', 'content-type: application/json', '--data-binary', JSON.stringify(body));
  const { stdout } = await tb.exec(srv, 'curl', [...args, `${rs?.url}${path}`]);
  return JSON.parse(stdout);
}

async function until<T>(what: string, ms: number, fn: () => Promise<T | null | false> | T | null | false): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms / 1000} s waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

test.after(async () => {
  try {
    if (rs) {
      await rs.stop();
      if (process.env['TFTP_TEST_LOG']) (await import('node:fs')).writeFileSync(process.env['TFTP_TEST_LOG'], rs.output());
      rs.cleanup();
    }
  } finally {
    await tb.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
});

if (missing) {
  skipNote('tftp qemu', missing);
} else {
  test('UEFI PXE: tsize probe, ipxe.efi over TFTP, iPXE starts', async () => {
    srv = await tb.addNamespace('s');
    const tap = tb.name('tap');
    await tb.ip(srv, ['tuntap', 'add', 'dev', tap, 'mode', 'tap']);
    await tb.ip(srv, ['link', 'set', tap, 'up']);
    const br = await tb.bridge(srv, 'br', [tap]);
    await tb.ip(srv, ['addr', 'add', '10.77.0.1/24', 'dev', br]);

    rs = await startRacksmith({
      netns: srv,
      env: { RACKSMITH_TFTP_PORT: '69', RACKSMITH_TFTP_ADDRESS: '10.77.0.1', RACKSMITH_ADMIN_TOKEN: ADMIN, RACKSMITH_ADVERTISE_ADDRESS: '10.77.0.1' },
    });
    await api('POST', '/api/v1/clusters', { name: 'lab', ubuntuRelease: '22.04', kubernetesVersion: '1.30.0', containerRuntime: 'containerd', cni: 'flannel' });
    await api('POST', '/api/v1/machines', { mac: MAC, hostname: 'uefi1', role: 'worker', cluster: 'lab' });

    // The test's own DHCP: addresses and the bootfile only; DNS and dnsmasq's TFTP stay off.
    tb.spawn(srv, 'dnsmasq', [
      '--no-daemon', '--port=0', '--conf-file=/dev/null', '--no-resolv', '--no-hosts', '--user=root',
      `--interface=${br}`, '--bind-interfaces', '--dhcp-range=10.77.0.100,10.77.0.150,255.255.255.0,1h',
      '--dhcp-boot=ipxe.efi,,10.77.0.1', `--dhcp-leasefile=${join(dir, 'leases')}`, `--pid-file=${join(dir, 'dnsmasq.pid')}`,
    ]);

    const serial = join(dir, 'serial.log');
    // QEMU under TCG is CPU-heavy: the suite runner runs *.qemu suites one at a time; a hard limit here.
    tb.spawn(srv, 'timeout', [
      '300', 'qemu-system-x86_64',
      '-machine', 'pc', '-accel', 'tcg', '-m', '256', '-smp', '1', '-display', 'none', '-monitor', 'none',
      '-serial', `file:${serial}`, '-bios', OVMF,
      '-netdev', `tap,id=n0,ifname=${tap},script=no,downscript=no`,
      '-device', `virtio-net-pci,netdev=n0,mac=${MAC},romfile=`,
      '-boot', 'order=n', '-no-reboot',
    ]);

    const banner = await until('iPXE banner on the serial console', 400_000, () => {
      const text = existsSync(serial) ? readFileSync(serial, 'latin1') : '';
      return /iPXE initialising devices|Open Source Network Boot Firmware/.exec(text)?.[0] ?? null;
    });
    assert.ok(banner);

    const health = await api('GET', '/healthz');
    const c = health.services.tftp.detail.counters;
    assert.ok(c.probes >= 1, `EDK2's tsize probe was seen and ended quietly (probes ${c.probes})`);
    assert.ok(c.transfersCompleted >= 1, 'the download completed');

    const events = await until('the machine event', 20_000, async () => {
      const list = (await api('GET', `/api/v1/machines/${MAC}/events`)) as any[];
      return list.find((e) => e.type === 'tftp.transfer' && e.data?.file === 'ipxe.efi' && e.data?.outcome === 'complete') ?? null;
    });
    assert.is(events.data.bytes, readFileSync('/usr/lib/ipxe/ipxe.efi').length);
    assert.ok(events.data.blksize >= 512);
    const log = rs.output();
    assert.not.match(log, /"level":"(warn|error)"[^\n]*size probe/);
  });
}

test.run();
