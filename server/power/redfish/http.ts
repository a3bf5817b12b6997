import { Agent as HttpAgent, request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import type { TLSSocket } from 'node:tls';
import type { RedfishEndpoint } from './decide.js';

/**
 * HTTP(S) to one BMC with Node's own `http`/`https` (no SDK): keep-alive connections, a deadline
 * per request, a bounded body, and the BMC's certificate checked one of three ways — against the
 * system's CAs with its host name (`verifyTls`, the default), against one pinned SHA-256
 * fingerprint (a BMC's self-signed certificate), or not at all (`verifyTls: false`).
 * (Node 20's global `fetch` takes no TLS options without the separate undici package.)
 */
export interface TlsPolicy {
  readonly verify: boolean;
  /** SHA-256 of the DER certificate, hex; null for no pin. */
  readonly fingerprint: string | null;
}

export interface HttpRequest {
  readonly method: 'GET' | 'POST' | 'PATCH' | 'DELETE';
  readonly path: string;
  readonly headers?: Readonly<Record<string, string>>;
  readonly body?: unknown;
}

export interface HttpResponse {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: Buffer;
}

/** A transport failure: `code` is Node's (ECONNREFUSED, CERT_HAS_EXPIRED…) or ours (ERR_TLS_PIN, ERR_BMC_SOCKET_TIMEOUT, ERR_BMC_BODY_TOO_LARGE). */
export class HttpFailure extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'HttpFailure';
  }
}

/** A BMC's JSON is kilobytes; more than this is a broken BMC, not a bigger document. */
export const MAX_BODY = 4 * 1024 * 1024;

export function normaliseFingerprint(f: string): string {
  return f.replace(/^sha256[:=]/i, '').replace(/[:\s]/g, '').toUpperCase();
}

export interface BmcHttp {
  request(req: HttpRequest, timeoutMs: number, signal?: AbortSignal): Promise<HttpResponse>;
  close(): void;
}

export function createBmcHttp(endpoint: RedfishEndpoint, tls: TlsPolicy): BmcHttp {
  const pin = tls.fingerprint ? normaliseFingerprint(tls.fingerprint) : null;
  const agent =
    endpoint.protocol === 'https'
      ? new HttpsAgent({
          keepAlive: true,
          maxSockets: 2,
          rejectUnauthorized: tls.verify && pin === null,
          servername: /^[\d.]+$|:/.test(endpoint.host) ? '' : endpoint.host,
          // A resumed TLS 1.2 session carries no certificate to check against the pin: full handshakes only.
          ...(pin !== null ? { maxCachedSessions: 0 } : {}),
        })
      : new HttpAgent({ keepAlive: true, maxSockets: 2 });
  const doRequest = endpoint.protocol === 'https' ? httpsRequest : httpRequest;

  /** The pinned certificate, checked on every request (a kept-alive socket was checked when it connected, but cheaply again). */
  function checkPin(socket: TLSSocket): string | null {
    if (pin === null) return null;
    const cert = socket.getPeerCertificate();
    const got = cert && cert.fingerprint256 ? normaliseFingerprint(cert.fingerprint256) : null;
    return got === pin ? null : `the BMC's certificate (SHA-256 ${got ?? 'none'}) is not the pinned one (${pin})`;
  }

  return {
    request(req, timeoutMs, signal) {
      return new Promise<HttpResponse>((resolve, reject) => {
        const payload = req.body === undefined ? undefined : Buffer.from(JSON.stringify(req.body));
        let settled = false;
        const fail = (code: string, message: string): void => {
          if (settled) return;
          settled = true;
          cleanup();
          r.destroy();
          reject(new HttpFailure(code, message));
        };
        const headers: Record<string, string> = { Accept: 'application/json', 'OData-Version': '4.0', ...req.headers };
        if (payload) {
          headers['Content-Type'] = 'application/json';
          headers['Content-Length'] = String(payload.length);
        }
        const r = doRequest({ host: endpoint.host, port: endpoint.port, method: req.method, path: req.path, headers, agent });
        const timer = setTimeout(() => fail('ERR_BMC_SOCKET_TIMEOUT', `no answer within ${(timeoutMs / 1000).toFixed(1)} s`), Math.max(1, timeoutMs));
        const onAbort = (): void => fail('ERR_BMC_ABORTED', 'cancelled');
        signal?.addEventListener('abort', onAbort, { once: true });
        function cleanup(): void {
          clearTimeout(timer);
          signal?.removeEventListener('abort', onAbort);
        }
        r.on('socket', (socket) => {
          if (pin === null || endpoint.protocol !== 'https') return;
          const tlsSocket = socket as TLSSocket;
          const verify = (): void => {
            const why = checkPin(tlsSocket);
            if (why) fail('ERR_TLS_PIN', why);
          };
          // A kept-alive socket finished its handshake long ago; a new one has not started it.
          const handshaken = !tlsSocket.connecting && Object.keys(tlsSocket.getPeerCertificate?.() ?? {}).length > 0;
          if (handshaken) verify();
          else tlsSocket.once('secureConnect', verify);
        });
        r.on('error', (err: NodeJS.ErrnoException) => fail(err.code ?? 'ERR_BMC_NETWORK', err.message));
        r.on('response', (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (d: Buffer) => {
            size += d.length;
            if (size > MAX_BODY) {
              res.destroy();
              fail('ERR_BMC_BODY_TOO_LARGE', `the BMC sent more than ${MAX_BODY} bytes`);
              return;
            }
            chunks.push(d);
          });
          res.on('error', (err: NodeJS.ErrnoException) => fail(err.code ?? 'ERR_BMC_NETWORK', err.message));
          res.on('end', () => {
            if (settled) return;
            settled = true;
            cleanup();
            resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) });
          });
        });
        r.end(payload);
      });
    },
    close() {
      agent.destroy();
    },
  };
}
