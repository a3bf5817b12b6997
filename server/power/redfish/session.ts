import { PowerError } from '../driver.js';
import { errorText, parseJson, readServiceRoot, RedfishDecodeError } from './decode.js';
import { networkFailure, statusFailure, type RedfishEndpoint } from './decide.js';
import { createBmcHttp, HttpFailure, type BmcHttp, type HttpRequest, type HttpResponse, type TlsPolicy } from './http.js';

/**
 * One BMC's Redfish connection: keep-alive sockets and a login. A BMC that offers sessions
 * (`Links.Sessions` in the service root) gets one session, created on first use with
 * `POST …/Sessions {UserName, Password}`, reused by every later call through `X-Auth-Token`,
 * created again when the BMC answers 401 (it expired or was deleted), and deleted with
 * `DELETE <session>` when idle or when racksmith stops — BMCs keep only a few session slots
 * (DSP0266 § 13.3.4). A BMC without sessions gets HTTP Basic on every request.
 */
export interface BmcConnection {
  readonly endpoint: RedfishEndpoint;
  /** Sends with the login, re-logging in once on a 401 from an expired session. */
  send(req: HttpRequest, deadline: number, signal?: AbortSignal): Promise<HttpResponse>;
  /** Deletes the session (best effort) and closes the sockets. */
  close(): Promise<void>;
  /** For tests and logs: "session", "basic" or "none" yet. */
  authMode(): 'session' | 'basic' | 'none';
  /** Requests in flight: an idle sweep leaves a busy connection alone. */
  busy(): boolean;
  lastUsed(): number;
}

type Auth = { readonly mode: 'session'; readonly token: string; readonly location: string | null } | { readonly mode: 'basic' };

const remaining = (deadline: number): number => Math.max(1, deadline - Date.now());

/** A transport failure as a PowerError (the message names the BMC). */
export function transportError(endpoint: RedfishEndpoint, err: unknown): PowerError {
  if (err instanceof PowerError) return err;
  if (err instanceof HttpFailure) {
    if (err.code === 'ERR_BMC_ABORTED') return new PowerError('aborted', `BMC ${endpoint.display}: cancelled because racksmith is stopping`, 1);
    if (err.code === 'ERR_BMC_BODY_TOO_LARGE') return new PowerError('output', `BMC ${endpoint.display}: ${err.message}`, 1);
    const kind = networkFailure(err.code);
    const what = kind === 'tls' ? `TLS: ${err.message} (${err.code}); pin its certificate with bmc.tlsFingerprint or set bmc.verifyTls false` : `${err.message} (${err.code})`;
    return new PowerError(kind, `BMC ${endpoint.display}: ${what}`, 1);
  }
  return new PowerError('output', `BMC ${endpoint.display}: ${err instanceof Error ? err.message : String(err)}`, 1);
}

/** A non-2xx answer as a PowerError with the BMC's own message (`@Message.ExtendedInfo`). */
export function answerError(endpoint: RedfishEndpoint, req: HttpRequest, res: HttpResponse, username: string): PowerError {
  const kind = statusFailure(res.status);
  const said = errorText(res.body);
  const base = `BMC ${endpoint.display} answered ${res.status} to ${req.method} ${req.path}`;
  if (kind === 'auth') return new PowerError('auth', `${base}: ${res.status === 401 ? `login of user "${username}" refused: wrong user name or password` : 'the user lacks the privilege'}${said ? ` (${said})` : ''}`, 1);
  return new PowerError(kind, `${base}${said ? `: ${said}` : ''}`, 1);
}

export function createBmcConnection(endpoint: RedfishEndpoint, tls: TlsPolicy, username: string, password: string): BmcConnection {
  const http: BmcHttp = createBmcHttp(endpoint, tls);
  let auth: Auth | null = null;
  let used = Date.now();
  let inFlight = 0;
  /** One login at a time: calls are serialised per BMC by the gate, but close() may race. */
  let loggingIn: Promise<Auth> | null = null;

  async function login(deadline: number, signal?: AbortSignal): Promise<Auth> {
    const rootReq: HttpRequest = { method: 'GET', path: '/redfish/v1/' };
    const root = await http.request(rootReq, remaining(deadline), signal);
    // The service root needs no login (DSP0266 § 13.3.1); some BMCs still want one: fall back to Basic.
    if (root.status === 401) return { mode: 'basic' };
    if (root.status < 200 || root.status > 299) throw answerError(endpoint, rootReq, root, username);
    let sessions: string | null;
    try {
      sessions = readServiceRoot(parseJson(root.body)).sessions;
    } catch (err) {
      if (err instanceof RedfishDecodeError) throw new PowerError('output', `BMC ${endpoint.display}: its service root /redfish/v1/ is unreadable: ${err.message}`, 1);
      throw err;
    }
    if (sessions === null) return { mode: 'basic' };
    const req: HttpRequest = { method: 'POST', path: sessions, body: { UserName: username, Password: password } };
    const res = await http.request(req, remaining(deadline), signal);
    if (res.status === 401 || res.status === 403) throw answerError(endpoint, { ...req, body: undefined }, res, username);
    // A service that lists Sessions but will not create one (405, 501): Basic works on those.
    if (res.status === 404 || res.status === 405 || res.status === 501) return { mode: 'basic' };
    if (res.status < 200 || res.status > 299) throw answerError(endpoint, { ...req, body: undefined }, res, username);
    const token = res.headers['x-auth-token'];
    if (typeof token !== 'string' || token === '' || token.length > 4096) throw new PowerError('output', `BMC ${endpoint.display} created a session without an X-Auth-Token header`, 1);
    const loc = res.headers['location'];
    return { mode: 'session', token, location: typeof loc === 'string' ? sessionPath(loc) : null };
  }

  /** A Location header may be absolute (https://bmc/redfish/v1/SessionService/Sessions/7) or a path. */
  function sessionPath(loc: string): string | null {
    try {
      const u = new URL(loc, `${endpoint.protocol}://x`);
      return u.pathname.startsWith('/') ? u.pathname : null;
    } catch {
      return null;
    }
  }

  function headersFor(a: Auth): Record<string, string> {
    return a.mode === 'session' ? { 'X-Auth-Token': a.token } : { Authorization: `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}` };
  }

  async function currentAuth(deadline: number, signal?: AbortSignal): Promise<Auth> {
    if (auth) return auth;
    loggingIn ??= login(deadline, signal).finally(() => (loggingIn = null));
    auth = await loggingIn;
    return auth;
  }

  return {
    endpoint,
    async send(req, deadline, signal) {
      used = Date.now();
      inFlight++;
      try {
        let a = await currentAuth(deadline, signal);
        let res = await http.request({ ...req, headers: { ...req.headers, ...headersFor(a) } }, remaining(deadline), signal);
        if (res.status === 401 && a.mode === 'session') {
          // The session expired or someone deleted it: log in again, once.
          auth = null;
          a = await currentAuth(deadline, signal);
          res = await http.request({ ...req, headers: { ...req.headers, ...headersFor(a) } }, remaining(deadline), signal);
        }
        used = Date.now();
        return res;
      } catch (err) {
        throw transportError(endpoint, err);
      } finally {
        inFlight--;
      }
    },
    async close() {
      const a = auth;
      auth = null;
      if (a?.mode === 'session' && a.location) {
        try {
          await http.request({ method: 'DELETE', path: a.location, headers: headersFor(a) }, 3000);
        } catch {
          /* the BMC expires it by itself */
        }
      }
      http.close();
    },
    authMode: () => auth?.mode ?? 'none',
    busy: () => inFlight > 0,
    lastUsed: () => used,
  };
}
