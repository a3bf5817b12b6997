import type { EventQuery, EventTypes } from './store.js';

/**
 * The SELECT of an event query, for either engine: `placeholder(n)` names the n-th parameter
 * (`?` for SQLite, `$n` for PostgreSQL). Without afterId, `newest` reads backwards from the end;
 * the caller reverses those rows, so events are always returned oldest first.
 */
export function eventQuerySql(q: EventQuery, placeholder: (n: number) => string): { text: string; values: unknown[]; newest: boolean } {
  const where: string[] = [];
  const values: unknown[] = [];
  const p = (v: unknown): string => {
    values.push(v);
    return placeholder(values.length);
  };
  if (q.mac !== undefined) where.push(`mac = ${p(q.mac)}`);
  if (q.cluster !== undefined) where.push(`cluster = ${p(q.cluster)}`);
  if (q.afterId !== undefined) where.push(`id > ${p(q.afterId)}`);
  if (q.beforeId !== undefined) where.push(`id < ${p(q.beforeId)}`);
  // The type itself or a sub-type: "power" is power and power.job, not powered.
  if (q.type !== undefined) where.push(`(type = ${p(q.type)} OR substr(type, 1, length(${p(q.type)}) + 1) = ${p(q.type)} || '.')`);
  const newest = q.newest === true && q.afterId === undefined;
  const limit = p(Math.min(Math.max(q.limit ?? 1000, 1), 10_000));
  return { text: `SELECT * FROM events ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY id ${newest ? 'DESC' : ''} LIMIT ${limit}`, values, newest };
}

/** The first event at or after a time, by id (events are appended in time order): the scan stops at it. */
export function firstIdSinceSql(at: string, placeholder: (n: number) => string): { text: string; values: unknown[] } {
  return {
    text: `SELECT COALESCE((SELECT id FROM events WHERE at >= ${placeholder(1)} ORDER BY id LIMIT 1), (SELECT COALESCE(MAX(id), 0) + 1 FROM events)) AS id`,
    values: [at],
  };
}

/** One batch of retention: the oldest `limit` events below an id, of some types or all, for either engine. */
export function eventPruneSql(belowId: number, types: EventTypes | null, limit: number, placeholder: (n: number) => string): { text: string; values: unknown[] } {
  const values: unknown[] = [];
  const p = (v: unknown): string => {
    values.push(v);
    return placeholder(values.length);
  };
  const where = [`id < ${p(belowId)}`];
  if (types) {
    const any = [
      ...(types.exact.length ? [`type IN (${types.exact.map((t) => p(t)).join(', ')})`] : []),
      ...types.families.map((f) => `substr(type, 1, ${f.length + 1}) = ${p(f + '.')}`),
    ];
    where.push(any.length ? `(${any.join(' OR ')})` : 'FALSE');
  }
  return { text: `DELETE FROM events WHERE id IN (SELECT id FROM events WHERE ${where.join(' AND ')} ORDER BY id LIMIT ${p(Math.max(1, Math.floor(limit)))})`, values };
}
