import type { IncomingMessage } from 'node:http';
import { createServer, connect, type Socket } from 'node:net';
import type { Request } from 'express';
import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { accelUri } from '../server/artifacts/accel.js';
import { wholeFileHead, wholeFileRequest } from '../server/artifacts/file-response.js';
import { clientView, notePeer, peerAddress } from '../server/http/client-address.js';

/**
 * The pure parts of sending artifacts: the internal URI a front is handed, which requests a file
 * worker may answer and the head it writes, and whose word on the client's address counts.
 */
const test = suite('artifact delivery: X-Accel-Redirect names, file-worker requests, trusted fronts');

test('accelUri: the real path under its directory, or nothing when a front could read it differently', () => {
  const cases: [string, 'local' | 'cache', string, string | null][] = [
    ['a file of a release', 'local', '22.04/vmlinuz', '/_racksmith/artifacts/local/22.04/vmlinuz'],
    ['the cache', 'cache', '22.04/ubuntu-22.04.5-live-server-amd64.iso', '/_racksmith/artifacts/cache/22.04/ubuntu-22.04.5-live-server-amd64.iso'],
    ['a link resolved elsewhere inside', 'local', 'shared/kernels/vmlinuz-6.8', '/_racksmith/artifacts/local/shared/kernels/vmlinuz-6.8'],
    ['a hidden segment', 'local', '22.04/.part-1', null],
    ['a parent segment', 'local', '../etc/passwd', null],
    ['an empty segment', 'local', '22.04//vmlinuz', null],
    ['a space', 'local', '22.04/my kernel', null],
    ['a percent sign (the front would decode it)', 'local', '22.04/a%2fb', null],
    ['a query mark', 'cache', '22.04/x?y', null],
    ['nothing', 'local', '', null],
  ];
  for (const [name, root, relative, want] of cases) assert.is(accelUri({ root, relative }), want, name);
});

test('wholeFileRequest: only a plain GET of the whole file goes to a file worker', () => {
  const cases: [string, string, Record<string, string>, boolean][] = [
    ['plain GET', 'GET', {}, true],
    ['GET with other headers', 'GET', { 'user-agent': 'iPXE/1.21.1', accept: '*/*' }, true],
    ['HEAD', 'HEAD', {}, false],
    ['Range', 'GET', { range: 'bytes=0-99' }, false],
    ['If-Range', 'GET', { 'if-range': 'Thu, 01 Jan 2026 00:00:00 GMT' }, false],
    ['If-Modified-Since', 'GET', { 'if-modified-since': 'Thu, 01 Jan 2026 00:00:00 GMT' }, false],
    ['If-None-Match', 'GET', { 'if-none-match': '"x"' }, false],
    ['If-Match', 'GET', { 'if-match': '"x"' }, false],
    ['If-Unmodified-Since', 'GET', { 'if-unmodified-since': 'Thu, 01 Jan 2026 00:00:00 GMT' }, false],
    ['POST', 'POST', {}, false],
  ];
  for (const [name, method, headers, want] of cases) assert.is(wholeFileRequest(method, headers), want, name);
});

test('wholeFileHead: 200 with the length, the last modification, and a closed connection', () => {
  const head = wholeFileHead({ size: 31_457_280, mtimeMs: Date.UTC(2026, 0, 2, 3, 4, 5, 678) }, { 'X-Request-Id': 'abc' }, new Date(Date.UTC(2026, 5, 1)));
  assert.is(
    head,
    'HTTP/1.1 200 OK\r\nDate: Mon, 01 Jun 2026 00:00:00 GMT\r\nContent-Type: application/octet-stream\r\nContent-Length: 31457280\r\nAccept-Ranges: bytes\r\n' +
      'Last-Modified: Fri, 02 Jan 2026 03:04:05 GMT\r\nCache-Control: public, max-age=3600\r\nX-Request-Id: abc\r\nConnection: close\r\n\r\n',
  );
  assert.throws(() => wholeFileHead({ size: 1, mtimeMs: 0 }, { 'X-Request-Id': 'a\r\nSet-Cookie: x' }, new Date()), /line break/);
});

function req(peer: string, headers: Record<string, string>): Request {
  return { socket: { remoteAddress: peer }, headers } as unknown as Request;
}

test('clientView: only a trusted front names the client or asks for X-Accel-Redirect', () => {
  const trusted = new Set(['127.0.0.1']);
  const cases: [string, string, Record<string, string>, { address: string | null; accel: boolean }][] = [
    ['a machine, directly', '10.77.0.50', {}, { address: '10.77.0.50', accel: false }],
    ['a machine claiming another address', '10.77.0.50', { 'x-real-ip': '10.77.0.51', 'x-sendfile-type': 'X-Accel-Redirect' }, { address: '10.77.0.50', accel: false }],
    ['the front, for a machine', '127.0.0.1', { 'x-real-ip': '10.77.0.51', 'x-sendfile-type': 'X-Accel-Redirect' }, { address: '10.77.0.51', accel: true }],
    ['the front on a dual-stack socket', '::ffff:127.0.0.1', { 'x-real-ip': '::ffff:10.77.0.51', 'x-sendfile-type': 'x-accel-redirect' }, { address: '10.77.0.51', accel: true }],
    ['the front without X-Real-IP', '127.0.0.1', { 'x-sendfile-type': 'X-Accel-Redirect' }, { address: '127.0.0.1', accel: true }],
    ['the front with a bad X-Real-IP', '127.0.0.1', { 'x-real-ip': '10.77.0.51, 10.0.0.1' }, { address: '127.0.0.1', accel: false }],
    ['the front, another sendfile type', '127.0.0.1', { 'x-real-ip': '10.77.0.51', 'x-sendfile-type': 'X-Sendfile' }, { address: '10.77.0.51', accel: false }],
  ];
  for (const [name, peer, headers, want] of cases) assert.equal(clientView(req(peer, headers), trusted), want, name);
  assert.equal(clientView(req('127.0.0.1', { 'x-real-ip': '10.77.0.51', 'x-sendfile-type': 'X-Accel-Redirect' }), new Set()), { address: '127.0.0.1', accel: false }, 'no front configured');
});

test('a client\'s address is the one noted at accept, still known after the client reset the connection', async () => {
  // Two connections, both reset before a late handler asks: only the one noted at accept still knows.
  const sockets: Socket[] = [];
  const srv = createServer((s) => {
    if (sockets.length === 0) notePeer(s);
    sockets.push(s);
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const a = srv.address();
  const port = typeof a === 'object' && a ? a.port : 0;
  const clients = [connect({ port, host: '127.0.0.1', localAddress: '127.0.0.42' })];
  for (let i = 0; i < 100 && sockets.length < 1; i++) await new Promise((r) => setTimeout(r, 10));
  clients.push(connect({ port, host: '127.0.0.1', localAddress: '127.0.0.43' }));
  for (let i = 0; i < 100 && sockets.length < 2; i++) await new Promise((r) => setTimeout(r, 10));
  srv.close();
  for (const s of sockets) s.destroy();
  for (const c of clients) c.destroy();
  assert.is(sockets.length, 2);
  assert.is(peerAddress({ socket: sockets[0] } as IncomingMessage), '127.0.0.42');
  assert.is(peerAddress({ socket: sockets[1] } as IncomingMessage), null, 'not noted: a reset socket no longer knows its peer');
  assert.is(peerAddress({ socket: { remoteAddress: '::ffff:10.77.0.9' } } as unknown as IncomingMessage), '10.77.0.9', 'an IPv4 client on a dual-stack socket');
});

test.run();
