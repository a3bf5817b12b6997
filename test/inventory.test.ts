import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { TransitionError } from '../server/inventory/lifecycle.js';
import type { InventoryEvent, PlanMachine } from '../server/inventory/model.js';
import { migrate, openDb } from '../server/inventory/sqlite/db.js';
import { openSqliteInventory, type SqliteInventory } from '../server/inventory/sqlite/index.js';
import { MIGRATIONS } from '../server/inventory/sqlite/migrations.js';
import { AppError } from '../server/lib/errors.js';
import type { Mac } from '../server/lib/mac.js';
import { createSecretBox, hashToken } from '../server/lib/secrets.js';
import type { PgStore } from '../server/inventory/postgres/index.js';
import { openPgStore } from '../server/inventory/postgres/index.js';
import type { Store } from '../server/inventory/store.js';
import { TEST_ENGINE, heardAll, reopenableStore, storedRows, tempStore } from './lib/inventory.js';
import { testPostgres } from './lib/postgres.js';
import { runCli, startRacksmith } from './lib/racksmith.js';

/**
 * The store's repositories in-process on the engine of this run (RACKSMITH_TEST_DATABASE: SQLite,
 * the default, or PostgreSQL), sealed secrets, and what is only SQLite's (its files, migrations,
 * query plans, the data directory lock) or only PostgreSQL's (several instances at once).
 */
const test = suite(`inventory (${TEST_ENGINE}): repositories, sealed secrets, migrations, one instance per data directory, several instances on one database`);

/** Tests of one engine's own files or behaviour: registered in that engine's run only. */
const onSqlite = (name: string, fn: () => Promise<void>): void => {
  if (TEST_ENGINE === 'sqlite') test(`SQLite: ${name}`, fn);
};
const onPostgres = (name: string, fn: () => Promise<void>): void => {
  if (TEST_ENGINE === 'postgres') test(`PostgreSQL: ${name}`, fn);
};

const MAC = '52:54:00:10:00:01' as Mac;
const CLUSTER = { name: 'lab', ubuntuRelease: '22.04', kubernetesVersion: '1.28.4', containerRuntime: 'containerd', cni: 'flannel' } as const;

/** An inventory on a fixed file and key, so that a test can close it and open it again. */
function reopenable(): { dir: string; file: string; open(): SqliteInventory; destroy(): void } {
  const dir = mkdtempSync(join(tmpdir(), 'racksmith-inv-'));
  const file = join(dir, 'racksmith.db');
  const key = randomBytes(32);
  return {
    dir,
    file,
    open: () => openSqliteInventory({ file, box: createSecretBox(key) }),
    destroy: () => rmSync(dir, { recursive: true, force: true }),
  };
}

async function expectError<T extends Error>(fn: () => Promise<unknown>, type: new (...a: any[]) => T): Promise<T> {
  try {
    await fn();
  } catch (err) {
    assert.instance(err, type);
    return err as T;
  }
  assert.unreachable(`expected a ${type.name}`);
  throw new Error('unreachable');
}

test('a sighting records a discovered machine; assigning it later adopts it', async () => {
  const inv = await tempStore();
  try {
    const first = await inv.machines.recordSighting({ mac: MAC, arch: 'x86_64', firmware: 'efi', vendorClass: 'PXEClient:Arch:00007', source: 'dhcp' });
    assert.is(first.created, true);
    assert.is(first.machine.state, 'discovered');
    assert.is(first.machine.hostname, null);
    const again = await inv.machines.recordSighting({ mac: MAC, uuid: 'c0ffee00-0000-0000-0000-000000000001', source: 'http' });
    assert.is(again.created, false);
    // Facts accumulate: a later sighting without the arch does not erase it.
    assert.is(again.machine.arch, 'x86_64');
    assert.is(again.machine.uuid, 'c0ffee00-0000-0000-0000-000000000001');

    await inv.clusters.create(CLUSTER);
    const adopted = await inv.machines.create({ mac: MAC, hostname: 'node1', role: 'worker', cluster: 'lab', ip: '10.0.0.11' });
    assert.is(adopted.state, 'assigned');
    assert.is(adopted.firmware, 'efi');
    assert.is(adopted.firstSeen, first.machine.firstSeen);
    assert.ok(await inv.machines.seedToken(MAC), 'an assigned machine has a seed token');

    const states = (await inv.events.list({ mac: MAC })).filter((e) => e.type === 'state').map((e) => [e.data?.['from'], e.data?.['to'], e.source]);
    assert.equal(states, [
      [null, 'discovered', 'dhcp'],
      ['discovered', 'assigned', 'api'],
    ]);
    // An assigned machine is not adopted twice.
    const dup = await expectError(() => inv.machines.create({ mac: MAC, hostname: 'node2', role: 'worker', cluster: 'lab' }), AppError);
    assert.is(dup.kind, 'conflict');
    assert.is(dup.field, 'mac');
  } finally {
    await inv.destroy();
  }
});

test('transitions persist across a reopen, each with its event; refused ones change nothing', async () => {
  const store = await reopenableStore();
  try {
    let inv = await store.open();
    await inv.clusters.create(CLUSTER);
    await inv.machines.create({ mac: MAC, hostname: 'node1', role: 'control-plane', cluster: 'lab' });
    for (const [event, source] of [
      ['installer-served', 'http'],
      ['installed', 'http'],
      ['phoned-home', 'http'],
      ['join-started', 'orchestrator'],
    ] as const) {
      await inv.machines.transition(MAC, event, { source });
    }
    await inv.machines.transition(MAC, 'fail', { source: 'orchestrator', step: 'kubeadm-join', reason: 'timed out waiting for the API server' });
    const eventsBefore = (await inv.events.list({ mac: MAC })).length;
    const refused = await expectError(() => inv.machines.transition(MAC, 'installed', { source: 'http' }), TransitionError);
    assert.is(refused.code, 'ERR_TRANSITION');
    assert.is((await inv.events.list({ mac: MAC })).length, eventsBefore, 'a refused transition appended an event');
    await inv.close();

    inv = await store.open();
    const m = await inv.machines.get(MAC);
    assert.is(m?.state, 'failed');
    assert.is(m?.failedFrom, 'joining');
    assert.is(m?.failedStep, 'kubeadm-join');
    assert.is(m?.failedReason, 'timed out waiting for the API server');
    const path = (await inv.events.list({ mac: MAC })).filter((e) => e.type === 'state').map((e) => `${e.data?.['from']}→${e.data?.['to']}@${e.source}`);
    assert.equal(path, ['discovered→assigned@api', 'assigned→provisioning@http', 'provisioning→installed@http', 'installed→ready@http', 'ready→joining@orchestrator', 'joining→failed@orchestrator']);
    const retried = await inv.machines.transition(MAC, 'retry', { source: 'api' });
    assert.is(retried.state, 'ready', 'a failed join is retried from ready');
    assert.is(retried.failedFrom, null);
    // Resuming the event list after an id.
    const all = await inv.events.list({ mac: MAC });
    const tail = await inv.events.list({ mac: MAC, afterId: all[all.length - 3]?.id, limit: 10 });
    assert.is(tail.length, 2);
    await inv.close();
  } finally {
    await store.destroy();
  }
});

test('a sheet is imported whole as row by row: the placement, the assignment and its event per row in row order; a refused row is named, and nothing of the sheet stays', async () => {
  const inv = await tempStore();
  try {
    await inv.clusters.create(CLUSTER);
    await inv.clusters.create({ ...CLUSTER, name: 'edge' });
    const mac = (i: number): Mac => `52:54:00:40:00:${i.toString(16).padStart(2, '0')}` as Mac;
    // Row 2's machine was seen on the network first: adopted, keeping what DHCP saw.
    await inv.machines.recordSighting({ mac: mac(2), firmware: 'efi', arch: 'x86_64', source: 'dhcp' });
    const bmc = { driver: 'ipmi' as const, address: '10.0.9.7', username: 'admin', password: 'row-seven' };
    const rows = Array.from({ length: 40 }, (_, k) => ({
      row: k + 1,
      mac: mac(k + 1),
      hostname: `n${k + 1}`,
      role: k < 3 ? ('control-plane' as const) : ('worker' as const),
      cluster: k % 2 ? 'edge' : 'lab',
      ip: `10.0.4.${k + 1}`,
      rack: `r${k % 4}`,
      ...(k === 6 ? { bmc, installDisk: '/dev/nvme0n1', bootLoader: 'shim-grub' as const, secureBoot: true } : {}),
    }));
    const mark = await inv.events.latestId();
    const out = await inv.machines.importAll(rows);
    assert.equal(out.map((m) => m.mac), rows.map((r) => r.mac), 'in row order');
    assert.ok(out.every((m) => m.state === 'assigned'));
    const stored = await inv.machines.list();
    assert.is(stored.length, 40);
    const by = new Map(stored.map((m) => [m.mac, m]));
    for (const r of rows) {
      const m = by.get(r.mac)!;
      assert.equal([m.hostname, m.role, m.cluster, m.ip, m.rack, m.state], [r.hostname, r.role, r.cluster, r.ip, r.rack, 'assigned'], r.hostname);
    }
    assert.equal([by.get(mac(2))?.firmware, by.get(mac(2))?.arch], ['efi', 'x86_64'], 'the adopted machine keeps its sighting');
    const seventh = by.get(mac(7))!;
    assert.equal([seventh.bmc?.address, seventh.installDisk, seventh.bootLoader, seventh.secureBoot], ['10.0.9.7', '/dev/nvme0n1', 'shim-grub', true]);
    assert.is(await inv.machines.bmcPassword(mac(7)), 'row-seven', 'sealed and opened');
    assert.equal([by.get(mac(8))?.bmc, by.get(mac(8))?.bootLoader, by.get(mac(8))?.secureBoot], [null, null, null]);
    const tokens = await Promise.all(rows.map((r) => inv.machines.seedToken(r.mac)));
    assert.is(new Set(tokens).size, 40, 'a seed token each');
    assert.is((await inv.machines.findBySeedToken(tokens[9]!))?.mac, mac(10));
    const events = (await inv.events.list({ afterId: mark, limit: 100 })).filter((e) => e.type === 'state');
    assert.equal(events.map((e) => e.mac), rows.map((r) => r.mac), 'one state event per row, in row order');
    assert.equal([events[1]?.message, events[1]?.cluster, events[1]?.data], ['assigned as control-plane of cluster edge', 'edge', { from: 'discovered', to: 'assigned', event: 'assign' }]);

    // A refused row in a later sheet is named; nothing of that sheet stays.
    const next = (over: Record<string, unknown>) => [41, 42, 43].map((i) => ({ row: i - 40, mac: mac(i), hostname: `n${i}`, role: 'worker' as const, cluster: 'lab', ip: `10.0.4.${i}`, ...(i === 42 ? over : {}) }));
    const refusals: [Record<string, unknown>, RegExp][] = [
      [{ hostname: 'n5' }, /^row 2, column hostname: /],
      [{ cluster: 'nowhere' }, /^row 2, column cluster: no cluster named "nowhere"/],
      [{ mac: mac(3) }, /^row 2, column mac: a machine with MAC 52:54:00:40:00:03 already exists/],
    ];
    for (const [over, message] of refusals) {
      const err = await expectError(() => inv.machines.importAll(next(over)), AppError);
      assert.match(err.message, message);
      assert.is((await inv.machines.list()).length, 40, `nothing of the refused sheet stays (${err.message})`);
    }
    assert.is((await inv.events.list({ afterId: mark, limit: 100 })).length, events.length, 'nor any of its events');
  } finally {
    await inv.destroy();
  }
});

test('subscribers hear of events after commit, and never of a rolled-back import', async () => {
  const inv = await tempStore();
  try {
    const heard: InventoryEvent[] = [];
    const unsubscribe = inv.events.subscribe((e) => heard.push(e));
    await inv.clusters.create(CLUSTER);
    await heardAll(inv, heard);
    assert.is(heard.length, 1);
    const rows = [1, 2, 3].map((i) => ({ row: i, mac: `52:54:00:20:00:0${i}` as Mac, hostname: `w${i}`, role: 'worker' as const, cluster: 'lab', ip: `10.0.1.${i}` }));
    await inv.machines.create({ mac: '52:54:00:20:00:09' as Mac, hostname: 'taken', role: 'worker', cluster: 'lab', ip: '10.0.1.3' });
    await heardAll(inv, heard);
    const before = heard.length;
    const err = await expectError(() => inv.machines.importAll(rows), AppError);
    assert.match(err.message, /^row 3, column ip: /);
    assert.is(err.field, 'ip');
    // A marker committed after the rollback: once it is heard, anything of the import would have been.
    await inv.events.append({ type: 'test.marker', message: 'after the rollback' });
    await heardAll(inv, heard);
    assert.equal(heard.slice(before).map((e) => e.type), ['test.marker'], 'events of rolled-back rows reached subscribers');
    assert.is((await inv.machines.list({ cluster: 'lab' })).length, 1);
    rows[2] = { ...rows[2]!, ip: '10.0.1.33' };
    await inv.machines.importAll(rows);
    await heardAll(inv, heard);
    assert.is(heard.length, before + 4);
    unsubscribe();
    const others: InventoryEvent[] = [];
    const off = inv.events.subscribe((e) => others.push(e));
    await inv.machines.delete('52:54:00:20:00:01' as Mac);
    await heardAll(inv, others);
    off();
    assert.equal(others.map((e) => e.type), ['machine.deleted']);
    assert.is(heard.length, before + 4, 'an unsubscribed listener still hears');
  } finally {
    await inv.destroy();
  }
});

test('list order and keyset pages: every machine exactly once, even with writes between pages', async () => {
  const inv = await tempStore();
  try {
    await inv.clusters.create(CLUSTER);
    const rows = Array.from({ length: 57 }, (_, i) => ({
      row: i + 1,
      mac: `52:54:00:30:00:${i.toString(16).padStart(2, '0')}` as Mac,
      hostname: `h${(i * 7) % 57}`,
      role: 'worker' as const,
      cluster: 'lab',
      rack: i % 3 === 0 ? undefined : `r${i % 4}`,
    }));
    await inv.machines.importAll(rows);
    for (let i = 0; i < 5; i++) await inv.machines.recordSighting({ mac: `52:54:00:31:00:0${i}` as Mac, source: 'dhcp' });
    const all = await inv.machines.list();
    assert.is(all.length, 62);
    // Missing rack first, then missing hostname, then by name and MAC.
    const key = (m: (typeof all)[number]): string => `${m.rack === null ? '0' : '1' + m.rack}\u0000${m.hostname === null ? '0' : '1' + m.hostname}\u0000${m.mac}`;
    assert.equal(all.map(key), [...all.map(key)].sort());
    assert.is(all[0]?.hostname, null);

    const cursor = (m: (typeof all)[number]) => ({ rack: m.rack, hostname: m.hostname, mac: m.mac });
    const paged: string[] = [];
    let after;
    for (let guard = 0; guard < 100; guard++) {
      const page = await inv.machines.list({}, { limit: 10, after });
      paged.push(...page.map((m) => m.mac));
      if (page.length < 10) break;
      after = cursor(page[page.length - 1]!);
    }
    assert.equal(paged, all.map((m) => m.mac));

    // A machine added before the cursor and one deleted after it: no duplicate, no skip of the rest.
    const first = await inv.machines.list({}, { limit: 20 });
    await inv.machines.create({ mac: '52:54:00:32:00:01' as Mac, hostname: 'a-early', role: 'worker', cluster: 'lab' });
    const doomed = all[40]!;
    await inv.machines.delete(doomed.mac);
    const rest = await inv.machines.list({}, { after: cursor(first[19]!) });
    const seen = [...first, ...rest].map((m) => m.mac);
    assert.is(new Set(seen).size, seen.length);
    assert.equal(seen.sort(), all.map((m) => m.mac).filter((m) => m !== doomed.mac).sort());
    // Filters and pages combine.
    const r1 = await inv.machines.list({ rack: 'r1' });
    const r1Paged = [...(await inv.machines.list({ rack: 'r1' }, { limit: 3 })), ...(await inv.machines.list({ rack: 'r1' }, { after: cursor(r1[2]!) }))];
    assert.equal(r1Paged.map((m) => m.mac), r1.map((m) => m.mac));

    // The plan's narrow read: the same machines, exactly the six facts of each, discovered ones included.
    await inv.machines.transition('52:54:00:30:00:01' as Mac, 'installer-served', { source: 'http' });
    const whole = await inv.machines.list();
    const facts = await inv.machines.planFacts();
    const six = (m: PlanMachine): PlanMachine => ({ mac: m.mac, hostname: m.hostname, role: m.role, cluster: m.cluster, ip: m.ip, state: m.state });
    const byMac = (a: PlanMachine, b: PlanMachine): number => a.mac.localeCompare(b.mac);
    assert.equal([...facts].sort(byMac), whole.map(six).sort(byMac));
    assert.ok(facts.every((m) => Object.keys(m).length === 6), 'six columns, not whole rows');
    assert.ok(facts.some((m) => m.state === 'provisioning') && facts.some((m) => m.state === 'discovered' && m.role === null));
  } finally {
    await inv.destroy();
  }
});

test('a re-imported sheet: known rows updated or left, new ones created, a discovered one adopted; bulk updates all or none, naming the machine', async () => {
  const inv = await tempStore();
  try {
    await inv.clusters.create(CLUSTER);
    const bmc = { driver: 'ipmi' as const, address: '10.0.9.1', username: 'admin', password: 'first' };
    const [a, b, c, d] = [1, 2, 3, 4].map((i) => `52:54:00:10:01:0${i}` as Mac) as [Mac, Mac, Mac, Mac];
    await inv.machines.importAll([
      { row: 1, mac: a, hostname: 'a', role: 'worker', cluster: 'lab', rack: 'r1', bmc },
      { row: 2, mac: b, hostname: 'b', role: 'worker', cluster: 'lab', rack: 'r1' },
    ]);
    await inv.machines.recordSighting({ mac: c, firmware: 'efi', source: 'dhcp' });
    const out = await inv.machines.upsertAll([
      { row: 1, mac: a, hostname: 'a', role: 'worker', cluster: 'lab', rack: 'r1', bmc: { ...bmc, password: 'second' } },
      { row: 2, mac: b, hostname: 'b', role: 'worker', cluster: 'lab', rack: 'r1' },
      { row: 3, mac: c, hostname: 'c', role: 'worker', cluster: 'lab' },
      { row: 4, mac: d, hostname: 'd', role: 'control-plane', cluster: 'lab', rack: 'r2' },
    ]);
    assert.equal(out.map((r) => [r.machine.mac, r.outcome, r.machine.state]), [
      [a, 'updated', 'assigned'],
      [b, 'unchanged', 'assigned'],
      [c, 'created', 'assigned'],
      [d, 'created', 'assigned'],
    ]);
    assert.is(await inv.machines.bmcPassword(a), 'second');
    assert.is(out[2]?.machine.firmware, 'efi', 'the adopted machine keeps what its sighting saw');
    assert.equal((await inv.events.list({ mac: a, type: 'machine.updated' })).map((e) => e.message), ['updated bmc (password)']);
    // Nothing differs: nothing is written.
    const again = await inv.machines.upsertAll([{ row: 1, mac: a, hostname: 'a', role: 'worker', cluster: 'lab', rack: 'r1', bmc: { ...bmc, password: 'second' } }]);
    assert.equal(again.map((r) => r.outcome), ['unchanged']);
    // A conflict in a later row: no row of the sheet is written, and the error names the cell.
    const err = await expectError(
      () =>
        inv.machines.upsertAll([
          { row: 1, mac: a, hostname: 'a', role: 'worker', cluster: 'lab', rack: 'r9' },
          { row: 2, mac: '52:54:00:10:01:05' as Mac, hostname: 'b', role: 'worker', cluster: 'lab' },
        ]),
      AppError,
    );
    assert.equal([err.kind, err.code, err.field, err.message], ['conflict', 'ERR_DUPLICATE', 'hostname', 'row 2, column hostname: another machine already has this hostname']);
    assert.is((await inv.machines.get(a))?.rack, 'r1');
    // A known machine's change that clashes: named the same way, and the earlier rows' changes go too.
    const clash = await expectError(
      () =>
        inv.machines.upsertAll([
          { row: 1, mac: d, hostname: 'd', role: 'control-plane', cluster: 'lab', rack: 'r3' },
          { row: 2, mac: a, hostname: 'b', role: 'worker', cluster: 'lab' },
        ]),
      AppError,
    );
    assert.equal([clash.field, clash.message], ['hostname', 'row 2, column hostname: another machine already has this hostname']);
    assert.is((await inv.machines.get(d))?.rack, 'r2', "row 1's change is not kept");

    const moved = await inv.machines.updateAll([a, b], { rack: 'r7' }, 'test');
    assert.equal(moved.map((m) => m.rack), ['r7', 'r7']);
    const refused = await expectError(() => inv.machines.updateAll([a, '52:54:00:99:99:99' as Mac], { rack: 'r8' }, 'test'), AppError);
    assert.equal([refused.kind, refused.message], ['not-found', '52:54:00:99:99:99: no machine with MAC 52:54:00:99:99:99']);
    assert.is((await inv.machines.get(a))?.rack, 'r7', 'the first machine of a refused bulk update is unchanged');
    const unknownCluster = await expectError(() => inv.machines.update(a, { cluster: 'nope' }, 'test'), AppError);
    assert.equal([unknownCluster.kind, unknownCluster.field], ['invalid', 'cluster']);
  } finally {
    await inv.destroy();
  }
});

test('seed tokens: rotation invalidates the old one; lookup by token; tokens stored hashed', async () => {
  const inv = await tempStore();
  try {
    await inv.clusters.create(CLUSTER);
    await inv.machines.create({ mac: MAC, hostname: 'node1', role: 'worker', cluster: 'lab' });
    const first = await inv.machines.seedToken(MAC);
    assert.ok(first && first.length >= 32);
    assert.is((await inv.machines.findBySeedToken(first))?.mac, MAC);
    const second = await inv.machines.rotateSeedToken(MAC);
    assert.is.not(second, first);
    assert.is(await inv.machines.seedToken(MAC), second);
    assert.is(await inv.machines.findBySeedToken(first), null, 'the old token still works');
    assert.is((await inv.machines.findBySeedToken(second))?.mac, MAC);
    assert.is(await inv.machines.findBySeedToken(''), null);
    const [row] = await storedRows(inv, 'SELECT seed_token_hash FROM machines WHERE mac = ?', MAC);
    assert.is(row?.['seed_token_hash'], hashToken(second));
    await expectError(() => inv.machines.rotateSeedToken('52:54:00:99:99:99' as Mac), AppError);

    // API tokens: verified by hash, revocable, role kept.
    const { token, info } = await inv.tokens.create('operator', 'ops');
    assert.is((await inv.tokens.verify(token))?.role, 'operator');
    assert.is(await inv.tokens.verify(token + 'x'), null);
    await inv.tokens.revoke(info.id);
    assert.is(await inv.tokens.verify(token), null);
    assert.equal(await inv.tokens.list(), []);
  } finally {
    await inv.destroy();
  }
});

test('seed token binding: the first boot-script address binds it, the same address keeps it, another gets a new one; rotation and assignment unbind', async () => {
  const inv = await tempStore();
  try {
    await inv.clusters.create(CLUSTER);
    await inv.machines.create({ mac: MAC, hostname: 'node1', role: 'worker', cluster: 'lab' });
    const minted = await inv.machines.seedToken(MAC);
    assert.is(await inv.machines.seedAddress(MAC), null, 'not bound before a boot script carried it');
    const first = await inv.machines.seedTokenFor(MAC, '10.0.0.5');
    assert.equal(first, { token: minted, rebound: null });
    assert.is(await inv.machines.seedAddress(MAC), '10.0.0.5');
    assert.equal(await inv.machines.seedTokenFor(MAC, '10.0.0.5'), { token: minted, rebound: null }, 'iPXE asking again keeps its token');
    const moved = await inv.machines.seedTokenFor(MAC, '10.0.0.6');
    assert.ok(moved && moved.token !== minted);
    assert.is(moved?.rebound, '10.0.0.5');
    assert.is(await inv.machines.findBySeedToken(minted as string), null, 'the token handed to the other address is dead');
    assert.is(await inv.machines.seedAddress(MAC), '10.0.0.6');
    await inv.machines.rotateSeedToken(MAC);
    assert.is(await inv.machines.seedAddress(MAC), null, 'a reimage token is bound by its own boot script');
    await inv.machines.seedTokenFor(MAC, '10.0.0.7');
    await inv.machines.update(MAC, { cluster: null }, 'test');
    assert.is(await inv.machines.seedAddress(MAC), null);
    assert.is(await inv.machines.seedTokenFor(MAC, '10.0.0.7'), null, 'no role, no token');
    await inv.machines.update(MAC, { cluster: 'lab' }, 'test');
    assert.is(await inv.machines.seedAddress(MAC), null, 'a new assignment starts unbound');
  } finally {
    await inv.destroy();
  }
});

/**
 * Stores a BMC password (created, imported, patched), a cluster secret, a seed token and an API
 * token, checks that they open again with the key, and returns each in clear to look for at rest.
 */
async function storeSecrets(inv: Store): Promise<Record<string, string>> {
  const clear = {
    bmc: 'Bmc-Clear-Password',
    bmc2: 'Patched-Bmc-Pass',
    secret: '-----BEGIN KUBE CA KEY----- clear-text-ca-key',
  };
  await inv.clusters.create(CLUSTER);
  await inv.machines.create({ mac: MAC, hostname: 'node1', role: 'worker', cluster: 'lab', bmc: { driver: 'ipmi', address: '10.0.9.1', username: 'admin', password: clear.bmc } });
  await inv.machines.importAll([{ row: 1, mac: '52:54:00:10:00:02' as Mac, hostname: 'node2', role: 'worker', cluster: 'lab', bmc: { driver: 'ipmi', address: '10.0.9.2', username: 'admin', password: clear.bmc + '2' } }]);
  await inv.machines.update('52:54:00:10:00:02' as Mac, { bmc: { driver: 'ipmi', address: '10.0.9.2', username: 'root', password: clear.bmc2 } }, 'test');
  await inv.secrets.put('cluster:lab', 'ca-key', clear.secret);
  const seed = (await inv.machines.seedToken(MAC)) as string;
  const { token } = await inv.tokens.create('admin', 'a');
  assert.is(await inv.machines.bmcPassword(MAC), clear.bmc);
  assert.is(await inv.machines.bmcPassword('52:54:00:10:00:02' as Mac), clear.bmc2);
  assert.is(await inv.secrets.get('cluster:lab', 'ca-key'), clear.secret);
  assert.is((await inv.machines.findBySeedToken(seed))?.mac, MAC);
  return { ...clear, seed, token };
}

/** A store opened with another key opens nothing. */
async function wrongKeyOpensNothing(other: Store): Promise<void> {
  try {
    await other.machines.bmcPassword(MAC).then(
      () => assert.unreachable('opened with the wrong key'),
      (err: Error & { code?: string }) => assert.is(err.code, 'ERR_SECRET_KEY'),
    );
  } finally {
    await other.close();
  }
}

onSqlite('secrets are sealed at rest: no BMC password, secret, seed or API token in the .db or -wal bytes', async () => {
  const store = reopenable();
  try {
    const inv = store.open();
    const secrets = await storeSecrets(inv);
    const leaks = (): string[] => {
      const files = [store.file, store.file + '-wal'].filter((f) => existsSync(f));
      const bytes = Buffer.concat(files.map((f) => readFileSync(f)));
      assert.ok(bytes.length > 4096);
      // BMC addresses are stored in clear: proof that the search reads real row content.
      assert.ok(bytes.includes(Buffer.from('10.0.9.1')), 'the search does not see stored rows');
      return Object.entries(secrets).flatMap(([what, v]) => (bytes.includes(Buffer.from(v, 'utf8')) || bytes.includes(Buffer.from(v, 'utf16le')) ? [what] : []));
    };
    assert.ok(existsSync(store.file + '-wal'), 'the WAL is in use');
    assert.equal(leaks(), [], 'clear text in the open database files');
    await inv.close();
    assert.equal(leaks(), [], 'clear text in the database after close (checkpointed)');
    await wrongKeyOpensNothing(openSqliteInventory({ file: store.file, box: createSecretBox(randomBytes(32)) }));
  } finally {
    store.destroy();
  }
});

onPostgres('secrets are sealed at rest: no BMC password, secret, seed or API token in any row of any table', async () => {
  const store = await reopenableStore();
  try {
    const inv = await store.open();
    const secrets = await storeSecrets(inv);
    const tables = (await storedRows(inv, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")).map((r) => String(r['table_name']));
    assert.ok(tables.includes('machines') && tables.includes('secrets') && tables.includes('api_tokens'), tables.join());
    const stored = JSON.stringify(await Promise.all(tables.map((t) => storedRows(inv, `SELECT * FROM ${t}`))));
    // BMC addresses are stored in clear: proof that the search reads real row content.
    assert.ok(stored.includes('10.0.9.1'), 'the search does not see stored rows');
    assert.equal(Object.entries(secrets).flatMap(([what, v]) => (stored.includes(v) ? [what] : [])), [], 'clear text in stored rows');
    await inv.close();
    await wrongKeyOpensNothing(await store.open(randomBytes(32)));
  } finally {
    await store.destroy();
  }
});

onPostgres('two instances on one database at once: a MAC both discover is one machine, a host name or MAC both take is one machine and one 409', async () => {
  const url = await (await testPostgres()).newDatabase();
  const box = createSecretBox(randomBytes(32));
  const one = await openPgStore({ url, box, instanceName: 'one' });
  const two = await openPgStore({ url, box, instanceName: 'two' });
  const mac = (block: number, i: number): Mac => `52:54:00:6${block}:00:${i.toString(16).padStart(2, '0')}` as Mac;
  const N = 16;
  try {
    await one.clusters.create(CLUSTER);
    // Each MAC seen by both instances at the same moment (a broadcast DISCOVER both answer).
    const seen = await Promise.all(Array.from({ length: N }, (_, i) => Promise.all([one, two].map((s) => s.machines.recordSighting({ mac: mac(0, i), arch: 'x86_64', source: 'dhcp' })))));
    for (const pair of seen) {
      assert.equal(pair.map((r) => r.created).sort(), [false, true], 'exactly one instance created it');
      assert.equal(pair.map((r) => [r.machine.mac, r.machine.state, r.machine.arch]), [0, 1].map(() => [pair[0]!.machine.mac, 'discovered', 'x86_64']));
    }
    assert.is((await two.machines.list({ state: 'discovered' })).length, N);
    const discovered = (await one.events.list({ type: 'state', limit: 1000 })).filter((e) => e.data?.['to'] === 'discovered');
    assert.is(discovered.length, N, 'one discovered event per machine');

    // The same host name given to two new machines, one on each instance; then the same new MAC.
    const race = async (create: (s: PgStore, side: number, i: number) => Promise<unknown>): Promise<PromiseSettledResult<unknown>[][]> =>
      Promise.all(Array.from({ length: N }, (_, i) => Promise.allSettled([one, two].map((s, side) => create(s, side, i)))));
    const byHostname = await race((s, side, i) => s.machines.create({ mac: mac(1 + side, i), hostname: `twin${i}`, role: 'worker', cluster: 'lab' }));
    const byMac = await race((s, side, i) => s.machines.create({ mac: mac(3, i), hostname: `same-mac-${side}-${i}`, role: 'worker', cluster: 'lab' }));
    for (const [pairs, field] of [[byHostname, 'hostname'], [byMac, 'mac']] as const) {
      for (const pair of pairs) {
        assert.equal(pair.map((r) => r.status).sort(), ['fulfilled', 'rejected'], `${field}: one created, one refused`);
        const refused = pair.find((r): r is PromiseRejectedResult => r.status === 'rejected')!.reason as AppError;
        assert.instance(refused, AppError, String(refused));
        assert.equal([refused.kind, refused.code, refused.field], ['conflict', 'ERR_DUPLICATE', field]);
      }
    }
    assert.is((await one.machines.list({ state: 'assigned' })).length, 2 * N);
  } finally {
    await one.close();
    await two.close();
  }
});

onSqlite('migrations: applied once, idempotent on reopen, a newer schema is refused', async () => {
  const store = reopenable();
  try {
    const schema = (db: Database.Database): string =>
      JSON.stringify(db.prepare("SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY name").all());
    const latest = Math.max(...MIGRATIONS.map((m) => m.version));
    const db = openDb(store.file);
    const first = schema(db);
    assert.is(db.pragma('user_version', { simple: true }), latest);
    assert.is(db.pragma('journal_mode', { simple: true }), 'wal');
    assert.is(db.pragma('foreign_keys', { simple: true }), 1);
    db.prepare("INSERT INTO clusters (name, ubuntu_release, kubernetes_version, container_runtime, cni, created_at, updated_at) VALUES ('x', '22.04', '1.28.4', 'containerd', 'flannel', 'now', 'now')").run();
    migrate(db, MIGRATIONS);
    db.close();
    const again = openDb(store.file);
    assert.is(schema(again), first);
    assert.is(again.prepare<[], { n: number }>('SELECT COUNT(*) AS n FROM clusters').get()?.n, 1, 'data kept across reopen');
    // A database written by a newer racksmith is not touched by an older one.
    again.pragma(`user_version = ${latest + 1}`);
    again.close();
    try {
      openDb(store.file).close();
      assert.unreachable('opened a newer schema');
    } catch (err) {
      assert.match((err as Error).message, new RegExp(`schema is version ${latest + 1}, newer than this racksmith \\(${latest}\\)`));
    }
    // A failing migration leaves the version where it was (each runs in its own transaction).
    const fresh = join(store.dir, 'fresh.db');
    const broken = [...MIGRATIONS, { version: latest + 1, name: 'broken', sql: 'CREATE TABLE t (a); CREATE TABLE t (a);' }];
    assert.throws(() => openDb(fresh, broken));
    const check = new Database(fresh);
    assert.is(check.pragma('user_version', { simple: true }), latest);
    assert.is((check.prepare("SELECT COUNT(*) AS n FROM sqlite_master WHERE name = 't'").get() as { n: number }).n, 0);
    check.close();
  } finally {
    store.destroy();
  }
});

onSqlite('a second racksmith on the same data directory refuses to start, with a clear message', async () => {
  const rs = await startRacksmith({ env: { RACKSMITH_LOG_LEVEL: 'warn' } });
  try {
    const second = await runCli(['serve'], { RACKSMITH_DATA_DIR: rs.dataDir, RACKSMITH_HTTP_PORT: '0', RACKSMITH_HTTP_ADDRESS: '127.0.0.1', RACKSMITH_DHCP_MODE: 'off', RACKSMITH_TFTP_PORT: '0' });
    assert.is(second.code, 1);
    assert.is(second.stderr, `racksmith: data directory ${rs.dataDir} is in use by another racksmith (pid ${rs.child.pid}); stop it or use another --data-dir\n`);
    assert.is(second.stdout, '');
    // The first one is unharmed, and the CLI's own store commands still work beside it.
    assert.is((await fetch(`${rs.url}/healthz`)).status, 200);
    const token = await runCli(['token', 'create', '--role', 'viewer'], { RACKSMITH_DATA_DIR: rs.dataDir });
    assert.is(token.code, 0, token.stderr);
    assert.is((await fetch(`${rs.url}/api/v1/clusters`, { headers: { authorization: `Bearer ${token.stdout.trim()}` } })).status, 200);
  } finally {
    assert.is(await rs.stop(), 0);
  }
  // Once the first has stopped, the directory is free again.
  const next = await startRacksmith({ dataDir: rs.dataDir, env: { RACKSMITH_LOG_LEVEL: 'warn' } });
  assert.is(await next.stop(), 0);
  rmSync(rs.dataDir, { recursive: true, force: true });
});

onSqlite('the data directory: database, WAL, SHM and lock files are 0600 even under umask 000 in a 0777 directory; files left wider are narrowed; a directory racksmith makes is 0700', async () => {
  const parent = mkdtempSync(join(tmpdir(), 'racksmith-modes-'));
  const wide = join(parent, 'wide');
  mkdirSync(wide);
  chmodSync(wide, 0o777);
  const FILES = ['racksmith.db', 'racksmith.db-wal', 'racksmith.db-shm', 'racksmith.lock', 'racksmith.pid'];
  const modes = (): Record<string, string> => Object.fromEntries(FILES.map((f) => [f, existsSync(join(wide, f)) ? (statSync(join(wide, f)).mode & 0o777).toString(8) : 'missing']));
  const everyPrivate = Object.fromEntries(FILES.map((f) => [f, '600']));
  try {
    const loose = await startRacksmith({ dataDir: wide, wrap: ['sh', '-c', 'umask 000; exec "$@"', 'sh'], env: { RACKSMITH_LOG_LEVEL: 'warn' } });
    try {
      assert.is((await fetch(`${loose.url}/healthz`)).status, 200);
      assert.equal(modes(), everyPrivate);
    } finally {
      assert.is(await loose.stop(), 0);
    }
    // An older racksmith, a restore or a hand-made directory left them readable by all.
    for (const f of FILES) if (existsSync(join(wide, f))) chmodSync(join(wide, f), 0o644);
    const again = await startRacksmith({ dataDir: wide, env: { RACKSMITH_LOG_LEVEL: 'warn' } });
    try {
      assert.equal(modes(), everyPrivate);
    } finally {
      assert.is(await again.stop(), 0);
    }
    const made = join(parent, 'new', 'data');
    const fresh = await startRacksmith({ dataDir: made, env: { RACKSMITH_LOG_LEVEL: 'warn' } });
    assert.is(await fresh.stop(), 0);
    assert.is((statSync(made).mode & 0o777).toString(8), '700');
    assert.is((statSync(join(made, 'racksmith.db')).mode & 0o777).toString(8), '600');
  } finally {
    rmSync(parent, { recursive: true, force: true });
  }
});

test('a machine by its address is one keyed lookup (the unique index on ip), never a scan', async () => {
  const inv = await tempStore();
  try {
    await inv.clusters.create(CLUSTER);
    await inv.machines.create({ mac: MAC, hostname: 'node1', role: 'worker', cluster: 'lab', ip: '10.0.0.11' });
    await inv.machines.create({ mac: '52:54:00:10:00:02' as Mac, hostname: 'node2', role: 'worker', cluster: 'lab' });
    assert.is((await inv.machines.byIp('10.0.0.11'))?.mac, MAC);
    assert.is(await inv.machines.byIp('10.0.0.12'), null);
    await inv.machines.update(MAC, { ip: '10.0.0.12' }, 'api');
    assert.is(await inv.machines.byIp('10.0.0.11'), null, 'the old address no longer names it');
    assert.is((await inv.machines.byIp('10.0.0.12'))?.hostname, 'node1');
    if (inv.engine === 'sqlite') {
      const plan = (await storedRows(inv, 'EXPLAIN QUERY PLAN SELECT mac FROM machines WHERE ip = ?', '10.0.0.12')).map((p) => String(p['detail']));
      assert.ok(plan.some((p) => /USING INDEX/.test(p)) && !plan.some((p) => /^SCAN/.test(p)), JSON.stringify(plan));
    } else {
      // Two rows are read faster whole than through an index: the planner is asked what it would
      // do once the table is large (no sequential scan), and it must have the unique index to use.
      const plan = await (inv as unknown as PgStore).db.tx(async (c) => {
        await c.query('SET LOCAL enable_seqscan = off');
        return (await c.query<{ 'QUERY PLAN': string }>('EXPLAIN SELECT mac FROM machines WHERE ip = $1', ['10.0.0.12'])).rows.map((r) => r['QUERY PLAN']);
      });
      assert.ok(/Index (Only )?Scan using machines_ip_key/.test(plan[0] ?? ''), plan.join('\n'));
    }
  } finally {
    await inv.destroy();
  }
});

test('boot steps: many in one commit; a refused transition fails its own step only, and records nothing of it', async () => {
  const inv = await tempStore();
  try {
    await inv.clusters.create(CLUSTER);
    const a = '52:54:00:10:00:0a' as Mac;
    const b = '52:54:00:10:00:0b' as Mac;
    await inv.machines.create({ mac: a, hostname: 'a', role: 'worker', cluster: 'lab' });
    await inv.machines.recordSighting({ mac: b, source: 'dhcp' });
    const heard: InventoryEvent[] = [];
    const off = inv.events.subscribe((e) => heard.push(e));
    // What was heard before the batch is set aside (on PostgreSQL the earlier events arrive a moment later).
    await inv.events.append({ type: 'test.marker', message: 'before the boot steps' });
    await heardAll(inv, heard);
    const start = heard.length;
    const step = (mac: Mac, transition: boolean) => ({
      sighting: { mac, arch: 'x86_64', firmware: 'efi' as const, source: 'http 10.0.0.5' },
      transition: transition ? { event: 'installer-served' as const, message: 'installer served' } : null,
      instanceId: transition ? `iid-${mac}` : null,
      event: { cluster: transition ? 'lab' : null, type: 'http.ipxe', message: 'iPXE script', data: { script: transition ? 'install' : 'wait' } },
      lastStep: transition ? 'installer' : 'ipxe',
    });
    // b is discovered: installer-served is refused for it.
    const out = await inv.machines.recordBootScripts([step(a, true), step(b, true), step(b, false)]);
    await heardAll(inv, heard);
    off();
    assert.equal(out.map((o) => o.ok), [true, false, true]);
    assert.instance((out[1] as { error: Error }).error, TransitionError);
    const ma = await inv.machines.get(a);
    assert.equal([ma?.state, ma?.instanceId, ma?.lastStep, ma?.firmware, ma?.arch], ['provisioning', `iid-${a}`, 'installer', 'efi', 'x86_64']);
    const mb = await inv.machines.get(b);
    assert.equal([mb?.state, mb?.instanceId, mb?.lastStep], ['discovered', null, 'ipxe']);
    assert.equal(
      (await inv.events.list({ mac: b })).map((e) => e.type),
      ['state', 'http.ipxe'],
      'the refused step wrote no event',
    );
    assert.equal(heard.slice(start).map((e) => `${e.mac} ${e.type}`), [`${a} state`, `${a} http.ipxe`, `${b} http.ipxe`], 'subscribers hear the committed events only, after the commit');
  } finally {
    await inv.destroy();
  }
});

test.run();
