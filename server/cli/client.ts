/**
 * The CLI's HTTP client for a running racksmith: bearer token, JSON in and out, and the server's
 * error body turned into one line (`409 ERR_DUPLICATE: another machine already has this hostname`).
 */
export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  /** The server's error body as it came (field, details), for --json. */
  readonly body: { readonly code: string; readonly message: string; readonly field?: string; readonly details?: readonly unknown[] };
  constructor(status: number, code: string, message: string, body?: { field?: string; details?: readonly unknown[] }) {
    super(`${status} ${code}: ${message}`);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.body = { code, message, ...(body?.field !== undefined ? { field: body.field } : {}), ...(body?.details !== undefined ? { details: body.details } : {}) };
  }
}

/** The server's error body (`{"error": {"code", "message"}}`) as an ApiError; any other text as it is. */
export function apiErrorOf(status: number, text: string): ApiError {
  let code = 'ERR_HTTP';
  let message = text.slice(0, 300);
  let extra: { field?: string; details?: unknown[] } = {};
  try {
    const parsed = JSON.parse(text) as { error?: { code?: string; message?: string; field?: string; details?: unknown[] } };
    code = parsed.error?.code ?? code;
    message = parsed.error?.message ?? message;
    extra = { ...(parsed.error?.field !== undefined ? { field: parsed.error.field } : {}), ...(parsed.error?.details !== undefined ? { details: parsed.error.details } : {}) };
  } catch {
    /* not JSON: keep the text */
  }
  return new ApiError(status, code, message, extra);
}

export interface ApiClient {
  request<T = unknown>(method: string, path: string, body?: unknown, contentType?: string): Promise<T>;
}

/** The token, or where to get it the first time a request needs it (a file, a prompt). */
export type TokenSource = string | undefined | (() => Promise<string>);

export function createApiClient(baseUrl: string, token: TokenSource): ApiClient {
  const base = baseUrl.replace(/\/+$/, '');
  let resolved: Promise<string | undefined> | null = null;
  return {
    async request<T>(method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<T> {
      const headers: Record<string, string> = { accept: 'application/json' };
      resolved ??= typeof token === 'function' ? token() : Promise.resolve(token);
      const bearer = await resolved;
      if (bearer) headers['authorization'] = `Bearer ${bearer}`;
      let payload: string | undefined;
      if (body !== undefined) {
        headers['content-type'] = contentType;
        payload = typeof body === 'string' ? body : JSON.stringify(body);
      }
      let res: Response;
      try {
        res = await fetch(`${base}/api/v1${path}`, { method, headers, body: payload ?? null, signal: AbortSignal.timeout(60_000) });
      } catch (err) {
        const why = (err as { cause?: { code?: string; message?: string } }).cause;
        const cause = why?.code ?? why?.message ?? (err as Error).message;
        throw new Error(`cannot reach racksmith at ${base} (${cause}); is "racksmith serve" running? (--url, RACKSMITH_URL)`);
      }
      const text = await res.text();
      if (!res.ok) throw apiErrorOf(res.status, text);
      if (res.status === 204 || text === '') return undefined as T;
      return (res.headers.get('content-type') ?? '').includes('json') ? (JSON.parse(text) as T) : (text as T);
    },
  };
}
