import { createServer, type RequestListener, type Server } from 'node:http';
import type { Socket } from 'node:net';
import { notePeer } from './client-address.js';
import { takingTurns } from './turns.js';
import { ServiceStartError, bindFailure, type Service, type ServiceContext, type ServiceState } from '../lib/service.js';

export interface HttpSettings {
  readonly httpAddress: string;
  readonly httpPort: number;
}

/**
 * The HTTP listener. Stop: no new connections, idle keep-alive sockets closed at once, in-flight
 * requests given a grace period to finish, then anything left is cut — `cut` too, for the
 * connections handed to other processes (the artifacts' file workers), which the server waits for.
 */
export function createHttpService(settings: HttpSettings, app: RequestListener, graceMs = 10_000, cut?: () => void): Service & { address(): { address: string; port: number } | null } {
  let server: Server | null = null;
  let state: ServiceState = 'stopped';
  const sockets = new Set<Socket>();
  let rejected = 0;
  let turns: { waiting(): number } | null = null;

  return {
    name: 'http',
    async start(_ctx: ServiceContext) {
      state = 'starting';
      server = createServer();
      turns = takingTurns(server, app, 1);
      server.keepAliveTimeout = 5_000;
      server.headersTimeout = 15_000;
      server.requestTimeout = 0; // artifacts (ISOs) stream for minutes
      // A client may close its sending side once its request is out (HTTP/1.0 agents writing with
      // nc: d-i's reporter). Node's default takes that FIN as an abort and drops the request, so a
      // report whose handler awaits the store was lost. Half-open, it is answered, then the
      // connection ends (Node's switch for this; kept for userland since nodejs/node#36819).
      (server as Server & { httpAllowHalfOpen: boolean }).httpAllowHalfOpen = true;
      // Requests Node cannot even parse (a head over 16 KiB, bad framing) get a JSON error and a
      // closed connection, and are counted, instead of Node's bare answer. If the client is still
      // sending, the kernel may turn the close into a reset: the request was dropped either way.
      server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
        rejected++;
        if (!socket.writable) return socket.destroy();
        const tooLarge = err.code === 'HPE_HEADER_OVERFLOW';
        const status = tooLarge ? '431 Request Header Fields Too Large' : '400 Bad Request';
        const body = JSON.stringify({ error: { code: tooLarge ? 'ERR_HEADERS_TOO_LARGE' : 'ERR_BAD_REQUEST', message: tooLarge ? 'the request line and headers exceed 16 KiB' : 'the request is not valid HTTP' } });
        socket.end(`HTTP/1.1 ${status}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
      });
      server.on('connection', (s) => {
        notePeer(s);
        sockets.add(s);
        s.on('close', () => sockets.delete(s));
      });
      const srv = server;
      await new Promise<void>((resolve, reject) => {
        srv.once('error', (err) => {
          state = 'failed';
          reject(new ServiceStartError('http', `http-address ${settings.httpAddress}, http-port ${settings.httpPort}`, bindFailure(err)));
        });
        srv.listen(settings.httpPort, settings.httpAddress, () => resolve());
      });
      state = 'serving';
    },
    async stop() {
      if (!server) return;
      state = 'stopping';
      const srv = server;
      const closed = new Promise<void>((resolve) => srv.close(() => resolve()));
      srv.closeIdleConnections();
      const timer = setTimeout(() => {
        for (const s of sockets) s.destroy();
        cut?.();
      }, graceMs);
      await closed;
      clearTimeout(timer);
      server = null;
      state = 'stopped';
    },
    health() {
      return { state, detail: { connections: sockets.size, waitingRequests: turns?.waiting() ?? 0, unparseableRequests: rejected } };
    },
    address() {
      const a = server?.address();
      return a && typeof a === 'object' ? { address: a.address, port: a.port } : null;
    },
  };
}
