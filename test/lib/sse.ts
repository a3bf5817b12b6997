import { readEventStream } from '../../server/cli/stream-client.js';
import type { SseEvent } from '../../server/lib/sse.js';

/**
 * A test's view of one event-stream connection: every event received, a way to wait for one,
 * and a way to hang up (as a browser tab does when it is closed).
 */
export interface TestStream {
  readonly events: SseEvent[];
  /** Inventory events only (no hello), parsed. */
  data(): any[];
  /** Resolves with the first event (in arrival order, from the start) that satisfies the predicate. */
  waitFor(pred: (e: SseEvent) => boolean, timeoutMs?: number, what?: string): Promise<SseEvent>;
  close(): void;
  /** Settles when the server ends the stream: 'ended' (clean end) or the error's message. */
  readonly ended: Promise<string>;
}

export function openStream(url: string, token: string | undefined, lastEventId?: string): TestStream {
  const events: SseEvent[] = [];
  const waiters = new Set<() => void>();
  const abort = new AbortController();
  const ended = readEventStream({
    url,
    token,
    lastEventId,
    signal: abort.signal,
    onEvent: (e) => {
      events.push(e);
      for (const w of [...waiters]) w();
    },
  }).then(
    () => 'ended',
    (err: Error) => err.message,
  );
  return {
    events,
    data: () => events.filter((e) => e.event === 'message').map((e) => JSON.parse(e.data)),
    waitFor(pred, timeoutMs = 10_000, what = 'an event') {
      return new Promise((resolve, reject) => {
        const check = (): void => {
          const found = events.find(pred);
          if (!found) return;
          clearTimeout(timer);
          waiters.delete(check);
          resolve(found);
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; got ${events.length} events: ${events.slice(-5).map((e) => e.data.slice(0, 120)).join(' | ')}`));
        }, timeoutMs);
        waiters.add(check);
        void ended.then(() => {
          if (waiters.has(check)) {
            check();
            if (waiters.has(check)) {
              clearTimeout(timer);
              waiters.delete(check);
              reject(new Error(`the stream ended before ${what}`));
            }
          }
        });
        check();
      });
    },
    close: () => abort.abort(),
    ended,
  };
}
