import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from '../lib/suite.js';
import * as assert from 'uvu/assert';
import { PACKAGE_ROOT } from '../../server/lib/paths.js';
import { newDataDir, openDataDir, removeDataDir, serveInNamespace, waitFor, type ServeProcess } from '../lib/dhcp.js';
import { Testbed } from '../lib/netns.js';
import { requirements, skipNote } from '../lib/tools.js';

// racksmith-test: both engines — leases must survive a restart on either engine; short enough to run twice.

/**
 * 10,000 clients take leases while racksmith is killed (SIGKILL, as a crash) and started again
 * in the middle. Every acknowledged lease must still be in the store afterwards, and no address
 * may ever have been given to two MACs: checked over every ACK the clients saw and every row.
 */
const missing = requirements(['curl'], { netns: true });
const COUNT = 10_000;

if (missing) {
  skipNote('dhcp restart', missing);
} else {
  test('kill -9 in the middle of a 10,000-lease run: no acknowledged lease lost, no address given twice', async () => {
    const tb = new Testbed('d');
    const dataDir = newDataDir();
    let serve: ServeProcess | null = null;
    const env = {
      RACKSMITH_DHCP_MODE: 'authoritative',
      RACKSMITH_DHCP_RANGE: '10.78.1.0-10.78.255.254',
      RACKSMITH_ADVERTISE_ADDRESS: '10.78.0.1',
      RACKSMITH_LOG_LEVEL: 'warn',
    };
    try {
      const srv = await tb.addNamespace('s');
      const cli = await tb.addNamespace('c');
      await tb.veth(srv, 'sv', cli, 'cv', '10.78.0.1/16', '10.78.0.2/16');
      serve = await serveInNamespace(srv, { ...env, RACKSMITH_DHCP_INTERFACE: tb.name('sv') }, { dataDir });
      const acks = join(dataDir, 'acks.jsonl');
      const client = tb.exec(cli, process.execPath, [
        join(PACKAGE_ROOT, 'dist', 'test', 'lib', 'relay-client.js'),
        JSON.stringify({ local: '10.78.0.2', server: '10.78.0.1', count: COUNT, window: 64, acks, retryMs: 500, timeoutMs: 150_000 }),
      ], { timeoutMs: 180_000 });
      const ackLines = (): string[] => {
        try {
          return readFileSync(acks, 'utf8').split('\n').filter(Boolean);
        } catch {
          return [];
        }
      };
      await waitFor('3,000 ACKs before the crash', () => ackLines().length >= 3000, 90_000);
      await serve.kill9();
      const atCrash = ackLines().length;
      serve = await serveInNamespace(srv, { ...env, RACKSMITH_DHCP_INTERFACE: tb.name('sv') }, { dataDir });
      const summary = JSON.parse((await client).stdout) as { bound: number; naks: number; retried: number };
      assert.is(summary.bound, COUNT, JSON.stringify(summary));
      await serve.stop();
      serve = null;

      const seen = ackLines().map((l) => JSON.parse(l) as { mac: string; ip: string; at: number });
      assert.is(seen.length, COUNT);
      assert.ok(atCrash >= 3000 && atCrash < COUNT, `crash after ${atCrash} ACKs`);
      const holderOf = new Map<string, string>();
      for (const s of seen) {
        const other = holderOf.get(s.ip);
        assert.ok(other === undefined || other === s.mac, `${s.ip} was acknowledged to ${other} and to ${s.mac}`);
        holderOf.set(s.ip, s.mac);
      }
      const inv = openDataDir(dataDir);
      try {
        const rows = await inv.leases.list();
        const byMac = new Map(rows.map((r) => [r.mac, r]));
        for (const s of seen) {
          const row = byMac.get(s.mac as never);
          assert.ok(row && row.ip === s.ip && row.state === 'bound', `ACK ${s.mac} → ${s.ip} is not in the store (${JSON.stringify(row)})`);
        }
        assert.is(new Set(rows.map((r) => r.ip)).size, rows.length);
        assert.is(rows.length, COUNT);
      } finally {
        await inv.close();
      }
      process.stdout.write(`  crash after ${atCrash} ACKs; clients that retried: ${summary.retried}; NAKs: ${summary.naks}\n`);
    } finally {
      await serve?.kill9();
      await tb.destroy();
      removeDataDir(dataDir);
    }
  });
  test.run();
}
