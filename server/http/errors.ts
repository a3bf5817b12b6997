import { STATUS_CODES } from 'node:http';
import type { ErrorRequestHandler, RequestHandler } from 'express';
import { z } from 'zod';
import { AppError, type ErrorDetail, type ErrorKind } from '../lib/errors.js';
import { TransitionError } from '../inventory/lifecycle.js';
import { DatabaseUnavailableError } from '../inventory/unavailable.js';
import type { Logger } from '../lib/log.js';

/**
 * Every error leaves as `{"error": {"code", "message", "field"?}}` with the status of its kind:
 * 400 bad input, 401 no or bad token, 403 role too low, 404 unknown resource, 409 conflict,
 * 415 a body that is not of the type the route takes, 502 a BMC answered with an error, 503 the
 * database does not answer (with Retry-After), 504 a BMC did not answer in time.
 * A 500 is a real fault: logged with its stack, answered without internals.
 */
const STATUS: Record<ErrorKind, number> = {
  invalid: 400,
  unauthorized: 401,
  forbidden: 403,
  'not-found': 404,
  conflict: 409,
  'unsupported-media-type': 415,
  unavailable: 503,
  'bad-gateway': 502,
  'gateway-timeout': 504,
};

export interface ErrorBody {
  readonly error: { readonly code: string; readonly message: string; readonly field?: string; readonly details?: readonly ErrorDetail[] };
}

export function errorBody(code: string, message: string, field?: string, details?: readonly ErrorDetail[]): ErrorBody {
  return { error: { code, message, ...(field === undefined ? {} : { field }), ...(details === undefined ? {} : { details }) } };
}

/** The first zod issue as a 400, naming the field by its dotted path. */
export function fromZod(err: z.ZodError, prefix?: string): AppError {
  const issue = err.issues[0];
  const path = [prefix, ...(issue?.path.map(String) ?? [])];
  let message = issue?.message ?? 'invalid input';
  if (issue?.code === 'unrecognized_keys') {
    path.push(issue.keys[0]);
    message = `unknown field(s): ${issue.keys.join(', ')}`;
  } else if (issue?.code === 'invalid_type' && issue.input === undefined) {
    message = 'this field is required';
  }
  const field = path.filter(Boolean).join('.') || undefined;
  return new AppError('invalid', 'ERR_VALIDATION', field ? `${field}: ${message}` : message, field);
}

export function parseWith<T extends z.ZodType>(schema: T, value: unknown, prefix?: string): z.output<T> {
  const result = schema.safeParse(value);
  if (!result.success) throw fromZod(result.error, prefix);
  return result.data;
}

export const notFoundHandler: RequestHandler = (req, res) => {
  res.status(404).json(errorBody('ERR_NOT_FOUND', `no route for ${req.method} ${req.path}`));
};

export const errorHandler: ErrorRequestHandler = (err: unknown, req, res, _next) => {
  if (res.headersSent) return;
  const e = errorReply(err, req.path, req.log);
  if (e.retryAfter) res.set('Retry-After', String(e.retryAfter));
  res.status(e.status).json(e.body);
};

/** The status and body an error is answered with; a real fault (500) is logged with its stack. */
export function errorReply(err: unknown, path: string, log: Logger | undefined): { status: number; body: ErrorBody; retryAfter?: number } {
  // The database restarting or failing over: a 503 that says when to ask again.
  if (err instanceof DatabaseUnavailableError) return { status: 503, body: errorBody(err.code, err.message), retryAfter: err.retryAfterSeconds };
  if (err instanceof AppError) return { status: STATUS[err.kind], body: errorBody(err.code, err.message, err.field, err.details) };
  if (err instanceof TransitionError) return { status: 409, body: errorBody(err.code, err.message, 'state') };
  if (err instanceof z.ZodError) {
    const e = fromZod(err);
    return { status: 400, body: errorBody(e.code, e.message, e.field) };
  }
  // Body-parser failures (malformed JSON, wrong charset, too large) say what was wrong. A file
  // that could not be sent (send's 404 for a missing file, 416 for a bad range) says only its
  // status: its message is the file system's, with the path on the server's disk in it.
  const e = err as { type?: string; status?: number; message?: string };
  if (typeof e.status === 'number' && e.status >= 400 && e.status < 500) {
    if (e.type === undefined) {
      const code = e.status === 404 ? 'ERR_NOT_FOUND' : e.status === 416 ? 'ERR_RANGE' : 'ERR_BAD_REQUEST';
      return { status: e.status, body: errorBody(code, e.status === 404 ? `no such file: ${path.slice(0, 200)}` : (STATUS_CODES[e.status] ?? 'bad request').toLowerCase()) };
    }
    const code = e.type === 'entity.parse.failed' ? 'ERR_BAD_JSON' : e.type === 'entity.too.large' ? 'ERR_TOO_LARGE' : 'ERR_BAD_REQUEST';
    return { status: e.status, body: errorBody(code, e.type === 'entity.parse.failed' ? 'the body is not valid JSON' : (e.message ?? 'bad request')) };
  }
  log?.error({ err }, 'request failed');
  return { status: 500, body: errorBody('ERR_INTERNAL', 'internal error; see the server log for the request id') };
}
