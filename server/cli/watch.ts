import type { ApiClient } from './client.js';
import { followEventStream, StreamError } from './stream-client.js';
import { table } from './table.js';

/**
 * `racksmith watch`: the machines of a rack or cluster, live, over the event stream. On a
 * terminal the table is redrawn in place; otherwise (a pipe, a log file) each change is one line,
 * so `racksmith watch --rack r12 | grep failed` works. State changes show at once from the events
 * themselves; every event then refreshes the machine's row from the API (debounced), because the
 * current step, host name, rack and cluster are fields of the machine.
 */

export interface WatchRow {
  mac: string;
  hostname: string | null;
  role: string | null;
  rack: string | null;
  cluster: string | null;
  state: string;
  step: string | null;
  since: string;
  last: string;
  /** The disk its installer reported using: `nvme0n1 6.4GB`. */
  disk?: string | null;
}

export interface StreamedEvent {
  readonly id: number;
  readonly at: string;
  readonly mac: string | null;
  readonly cluster: string | null;
  readonly type: string;
  readonly message: string;
  readonly data: Record<string, unknown> | null;
}

interface MachineJson {
  mac: string;
  hostname: string | null;
  role: string | null;
  rack: string | null;
  cluster: string | null;
  state: string;
  lastStep: string | null;
  stateChangedAt: string;
  installedDisk?: { name: string; sizeBytes: number } | null;
}

/** `nvme0n1 6.4GB`: the install disk as a tech reads it off a label. */
export function diskLabel(d: { name: string; sizeBytes: number } | null | undefined): string | null {
  return d ? `${d.name} ${(d.sizeBytes / 1e9).toFixed(1)}GB` : null;
}

export function rowOf(m: MachineJson, last = ''): WatchRow {
  return { mac: m.mac, hostname: m.hostname, role: m.role, rack: m.rack, cluster: m.cluster, state: m.state, step: m.lastStep, since: m.stateChangedAt, last, disk: diskLabel(m.installedDisk) };
}

/** "3m05s" — how long a machine has been in its state, the number a tech watches. */
export function elapsed(sinceIso: string, now: Date): string {
  const s = Math.max(0, Math.floor((now.getTime() - Date.parse(sinceIso)) / 1000));
  if (!Number.isFinite(s)) return '-';
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

const time = (iso: string): string => iso.replace(/\.\d+Z$/, 'Z');

/** One line for a pipe: time, rack, host, MAC, state, and what happened. */
export function changeLine(e: StreamedEvent, row: WatchRow | undefined): string {
  const host = row?.hostname ?? '-';
  const state = row?.state ?? (typeof e.data?.['to'] === 'string' ? e.data['to'] : '-');
  return [time(e.at), row?.rack ?? '-', host, e.mac ?? `cluster ${e.cluster ?? '-'}`, state, `${e.type}: ${e.message}`].join('  ');
}

export function snapshotLine(row: WatchRow, at: Date): string {
  return [time(at.toISOString()), row.rack ?? '-', row.hostname ?? '-', row.mac, row.state, `now${row.step ? ` (step ${row.step})` : ''}${row.disk ? ` on ${row.disk}` : ''}, for ${elapsed(row.since, at)}`].join('  ');
}

export function renderTable(rows: readonly WatchRow[], now: Date, header: string): string {
  const sorted = [...rows].sort((a, b) => (a.rack ?? '~').localeCompare(b.rack ?? '~') || (a.hostname ?? a.mac).localeCompare(b.hostname ?? b.mac));
  const body = table(
    ['rack', 'host', 'mac', 'role', 'state', 'step', 'disk', 'for', 'last event'],
    sorted.map((r) => [r.rack, r.hostname, r.mac, r.role, r.state, r.step, r.disk ?? null, elapsed(r.since, now), r.last.slice(0, 60)]),
  );
  return `${header}\n\n${body}`;
}

export interface WatchOptions {
  readonly baseUrl: string;
  readonly token: string;
  readonly client: ApiClient;
  readonly cluster?: string | undefined;
  readonly rack?: string | undefined;
  readonly tty: boolean;
  /** One JSON object per line (machines at start, then events) instead of text. */
  readonly json?: boolean | undefined;
  readonly out: (text: string) => void;
  readonly signal: AbortSignal;
  readonly now?: (() => Date) | undefined;
}

const CLEAR = '\x1b[H\x1b[2J';

/** A rename or move shows at once, in the line printed for the event itself (the machine is re-read later). */
function applyChanges(row: WatchRow, data: Record<string, unknown> | null): void {
  const changes = (data?.['changes'] ?? {}) as Record<string, { to?: unknown } | undefined>;
  for (const k of ['hostname', 'role', 'rack', 'cluster'] as const) {
    const to = changes[k]?.to;
    if (to === null || typeof to === 'string') row[k] = to;
  }
}

export async function watch(opts: WatchOptions): Promise<void> {
  const now = opts.now ?? (() => new Date());
  const rows = new Map<string, WatchRow>();
  const q = new URLSearchParams();
  if (opts.cluster) q.set('cluster', opts.cluster);
  if (opts.rack) q.set('rack', opts.rack);
  const query = q.size ? `?${q.toString()}` : '';
  const scope = [opts.cluster && `cluster ${opts.cluster}`, opts.rack && `rack ${opts.rack}`].filter(Boolean).join(', ') || 'all machines';
  let status = 'connecting';
  let loaded = false;
  const early: StreamedEvent[] = [];
  const refresh = new Map<string, NodeJS.Timeout>();

  let drawTimer: NodeJS.Timeout | null = null;
  const draw = (): void => {
    if (!opts.tty || !loaded || drawTimer) return;
    drawTimer = setTimeout(() => {
      drawTimer = null;
      opts.out(CLEAR + renderTable([...rows.values()], now(), `racksmith watch — ${scope} — ${rows.size} machines — ${status} — ${time(now().toISOString())}`));
    }, 100);
  };
  const tick = opts.tty ? setInterval(draw, 1000) : null;

  async function reload(mac: string, last: string): Promise<void> {
    try {
      const m = await opts.client.request<MachineJson>('GET', `/machines/${mac}`);
      const inScope = (!opts.rack || m.rack === opts.rack) && (!opts.cluster || m.cluster === opts.cluster);
      if (inScope) rows.set(mac, rowOf(m, last || rows.get(mac)?.last || ''));
      else rows.delete(mac);
    } catch {
      rows.delete(mac);
    }
    draw();
  }

  function apply(e: StreamedEvent): void {
    if (e.mac === null) {
      if (opts.json) opts.out(JSON.stringify({ type: 'event', event: e, machine: null }) + '\n');
      else if (!opts.tty) opts.out(changeLine(e, undefined) + '\n');
      return;
    }
    const mac = e.mac;
    let row = rows.get(mac);
    const last = `${e.type}: ${e.message}`;
    if (e.type === 'machine.deleted') {
      rows.delete(mac);
    } else if (row && e.type === 'state' && typeof e.data?.['to'] === 'string') {
      row.state = e.data['to'];
      row.since = e.at;
      row.last = last;
    } else if (row) {
      row.last = last;
      if (e.type === 'machine.updated') applyChanges(row, e.data);
    }
    if (opts.json) {
      opts.out(JSON.stringify({ type: 'event', event: e, machine: row ?? null }) + '\n');
    } else if (!opts.tty) {
      // A machine we did not know yet (just discovered or just moved here): show what we know now.
      if (!row && e.type === 'state' && typeof e.data?.['to'] === 'string') {
        row = { mac, hostname: null, role: null, rack: opts.rack ?? null, cluster: e.cluster, state: e.data['to'], step: null, since: e.at, last };
      }
      opts.out(changeLine(e, row) + '\n');
    }
    if (e.type !== 'machine.deleted') {
      // The step, host name, rack and cluster live on the machine: read it once the burst has
      // settled, and once more a little later (services set the step just after their event).
      for (const [key, ms] of [[mac, 250], [`${mac} again`, 1500]] as const) {
        clearTimeout(refresh.get(key));
        refresh.set(
          key,
          setTimeout(() => {
            refresh.delete(key);
            void reload(mac, last);
          }, ms),
        );
      }
    }
    draw();
  }

  async function load(): Promise<void> {
    const list = await opts.client.request<MachineJson[]>('GET', `/machines${query}`);
    for (const m of list) rows.set(m.mac, rowOf(m));
    loaded = true;
    if (opts.json) for (const r of rows.values()) opts.out(JSON.stringify({ type: 'machine', at: now().toISOString(), machine: r }) + '\n');
    else if (!opts.tty) for (const r of rows.values()) opts.out(snapshotLine(r, now()) + '\n');
    for (const e of early.splice(0)) apply(e);
    draw();
  }

  try {
    await followEventStream({
      url: `${opts.baseUrl.replace(/\/+$/, '')}/api/v1/events/stream${query}`,
      token: opts.token,
      signal: opts.signal,
      onOpen: () => {
        status = 'live';
        draw();
      },
      onDisconnect: (reason) => {
        status = `reconnecting (${reason})`;
        if (opts.json) opts.out(JSON.stringify({ type: 'disconnected', at: now().toISOString(), reason }) + '\n');
        else if (!opts.tty) opts.out(`${time(now().toISOString())}  -  disconnected: ${reason}; reconnecting\n`);
        draw();
      },
      onEvent: (ev) => {
        if (ev.event === 'hello') {
          // The table is read once, after the stream is open: nothing falls between the two.
          if (!loaded) void load().catch((err: Error) => opts.out(`racksmith watch: cannot list machines: ${err.message}\n`));
          return;
        }
        if (ev.event !== 'message') return;
        let e: StreamedEvent;
        try {
          e = JSON.parse(ev.data) as StreamedEvent;
        } catch {
          return;
        }
        if (loaded) apply(e);
        else early.push(e);
      },
    });
  } catch (err) {
    if (err instanceof StreamError) throw new Error(`watch: ${err.message}`);
    throw err;
  } finally {
    if (tick) clearInterval(tick);
    if (drawTimer) clearTimeout(drawTimer);
    for (const t of refresh.values()) clearTimeout(t);
  }
}
