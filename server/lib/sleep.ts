import { setTimeout as delay } from 'node:timers/promises';

/** Waits `ms`, or less when the signal aborts first (it resolves either way: callers check the signal). */
export async function sleepUnlessAborted(ms: number, signal?: AbortSignal): Promise<void> {
  try {
    await delay(ms, undefined, signal ? { signal } : undefined);
  } catch (err) {
    if ((err as Error).name !== 'AbortError') throw err;
  }
}

/**
 * `p`, or undefined once `ms` have passed without it settling (a rejection counts as settled):
 * for waits in a shutdown path. The timer is cleared as soon as `p` settles; it is not unref'd,
 * since whoever awaits this is work the process must stay for.
 */
export function waitAtMost<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), ms);
  });
  return Promise.race([p.catch(() => undefined), late]).finally(() => clearTimeout(timer));
}
