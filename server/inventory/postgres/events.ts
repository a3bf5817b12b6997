import type { InventoryEvent } from '../model.js';
import type { NewEvent } from '../store.js';
import { eventFromRow, type EventRow } from '../sqlite/rows.js';
import type { Queryable } from './db.js';

/**
 * Appends an event inside the caller's transaction (`c`). Subscribers hear of it when it has
 * committed, through the database's notification (index.ts), like any other instance's event.
 */
export async function appendEvent(c: Queryable, now: () => Date, e: NewEvent): Promise<InventoryEvent> {
  const r = await c.query<EventRow>('INSERT INTO events (at, mac, cluster, type, source, message, data) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *', [
    now().toISOString(),
    e.mac ?? null,
    e.cluster ?? null,
    e.type,
    e.source ?? null,
    e.message,
    e.data == null ? null : JSON.stringify(e.data),
  ]);
  return eventFromRow(r.rows[0]!);
}

export type AppendEvent = (c: Queryable, e: NewEvent) => Promise<InventoryEvent>;
