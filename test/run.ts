/**
 * The suite runner behind `npm test` (after the type-check and lint): every compiled
 * `*.test.js` under dist/test runs in its own Node process with uvu, so one suite's sockets,
 * timers or crash cannot leak into another. Up to three run at a time on CI's two cores
 * (RACKSMITH_TEST_SLOTS): the virtual machine suites (`*.qemu.test.js`: QEMU under TCG keeps a core
 * busy) one after another from the start, longest first (`racksmith-test: minutes N`), everything
 * else beside them — two light suites (most of their time is waiting), or one other heavy suite
 * (`*.heavy.test.js`: big transfers, chroots, several racksmiths) and a light one; once nothing but
 * VM suites waits, two of those at once; suites that say `racksmith-test: alone` (with why) run at
 * the end, each alone on the machine. test/lib/schedule.ts decides. Pass name fragments to run a
 * subset: `node dist/test/run.js dhcp`.
 * A suite that runs longer than RACKSMITH_SUITE_TIMEOUT seconds (default 1200: the virtual rack
 * with a pair and its upgrade takes 6–12 min, by host) is killed, with its process group, and
 * fails — a hung test must not hang CI. One whose tests have all ended (uvu's summary) but whose process is
 * still alive a minute later is ended too, and fails: something it opened outlived its tests.
 * At the end, up to three suites that failed while another ran beside them (not killed at the
 * timeout) run once more, alone (RACKSMITH_TEST_RERUN=0: not): one that passes then does not fail the run, but the summary
 * names it and shows why it failed first — a fixed wait or a tight timeout to fix.
 *
 * Store-facing light suites — those that open a store (`tempStore(`) or start racksmith
 * (`startRacksmith(`) — then run a second time on PostgreSQL (RACKSMITH_TEST_DATABASE=postgres,
 * a private PostgreSQL 15 per suite process), unless the suite says `racksmith-test: sqlite only`
 * with its reason, or run only there if they say `racksmith-test: postgres only`. Heavy suites
 * that say `racksmith-test: both engines` (store-facing) run a second time on PostgreSQL too;
 * those that say `racksmith-test: postgres only` run once, on PostgreSQL; the others once, on
 * SQLite. RACKSMITH_TEST_DATABASE=sqlite|postgres given by hand runs everything once, on that
 * engine.
 */
import { spawn } from 'node:child_process';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { longestFirst, nextJob, rerunAlone, type Job, type Kind } from './lib/schedule.js';

const DIST_TEST = fileURLToPath(new URL('.', import.meta.url));

function findTests(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir)) {
    const p = join(dir, entry);
    if (statSync(p).isDirectory()) out.push(...findTests(p));
    else if (entry.endsWith('.test.js')) out.push(p);
  }
  return out.sort();
}

interface Result {
  readonly file: string;
  /** The store engine of a second, PostgreSQL run (null: the run's own engine). */
  readonly engine: string | null;
  readonly kind: Kind;
  /** Whether another suite ran beside it at some time (test/lib/schedule.ts rerunAlone). */
  readonly beside: boolean;
  /** Killed at RACKSMITH_SUITE_TIMEOUT (rerunAlone: never run again). */
  readonly timedOut: boolean;
  readonly ok: boolean;
  readonly seconds: number;
  /** From uvu's summary to the process's exit (teardown that outlives the tests). */
  readonly exitSeconds: number;
  /** What the suite skipped and why (its `⚠ skipped …` notes). */
  readonly skipped: readonly { what: string; why: string }[];
  /** For a failed suite, the part of its output that says why (see failureExcerpt). */
  readonly why: string;
}

/** When the run began: each suite's block says when it started, so a run's two lanes can be read back from its log. */
const RUN_STARTED = Date.now();
const SUITE_TIMEOUT_S = Number(process.env['RACKSMITH_SUITE_TIMEOUT'] ?? 1200);
/**
 * uvu prints its summary once every test and hook has run; a suite still alive this long after
 * it has something open (a socket, a timer, a child, a database connection) and would otherwise
 * wait for the suite timeout.
 */
const EXIT_GRACE_S = 60;

function runOne({ file, engine, kind }: Job): Promise<Result> {
  const started = Date.now();
  return new Promise((resolve) => {
    // Its own process group, so a timeout ends the suite and everything it started.
    const env = engine ? { ...process.env, RACKSMITH_TEST_DATABASE: engine } : process.env;
    const child = spawn(process.execPath, ['--enable-source-maps', file], { stdio: ['ignore', 'pipe', 'pipe'], detached: true, env });
    let out = '';
    let ended: 'timeout' | 'lingered' | null = null;
    let summaryAt = 0;
    const end = (why: 'timeout' | 'lingered'): void => {
      ended = why;
      try {
        process.kill(-(child.pid ?? 0), 'SIGTERM');
        setTimeout(() => {
          try {
            process.kill(-(child.pid ?? 0), 'SIGKILL');
          } catch {
            /* already gone */
          }
        }, 10_000).unref();
      } catch {
        /* already gone */
      }
    };
    const timer = setTimeout(() => end('timeout'), SUITE_TIMEOUT_S * 1000);
    let linger: NodeJS.Timeout | undefined;
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (!summaryAt && /Duration:\s+[\d.]+m?s/.test(uncoloured(out))) {
        summaryAt = Date.now();
        linger = setTimeout(() => end('lingered'), EXIT_GRACE_S * 1000);
      }
    });
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.on('close', (code) => {
      clearTimeout(timer);
      clearTimeout(linger);
      const seconds = (Date.now() - started) / 1000;
      const unrun = code === 0 ? testsNotRun(out) : 0;
      const ok = code === 0 && !ended && unrun === 0;
      if (ended === 'timeout') out += `\n  ✘ killed after ${SUITE_TIMEOUT_S} s (RACKSMITH_SUITE_TIMEOUT)`;
      if (ended === 'lingered') out += `\n  ✘ its tests ended, but ${EXIT_GRACE_S} s later the process had not exited: something it opened (a socket, a timer, a child, a database connection) keeps it alive`;
      if (unrun > 0) out += `\n  ✘ ${unrun} test(s) never ran: a before hook threw (uvu reports that as a pass)`;
      const at = ((started - RUN_STARTED) / 1000).toFixed(0);
      process.stdout.write(`\n── ${label({ file, engine })} (${seconds.toFixed(1)} s, from +${at} s) ${ok ? 'ok' : 'FAILED'}\n${out.trimEnd()}\n`);
      const exitSeconds = summaryAt ? (Date.now() - summaryAt) / 1000 : 0;
      resolve({ file, engine, kind, beside: false, timedOut: ended === 'timeout', ok, seconds, exitSeconds, skipped: skipNotes(out), why: ok ? '' : failureExcerpt(out) });
    });
  });
}

/**
 * Tests uvu counted but neither passed nor skipped. A `before` hook that throws ends its suite
 * with exit 0 and no FAIL line (the runner returns from a `finally`), so its tests must be
 * counted here.
 */
function testsNotRun(output: string): number {
  let missing = 0;
  for (const m of uncoloured(output).matchAll(/Total:\s+(\d+)\s+Passed:\s+(\d+)\s+Skipped:\s+(\d+)/g)) {
    missing += Math.max(0, Number(m[1]) - Number(m[2]) - Number(m[3]));
  }
  return missing;
}

/** A suite's output without terminal colours (uvu colours its FAIL banner). */
function uncoloured(output: string): string {
  // eslint-disable-next-line no-control-regex -- colour codes
  return output.replace(/\x1b\[[0-9;]*m/g, '');
}

const EXCERPT_LINES = 40;

/**
 * Why a suite failed, in a few lines: from uvu's first ` FAIL ` block or a before hook's error on, else the end of its output (a
 * timeout, a crash, a before hook that threw). It is printed again at the very end of the run because a long
 * run's log is often read by its head and tail only, and the suite's own block is in the middle.
 */
function failureExcerpt(output: string): string {
  const lines = uncoloured(output).trimEnd().split('\n');
  const first = lines.findIndex((l) => /^\s+(FAIL\s|✘ before hook)/.test(l));
  const picked = first >= 0 ? lines.slice(first, first + EXCERPT_LINES) : lines.slice(-EXCERPT_LINES);
  return picked.map((l) => '    ' + l.slice(0, 400)).join('\n');
}

/** The `⚠ skipped <what>: <why>` lines test/lib/tools.ts skipNote() prints. */
function skipNotes(output: string): { what: string; why: string }[] {
  return [...output.matchAll(/⚠ skipped (.+?): (.+)$/gm)].map((m) => ({ what: m[1] ?? '', why: m[2] ?? '' }));
}

const label = (r: { file: string; engine: string | null }): string => `${relative(DIST_TEST, r.file)}${r.engine ? ` [${r.engine}]` : ''}`;

/** Suites at once: three on two cores (test/lib/schedule.ts: why, and which kinds together). */
const SLOTS = Number(process.env['RACKSMITH_TEST_SLOTS'] ?? 3);
if (!Number.isInteger(SLOTS) || SLOTS < 1) throw new Error(`RACKSMITH_TEST_SLOTS must be a whole number of suites at once, 1 or more: ${process.env['RACKSMITH_TEST_SLOTS']}`);

/**
 * Runs the jobs `width` at a time, always the first in the list that may start (test/lib/schedule.ts
 * says which may: at most one VM suite while other work waits, one other heavy suite, light ones
 * beside either, a lone suite with nothing beside it). With the VM suites first in the list,
 * longest first, and the lone ones last, one core works through the VM suites from the start
 * while the rest of the machine takes everything else, then both cores take the VM suites left,
 * and the lone ones run at the end.
 */
function schedule(jobs: readonly Job[], width = SLOTS): Promise<Result[]> {
  const waiting = [...jobs];
  const running = new Set<Job>();
  const results: Result[] = [];
  // The jobs that had another beside them at some time (rerunAlone).
  const crowded = new Set<Job>();
  return new Promise((resolve) => {
    const next = (): void => {
      for (;;) {
        const i = nextJob(
          waiting,
          [...running].map((j) => j.kind),
          width,
        );
        if (i < 0) break;
        const [job] = waiting.splice(i, 1);
        if (!job) break;
        if (running.size > 0) for (const j of [...running, job]) crowded.add(j);
        running.add(job);
        void runOne(job).then((r) => {
          running.delete(job);
          results.push({ ...r, beside: crowded.has(job) });
          next();
        });
      }
      if (running.size === 0 && waiting.length === 0) resolve(results);
    };
    next();
  });
}

/** A suite's compiled source, read once: its markers (`racksmith-test: …`) and what it opens. */
const sources = new Map<string, string>();
const source = (file: string): string => sources.get(file) ?? sources.set(file, readFileSync(file, 'utf8')).get(file) ?? '';

/** A light suite that opens a store or starts racksmith, and does not say it is SQLite's alone. */
function storeFacing(file: string): boolean {
  const text = source(file);
  return /\b(tempStore|startRacksmith)\(/.test(text) && !text.includes('racksmith-test: sqlite only');
}

/** Which engines a heavy suite says it runs on: `both engines`, `postgres only`, or neither (SQLite). */
function heavyEngines(file: string): 'both' | 'postgres' | 'sqlite' {
  const text = source(file);
  return text.includes('racksmith-test: both engines') ? 'both' : text.includes('racksmith-test: postgres only') ? 'postgres' : 'sqlite';
}

const filters = process.argv.slice(2);
const all = findTests(DIST_TEST).filter((f) => filters.length === 0 || filters.some((x) => relative(DIST_TEST, f).includes(x)));
const isVm = (f: string): boolean => f.endsWith('.qemu.test.js');
const isHeavy = (f: string): boolean => /\.(qemu|heavy)\.test\.js$/.test(f);
const light = all.filter((f) => !isHeavy(f));
const heavy = all.filter(isHeavy);
// An engine given by hand: everything once, on it.
const byHand = Boolean(process.env['RACKSMITH_TEST_DATABASE']);
const alone = (f: string): boolean => source(f).includes('racksmith-test: alone');
const jobs = (files: readonly string[], engine: string | null): Job[] =>
  files.map((file) => ({ file, engine, kind: alone(file) ? 'alone' : isVm(file) ? 'vm' : isHeavy(file) ? 'heavy' : 'light' }));
// A light suite that says `postgres only` tests what only that engine has (a database restarting).
const lightEngines = (f: string): 'both' | 'postgres' | 'sqlite' => (source(f).includes('racksmith-test: postgres only') ? 'postgres' : storeFacing(f) ? 'both' : 'sqlite');
const lightJobs = [
  ...jobs(byHand ? light : light.filter((f) => lightEngines(f) !== 'postgres'), null),
  ...(byHand ? [] : jobs(light.filter((f) => lightEngines(f) !== 'sqlite'), 'postgres')),
];
const heavyJobs = [
  ...jobs(byHand ? heavy : heavy.filter((f) => heavyEngines(f) !== 'postgres'), null),
  ...(byHand ? [] : jobs(heavy.filter((f) => heavyEngines(f) !== 'sqlite'), 'postgres')),
];
/** The minutes a VM suite says it takes (`racksmith-test: minutes N`), to start the longest first. */
const minutes = (j: Job): number => Number(/racksmith-test: minutes (\d+)/.exec(source(j.file))?.[1] ?? 1);
const results = await schedule([
  ...longestFirst(heavyJobs.filter((j) => j.kind === 'vm'), minutes),
  ...lightJobs,
  ...heavyJobs.filter((j) => j.kind === 'heavy'),
  ...heavyJobs.filter((j) => j.kind === 'alone'),
]);
// A few suites that failed beside others run once more, alone (test/lib/schedule.ts: which, and
// why); RACKSMITH_TEST_RERUN=0 leaves every failure as it is, to hunt them.
const again = process.env['RACKSMITH_TEST_RERUN'] === '0' ? [] : rerunAlone(results);
const passedAlone: { first: Result; alone: Result }[] = [];
for (const first of again) {
  process.stdout.write(`\n── ${label(first)} failed beside other suites: once more, alone\n`);
  const alone = await runOne(first);
  if (alone.ok) passedAlone.push({ first, alone });
}
const failed = results.filter((r) => !r.ok && !passedAlone.some((p) => p.first === r));
for (const r of failed.slice(0, 3)) process.stdout.write(`\n── why ${label(r)} failed (its block above has all of it)\n${r.why}\n`);
for (const p of passedAlone) process.stdout.write(`\n── why ${label(p.first)} failed beside other suites (it passed alone)\n${p.first.why}\n`);
const aloneNote = passedAlone.length > 0 ? `, ${passedAlone.length} failed beside others and passed alone (below)` : '';
process.stdout.write(
  `\n${results.length} suites, ${failed.length} failed${aloneNote}, ${((Date.now() - RUN_STARTED) / 1000).toFixed(0)} s\n` +
    results
      .sort((a, b) => b.seconds - a.seconds)
      .slice(0, 8)
      .map((r) => `  ${r.seconds.toFixed(1).padStart(7)} s  ${label(r)}`)
      .join('\n') +
    '\n',
);
const slowExits = results.filter((r) => r.exitSeconds > 5);
if (slowExits.length > 0) {
  // Teardown after the tests is time CI pays too; a suite that never exits fails (EXIT_GRACE_S).
  process.stdout.write(`\nslow to exit after their tests:\n${slowExits.map((r) => `  ${r.exitSeconds.toFixed(1).padStart(7)} s  ${label(r)}`).join('\n')}\n`);
}
const skips = results.flatMap((r) => r.skipped.map((s) => ({ suite: label(r), ...s })));
if (skips.length > 0) {
  // A green run that proved less says so, and says how to run the rest.
  const w = [Math.max(5, ...skips.map((s) => s.suite.length)), Math.max(7, ...skips.map((s) => s.what.length))];
  process.stdout.write(
    `\nSKIPPED (${skips.length}):\n` +
      `  ${'suite'.padEnd(w[0] ?? 0)}  ${'skipped'.padEnd(w[1] ?? 0)}  why\n` +
      skips.map((s) => `  ${s.suite.padEnd(w[0] ?? 0)}  ${s.what.padEnd(w[1] ?? 0)}  ${s.why}`).join('\n') +
      '\nTo run them: as root on Debian 12, `npm test` installs the Debian packages they drive (.ci/packages) first; ' +
      '`sudo npm test` here if this is such a machine, or `.ci/run` on a fresh one.\n',
  );
}
if (passedAlone.length > 0) {
  // Not failures of the run, but not clean either: each holds a timing assumption to fix.
  process.stdout.write(
    `FAILED BESIDE OTHER SUITES, PASSED ALONE (a fixed wait or a tight timeout that a starved process breaks):\n${passedAlone.map((p) => `  ${label(p.first)}`).join('\n')}\n`,
  );
}
if (failed.length > 0) {
  process.stdout.write(`FAILED:\n${failed.map((r) => '  ' + label(r)).join('\n')}\n`);
  process.exitCode = 1;
}
if (all.length === 0) {
  process.stdout.write('no test files matched\n');
  process.exitCode = 1;
}
