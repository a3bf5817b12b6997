import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { readdirSync, readFileSync } from 'node:fs';
import { literalLookup } from '../lib/ipv4.js';
import type { Logger } from '../lib/log.js';
import { bindFailure, ServiceStartError } from '../lib/service.js';
import { interfaceOn, type ServedInterface } from './interfaces.js';
import type { Destination } from './reply.js';

/**
 * The DHCP service's sockets: which ones it binds (or is handed by the service manager), and
 * which one each reply leaves from. The loop sees only `DhcpSockets`; tests hand it sockets that
 * record replies instead of sending them.
 */

/** Which socket a datagram came in on. */
export interface Via {
  /** The DHCP port, or the PXE boot server's (4011, proxy mode). */
  readonly kind: 'dhcp' | 'boot-server';
  /** Set when the socket is bound to one interface's address (or device). */
  readonly iface: ServedInterface | null;
}

export type Receive = (msg: Buffer, from: RemoteInfo, via: Via) => void;

/** What to bind, decided at start. */
export interface SocketPlan {
  readonly port: number;
  /** The PXE boot server's port (proxy mode), or null for none. */
  readonly bootServerPort: number | null;
  readonly served: readonly ServedInterface[];
  /** Pre-bound sockets handed over by the service manager, by name (`dhcp`, `dhcp-proxy`). */
  readonly inherited: ReadonlyMap<string, number>;
  /** The `dhcp-interface` setting, named in the warning about inexact ingress. */
  readonly interfaceName: string | undefined;
}

export interface DhcpSockets {
  /**
   * Whether the ingress interface of a broadcast is known exactly: a device-bound socket was
   * handed over, or the served interface is the namespace's only link.
   */
  readonly exact: boolean;
  /** Binds every socket and delivers what they receive to `receive`; rejects with a ServiceStartError. */
  open(receive: Receive): Promise<void>;
  /** Hands a reply to the kernel; false when there is no socket to send it from. */
  send(bytes: Buffer, to: Destination, target: ServedInterface | null, via: Via): boolean;
  /** The main socket's receive buffer as the kernel granted it (0 before `open`). */
  recvBufferBytes(): number;
  close(): Promise<void>;
}

/** How the service gets its sockets; `sendFailed` hears every failed send. */
export type OpenSockets = (plan: SocketPlan, log: Logger, sendFailed: (err: Error) => void) => DhcpSockets;

/** Asked of the kernel for the main socket; Linux caps it at net.core.rmem_max (global, not per netns). */
export const RECV_BUFFER_BYTES = 8 * 1024 * 1024;

interface SocketVia extends Via {
  readonly socket: Socket;
}

export const udpSockets: OpenSockets = (plan, log, sendFailed) => new UdpSockets(plan, log, sendFailed);

class UdpSockets implements DhcpSockets {
  readonly exact: boolean;
  private readonly sockets: Socket[] = [];
  /** Each served interface's own socket, by interface name. */
  private readonly byInterface = new Map<string, Socket>();
  private main: Socket | null = null;
  private recvBuffer = 0;
  private readonly others: string[];

  constructor(
    private readonly plan: SocketPlan,
    private readonly log: Logger,
    private readonly sendFailed: (err: Error) => void,
  ) {
    this.others = otherLinks(plan.served);
    this.exact = plan.inherited.has('dhcp') || (plan.served.length === 1 && this.others.length === 0);
  }

  async open(receive: Receive): Promise<void> {
    const { plan } = this;
    if (!this.exact && plan.interfaceName) {
      this.log.warn(
        { interface: plan.interfaceName, otherLinks: this.others },
        'DHCP: broadcasts from other links reach this socket too and cannot be told apart (no IP_PKTINFO in Node); replies still leave only through the served interface. For exact binding pass a device-bound socket (docs/dhcp.md, "Serving one interface")',
      );
    }
    const inheritedFd = plan.inherited.get('dhcp');
    try {
      if (inheritedFd !== undefined) {
        const s = await this.bind({ fd: inheritedFd }, { kind: 'dhcp', iface: plan.served.length === 1 ? (plan.served[0] as ServedInterface) : null }, receive);
        this.main = s;
        for (const i of plan.served) this.byInterface.set(i.name, s);
      } else {
        await probeFree(plan.port);
        this.main = await this.bind({ port: plan.port, address: '0.0.0.0' }, { kind: 'dhcp', iface: null }, receive);
        // One socket per interface address: Linux sends a datagram for 255.255.255.255 out of the
        // interface that owns the socket's bound source address (ip_route_output_key: "limited
        // broadcast via the interface of saddr"), which is how replies leave the right interface
        // without SO_BINDTODEVICE. Unicasts to that address land on it too.
        for (const i of plan.served) this.byInterface.set(i.name, await this.bind({ port: plan.port, address: i.address }, { kind: 'dhcp', iface: i }, receive));
      }
      if (plan.bootServerPort !== null) {
        const proxyFd = plan.inherited.get('dhcp-proxy');
        await this.bind(proxyFd !== undefined ? { fd: proxyFd } : { port: plan.bootServerPort, address: '0.0.0.0' }, { kind: 'boot-server', iface: null }, receive);
      }
    } catch (err) {
      await this.close();
      throw err instanceof ServiceStartError ? err : new ServiceStartError('dhcp', 'dhcp-port', bindFailure(err));
    }
    this.recvBuffer = this.main.getRecvBufferSize();
  }

  /**
   * A boot-server answer leaves from the socket its request came to (source port 4011, PXE spec
   * 2.1). A broadcast leaves from the target interface's own socket, so Linux sends it out of that
   * interface; a unicast from the socket of the interface on the destination's subnet.
   */
  send(bytes: Buffer, to: Destination, target: ServedInterface | null, via: Via): boolean {
    let socket: Socket | null;
    if (via.kind === 'boot-server') socket = (via as SocketVia).socket;
    else if (to.broadcast) socket = (target && this.byInterface.get(target.name)) ?? this.main;
    else {
      const onLink = interfaceOn(this.plan.served, to.address);
      socket = (onLink && this.byInterface.get(onLink.name)) ?? this.anySendSocket();
    }
    if (!socket) return false;
    try {
      socket.send(bytes, to.port, to.address, this.sent);
    } catch (err) {
      this.sent(err as Error);
    }
    return true;
  }

  recvBufferBytes(): number {
    return this.recvBuffer;
  }

  async close(): Promise<void> {
    await Promise.all(this.sockets.splice(0).map((s) => new Promise<void>((r) => s.close(() => r()))));
    this.byInterface.clear();
    this.main = null;
  }

  /** One callback for every send (no closure per datagram). */
  private readonly sent = (err: Error | null): void => {
    if (err) this.sendFailed(err);
  };

  private anySendSocket(): Socket | null {
    for (const s of this.byInterface.values()) return s;
    return this.main;
  }

  private bind(where: { port: number; address: string } | { fd: number }, via: Via, receive: Receive): Promise<Socket> {
    return new Promise((resolve, reject) => {
      const s = createSocket({ type: 'udp4', reuseAddr: true, recvBufferSize: RECV_BUFFER_BYTES, lookup: literalLookup });
      const fail = (err: Error): void => {
        s.close();
        reject(err);
      };
      s.once('error', fail);
      s.bind('fd' in where ? { fd: where.fd } : { port: where.port, address: where.address, exclusive: true }, () => {
        s.off('error', fail);
        s.setBroadcast(true);
        const full: SocketVia = { ...via, socket: s };
        s.on('message', (msg, rinfo) => receive(msg, rinfo, full));
        // A send error is reported on the callback; anything else must not take the process down.
        s.on('error', (err) => this.log.warn({ err: err.message }, 'DHCP socket error'));
        this.sockets.push(s);
        resolve(s);
      });
    });
  }
}

/** Fails start with "port in use" even though our own sockets share the port (SO_REUSEADDR). */
function probeFree(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const probe = createSocket({ type: 'udp4', reuseAddr: false });
    probe.once('error', (err) => {
      probe.close();
      reject(new ServiceStartError('dhcp', 'dhcp-port', `UDP ${port}: ${bindFailure(err)}`));
    });
    probe.bind({ port, address: '0.0.0.0', exclusive: true }, () => probe.close(() => resolve()));
  });
}

/**
 * systemd socket activation (sd_listen_fds): LISTEN_PID must be us; fds start at 3; names come
 * from FileDescriptorName= in the .socket unit (LISTEN_FDNAMES, colon-separated).
 */
export function inheritedFromEnv(env: NodeJS.ProcessEnv = process.env, pid = process.pid): Map<string, number> {
  const out = new Map<string, number>();
  if (env['LISTEN_PID'] !== String(pid)) return out;
  const count = Number(env['LISTEN_FDS'] ?? '0');
  const names = (env['LISTEN_FDNAMES'] ?? '').split(':');
  for (let i = 0; i < count && i < 64; i++) {
    const name = names[i];
    if (name) out.set(name, 3 + i);
  }
  return out;
}

/** Other non-loopback links in this network namespace (they may receive broadcasts too). */
function otherLinks(served: readonly ServedInterface[]): string[] {
  try {
    return readdirSync('/sys/class/net').filter((n) => {
      if (n === 'lo' || served.some((s) => s.name === n)) return false;
      try {
        // IFF_UP (0x1): a link that is down receives nothing.
        return (Number(readFileSync(`/sys/class/net/${n}/flags`, 'utf8').trim()) & 1) === 1;
      } catch {
        return false;
      }
    });
  } catch {
    return [];
  }
}
