/**
 * Which suite the runner (test/run.ts) starts next: a pure decision over what waits and what runs,
 * so the packing of CI's two cores can be tested without running a suite.
 *
 * - `vm`: QEMU under TCG keeps a core busy. One at a time while other work waits, so the VM
 *   suites run one after another on one core while everything else shares the other; a second
 *   one only once no light or heavy suite waits, so the core that would otherwise idle until the
 *   last VM suite ends takes the next one.
 * - `heavy`: big transfers, chroots, several racksmiths: at most one at a time, and never two VM
 *   suites and a heavy one at once: two suites that keep a core busy, on two cores.
 * - `light`: beside anything but a lone suite, up to the width (three on two cores: most light
 *   suites spend their time waiting — a BMC that never answers, a lease's timer, a retransmit —
 *   and a third slot keeps a core from idling through those waits).
 * - `alone`: several VMs at once, a browser on thousands of rows, VRRP's one-second adverts:
 *   only when nothing else runs, and nothing beside it.
 */
export type Kind = 'vm' | 'heavy' | 'light' | 'alone';

export interface Job {
  readonly file: string;
  readonly engine: string | null;
  readonly kind: Kind;
}

/** Whether `job` may start beside the running kinds, given what else waits. */
export function mayStart(job: Job, running: readonly Kind[], waiting: readonly Job[], width: number): boolean {
  if (running.length >= width) return false;
  if (job.kind === 'alone') return running.length === 0;
  if (running.includes('alone')) return false;
  const count = (k: Kind): number => running.filter((r) => r === k).length;
  switch (job.kind) {
    case 'light':
      return true;
    case 'heavy':
      return count('heavy') === 0 && count('vm') < 2;
    case 'vm':
      return count('vm') === 0 || (count('vm') === 1 && count('heavy') === 0 && !waiting.some((w) => w.kind === 'light' || w.kind === 'heavy'));
  }
}

/** The index in `waiting` of the job to start now (the first that may), or -1. */
export function nextJob(waiting: readonly Job[], running: readonly Kind[], width: number): number {
  return waiting.findIndex((j) => mayStart(j, running, waiting, width));
}

/**
 * The VM suites longest first, by the minutes a suite says it takes on a 2-core host
 * (`racksmith-test: minutes N`; unsaid: 1), the others in their order: with a second VM suite
 * started only at the end, the last one to start should be short, or one core idles through it.
 */
export function longestFirst<T extends Job>(jobs: readonly T[], minutes: (job: T) => number): T[] {
  return jobs
    .map((j, i) => ({ j, i, m: minutes(j) }))
    .sort((a, b) => b.m - a.m || a.i - b.i)
    .map((x) => x.j);
}

/** Failed suites re-run at most: more failures than this at once are not timing, and are not run again. */
export const RERUN_AT_MOST = 3;

/**
 * Which failed suites run once more at the end, alone: those that had another suite beside them
 * at some time (a lone suite, or one run by hand, already had the machine to itself) and were not
 * killed at the suite timeout (a hang is not timing, and another run of it is 20 minutes), when
 * no more than `atMost` failed. A suite that fails beside others and passes alone holds a timing
 * assumption that a starved process breaks (a fixed wait, a tight timeout): the run passes, and
 * its summary names the suite and why it failed first, to be fixed. One that fails alone too
 * fails the run.
 */
export function rerunAlone<T extends { readonly ok: boolean; readonly beside: boolean; readonly timedOut: boolean }>(results: readonly T[], atMost = RERUN_AT_MOST): T[] {
  const failed = results.filter((r) => !r.ok);
  return failed.length > atMost ? [] : failed.filter((r) => r.beside && !r.timedOut);
}
