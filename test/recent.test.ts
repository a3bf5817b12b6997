import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { RecentAnswers } from '../server/lib/recent.js';

const recent = suite('recent answers (two generations, TTL)');

recent('an answer is given back while younger than the TTL, a null answer too', () => {
  const r = new RecentAnswers<string | null>(1_000, 4);
  r.set('a', 'machine-a', 0);
  r.set('b', null, 0);
  assert.is(r.get('a', 999), 'machine-a');
  assert.is(r.get('b', 999), null);
  assert.is(r.get('a', 1_000), undefined);
  assert.is(r.get('c', 0), undefined);
});

recent('a newer answer replaces an older one for the same key', () => {
  const r = new RecentAnswers<number>(1_000, 4);
  r.set('a', 1, 0);
  r.set('a', 2, 500);
  assert.is(r.get('a', 1_200), 2);
});

recent('memory is bounded: the oldest generation is dropped whole', () => {
  const r = new RecentAnswers<number>(60_000, 2);
  for (const [i, k] of ['a', 'b', 'c', 'd', 'e'].entries()) r.set(k, i, 0);
  // young {e}, old {c, d}: a and b went with the generation before.
  assert.is(r.get('a', 1), undefined);
  assert.is(r.get('b', 1), undefined);
  assert.is(r.get('c', 1), 2);
  assert.is(r.get('d', 1), 3);
  assert.is(r.get('e', 1), 4);
});

recent.run();
