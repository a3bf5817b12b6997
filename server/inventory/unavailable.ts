import { AppError } from '../lib/errors.js';
import type { Logger } from '../lib/log.js';

/**
 * A database that cannot be reached now (restarting, failing over, a host gone) is not a fault in
 * racksmith: callers get `ERR_DATABASE_UNAVAILABLE` (503, with a time to retry after), not a 500
 * with a stack, and the reason in words, never the database's address.
 */
export const DATABASE_UNAVAILABLE = 'ERR_DATABASE_UNAVAILABLE';

/** Seconds a client should wait before asking again (the listener's reconnect backoff tops at 5 s). */
export const RETRY_AFTER_S = 5;

export class DatabaseUnavailableError extends AppError {
  readonly retryAfterSeconds = RETRY_AFTER_S;
  constructor(
    readonly reason: string,
    options?: { cause: unknown },
  ) {
    super('unavailable', DATABASE_UNAVAILABLE, `the database is unavailable (${reason}); racksmith reconnects on its own, try again in a few seconds`);
    if (options) this.cause = options.cause;
  }
}

// SQLSTATEs (PostgreSQL, appendix A) that say "not now" rather than "not this statement".
const STATES: Readonly<Record<string, string>> = {
  '57P01': 'the server is shutting down',
  '57P02': 'the server crashed',
  '57P03': 'the server is starting',
  '53300': 'too many connections',
  // A primary demoted, or a URL that reaches a standby: writes fail until the failover settles.
  '25006': 'the server is read-only (a standby)',
};

const ERRNOS: Readonly<Record<string, string>> = {
  ECONNREFUSED: 'connection refused',
  ECONNRESET: 'connection reset',
  EPIPE: 'connection lost',
  ETIMEDOUT: 'no answer in time',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  ENOTFOUND: 'host name not found',
  EAI_AGAIN: 'host name not resolved',
  // A Unix socket that is not there: the server is not running.
  ENOENT: 'no server socket',
};

// node-postgres says these in words only.
const MESSAGES: readonly [RegExp, string][] = [
  [/^Connection terminated due to connection timeout/, 'no answer in time'],
  [/^timeout exceeded when trying to connect/, 'no answer in time'],
  [/^Query read timeout/, 'no answer in time'],
  [/^Connection terminated/, 'connection lost'],
  [/is not queryable/, 'connection lost'],
  [/^Cannot use a pool after calling end/, 'this racksmith is stopping'],
];

/** Why `err` means the database cannot be reached now, or null when it is any other error. */
export function unavailableReason(err: unknown): string | null {
  if (!(err instanceof Error)) return null;
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string') {
    if (STATES[code]) return STATES[code];
    // Class 08: connection exception.
    if (/^08[0-9A-Z]{3}$/.test(code)) return 'connection lost';
    if (ERRNOS[code]) return ERRNOS[code];
  }
  for (const [re, reason] of MESSAGES) if (re.test(err.message)) return reason;
  // Several addresses tried at once (a host name with IPv4 and IPv6): the first one's reason.
  if (err instanceof AggregateError) return err.errors.map(unavailableReason).find((r) => r !== null) ?? null;
  return null;
}

/** `err` as a DatabaseUnavailableError when it is one of those; otherwise unchanged. */
export function asUnavailable(err: unknown): unknown {
  if (err instanceof DatabaseUnavailableError) return err;
  const reason = unavailableReason(err);
  return reason === null ? err : new DatabaseUnavailableError(reason, { cause: err });
}

/**
 * Logs a failure of background work (a driver, a capture, a task): during a database outage as
 * a warning with its reason, since the outage itself is logged once when it starts and ends;
 * anything else as an error with its stack.
 */
export function logFailure(log: Pick<Logger, 'warn' | 'error'>, err: unknown, message: string, fields: Record<string, unknown> = {}): void {
  if (err instanceof DatabaseUnavailableError) log.warn({ ...fields, reason: err.reason }, `${message}: the database is unavailable; tried again once it answers`);
  else log.error({ ...fields, err }, message);
}
