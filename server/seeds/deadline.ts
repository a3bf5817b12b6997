import type { InventoryEvent, Machine } from '../inventory/model.js';
import type { MachineState } from '../inventory/lifecycle.js';
import type { EventRepo, MachineRepo } from '../inventory/store.js';
import type { Service, ServiceHealth } from '../lib/service.js';
import { TransitionError } from '../inventory/lifecycle.js';

/**
 * The install deadline: a machine that has been installing — `provisioning`, or `installed`
 * without a phone-home — longer than `--install-timeout-minutes` since its install began goes
 * `failed`, with its last boot step and its installer's last word, so a stuck install is a state a
 * tech sees instead of a machine that says "provisioning" for ever.
 *
 * The decision and the failure report are pure (this file's first half); a small service runs the
 * check on a timer (the second half).
 */
export const WATCHED_STATES: readonly MachineState[] = ['provisioning', 'installed'];

export type DeadlineMachine = Pick<Machine, 'mac' | 'state' | 'installStartedAt' | 'stateChangedAt' | 'lastStep'>;

/** When the install being timed began: the machine's install start, else when it entered its state. */
export function installSince(m: DeadlineMachine): string {
  return m.installStartedAt ?? m.stateChangedAt;
}

export function isOverdue(m: DeadlineMachine, now: Date, deadlineMs: number): boolean {
  if (!WATCHED_STATES.includes(m.state)) return false;
  const since = Date.parse(installSince(m));
  return Number.isFinite(since) && now.getTime() - since > deadlineMs;
}

/** Everything a deadline failure says; one place builds it (console lines join here when a BMC's serial console is attached). */
export interface DeadlineFacts {
  readonly machine: DeadlineMachine;
  readonly lastInstallerEvent: Pick<InventoryEvent, 'at' | 'message'> | null;
  readonly deadlineMinutes: number;
  readonly now: Date;
  /** The last lines of the machine's serial console, when something captured them. */
  readonly consoleLines?: readonly string[] | undefined;
}

export interface FailureReport {
  readonly step: string;
  readonly reason: string;
  readonly data: Record<string, unknown>;
}

export function installDeadlineFailure(f: DeadlineFacts): FailureReport {
  const m = f.machine;
  const since = installSince(m);
  const minutes = Math.round((f.now.getTime() - Date.parse(since)) / 60_000);
  const waiting = m.state === 'installed' ? 'installed, but no phone-home' : 'still provisioning';
  const last = f.lastInstallerEvent ? `last installer event at ${f.lastInstallerEvent.at}: ${f.lastInstallerEvent.message}` : 'no installer event';
  return {
    step: m.lastStep ?? m.state,
    reason: `install deadline of ${f.deadlineMinutes} min passed: ${waiting} after ${minutes} min; last boot step ${m.lastStep ?? 'none'}; ${last}`.slice(0, 500),
    data: {
      deadlineMinutes: f.deadlineMinutes,
      installStartedAt: since,
      state: m.state,
      lastStep: m.lastStep,
      lastInstallerEvent: f.lastInstallerEvent ? { at: f.lastInstallerEvent.at, message: f.lastInstallerEvent.message } : null,
      ...(f.consoleLines ? { console: f.consoleLines } : {}),
    },
  };
}

// ── the service ───────────────────────────────────────────────────────────────────────────────

export interface DeadlineServiceDeps {
  readonly machines: Pick<MachineRepo, 'list' | 'transition'>;
  readonly events: Pick<EventRepo, 'list'>;
  readonly deadlineMinutes: number;
  readonly now: () => Date;
  /** How often to look (default: a quarter of the deadline, at most every 30 s). */
  readonly checkEveryMs?: number;
  /** What else a failure report should carry (the serial console's last lines), when known. */
  readonly consoleLines?: ((mac: Machine['mac']) => readonly string[] | undefined) | undefined;
}

export interface DeadlineService extends Service {
  /** One pass: fails every overdue machine; returns their MACs. */
  check(): Promise<string[]>;
}

async function lastInstallerEvent(events: Pick<EventRepo, 'list'>, mac: Machine['mac']): Promise<InventoryEvent | null> {
  let last: InventoryEvent | null = null;
  let after: number | undefined;
  for (let page = 0; page < 100; page++) {
    const batch = await events.list({ mac, afterId: after, limit: 10_000 });
    for (const e of batch) if (e.type === 'installer.event') last = e;
    if (batch.length < 10_000) break;
    after = batch[batch.length - 1]?.id;
  }
  return last;
}

export function createDeadlineService(d: DeadlineServiceDeps): DeadlineService {
  const deadlineMs = d.deadlineMinutes * 60_000;
  const every = d.checkEveryMs ?? Math.max(1000, Math.min(30_000, Math.floor(deadlineMs / 4)));
  let timer: NodeJS.Timeout | null = null;
  let running: Promise<string[]> | null = null;
  let state: ServiceHealth['state'] = 'stopped';
  let failedCount = 0;
  let lastError: string | null = null;

  async function checkNow(): Promise<string[]> {
    const now = d.now();
    const failed: string[] = [];
    for (const s of WATCHED_STATES) {
      for (const m of await d.machines.list({ state: s })) {
        if (!isOverdue(m, now, deadlineMs)) continue;
        const report = installDeadlineFailure({ machine: m, lastInstallerEvent: await lastInstallerEvent(d.events, m.mac), deadlineMinutes: d.deadlineMinutes, now, consoleLines: d.consoleLines?.(m.mac) });
        try {
          await d.machines.transition(m.mac, 'fail', { source: 'install-deadline', step: report.step, reason: report.reason, data: report.data });
          failed.push(m.mac);
          failedCount++;
        } catch (err) {
          // It phoned home (or was reimaged) meanwhile: nothing is overdue any more.
          if (!(err instanceof TransitionError)) throw err;
        }
      }
    }
    return failed;
  }

  const service: DeadlineService = {
    name: 'install-deadline',
    check() {
      running ??= checkNow().finally(() => (running = null));
      return running;
    },
    async start() {
      state = 'serving';
      timer = setInterval(() => {
        service.check().then(
          () => (lastError = null),
          (err: unknown) => (lastError = err instanceof Error ? err.message : String(err)),
        );
      }, every);
      timer.unref();
    },
    async stop() {
      if (timer) clearInterval(timer);
      timer = null;
      await running?.catch(() => undefined);
      state = 'stopped';
    },
    health() {
      return { state, detail: { deadlineMinutes: d.deadlineMinutes, checkEverySeconds: every / 1000, failed: failedCount, ...(lastError ? { lastError } : {}) } };
    },
  };
  return service;
}
