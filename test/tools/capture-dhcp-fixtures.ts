/**
 * Captures the DHCP fixtures under test/fixtures/dhcp from real clients on this machine:
 * dhclient, udhcpc, perfdhcp (as a relay), QEMU's iPXE ROM (SeaBIOS) and OVMF's own PXE (NIC ROM
 * disabled). racksmith's DHCP service answers in authoritative mode so that each client also
 * sends its REQUEST. Run as root, under the heavy lock (QEMU):
 *   node dist/test/tools/capture-dhcp-fixtures.js
 * It writes <name>.hex only; the golden test (UPDATE_GOLDEN=1) writes the parsed <name>.txt.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { clientMac, decodeDhcp } from '../../server/dhcp/packet.js';
import { getMessageType } from '../../server/dhcp/options.js';
import { PACKAGE_ROOT } from '../../server/lib/paths.js';
import { dhclientScript, newDataDir, udhcpcScript, waitFor } from '../lib/dhcp.js';
import { Testbed } from '../lib/netns.js';

const run = promisify(execFile);
const FIXTURES = join(PACKAGE_ROOT, 'test', 'fixtures', 'dhcp');
const CLIENTS = {
  dhclient: '52:54:00:77:00:11',
  udhcpc: '52:54:00:77:00:12',
  'ipxe-bios': '52:54:00:77:00:21',
  'ovmf-pxe': '52:54:00:77:00:22',
} as const;

function toHex(b: Buffer): string {
  return (b.toString('hex').match(/.{1,64}/g) ?? []).join('\n') + '\n';
}

const tb = new Testbed('dc');
const work = mkdtempSync(join(tmpdir(), 'racksmith-capture-'));
try {
  const srv = await tb.addNamespace('s');
  const cli = await tb.addNamespace('c');
  await tb.veth(srv, 'sa', cli, 'ca');
  await tb.veth(srv, 'sb', cli, 'cb');
  await tb.veth(srv, 'sp', cli, 'cp', undefined, '10.77.0.2/24');
  const br = await tb.bridge(srv, 'br', [tb.name('sa'), tb.name('sb'), tb.name('sp')]);
  await tb.ip(srv, ['addr', 'add', '10.77.0.1/24', 'dev', br]);
  await tb.ip(cli, ['link', 'set', tb.name('ca'), 'address', CLIENTS.dhclient]);
  await tb.ip(cli, ['link', 'set', tb.name('cb'), 'address', CLIENTS.udhcpc]);
  const taps: string[] = [];
  for (const t of ['t1', 't2']) {
    await tb.ip(srv, ['tuntap', 'add', 'dev', tb.name(t), 'mode', 'tap']);
    await tb.ip(srv, ['link', 'set', tb.name(t), 'master', br, 'up']);
    taps.push(tb.name(t));
  }

  const tapDir = join(work, 'tap');
  await run('mkdir', ['-p', tapDir]);
  const server = tb.spawn(srv, process.execPath, [join(PACKAGE_ROOT, 'dist', 'test', 'tools', 'dhcp-tap-server.js')], {
    env: {
      ...process.env,
      TAP_DIR: tapDir,
      RACKSMITH_DATA_DIR: newDataDir(),
      RACKSMITH_DHCP_MODE: 'authoritative',
      RACKSMITH_DHCP_INTERFACE: br,
      RACKSMITH_DHCP_RANGE: '10.77.0.100-10.77.0.199',
      RACKSMITH_DHCP_ROUTER: '10.77.0.1',
      RACKSMITH_DHCP_DNS: '10.77.0.1',
      RACKSMITH_ADVERTISE_ADDRESS: '10.77.0.1',
      RACKSMITH_LOG_LEVEL: 'warn',
    },
  });
  let serverOut = '';
  server.stdout?.on('data', (d: Buffer) => (serverOut += d.toString()));
  server.stderr?.on('data', (d: Buffer) => (serverOut += d.toString()));
  await waitFor('the tap server', () => serverOut.includes('TAP READY'), 20_000);

  const dh = dhclientScript(work);
  await tb.exec(cli, 'dhclient', ['-1', '-v', '-sf', dh.script, '-lf', join(work, 'dhclient.leases'), '-pf', join(work, 'dhclient.pid'), tb.name('ca')], { timeoutMs: 30_000 });
  await tb.exec(cli, 'dhclient', ['-x', '-sf', dh.script, '-pf', join(work, 'dhclient.pid'), tb.name('ca')], { timeoutMs: 10_000 }).catch(() => undefined);
  const ud = udhcpcScript(work);
  await tb.exec(cli, 'udhcpc', ['-i', tb.name('cb'), '-s', ud.script, '-n', '-q', '-t', '5', '-T', '2'], { timeoutMs: 30_000 });
  await tb.exec(cli, 'perfdhcp', ['-4', '-l', '10.77.0.2', '-r', '1', '-n', '1', '-R', '1', '10.77.0.1'], { timeoutMs: 30_000 }).catch(() => undefined);

  const vms: [keyof typeof CLIENTS, string[]][] = [
    ['ipxe-bios', []],
    ['ovmf-pxe', ['-bios', '/usr/share/ovmf/OVMF.fd']],
  ];
  for (const [i, [name, extra]] of vms.entries()) {
    const uefi = name === 'ovmf-pxe';
    const vm = tb.spawn(srv, 'qemu-system-x86_64', [
      '-machine', 'pc', '-accel', 'tcg', '-m', '256', '-smp', '1', '-nographic', '-serial', `file:${join(work, name + '.log')}`,
      '-monitor', 'none', '-nodefaults', ...extra,
      '-netdev', `tap,id=n0,ifname=${taps[i]},script=no,downscript=no`,
      '-device', `virtio-net-pci,netdev=n0,mac=${CLIENTS[name]}${uefi ? ',romfile=' : ''}`,
      '-boot', 'order=n', '-no-reboot',
    ]);
    const wantRequest = (): boolean =>
      readdirSync(tapDir).some((f) => {
        const p = decodeDhcp(readFileSync(join(tapDir, f)));
        return clientMac(p) === CLIENTS[name] && getMessageType(p.options) === 'request';
      });
    await waitFor(`${name}'s DHCP REQUEST`, wantRequest, 120_000);
    vm.kill('SIGKILL');
  }

  // The first DISCOVER and REQUEST of each client; perfdhcp's by its relay source address.
  const seen = new Map<string, Buffer>();
  for (const f of readdirSync(tapDir).sort()) {
    const bytes = readFileSync(join(tapDir, f));
    const p = decodeDhcp(bytes);
    const type = getMessageType(p.options);
    if (type !== 'discover' && type !== 'request') continue;
    const mac = clientMac(p);
    const who = p.giaddr === '10.77.0.2' ? 'perfdhcp' : Object.entries(CLIENTS).find(([, m]) => m === mac)?.[0];
    if (!who) continue;
    const key = `${who}-${type}`;
    if (!seen.has(key)) seen.set(key, bytes);
  }
  for (const [key, bytes] of seen) writeFileSync(join(FIXTURES, `${key}.hex`), toHex(bytes));
  process.stdout.write(`captured: ${[...seen.keys()].sort().join(', ')}\n`);
  server.kill('SIGTERM');
} finally {
  await tb.destroy();
}
