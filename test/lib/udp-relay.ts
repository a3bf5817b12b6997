/**
 * A small user-space UDP relay for TFTP tests and benchmarks (this kernel has no netem): clients
 * talk to `--listen`, the relay talks to `--target`, dropping a seeded share of datagrams each way
 * (`--loss`) and/or holding each one for `--delay-ms`. TFTP answers from a new port per transfer,
 * so the relay mirrors that: each server port a client session hears from gets its own
 * client-facing port, and the client sees the same shape of conversation as without the relay.
 *
 * Run inside a namespace: `node dist/test/lib/udp-relay.js --listen 10.77.0.1:6969
 * --target 10.77.0.1:69 --loss 0.1 --seed 7` (add `--delay-ms 1 --delay-to server` for latency,
 * `--spare-negotiation yes` to never drop an OACK or ACK 0). It prints `ready` once bound and, on SIGTERM, one
 * JSON line of counts.
 */
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { fileURLToPath } from 'node:url';

export interface RelayOptions {
  readonly listen: { address: string; port: number };
  readonly target: { address: string; port: number };
  /** Share of datagrams dropped in each direction, 0..1. */
  readonly loss: number;
  readonly delayMs: number;
  /** Which direction is delayed: towards the server, towards the client, or both. */
  readonly delayTo?: 'server' | 'client' | 'both';
  readonly seed: number;
  /**
   * Never drop the option negotiation (the server's OACK, the client's ACK of block 0). atftp
   * aborts a transfer on a second OACK ("unexpected OACK": its tftp_file.c counts OACKs and
   * gives up past one), so when its ACK 0 is lost, the server's retransmitted OACK ends the
   * transfer whatever the server does. Losses elsewhere are repaired by every client.
   */
  readonly spareNegotiation?: boolean;
}

export interface RelayCounts {
  toServer: number;
  toClient: number;
  dropped: number;
  sessions: number;
}

/** mulberry32: a tiny seeded generator, so a lossy run can be repeated exactly. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** An OACK towards the client, or an ACK of block 0 towards the server. */
function isNegotiation(msg: Buffer, dir: 'toServer' | 'toClient'): boolean {
  if (msg.length < 2 || msg[0] !== 0) return false;
  if (dir === 'toClient') return msg[1] === 6;
  return msg[1] === 4 && msg.length >= 4 && msg.readUInt16BE(2) === 0;
}

interface Session {
  readonly client: RemoteInfo;
  readonly up: Socket;
  /** Client-facing socket per server port. */
  readonly downs: Map<number, Socket>;
  lastSeen: number;
}

export async function startRelay(o: RelayOptions): Promise<{ counts: RelayCounts; close(): void }> {
  const rand = seededRandom(o.seed);
  const counts: RelayCounts = { toServer: 0, toClient: 0, dropped: 0, sessions: 0 };
  const sessions = new Map<string, Session>();
  const front = createSocket('udp4');

  const forward = (sock: Socket, msg: Buffer, port: number, address: string, dir: 'toServer' | 'toClient'): void => {
    if (process.env['RELAY_DEBUG']) process.stderr.write(`${dir} ${port} op=${msg[1]} blk=${msg.length >= 4 ? msg.readUInt16BE(2) : -1}\n`);
    const spared = o.spareNegotiation === true && isNegotiation(msg, dir);
    if (o.loss > 0 && rand() < o.loss && !spared) {
      if (process.env['RELAY_DEBUG']) process.stderr.write('  dropped\n');
      counts.dropped++;
      return;
    }
    counts[dir]++;
    const send = (): void => {
      try {
        sock.send(msg, port, address);
      } catch {
        /* closed meanwhile */
      }
    };
    const delayed = o.delayMs > 0 && (o.delayTo ?? 'both') !== (dir === 'toServer' ? 'client' : 'server');
    if (delayed) setTimeout(send, o.delayMs);
    else send();
  };

  const bind = (sock: Socket, port: number, address: string): Promise<void> =>
    new Promise((resolve, reject) => {
      sock.once('error', reject);
      sock.bind(port, address, () => {
        sock.off('error', reject);
        resolve();
      });
    });

  const session = async (client: RemoteInfo): Promise<Session> => {
    const key = `${client.address}:${client.port}`;
    const existing = sessions.get(key);
    if (existing) return existing;
    const up = createSocket('udp4');
    const s: Session = { client, up, downs: new Map([[o.target.port, front]]), lastSeen: Date.now() };
    sessions.set(key, s);
    counts.sessions++;
    up.on('message', (msg, from) => {
      s.lastSeen = Date.now();
      let down = s.downs.get(from.port);
      if (!down) {
        const d = createSocket('udp4');
        down = d;
        s.downs.set(from.port, d);
        d.on('message', (m, c) => {
          s.lastSeen = Date.now();
          // Whoever writes to this port is talking to server port `from.port`.
          if (c.address === client.address && c.port === client.port) forward(up, m, from.port, from.address, 'toServer');
        });
        d.bind(0, o.listen.address);
      }
      forward(down, msg, client.port, client.address, 'toClient');
    });
    await bind(up, 0, '0.0.0.0');
    return s;
  };

  front.on('message', (msg, client) => {
    void session(client).then((s) => {
      s.lastSeen = Date.now();
      forward(s.up, msg, o.target.port, o.target.address, 'toServer');
    });
  });
  await bind(front, o.listen.port, o.listen.address);

  const sweep = setInterval(() => {
    const old = Date.now() - 60_000;
    for (const [k, s] of sessions) {
      if (s.lastSeen > old) continue;
      sessions.delete(k);
      s.up.close();
      for (const d of s.downs.values()) if (d !== front) d.close();
    }
  }, 10_000);

  return {
    counts,
    close() {
      clearInterval(sweep);
      for (const s of sessions.values()) {
        s.up.close();
        for (const d of s.downs.values()) if (d !== front) d.close();
      }
      front.close();
    },
  };
}

function hostPort(s: string | undefined, what: string): { address: string; port: number } {
  const m = /^([\d.]+):(\d+)$/.exec(s ?? '');
  if (!m) throw new Error(`${what}: expected IP:PORT, got ${s}`);
  return { address: m[1] as string, port: Number(m[2]) };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const args = new Map<string, string>();
  const argv = process.argv.slice(2);
  for (let i = 0; i + 1 < argv.length; i += 2) args.set(String(argv[i]).replace(/^--/, ''), String(argv[i + 1]));
  const relay = await startRelay({
    listen: hostPort(args.get('listen'), '--listen'),
    target: hostPort(args.get('target'), '--target'),
    loss: Number(args.get('loss') ?? 0),
    delayMs: Number(args.get('delay-ms') ?? 0),
    delayTo: (args.get('delay-to') ?? 'both') as 'server' | 'client' | 'both',
    seed: Number(args.get('seed') ?? 1),
    spareNegotiation: args.get('spare-negotiation') === 'yes',
  });
  process.stdout.write('ready\n');
  const end = (): void => {
    relay.close();
    process.stdout.write(JSON.stringify(relay.counts) + '\n', () => process.exit(0));
  };
  process.on('SIGTERM', end);
  process.on('SIGINT', end);
}
