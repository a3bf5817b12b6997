import type { Mac } from '../lib/mac.js';
import type { Machine } from '../inventory/model.js';

/**
 * A rack power job: every machine of a rack gets the same action, at most `concurrency` at a time
 * and with at least `delaySeconds` between two machines' starts — powering a rack on at once
 * draws an inrush current the PDU may not take, and a rack that boots at once floods DHCP and TFTP.
 * This module is the job's data and its pure updates; the service runs it.
 */
export const RACK_ACTIONS = ['on', 'off', 'cycle', 'reset', 'status'] as const;
export type RackAction = (typeof RACK_ACTIONS)[number];

export type ItemState = 'queued' | 'running' | 'ok' | 'failed' | 'skipped' | 'cancelled';

export interface RackJobItem {
  readonly mac: Mac;
  readonly hostname: string | null;
  readonly state: ItemState;
  /** What was done ("on", "cycle", "on (was off)") or the power state read. */
  readonly result: string | null;
  readonly error: { readonly code: string; readonly message: string } | null;
  readonly startedAt: string | null;
  readonly finishedAt: string | null;
}

/** A file a prefetch brings into the artifacts cache before the machines start (server/artifacts/prefetch.ts). */
export interface PrefetchProgressItem {
  readonly release: string;
  readonly file: string;
  readonly state: 'pending' | 'fetching' | 'done' | 'failed';
  readonly bytes: number;
  readonly total: number | null;
  readonly error: string | null;
}

/** The first phase of a power-on job: the installer artifacts cached before any machine starts. */
export interface JobPrefetch {
  readonly state: 'running' | 'done' | 'failed';
  readonly clusters: readonly string[];
  readonly items: readonly PrefetchProgressItem[];
  readonly error: string | null;
}

/**
 * What a rack power-on checks first, for the clusters whose machines it makes install: their
 * preflight (refusing the job when an upstream fails, unless forced), then their prefetch (the
 * job's first phase). main.ts gives the cluster checks; without a gate a power-on just powers.
 */
export interface PowerOnGate {
  /** The clusters whose machines this power-on makes install. */
  clusters(machines: readonly Machine[]): readonly string[];
  preflight(clusters: readonly string[]): Promise<{ readonly ok: boolean; readonly failures: readonly { readonly cluster: string; readonly check: string; readonly detail: string }[] }>;
  prefetch(clusters: readonly string[], onProgress: (items: readonly PrefetchProgressItem[]) => void, signal: AbortSignal): Promise<{ readonly ok: boolean; readonly items: readonly PrefetchProgressItem[] }>;
}

export interface RackJob {
  readonly id: string;
  /** The rack, or null for a job over a selection of machines (the console's bulk power). */
  readonly rack: string | null;
  readonly action: RackAction;
  readonly concurrency: number;
  readonly delaySeconds: number;
  readonly state: 'running' | 'done' | 'cancelled';
  readonly createdAt: string;
  readonly finishedAt: string | null;
  /** Power-on: the installer artifacts fetched before the machines start; null when not done (off, status, force). */
  readonly prefetch: JobPrefetch | null;
  readonly items: readonly RackJobItem[];
}

export function newRackJob(id: string, rack: string | null, action: RackAction, concurrency: number, delaySeconds: number, machines: readonly Machine[], at: string): RackJob {
  return {
    id,
    rack,
    action,
    concurrency,
    delaySeconds,
    state: 'running',
    createdAt: at,
    finishedAt: null,
    prefetch: null,
    items: machines.map((m) => ({
      mac: m.mac,
      hostname: m.hostname,
      state: m.bmc && m.bmc.hasPassword ? 'queued' : 'skipped',
      result: null,
      error: m.bmc && m.bmc.hasPassword ? null : { code: 'ERR_NO_BMC', message: m.bmc ? 'the BMC has no password' : 'no BMC configured' },
      startedAt: null,
      finishedAt: null,
    })),
  };
}

export function updateItem(job: RackJob, mac: Mac, patch: Partial<Omit<RackJobItem, 'mac' | 'hostname'>>): RackJob {
  return { ...job, items: job.items.map((i) => (i.mac === mac ? { ...i, ...patch } : i)) };
}

/** A prefetch that failed stops the power-on: no machine starts without its installer. */
export function failQueued(job: RackJob, error: { readonly code: string; readonly message: string }, at: string): RackJob {
  return { ...job, items: job.items.map((i) => (i.state === 'queued' ? { ...i, state: 'failed', error, finishedAt: at } : i)) };
}

/** Closes the job: anything not finished becomes `cancelled`. */
export function finishJob(job: RackJob, at: string, cancelled: boolean): RackJob {
  return {
    ...job,
    state: cancelled ? 'cancelled' : 'done',
    finishedAt: at,
    items: job.items.map((i) => (i.state === 'queued' || i.state === 'running' ? { ...i, state: 'cancelled', finishedAt: at } : i)),
  };
}

export type JobCounts = Record<ItemState, number> & { total: number };

export function jobCounts(job: RackJob): JobCounts {
  const c: JobCounts = { total: job.items.length, queued: 0, running: 0, ok: 0, failed: 0, skipped: 0, cancelled: 0 };
  for (const i of job.items) c[i.state]++;
  return c;
}

export function jobSummary(job: RackJob): string {
  const c = jobCounts(job);
  const parts = (['ok', 'failed', 'skipped', 'cancelled', 'running', 'queued'] as const).filter((k) => c[k] > 0).map((k) => `${c[k]} ${k}`);
  return `${job.rack === null ? `${job.items.length} selected machine(s)` : `rack ${job.rack}`}: power ${job.action} ${job.state === 'running' ? 'in progress' : job.state}: ${parts.join(', ') || 'no machines'}`;
}

/** The API's JSON for a job. */
export function presentRackJob(job: RackJob): Record<string, unknown> {
  return {
    id: job.id,
    rack: job.rack,
    action: job.action,
    concurrency: job.concurrency,
    delaySeconds: job.delaySeconds,
    state: job.state,
    createdAt: job.createdAt,
    finishedAt: job.finishedAt,
    prefetch: job.prefetch,
    counts: jobCounts(job),
    machines: job.items.map((i) => ({ ...i })),
  };
}
