import { suite } from '../lib/suite.js';
import * as assert from 'uvu/assert';
import { MAX_WAITING_STEPS, STEP_BATCH, StepJournal, type StepWrites } from '../../server/dhcp/journal.js';
import type { BootScriptOutcome, BootScriptRecord } from '../../server/inventory/store.js';
import type { Mac } from '../../server/lib/mac.js';
import { silentLogger } from '../../server/lib/log.js';

/**
 * The DHCP step journal with stores that record, refuse, fail or stall: order kept, one commit
 * at a time, every step that does not land counted, the backlog bounded.
 */

const test = suite('DHCP step journal');

function step(i: number): BootScriptRecord {
  const mac = `02:00:00:00:${((i >> 8) & 255).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}` as Mac;
  return { sighting: { mac, source: 'dhcp' }, transition: null, instanceId: null, event: { type: 'dhcp.discover', message: `step ${i}` }, lastStep: 'dhcp' };
}

function journalOver(write: (steps: readonly BootScriptRecord[]) => Promise<BootScriptOutcome[]>): { journal: StepJournal; unrecorded: () => number } {
  let unrecorded = 0;
  const machines: StepWrites = { recordBootScripts: write };
  const journal = new StepJournal({ machines, log: silentLogger(), unrecorded: () => unrecorded++ });
  return { journal, unrecorded: () => unrecorded };
}

test('steps reach the store in the order recorded, in batches, never two commits at once', async () => {
  const seen: string[] = [];
  const sizes: number[] = [];
  let running = 0;
  let most = 0;
  const { journal, unrecorded } = journalOver(async (steps) => {
    most = Math.max(most, ++running);
    await new Promise((r) => setTimeout(r, 5));
    seen.push(...steps.map((s) => s.event.message));
    sizes.push(steps.length);
    running--;
    return steps.map(() => ({ ok: true }) as const);
  });
  const COUNT = STEP_BATCH * 2 + 10;
  for (let i = 0; i < 10; i++) journal.record(step(i));
  await new Promise((r) => setTimeout(r, 1));
  for (let i = 10; i < COUNT; i++) journal.record(step(i));
  await journal.settled();
  assert.equal(seen, Array.from({ length: COUNT }, (_, i) => `step ${i}`));
  assert.is(most, 1);
  assert.ok(sizes.length >= 3 && sizes.every((n) => n <= STEP_BATCH), `batches ${sizes.join(',')}`);
  assert.is(unrecorded(), 0);
  assert.is(journal.waiting, 0);
});

test('a refused step and a failed commit are counted; the steps after them are still written', async () => {
  let call = 0;
  const written: string[] = [];
  const { journal, unrecorded } = journalOver(async (steps) => {
    call++;
    if (call === 2) throw new Error('the store is unavailable');
    return steps.map((s) => {
      if (s.event.message === 'step 1') return { ok: false, error: new Error('refused') };
      written.push(s.event.message);
      return { ok: true };
    });
  });
  journal.record(step(0));
  journal.record(step(1));
  await journal.settled();
  journal.record(step(2));
  journal.record(step(3));
  await journal.settled();
  journal.record(step(4));
  await journal.settled();
  assert.equal(written, ['step 0', 'step 4']);
  assert.is(unrecorded(), 3, 'one refused, two in the failed commit');
});

test('a store that never answers: the backlog stops at its bound and the rest is counted', async () => {
  const { journal, unrecorded } = journalOver(() => new Promise(() => undefined));
  for (let i = 0; i < MAX_WAITING_STEPS + 25; i++) journal.record(step(i % 1000));
  assert.is(journal.waiting, MAX_WAITING_STEPS);
  assert.is(unrecorded(), 25);
});

test.run();
