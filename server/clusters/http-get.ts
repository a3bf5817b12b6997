import { request as httpRequest, type IncomingMessage, type RequestOptions } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { connect as tlsConnect } from 'node:tls';
import { isIP, type Socket } from 'node:net';

/**
 * A bounded GET for the preflight: a deadline for the whole exchange (redirects included), a cap
 * on the body it reads, and optionally an HTTP proxy (an apt proxy such as apt-cacher-ng: an
 * absolute URI for http://, a CONNECT tunnel for https://, as apt itself does). With
 * `body: false` only the status and headers are read — a 2.6 GB ISO is checked, never fetched.
 */
export interface GetOptions {
  readonly timeoutMs: number;
  /** Read the body (up to `maxBytes`); otherwise the connection is closed after the headers. */
  readonly body: boolean;
  readonly maxBytes?: number | undefined;
  /** `http://host:port` of a proxy to go through. */
  readonly proxy?: string | null | undefined;
  readonly signal?: AbortSignal | undefined;
  readonly maxRedirects?: number | undefined;
}

export interface GetResult {
  readonly status: number;
  /** The URL that answered, after redirects. */
  readonly url: string;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  readonly body: Buffer | null;
}

export type HttpGet = (url: string, opts: GetOptions) => Promise<GetResult>;

export class GetError extends Error {
  readonly code: 'ERR_TIMEOUT' | 'ERR_NETWORK' | 'ERR_TOO_LARGE' | 'ERR_PROXY' | 'ERR_URL';
  constructor(code: GetError['code'], message: string) {
    super(message);
    this.name = 'GetError';
    this.code = code;
  }
}

const DEFAULT_MAX_BYTES = 64 * 1024 * 1024;

function tunnel(proxy: URL, target: URL, signal: AbortSignal): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const port = target.port || '443';
    const req = httpRequest({ host: proxy.hostname, port: proxy.port || 80, method: 'CONNECT', path: `${target.hostname}:${port}`, headers: { host: `${target.hostname}:${port}` }, signal });
    req.once('connect', (res: IncomingMessage, socket: Socket) => {
      if (res.statusCode !== 200) {
        socket.destroy();
        reject(new GetError('ERR_PROXY', `the proxy ${proxy.host} refused CONNECT ${target.hostname}:${port} (HTTP ${res.statusCode ?? '?'})`));
        return;
      }
      resolve(socket);
    });
    req.once('error', (err) => reject(err));
    req.end();
  });
}

/** One request; a CONNECT tunnel it opens is added to `tunnels`, for the caller to close. */
async function once(url: URL, opts: GetOptions, signal: AbortSignal, tunnels: Socket[]): Promise<IncomingMessage> {
  const proxy = opts.proxy ? new URL(opts.proxy) : null;
  // A connection per request: a handful of requests gain nothing from keep-alive, and a proxy or
  // mirror closing an idle kept-alive socket as it is reused would read as a reset.
  const base: RequestOptions = { method: 'GET', signal, agent: false, headers: { 'user-agent': 'racksmith-preflight', accept: '*/*' } };
  if (url.protocol === 'http:' && proxy) {
    // An HTTP proxy takes the absolute URI on the request line.
    return send(httpRequest({ ...base, host: proxy.hostname, port: proxy.port || 80, path: url.href, headers: { ...base.headers, host: url.host } }));
  }
  if (url.protocol === 'https:') {
    if (proxy) {
      const socket = await tunnel(proxy, url, signal);
      tunnels.push(socket);
      // SNI takes host names only (RFC 6066 §3); the certificate is checked against the host either way.
      const tls = tlsConnect({ socket, host: url.hostname, ...(isIP(url.hostname) ? {} : { servername: url.hostname }) });
      return send(httpsRequest(url, { ...base, createConnection: () => tls }));
    }
    return send(httpsRequest(url, base));
  }
  if (url.protocol === 'http:') return send(httpRequest(url, base));
  throw new GetError('ERR_URL', `${url.protocol} is not http or https`);
}

function send(req: ReturnType<typeof httpRequest>): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    req.once('response', resolve);
    req.once('error', reject);
    req.end();
  });
}

function readBody(res: IncomingMessage, max: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    res.on('data', (c: Buffer) => {
      size += c.length;
      if (size > max) {
        res.destroy();
        reject(new GetError('ERR_TOO_LARGE', `the body is larger than ${max} bytes`));
        return;
      }
      chunks.push(c);
    });
    res.once('end', () => resolve(Buffer.concat(chunks)));
    res.once('error', reject);
    res.once('aborted', () => reject(new GetError('ERR_NETWORK', 'the connection closed before the body ended')));
  });
}

/** Node's errors as the words an operator acts on; a proxy that failed is named as the proxy. */
function describe(err: unknown, target: URL, timeoutMs: number, timedOut: boolean, proxy: string | null | undefined): GetError {
  if (err instanceof GetError) return err;
  if (timedOut) return new GetError('ERR_TIMEOUT', `no answer from ${target.host} within ${Math.round(timeoutMs / 1000)} s`);
  const e = err as NodeJS.ErrnoException & { port?: number };
  const p = proxy ? new URL(proxy) : null;
  const url = p && e.port !== undefined && String(e.port) === (p.port || '80') ? p : target;
  const what: Record<string, string> = {
    ENOTFOUND: `cannot resolve ${url.hostname}`,
    EAI_AGAIN: `cannot resolve ${url.hostname} (DNS did not answer)`,
    ECONNREFUSED: `${url === target ? url.host : `the proxy ${url.host}`} refused the connection`,
    ECONNRESET: `${url.host} reset the connection`,
    EHOSTUNREACH: `${url.host} is unreachable`,
    ENETUNREACH: `no route to ${url.host}`,
    ETIMEDOUT: `${url.host} did not answer`,
  };
  return new GetError('ERR_NETWORK', (e.code && what[e.code]) ?? `${url.host}: ${e.message}`);
}

export const httpGet: HttpGet = async (target, opts) => {
  const timeout = AbortSignal.timeout(opts.timeoutMs);
  const signal = opts.signal ? AbortSignal.any([timeout, opts.signal]) : timeout;
  let url: URL;
  try {
    url = new URL(target);
  } catch {
    throw new GetError('ERR_URL', `not a URL: ${target.slice(0, 200)}`);
  }
  const hops = opts.maxRedirects ?? 5;
  // No connection outlives the request: the TLS socket in a CONNECT tunnel does not close the tunnel.
  const tunnels: Socket[] = [];
  try {
    return await follow(url, hops, opts, signal, timeout, tunnels);
  } finally {
    for (const t of tunnels) t.destroy();
  }
};

async function follow(start: URL, hops: number, opts: GetOptions, signal: AbortSignal, timeout: AbortSignal, tunnels: Socket[]): Promise<GetResult> {
  let url = start;
  for (let hop = 0; ; hop++) {
    let res: IncomingMessage;
    try {
      res = await once(url, opts, signal, tunnels);
    } catch (err) {
      throw describe(err, url, opts.timeoutMs, timeout.aborted, opts.proxy);
    }
    const status = res.statusCode ?? 0;
    const location = res.headers.location;
    if (status >= 300 && status < 400 && location && hop < hops) {
      res.destroy();
      url = new URL(location, url);
      continue;
    }
    if (!opts.body) {
      res.destroy();
      return { status, url: url.href, headers: res.headers, body: null };
    }
    try {
      const body = await readBody(res, opts.maxBytes ?? DEFAULT_MAX_BYTES);
      return { status, url: url.href, headers: res.headers, body };
    } catch (err) {
      throw describe(err, url, opts.timeoutMs, timeout.aborted, opts.proxy);
    } finally {
      res.destroy();
    }
  }
}
