/**
 * Errors that cross a boundary carry a machine-readable `code`. The HTTP layer maps the kind to a
 * status (400 bad input, 404 unknown, 409 conflict, 415 wrong content type, 502/504 a device
 * racksmith drives — a BMC — answered wrongly or not at all); the message says what was wrong,
 * and `field` names the input that was.
 */
export type ErrorKind = 'invalid' | 'not-found' | 'conflict' | 'unauthorized' | 'forbidden' | 'unsupported-media-type' | 'unavailable' | 'bad-gateway' | 'gateway-timeout';

export interface ErrorDetail {
  readonly message: string;
  readonly field?: string | undefined;
  /** 1-based data row, for CSV imports. */
  readonly row?: number | undefined;
  /** The offending value as given (never for secrets), so the person sees what to fix. */
  readonly value?: string | undefined;
  /** How to fix it: "did you mean control-plane?", "use lower-case letters". */
  readonly hint?: string | undefined;
}

export class AppError extends Error {
  readonly kind: ErrorKind;
  readonly code: string;
  readonly field: string | undefined;
  /** Several findings at once (every bad row of a CSV), each with its own place and message. */
  readonly details: readonly ErrorDetail[] | undefined;

  constructor(kind: ErrorKind, code: string, message: string, field?: string, details?: readonly ErrorDetail[]) {
    super(message);
    this.name = 'AppError';
    this.kind = kind;
    this.code = code;
    this.field = field;
    this.details = details;
  }
}

export const invalid = (code: string, message: string, field?: string): AppError =>
  new AppError('invalid', code, message, field);
export const notFound = (code: string, message: string): AppError => new AppError('not-found', code, message);
export const conflict = (code: string, message: string, field?: string): AppError =>
  new AppError('conflict', code, message, field);

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
