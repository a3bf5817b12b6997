import type { Request, RequestHandler, Response } from 'express';
import { z } from 'zod';
import { AppError } from '../lib/errors.js';
import type { Mac } from '../lib/mac.js';
import type { Metrics } from '../lib/metrics.js';
import { NO_METRICS } from '../lib/metrics.js';
import { EVENT_STREAM_METRICS, instrument } from '../lib/metric-catalogue.js';
import type { Service, ServiceState } from '../lib/service.js';
import { formatSse, formatSseComment } from '../lib/sse.js';
import type { InventoryEvent } from '../inventory/model.js';
import type { EventRepo, MachineRepo } from '../inventory/store.js';
import { presentEvent } from './api/present.js';
import { clusterNameSchema, macSchema, rackSchema } from './api/schemas.js';
import { parseWith } from './errors.js';

/**
 * `GET /api/v1/events/stream`: inventory events as Server-Sent Events, in id order, without loss
 * across reconnects.
 *
 * The store is the source of truth; a subscription is only a poke. On a poke the hub reads the
 * store once after the newest id it has fanned out and hands each event, in id order, to every
 * open stream. A new stream registers first and then catches up from its resume point (the
 * `Last-Event-ID` header, else `?after=`, else "now") page by page from the store; live events
 * that arrive meanwhile wait in its queue (shared objects, at most `maxQueuedEvents`; past that
 * the queue is emptied and the store is read again) and go out after it, minus those already
 * passed.
 *
 * Memory per stream is bounded: when the socket stops taking data (a write returns false) the
 * stream leaves live mode and catches up from the store once the socket drains, so nothing
 * piles up but one page. A stream that does not drain within `slowClientMs`, or whose unsent
 * output passes `maxBufferedBytes`, is ended (counted as dropped, reason "slow"); its client
 * reconnects with Last-Event-ID and catches up at its own pace.
 */

export interface EventStreamOptions {
  readonly events: Pick<EventRepo, 'list' | 'latestId' | 'subscribe'>;
  /** For `?rack=` and for `?cluster=` on events that carry only a MAC (TFTP, DHCP). */
  readonly machines: Pick<MachineRepo, 'get'>;
  readonly metrics?: Metrics | undefined;
  readonly keepAliveMs?: number | undefined;
  readonly slowClientMs?: number | undefined;
  readonly maxBufferedBytes?: number | undefined;
  readonly maxQueuedEvents?: number | undefined;
  readonly pageSize?: number | undefined;
  /** Sent as `retry:`: how long an EventSource waits before reconnecting. */
  readonly retryMs?: number | undefined;
}

export interface EventStream {
  readonly handler: RequestHandler;
  /** Its stop() ends every open stream, so that the HTTP server can close without waiting on them. */
  readonly service: Service;
  clients(): number;
}

export interface StreamFilter {
  readonly cluster?: string | undefined;
  readonly rack?: string | undefined;
  readonly mac?: Mac | undefined;
}

export interface Placement {
  readonly cluster: string | null;
  readonly rack: string | null;
}

/** Whether an event belongs to a filtered stream; `place` is the machine's current placement (null: unknown MAC). */
export function eventMatches(e: InventoryEvent, f: StreamFilter, place: Placement | null): boolean {
  if (f.mac !== undefined && e.mac !== f.mac) return false;
  if (f.cluster !== undefined && (e.cluster ?? place?.cluster ?? null) !== f.cluster && !movedFrom(e, 'cluster', f.cluster)) return false;
  if (f.rack !== undefined && (e.mac === null || rackOf(e, place) !== f.rack) && !movedFrom(e, 'rack', f.rack)) return false;
  return true;
}

/** A deleted machine has no row left: its event says which rack it was in. */
function rackOf(e: InventoryEvent, place: Placement | null): string | null {
  const was = e.type === 'machine.deleted' ? e.data?.['rack'] : undefined;
  return typeof was === 'string' ? was : (place?.rack ?? null);
}

/** A `machine.updated` event that moved the machine out of (or into) this rack or cluster. */
function movedFrom(e: InventoryEvent, field: 'rack' | 'cluster', value: string): boolean {
  const change = (e.data?.['changes'] as Record<string, { from?: unknown; to?: unknown } | undefined> | undefined)?.[field];
  return change !== undefined && (change.from === value || change.to === value);
}

const needsPlacement = (e: InventoryEvent, f: StreamFilter): boolean => e.mac !== null && (f.rack !== undefined || (f.cluster !== undefined && e.cluster === null));

/** These change where a machine is (rack, cluster), so its cached placement is forgotten. */
const PLACEMENT_EVENTS = new Set(['machine.updated', 'machine.deleted', 'state']);

const idString = z.string().regex(/^\d{1,15}$/, 'expected an event id (a non-negative integer)').transform(Number);
const single = <T extends z.ZodType>(s: T) => s.optional().refine((v) => !Array.isArray(v), 'give this parameter once');
export const streamQuerySchema = z
  .object({
    after: single(idString),
    cluster: single(clusterNameSchema),
    rack: single(rackSchema),
    mac: single(macSchema),
    // Consumed by authentication (browsers' EventSource cannot set headers); never echoed.
    token: z.string().optional(),
  })
  .strict();

interface Client {
  readonly res: Response;
  readonly filter: StreamFilter;
  /** The newest event id this stream has passed (sent or filtered out). */
  cursor: number;
  /** Live: the hub writes to it directly. Otherwise it is catching up and the hub queues for it. */
  live: boolean;
  readonly queue: InventoryEvent[];
  /** Bumped each time the queue overflowed and was emptied: the catch-up must read the store again. */
  overflows: number;
  closed: boolean;
}

export function createEventStream(opts: EventStreamOptions): EventStream {
  const keepAliveMs = opts.keepAliveMs ?? 15_000;
  const slowClientMs = opts.slowClientMs ?? 30_000;
  const maxBuffered = opts.maxBufferedBytes ?? 4 << 20;
  const maxQueued = opts.maxQueuedEvents ?? 10_000;
  const pageSize = opts.pageSize ?? 500;
  const retryMs = opts.retryMs ?? 3000;
  const m = opts.metrics ?? NO_METRICS;
  const dropped = instrument(m, EVENT_STREAM_METRICS.dropped);
  const clientsDef = EVENT_STREAM_METRICS.clients;

  const clients = new Set<Client>();
  let state: ServiceState = 'serving';
  let unsubscribe: (() => void) | null = null;
  let keepAlive: NodeJS.Timeout | null = null;
  /** Newest id fanned out; null until the hub has read the store's newest id. */
  let hubLast: number | null = null;
  let pumping = false;
  let poked = false;
  /** Requests between authentication and registration: the subscription must outlive them. */
  let connecting = 0;
  const placements = new Map<Mac, Placement | null>();

  m.collect('gauge', clientsDef.name, clientsDef.help, clientsDef.labels, () => [{ value: clients.size }]);

  async function placeOf(mac: Mac): Promise<Placement | null> {
    if (placements.has(mac)) return placements.get(mac) ?? null;
    const machine = await opts.machines.get(mac);
    const p = machine ? { cluster: machine.cluster, rack: machine.rack } : null;
    if (placements.size > 10_000) placements.clear();
    placements.set(mac, p);
    return p;
  }

  /** The placements an ordered batch needs for these filters, by event id. */
  async function resolve(batch: readonly InventoryEvent[], filters: readonly StreamFilter[]): Promise<Map<number, Placement | null>> {
    const out = new Map<number, Placement | null>();
    for (const e of batch) {
      if (e.mac !== null && PLACEMENT_EVENTS.has(e.type)) placements.delete(e.mac);
      if (e.mac !== null && filters.some((f) => needsPlacement(e, f))) out.set(e.id, await placeOf(e.mac));
    }
    return out;
  }

  function drop(c: Client, reason: 'slow' | 'shutdown' | 'error'): void {
    if (c.closed) return;
    c.closed = true;
    clients.delete(c);
    if (reason !== 'shutdown') dropped.inc({ reason });
    if (reason === 'shutdown') c.res.end();
    else c.res.destroy();
    idleCheck();
  }

  /** Writes; false when the socket wants a pause (Node's writable backpressure). */
  function write(c: Client, chunk: string): boolean {
    if (c.closed) return false;
    if (chunk === '') return true;
    if (c.res.writableLength > maxBuffered) {
      drop(c, 'slow');
      return false;
    }
    return c.res.write(chunk);
  }

  function render(c: Client, batch: readonly InventoryEvent[], places: Map<number, Placement | null>): string {
    let out = '';
    for (const e of batch) {
      if (e.id <= c.cursor) continue;
      c.cursor = e.id;
      if (eventMatches(e, c.filter, places.get(e.id) ?? null)) out += formatSse({ id: e.id, data: JSON.stringify(presentEvent(e)) });
    }
    return out;
  }

  async function pump(): Promise<void> {
    if (pumping) {
      poked = true;
      return;
    }
    pumping = true;
    try {
      do {
        poked = false;
        for (let pages = 0; pages < 1000; pages++) {
          const after = hubLast;
          if (after === null || clients.size === 0) break;
          const batch = await opts.events.list({ afterId: after, limit: pageSize });
          if (batch.length === 0) break;
          const all = [...clients];
          const places = await resolve(batch, all.map((c) => c.filter));
          for (const c of all) {
            if (c.closed) continue;
            if (c.live) {
              if (!write(c, render(c, batch, places)) && !c.closed) {
                c.live = false;
                void catchUp(c);
              }
            } else {
              c.queue.push(...batch);
              if (c.queue.length > maxQueued) {
                c.queue.length = 0;
                c.overflows++;
              }
            }
          }
          hubLast = batch[batch.length - 1]?.id ?? hubLast;
          if (batch.length < pageSize) break;
        }
      } while (poked);
    } finally {
      pumping = false;
    }
  }

  const onEvent = (): void => {
    void pump().catch(() => {
      /* the store is closing; streams end with the service */
    });
  };

  async function ensureSubscribed(): Promise<void> {
    if (unsubscribe) return;
    unsubscribe = opts.events.subscribe(onEvent);
    hubLast = await opts.events.latestId();
    keepAlive = setInterval(() => {
      for (const c of clients) if (c.live && !c.res.writableNeedDrain) write(c, formatSseComment('keep-alive'));
    }, keepAliveMs);
    onEvent();
  }

  function idleCheck(): void {
    if (clients.size > 0 || connecting > 0 || !unsubscribe) return;
    unsubscribe();
    unsubscribe = null;
    hubLast = null;
    if (keepAlive) clearInterval(keepAlive);
    keepAlive = null;
    placements.clear();
  }

  /** Resolves once the socket has taken what it was given; drops the client if it does not within slowClientMs. */
  function drained(c: Client): Promise<void> {
    if (c.closed || !c.res.writableNeedDrain) return Promise.resolve();
    return new Promise<void>((resolveDrain) => {
      const done = (): void => {
        clearTimeout(timer);
        c.res.off('drain', done);
        c.res.off('close', done);
        resolveDrain();
      };
      const timer = setTimeout(() => {
        drop(c, 'slow');
        done();
      }, slowClientMs);
      c.res.once('drain', done);
      c.res.once('close', done);
    });
  }

  /**
   * From the cursor to live: pages from the store, then whatever the hub queued meanwhile. The
   * switch to live happens synchronously with an empty, complete queue, so nothing falls between.
   */
  async function catchUp(c: Client): Promise<void> {
    try {
      while (!c.closed) {
        await drained(c);
        if (c.closed) return;
        const overflowsBefore = c.overflows;
        const page = await opts.events.list({ afterId: c.cursor, limit: pageSize });
        write(c, render(c, page, await resolve(page, [c.filter])));
        if (page.length === pageSize || c.overflows !== overflowsBefore) continue;
        while (!c.closed && c.queue.length > 0 && c.overflows === overflowsBefore) {
          await drained(c);
          const batch = c.queue.splice(0, pageSize);
          write(c, render(c, batch, await resolve(batch, [c.filter])));
        }
        if (c.overflows !== overflowsBefore) continue;
        if (c.res.writableNeedDrain) continue;
        c.live = true;
        return;
      }
    } catch {
      drop(c, 'error');
    }
  }

  function resumePoint(req: Request, after: number | undefined): number | undefined {
    const header = req.get('last-event-id');
    if (header === undefined || header === '') return after;
    return parseWith(idString, header.trim(), 'Last-Event-ID');
  }

  const handler: RequestHandler = async (req, res) => {
    const q = parseWith(streamQuerySchema, req.query, 'query');
    const from = resumePoint(req, q.after);
    if (state !== 'serving') throw new AppError('unavailable', 'ERR_SHUTTING_DOWN', 'racksmith is shutting down; reconnect in a moment');
    let c: Client;
    connecting++;
    try {
      await ensureSubscribed();
      const cursor = from ?? (await opts.events.latestId());
      c = { res, filter: { cluster: q.cluster, rack: q.rack, mac: q.mac }, cursor, live: false, queue: [], overflows: 0, closed: false };
      clients.add(c);
    } finally {
      connecting--;
    }
    res.status(200);
    res.setHeader('Content-Type', 'text/event-stream; charset=utf-8');
    // no-transform: a compressing proxy would hold events back until its buffer fills.
    res.setHeader('Cache-Control', 'no-cache, no-transform');
    res.setHeader('X-Accel-Buffering', 'no');
    res.flushHeaders();
    req.socket.setNoDelay(true);
    const gone = (): void => {
      c.closed = true;
      clients.delete(c);
      idleCheck();
    };
    res.on('close', gone);
    if (res.destroyed || req.socket.destroyed) return gone();
    // The server keeps half-closed connections open (http/service.ts); a stream's client that
    // closed its side is gone, and its stream ends now rather than at a failed write.
    const ended = (): void => {
      gone();
      res.end();
    };
    if (req.socket.readableEnded) return ended();
    req.socket.once('end', ended);
    write(c, formatSse({ retry: retryMs, event: 'hello', data: JSON.stringify({ latestId: hubLast ?? c.cursor, resumeFrom: c.cursor }) }));
    await catchUp(c);
  };

  return {
    handler,
    clients: () => clients.size,
    service: {
      name: 'event-stream',
      async start() {
        state = 'serving';
      },
      async stop() {
        state = 'stopping';
        for (const c of [...clients]) drop(c, 'shutdown');
        idleCheck();
        state = 'stopped';
      },
      health() {
        return { state, detail: { clients: clients.size } };
      },
    },
  };
}
