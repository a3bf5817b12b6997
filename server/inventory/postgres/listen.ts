import { Socket } from 'node:net';
import pg from 'pg';
import { setTimeout as sleep } from 'node:timers/promises';
import { waitAtMost } from '../../lib/sleep.js';
import { unavailableReason } from '../unavailable.js';

export const CHANNELS = ['racksmith_machine', 'racksmith_change'] as const;

export interface ChangeListenerOptions {
  readonly url: string;
  readonly applicationName: string;
  onChange(channel: string, payload: string): void;
  /**
   * The listening connection was lost and is back: notifications sent meanwhile are gone, so
   * whatever is kept from them must be read again.
   */
  onReconnect(): void;
  /** The listening connection was lost (why, in words); reconnecting has begun. */
  onLost?(reason: string): void;
  /** How often the connection is asked to answer (default 10 s), and how long it has to (5 s). */
  readonly heartbeatMs?: number;
  readonly heartbeatTimeoutMs?: number;
}

/** The listening connection, as health reports it. */
export interface ListenerState {
  readonly up: boolean;
  /** When it last went up or down. */
  readonly since: Date;
  /** Why it is down (null while up). */
  readonly reason: string | null;
}

export interface ChangeListener {
  /** Whether the listening connection is up (health). */
  connected(): boolean;
  state(): ListenerState;
  close(): Promise<void>;
}

const RETRY_MIN_MS = 250;
const RETRY_MAX_MS = 5_000;

/**
 * One connection per instance that LISTENs on racksmith's channels. A notification is delivered
 * once its transaction commits, to every listening session, the writer's own included. When the
 * connection breaks (PostgreSQL restarted, a failover to a replica) it reconnects with backoff and
 * says so, and the store rereads what it keeps in memory. A connection that only goes quiet (the
 * database host gone without a reset, as when a failover moves its address) is found by a
 * heartbeat: TCP alone would take minutes to notice.
 */
export async function listenForChanges(opts: ChangeListenerOptions): Promise<ChangeListener> {
  let client: pg.Client | null = null;
  // A reconnect in flight: close() ends it too, or it would LISTEN on after the store closed (and
  // keep the process alive).
  let connecting: pg.Client | null = null;
  let closed = false;
  let state: ListenerState = { up: false, since: new Date(), reason: 'not connected yet' };
  const stop = new AbortController();

  // Each client's socket, ours to destroy: ending a connection to a host that went quiet would
  // wait for an answer that never comes, and its socket would keep the process alive.
  const sockets = new WeakMap<pg.Client, Socket>();
  // A broken or half-made connection is destroyed, not ended: node-postgres never settles the
  // connect() of a client ended while it connects.
  const kill = (c: pg.Client | null): void => {
    if (c) sockets.get(c)?.destroy();
  };
  // A live one says goodbye first, briefly.
  const drop = async (c: pg.Client | null): Promise<void> => {
    if (!c) return;
    await waitAtMost(c.end(), 1_000);
    kill(c);
  };

  const connect = async (): Promise<void> => {
    let socket: Socket | null = null;
    const c = new pg.Client({ connectionString: opts.url, application_name: opts.applicationName, connectionTimeoutMillis: 10_000, keepAlive: true, stream: () => (socket = new Socket()) });
    c.on('notification', (n) => opts.onChange(n.channel, n.payload ?? ''));
    c.on('error', (err) => lost(c, reasonOf(err)));
    c.on('end', () => lost(c, 'connection lost'));
    connecting = c;
    try {
      if (socket) sockets.set(c, socket);
      await c.connect();
      for (const ch of CHANNELS) await c.query(`LISTEN ${ch}`);
      if (closed) throw new Error('the listener was closed while it connected');
    } catch (err) {
      kill(c);
      throw err;
    } finally {
      if (connecting === c) connecting = null;
    }
    client = c;
    state = { up: true, since: new Date(), reason: null };
  };

  let reconnecting: Promise<void> | null = null;
  const lost = (c: pg.Client, reason: string): void => {
    if (client !== c || closed) return;
    client = null;
    state = { up: false, since: new Date(), reason };
    kill(c);
    opts.onLost?.(reason);
    if (reconnecting) return;
    reconnecting = (async () => {
      let wait = RETRY_MIN_MS;
      while (!closed) {
        try {
          await sleep(wait, undefined, { signal: stop.signal });
          await connect();
          reconnecting = null;
          opts.onReconnect();
          return;
        } catch (err) {
          if (!closed) state = { ...state, reason: reasonOf(err) };
          wait = Math.min(wait * 2, RETRY_MAX_MS);
        }
      }
      reconnecting = null;
    })().catch(() => undefined);
  };

  // The heartbeat: a query the connection must answer in time, or it is lost.
  const heartbeatTimeout = opts.heartbeatTimeoutMs ?? 5_000;
  let beating = false;
  const heartbeat = setInterval(() => {
    const c = client;
    if (!c || beating) return;
    beating = true;
    void waitAtMost(
      c.query('SELECT 1').then(
        () => null,
        (err: unknown) => reasonOf(err),
      ),
      heartbeatTimeout,
    ).then((failed) => {
      beating = false;
      // undefined: no answer in time; a string: why the query failed.
      if (failed !== null) lost(c, failed ?? `no answer in ${heartbeatTimeout / 1000} s`);
    });
  }, opts.heartbeatMs ?? 10_000);
  heartbeat.unref();

  try {
    await connect();
  } catch (err) {
    clearInterval(heartbeat);
    throw err;
  }
  return {
    connected: () => state.up,
    state: () => state,
    async close() {
      closed = true;
      stop.abort();
      clearInterval(heartbeat);
      const c = client;
      client = null;
      state = { up: false, since: new Date(), reason: 'closed' };
      kill(connecting);
      await drop(c);
      // The reconnect loop sees `closed` and ends (bounded: nothing of it holds the process).
      await waitAtMost(reconnecting ?? Promise.resolve(), 5_000);
    },
  };
}

function reasonOf(err: unknown): string {
  return unavailableReason(err) ?? (err instanceof Error ? err.message : String(err));
}
