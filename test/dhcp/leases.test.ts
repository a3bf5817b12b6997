import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from '../lib/suite.js';
import * as assert from 'uvu/assert';
import { LeaseBook } from '../../server/dhcp/leasebook.js';
import type { IPv4 } from '../../server/lib/ipv4.js';
import type { Mac } from '../../server/lib/mac.js';
import { openDb } from '../../server/inventory/sqlite/db.js';
import { openSqliteInventory } from '../../server/inventory/sqlite/index.js';
import { MIGRATIONS } from '../../server/inventory/sqlite/migrations.js';
import { createSecretBox } from '../../server/lib/secrets.js';
import { openPgStore } from '../../server/inventory/postgres/index.js';
import { TEST_ENGINE, tempInventory, tempStore } from '../lib/inventory.js';
import { testPostgres } from '../lib/postgres.js';

const A = '52:54:00:00:00:0a' as Mac;
const B = '52:54:00:00:00:0b' as Mac;
const T0 = new Date('2026-01-01T00:00:00.000Z');
const later = (s: number): Date => new Date(T0.getTime() + s * 1000);

const repo = suite(`lease table (${TEST_ENGINE})`);
const sqliteOnly = suite('lease table file (SQLite, migrations 2 and 5)');

repo('bind, rebind extends, and a second MAC is refused while the lease runs', async () => {
  const inv = await tempStore();
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
  const inv = await tempStore();
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
  const inv = await tempStore();
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
  const inv = await tempStore();
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

sqliteOnly('the schema refuses two holders of one address; no MAC index is left to dirty a page per lease', async () => {
  const inv = tempInventory();
  try {
    const ins = inv.db.prepare("INSERT INTO leases (ip, mac, state, starts_at, expires_at, updated_at) VALUES (?, ?, 'bound', 'x', 'y', 'z')");
    ins.run('10.77.0.1', A);
    assert.throws(() => ins.run('10.77.0.1', B), /UNIQUE|PRIMARY/);
    assert.throws(() => inv.db.prepare("INSERT INTO leases (ip, mac, state, starts_at, expires_at, updated_at) VALUES ('10.77.0.3', NULL, 'bound', 'x', 'y', 'z')").run(), /CHECK/);
    const indexed = inv.db.prepare<[], { name: string }>("SELECT name FROM pragma_index_info((SELECT name FROM pragma_index_list('leases') WHERE origin = 'pk'))").all();
    assert.equal(indexed.map((c) => c.name), ['ip']);
    assert.is(inv.db.prepare<[], { n: number }>("SELECT COUNT(*) AS n FROM pragma_index_list('leases')").get()?.n, 1, 'the primary key is the only index');
    assert.ok((inv.db.pragma('user_version', { simple: true }) as number) >= 5);
  } finally {
    await inv.destroy();
  }
});

sqliteOnly('one row per MAC across a reopen: the MAC map is read back from the table', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'racksmith-leases-'));
  const open = () => openSqliteInventory({ file: join(dir, 'racksmith.db'), box: createSecretBox(randomBytes(32)) });
  try {
    const first = open();
    await first.leases.bindAll([{ ip: '10.77.0.100', mac: A, expiresAt: later(600).toISOString() }], T0);
    await first.close();
    const second = open();
    try {
      const [moved] = await second.leases.bindAll([{ ip: '10.77.0.101', mac: A, expiresAt: later(600).toISOString() }], later(1));
      assert.ok(moved?.ok);
      assert.equal((await second.leases.list()).map((l) => [l.ip, l.mac]), [['10.77.0.101', A]]);
    } finally {
      await second.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

sqliteOnly('a failed commit leaves no row and no stale MAC map behind', async () => {
  const inv = tempInventory();
  try {
    await inv.leases.bindAll([{ ip: '10.77.0.100', mac: A, expiresAt: later(600).toISOString() }], T0);
    inv.db.exec("CREATE TEMP TRIGGER refuse BEFORE INSERT ON leases WHEN NEW.ip = '10.77.0.102' BEGIN SELECT RAISE(ABORT, 'disk says no'); END");
    const batch = [
      { ip: '10.77.0.101', mac: A, expiresAt: later(600).toISOString() },
      { ip: '10.77.0.102', mac: B, expiresAt: later(600).toISOString() },
    ];
    const failed = await inv.leases.bindAll(batch, later(1)).then(() => null, (err: Error) => err.message);
    assert.match(failed ?? 'committed', /disk says no/);
    assert.equal((await inv.leases.list()).map((l) => l.ip), ['10.77.0.100'], 'the whole batch rolled back');
    inv.db.exec('DROP TRIGGER refuse');
    // Had the map kept "A is at .101" from the rolled-back batch, .100 would be left behind here.
    await inv.leases.bindAll([{ ip: '10.77.0.103', mac: A, expiresAt: later(600).toISOString() }], later(2));
    assert.equal((await inv.leases.list()).map((l) => [l.ip, l.mac]), [['10.77.0.103', A]]);
  } finally {
    await inv.destroy();
  }
});

sqliteOnly('migration 5 keeps every lease of a version-4 table', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'racksmith-leases-'));
  const file = join(dir, 'racksmith.db');
  try {
    const old = openDb(file, MIGRATIONS.filter((m) => m.version <= 4));
    old.prepare("INSERT INTO leases (ip, mac, state, client_id, hostname, starts_at, expires_at, updated_at) VALUES ('10.77.0.9', ?, 'bound', 'c', 'h', 's', 'e', 'u')").run(A);
    old.prepare("INSERT INTO leases (ip, mac, state, starts_at, expires_at, updated_at) VALUES ('10.77.0.8', NULL, 'declined', 's', 'e', 'u')").run();
    old.close();
    const db = openDb(file);
    assert.equal(db.prepare('SELECT * FROM leases ORDER BY ip').all(), [
      { ip: '10.77.0.8', mac: null, state: 'declined', client_id: null, hostname: null, starts_at: 's', expires_at: 'e', updated_at: 'u' },
      { ip: '10.77.0.9', mac: A, state: 'bound', client_id: 'c', hostname: 'h', starts_at: 's', expires_at: 'e', updated_at: 'u' },
    ]);
    db.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

const pgOnly = suite('lease table shared by instances (PostgreSQL)');

const refusal = (p: Promise<unknown>): Promise<string> => p.then(() => 'accepted', (err: Error) => err.message);

/** Two stores on one database, as two racksmith instances sharing it. */
async function twoInstances(): Promise<{ a: Awaited<ReturnType<typeof openPgStore>>; b: Awaited<ReturnType<typeof openPgStore>>; close(): Promise<void> }> {
  const url = await (await testPostgres()).newDatabase();
  const box = createSecretBox(randomBytes(32));
  const a = await openPgStore({ url, box, instanceName: 'a' });
  const b = await openPgStore({ url, box, instanceName: 'b' });
  return { a, b, close: async () => void (await Promise.all([a.close(), b.close()])) };
}

pgOnly('two instances binding one address at the same moment: one holds it, the other is told who', async () => {
  const { a, b, close } = await twoInstances();
  try {
    for (let i = 0; i < 20; i++) {
      const ipAddr = `10.77.1.${i + 1}`;
      const [ra, rb] = await Promise.all([
        a.leases.bindAll([{ ip: ipAddr, mac: A, expiresAt: later(600).toISOString() }], T0),
        b.leases.bindAll([{ ip: ipAddr, mac: B, expiresAt: later(600).toISOString() }], T0),
      ]);
      const wins = [ra[0], rb[0]].filter((o) => o?.ok);
      assert.is(wins.length, 1, `exactly one binding of ${ipAddr} wins`);
      const lost = [ra[0], rb[0]].find((o) => o && !o.ok);
      const row = await a.leases.byIp(ipAddr);
      assert.equal(lost, { ok: false, reason: 'held', holder: row!.mac });
    }
    // Each MAC holds one row in the end, wherever it won last.
    const rows = await a.leases.list();
    assert.ok(rows.filter((l) => l.mac === A).length <= 1 && rows.filter((l) => l.mac === B).length <= 1);
  } finally {
    await close();
  }
});

pgOnly('the schema refuses two holders of one address and a bound row without a MAC; a failed commit keeps nothing', async () => {
  const { a, close } = await twoInstances();
  try {
    const ins = "INSERT INTO leases (ip, mac, state, starts_at, expires_at, updated_at) VALUES ($1, $2, 'bound', 'x', 'y', 'z')";
    await a.db.run(ins, ['10.77.0.1', A]);
    assert.match(await refusal(a.db.run(ins, ['10.77.0.1', B])), /duplicate key/);
    assert.match(await refusal(a.db.run(ins, ['10.77.0.3', null])), /check constraint/);
    await a.db.run('DELETE FROM leases');
    await a.leases.bindAll([{ ip: '10.77.0.100', mac: A, expiresAt: later(600).toISOString() }], T0);
    await a.db.run(`CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'disk says no'; END $$`);
    await a.db.run(`CREATE TRIGGER refuse BEFORE INSERT ON leases FOR EACH ROW WHEN (NEW.ip = '10.77.0.102') EXECUTE FUNCTION refuse()`);
    const failed = await a.leases
      .bindAll(
        [
          { ip: '10.77.0.101', mac: A, expiresAt: later(600).toISOString() },
          { ip: '10.77.0.102', mac: B, expiresAt: later(600).toISOString() },
        ],
        later(1),
      )
      .then(() => null, (err: Error) => err.message);
    assert.match(failed ?? 'committed', /disk says no/);
    assert.equal((await a.leases.list()).map((l) => [l.ip, l.mac]), [['10.77.0.100', A]], 'the whole batch rolled back, the move too');
  } finally {
    await close();
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

book('a lease read from the store is durable, with its client id and host name', () => {
  const b = new LeaseBook();
  b.load([{ ip: '10.77.0.100', mac: A, state: 'bound', clientId: '01aa', hostname: 'node-a', startsAt: '2026-01-01T00:00:00.000Z', expiresAt: '2026-01-01T01:00:00.000Z', updatedAt: '2026-01-01T00:00:00.000Z' }]);
  const l = b.leaseOf(A, Date.parse('2026-01-01T00:30:00.000Z'));
  assert.equal([l?.durable, l?.clientId, l?.hostname, l?.active], [true, '01aa', 'node-a', true]);
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

book('release keeps the row for its own MAC only; forget drops a lease and an offer; counts follow', () => {
  const b = new LeaseBook();
  b.bind('10.77.0.100', A, 5000, '01525400000000', 'node-a');
  assert.equal(b.leaseOf(A, 10), { ip: '10.77.0.100', state: 'bound', until: 5000, active: true, clientId: '01525400000000', hostname: 'node-a', durable: false }, 'the row as bound, before its commit');
  b.durable('10.77.0.100', B);
  assert.is(b.leaseOf(A, 10)?.durable, false, "another MAC's commit does not make it durable");
  b.durable('10.77.0.100', A);
  assert.is(b.leaseOf(A, 10)?.durable, true, 'committed');
  b.release('10.77.0.100', B, 10);
  assert.equal(b.holder('10.77.0.100', 10), { kind: 'bound', mac: A }, 'another MAC cannot release it');
  b.release('10.77.0.100', A, 10);
  assert.is(b.holder('10.77.0.100', 10), null);
  assert.equal(b.leaseOf(A, 10), { ip: '10.77.0.100', state: 'released', until: 10, active: false, clientId: '01525400000000', hostname: 'node-a', durable: true });
  assert.is(b.leaseCount, 1, 'a released lease is still a row');
  b.hold('10.77.0.101', B, 0, 1000);
  assert.is(b.offerCount, 1);
  b.forget('10.77.0.100', A);
  b.forget('10.77.0.101', B);
  assert.is(b.leaseOf(A, 0), null);
  assert.is(b.offerOf(B, 0), null);
  assert.equal([b.leaseCount, b.offerCount], [0, 0]);
});

book("a binding takes the address from another MAC's offer, and that MAC no longer has it", () => {
  const b = new LeaseBook();
  b.hold('10.77.0.100', B, 0, 1000);
  b.bind('10.77.0.100', A, 5000);
  assert.is(b.offerOf(B, 0), null);
  assert.equal(b.holder('10.77.0.100', 0), { kind: 'bound', mac: A });
  assert.is(b.offerCount, 0);
});

book('reserved addresses are skipped until their time; expired offers are swept', () => {
  const b = new LeaseBook();
  b.skipReserved('10.77.0.100', 100);
  assert.is(b.nextFree(RANGE, 50), '10.77.0.101');
  assert.is(b.nextFree(RANGE, 100), '10.77.0.100');
  // A flood of one-time DISCOVERs: every offer expires, and a sweep forgets them.
  const wide = { start: ip('10.77.0.0'), end: ip('10.77.31.255') };
  for (let i = 0; i < 5000; i++) {
    const mac = `02:00:00:00:${((i >> 8) & 255).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}` as Mac;
    const at = i < 4000 ? 0 : 2000;
    b.hold(b.nextFree(wide, at) as string, mac, at, at + 1000, wide);
  }
  assert.ok(b.offerCount <= 1000, `expired offers were swept: ${b.offerCount} left`);
  assert.is(b.offerOf('02:00:00:00:00:00' as Mac, 2000), null);
});

repo.run();
if (TEST_ENGINE === 'sqlite') sqliteOnly.run();
else pgOnly.run();
book.run();
