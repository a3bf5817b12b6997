import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from '../lib/suite.js';
import * as assert from 'uvu/assert';
import type { DhcpCounters } from '../../server/dhcp/server.js';
import { PACKAGE_ROOT } from '../../server/lib/paths.js';
import { newDataDir, openDataDir, removeDataDir, waitFor } from '../lib/dhcp.js';
import { Testbed } from '../lib/netns.js';
import { requirements, skipNote } from '../lib/tools.js';

/**
 * Faults behind the datagram loop: the inventory throws while reading one client's machine, and
 * the store refuses the first lease commit. The failing client is dropped and counted as an
 * internal error each time it asks; the ACKs of the refused commit are withheld (their clients
 * retry and are then bound); every other client is served, no address goes to two MACs, and
 * the process stops cleanly afterwards. The same faults in-process, datagram by datagram, and
 * each part's own: loop.test.ts, commit.test.ts, addresses.test.ts.
 */
const missing = requirements([], { netns: true });
const COUNT = 12;
/** relay-client's MAC for client i is 02:00 followed by i as four bytes. */
const FAULTY_MAC = '02:00:00:00:00:03';

if (missing) {
  skipNote('dhcp faults', missing);
} else {
  test('an inventory that throws for one MAC and a store that refuses a commit: counted, withheld, everyone else served', async () => {
    const tb = new Testbed('f');
    const dataDir = newDataDir();
    try {
      const srv = await tb.addNamespace('s');
      const cli = await tb.addNamespace('c');
      await tb.veth(srv, 'sv', cli, 'cv', '10.79.0.1/24', '10.79.0.2/24');
      const server = tb.spawn(srv, process.execPath, [join(PACKAGE_ROOT, 'dist', 'test', 'tools', 'dhcp-fault-server.js')], {
        env: {
          PATH: process.env['PATH'] ?? '/usr/bin:/bin',
          RACKSMITH_DATA_DIR: dataDir,
          RACKSMITH_DHCP_MODE: 'authoritative',
          RACKSMITH_DHCP_INTERFACE: tb.name('sv'),
          RACKSMITH_DHCP_RANGE: '10.79.0.10-10.79.0.200',
          RACKSMITH_ADVERTISE_ADDRESS: '10.79.0.1',
          RACKSMITH_LOG_LEVEL: 'fatal',
          FAULT_LOOKUP_MAC: FAULTY_MAC,
          FAULT_BIND_FAILS: '1',
        },
      });
      let out = '';
      server.stdout?.on('data', (d: Buffer) => (out += d.toString()));
      server.stderr?.on('data', (d: Buffer) => (out += d.toString()));
      const exited = new Promise<number | null>((resolve) => server.on('exit', (code) => resolve(code)));
      await waitFor('the fault server to serve', () => out.includes('FAULT READY'), 20_000);

      const acks = join(dataDir, 'acks.jsonl');
      const { stdout } = await tb.exec(cli, process.execPath, [
        join(PACKAGE_ROOT, 'dist', 'test', 'lib', 'relay-client.js'),
        JSON.stringify({ local: '10.79.0.2', server: '10.79.0.1', count: COUNT, window: COUNT, acks, retryMs: 300, timeoutMs: 4_000 }),
      ], { timeoutMs: 30_000 });
      const summary = JSON.parse(stdout) as { bound: number; retried: number };

      server.kill('SIGTERM');
      assert.is(await exited, 0, `the server did not stop cleanly:\n${out}`);
      const line = out.split('\n').find((l) => l.startsWith('COUNTERS '));
      assert.ok(line, out);
      const counters = JSON.parse(line.slice('COUNTERS '.length)) as DhcpCounters;

      assert.is(summary.bound, COUNT - 1, JSON.stringify(summary));
      assert.ok(summary.retried >= 2, `the faulty client and the withheld ACKs retried: ${JSON.stringify(summary)}`);
      assert.is(counters.dropped['store-error'], 1, JSON.stringify(counters));
      assert.ok((counters.dropped['internal-error'] ?? 0) >= 2, `every DISCOVER of ${FAULTY_MAC} is an internal error: ${JSON.stringify(counters)}`);

      const seen = readFileSync(acks, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { mac: string; ip: string });
      assert.is(seen.length, COUNT - 1);
      assert.not.ok(seen.some((s) => s.mac === FAULTY_MAC));
      assert.is(new Set(seen.map((s) => s.ip)).size, seen.length, 'no address acknowledged twice');
      const inv = openDataDir(dataDir);
      try {
        const rows = await inv.leases.list();
        assert.is(rows.length, COUNT - 1);
        for (const s of seen) assert.ok(rows.some((r) => r.mac === s.mac && r.ip === s.ip && r.state === 'bound'), `${s.mac} → ${s.ip} is not in the store`);
      } finally {
        await inv.close();
      }
    } finally {
      await tb.destroy();
      removeDataDir(dataDir);
    }
  });
  test.run();
}
