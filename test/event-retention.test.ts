import * as assert from 'uvu/assert';
import type { Mac } from '../server/lib/mac.js';
import { createLogger } from '../server/lib/log.js';
import { BOOT_TRAFFIC, createEventRetentionService, cutoffOf, retentionRules } from '../server/inventory/retention.js';
import { tempStore, type TempStore } from './lib/inventory.js';
import { suite } from './lib/suite.js';

/**
 * Event retention on the store of this run (SQLite, or PostgreSQL in the matrix): boot traffic is
 * deleted after its days, everything else after its own, in batches, oldest first, nothing newer
 * touched and no id reused; the service's pass with a fake clock.
 */
const test = suite('event retention: boot traffic after days, the rest after months, in batches');

const MAC = '52:54:00:0e:00:01' as Mac;
const DAY = 86_400_000;
const T0 = Date.parse('2026-01-01T00:00:00.000Z');
let clock = T0;
const now = (): Date => new Date(clock);
const log = createLogger('silent');
let store: TempStore;

test.before.each(async () => {
  clock = T0;
  store = await tempStore({ now });
});
test.after.each(async () => {
  await store.destroy();
});

async function append(type: string, at: number): Promise<number> {
  clock = at;
  return (await store.events.append({ mac: MAC, type, source: 'test', message: type })).id;
}
async function types(): Promise<string[]> {
  return (await store.events.list({ limit: 10_000 })).map((e) => e.type);
}

test('the rules: 0 keeps for ever, boot traffic its own rule only when shorter', () => {
  assert.equal(
    retentionRules(90, 7).map((r) => [r.rule, r.days]),
    [
      ['boot', 7],
      ['all', 90],
    ],
  );
  assert.equal(retentionRules(0, 7).map((r) => r.rule), ['boot']);
  assert.equal(retentionRules(90, 0).map((r) => r.rule), ['all']);
  assert.equal(retentionRules(5, 7).map((r) => r.rule), ['all'], 'every event already goes sooner');
  assert.equal(retentionRules(0, 0), []);
  assert.is(cutoffOf(new Date(T0), 7), '2025-12-25T00:00:00.000Z');
});

test('firstIdSince: the first event at or after the time, or the next id', async () => {
  assert.is(await store.events.firstIdSince(new Date(T0).toISOString()), 1, 'an empty store');
  const a = await append('http.ipxe', T0);
  const b = await append('http.ipxe', T0 + DAY);
  assert.is(await store.events.firstIdSince(new Date(T0).toISOString()), a);
  assert.is(await store.events.firstIdSince(new Date(T0 + 1).toISOString()), b);
  assert.is(await store.events.firstIdSince(new Date(T0 + 2 * DAY).toISOString()), b + 1, 'all older');
});

test('prune: only the types given, below the id, oldest first, at most the limit', async () => {
  const ids: number[] = [];
  for (const t of ['http.ipxe', 'machine.updated', 'dhcp.ack', 'http.seed.refused', 'tftp.transfer', 'http.seed', 'boot.grub', 'installer.event', 'http.artifact']) ids.push(await append(t, T0));
  const newer = await append('http.ipxe', T0 + DAY);
  assert.is(await store.events.prune(newer, BOOT_TRAFFIC, 2), 2);
  assert.equal(await types(), ['machine.updated', 'http.seed.refused', 'tftp.transfer', 'http.seed', 'boot.grub', 'installer.event', 'http.artifact', 'http.ipxe']);
  assert.is(await store.events.prune(newer, BOOT_TRAFFIC, 100), 4);
  assert.equal(await types(), ['machine.updated', 'http.seed.refused', 'installer.event', 'http.ipxe'], 'refusals, installer reports and states stay; the newer one too');
  assert.is(await store.events.prune(newer, null, 100), 3);
  assert.equal(await types(), ['http.ipxe']);
  assert.is(await store.events.prune(newer, { families: [], exact: [] }, 100), 0, 'no types: nothing');
  const next = await append('machine.updated', T0 + DAY);
  assert.is(next, newer + 1, 'ids are not reused after a delete');
  assert.is(await store.events.latestId(), next);
});

test('a pass with the default days: boot traffic after 7, the rest after 90, in batches, counted', async () => {
  for (let i = 0; i < 7; i++) await append('http.ipxe', T0 + i * 1000);
  await append('cluster.state', T0 + 8000);
  await append('http.ipxe', T0 + 10 * DAY);
  await append('machine.updated', T0 + 10 * DAY);
  const svc = createEventRetentionService({ events: store.events, now, eventDays: 90, bootDays: 7, log, batch: 3, pauseMs: 0 });
  clock = T0 + 12 * DAY;
  assert.equal(await svc.pass(), { boot: 7, all: 0 });
  assert.equal(await types(), ['cluster.state', 'http.ipxe', 'machine.updated']);
  clock = T0 + 101 * DAY;
  assert.equal(await svc.pass(), { boot: 1, all: 2 });
  assert.equal(await types(), []);
  const h = svc.health();
  assert.equal((h.detail as { pruned: unknown }).pruned, { boot: 8, all: 2 });
  assert.is(h.state, 'stopped', 'not started: passes by hand only');
});

test('the service: off when both are 0; started, it passes after its first wait and stops cleanly', async () => {
  const off = createEventRetentionService({ events: store.events, now, eventDays: 0, bootDays: 0, log });
  await off.start({ signal: new AbortController().signal, log, fatal: () => undefined });
  assert.is(off.health().state, 'off');
  await off.stop();
  await append('dhcp.offer', T0);
  clock = T0 + 30 * DAY;
  const svc = createEventRetentionService({ events: store.events, now, eventDays: 90, bootDays: 7, log, firstAfterMs: 10, everyMs: 60_000 });
  await svc.start({ signal: new AbortController().signal, log, fatal: () => undefined });
  for (let i = 0; i < 100 && (await types()).length > 0; i++) await new Promise((r) => setTimeout(r, 20));
  assert.equal(await types(), [], 'the first pass ran on its own');
  await svc.stop();
  assert.is(svc.health().state, 'stopped');
});

test.run();
