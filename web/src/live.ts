import type { InventoryEvent } from './api.js';

/**
 * One event stream per signed-in page. EventSource sends the cookie, reconnects by itself and
 * sends Last-Event-ID, so the server replays whatever happened while the connection was down.
 * The view on screen subscribes; its handler is replaced on navigation.
 */

export type LiveState = 'connecting' | 'live' | 'reconnecting' | 'closed';

let source: EventSource | null = null;
let handler: ((e: InventoryEvent) => void) | null = null;
let stateListener: (s: LiveState) => void = () => undefined;

export function onLiveState(fn: (s: LiveState) => void): void {
  stateListener = fn;
}

/** The current view's event handler (null: none). */
export function subscribe(fn: ((e: InventoryEvent) => void) | null): void {
  handler = fn;
}

export function startLive(): void {
  if (source) return;
  stateListener('connecting');
  const es = new EventSource('/api/v1/events/stream');
  source = es;
  es.addEventListener('hello', () => stateListener('live'));
  es.addEventListener('message', (ev) => {
    let e: InventoryEvent;
    try {
      e = JSON.parse((ev as MessageEvent<string>).data) as InventoryEvent;
    } catch {
      return;
    }
    handler?.(e);
  });
  es.addEventListener('error', () => {
    // CONNECTING: the browser retries by itself; CLOSED: the server refused (signed out).
    stateListener(es.readyState === EventSource.CLOSED ? 'closed' : 'reconnecting');
  });
}

export function stopLive(): void {
  source?.close();
  source = null;
  handler = null;
}

/** Calls fn once per key after events for that key stop arriving for `ms`. */
export function debouncer(ms: number): (key: string, fn: () => void) => void {
  const timers = new Map<string, number>();
  return (key, fn) => {
    const t = timers.get(key);
    if (t !== undefined) clearTimeout(t);
    timers.set(
      key,
      window.setTimeout(() => {
        timers.delete(key);
        fn();
      }, ms),
    );
  };
}
