import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { createBmcGate, dispatch, emptyGate, enqueue, release, type GateState } from '../server/power/scheduler.js';

/**
 * The BMC gate: one command per BMC, a global limit, FIFO otherwise. Each case is a script of
 * operations (`+id@bmc` enqueue, `-id` release) and the jobs started after each step.
 */
const test = suite('scheduler: one command per BMC, a global limit');

function play(limit: number, script: string[]): string[] {
  let s: GateState = emptyGate(limit);
  const started: string[] = [];
  for (const op of script) {
    if (op.startsWith('+')) {
      const [id, key] = op.slice(1).split('@');
      s = enqueue(s, { id: Number(id), key: key ?? '' });
    } else {
      s = release(s, Number(op.slice(1)));
    }
    const d = dispatch(s);
    s = d.state;
    started.push(d.start.map((j) => j.id).join(',') || '-');
    assert.ok(s.running.length <= limit, 'over the global limit');
    assert.is(new Set(s.running.map((j) => j.key)).size, s.running.length, 'two commands on one BMC');
  }
  return started;
}

const CASES: [string, number, string[], string[]][] = [
  ['different BMCs start at once up to the limit', 2, ['+1@a', '+2@b', '+3@c'], ['1', '2', '-']],
  ['the third starts when a slot frees', 2, ['+1@a', '+2@b', '+3@c', '-1'], ['1', '2', '-', '3']],
  ['the same BMC waits for its previous command', 4, ['+1@a', '+2@a', '+3@b', '-1'], ['1', '-', '3', '2']],
  ['a busy BMC does not block younger jobs for idle BMCs', 2, ['+1@a', '+2@a', '+3@b'], ['1', '-', '3']],
  ['FIFO among waiting jobs', 1, ['+1@a', '+2@b', '+3@c', '-1', '-2'], ['1', '-', '-', '2', '3']],
  ['releasing a queued job drops it', 1, ['+1@a', '+2@b', '-2', '-1'], ['1', '-', '-', '-']],
];
for (const [name, limit, script, want] of CASES) test(name, () => assert.equal(play(limit, script), want));

test('a limit below 1 is refused', () => {
  assert.throws(() => emptyGate(0), /positive integer/);
});

test('the async gate never runs more than the limit, nor two on one BMC', async () => {
  const gate = createBmcGate(3);
  let inFlight = 0;
  let maxInFlight = 0;
  const perKey = new Map<string, number>();
  const job = (key: string) =>
    gate.run(key, async () => {
      inFlight++;
      perKey.set(key, (perKey.get(key) ?? 0) + 1);
      maxInFlight = Math.max(maxInFlight, inFlight);
      assert.is(perKey.get(key), 1, `two commands at once on ${key}`);
      await new Promise((r) => setTimeout(r, 5));
      perKey.set(key, (perKey.get(key) ?? 1) - 1);
      inFlight--;
      return key;
    });
  const keys = Array.from({ length: 40 }, (_, i) => `bmc${i % 7}`);
  const out = await Promise.all(keys.map(job));
  assert.equal(out, keys);
  assert.is(maxInFlight, 3);
  assert.equal(gate.stats(), { running: 0, queued: 0, limit: 3 });
});

test('an aborted wait leaves the queue and frees nothing it did not hold', async () => {
  const gate = createBmcGate(1);
  let release1!: () => void;
  const first = gate.run('a', () => new Promise<void>((r) => (release1 = r)));
  const ac = new AbortController();
  const second = gate.run('b', async () => 'ran', ac.signal);
  await new Promise((r) => setTimeout(r, 5));
  assert.equal(gate.stats(), { running: 1, queued: 1, limit: 1 });
  ac.abort(new Error('stop'));
  try {
    await second;
    assert.unreachable('should have been aborted');
  } catch (err) {
    assert.match((err as Error).message, /stop/);
  }
  assert.equal(gate.stats(), { running: 1, queued: 0, limit: 1 });
  release1();
  await first;
  assert.equal(gate.stats(), { running: 0, queued: 0, limit: 1 });
});

test.run();
