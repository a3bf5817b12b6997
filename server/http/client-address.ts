import type { IncomingMessage } from 'node:http';
import { isIP, type Socket } from 'node:net';
import type { Request } from 'express';
import { normalizeRemote } from '../seeds/access.js';

/**
 * Who asks for an artifact, when a front (nginx sending the artifacts' bytes, docs/artifacts.md)
 * may stand between a machine and racksmith. Only a front named in `artifacts-fronts` is
 * believed: its `X-Real-IP` names the client, and it may be answered with `X-Accel-Redirect` when
 * it says it follows one (`X-Sendfile-Type: X-Accel-Redirect`, the request header Rack::Sendfile
 * uses for the same hand-over). Anyone else's headers are ignored, so a machine cannot claim
 * another's address. Only artifact requests go through a front; seeds never do.
 */
export interface ClientView {
  /** The client's address: the socket's peer, or the one a trusted front names. */
  readonly address: string | null;
  /** The request came through a trusted front that serves files racksmith names in X-Accel-Redirect. */
  readonly accel: boolean;
}

const peers = new WeakMap<Socket, string | null>();

/** Called as a connection is accepted: its peer is read once, while the socket is surely open. */
export function notePeer(socket: Socket): void {
  peers.set(socket, normalizeRemote(socket.remoteAddress));
}

/**
 * The address a request came from. A socket the client has reset no longer knows its peer, and a
 * handler that awaited the store may ask after that: it gets the address noted at accept.
 */
export function peerAddress(req: IncomingMessage): string | null {
  const noted = peers.get(req.socket);
  return noted !== undefined ? noted : normalizeRemote(req.socket.remoteAddress);
}

export function clientView(req: Request, trusted: ReadonlySet<string>): ClientView {
  const peer = peerAddress(req);
  if (peer === null || !trusted.has(peer)) return { address: peer, accel: false };
  const named = req.headers['x-real-ip'];
  const address = typeof named === 'string' && isIP(named.trim()) ? normalizeRemote(named.trim()) : peer;
  const accel = String(req.headers['x-sendfile-type'] ?? '').toLowerCase() === 'x-accel-redirect';
  return { address, accel };
}
