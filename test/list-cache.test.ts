import type { Server } from 'node:http';
import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { createApp } from '../server/http/app.js';
import { createResponseCache } from '../server/http/api/response-cache.js';
import type { Store } from '../server/inventory/store.js';
import type { Mac } from '../server/lib/mac.js';
import { silentLogger } from '../server/lib/log.js';
import { TEST_ENGINE, anotherInstance, tempStore, type TempStore } from './lib/inventory.js';

/**
 * Reused list responses are never stale: a write through any path — with or without an event,
 * from this connection or another process's — shows in the very next GET /machines.
 */
const test = suite(`list cache (${TEST_ENGINE}): reused only while nothing changed`);

let inv: TempStore;
let other: Store;
let server: Server;
let base = '';
let token = '';
const MAC = '52:54:00:50:00:01' as Mac;
let reads = 0;

async function list(query = ''): Promise<any[]> {
  const r = await fetch(`${base}/api/v1/machines${query}`, { headers: { authorization: `Bearer ${token}` } });
  assert.is(r.status, 200);
  return (await r.json()) as any[];
}

test.before(async () => {
  inv = await tempStore();
  // A second connection to the same database stands for another process (the CLI) or instance.
  other = await anotherInstance(inv);
  // Counts the store reads behind GET /machines, to see that a reused response skipped them.
  const machines = { ...inv.machines, list: (...a: Parameters<typeof inv.machines.list>) => (reads++, inv.machines.list(...a)) };
  const app = createApp({ log: silentLogger(), version: 'test', health: () => ({}), inventory: { ...inv, machines }, revision: inv.revision, sshPublicKey: async () => 'ssh-ed25519 AAAA test' });
  server = await new Promise<Server>((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  const a = server.address();
  base = `http://127.0.0.1:${typeof a === 'object' && a ? a.port : 0}`;
  token = (await inv.tokens.create('admin', 't')).token;
  await inv.clusters.create({ name: 'c', ubuntuRelease: '22.04', kubernetesVersion: '1.28.4', containerRuntime: 'containerd', cni: 'flannel' });
  await inv.machines.create({ mac: MAC, hostname: 'n1', role: 'worker', cluster: 'c' });
});

test.after(async () => {
  await new Promise((r) => server?.close(r));
  await other?.close();
  await inv?.destroy();
});

test('an unchanged store: the second identical list is not read again', async () => {
  const first = reads;
  await list();
  await list();
  await list('?limit=5');
  await list('?limit=5');
  assert.is(reads - first, 2);
});

test('a write without an event (boot step) shows at once', async () => {
  assert.is((await list())[0].lastStep, null);
  await inv.machines.setLastStep(MAC, 'tftp');
  assert.is((await list())[0].lastStep, 'tftp');
});

/**
 * SQLite sees another connection's commit at its next read, at once; a PostgreSQL instance
 * hears of another's through the database's notification, a moment later (5 s at most here).
 */
async function heardOf(before: string): Promise<void> {
  const tries = inv.engine === 'postgres' ? 500 : 0;
  for (let i = 0; i < tries && inv.revision() === before; i++) await new Promise((r) => setTimeout(r, 10));
  assert.is.not(inv.revision(), before, 'the store did not hear of the other write');
}

test('a write committed by another connection shows as soon as the store hears of it', async () => {
  let before = inv.revision();
  assert.is((await list())[0].lastStep, 'tftp');
  await other.machines.setLastStep(MAC, 'ipxe');
  await heardOf(before);
  assert.is((await list())[0].lastStep, 'ipxe');
  before = inv.revision();
  await other.machines.recordSighting({ mac: '52:54:00:50:00:02' as Mac, source: 'dhcp' });
  await heardOf(before);
  assert.is((await list()).length, 2);
});

test('filtered and paged lists are kept apart', async () => {
  assert.is((await list('?state=discovered')).length, 1);
  assert.is((await list('?state=assigned')).length, 1);
  assert.is((await list('?limit=1')).length, 1);
  assert.is((await list()).length, 2);
  await inv.machines.delete(MAC);
  assert.is((await list('?state=assigned')).length, 0);
  assert.is((await list()).length, 1);
});

test('the cache keeps at most max entries and drops an entry of another revision', () => {
  const cache = createResponseCache(2);
  const r = (s: string) => ({ body: Buffer.from(s), headers: {} });
  cache.set('a', '1', r('a'));
  cache.set('b', '1', r('b'));
  cache.set('c', '1', r('c'));
  assert.is(cache.get('a', '1'), undefined);
  assert.is(cache.get('b', '1')?.body.toString(), 'b');
  assert.is(cache.get('c', '2'), undefined);
  assert.is(cache.get('c', '1'), undefined, 'a stale entry is dropped when seen');
});

test.run();
