/**
 * A raw TFTP client for the exchanges that real clients cannot be made to do: an exact request
 * (any op, name, mode, options) with its first answer, a second socket butting into a running
 * transfer (unknown TID), garbage datagrams, EDK2's size probe followed by the real download,
 * and a client that goes silent mid-transfer. Runs in the client namespace and prints one JSON
 * line. Built on the project's own codec, so the bytes on the wire are the encoder's.
 *
 *   node tftp-probe.js request HOST PORT RRQ|WRQ NAME [MODE] [opt=value…]
 *   node tftp-probe.js unknown-tid HOST PORT NAME
 *   node tftp-probe.js garbage HOST PORT COUNT
 *   node tftp-probe.js edk2 HOST PORT NAME
 *   node tftp-probe.js abandon HOST PORT NAME
 */
import { createHash } from 'node:crypto';
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { decodeTftp, encodeTftp, type TftpOption, type TftpPacket, type TransferMode } from '../../server/tftp/packet.js';
import { seededRandom } from './udp-relay.js';

interface Reply {
  readonly p: TftpPacket;
  readonly from: RemoteInfo;
}

/** Every datagram a socket receives waits in its queue until `next` takes it: none is lost. */
const queues = new WeakMap<Socket, { items: Reply[]; waiter: ((r: Reply) => void) | null }>();

function decodeReply(msg: Buffer, from: RemoteInfo): Reply {
  try {
    return { p: decodeTftp(msg), from };
  } catch {
    return { p: { op: 'ERROR', code: -1, message: `undecodable ${msg.toString('hex').slice(0, 40)}` }, from };
  }
}

function open(): Promise<Socket> {
  const s = createSocket('udp4');
  const q: { items: Reply[]; waiter: ((r: Reply) => void) | null } = { items: [], waiter: null };
  queues.set(s, q);
  s.on('message', (msg, from) => {
    const r = decodeReply(msg, from);
    const w = q.waiter;
    if (w) {
      q.waiter = null;
      w(r);
    } else q.items.push(r);
  });
  return new Promise((resolve) => s.bind(0, () => resolve(s)));
}

function next(s: Socket, ms: number): Promise<Reply | null> {
  const q = queues.get(s);
  if (!q) throw new Error('socket not opened by open()');
  const ready = q.items.shift();
  if (ready) return Promise.resolve(ready);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      q.waiter = null;
      resolve(null);
    }, ms);
    q.waiter = (r) => {
      clearTimeout(timer);
      resolve(r);
    };
  });
}

/** Resolves once the datagram has left, so that closing the socket right after cannot drop it. */
function send(s: Socket, p: TftpPacket, port: number, host: string): Promise<void> {
  return new Promise((resolve) => s.send(encodeTftp(p), port, host, () => resolve()));
}

function describe(r: Reply | null): Record<string, unknown> {
  if (!r) return { reply: null };
  const base = { reply: r.p.op, fromPort: r.from.port };
  if (r.p.op === 'ERROR') return { ...base, code: r.p.code, message: r.p.message };
  if (r.p.op === 'OACK') return { ...base, options: Object.fromEntries(r.p.options.map((o) => [o.name, o.value])) };
  if (r.p.op === 'DATA') return { ...base, block: r.p.block, length: r.p.data.length };
  return base;
}

/** Lockstep or windowed download over an open socket, after the first answer `first`. */
async function download(s: Socket, host: string, first: Reply, windowsize: number): Promise<{ bytes: Buffer; blocks: number } | { error: string }> {
  const chunks: Buffer[] = [];
  let expected = 1;
  let r: Reply | null = first;
  let blksize = 512;
  const port = first.from.port;
  if (first.p.op === 'OACK') {
    blksize = Number(first.p.options.find((o) => o.name.toLowerCase() === 'blksize')?.value ?? 512);
    await send(s, { op: 'ACK', block: 0 }, port, host);
    r = await next(s, 5000);
  }
  let inWindow = 0;
  for (let guard = 0; guard < 1_000_000 && r; guard++) {
    if (r.p.op === 'ERROR') return { error: `error ${r.p.code}: ${r.p.message}` };
    if (r.p.op !== 'DATA') return { error: `unexpected ${r.p.op}` };
    if (r.p.block === (expected & 0xffff)) {
      chunks.push(r.p.data);
      inWindow++;
      const last = r.p.data.length < blksize;
      if (last || inWindow >= windowsize) {
        await send(s, { op: 'ACK', block: r.p.block }, port, host);
        inWindow = 0;
      }
      if (last) return { bytes: Buffer.concat(chunks), blocks: expected };
      expected++;
    }
    r = await next(s, 5000);
  }
  return { error: 'timed out' };
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

async function main(argv: string[]): Promise<Record<string, unknown>> {
  const [cmd, host = '', portText = '69', ...rest] = argv;
  const port = Number(portText);
  switch (cmd) {
    case 'request': {
      const [op = 'RRQ', filename = '', mode = 'octet', ...pairs] = rest;
      const options: TftpOption[] = pairs.map((kv) => ({ name: kv.split('=')[0] ?? '', value: kv.split('=').slice(1).join('=') }));
      const s = await open();
      await send(s, { op: op === 'WRQ' ? 'WRQ' : 'RRQ', filename, mode: mode as TransferMode, options }, port, host);
      const r = await next(s, 3000);
      // Be a polite client: end a transfer that was granted.
      if (r && r.p.op !== 'ERROR') await send(s, { op: 'ERROR', code: 0, message: 'probe done' }, r.from.port, host);
      s.close();
      return describe(r);
    }
    case 'unknown-tid': {
      const [filename = ''] = rest;
      const s = await open();
      const intruder = await open();
      await send(s, { op: 'RRQ', filename, mode: 'octet', options: [] }, port, host);
      const first = await next(s, 3000);
      if (!first || first.p.op !== 'DATA') return { error: 'no first block', first: describe(first) };
      // Another TID writes to the transfer's port: RFC 1350 §4 says error 5 to it, transfer unharmed.
      await send(intruder, { op: 'ACK', block: 1 }, first.from.port, host);
      const toIntruder = await next(intruder, 3000);
      const rest2 = await download(s, host, first, 1);
      s.close();
      intruder.close();
      return { intruder: describe(toIntruder), ...('bytes' in rest2 ? { size: rest2.bytes.length, sha256: sha(rest2.bytes) } : rest2) };
    }
    case 'garbage': {
      const count = Number(rest[0] ?? 100);
      const s = await open();
      const rand = seededRandom(99);
      for (let i = 0; i < count; i++) {
        const len = Math.floor(rand() * 40);
        const b = Buffer.alloc(len);
        for (let j = 0; j < len; j++) b[j] = Math.floor(rand() * 256);
        // Never a valid request: opcode 0 or > 6, or a truncated RRQ without NUL.
        if (len >= 2) b[1] = i % 2 === 0 ? 0 : 7 + (b[1] as number) % 200;
        if (len >= 1) b[0] = 0;
        s.send(b, port, host);
      }
      const r = await next(s, 500);
      s.close();
      return { sent: count, ...describe(r) };
    }
    case 'edk2': {
      const [filename = ''] = rest;
      // EDK2's Mtftp4: ask the size with tsize, read the OACK, hang up with error 8, ask again.
      const a = await open();
      await send(a, { op: 'RRQ', filename, mode: 'octet', options: [{ name: 'tsize', value: '0' }, { name: 'blksize', value: '1468' }] }, port, host);
      const oack = await next(a, 3000);
      if (!oack || oack.p.op !== 'OACK') return { error: 'no OACK', got: describe(oack) };
      await send(a, { op: 'ERROR', code: 8, message: 'tsize probe' }, oack.from.port, host);
      a.close();
      const b = await open();
      await send(b, { op: 'RRQ', filename, mode: 'octet', options: [{ name: 'blksize', value: '1468' }, { name: 'windowsize', value: '4' }] }, port, host);
      const first = await next(b, 3000);
      if (!first) return { error: 'no answer to the second request' };
      const got = await download(b, host, first, 4);
      b.close();
      return { probe: describe(oack), second: describe(first), ...('bytes' in got ? { size: got.bytes.length, sha256: sha(got.bytes) } : got) };
    }
    case 'abandon': {
      const [filename = ''] = rest;
      const s = await open();
      await send(s, { op: 'RRQ', filename, mode: 'octet', options: [] }, port, host);
      const first = await next(s, 3000);
      // Go silent: count what the server sends until it gives up (no answer for 3 s).
      let repeats = 0;
      while ((await next(s, 3000)) !== null) repeats++;
      s.close();
      return { first: describe(first), repeats };
    }
    default:
      throw new Error(`unknown probe ${cmd}`);
  }
}

main(process.argv.slice(2)).then(
  (r) => process.stdout.write(JSON.stringify(r) + '\n'),
  (err: unknown) => {
    process.stderr.write(String(err) + '\n');
    process.exitCode = 1;
  },
);
