/**
 * Errors that cross a boundary carry a machine-readable `code`. The HTTP layer maps the kind to a
 * status (400 bad input, 404 unknown, 409 conflict, 415 wrong content type); the message says what was wrong, and
 * `field` names the input that was.
 */
export type ErrorKind = 'invalid' | 'not-found' | 'conflict' | 'unauthorized' | 'forbidden' | 'unsupported-media-type' | 'unavailable';

export class AppError extends Error {
  readonly kind: ErrorKind;
  readonly code: string;
  readonly field: string | undefined;

  constructor(kind: ErrorKind, code: string, message: string, field?: string) {
    super(message);
    this.name = 'AppError';
    this.kind = kind;
    this.code = code;
    this.field = field;
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
