/**
 * The console talks to racksmith's own REST API, signed in by an HttpOnly cookie (the page never
 * holds the token). Writes carry X-Requested-With, which the server requires of cookie-signed
 * writes so that another site cannot forge them.
 */

export type Role = 'viewer' | 'operator' | 'admin';
const ROLES: readonly Role[] = ['viewer', 'operator', 'admin'];

export function can(have: Role | null, need: Role): boolean {
  return have !== null && ROLES.indexOf(have) >= ROLES.indexOf(need);
}

export interface ErrorDetail {
  readonly message: string;
  readonly field?: string;
  readonly row?: number;
  /** The cell as given (never a password). */
  readonly value?: string;
  /** The likely fix: "did you mean control-plane?". */
  readonly hint?: string;
}

export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly field: string | undefined;
  readonly details: readonly ErrorDetail[];
  constructor(status: number, code: string, message: string, field?: string, details: readonly ErrorDetail[] = []) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.field = field;
    this.details = details;
  }
}

export interface Machine {
  mac: string;
  hostname: string | null;
  role: string | null;
  cluster: string | null;
  ip: string | null;
  rack: string | null;
  unit: number | null;
  bmc: { driver: string; address: string; port: number | null; username: string; passwordSet: boolean; systemId?: string | null; solCapture?: boolean | null; identify?: boolean } | null;
  bmcFacts?: {
    source: string;
    manufacturer: string | null;
    model: string | null;
    serial: string | null;
    biosVersion: string | null;
    firmwareVersion: string | null;
    nics: string[] | null;
    collectedAt: string;
    macReported: boolean | null;
  } | null;
  state: string;
  failure: { from: string | null; step: string | null; reason: string | null } | null;
  lastStep: string | null;
  arch: string | null;
  firmware: string | null;
  vendorClass: string | null;
  uuid: string | null;
  /** The machine's boot loader setting (null: the site default) and Secure Boot mark. */
  bootLoader: 'ipxe' | 'shim-grub' | 'auto' | null;
  secureBoot: boolean | null;
  secureBootSeen: 'enforced' | 'off' | null;
  boot?: {
    lastLoader: 'ipxe' | 'shim-grub' | null;
    bootfile: string | null;
    bootfileAt: string | null;
    loaderAt: string | null;
    stuck: { since: string; bootfile: string; message: string } | null;
  };
  hostKeys: string[];
  firstSeen: string | null;
  lastSeen: string | null;
  stateChangedAt: string;
  installDisk?: string | null;
  installedDisk?: { name: string; path: string; kind: string; sizeBytes: number; serial: string | null; model: string | null; chosenBy: string | null; reportedAt: string } | null;
  /** The last power state a BMC call read or caused, and when; null: never asked. */
  powerState: 'on' | 'off' | null;
  powerStateAt: string | null;
}

export interface Cluster {
  name: string;
  os?: string;
  installMethod?: string;
  installDiskRule?: string;
  imageUrl?: string | null;
  ubuntuRelease: string | null;
  kubernetesVersion: string;
  containerRuntime: string;
  cni: string;
  podSubnet: string;
  serviceSubnet: string;
  controlPlaneEndpoint: string | null;
  state: string;
  machineCount: number;
  /** Allowed but worth knowing (an even number of control-plane nodes). */
  warnings?: string[];
  machines?: Machine[];
  vip?: string | null;
  /** The rolling upgrade under way or last run; `nodes` (in a cluster view) is each node's progress. */
  upgrade?: { id: string; from: string; to: string; state: string; reason: string | null; maxUnavailable: number; nodes?: Record<string, string> };
  steps?: Step[];
  orchestration?: { waiting: string[]; next: string[]; running: string[]; lock: { holder: string; expiresAt: string } | null };
}

export interface Step {
  id: string;
  kind: string;
  machine: string | null;
  mac: string | null;
  state: string;
  attempts: number;
  startedAt: string | null;
  endedAt: string | null;
  seconds: number | null;
  output: string[];
  error: string | null;
}

export interface Rack {
  name: string;
  machines: number;
  states: Record<string, number>;
}

export interface JobItem {
  mac: string;
  hostname: string | null;
  state: 'queued' | 'running' | 'ok' | 'failed' | 'skipped' | 'cancelled';
  result: string | null;
  error: { code: string; message: string } | null;
}

/** A power job over a rack or a selection of machines. */
export interface PowerJob {
  id: string;
  rack: string | null;
  action: string;
  concurrency: number;
  delaySeconds: number;
  state: 'running' | 'done' | 'cancelled';
  counts: Record<string, number>;
  machines: JobItem[];
}

/** POST /clusters/{name}/preflight: every upstream check (docs/preflight.md). */
export interface PreflightReport {
  cluster: string;
  ok: boolean;
  checkedAt: string;
  checks: { id: string; title: string; url: string | null; state: 'ok' | 'failed' | 'skipped'; status: number | null; detail: string; ms: number }[];
}

export interface InventoryEvent {
  id: number;
  at: string;
  mac: string | null;
  cluster: string | null;
  type: string;
  source: string | null;
  message: string;
  data: Record<string, unknown> | null;
}

export interface Who {
  name: string;
  role: Role;
}

async function failure(res: Response): Promise<ApiError> {
  const text = await res.text();
  try {
    const body = JSON.parse(text) as { error?: { code?: string; message?: string; field?: string; details?: ErrorDetail[] } };
    if (body.error) return new ApiError(res.status, body.error.code ?? 'ERR_HTTP', body.error.message ?? res.statusText, body.error.field, body.error.details ?? []);
  } catch {
    /* not JSON */
  }
  return new ApiError(res.status, 'ERR_HTTP', `${res.status} ${res.statusText}${text ? `: ${text.slice(0, 200)}` : ''}`);
}

/** Called when the server says the session is gone (401), wherever it happens. */
let onSignedOut: () => void = () => undefined;
export function whenSignedOut(fn: () => void): void {
  onSignedOut = fn;
}

export async function request<T>(method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<T> {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (method !== 'GET') headers['x-requested-with'] = 'racksmith-console';
  if (body !== undefined) headers['content-type'] = contentType;
  let res: Response;
  try {
    res = await fetch(`/api/v1${path}`, {
      method,
      headers,
      credentials: 'same-origin',
      body: body === undefined ? null : typeof body === 'string' ? body : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, 'ERR_NETWORK', 'racksmith cannot be reached; check the network and try again');
  }
  if (!res.ok) {
    const err = await failure(res);
    if (res.status === 401 && path !== '/session') onSignedOut();
    throw err;
  }
  if (res.status === 204) return undefined as T;
  const type = res.headers.get('content-type') ?? '';
  return (type.includes('json') ? await res.json() : await res.text()) as T;
}

export const api = {
  whoami: () => request<Who>('GET', '/whoami'),
  signIn: (token: string) => request<Who>('POST', '/session', { token }),
  signOut: () => request<void>('DELETE', '/session'),
  machines: () => request<Machine[]>('GET', '/machines'),
  machine: (mac: string) => request<Machine>('GET', `/machines/${encodeURIComponent(mac)}`),
  events: (mac: string) => request<InventoryEvent[]>('GET', `/machines/${encodeURIComponent(mac)}/events?limit=500`),
  clusters: () => request<Cluster[]>('GET', '/clusters'),
  cluster: (name: string) => request<Cluster>('GET', `/clusters/${encodeURIComponent(name)}`),
  racks: () => request<Rack[]>('GET', '/racks'),
  siteEvents: (q: Record<string, string | undefined>) => request<InventoryEvent[]>('GET', `/events?${query(q)}`),
  job: (id: string) => request<PowerJob>('GET', `/power/jobs/${encodeURIComponent(id)}`),
};

/** A query string of the given, non-empty values. */
export function query(q: Record<string, string | undefined>): string {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(q)) if (v !== undefined && v !== '') p.set(k, v);
  return p.toString();
}

/**
 * Routes the server has that other releases may not (a machine's locator LED): read once from the
 * OpenAPI document, so the console offers an action exactly when this server can do it.
 */
let served: Promise<Set<string>> | null = null;
export function serverHas(method: string, path: string): Promise<boolean> {
  served ??= fetch('/api/v1/openapi.json', { credentials: 'same-origin' })
    .then((r) => r.json() as Promise<{ paths?: Record<string, Record<string, unknown>> }>)
    .then((d) => new Set(Object.entries(d.paths ?? {}).flatMap(([p, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${p}`))))
    .catch(() => new Set<string>());
  return served.then((s) => s.has(`${method.toUpperCase()} ${path}`));
}

export function errorText(err: unknown): string {
  if (err instanceof ApiError) return err.status === 0 ? err.message : `${err.message} (${err.code})`;
  return err instanceof Error ? err.message : String(err);
}
