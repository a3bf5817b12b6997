import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { RERUN_AT_MOST, longestFirst, mayStart, nextJob, rerunAlone, type Job, type Kind } from './lib/schedule.js';

/**
 * The runner's packing of CI's two cores (test/lib/schedule.ts), played out on a simulated clock:
 * suites with the durations they take, started by the same decision the runner makes.
 */
const test = suite('test runner: which suite starts next');

interface Timed extends Job {
  readonly seconds: number;
}

const job = (file: string, kind: Kind, seconds: number): Timed => ({ file, engine: null, kind, seconds });

/** Every suite's start and end, and the kinds that ran beside each other, with the runner's rules. */
function play(jobs: readonly Timed[], width = 2): { end: number; spans: { job: Timed; from: number; to: number }[]; together: Kind[][] } {
  const waiting = [...jobs];
  const running: { job: Timed; to: number }[] = [];
  const spans: { job: Timed; from: number; to: number }[] = [];
  const together: Kind[][] = [];
  let now = 0;
  for (let guard = 0; guard < 10_000; guard++) {
    for (;;) {
      const i = nextJob(
        waiting,
        running.map((r) => r.job.kind),
        width,
      );
      if (i < 0) break;
      const [j] = waiting.splice(i, 1);
      if (!j) break;
      running.push({ job: j, to: now + j.seconds });
      spans.push({ job: j, from: now, to: now + j.seconds });
      together.push(running.map((r) => r.job.kind).sort());
    }
    if (running.length === 0) break;
    running.sort((a, b) => a.to - b.to);
    const done = running.shift();
    if (!done) break;
    now = done.to;
  }
  assert.is(waiting.length, 0, 'every suite ran');
  return { end: now, spans, together };
}

test('one VM suite at a time while light or heavy suites wait; the second core takes the VM suites left once they are done', () => {
  const jobs = [job('vm-a', 'vm', 400), job('vm-b', 'vm', 300), job('vm-c', 'vm', 200), job('vm-d', 'vm', 100), job('l1', 'light', 50), job('l2', 'light', 50), job('h1', 'heavy', 100)];
  const { end, spans, together } = play(jobs);
  const at = (f: string): { from: number; to: number } => spans.find((s) => s.job.file === f) ?? { from: NaN, to: NaN };
  // The light and heavy suites first beside vm-a; then vm-b on the free core while vm-a still runs.
  assert.is(at('vm-a').from, 0);
  assert.is(at('vm-b').from, 200, 'the second core takes the next VM suite once the others are done');
  assert.ok(at('vm-b').from < at('vm-a').to, 'two VM suites ran at once at the end');
  assert.ok(spans.filter((s) => s.from >= at('vm-b').from).every((s) => s.job.kind === 'vm'), 'nothing but VM suites started after it');
  assert.ok(together.some((k) => k.join() === 'vm,vm'));
  // The VM suites on one core alone would end at 1,000 s; the two cores share 1,200 s of work: 600.
  assert.is(end, 600);
});

test('a VM suite never starts beside another while a light or heavy suite waits', () => {
  const vm = job('vm-b', 'vm', 10);
  const light = job('l', 'light', 10);
  assert.not.ok(mayStart(vm, ['vm'], [vm, light], 2));
  assert.not.ok(mayStart(vm, ['vm'], [vm, job('h', 'heavy', 10)], 2));
  assert.ok(mayStart(vm, ['vm'], [vm, job('a', 'alone', 10)], 2), 'a lone suite waits for the end anyway');
  assert.ok(mayStart(vm, [], [vm, light], 2));
  assert.not.ok(mayStart(vm, ['vm', 'vm'], [vm], 3), 'never three');
  assert.not.ok(mayStart(vm, ['vm', 'heavy'], [vm], 3), 'no second VM suite beside a heavy one');
});

test('a lone suite starts only on an idle machine, and nothing starts beside it', () => {
  const alone = job('rack', 'alone', 100);
  for (const running of [['light'], ['vm'], ['heavy']] as Kind[][]) assert.not.ok(mayStart(alone, running, [alone], 2), running.join());
  assert.ok(mayStart(alone, [], [alone], 2));
  for (const k of ['light', 'vm', 'heavy'] as Kind[]) assert.not.ok(mayStart(job('x', k, 1), ['alone'], [job('x', k, 1)], 2), k);
  const { spans } = play([job('vm', 'vm', 100), job('l', 'light', 10), alone, job('h', 'heavy', 30)]);
  const rack = spans.find((s) => s.job.file === 'rack');
  assert.ok(rack && spans.every((s) => s === rack || s.to <= rack.from || s.from >= rack.to), 'the rack ran with nothing beside it');
});

test('one heavy suite at a time, light ones beside it', () => {
  const { together } = play([job('h1', 'heavy', 30), job('h2', 'heavy', 30), job('l1', 'light', 5), job('l2', 'light', 5), job('l3', 'light', 5)]);
  assert.not.ok(together.some((k) => k.filter((x) => x === 'heavy').length > 1));
  assert.ok(together.some((k) => k.includes('heavy') && k.includes('light')));
});

test('three slots on two cores: a VM suite and two light ones, or a VM, a heavy and a light one; never two VMs and a heavy one', () => {
  const heavy = job('h', 'heavy', 10);
  const light = job('l', 'light', 10);
  assert.ok(mayStart(light, ['vm', 'light'], [light], 3));
  assert.ok(mayStart(light, ['vm', 'heavy'], [light], 3));
  assert.not.ok(mayStart(light, ['vm', 'light', 'light'], [light], 3), 'the width holds');
  assert.not.ok(mayStart(heavy, ['vm', 'vm'], [heavy], 3));
  assert.not.ok(mayStart(heavy, ['heavy', 'light'], [heavy], 3));
  const jobs = [job('vm-a', 'vm', 300), job('vm-b', 'vm', 100), ...Array.from({ length: 6 }, (_, i) => job(`l${i}`, 'light', 40)), job('h1', 'heavy', 60), job('h2', 'heavy', 60), job('rack', 'alone', 50)];
  const { together, end } = play(jobs, 3);
  assert.ok(together.some((k) => k.join() === 'light,light,vm'), 'two light suites beside the VM suite');
  for (const k of together) {
    assert.ok(k.filter((x) => x === 'vm' || x === 'heavy').length <= 2, `at most two that keep a core busy: ${k.join()}`);
    assert.ok(!k.includes('alone') || k.length === 1, `a lone suite alone: ${k.join()}`);
  }
  // Two slots: the light suites one at a time beside the VM suite, then the heavy ones.
  assert.ok(end < play(jobs, 2).end, `${end} s with three slots`);
});

test('longest first: the VM suites by the minutes they say, the unsaid in their order', () => {
  const jobs = [job('a', 'vm', 0), job('b', 'vm', 0), job('c', 'vm', 0), job('d', 'vm', 0)];
  const minutes: Record<string, number> = { b: 7, d: 3 };
  assert.equal(
    longestFirst(jobs, (j) => minutes[j.file] ?? 1).map((j) => j.file),
    ['b', 'd', 'a', 'c'],
  );
  // The long one last leaves a core idle through it; first, the two cores end together.
  const short = [job('s1', 'vm', 100), job('s2', 'vm', 100), job('s3', 'vm', 100)];
  const late = play([...short, job('long', 'vm', 300)]).end;
  const early = play(longestFirst([...short, job('long', 'vm', 300)], (j) => j.seconds / 60)).end;
  assert.ok(early < late, `${early} < ${late}`);
  assert.is(early, 300);
});

test('a few suites that failed beside others run once more alone; those that ran alone, and a run with many failures, do not', () => {
  const r = (file: string, beside: boolean, ok: boolean, timedOut = false): { file: string; beside: boolean; ok: boolean; timedOut: boolean } => ({ file, beside, ok, timedOut });
  const results = [r('a', true, false), r('b', true, true), r('c', false, false), r('d', true, false), r('f', false, true)];
  assert.equal(
    rerunAlone(results).map((x) => x.file),
    ['a', 'd'],
    'the failed ones that had a suite beside them, in order; the one that ran alone already had the machine',
  );
  assert.equal(rerunAlone(results.filter((x) => x.ok)), [], 'nothing failed, nothing again');
  const many = Array.from({ length: RERUN_AT_MOST + 1 }, (_, i) => r(`x${i}`, true, false));
  assert.equal(rerunAlone(many), [], `more than ${RERUN_AT_MOST} failures are not timing: none again`);
  assert.is(rerunAlone(many.slice(0, RERUN_AT_MOST)).length, RERUN_AT_MOST);
  assert.equal(rerunAlone([r('hung', true, false, true), r('g', true, false)]).map((x) => x.file), ['g'], 'a suite killed at the timeout is not run again');
});

test.run();
