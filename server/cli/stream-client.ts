import { createSseParser, type SseEvent } from '../lib/sse.js';

/**
 * A Node client of racksmith's event stream (what a browser's EventSource does): one connection
 * with `readEventStream`, or `followEventStream` which reconnects with Last-Event-ID after a
 * drop, so that no event is lost across a server restart or a slow-client disconnect.
 */

export class StreamError extends Error {
  readonly code: 'ERR_STREAM_HTTP' | 'ERR_STREAM_CONNECT';
  readonly status: number | undefined;
  constructor(code: StreamError['code'], message: string, status?: number) {
    super(message);
    this.name = 'StreamError';
    this.code = code;
    this.status = status;
  }
}

export interface ReadOptions {
  readonly url: string;
  readonly token?: string | undefined;
  readonly lastEventId?: string | undefined;
  readonly signal?: AbortSignal | undefined;
  readonly onEvent: (e: SseEvent) => void;
  /** Called once the server has answered 200. */
  readonly onOpen?: (() => void) | undefined;
}

/** One connection: resolves when the server ends the stream (or the signal aborts); rejects on an HTTP error. Returns the last event id. */
export async function readEventStream(opts: ReadOptions): Promise<string> {
  const headers: Record<string, string> = { accept: 'text/event-stream' };
  if (opts.token) headers['authorization'] = `Bearer ${opts.token}`;
  if (opts.lastEventId) headers['last-event-id'] = opts.lastEventId;
  let res: Response;
  try {
    res = await fetch(opts.url, { headers, signal: opts.signal ?? null });
  } catch (err) {
    if (opts.signal?.aborted) return opts.lastEventId ?? '';
    const cause = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).message;
    throw new StreamError('ERR_STREAM_CONNECT', `cannot reach ${new URL(opts.url).origin} (${cause})`);
  }
  if (!res.ok || !res.body) {
    const text = await res.text().catch(() => '');
    let message = text.slice(0, 300);
    try {
      const body = JSON.parse(text) as { error?: { code?: string; message?: string } };
      message = `${body.error?.code ?? 'ERR_HTTP'}: ${body.error?.message ?? message}`;
    } catch {
      /* not JSON */
    }
    throw new StreamError('ERR_STREAM_HTTP', `${res.status} ${message}`, res.status);
  }
  opts.onOpen?.();
  let lastId = opts.lastEventId ?? '';
  const parser = createSseParser((e) => {
    lastId = e.id;
    opts.onEvent(e);
  });
  const decoder = new TextDecoder();
  const reader = res.body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      parser.push(decoder.decode(value, { stream: true }));
    }
  } catch (err) {
    if (!opts.signal?.aborted && !(err instanceof TypeError)) throw err;
    // A reset connection ends this attempt like a clean end; the caller decides whether to reconnect.
  } finally {
    reader.releaseLock();
  }
  return lastId;
}

export interface FollowOptions extends ReadOptions {
  /** Called before each wait to reconnect, with the reason. */
  readonly onDisconnect?: ((reason: string) => void) | undefined;
  /** Cap on the wait between attempts (doubling from 250 ms). */
  readonly maxDelayMs?: number | undefined;
}

/** Reads until the signal aborts, reconnecting from the last event id. 401/403/400 are not retried. */
export async function followEventStream(opts: FollowOptions): Promise<void> {
  let lastEventId = opts.lastEventId;
  let delay = 250;
  const maxDelay = opts.maxDelayMs ?? 10_000;
  while (!opts.signal?.aborted) {
    let reason = 'the server ended the stream';
    try {
      lastEventId = await readEventStream({
        ...opts,
        lastEventId,
        onOpen: () => {
          delay = 250;
          opts.onOpen?.();
        },
      });
    } catch (err) {
      if (err instanceof StreamError && err.status !== undefined && err.status >= 400 && err.status < 500) throw err;
      reason = (err as Error).message;
    }
    if (opts.signal?.aborted) return;
    opts.onDisconnect?.(reason);
    await sleep(delay, opts.signal);
    delay = Math.min(delay * 2, maxDelay);
  }
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}
