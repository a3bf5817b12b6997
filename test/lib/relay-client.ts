/**
 * Many DHCP clients at once behind one relay address, the way perfdhcp drives a server
 * (giaddr = our address, port 67 both ways), but recording what perfdhcp cannot: every ACK
 * (MAC, address, time) and how many clients needed a retry. Used by the restart test and the
 * burst benchmark. Runs inside a client namespace:
 *   node relay-client.js '{"local":"10.78.0.2","server":"10.78.0.1","count":500,"window":500,"acks":"/tmp/acks.jsonl"}'
 * and prints one JSON summary line.
 */
import { appendFileSync } from 'node:fs';
import { createSocket } from 'node:dgram';
import { OPTION, getIp, getMessageType, ipOption, messageTypeOption } from '../../server/dhcp/options.js';
import { ZERO_IP, decodeDhcp, encodeDhcp, type DhcpPacket } from '../../server/dhcp/packet.js';
import type { IPv4 } from '../../server/lib/ipv4.js';

interface Args {
  readonly local: string;
  readonly server: string;
  readonly count: number;
  /** Clients in flight at once (all of them for a power-on burst). */
  readonly window: number;
  /** Append one JSON line per ACK here. */
  readonly acks?: string;
  readonly retryMs?: number;
  readonly timeoutMs?: number;
  /** MAC prefix byte, so two runs do not share MACs. */
  readonly macPrefix?: number;
}

type Phase = 'discover' | 'request' | 'bound';
interface Client {
  readonly index: number;
  readonly chaddr: Buffer;
  readonly mac: string;
  xid: number;
  phase: Phase;
  offered: IPv4 | null;
  serverId: IPv4 | null;
  sentAt: number;
  tries: number;
}

const a = JSON.parse(process.argv[2] ?? '{}') as Args;
const retryMs = a.retryMs ?? 1000;
const started = Date.now();
const sock = createSocket({ type: 'udp4', reuseAddr: true, recvBufferSize: 8 * 1024 * 1024 });
const clients: Client[] = [];
const byXid = new Map<number, Client>();
let bound = 0;
let naks = 0;
let lastBoundAt = 0;
let next = 0;
let xidSeq = (a.macPrefix ?? 2) << 24;

function packet(c: Client, type: 'discover' | 'request'): Buffer {
  const options = new Map<number, Buffer>([[OPTION.MESSAGE_TYPE, messageTypeOption(type)]]);
  if (type === 'request' && c.offered && c.serverId) {
    options.set(OPTION.SERVER_ID, ipOption(c.serverId));
    options.set(OPTION.REQUESTED_IP, ipOption(c.offered));
  }
  options.set(OPTION.PARAMETER_LIST, Buffer.from([1, 3, 6, 51, 54]));
  const p: DhcpPacket = {
    op: 'BOOTREQUEST', htype: 1, hlen: 6, hops: 1, xid: c.xid, secs: 0, flags: 0,
    ciaddr: ZERO_IP, yiaddr: ZERO_IP, siaddr: ZERO_IP, giaddr: a.local as IPv4, chaddr: c.chaddr, sname: '', file: '', options,
  };
  return encodeDhcp(p);
}

function send(c: Client, type: 'discover' | 'request'): void {
  c.sentAt = Date.now();
  sock.send(packet(c, type), 67, a.server);
}

function start(c: Client): void {
  byXid.delete(c.xid);
  c.xid = xidSeq++ >>> 0;
  byXid.set(c.xid, c);
  c.phase = 'discover';
  c.offered = null;
  send(c, 'discover');
}

for (let i = 0; i < a.count; i++) {
  const chaddr = Buffer.alloc(16);
  chaddr[0] = a.macPrefix ?? 2;
  chaddr.writeUInt32BE(i, 2);
  clients.push({ index: i, chaddr, mac: chaddr.subarray(0, 6).toString('hex').replace(/(..)(?!$)/g, '$1:'), xid: 0, phase: 'discover', offered: null, serverId: null, sentAt: 0, tries: 0 });
}

sock.on('message', (msg) => {
  let p: DhcpPacket;
  try {
    p = decodeDhcp(msg);
  } catch {
    return;
  }
  const c = byXid.get(p.xid);
  if (!c || c.phase === 'bound') return;
  const type = getMessageType(p.options);
  if (type === 'offer' && c.phase === 'discover') {
    c.offered = p.yiaddr;
    c.serverId = getIp(p.options, OPTION.SERVER_ID);
    c.phase = 'request';
    send(c, 'request');
  } else if (type === 'ack' && c.phase === 'request') {
    c.phase = 'bound';
    bound++;
    lastBoundAt = Date.now();
    if (a.acks) appendFileSync(a.acks, JSON.stringify({ mac: c.mac, ip: p.yiaddr, at: lastBoundAt }) + '\n');
    if (next < clients.length) start(clients[next++] as Client);
  } else if (type === 'nak') {
    naks++;
    start(c);
  }
});

await new Promise<void>((r) => sock.bind(67, a.local, () => r()));
while (next < Math.min(a.window, clients.length)) start(clients[next++] as Client);

const deadline = started + (a.timeoutMs ?? 120_000);
await new Promise<void>((resolve) => {
  const timer = setInterval(() => {
    const t = Date.now();
    if (bound >= clients.length || t > deadline) {
      clearInterval(timer);
      resolve();
      return;
    }
    // RFC 2131 §4.1: retransmit after a timeout (here a fixed one, like a PXE ROM's first retry).
    for (const c of clients.slice(0, next)) {
      if (c.phase !== 'bound' && t - c.sentAt >= retryMs) {
        c.tries++;
        if (c.phase === 'request' && c.tries % 3 === 0) start(c);
        else send(c, c.phase === 'request' ? 'request' : 'discover');
      }
    }
  }, 20);
});
sock.close();
const retried = clients.filter((c) => c.tries > 0).length;
process.stdout.write(
  JSON.stringify({ count: clients.length, bound, retried, retries: clients.reduce((n, c) => n + c.tries, 0), naks, allBoundMs: bound === clients.length ? lastBoundAt - started : null }) + '\n',
);
