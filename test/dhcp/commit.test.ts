import { suite } from '../lib/suite.js';
import * as assert from 'uvu/assert';
import { AddressSpace, poolOn } from '../../server/dhcp/addresses.js';
import { ACK_BATCH, ACK_WINDOW_MS, LeaseCommits, type Binding, type LeaseWrites } from '../../server/dhcp/commit.js';
import { newCounters } from '../../server/dhcp/counters.js';
import type { MachineFeed } from '../../server/dhcp/directory.js';
import { servedInterfaces } from '../../server/dhcp/interfaces.js';
import type { MachineDirectory } from '../../server/inventory/store.js';
import { parseRange, type IPv4 } from '../../server/lib/ipv4.js';
import { silentLogger } from '../../server/lib/log.js';
import type { Mac } from '../../server/lib/mac.js';
import { interfaceTable } from '../lib/dhcp-loop.js';
import { tempStore } from '../lib/inventory.js';

/**
 * The ACK batch and its commit over the real SQLite lease table, a fake clock and a hand-run
 * window, with stores that fail or refuse: which ACKs leave, what is counted, and what the lease
 * book believes afterwards.
 */

const T0 = 1_800_000_000_000;
const IP = (s: string): IPv4 => s as IPv4;
const mac = (i: number): Mac => `02:00:00:00:01:${i.toString(16).padStart(2, '0')}` as Mac;
const SERVED = servedInterfaces(interfaceTable('pxe0', '10.77.0.1', '255.255.255.0'), 'pxe0').served;
const SETTINGS = { dhcpRange: '10.77.0.100-10.77.0.199', dhcpNetmask: undefined, dhcpRouter: undefined, dhcpDns: undefined, dhcpLeaseSeconds: 600, dhcpCacheThreshold: 0 };
const POOL = poolOn(parseRange(SETTINGS.dhcpRange) as NonNullable<ReturnType<typeof parseRange>>, SETTINGS, SERVED);
const bind = (i: number, ip = `10.77.0.${100 + i}`): Binding => ({ kind: 'bind', ip: IP(ip), mac: mac(i), until: T0 + 600_000, clientId: null, hostname: null });

function rig(leases: LeaseWrites) {
  const directory: MachineDirectory = { byMac: new Map(), byIp: new Map(), revision: 0 };
  let invalidated = 0;
  const feed: MachineFeed = { current: () => directory, invalidate: () => invalidated++ };
  const space = new AddressSpace(POOL, feed, false);
  const counters = newCounters();
  const delivered: number[] = [];
  const windows: (() => void)[] = [];
  /** What the commits read back into the book: [ip, mac, the store's rows as "ip mac"]. */
  const resyncs: [string, string, string[]][] = [];
  const commits = new LeaseCommits<number>({
    leases,
    space: {
      durable: (ip, m) => space.durable(ip, m),
      reservedElsewhere: (ip, now) => space.reservedElsewhere(ip, now),
      resync: (ip, m, rows) => {
        resyncs.push([ip, m, rows.flatMap((l) => (l ? [`${l.ip} ${l.mac}`] : []))]);
        space.resync(ip, m, rows);
      },
    },
    deliver: (i) => delivered.push(i),
    counters,
    log: silentLogger(),
    now: () => T0,
    later: (flush, ms) => {
      assert.is(ms, ACK_WINDOW_MS);
      windows.push(flush);
    },
  });
  /** The loop's part: mirror the binding, then queue its ACK. */
  const ack = (i: number, b = bind(i)): void => {
    space.apply(b, T0);
    commits.add(b, i);
  };
  return { space, counters, delivered, windows, commits, ack, resyncs, invalidated: () => invalidated };
}

const batch = suite('ACK batch');

batch('ACKs wait for the window, or commit at once as a full batch: one store transaction each', async () => {
  const inv = await tempStore();
  try {
    const calls: number[] = [];
    const r = rig({
      ...inv.leases,
      bindAll: (b, now) => {
        calls.push(b.length);
        return inv.leases.bindAll(b, now);
      },
    });
    for (let i = 0; i < 3; i++) r.ack(i);
    assert.equal([calls, r.delivered, r.windows.length], [[], [], 1], 'one window for the first ACK, nothing committed yet');
    r.windows[0]?.();
    await r.commits.settle();
    assert.equal([calls, r.delivered], [[3], [0, 1, 2]]);
    for (let i = 10; i < 10 + ACK_BATCH; i++) r.ack(i);
    assert.equal(calls, [3, ACK_BATCH], 'a full batch commits without waiting for its window');
    await r.commits.settle();
    assert.is(r.delivered.length, 3 + ACK_BATCH);
    assert.is((await inv.leases.list()).length, 3 + ACK_BATCH);
  } finally {
    await inv.destroy();
  }
});

const fail = suite('commit faults');

fail('a store that fails the commit: no ACK leaves, one store error, the book forgets what the store did not take', async () => {
  const inv = await tempStore();
  try {
    await inv.leases.bindAll([{ ip: '10.77.0.150', mac: mac(1), expiresAt: new Date(T0 + 600_000).toISOString() }], new Date(T0));
    let down = true;
    const r = rig({
      ...inv.leases,
      bindAll: (b, now) => (down ? Promise.reject(new Error('injected: the store is unavailable')) : inv.leases.bindAll(b, now)),
    });
    r.space.load(await inv.leases.list());
    r.ack(1); // moves mac 1 from .150 to .101 in the book, optimistically
    r.ack(2);
    assert.is(r.space.leaseCount, 2);
    await r.commits.settle();
    assert.equal(r.delivered, []);
    assert.is(r.counters.dropped['store-error'], 1);
    assert.is(r.space.leaseCount, 1, "the book holds the store's rows again");
    const rows = await inv.leases.list();
    assert.equal(rows.map((l) => [l.ip, l.mac]), [['10.77.0.150', mac(1)]]);
    down = false;
    r.ack(1);
    await r.commits.settle();
    assert.equal(r.delivered, [1], 'the retry commits and its ACK leaves');
  } finally {
    await inv.destroy();
  }
});

fail('a store that refuses one binding: that ACK is withheld, the others leave; a reservation it did not know of invalidates the directory', async () => {
  const inv = await tempStore();
  try {
    await inv.clusters.create({ name: 'c1', ubuntuRelease: '22.04', kubernetesVersion: '1.30.0', containerRuntime: 'containerd', cni: 'flannel' });
    await inv.machines.create({ mac: mac(9), hostname: 'n9', role: 'worker', cluster: 'c1', ip: '10.77.0.103' });
    await inv.leases.bindAll([{ ip: '10.77.0.102', mac: mac(8), expiresAt: new Date(T0 + 600_000).toISOString() }], new Date(T0));
    const r = rig(inv.leases);
    r.ack(1);
    r.ack(2); // .102: another MAC's lease the book did not have
    r.ack(3); // .103: another machine's reservation
    await r.commits.settle();
    assert.equal(r.delivered, [1]);
    assert.is(r.counters.dropped['bind-refused'], 2);
    assert.is(r.invalidated(), 1, 'only the reservation invalidates the directory');
    assert.is(r.space.leaseCount, 2, ".101 committed and .102 read back as mac 8's");
    assert.equal((await inv.leases.list()).map((l) => [l.ip, l.mac]).sort(), [['10.77.0.101', mac(1)], ['10.77.0.102', mac(8)]]);
  } finally {
    await inv.destroy();
  }
});

fail('a resync that fails too (the database away): the store error is counted once, and the book is read again before the next commit', async () => {
  const inv = await tempStore();
  try {
    await inv.leases.bindAll([{ ip: '10.77.0.150', mac: mac(1), expiresAt: new Date(T0 + 600_000).toISOString() }], new Date(T0));
    let down = true;
    const away = (): Promise<never> => Promise.reject(new Error('injected: down'));
    const r = rig({
      ...inv.leases,
      bindAll: (b, now) => (down ? away() : inv.leases.bindAll(b, now)),
      byIp: (ip) => (down ? away() : inv.leases.byIp(ip)),
      byMac: (m) => (down ? away() : inv.leases.byMac(m)),
    });
    r.space.load(await inv.leases.list());
    r.ack(1); // mac 1 moved from .150 to .101 in the book, optimistically
    await r.commits.settle();
    assert.equal(r.delivered, []);
    assert.equal([r.counters.dropped['store-error'], r.counters.dropped['internal-error']], [1, undefined], 'an outage, not a fault');
    assert.equal(r.resyncs, [], 'nothing could be read back yet');
    down = false;
    r.ack(2);
    await r.commits.settle();
    assert.equal(r.delivered, [2], 'the commits go on');
    assert.equal(
      r.resyncs,
      [['10.77.0.101', mac(1), ['10.77.0.150 ' + mac(1)]]],
      "before it, the bind nobody committed was read back: mac 1 holds .150, as the store says",
    );
    r.ack(3);
    await r.commits.settle();
    assert.is(r.resyncs.length, 1, 'read back once');
  } finally {
    await inv.destroy();
  }
});

fail('RELEASE and DECLINE are written through the same narrow interface', async () => {
  const inv = await tempStore();
  try {
    const r = rig(inv.leases);
    r.ack(1);
    await r.commits.settle();
    assert.is(await r.commits.write({ kind: 'release', ip: IP('10.77.0.101'), mac: mac(1) }, T0 + 1000), true);
    assert.is((await inv.leases.byIp('10.77.0.101'))?.state, 'released');
    assert.is(await r.commits.write({ kind: 'decline', ip: IP('10.77.0.101'), mac: mac(1), until: T0 + 3_600_000 }, T0 + 2000), true);
    assert.is((await inv.leases.byIp('10.77.0.101'))?.state, 'declined');
  } finally {
    await inv.destroy();
  }
});

batch.run();
fail.run();
