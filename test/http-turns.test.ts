import { EventEmitter } from 'node:events';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { connect, type Socket } from 'node:net';
import express from 'express';
import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { createHttpService } from '../server/http/service.js';
import { takingTurns } from '../server/http/turns.js';

/**
 * Requests take turns with new connections (server/http/turns.ts): Node accepts one connection
 * per event-loop turn, so a server that starts every waiting request in each turn leaves a
 * burst of new connections in the accept queue for a turn each.
 */
const test = suite('http: requests take turns with new connections');

const immediate = (): Promise<void> => new Promise((r) => setImmediate(r));

test('in arrival order; all at once, but one per turn while connections are being accepted', async () => {
  const server = new EventEmitter() as unknown as Server;
  const started: number[] = [];
  const turns = takingTurns(server, (req) => started.push(Number(req.url)), 1);
  const request = (n: number): void => void server.emit('request', { url: String(n) } as IncomingMessage, {} as ServerResponse);
  for (let n = 1; n <= 3; n++) request(n);
  assert.is(turns.waiting(), 3);
  assert.equal(started, [], 'nothing starts inside the turn that read the requests');
  await immediate();
  assert.equal(started, [1, 2, 3]);
  // A connection accepted: one request per turn, in order, until a turn accepts none.
  server.emit('connection', {});
  for (let n = 4; n <= 7; n++) request(n);
  await immediate();
  assert.equal(started, [1, 2, 3, 4]);
  server.emit('connection', {});
  await immediate();
  assert.equal(started, [1, 2, 3, 4, 5]);
  await immediate();
  assert.equal(started, [1, 2, 3, 4, 5, 6, 7]);
  assert.is(turns.waiting(), 0);
});

/** A keep-alive client that asks again as soon as it is answered; resolves with its first answer. */
function client(port: number, again: () => boolean): { first: Promise<void>; socket: Socket } {
  const socket = connect(port, '127.0.0.1');
  let buf = '';
  let resolveFirst: () => void = () => undefined;
  const first = new Promise<void>((r) => (resolveFirst = r));
  const ask = (): void => void socket.write('GET /work HTTP/1.1\r\nHost: t\r\n\r\n');
  socket.on('connect', ask);
  socket.on('data', (d: Buffer) => {
    buf += d.toString('latin1');
    const end = buf.indexOf('\r\n\r\n');
    if (end < 0) return;
    const length = Number(/content-length: (\d+)/i.exec(buf.slice(0, end))?.[1] ?? 0);
    if (buf.length < end + 4 + length) return;
    buf = buf.slice(end + 4 + length);
    resolveFirst();
    if (again()) ask();
    else socket.end();
  });
  socket.on('error', () => resolveFirst());
  return { first, socket };
}

test('a burst of new connections is answered while busy keep-alive clients hold the server', async () => {
  let served = 0;
  const app = express();
  app.get('/work', (_req, res) => {
    served++;
    // A request that costs the event loop about a millisecond, like a boot script.
    const until = performance.now() + 1;
    while (performance.now() < until);
    res.send('ok');
  });
  const service = createHttpService({ httpAddress: '127.0.0.1', httpPort: 0 }, app, 1_000);
  await service.start({} as never);
  const port = service.address()?.port as number;
  let running = true;
  const busy = Array.from({ length: 32 }, () => client(port, () => running));
  try {
    await Promise.all(busy.map((b) => b.first));
    // Each new connection's first answer: how many requests the server started before it.
    const before = served;
    const waited: number[] = [];
    const burst = Array.from({ length: 32 }, () => client(port, () => false));
    await Promise.all(burst.map((b) => b.first.then(() => waited.push(served - before))));
    // One turn per queued connection, each starting all 32 busy requests, would be about 32 × 32
    // requests for the last of the burst; taking turns, about one request per accepted connection.
    assert.ok(Math.max(...waited) < 300, `the last of the burst waited for ${Math.max(...waited)} requests`);
  } finally {
    running = false;
    for (const b of busy) b.socket.destroy();
    await service.stop();
  }
});

test.run();
