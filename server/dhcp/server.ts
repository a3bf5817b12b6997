import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import { noDhcpInterface } from '../config/serve.js';
import type { Config } from '../config/settings.js';
import type { EventRepo, InventoryLookup, LeaseRepo, MachineDirectory, MachineFacts, MachineRepo } from '../inventory/store.js';
import { intToIp, ipToInt, literalLookup, parseRange, sameSubnet, type IPv4 } from '../lib/ipv4.js';
import type { Logger } from '../lib/log.js';
import { DHCP_METRICS, instrument } from '../lib/metric-catalogue.js';
import { NO_METRICS, type Metrics } from '../lib/metrics.js';
import { macRefusal, type Mac } from '../lib/mac.js';
import { bindFailure, ServiceStartError, type Service, type ServiceContext, type ServiceHealth, type ServiceState } from '../lib/service.js';
import { createDiscoveryGate, DISCOVERY_WINDOW_MS, type DiscoveryGate } from '../inventory/discovery.js';
import { signedChainsAvailable } from '../boot/loaders.js';
import { patchDirectory } from './directory.js';
import { decideAuthoritative, type AddressFacts, type AuthoritativeFacts, type PoolConfig } from './authoritative.js';
import { ARM64_BOOTFILE_CANDIDATES, BIOS_BOOTFILE, classify, isBootClient, type BootConfig, type ClientInfo } from './classify.js';
import type { Decision, LeaseEffect } from './decision.js';
import { ProtocolError } from './errors.js';
import { ingress, interfaceOn, servedInterfaces, type InterfaceTable, type ServedInterface } from './interfaces.js';
import { LeaseBook } from './leasebook.js';
import { OPTION, getIp, type MessageTypeName } from './options.js';
import { clientMac, decodeDhcp, encodeDhcp, type DhcpPacket } from './packet.js';
import { decideBootServer, decideProxy } from './proxy.js';
import { destination, type Destination } from './reply.js';

/**
 * The DHCP service: the only impure part. Receive → decode → classify → gather facts → decide →
 * apply the lease effect (a binding is committed before its ACK is sent) → send → record.
 * Datagrams are handled one at a time, in arrival order, so the facts one decision read are never
 * changed under it by another. The common path — a client the inventory does not know, or a
 * known one whose step is not recorded — is synchronous from datagram to reply: it reads the
 * inventory through synchronous lookups, and only writes (sightings, events, released and
 * declined leases) wait for the store. ACKs decided within 1 ms of each other share one commit.
 */

/** What DHCP needs from the inventory, and nothing more; the SQLite inventory satisfies it. */
export interface DhcpInventory {
  readonly lookup: InventoryLookup;
  readonly machines: Pick<MachineRepo, 'recordSighting' | 'setLastStep'>;
  readonly events: Pick<EventRepo, 'append'>;
  readonly leases: LeaseRepo;
}

export type DhcpSettings = Pick<
  Config,
  | 'dhcpMode'
  | 'dhcpInterface'
  | 'dhcpPort'
  | 'dhcpProxyPort'
  | 'dhcpRange'
  | 'dhcpNetmask'
  | 'dhcpRouter'
  | 'dhcpDns'
  | 'dhcpLeaseSeconds'
  | 'dhcpCacheThreshold'
  | 'dhcpIgnoreUnknown'
  | 'efiBootfile'
  | 'advertiseAddress'
  | 'httpPort'
  | 'tftpRoot'
  | 'bootLoader'
  | 'signedBootDir'
>;

export interface DhcpDeps {
  readonly inventory: DhcpInventory;
  /** Defaults to `os.networkInterfaces()`. */
  readonly interfaces?: () => InterfaceTable;
  /** Defaults to `Date.now`. */
  readonly now?: () => number;
  /**
   * Pre-bound sockets handed over by the service manager (systemd socket activation, names
   * `dhcp` and `dhcp-proxy`); defaults to reading LISTEN_FDS/LISTEN_FDNAMES from the environment.
   */
  readonly inheritedFds?: ReadonlyMap<string, number>;
  /** `racksmith_dhcp_offer_duration_seconds` (the counters are read from `health().detail`). */
  readonly metrics?: Metrics;
  /** How many unknown PXE clients one segment may add (default: DEFAULT_DISCOVERY_PER_SEGMENT an hour). */
  readonly discovery?: DiscoveryGate;
  /** Sees every datagram as received (fixture capture in tests). */
  readonly tap?: (msg: Buffer, from: RemoteInfo, port: 'dhcp' | 'boot-server') => void;
}

/** Asked of the kernel for the main socket; Linux caps it at net.core.rmem_max (global, not per netns). */
export const RECV_BUFFER_BYTES = 8 * 1024 * 1024;
/** Datagrams waiting behind the one being handled; beyond this they are dropped and counted. */
export const MAX_QUEUE = 50_000;
/** How long "this MAC was just handed undionly.kpxe" counts for recognising the chained iPXE. */
export const CHAINLOAD_WINDOW_MS = 120_000;
/**
 * How old the service's read of the inventory's machines may get. A machine added, removed or
 * readdressed through this racksmith is read again before the next datagram; a machine's last
 * step, and a write from outside this racksmith, are seen within this long. The store still
 * checks reservations when a lease is committed.
 */
export const INVENTORY_CACHE_MS = 1_000;
/** Machines changed since the directory was read, past which it is read whole rather than patched. */
export const DIRECTORY_PATCH_MAX = 256;
/** ACKs committed together at most (group commit). */
export const ACK_BATCH = 16;
/**
 * How long the first ACK of a batch waits for others to share its commit. A commit's fixed cost
 * (BEGIN, the WAL frames, COMMIT) is about as much as one lease's own row work: at 8,000 DORA/s,
 * committing at the end of each event-loop turn made batches of 1–2 and cost ~6 % more CPU per
 * exchange than this window (bench:dhcp). A client waits seconds for its ACK; 1 ms is nothing.
 */
export const ACK_WINDOW_MS = 1;
/** Unknown PXE clients one segment may add per DISCOVERY_WINDOW_MS unless the caller says. */
export const DEFAULT_DISCOVERY_PER_SEGMENT = 1000;

export interface DhcpCounters {
  received: number;
  /** Replies handed to the kernel, by reason (a failed send is also counted as `dropped.send-error`). */
  replies: Record<string, number>;
  /** Malformed (by ProtocolError code), ignored (by decision reason) and loop-level drops. */
  dropped: Record<string, number>;
  /** Non-replying outcomes that are not drops (release, decline). */
  handled: Record<string, number>;
}

export interface DhcpService extends Service {
  counters(): DhcpCounters;
  /** The interfaces being served (after start). */
  interfaces(): readonly ServedInterface[];
}

interface Via {
  readonly kind: 'dhcp' | 'boot-server';
  /** Set when the socket is bound to one interface's address (or device). */
  readonly iface: ServedInterface | null;
  readonly socket: Socket;
}

interface Job {
  readonly msg: Buffer;
  readonly rinfo: RemoteInfo;
  readonly via: Via;
  readonly at: number;
  /** performance.now() when the datagram was taken off the socket, for the offer latency. */
  readonly hr: number;
}

interface PendingAck {
  readonly binding: Extract<LeaseEffect, { kind: 'bind' }>;
  readonly send: () => void;
  readonly after: () => void;
}

export function createDhcpService(settings: DhcpSettings, deps: DhcpDeps): DhcpService {
  // Validated once, at creation (the config loader already checked the syntax).
  const range = settings.dhcpRange ? parseRange(settings.dhcpRange) : null;
  if (settings.dhcpMode === 'authoritative' && !range) {
    throw new ServiceStartError('dhcp', 'dhcp-range', 'authoritative mode needs a pool (RACKSMITH_DHCP_RANGE)');
  }
  const inv = deps.inventory;
  const now = deps.now ?? Date.now;
  const readInterfaces = deps.interfaces ?? networkInterfaces;
  const counters: DhcpCounters = { received: 0, replies: {}, dropped: {}, handled: {} };
  const offerSeconds = instrument(deps.metrics ?? NO_METRICS, DHCP_METRICS.offerSeconds);
  const discovery = deps.discovery ?? createDiscoveryGate({ perWindow: DEFAULT_DISCOVERY_PER_SEGMENT, windowMs: DISCOVERY_WINDOW_MS });
  const book = new LeaseBook();
  const handouts = new Map<string, number>();
  const sockets: Socket[] = [];
  const sendSockets = new Map<string, Socket>();
  let mainSocket: Socket | null = null;
  let served: ServedInterface[] = [];
  let exact = false;
  let pool: (PoolConfig & { iface: ServedInterface | null }) | null = null;
  /** The pool's addresses as numbers, for the per-datagram subnet and range tests. */
  let poolNet = { network: 0, mask: 0, start: 0, end: 0 };
  let boot: BootConfig | null = null;
  let state: ServiceState = 'stopped';
  let log: Logger | null = null;
  // The datagrams waiting to be handled, oldest first; `head` is the next one.
  let queue: Job[] = [];
  let head = 0;
  /** A job is being handled (possibly waiting for the store): new datagrams only queue. */
  let draining = false;
  const idle: (() => void)[] = [];
  let recvBuffer = 0;
  let pending: PendingAck[] = [];
  let flushScheduled = false;

  const bump = (table: Record<string, number>, key: string): void => {
    table[key] = (table[key] ?? 0) + 1;
  };

  // ── start ──────────────────────────────────────────────────────────────────────────────────

  async function start(ctx: ServiceContext): Promise<void> {
    log = ctx.log.child({ component: 'dhcp' });
    if (settings.dhcpMode === 'off') {
      state = 'off';
      return;
    }
    // Never every interface: a PXE answer on a segment nobody meant reinstalls machines there.
    if (!settings.dhcpInterface) throw noDhcpInterface(settings.dhcpMode);
    state = 'starting';
    const found = servedInterfaces(readInterfaces(), settings.dhcpInterface);
    if (found.error) throw new ServiceStartError('dhcp', 'dhcp-interface', found.error);
    served = found.served;
    const inherited = deps.inheritedFds ?? inheritedFromEnv();
    const inheritedFd = inherited.get('dhcp');
    const others = otherLinks(served);
    exact = inheritedFd !== undefined || (served.length === 1 && others.length === 0);
    if (!exact) {
      log.warn(
        { interface: settings.dhcpInterface, otherLinks: others },
        'DHCP: broadcasts from other links reach this socket too and cannot be told apart (no IP_PKTINFO in Node); replies still leave only through the served interface. For exact binding pass a device-bound socket (docs/dhcp.md, "Serving one interface")',
      );
    }
    const advertise = (settings.advertiseAddress ?? served[0]?.address) as IPv4;
    boot = {
      advertise,
      httpPort: settings.httpPort,
      efiBootfile: settings.efiBootfile,
      arm64Bootfile: ARM64_BOOTFILE_CANDIDATES.find((f) => existsSync(join(settings.tftpRoot, f))) ?? null,
      bootLoader: settings.bootLoader,
      signedChains: signedChainsAvailable(settings.signedBootDir),
    };
    if (settings.dhcpMode === 'authoritative' && range) {
      const home = interfaceOn(served, range.start);
      const mask = settings.dhcpNetmask ?? home?.netmask;
      if (!mask) {
        throw new ServiceStartError('dhcp', 'dhcp-netmask', `the pool ${settings.dhcpRange} is on no served interface; set RACKSMITH_DHCP_NETMASK for a relayed subnet`);
      }
      if (!sameSubnet(range.start, range.end, mask)) {
        throw new ServiceStartError('dhcp', 'dhcp-range', `the pool ${settings.dhcpRange} spans more than one subnet of mask ${mask}`);
      }
      pool = {
        range,
        network: intToIp((ipToInt(range.start) & ipToInt(mask)) >>> 0),
        mask: mask as IPv4,
        router: (settings.dhcpRouter ?? null) as IPv4 | null,
        dns: (settings.dhcpDns ?? []) as IPv4[],
        leaseSeconds: settings.dhcpLeaseSeconds,
        cacheThreshold: settings.dhcpCacheThreshold,
        iface: home,
      };
      poolNet = { network: ipToInt(pool.network), mask: ipToInt(mask), start: ipToInt(range.start), end: ipToInt(range.end) };
      book.load(await inv.leases.list());
    }

    try {
      if (inheritedFd !== undefined) {
        const s = await open({ fd: inheritedFd }, { kind: 'dhcp', iface: served.length === 1 ? (served[0] as ServedInterface) : null });
        mainSocket = s;
        for (const i of served) sendSockets.set(i.name, s);
      } else {
        await probeFree(settings.dhcpPort);
        mainSocket = await open({ port: settings.dhcpPort, address: '0.0.0.0' }, { kind: 'dhcp', iface: null });
        // One socket per interface address: Linux sends a datagram for 255.255.255.255 out of the
        // interface that owns the socket's bound source address (ip_route_output_key: "limited
        // broadcast via the interface of saddr"), which is how replies leave the right interface
        // without SO_BINDTODEVICE. Unicasts to that address land on it too.
        for (const i of served) sendSockets.set(i.name, await open({ port: settings.dhcpPort, address: i.address }, { kind: 'dhcp', iface: i }));
      }
      if (settings.dhcpMode === 'proxy' && settings.dhcpProxyPort !== 0) {
        const proxyFd = inherited.get('dhcp-proxy');
        await open(proxyFd !== undefined ? { fd: proxyFd } : { port: settings.dhcpProxyPort, address: '0.0.0.0' }, { kind: 'boot-server', iface: null });
      }
    } catch (err) {
      await closeAll();
      throw err instanceof ServiceStartError ? err : new ServiceStartError('dhcp', 'dhcp-port', bindFailure(err));
    }
    recvBuffer = mainSocket.getRecvBufferSize();
    ctx.signal.addEventListener('abort', () => void stop(), { once: true });
    state = 'serving';
    log.info(
      {
        mode: settings.dhcpMode,
        interfaces: served.map((i) => `${i.name} ${i.address}/${i.netmask}`),
        exactIngress: exact,
        inheritedSocket: inheritedFd !== undefined,
        port: settings.dhcpPort,
        pool: settings.dhcpRange ?? null,
        leases: book.leaseCount,
        recvBufferBytes: recvBuffer,
      },
      'DHCP serving',
    );
  }

  function open(
    where: { port: number; address: string } | { fd: number },
    via: Omit<Via, 'socket'>,
  ): Promise<Socket> {
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
        const full: Via = { ...via, socket: s };
        s.on('message', (msg, rinfo) => enqueue(msg, rinfo, full));
        // A send error is reported on the callback; anything else must not take the process down.
        s.on('error', (err) => log?.warn({ err: err.message }, 'DHCP socket error'));
        sockets.push(s);
        resolve(s);
      });
    });
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

  // ── the loop ───────────────────────────────────────────────────────────────────────────────

  function enqueue(msg: Buffer, rinfo: RemoteInfo, via: Via): void {
    counters.received++;
    deps.tap?.(msg, rinfo, via.kind);
    if (state !== 'serving') return;
    if (queue.length - head >= MAX_QUEUE) {
      bump(counters.dropped, 'queue-full');
      return;
    }
    queue.push({ msg, rinfo, via, at: now(), hr: performance.now() });
    if (!draining) drain();
  }

  /**
   * Handles queued datagrams in order: synchronously while each finishes synchronously, and
   * after the store answers when one has to wait (the next one starts only then).
   */
  function drain(): void {
    draining = true;
    while (head < queue.length) {
      const job = queue[head++] as Job;
      // Under steady load the queue may never run empty: drop what was handled now and then.
      if (head >= 4096 && head * 2 >= queue.length) {
        queue = queue.slice(head);
        head = 0;
      }
      let waiting: Promise<void> | void;
      try {
        waiting = handle(job);
      } catch (err) {
        failed(err);
        continue;
      }
      if (waiting) {
        waiting.then(drain, (err: unknown) => {
          failed(err);
          drain();
        });
        return;
      }
    }
    queue = [];
    head = 0;
    draining = false;
    for (const resolve of idle.splice(0)) resolve();
  }

  function failed(err: unknown): void {
    bump(counters.dropped, 'internal-error');
    log?.error({ err: err instanceof Error ? err.stack : String(err) }, 'DHCP: unexpected error handling a datagram');
  }

  /** Resolves once every queued datagram has been handled. */
  function drained(): Promise<void> {
    return draining ? new Promise((resolve) => idle.push(resolve)) : Promise.resolve();
  }

  function handle(job: Job): Promise<void> | void {
    try {
      const waiting = handlePacket(job);
      return waiting?.catch((err: unknown) => malformed(err, job));
    } catch (err) {
      malformed(err, job);
    }
  }

  function malformed(err: unknown, job: Job): void {
    if (!(err instanceof ProtocolError)) throw err;
    bump(counters.dropped, err.code);
    log?.debug({ from: `${job.rinfo.address}:${job.rinfo.port}`, code: err.code, why: err.message }, 'DHCP: malformed datagram dropped');
  }

  function handlePacket(job: Job): Promise<void> | void {
    const req = decodeDhcp(job.msg);
    const mac = clientMac(req);
    if (mac !== null && macRefusal(mac) !== null) {
      // A broadcast, multicast or all-zero chaddr is no network card: nothing to answer or record.
      bump(counters.dropped, 'ignored-group-mac');
      log?.debug({ from: `${job.rinfo.address}:${job.rinfo.port}`, mac }, 'DHCP: a client with a group or all-zero MAC dropped');
      return;
    }
    const machine = mac ? machineOf(mac, job.at) : null;
    const handedAt = mac ? handouts.get(mac) : undefined;
    const chainloaded = handedAt !== undefined && job.at - handedAt < CHAINLOAD_WINDOW_MS && machine?.lastStep === 'tftp';
    const info = classify(req, boot as BootConfig, { chainloaded, bootLoader: machine?.bootLoader, secureBoot: machine?.secureBoot });

    const iface = ingress(served, job.via.iface, exact, job.rinfo.address, req.giaddr);
    const booting = isBootClient(info);
    const firstContact = info.messageType === 'discover' || (settings.dhcpMode === 'proxy' && job.via.kind === 'boot-server');
    if (mac && booting && firstContact && !settings.dhcpIgnoreUnknown && req.op === 'BOOTREQUEST') {
      // An unknown PXE client becomes a `discovered` machine (within its segment's allowance);
      // a known one gets its facts refreshed.
      if (machine === null && !admitDiscovery(req, iface, mac)) return answer(job, req, info, mac, null, iface, 0);
      return inv.machines
        .recordSighting({ mac, arch: info.arch, firmware: info.firmware, vendorClass: info.vendorClass, uuid: info.uuid, source: 'dhcp' })
        .then((seen) => answer(job, req, info, mac, seen.machine, iface, 0));
    }
    return answer(job, req, info, mac, machine, iface, 0);
  }

  /**
   * Spends one discovery allowance of the client's segment (its relay, else its interface). The
   * first refusal in a row is logged and recorded once; the client is answered all the same.
   */
  function admitDiscovery(req: DhcpPacket, iface: ServedInterface | null, mac: Mac): boolean {
    const segment = req.giaddr !== '0.0.0.0' ? `relay ${req.giaddr}` : `interface ${iface?.name ?? settings.dhcpInterface ?? '?'}`;
    const admission = discovery.admit(segment);
    if (admission.ok) return true;
    if (admission.first) {
      const message = `${segment}: more unknown PXE clients than its allowance (${mac} and later ones are answered but not recorded as machines)`;
      log?.warn({ segment }, message);
      inv.events.append({ type: 'discovery.limited', source: 'dhcp', message, data: { path: 'dhcp', segment } }).catch((err: unknown) => log?.warn({ err: String(err) }, 'DHCP: cannot record an event'));
    }
    return false;
  }

  /** Decides and applies the reply for each target from the i-th on; waits only for store writes. */
  function answer(job: Job, req: DhcpPacket, info: ClientInfo, mac: Mac | null, machine: MachineFacts | null, iface: ServedInterface | null, from: number): Promise<void> | void {
    const known = machine !== null;
    const targets = replyTargets(iface, req, job);
    for (let i = from; i < targets.length; i++) {
      const target = targets[i] ?? null;
      const serverId = serverIdFor(target, req, job);
      const nextServer = (boot?.advertise ?? serverId) as IPv4;
      let decision: Decision;
      if (settings.dhcpMode === 'proxy') {
        const f = { serverId, nextServer, ignoreUnknown: settings.dhcpIgnoreUnknown, known };
        decision = job.via.kind === 'boot-server' ? decideBootServer(req, info, f) : decideProxy(req, info, f);
      } else {
        decision = decideAuthoritative(req, info, authoritativeFacts(req, info, mac, machine?.ip ?? null, known, serverId, nextServer, target, job));
      }
      const recorded = i === 0 ? record(req, info, mac, known, decision, job, 'request') : undefined;
      const applied = recorded ? recorded.then(() => apply(req, info, mac, known, decision, target, job, i === 0)) : apply(req, info, mac, known, decision, target, job, i === 0);
      if (applied) return applied.then(() => answer(job, req, info, mac, machine, iface, i + 1));
    }
  }

  /**
   * The interfaces a reply may go out of. Known ingress: that one. A broadcast whose ingress is
   * unknown: authoritative mode answers from the pool's interface (the only one it can lease
   * on); proxy mode answers on every served interface, each with its own server address, and
   * the client sees only the copy sent on its own link.
   */
  function replyTargets(iface: ServedInterface | null, req: DhcpPacket, job: Job): (ServedInterface | null)[] {
    if (iface) return [iface];
    if (req.giaddr !== '0.0.0.0' || job.rinfo.address !== '0.0.0.0') return [null];
    if (settings.dhcpMode === 'authoritative') return [pool?.iface ?? null];
    return served.length > 0 ? served : [null];
  }

  function serverIdFor(target: ServedInterface | null, req: DhcpPacket, job: Job): IPv4 {
    if (target) return target.address;
    const toward = req.giaddr !== '0.0.0.0' ? req.giaddr : job.rinfo.address;
    return (interfaceOn(served, toward)?.address ?? boot?.advertise ?? served[0]?.address) as IPv4;
  }

  function authoritativeFacts(
    req: DhcpPacket,
    info: ClientInfo,
    mac: Mac | null,
    machineIp: string | null,
    known: boolean,
    serverId: IPv4,
    nextServer: IPv4,
    target: ServedInterface | null,
    job: Job,
  ): AuthoritativeFacts {
    const t = job.at;
    // The subnet the client is on: the relay's (giaddr), else the interface's.
    const subnetOf = req.giaddr !== '0.0.0.0' ? req.giaddr : (target?.address ?? (job.rinfo.address !== '0.0.0.0' ? job.rinfo.address : null));
    const p = pool && subnetOf !== null && onPoolSubnet(ipToInt(subnetOf)) ? pool : null;
    const facts = (ip: string | null): AddressFacts | null => {
      if (!ip || !mac || !p) return null;
      const n = ipToInt(ip);
      const h = book.holderOf(n, t);
      const owner = ip === machineIp ? mac : reservedFor(ip, t);
      return {
        ip: ip as IPv4,
        onSubnet: onPoolSubnet(n),
        inRange: n >= poolNet.start && n <= poolNet.end,
        holder: h === null ? 'none' : h.kind === 'quarantine' ? 'quarantine' : h.mac === mac ? 'self' : 'other',
        reserved: owner === null ? null : owner === mac ? 'self' : 'other',
      };
    };
    const leaseView = mac ? book.leaseOf(mac, t) : null;
    const leaseFacts = leaseView ? facts(leaseView.ip) : null;
    const requestedIp = getIp(req.options, OPTION.REQUESTED_IP) ?? (req.ciaddr !== '0.0.0.0' ? req.ciaddr : null);
    return {
      now: t,
      serverId,
      nextServer,
      pool: p,
      ignoreUnknown: settings.dhcpIgnoreUnknown,
      known,
      reservation: facts(machineIp),
      lease: leaseView && leaseFacts ? { ...leaseView, ...leaseFacts } : null,
      offered: mac ? book.offerOf(mac, t) : null,
      requested: facts(requestedIp),
      candidate: p && mac && info.messageType === 'discover' ? nextCandidate(p, mac, t) : null,
    };
  }

  function onPoolSubnet(n: number): boolean {
    return ((n & poolNet.mask) >>> 0) === poolNet.network;
  }

  /**
   * The inventory's machines as last read. A machine added, removed or readdressed since is read
   * again on its own before the next datagram (patchDirectory); all of them are read again every
   * INVENTORY_CACHE_MS, or when too many changed at once. This replaces a point query for every
   * new MAC's DISCOVER (most of a busy segment's clients are unknown to the inventory, and each
   * such query found nothing) and a per-MAC cache of the answers: a MAC's facts are one map
   * lookup, and a machine added through the API is known to the very next datagram.
   */
  let directory: (MachineDirectory & { readonly at: number }) | null = null;
  function machinesAt(t: number): MachineDirectory {
    if (directory === null || t - directory.at >= INVENTORY_CACHE_MS) {
      directory = { ...inv.lookup.directory(), at: t };
      return directory;
    }
    const revision = inv.lookup.revision();
    if (directory.revision !== revision) {
      const changed = inv.lookup.changedSince(directory.revision);
      directory =
        changed === null || changed.length > DIRECTORY_PATCH_MAX
          ? { ...inv.lookup.directory(), at: t }
          : { ...patchDirectory(directory, changed, (mac) => inv.lookup.machine(mac), revision), at: directory.at };
    }
    return directory;
  }
  function machineOf(mac: Mac, t: number): MachineFacts | null {
    return machinesAt(t).byMac.get(mac) ?? null;
  }
  function reservedFor(ip: string, t: number): Mac | null {
    return machinesAt(t).byIp.get(ip) ?? null;
  }

  /** The next free pool address that is nobody else's reservation. */
  function nextCandidate(p: PoolConfig, mac: Mac, t: number): IPv4 | null {
    for (let i = 0; i < 64; i++) {
      const ip = book.nextFree(p.range, t);
      if (!ip) return null;
      const owner = reservedFor(ip, t);
      if (owner === null || owner === mac) return ip;
      book.skipReserved(ip, t + 60_000);
    }
    return null;
  }

  // ── effects ────────────────────────────────────────────────────────────────────────────────

  function apply(
    req: DhcpPacket,
    info: ClientInfo,
    mac: Mac | null,
    known: boolean,
    d: Decision,
    target: ServedInterface | null,
    job: Job,
    recordIt: boolean,
  ): Promise<void> | void {
    const e = d.effect;
    const t = job.at;
    if (!d.reply) {
      if (d.reason === 'released' || d.reason === 'declined') bump(counters.handled, d.reason);
      else bump(counters.dropped, d.reason);
      log?.debug({ mac, xid: hex(req.xid), type: info.messageType, reason: d.reason, from: job.rinfo.address }, 'DHCP: no reply');
    }
    if (e?.kind === 'hold') book.hold(e.ip, e.mac, t, e.until, e.range ?? undefined);
    else if (e?.kind === 'unhold') book.unoffer(e.mac);
    else if (e?.kind === 'release') {
      book.release(e.ip, e.mac, t);
      return inv.leases.release(e.ip, e.mac, new Date(t)).then(() => sendReply(req, info, mac, known, d, target, job, recordIt));
    } else if (e?.kind === 'decline') {
      book.decline(e.ip, e.until);
      return inv.leases.decline(e.ip, e.mac, new Date(e.until), new Date(t)).then(() => sendReply(req, info, mac, known, d, target, job, recordIt));
    }
    sendReply(req, info, mac, known, d, target, job, recordIt);
  }

  /** Sends the decision's reply (after committing its binding, for an ACK). */
  function sendReply(req: DhcpPacket, info: ClientInfo, mac: Mac | null, known: boolean, d: Decision, target: ServedInterface | null, job: Job, recordIt: boolean): void {
    const e = d.effect;
    if (!d.reply) return;
    const reply = d.reply;
    const to: Destination =
      job.via.kind === 'boot-server'
        ? { address: job.rinfo.address, port: job.rinfo.port, broadcast: false, why: 'source' }
        : destination(req, reply, settings.dhcpPort);
    const bytes = encodeDhcp(reply);
    // Boot-server answers leave from the socket they came to (source port 4011, PXE spec 2.1).
    const from = job.via.kind === 'boot-server' ? job.via.socket : null;
    if (e?.kind === 'bind') {
      const send = (): void => transmit(bytes, to, target, d.reason, from);
      const after = (): void => replied(req, info, mac, known, d, to, job, recordIt);
      // Persist before the ACK leaves (RFC 2131 §4.3.1 leaves durability to the server; an ACK
      // for a lease that a crash then forgets would let the address go to a second MAC).
      book.bind(e.ip, e.mac, e.until, e.clientId, e.hostname);
      pending.push({ binding: e, send, after });
      // Commit once the window has passed, or sooner once a batch is full: one transaction per
      // batch, and no long train of ACKs that would overrun a client's buffer.
      if (pending.length >= ACK_BATCH) void flush();
      else if (!flushScheduled) {
        flushScheduled = true;
        setTimeout(() => {
          flushScheduled = false;
          void flush();
        }, ACK_WINDOW_MS);
      }
      return;
    }
    transmit(bytes, to, target, d.reason, from);
    // Queue wait included: that is the delay a client sees.
    if (d.reason === 'offer' || d.reason === 'proxy-offer') offerSeconds.observe({}, (performance.now() - job.hr) / 1000);
    replied(req, info, mac, known, d, to, job, recordIt);
  }

  /** What follows a reply that left: the machine's event, the chainload window, the log line. */
  function replied(req: DhcpPacket, info: ClientInfo, mac: Mac | null, known: boolean, d: Decision, to: Destination, job: Job, recordIt: boolean): void {
    if (recordIt) void record(req, info, mac, known, d, job, 'reply');
    if (mac && info.bootfile?.name === BIOS_BOOTFILE) {
      const t = job.at;
      if (handouts.size > 10_000) for (const [m, at] of handouts) if (t - at > CHAINLOAD_WINDOW_MS) handouts.delete(m);
      handouts.set(mac, t);
    }
    logTransaction(req, info, mac, d, to, job);
  }

  /** Never rejects: a failure here is logged and counted, and the loop goes on. */
  async function flush(): Promise<void> {
    try {
      await commitPending();
    } catch (err) {
      bump(counters.dropped, 'internal-error');
      log?.error({ err: err instanceof Error ? err.stack : String(err) }, 'DHCP: could not finish a lease commit');
    }
  }

  async function commitPending(): Promise<void> {
    const batch = pending;
    pending = [];
    if (batch.length === 0) return;
    let outcomes;
    try {
      outcomes = await inv.leases.bindAll(
        batch.map((p) => ({
          ip: p.binding.ip,
          mac: p.binding.mac,
          clientId: p.binding.clientId,
          hostname: p.binding.hostname,
          expiresAt: new Date(p.binding.until).toISOString(),
        })),
        new Date(now()),
      );
    } catch (err) {
      // Nothing was committed: no ACK may go out, and the book must forget the optimistic binds.
      for (const p of batch) await resync(p.binding.ip, p.binding.mac);
      bump(counters.dropped, 'store-error');
      log?.error({ err: err instanceof Error ? err.message : String(err), acks: batch.length }, 'DHCP: could not persist leases; ACKs withheld');
      return;
    }
    for (let i = 0; i < batch.length; i++) {
      const p = batch[i] as PendingAck;
      const o = outcomes[i];
      if (o?.ok) {
        book.durable(p.binding.ip, p.binding.mac);
        p.send();
        p.after();
      } else {
        bump(counters.dropped, 'bind-refused');
        if (o && !o.ok && o.reason === 'reserved') {
          book.skipReserved(p.binding.ip, now() + 60_000);
          directory = null;
        }
        await resync(p.binding.ip, p.binding.mac);
        log?.warn({ ip: p.binding.ip, mac: p.binding.mac, why: o && !o.ok ? o.reason : 'unknown' }, 'DHCP: store refused a binding; ACK withheld');
      }
    }
  }

  async function resync(ip: string, mac: Mac): Promise<void> {
    const [byIp, byMac] = await Promise.all([inv.leases.byIp(ip), inv.leases.byMac(mac)]);
    book.forget(ip, mac);
    book.load([byIp, byMac].filter((l) => l !== null));
  }

  function transmit(bytes: Buffer, to: Destination, target: ServedInterface | null, reason: string, from: Socket | null): void {
    const onLink = interfaceOn(served, to.address);
    const socket =
      from ?? (to.broadcast ? (target && sendSockets.get(target.name)) ?? mainSocket : (onLink && sendSockets.get(onLink.name)) ?? firstSendSocket());
    if (!socket) return;
    bump(counters.replies, reason);
    try {
      socket.send(bytes, to.port, to.address, sent);
    } catch (err) {
      sent(err as Error);
    }
  }

  /** One callback for every send (no closure per datagram); a failure moves the count to `send-error`. */
  function sent(err: Error | null): void {
    if (!err) return;
    bump(counters.dropped, 'send-error');
    log?.warn({ err: err.message }, 'DHCP: send failed');
  }

  function firstSendSocket(): Socket | null {
    for (const s of sendSockets.values()) return s;
    return mainSocket;
  }

  // ── inventory effects and logs ─────────────────────────────────────────────────────────────

  /** Records a step of a known machine; undefined (nothing to wait for) for anyone else. */
  function record(req: DhcpPacket, info: ClientInfo, mac: Mac | null, known: boolean, d: Decision, job: Job, side: 'request' | 'reply'): Promise<void> | undefined {
    if (!mac || !known || req.op !== 'BOOTREQUEST' || info.messageType === null) return undefined;
    if (side === 'request' && !d.reply && d.reason.startsWith('ignored-')) return undefined;
    return recordStep(req, info, info.messageType, mac, d, job, side);
  }

  async function recordStep(req: DhcpPacket, info: ClientInfo, messageType: MessageTypeName, mac: Mac, d: Decision, job: Job, side: 'request' | 'reply'): Promise<void> {
    const mode = job.via.kind === 'boot-server' ? 'boot-server' : settings.dhcpMode;
    const base = { mode, xid: hex(req.xid), from: job.rinfo.address, arch: info.arch, firmware: info.firmware, ipxe: info.ipxe || info.chainloaded };
    try {
      if (side === 'request') {
        await inv.events.append({
          mac,
          type: `dhcp.${messageType}`,
          source: 'dhcp',
          message: `DHCP ${messageType.toUpperCase()} (${[info.firmware, info.arch, info.ipxe ? 'iPXE' : info.pxe ? 'PXE' : null].filter(Boolean).join(' ') || 'no boot info'})`,
          data: { ...base, vendorClass: info.vendorClass, userClasses: info.userClasses, archCode: info.archCode },
        });
      } else if (d.reply) {
        const type = d.reply.options.get(OPTION.MESSAGE_TYPE)?.[0] === 6 ? 'nak' : d.reason === 'offer' || d.reason === 'proxy-offer' ? 'offer' : 'ack';
        const ip = d.reply.yiaddr !== '0.0.0.0' ? d.reply.yiaddr : null;
        const bootfile = info.bootfile?.name ?? null;
        await inv.events.append({
          mac,
          type: `dhcp.${type}`,
          source: 'dhcp',
          message: `DHCP ${type.toUpperCase()}${ip ? ` ${ip}` : ''}${bootfile && type !== 'nak' ? ` bootfile ${bootfile}` : ''} (${d.reason})`,
          data: { ...base, reason: d.reason, ip, bootfile, bootfileKind: info.bootfile?.kind ?? null, rule: info.bootfile?.rule ?? null },
        });
      }
      await inv.machines.setLastStep(mac, 'dhcp');
    } catch (err) {
      log?.warn({ mac, err: err instanceof Error ? err.message : String(err) }, 'DHCP: could not record a machine event');
    }
  }

  function logTransaction(req: DhcpPacket, info: ClientInfo, mac: Mac | null, d: Decision, to: Destination, job: Job): void {
    if (!log || !log.isLevelEnabled(d.reason === 'offer' ? 'debug' : 'info')) return;
    const fields = {
      mac,
      xid: hex(req.xid),
      type: info.messageType,
      reason: d.reason,
      ip: d.reply?.yiaddr,
      bootfile: info.bootfile?.name,
      to: `${to.address}:${to.port}`,
      via: to.why,
      ms: now() - job.at,
    };
    // One line per finished transaction (ACK, NAK, proxy answers); offers at debug.
    if (d.reason === 'offer') log.debug(fields, 'DHCP offer');
    else log.info(fields, `DHCP ${d.reason}`);
  }

  // ── stop ───────────────────────────────────────────────────────────────────────────────────

  async function closeAll(): Promise<void> {
    await Promise.all(sockets.splice(0).map((s) => new Promise<void>((r) => s.close(() => r()))));
    sendSockets.clear();
    mainSocket = null;
  }

  let stopping: Promise<void> | null = null;
  function stop(): Promise<void> {
    if (state === 'stopped' || state === 'off') return Promise.resolve();
    // The abort signal and main.ts may both ask: both wait for the same stop.
    stopping ??= (async () => {
      state = 'stopping';
      // Finish what was already received (bounded: the queue holds at most MAX_QUEUE datagrams),
      // commit and send the last ACKs, then release the sockets.
      await Promise.race([drained(), new Promise((r) => setTimeout(r, 5_000).unref())]);
      await flush();
      await closeAll();
      state = 'stopped';
      log?.info({ counters }, 'DHCP stopped');
    })();
    return stopping;
  }

  return {
    name: 'dhcp',
    start,
    stop,
    health(): ServiceHealth {
      return {
        state,
        detail: {
          mode: settings.dhcpMode,
          interfaces: served.map((i) => i.name),
          exactIngress: exact,
          leases: book.leaseCount,
          offers: book.offerCount,
          recvBufferBytes: recvBuffer,
          received: counters.received,
          replies: { ...counters.replies },
          dropped: { ...counters.dropped },
          discoveryRefused: discovery.refused(),
        },
      };
    },
    counters: () => structuredClone(counters),
    interfaces: () => served,
  };

  function hex(n: number): string {
    return '0x' + n.toString(16).padStart(8, '0');
  }
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
