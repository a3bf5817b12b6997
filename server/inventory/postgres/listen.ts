import pg from 'pg';
import { setTimeout as sleep } from 'node:timers/promises';

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
}

export interface ChangeListener {
  /** Whether the listening connection is up (health). */
  connected(): boolean;
  close(): Promise<void>;
}

const RETRY_MIN_MS = 250;
const RETRY_MAX_MS = 5_000;

/**
 * One connection per instance that LISTENs on racksmith's channels. A notification is delivered
 * once its transaction commits, to every listening session, the writer's own included. When the
 * connection breaks (PostgreSQL restarted, a failover to a replica) it reconnects with backoff and
 * says so, and the store rereads what it keeps in memory.
 */
export async function listenForChanges(opts: ChangeListenerOptions): Promise<ChangeListener> {
  let client: pg.Client | null = null;
  // A reconnect in flight: close() ends it too, or it would LISTEN on after the store closed (and
  // keep the process alive).
  let connecting: pg.Client | null = null;
  let closed = false;
  let up = false;
  const stop = new AbortController();

  const connect = async (): Promise<void> => {
    const c = new pg.Client({ connectionString: opts.url, application_name: opts.applicationName, connectionTimeoutMillis: 10_000, keepAlive: true });
    c.on('notification', (n) => opts.onChange(n.channel, n.payload ?? ''));
    c.on('error', () => lost(c));
    c.on('end', () => lost(c));
    connecting = c;
    try {
      await c.connect();
      for (const ch of CHANNELS) await c.query(`LISTEN ${ch}`);
      if (closed) throw new Error('the listener was closed while it connected');
    } catch (err) {
      await c.end().catch(() => undefined);
      throw err;
    } finally {
      if (connecting === c) connecting = null;
    }
    client = c;
    up = true;
  };

  let reconnecting: Promise<void> | null = null;
  const lost = (c: pg.Client): void => {
    if (client !== c || closed) return;
    client = null;
    up = false;
    void c.end().catch(() => undefined);
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
        } catch {
          wait = Math.min(wait * 2, RETRY_MAX_MS);
        }
      }
      reconnecting = null;
    })().catch(() => undefined);
  };

  await connect();
  return {
    connected: () => up,
    async close() {
      closed = true;
      stop.abort();
      const c = client;
      client = null;
      up = false;
      await Promise.all([c?.end().catch(() => undefined), connecting?.end().catch(() => undefined)]);
      // The reconnect loop has seen `closed` once this settles: nothing of the listener is left.
      await reconnecting;
    },
  };
}
