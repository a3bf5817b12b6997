import type { InventoryEvent } from '../model.js';
import type { NewEvent } from '../store.js';
import { eventFromRow, type EventRow } from '../sqlite/rows.js';
import type { Queryable } from './db.js';

/**
 * Events are written last in their transaction. Event ids are taken and committed one
 * transaction at a time across the site (migration 1's trigger takes the events lock at a
 * transaction's first insert into `events`, and it is held to commit), so that a reader asking
 * for "ids above the last one I saw" never skips one that commits later. A transaction that
 * inserted its events as it went would hold that lock through every later statement — each a
 * round trip to a busy process — and, waiting for a row another transaction holds while holding
 * the lock, could deadlock with it. Appended events are therefore kept in the transaction
 * (`appendEvent`) and inserted together just before COMMIT (`flushEvents`, db.ts `tx`): the lock
 * is held for that insert and the commit only, and its holder never waits for a row.
 */

/** Where the event's row goes once inserted (events.append returns it). */
export interface EventRef {
  event: InventoryEvent | null;
}

interface Pending {
  readonly values: unknown[];
  readonly ref: EventRef | null;
}

const pending = new WeakMap<Queryable, Pending[]>();

/** Rows per INSERT: 7 parameters each, far below PostgreSQL's 65,535 per statement. */
const ROWS_PER_INSERT = 1_000;
const COLUMNS = '(at, mac, cluster, type, source, message, data)';

function valuesOf(now: () => Date, e: NewEvent): unknown[] {
  return [now().toISOString(), e.mac ?? null, e.cluster ?? null, e.type, e.source ?? null, e.message, e.data == null ? null : JSON.stringify(e.data)];
}

/** The transaction on `c` keeps its events until `flushEvents`. */
export function holdEvents(c: Queryable): void {
  pending.set(c, []);
}

/** Forgets what `c` held (the transaction ended, committed or not). */
export function dropEvents(c: Queryable): void {
  pending.delete(c);
}

/** How many events `c` holds: a savepoint's mark, for `rollbackEvents`. */
export function eventMark(c: Queryable): number {
  return pending.get(c)?.length ?? 0;
}

/** Drops the events appended after `mark` (their savepoint was rolled back). */
export function rollbackEvents(c: Queryable, mark: number): void {
  pending.get(c)?.splice(mark);
}

/**
 * Appends an event in the caller's transaction (`c`): held to its end, or inserted at once on a
 * connection that holds none. Subscribers hear of it when it has committed, through the
 * database's notification (index.ts), like any other instance's event.
 */
export async function appendEvent(c: Queryable, now: () => Date, e: NewEvent, ref: EventRef | null = null): Promise<void> {
  const held = pending.get(c);
  if (held) {
    held.push({ values: valuesOf(now, e), ref });
    return;
  }
  const r = await c.query<EventRow>(`INSERT INTO events ${COLUMNS} VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *`, valuesOf(now, e));
  if (ref) ref.event = eventFromRow(r.rows[0]!);
}

/** Inserts what `c` holds, in the order appended (ids follow that order). */
export async function flushEvents(c: Queryable): Promise<void> {
  const held = pending.get(c);
  if (!held || held.length === 0) return;
  pending.set(c, []);
  for (let i = 0; i < held.length; i += ROWS_PER_INSERT) {
    const slice = held.slice(i, i + ROWS_PER_INSERT);
    const params: unknown[] = [];
    const tuples = slice.map((p) => `(${p.values.map((v) => `$${params.push(v)}`).join(', ')})`);
    const r = await c.query<EventRow>(`INSERT INTO events ${COLUMNS} VALUES ${tuples.join(', ')} RETURNING *`, params);
    // Ids are drawn row by row in VALUES order; matched by id order all the same.
    const rows = [...r.rows].sort((a, b) => a.id - b.id);
    slice.forEach((p, j) => {
      const row = rows[j];
      if (p.ref && row) p.ref.event = eventFromRow(row);
    });
  }
}

export type AppendEvent = (c: Queryable, e: NewEvent) => Promise<void>;
