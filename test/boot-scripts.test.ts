import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import type { BootScriptRecord, BootScriptOutcome } from '../server/inventory/store.js';
import { bootScriptRecorder } from '../server/http/boot-scripts.js';

/** The boot path's group commit, over a recording fake of the store's batch write. */
const test = suite('boot steps: one commit per turn of the event loop');

function step(n: number): BootScriptRecord {
  return { sighting: { mac: `52:54:00:00:00:${n.toString(16).padStart(2, '0')}` as BootScriptRecord['sighting']['mac'], source: 'http' }, transition: null, instanceId: null, event: { type: 'http.ipxe', message: `#${n}` }, lastStep: 'ipxe' };
}

test('the steps of one turn go in one batch; each caller hears its own outcome', async () => {
  const batches: string[][] = [];
  const record = bootScriptRecorder({
    async recordBootScripts(steps) {
      batches.push(steps.map((s) => s.event.message));
      return steps.map((s): BootScriptOutcome => (s.event.message === '#2' ? { ok: false, error: new Error('refused') } : { ok: true }));
    },
  });
  const results = await Promise.allSettled([1, 2, 3].map((n) => record(step(n))));
  assert.equal(batches, [['#1', '#2', '#3']]);
  assert.equal(results.map((r) => r.status), ['fulfilled', 'rejected', 'fulfilled']);
  assert.is((results[1] as PromiseRejectedResult).reason.message, 'refused');
  await record(step(4));
  assert.equal(batches.length, 2, 'a later turn, a new batch');
});

test('a long burst is committed in slices of at most 256; a failed commit fails its batch', async () => {
  const sizes: number[] = [];
  let fail = false;
  const record = bootScriptRecorder({
    async recordBootScripts(steps) {
      sizes.push(steps.length);
      if (fail) throw new Error('disk I/O error');
      return steps.map((): BootScriptOutcome => ({ ok: true }));
    },
  });
  await Promise.all(Array.from({ length: 600 }, (_, i) => record(step(i % 250))));
  assert.equal(sizes, [256, 256, 88]);
  fail = true;
  const r = await Promise.allSettled([record(step(1)), record(step(2))]);
  assert.equal(r.map((x) => x.status), ['rejected', 'rejected']);
});

test.run();
