import { createSocket } from 'node:dgram';
import { test } from '../lib/suite.js';
import * as assert from 'uvu/assert';
import { newDataDir, openDataDir, removeDataDir, serveInNamespace, type ServeProcess } from '../lib/dhcp.js';
import type { Mac } from '../../server/lib/mac.js';
import { ascii, dhcpFixtures, rawRequest } from '../lib/dhcp-fixtures.js';
import { prng } from '../lib/dhcp-fuzz.js';
import { Testbed } from '../lib/netns.js';
import { requirements, skipNote } from '../lib/tools.js';

/**
 * perfdhcp acting as a relay (giaddr = its address, port 67 both ways) completes DORA; then a
 * flood of garbage datagrams is dropped and counted, and the server still serves.
 */
const missing = requirements(['perfdhcp', 'curl'], { netns: true });

export interface PerfdhcpStats {
  readonly sent: Record<string, number>;
  readonly received: Record<string, number>;
  readonly drops: Record<string, number>;
}

/** Parses perfdhcp's summary ("***Statistics for: DISCOVER-OFFER***" blocks). */
export function parsePerfdhcp(out: string): PerfdhcpStats {
  const stats: PerfdhcpStats = { sent: {}, received: {}, drops: {} };
  for (const block of out.split('***Statistics for: ').slice(1)) {
    const name = block.slice(0, block.indexOf('*')).trim();
    const num = (label: string): number => Number(new RegExp(`${label}:\\s*(\\d+)`).exec(block)?.[1] ?? NaN);
    stats.sent[name] = num('sent packets');
    stats.received[name] = num('received packets');
    stats.drops[name] = num('drops');
  }
  return stats;
}

if (missing) {
  skipNote('dhcp relay and flood', missing);
} else {
  const tb = new Testbed('d');
  const dataDir = newDataDir();
  let serve: ServeProcess | null = null;
  let srv = '', cli = '';

  test.before(async () => {
    srv = await tb.addNamespace('s');
    cli = await tb.addNamespace('c');
    await tb.veth(srv, 'sv', cli, 'cv', '10.77.0.1/24', '10.77.0.2/24');
    serve = await serveInNamespace(srv, {
      RACKSMITH_DHCP_MODE: 'authoritative',
      RACKSMITH_DHCP_INTERFACE: tb.name('sv'),
      RACKSMITH_DHCP_RANGE: '10.77.0.10-10.77.0.250',
      RACKSMITH_ADVERTISE_ADDRESS: '10.77.0.1',
      RACKSMITH_LOG_LEVEL: 'warn',
      RACKSMITH_DISCOVERY_PER_SEGMENT: '20',
    }, { dataDir });
  });

  test.after(async () => {
    await serve?.stop();
    await tb.destroy();
    removeDataDir(dataDir);
  });

  const perfdhcp = async (n: number): Promise<PerfdhcpStats> => {
    const { stdout } = await tb.exec(cli, 'perfdhcp', ['-4', '-l', '10.77.0.2', '-r', '100', '-R', String(n), '-n', String(n), '-W', '1000000', '10.77.0.1'], { timeoutMs: 60_000 }).catch((e: { stdout?: string }) => ({ stdout: e.stdout ?? '' }));
    return parsePerfdhcp(stdout);
  };

  test('perfdhcp as a relay: DORA completes for its subnet, leases persisted', async () => {
    const s = await perfdhcp(200);
    assert.ok(s.sent['DISCOVER-OFFER'] && s.sent['DISCOVER-OFFER'] >= 200, JSON.stringify(s));
    assert.is(s.drops['DISCOVER-OFFER'], 0, JSON.stringify(s));
    assert.is(s.drops['REQUEST-ACK'], 0, JSON.stringify(s));
    assert.is(s.received['REQUEST-ACK'], s.sent['REQUEST-ACK']);
    const inv = openDataDir(dataDir);
    try {
      const leases = await inv.leases.list();
      assert.ok(leases.length >= 190, `${leases.length} leases`);
      assert.ok(leases.every((l) => l.state === 'bound' && /^10\.77\.0\.\d+$/.test(l.ip)));
    } finally {
      await inv.close();
    }
  });

  test('a garbage flood is dropped and counted; the server still serves', async () => {
    // 20,000 datagrams: random bytes, truncated captures, captures with broken option lengths.
    const fixtures = dhcpFixtures().map((f) => f.bytes);
    const rand = prng(7);
    const payloads: Buffer[] = [];
    for (let i = 0; i < 20_000; i++) {
      const f = fixtures[i % fixtures.length] as Buffer;
      const kind = i % 3;
      if (kind === 0) payloads.push(Buffer.from(Array.from({ length: Math.floor(rand() * 600) }, () => Math.floor(rand() * 256))));
      else if (kind === 1) payloads.push(f.subarray(0, Math.floor(rand() * 239)));
      else {
        const b = Buffer.from(f.subarray(0, 300));
        b[241] = 250; // the first option now claims far more than remains
        payloads.push(b);
      }
    }
    const script = `
      const dgram = require('node:dgram');
      const payloads = JSON.parse(require('node:fs').readFileSync(0, 'utf8')).map((h) => Buffer.from(h, 'hex'));
      const s = dgram.createSocket('udp4');
      let i = 0;
      const next = () => {
        if (i >= payloads.length) return s.close();
        const p = payloads[i++];
        // ~20,000 datagrams a second: a flood the loop keeps up with, so each one is counted.
        s.send(p, 67, '10.77.0.1', () => (i % 100 === 0 ? setTimeout(next, 5) : next()));
      };
      next();`;
    await tb.exec(cli, process.execPath, ['-e', script], { input: JSON.stringify(payloads.map((p) => p.toString('hex'))), timeoutMs: 60_000 });
    // The sender is done when its last datagram is in the kernel; a server starved beside other
    // suites may still be reading its receive buffer (8 MiB): wait for the count, 20 s at most.
    const count = async () => {
      const h = await serve?.health();
      const detail = h?.services['dhcp']?.detail ?? {};
      const dropped = (detail['dropped'] ?? {}) as Record<string, number>;
      return { h, detail, dropped, malformed: Object.entries(dropped).filter(([k]) => k.startsWith('ERR_DHCP_')).reduce((n, [, v]) => n + v, 0) };
    };
    let seen = await count();
    for (let i = 0; i < 100 && seen.malformed < 19_900; i++) {
      await new Promise((r) => setTimeout(r, 200));
      seen = await count();
    }
    const { h, detail, dropped, malformed } = seen;
    assert.ok(malformed >= 19_900, `only ${malformed} malformed counted: ${JSON.stringify(detail)}`);
    assert.ok((dropped['ERR_DHCP_SHORT'] ?? 0) > 0 && (dropped['ERR_DHCP_OPTION_TRUNCATED'] ?? 0) > 0, JSON.stringify(dropped));
    assert.is(h?.services['dhcp']?.state, 'serving');
    assert.is(serve?.child.exitCode, null);
    const s = await perfdhcp(20);
    assert.is(s.drops['REQUEST-ACK'], 0, JSON.stringify(s));
    assert.ok((s.received['REQUEST-ACK'] ?? 0) >= 20, JSON.stringify(s));
  });

  test('PXE clients: a group or all-zero MAC is dropped and counted, never recorded; past the segment\'s allowance new MACs are answered, not recorded', async () => {
    const pxeDiscover = (mac: string): Buffer =>
      rawRequest([53, 1, 1, 60, 32, ...ascii('PXEClient:Arch:00000:UNDI:002001'), 93, 2, 0, 0, 255], { mac, giaddr: [10, 77, 0, 2] });
    const group = ['ff:ff:ff:ff:ff:ff', '01:00:5e:00:00:01', '00:00:00:00:00:00'];
    const fresh = Array.from({ length: 50 }, (_, i) => `52:54:00:fa:00:${i.toString(16).padStart(2, '0')}`);
    const before = (await serve?.health())?.services['dhcp']?.detail ?? {};
    const script = `
      const dgram = require('node:dgram');
      const payloads = JSON.parse(require('node:fs').readFileSync(0, 'utf8')).map((h) => Buffer.from(h, 'hex'));
      const s = dgram.createSocket('udp4');
      let i = 0;
      const next = () => (i >= payloads.length ? s.close() : s.send(payloads[i++], 67, '10.77.0.1', () => setTimeout(next, 2)));
      next();`;
    await tb.exec(cli, process.execPath, ['-e', script], { input: JSON.stringify([...group, ...fresh].map((m) => pxeDiscover(m).toString('hex'))), timeoutMs: 60_000 });
    let detail: Record<string, unknown> = {};
    for (let i = 0; i < 50; i++) {
      detail = (await serve?.health())?.services['dhcp']?.detail ?? {};
      if (Number(detail['received']) >= Number(before['received']) + 53) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const dropped = detail['dropped'] as Record<string, number>;
    assert.is(dropped['ignored-group-mac'], 3, JSON.stringify(dropped));
    assert.is(detail['discoveryRefused'], 30, JSON.stringify(detail));
    // Every real MAC was decided like any other client, recorded or not (perfdhcp left the pool nearly full).
    const delta = (table: string, key: string): number => ((detail[table] as Record<string, number>)[key] ?? 0) - ((before[table] as Record<string, number> | undefined)?.[key] ?? 0);
    assert.is(delta('replies', 'offer') + delta('dropped', 'ignored-pool-exhausted'), 50, JSON.stringify(detail));
    assert.ok(delta('replies', 'offer') > 30, 'some of the unrecorded ones were offered an address');
    const inv = openDataDir(dataDir);
    try {
      for (const mac of group) assert.is(await inv.machines.get(mac as Mac), null, mac);
      const discovered = (await inv.machines.list({ state: 'discovered' })).filter((m) => m.mac.startsWith('52:54:00:fa:'));
      assert.is(discovered.length, 20);
      const limited = (await inv.events.list({ limit: 10_000 })).filter((e) => e.type === 'discovery.limited');
      assert.is(limited.length, 1);
      assert.match(limited[0]?.message ?? '', /^relay 10\.77\.0\.2: more unknown PXE clients than its allowance/);
    } finally {
      await inv.close();
    }
  });

  test.run();
}

export { createSocket };
