import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { LeaseBook } from '../../server/dhcp/leasebook.js';
import type { IPv4 } from '../../server/lib/ipv4.js';
import type { Mac } from '../../server/lib/mac.js';
import { tempInventory } from '../lib/inventory.js';

const A = '52:54:00:00:00:0a' as Mac;
const B = '52:54:00:00:00:0b' as Mac;
const T0 = new Date('2026-01-01T00:00:00.000Z');
const later = (s: number): Date => new Date(T0.getTime() + s * 1000);

const repo = suite('lease table (SQLite, migration 2)');

repo('bind, rebind extends, and a second MAC is refused while the lease runs', async () => {
  const inv = tempInventory();
  try {
    const [first] = await inv.leases.bindAll([{ ip: '10.77.0.100', mac: A, expiresAt: later(600).toISOString() }], T0);
    assert.ok(first?.ok);
    const [again] = await inv.leases.bindAll([{ ip: '10.77.0.100', mac: A, expiresAt: later(1200).toISOString() }], later(300));
    assert.ok(again?.ok && again.lease.startsAt === T0.toISOString() && again.lease.expiresAt === later(1200).toISOString());
    const [other] = await inv.leases.bindAll([{ ip: '10.77.0.100', mac: B, expiresAt: later(900).toISOString() }], later(301));
    assert.equal(other, { ok: false, reason: 'held', holder: A });
    const [afterExpiry] = await inv.leases.bindAll([{ ip: '10.77.0.100', mac: B, expiresAt: later(2000).toISOString() }], later(1201));
    assert.ok(afterExpiry?.ok);
    assert.is((await inv.leases.byMac(A)), null);
  } finally {
    await inv.destroy();
  }
});

repo('a MAC that moves leaves its old address; one batch commits the others when one is refused', async () => {
  const inv = tempInventory();
  try {
    await inv.leases.bindAll([{ ip: '10.77.0.100', mac: A, expiresAt: later(600).toISOString() }], T0);
    const out = await inv.leases.bindAll(
      [
        { ip: '10.77.0.101', mac: A, expiresAt: later(600).toISOString() },
        { ip: '10.77.0.101', mac: B, expiresAt: later(600).toISOString() },
      ],
      T0,
    );
    assert.equal(out.map((o) => o.ok), [true, false]);
    assert.is((await inv.leases.byIp('10.77.0.100')), null);
    assert.is((await inv.leases.list()).length, 1);
  } finally {
    await inv.destroy();
  }
});

repo('a reservation (machine ip) refuses other MACs', async () => {
  const inv = tempInventory();
  try {
    await inv.clusters.create({ name: 'c1', ubuntuRelease: '22.04', kubernetesVersion: '1.30.0', containerRuntime: 'containerd', cni: 'flannel' });
    await inv.machines.create({ mac: A, hostname: 'n1', role: 'worker', cluster: 'c1', ip: '10.77.0.50' });
    assert.is(await inv.leases.reservedBy('10.77.0.50'), A);
    const [r] = await inv.leases.bindAll([{ ip: '10.77.0.50', mac: B, expiresAt: later(600).toISOString() }], T0);
    assert.equal(r, { ok: false, reason: 'reserved', holder: A });
  } finally {
    await inv.destroy();
  }
});

repo('release keeps the row for the MAC; decline quarantines without a MAC', async () => {
  const inv = tempInventory();
  try {
    await inv.leases.bindAll([{ ip: '10.77.0.100', mac: A, expiresAt: later(600).toISOString() }], T0);
    assert.ok(await inv.leases.release('10.77.0.100', A, later(10)));
    assert.is((await inv.leases.byIp('10.77.0.100'))?.state, 'released');
    assert.not.ok(await inv.leases.release('10.77.0.100', B, later(10)));
    const [again] = await inv.leases.bindAll([{ ip: '10.77.0.100', mac: B, expiresAt: later(600).toISOString() }], later(11));
    assert.ok(again?.ok, 'a released address is free for another MAC');
    assert.ok(await inv.leases.decline('10.77.0.100', B, later(3600), later(12)));
    const q = await inv.leases.byIp('10.77.0.100');
    assert.is(q?.state, 'declined');
    assert.is(q?.mac, null);
  } finally {
    await inv.destroy();
  }
});

repo('the schema itself refuses two holders of one address and two addresses for one MAC', async () => {
  const inv = tempInventory();
  try {
    const ins = inv.db.prepare("INSERT INTO leases (ip, mac, state, starts_at, expires_at, updated_at) VALUES (?, ?, 'bound', 'x', 'y', 'z')");
    ins.run('10.77.0.1', A);
    assert.throws(() => ins.run('10.77.0.1', B), /UNIQUE|PRIMARY/);
    assert.throws(() => ins.run('10.77.0.2', A), /UNIQUE/);
    assert.throws(() => inv.db.prepare("INSERT INTO leases (ip, mac, state, starts_at, expires_at, updated_at) VALUES ('10.77.0.3', NULL, 'bound', 'x', 'y', 'z')").run(), /CHECK/);
    // Migration 2 made this table; later migrations may follow it.
    assert.ok((inv.db.pragma('user_version', { simple: true }) as number) >= 2);
  } finally {
    await inv.destroy();
  }
});

const book = suite('lease book (in memory)');
const ip = (s: string): IPv4 => s as IPv4;
const RANGE = { start: ip('10.77.0.100'), end: ip('10.77.0.102') };

book('offers hold addresses; next-fit moves on; expired offers free them', () => {
  const b = new LeaseBook();
  assert.is(b.nextFree(RANGE, 0), '10.77.0.100');
  b.hold('10.77.0.100', A, 0, 1000, RANGE);
  assert.is(b.nextFree(RANGE, 0), '10.77.0.101');
  assert.equal(b.holder('10.77.0.100', 500), { kind: 'offer', mac: A });
  assert.is(b.holder('10.77.0.100', 1000), null);
  b.bind('10.77.0.101', B, 5000);
  b.hold('10.77.0.102', A, 0, 1000, RANGE);
  assert.is(b.offerOf(A, 0), '10.77.0.102', 'a new offer replaces the old one');
  assert.is(b.nextFree(RANGE, 0), '10.77.0.100');
  b.hold('10.77.0.100', '52:54:00:00:00:0c' as Mac, 0, 1000, RANGE);
  assert.is(b.nextFree(RANGE, 0), null, 'exhausted');
});

book('a bind moves the MAC and drops its previous address', () => {
  const b = new LeaseBook();
  b.bind('10.77.0.100', A, 5000);
  b.bind('10.77.0.101', A, 5000);
  assert.is(b.holder('10.77.0.100', 0), null);
  assert.is(b.leaseOf(A, 0)?.ip, '10.77.0.101');
  b.decline('10.77.0.101', 9000);
  assert.equal(b.holder('10.77.0.101', 0), { kind: 'quarantine', mac: null });
  assert.is(b.leaseOf(A, 0), null);
});

repo.run();
book.run();
