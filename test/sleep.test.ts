import { getEventListeners } from 'node:events';
import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { sleepUnlessAborted, waitAtMost } from '../server/lib/sleep.js';

/**
 * The two waits the services share: a sleep an abort cuts short (retry delays, the Redfish
 * driver's polls, the orchestrator's step pauses) and a bounded wait for the shutdown path.
 */
const test = suite('sleep: cut short by an abort, bounded waits');

test('a sleep lasts its time, and leaves no listener on the signal', async () => {
  const signal = new AbortController().signal;
  const t0 = performance.now();
  await sleepUnlessAborted(40, signal);
  assert.ok(performance.now() - t0 >= 35, 'it waited');
  assert.is(getEventListeners(signal, 'abort').length, 0, 'a long-lived signal (a service\'s) must not collect a listener per sleep');
});

test('an abort ends a sleep early, and it resolves: callers check the signal', async () => {
  const c = new AbortController();
  setTimeout(() => c.abort(), 20);
  const ended = await waitAtMost(sleepUnlessAborted(60_000, c.signal).then(() => 'resolved'), 5_000);
  assert.is(ended, 'resolved');
  const aborted = AbortSignal.abort();
  assert.is(await waitAtMost(sleepUnlessAborted(60_000, aborted).then(() => 'at once'), 5_000), 'at once', 'an already aborted signal does not wait');
});

test('waitAtMost: the value in time, undefined when late or rejected', async () => {
  assert.is(await waitAtMost(Promise.resolve(7), 1_000), 7);
  assert.is(await waitAtMost(new Promise(() => undefined), 30), undefined, 'a promise that never settles');
  assert.is(await waitAtMost(Promise.reject(new Error('gone')), 1_000), undefined, 'a rejection counts as settled');
});

test.run();
