import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { openStore } from '../server/inventory/open.js';
import { PG_MIGRATIONS } from '../server/inventory/postgres/migrations.js';
import type { Queryable } from '../server/inventory/postgres/db.js';
import { GroupCommit } from '../server/inventory/postgres/group-commit.js';
import { listenForChanges } from '../server/inventory/postgres/listen.js';
import { openPgStore, type PgStore } from '../server/inventory/postgres/index.js';
import { MIGRATIONS } from '../server/inventory/sqlite/migrations.js';
import { openDb } from '../server/inventory/sqlite/db.js';
import type { InventoryEvent } from '../server/inventory/model.js';
import type { Mac } from '../server/lib/mac.js';
import { createSecretBox } from '../server/lib/secrets.js';
import { pgMissing, testPostgres } from './lib/postgres.js';
import { relay } from './lib/relay.js';
import { skipNote } from './lib/tools.js';

/**
 * What only the PostgreSQL store has: the schema kept in step with SQLite's, several instances on
 * one database (events fanned out in id order, the DHCP machine directory kept current by
 * notifications, also across a database restart), and the secret key every instance must share.
 */
const test = suite('store on PostgreSQL: schema in step, instances sharing one database');
const missing = pgMissing();

const CLUSTER = { name: 'lab', os: 'ubuntu-22.04', kubernetesVersion: '1.29.4', containerRuntime: 'containerd', cni: 'calico' } as const;
const box = createSecretBox(randomBytes(32));
const open: PgStore[] = [];

async function instances(n: number): Promise<PgStore[]> {
  const url = await (await testPostgres()).newDatabase();
  const out: PgStore[] = [];
  for (let i = 0; i < n; i++) out.push(await openPgStore({ url, box, instanceName: `i${i}` }));
  open.push(...out);
  return out;
}

/** Waits (bounded) until `check` holds, polling. */
async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test.after.each(async () => {
  await Promise.all(open.splice(0).map((s) => s.close().catch(() => undefined)));
});

test('both engines are at the same schema version, with the same tables and columns', async () => {
  assert.is(Math.max(...PG_MIGRATIONS.map((m) => m.version)), Math.max(...MIGRATIONS.map((m) => m.version)), 'a migration added to one engine is added to the other');
  const dir = mkdtempSync(join(tmpdir(), 'racksmith-schema-'));
  try {
    const lite = openDb(join(dir, 'racksmith.db'));
    const liteColumns = new Set<string>();
    for (const { name } of lite.prepare<[], { name: string }>("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'").all()) {
      for (const c of lite.prepare<[], { name: string; type: string }>(`SELECT name, type FROM pragma_table_info('${name}')`).all()) liteColumns.add(`${name}.${c.name} ${c.type.toLowerCase()}`);
    }
    lite.close();
    const [pg] = await instances(1);
    const rows = await pg!.db.all<{ t: string; c: string; type: string }>(
      "SELECT table_name AS t, column_name AS c, data_type AS type FROM information_schema.columns WHERE table_schema = 'public' AND table_name <> 'racksmith_schema'",
    );
    const pgColumns = new Set(rows.map((r) => `${r.t}.${r.c} ${r.type === 'bigint' ? 'integer' : r.type}`));
    assert.equal([...pgColumns].sort(), [...liteColumns].sort());
    assert.is((await pg!.db.one<{ version: number }>('SELECT version FROM racksmith_schema'))?.version, Math.max(...MIGRATIONS.map((m) => m.version)));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('every instance hears every event, from any instance, in id order, each once', async () => {
  const [a, b, c] = await instances(3);
  const heard: InventoryEvent[][] = [[], [], []];
  [a, b, c].forEach((s, i) => s!.events.subscribe((e) => heard[i]!.push(e)));
  await a!.clusters.create(CLUSTER);
  // Concurrent writers on two instances: ids are taken one transaction at a time, so no reader can
  // see a larger id before a smaller one commits.
  await Promise.all([
    ...Array.from({ length: 40 }, (_, i) => a!.events.append({ cluster: 'lab', type: 'test.a', message: `a${i}` })),
    ...Array.from({ length: 40 }, (_, i) => b!.events.append({ cluster: 'lab', type: 'test.b', message: `b${i}` })),
  ]);
  const all = await c!.events.list({ cluster: 'lab' });
  assert.is(all.length, 81);
  for (const h of heard) {
    await until('every event heard', () => h.length >= 81);
    assert.equal(
      h.map((e) => e.id),
      all.map((e) => e.id),
      'the same events in the same order on every instance',
    );
  }
});

test("a machine added through one instance is in every other instance's DHCP directory, also after the database restarts", async () => {
  const [a, b] = await instances(2);
  await a!.clusters.create(CLUSTER);
  const feed = b!.machineFeed();
  await a!.machines.create({ mac: '52:54:00:22:00:01' as Mac, hostname: 'n1', role: 'worker', cluster: 'lab', ip: '10.77.0.31' });
  await until('the machine in the other directory', () => feed.current(Date.now()).byMac.has('52:54:00:22:00:01'));
  assert.is(feed.current(Date.now()).byIp.get('10.77.0.31'), '52:54:00:22:00:01');
  await a!.machines.update('52:54:00:22:00:01' as Mac, { ip: '10.77.0.32' }, 'test');
  await until('the new address', () => feed.current(Date.now()).byIp.get('10.77.0.32') === '52:54:00:22:00:01');
  assert.not.ok(feed.current(Date.now()).byIp.has('10.77.0.31'), 'the old reservation is gone');

  // A restart of PostgreSQL drops every connection; notifications sent meanwhile are lost, so the
  // directory is read whole again once the listener is back.
  const server = await testPostgres();
  await server.crash();
  await server.start();
  let lastError = '';
  await until(
    'the pool reaching the database again',
    async () =>
      a!.machines.list().then(
        () => true,
        (err: Error) => ((lastError = err.message), false),
      ),
    30_000,
  ).catch((err: Error) => {
    throw new Error(`${err.message}: ${lastError}`);
  });
  await a!.machines.create({ mac: '52:54:00:22:00:02' as Mac, hostname: 'n2', role: 'worker', cluster: 'lab', ip: '10.77.0.33' });
  await until('the machine added after the restart', () => feed.current(Date.now()).byMac.has('52:54:00:22:00:02'), 30_000);
  await a!.machines.delete('52:54:00:22:00:01' as Mac);
  await until('the deleted machine gone', () => !feed.current(Date.now()).byMac.has('52:54:00:22:00:01'));
});

test('instances sharing a database must share the secret key: another key is refused at start', async () => {
  const url = await (await testPostgres()).newDatabase();
  const dirs = [mkdtempSync(join(tmpdir(), 'racksmith-key-')), mkdtempSync(join(tmpdir(), 'racksmith-key-'))];
  try {
    const key = randomBytes(32).toString('hex');
    const first = await openStore({ dataDir: dirs[0]!, databaseUrl: url, secretKey: key, instanceName: 'a' });
    await first.secrets.put('global', 'x', 'sealed with the shared key');
    const same = await openStore({ dataDir: dirs[1]!, databaseUrl: url, secretKey: key, instanceName: 'b' });
    assert.is(await same.secrets.get('global', 'x'), 'sealed with the shared key');
    await same.close();
    const other = await openStore({ dataDir: dirs[1]!, databaseUrl: url, secretKey: randomBytes(32).toString('hex'), instanceName: 'c' }).then(
      async (s) => {
        await s.close();
        return 'opened';
      },
      (err: Error) => err.message,
    );
    assert.match(other, /same --secret-key/);
    await first.close();
  } finally {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  }
});

test('a database newer than this racksmith is refused, naming both versions', async () => {
  const [a] = await instances(1);
  await a!.db.run('UPDATE racksmith_schema SET version = 999');
  const url = (a!.db.pool.options as { connectionString: string }).connectionString;
  const refused = await openPgStore({ url, box }).then(
    async (s) => {
      await s.close();
      return 'opened';
    },
    (err: Error) => err.message,
  );
  assert.match(refused, /version 999, newer than this racksmith \(\d+\)/);
});

test("the boot path's small writes share commits in the order asked; a failing write fails alone", async () => {
  const [a] = await instances(1);
  if (!a) throw new Error('no instance');
  await a.db.run('CREATE TABLE group_probe (n INTEGER PRIMARY KEY)');
  const group = new GroupCommit(a.db);
  const write = (n: number) => (c: Queryable) => c.query<{ tx: string }>('INSERT INTO group_probe (n) VALUES ($1) RETURNING txid_current()::text AS tx', [n]).then((r) => r.rows[0]?.tx);
  const first = await Promise.all(Array.from({ length: 40 }, (_, i) => group.run(write(i))));
  assert.is(new Set(first).size, 1, 'forty writes asked in one turn: one transaction');
  const outcomes = await Promise.allSettled([group.run(write(100)), group.run(write(5)), group.run(write(101))]);
  assert.equal(outcomes.map((o) => o.status), ['fulfilled', 'rejected', 'fulfilled'], 'only the duplicate key fails');
  const rows = await a.db.all<{ n: number }>('SELECT n FROM group_probe ORDER BY n');
  assert.equal(rows.map((r) => r.n), [...Array.from({ length: 40 }, (_, i) => i), 100, 101]);
  const events = await Promise.all(Array.from({ length: 30 }, (_, i) => a.events.append({ type: 'probe', message: `event ${i}` })));
  assert.equal(events.map((e) => e.message), Array.from({ length: 30 }, (_, i) => `event ${i}`));
  assert.ok(events.every((e, i) => i === 0 || e.id > (events[i - 1]?.id ?? Infinity)), 'ids in the order the events were asked');
});

test('a listener closed while it reconnects leaves no session behind', async () => {
  const server = await testPostgres();
  const url = new URL(await server.newDatabase());
  const [admin] = await instances(1);
  const proxy = await relay(server.port);
  try {
    url.port = String(proxy.port);
    const name = `listen-probe-${randomBytes(4).toString('hex')}`;
    const sessions = async (): Promise<number> =>
      Number((await admin!.db.one<{ n: string }>('SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = $1', [name]))?.n ?? 0);
    const listener = await listenForChanges({ url: url.toString(), applicationName: name, onChange: () => undefined, onReconnect: () => undefined });
    assert.is(await sessions(), 1, 'the listening session is up');
    // The connection breaks; the reconnect reaches the relay and waits there.
    proxy.hold(true);
    proxy.cut();
    await until('the reconnect waiting at the relay', () => proxy.held() > 0);
    assert.not.ok(listener.connected());
    await listener.close();
    // The database answers again: a reconnect that outlived close() would LISTEN on now, and its
    // session would keep the process alive.
    proxy.hold(false);
    await until('the old session gone', async () => (await sessions()) === 0);
    await new Promise((r) => setTimeout(r, 1_000));
    assert.is(await sessions(), 0, 'no session once the listener is closed');
  } finally {
    await proxy.close();
  }
});

test('a database host gone quiet is found by the heartbeat; the listener comes back once it answers', async () => {
  const server = await testPostgres();
  const url = new URL(await server.newDatabase());
  const proxy = await relay(server.port);
  url.port = String(proxy.port);
  const lost: string[] = [];
  let back = 0;
  const listener = await listenForChanges({
    url: url.toString(),
    applicationName: 'heartbeat-probe',
    onChange: () => undefined,
    onReconnect: () => back++,
    onLost: (reason) => lost.push(reason),
    heartbeatMs: 200,
    heartbeatTimeoutMs: 300,
  });
  try {
    assert.equal(listener.state().up, true);
    // No reset, no close: only silence, which TCP alone would take minutes to call a loss.
    proxy.freeze();
    await until('the silence noticed', () => !listener.connected(), 5_000);
    assert.equal(lost, ['no answer in 0.3 s']);
    assert.is(listener.state().reason, 'no answer in 0.3 s');
    await new Promise((r) => setTimeout(r, 1_000));
    assert.is(back, 0, 'no reconnect while the address does not answer');
    proxy.thaw();
    await until('the listener back', () => listener.connected(), 15_000);
    assert.is(back, 1);
    assert.is(listener.state().reason, null);
  } finally {
    await listener.close();
    await proxy.close();
  }
});

if (missing) skipNote('store on PostgreSQL', missing);
else test.run();
