/**
 * Who may talk to a BMC now. Two rules: one command at a time per BMC (BMCs answer one session
 * badly and several worse; a power-on racing a boot-device change loses the boot device), and at
 * most `limit` commands in flight over all BMCs (a burst of sessions is what makes some BMCs stop
 * answering — siderolabs/omni#785 — and each ipmitool is a process on a small server).
 *
 * The core is a pure state machine over plain data, tested by table; `createBmcGate` wraps it in
 * promises for the runner.
 */

export interface GateJob {
  readonly id: number;
  /** The BMC, as `address:port`. */
  readonly key: string;
}

export interface GateState {
  readonly limit: number;
  /** FIFO: the oldest job first. */
  readonly queued: readonly GateJob[];
  readonly running: readonly GateJob[];
}

export function emptyGate(limit: number): GateState {
  if (!Number.isInteger(limit) || limit < 1) throw new RangeError(`the BMC command limit must be a positive integer, got ${limit}`);
  return { limit, queued: [], running: [] };
}

export function enqueue(s: GateState, job: GateJob): GateState {
  return { ...s, queued: [...s.queued, job] };
}

/**
 * Starts what may start: the oldest queued jobs whose BMC is idle, while the global limit allows.
 * A job whose BMC is busy does not block younger jobs for other BMCs.
 */
export function dispatch(s: GateState): { state: GateState; start: GateJob[] } {
  const busy = new Set(s.running.map((j) => j.key));
  const running = [...s.running];
  const queued: GateJob[] = [];
  const start: GateJob[] = [];
  for (const job of s.queued) {
    if (running.length < s.limit && !busy.has(job.key)) {
      running.push(job);
      busy.add(job.key);
      start.push(job);
    } else {
      queued.push(job);
    }
  }
  return { state: { ...s, queued, running }, start };
}

/** A running job finished (or a queued one was given up); returns the state without it. */
export function release(s: GateState, id: number): GateState {
  return { ...s, running: s.running.filter((j) => j.id !== id), queued: s.queued.filter((j) => j.id !== id) };
}

export interface BmcGate {
  /** Runs `fn` when the BMC is idle and a global slot is free. */
  run<T>(key: string, fn: () => Promise<T>, signal?: AbortSignal): Promise<T>;
  /** Commands running now, and waiting. */
  stats(): { running: number; queued: number; limit: number };
}

export function createBmcGate(limit: number): BmcGate {
  let state = emptyGate(limit);
  let nextId = 1;
  const wake = new Map<number, () => void>();

  const pump = (): void => {
    const { state: next, start } = dispatch(state);
    state = next;
    for (const j of start) wake.get(j.id)?.();
  };

  return {
    async run<T>(key: string, fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
      const id = nextId++;
      signal?.throwIfAborted();
      await new Promise<void>((resolve, reject) => {
        const onAbort = (): void => {
          wake.delete(id);
          state = release(state, id);
          pump();
          reject(signal?.reason instanceof Error ? signal.reason : new Error('aborted'));
        };
        wake.set(id, () => {
          wake.delete(id);
          signal?.removeEventListener('abort', onAbort);
          resolve();
        });
        signal?.addEventListener('abort', onAbort, { once: true });
        state = enqueue(state, { id, key });
        pump();
      });
      try {
        return await fn();
      } finally {
        state = release(state, id);
        pump();
      }
    },
    stats() {
      return { running: state.running.length, queued: state.queued.length, limit: state.limit };
    },
  };
}
