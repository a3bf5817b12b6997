import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../lib/log.js';
import type { Service, ServiceHealth, ServiceState } from '../lib/service.js';
import type { EventRepo, EventTypes } from './store.js';

/**
 * Event retention (`event-retention-days`, `boot-event-retention-days`). Events are the
 * machines' and clusters' history, and most of them are boot traffic: every boot script a
 * waiting machine polls for, every DHCP exchange, TFTP transfer and artifact download. A thousand
 * machines waiting at 10 s add 8.6 million rows a day; without retention the store only grows.
 * Boot traffic is kept for days (what an install's debugging needs), the rest — states,
 * transitions, power, orchestration, installer reports, refusals — for months (the audit trail).
 */

/** Boot traffic: DHCP, TFTP, GRUB's config, and the boot script, boot file, artifact and seed fetches. */
export const BOOT_TRAFFIC: EventTypes = {
  families: ['dhcp', 'tftp', 'boot'],
  // Not the seed's refusals and rebinds (http.seed.refused, http.seed.rebound): they are security signals.
  exact: ['http.ipxe', 'http.bootfile', 'http.artifact', 'http.seed'],
};

export interface RetentionRule {
  readonly rule: 'boot' | 'all';
  readonly days: number;
  readonly types: EventTypes | null;
}

/**
 * The rules for the settings: 0 days keeps for ever. Boot traffic has its own rule only when it is
 * shorter than the one for every event.
 */
export function retentionRules(eventDays: number, bootDays: number): RetentionRule[] {
  const rules: RetentionRule[] = [];
  if (bootDays > 0 && (eventDays === 0 || bootDays < eventDays)) rules.push({ rule: 'boot', days: bootDays, types: BOOT_TRAFFIC });
  if (eventDays > 0) rules.push({ rule: 'all', days: eventDays, types: null });
  return rules;
}

export function cutoffOf(now: Date, days: number): string {
  return new Date(now.getTime() - days * 86_400_000).toISOString();
}

export interface RetentionDeps {
  readonly events: Pick<EventRepo, 'firstIdSince' | 'prune'>;
  readonly now: () => Date;
  readonly eventDays: number;
  readonly bootDays: number;
  readonly log: Logger;
  /** Between passes (default 1 h); the first pass comes `firstAfterMs` (default 1 min) after start. */
  readonly everyMs?: number;
  readonly firstAfterMs?: number;
  /** Rows per delete (default 500: one short transaction of a few milliseconds, the event loop free between them). */
  readonly batch?: number;
  readonly pauseMs?: number;
}

export interface PassReport {
  readonly boot: number;
  readonly all: number;
}

export interface RetentionService extends Service {
  /** One pass of every rule, now. */
  pass(): Promise<PassReport>;
}

/** A pass deletes at most this many batches per rule (5 million rows at the default); the next pass goes on. */
const MAX_BATCHES = 10_000;

export function createEventRetentionService(d: RetentionDeps): RetentionService {
  const rules = retentionRules(d.eventDays, d.bootDays);
  const batch = d.batch ?? 500;
  const pauseMs = d.pauseMs ?? 10;
  let state: ServiceState = rules.length ? 'stopped' : 'off';
  let timer: NodeJS.Timeout | null = null;
  let running: Promise<PassReport> | null = null;
  let stop = new AbortController();
  const pruned = { boot: 0, all: 0 };
  let lastPass: { at: string; seconds: number; boot: number; all: number } | null = null;
  let lastError: string | null = null;

  async function passNow(): Promise<PassReport> {
    const started = Date.now();
    const report = { boot: 0, all: 0 };
    const now = d.now();
    for (const r of rules) {
      const below = await d.events.firstIdSince(cutoffOf(now, r.days));
      for (let i = 0; i < MAX_BATCHES && !stop.signal.aborted; i++) {
        const n = await d.events.prune(below, r.types, batch);
        report[r.rule] += n;
        pruned[r.rule] += n;
        if (n < batch) break;
        // Writers (boot scripts, DHCP) get the store between batches.
        await sleep(pauseMs, undefined, { signal: stop.signal }).catch(() => undefined);
      }
    }
    lastPass = { at: now.toISOString(), seconds: (Date.now() - started) / 1000, ...report };
    if (report.boot + report.all > 0) d.log.info({ deleted: report, seconds: lastPass.seconds }, 'old events deleted (event retention)');
    return report;
  }

  const schedule = (ms: number): void => {
    timer = setTimeout(() => {
      service.pass().then(
        () => (lastError = null),
        (err: unknown) => {
          lastError = err instanceof Error ? err.message : String(err);
          d.log.error({ err: lastError }, 'event retention pass failed');
        },
      ).finally(() => {
        if (state === 'serving') schedule(d.everyMs ?? 3_600_000);
      });
    }, ms);
    timer.unref();
  };

  const service: RetentionService = {
    name: 'event-retention',
    pass() {
      running ??= passNow().finally(() => (running = null));
      return running;
    },
    async start() {
      if (!rules.length) return;
      stop = new AbortController();
      state = 'serving';
      schedule(d.firstAfterMs ?? 60_000);
    },
    async stop() {
      if (state === 'off') return;
      state = 'stopping';
      if (timer) clearTimeout(timer);
      timer = null;
      stop.abort();
      await running?.catch(() => undefined);
      state = 'stopped';
    },
    health(): ServiceHealth {
      return {
        state,
        detail: { eventRetentionDays: d.eventDays, bootEventRetentionDays: d.bootDays, pruned: { ...pruned }, lastPass, ...(lastError ? { lastError } : {}) },
      };
    },
  };
  return service;
}
