import { createHash, randomBytes } from 'node:crypto';
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * What real BMCs do and sushy-emulator does not, in front of it: a SessionService (tokens, 401
 * for an expired one, DELETE), ETags with `If-Match` (412 on a stale one), 202 + task monitor for
 * a reset, `LocationIndicatorActive` (a current BMC) instead of `IndicatorLED`, and faults on
 * demand (malformed JSON, a status with `@Message.ExtendedInfo`, a task that never ends). Every
 * resource read or change still goes to sushy, which keeps the state; this layer records what it
 * saw so tests can assert on the wire (the If-Match sent, the sessions opened and closed).
 */
export interface FrontOptions {
  /** sushy's base URL (http). */
  readonly upstream: string;
  /** Offer sessions in the service root (else Basic only, as sushy itself). */
  readonly sessions?: boolean;
  /** Answer resets with 202 and a task monitor that completes after this many polls; 'never' never does. */
  readonly tasks?: number | 'never' | null;
  /** Show LocationIndicatorActive instead of IndicatorLED. */
  readonly locationIndicator?: boolean;
  readonly etags?: boolean;
}

export interface Fault {
  readonly method?: string;
  readonly path: RegExp;
  readonly status: number;
  readonly body: string;
  /** How many requests it answers (default 1). */
  times?: number;
}

export interface SeenRequest {
  readonly method: string;
  readonly path: string;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: string;
}

export interface RedfishFront {
  readonly url: string;
  readonly port: number;
  seen(): SeenRequest[];
  sessions(): { created: number; deleted: number; open: number };
  /** Forgets every session (the BMC expired them): the next request with a token gets 401. */
  expireSessions(): void;
  fault(f: Fault): void;
  options: { -readonly [K in keyof FrontOptions]: FrontOptions[K] };
  stop(): Promise<void>;
}

const extended = (message: string, id = 'Base.1.8.GeneralError', resolution = 'None') =>
  JSON.stringify({ error: { code: id, message, '@Message.ExtendedInfo': [{ '@odata.type': '#Message.v1_1_1.Message', MessageId: id, Message: message, Resolution: resolution, Severity: 'Critical' }] } });

export async function startRedfishFront(o: FrontOptions): Promise<RedfishFront> {
  const up = new URL(o.upstream);
  const sessions = new Map<string, { user: string; password: string; id: string }>();
  let created = 0;
  let deleted = 0;
  let nextSession = 1;
  let nextTask = 1;
  const tasks = new Map<string, { polls: number; done: () => Promise<void> }>();
  const faults: Fault[] = [];
  const seen: SeenRequest[] = [];
  const options = { ...o };

  function upstream(method: string, path: string, auth: string | undefined, body?: string): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
    return new Promise((resolve, reject) => {
      const headers: Record<string, string> = { Accept: 'application/json' };
      if (auth) headers['Authorization'] = auth;
      if (body !== undefined) {
        headers['Content-Type'] = 'application/json';
        headers['Content-Length'] = String(Buffer.byteLength(body));
      }
      const req = request({ host: up.hostname, port: up.port, method, path, headers, timeout: 10_000 }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }));
      });
      req.on('error', reject);
      req.end(body);
    });
  }

  const send = (res: ServerResponse, status: number, body: string, headers: Record<string, string> = {}): void => {
    res.writeHead(status, { 'Content-Type': 'application/json', ...headers });
    res.end(body);
  };
  const etagOf = (body: string): string => `W/"${createHash('sha256').update(body).digest('hex').slice(0, 16)}"`;
  const isSystem = (path: string): boolean => /^\/redfish\/v1\/Systems\/[^/]+\/?$/.test(path);

  async function handle(req: IncomingMessage, res: ServerResponse, body: string): Promise<void> {
    const method = req.method ?? 'GET';
    const path = req.url ?? '/';
    seen.push({ method, path, headers: { ...req.headers }, body });
    const fault = faults.find((f) => (f.method === undefined || f.method === method) && f.path.test(path));
    if (fault) {
      fault.times = (fault.times ?? 1) - 1;
      if (fault.times <= 0) faults.splice(faults.indexOf(fault), 1);
      send(res, fault.status, fault.body);
      return;
    }
    // Who is this? A session token, else whatever Basic header came (sushy checks it).
    let auth = req.headers['authorization'];
    const token = req.headers['x-auth-token'];
    if (typeof token === 'string') {
      const s = sessions.get(token);
      if (!s) return send(res, 401, extended('The session is no longer valid.', 'Base.1.8.NoValidSession', 'Establish a new session.'));
      auth = `Basic ${Buffer.from(`${s.user}:${s.password}`).toString('base64')}`;
    }
    const sessionsPath = '/redfish/v1/SessionService/Sessions';
    if (options.sessions && method === 'POST' && path === sessionsPath) {
      let creds: { UserName?: unknown; Password?: unknown } = {};
      try {
        creds = JSON.parse(body) as typeof creds;
      } catch {
        return send(res, 400, extended('The request body is not JSON.', 'Base.1.8.MalformedJSON'));
      }
      const basic = `Basic ${Buffer.from(`${String(creds.UserName)}:${String(creds.Password)}`).toString('base64')}`;
      const check = await upstream('GET', '/redfish/v1/Systems', basic);
      if (check.status !== 200) return send(res, 401, extended('Invalid username or password.', 'Base.1.8.ResourceAtUriUnauthorized'));
      const id = String(nextSession++);
      const t = randomBytes(16).toString('hex');
      sessions.set(t, { user: String(creds.UserName), password: String(creds.Password), id });
      created++;
      return send(res, 201, JSON.stringify({ '@odata.id': `${sessionsPath}/${id}`, Id: id, UserName: creds.UserName }), { 'X-Auth-Token': t, Location: `${sessionsPath}/${id}` });
    }
    if (options.sessions && method === 'DELETE' && path.startsWith(`${sessionsPath}/`)) {
      const id = path.slice(sessionsPath.length + 1);
      for (const [t, s] of sessions) {
        if (s.id === id) {
          sessions.delete(t);
          deleted++;
          return send(res, 204, '');
        }
      }
      return send(res, 404, extended('No such session.', 'Base.1.8.ResourceMissingAtURI'));
    }
    if (method === 'GET' && path.startsWith('/taskmon/')) {
      const task = tasks.get(path);
      if (!task) return send(res, 404, extended('No such task.', 'Base.1.8.ResourceMissingAtURI'));
      task.polls--;
      if (options.tasks === 'never' || task.polls > 0) return send(res, 202, JSON.stringify({ '@odata.id': `/redfish/v1/TaskService/Tasks/${path.slice(9)}`, TaskState: 'Running', PercentComplete: 50 }), { 'Retry-After': '1' });
      tasks.delete(path);
      await task.done();
      return send(res, 200, JSON.stringify({ '@odata.id': `/redfish/v1/TaskService/Tasks/${path.slice(9)}`, TaskState: 'Completed', TaskStatus: 'OK', PercentComplete: 100 }));
    }
    if (method === 'GET' && (path === '/redfish/v1/' || path === '/redfish/v1')) {
      const r = await upstream('GET', path, auth);
      const root = JSON.parse(r.body) as Record<string, unknown>;
      if (options.sessions) {
        root['SessionService'] = { '@odata.id': '/redfish/v1/SessionService' };
        root['Links'] = { Sessions: { '@odata.id': sessionsPath } };
      }
      return send(res, r.status, JSON.stringify(root));
    }
    if (isSystem(path) && method === 'PATCH') {
      const current = await upstream('GET', path, auth);
      if (options.etags && current.status === 200) {
        const ifMatch = req.headers['if-match'];
        if (typeof ifMatch === 'string' && ifMatch !== etagOf(transformSystem(current.body))) return send(res, 412, extended('The ETag does not match.', 'Base.1.8.PreconditionFailed'));
      }
      let patch: Record<string, unknown>;
      try {
        patch = JSON.parse(body) as Record<string, unknown>;
      } catch {
        return send(res, 400, extended('The request body is not JSON.', 'Base.1.8.MalformedJSON'));
      }
      if (options.locationIndicator && 'LocationIndicatorActive' in patch) {
        patch = { ...patch, IndicatorLED: patch['LocationIndicatorActive'] ? 'Lit' : 'Off' };
        delete patch['LocationIndicatorActive'];
      }
      const r = await upstream('PATCH', path, auth, JSON.stringify(patch));
      return send(res, r.status, r.body);
    }
    if (/\/Actions\/ComputerSystem\.Reset$/.test(path) && method === 'POST' && options.tasks !== undefined && options.tasks !== null) {
      const id = String(nextTask++);
      const monitor = `/taskmon/${id}`;
      // The reset happens when the task completes (never, for a task that never does).
      tasks.set(monitor, { polls: options.tasks === 'never' ? Infinity : options.tasks, done: async () => void (await upstream('POST', path, auth, body)) });
      return send(res, 202, JSON.stringify({ '@odata.id': `/redfish/v1/TaskService/Tasks/${id}`, TaskState: 'New', TaskMonitor: monitor }), { Location: monitor, 'Retry-After': '1' });
    }
    const r = await upstream(method, path, auth, method === 'GET' || method === 'DELETE' ? undefined : body);
    if (isSystem(path) && method === 'GET' && r.status === 200) {
      const out = transformSystem(r.body);
      return send(res, 200, out, options.etags ? { ETag: etagOf(out) } : {});
    }
    send(res, r.status, r.body, r.headers['www-authenticate'] ? { 'WWW-Authenticate': String(r.headers['www-authenticate']) } : {});
  }

  function transformSystem(body: string): string {
    if (!options.locationIndicator) return body;
    const s = JSON.parse(body) as Record<string, unknown>;
    s['LocationIndicatorActive'] = s['IndicatorLED'] !== undefined && s['IndicatorLED'] !== 'Off';
    delete s['IndicatorLED'];
    return JSON.stringify(s);
  }

  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      handle(req, res, Buffer.concat(chunks).toString()).catch((err: unknown) => send(res, 500, extended(`front: ${err instanceof Error ? err.message : String(err)}`)));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    seen: () => seen,
    sessions: () => ({ created, deleted, open: sessions.size }),
    expireSessions: () => sessions.clear(),
    fault: (f) => void faults.push(f),
    options,
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export { extended as redfishError };
