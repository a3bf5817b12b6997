import type { RemoteInfo } from 'node:dgram';
import type { NetworkInterfaceInfo } from 'node:os';
import * as assert from 'uvu/assert';
import { loadConfig } from '../../server/config/load.js';
import type { MachineFeed } from '../../server/dhcp/directory.js';
import type { ServedInterface } from '../../server/dhcp/interfaces.js';
import { OPTION, getMessageType, ipOption, messageTypeOption, type MessageTypeName } from '../../server/dhcp/options.js';
import { ZERO_IP, decodeDhcp, encodeDhcp, type DhcpPacket } from '../../server/dhcp/packet.js';
import type { Destination } from '../../server/dhcp/reply.js';
import { createDhcpService, type DhcpInventory, type DhcpService } from '../../server/dhcp/server.js';
import type { DhcpSockets, OpenSockets, Receive, SocketPlan, Via } from '../../server/dhcp/sockets.js';
import type { IPv4 } from '../../server/lib/ipv4.js';
import { silentLogger } from '../../server/lib/log.js';

/**
 * The DHCP service in-process with sockets that record its replies instead of sending them: the
 * whole loop (codec, classification, decisions, address space, commits, events) over a real or a
 * faulty store, driven datagram by datagram, with no namespace and no child process.
 */

export interface SentReply {
  readonly packet: DhcpPacket;
  readonly type: MessageTypeName | null;
  readonly to: Destination;
  /** The served interface the reply leaves through, or null. */
  readonly target: string | null;
  readonly via: Via['kind'];
}

export class RecordingSockets implements DhcpSockets {
  readonly exact = true;
  readonly sent: SentReply[] = [];
  plan: SocketPlan | null = null;
  private receive: Receive | null = null;
  private closed = false;

  open(receive: Receive): Promise<void> {
    this.receive = receive;
    return Promise.resolve();
  }

  /** A reply after `close` is lost, as it would be on a closed socket. */
  send(bytes: Buffer, to: Destination, target: ServedInterface | null, via: Via): boolean {
    if (this.closed) return false;
    const packet = decodeDhcp(bytes);
    this.sent.push({ packet, type: getMessageType(packet.options), to, target: target?.name ?? null, via: via.kind });
    return true;
  }

  recvBufferBytes(): number {
    return 0;
  }

  close(): Promise<void> {
    this.closed = true;
    this.receive = null;
    return Promise.resolve();
  }

  /** A datagram arriving on the DHCP port (or the boot server's) from `from`. */
  deliver(msg: Buffer, from: { address: string; port: number }, via: Via = { kind: 'dhcp', iface: null }): void {
    if (!this.receive) throw new Error('the service has not opened its sockets');
    const rinfo: RemoteInfo = { address: from.address, port: from.port, family: 'IPv4', size: msg.length };
    this.receive(msg, rinfo, via);
  }

  /** The replies sent to this MAC, oldest first. */
  to(mac: string): SentReply[] {
    return this.sent.filter((s) => macOf(s.packet) === mac);
  }
}

export function macOf(p: DhcpPacket): string {
  return p.chaddr.subarray(0, 6).toString('hex').replace(/(..)(?!$)/g, '$1:');
}

/** One served interface, `name` with `cidr`'s address, as `os.networkInterfaces()` would list it. */
export function interfaceTable(name: string, address: string, netmask: string): NodeJS.Dict<NetworkInterfaceInfo[]> {
  return { [name]: [{ address, netmask, family: 'IPv4', mac: '02:00:00:00:00:01', internal: false, cidr: null }] };
}

export interface InProcessDhcp {
  readonly service: DhcpService;
  readonly sockets: RecordingSockets;
  /** Waits (bounded) until `check` holds, letting the loop and the store's promises run. */
  until(what: string, check: () => boolean | Promise<boolean>, ms?: number): Promise<void>;
}

/** Starts the service in authoritative mode (or as `env` says) on one made-up interface. */
export async function startInProcess(opts: {
  readonly inventory: DhcpInventory;
  readonly env?: Record<string, string>;
  readonly directory?: MachineFeed;
  readonly now?: () => number;
  readonly iface?: { name: string; address: string; netmask: string };
}): Promise<InProcessDhcp> {
  const iface = opts.iface ?? { name: 'pxe0', address: '10.77.0.1', netmask: '255.255.255.0' };
  const config = loadConfig({
    env: {
      RACKSMITH_DHCP_MODE: 'authoritative',
      RACKSMITH_DHCP_INTERFACE: iface.name,
      RACKSMITH_DHCP_RANGE: '10.77.0.100-10.77.0.199',
      RACKSMITH_ADVERTISE_ADDRESS: iface.address,
      RACKSMITH_TFTP_ROOT: '/nonexistent',
      ...opts.env,
    },
    flags: {},
  });
  const sockets = new RecordingSockets();
  const open: OpenSockets = (plan) => {
    sockets.plan = plan;
    return sockets;
  };
  const service = createDhcpService(config, {
    inventory: opts.inventory,
    interfaces: () => interfaceTable(iface.name, iface.address, iface.netmask),
    inheritedFds: new Map(),
    sockets: open,
    ...(opts.directory ? { directory: opts.directory } : {}),
    ...(opts.now ? { now: opts.now } : {}),
  });
  await service.start({ signal: new AbortController().signal, log: silentLogger(), fatal: (err) => assert.unreachable(err.message) });
  return {
    service,
    sockets,
    async until(what, check, ms = 5_000) {
      const deadline = Date.now() + ms;
      while (!(await check())) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
        await new Promise((r) => setTimeout(r, 2));
      }
    },
  };
}

/** A client request for `mac`, relayed through `giaddr` (or broadcast from 0.0.0.0 when null). */
export function clientRequest(type: 'discover' | 'request' | 'release' | 'decline', mac: string, opts: { xid?: number; giaddr?: string | null; serverId?: string; requested?: string; ciaddr?: string; options?: ReadonlyMap<number, Buffer> } = {}): Buffer {
  const options = new Map<number, Buffer>([[OPTION.MESSAGE_TYPE, messageTypeOption(type)]]);
  if (opts.serverId) options.set(OPTION.SERVER_ID, ipOption(opts.serverId as IPv4));
  if (opts.requested) options.set(OPTION.REQUESTED_IP, ipOption(opts.requested as IPv4));
  for (const [code, value] of opts.options ?? []) options.set(code, value);
  const chaddr = Buffer.alloc(16);
  Buffer.from(mac.replace(/:/g, ''), 'hex').copy(chaddr);
  return encodeDhcp({
    op: 'BOOTREQUEST',
    htype: 1,
    hlen: 6,
    hops: opts.giaddr ? 1 : 0,
    xid: opts.xid ?? 0x1000,
    secs: 0,
    flags: 0,
    ciaddr: (opts.ciaddr ?? ZERO_IP) as IPv4,
    yiaddr: ZERO_IP,
    siaddr: ZERO_IP,
    giaddr: (opts.giaddr ?? ZERO_IP) as IPv4,
    chaddr,
    sname: '',
    file: '',
    options,
  });
}
