import type { RemoteInfo } from 'node:dgram';
import { existsSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { noDhcpInterface } from '../config/serve.js';
import type { Config } from '../config/settings.js';
import { signedChainsAvailable } from '../boot/loaders.js';
import { createDiscoveryGate, DISCOVERY_WINDOW_MS, type DiscoveryGate } from '../inventory/discovery.js';
import type { EventRepo, InventoryLookup, LeaseRepo, MachineRepo, Sighting } from '../inventory/store.js';
import { parseRange, type IPv4, type IPv4Range } from '../lib/ipv4.js';
import { DHCP_METRICS, instrument } from '../lib/metric-catalogue.js';
import { NO_METRICS, type Metrics } from '../lib/metrics.js';
import { silentLogger, type Logger } from '../lib/log.js';
import { macRefusal, type Mac } from '../lib/mac.js';
import { ServiceStartError, type Service, type ServiceContext, type ServiceHealth, type ServiceState } from '../lib/service.js';
import { AddressSpace, poolOn } from './addresses.js';
import { decideAuthoritative } from './authoritative.js';
import { Chainloads } from './chainload.js';
import { ARM64_BOOTFILE_CANDIDATES, BIOS_BOOTFILE, classify, isBootClient, type BootConfig } from './classify.js';
import { LeaseCommits } from './commit.js';
import { bump, newCounters, type DhcpCounters } from './counters.js';
import type { Decision } from './decision.js';
import { lookupFeed, type MachineFeed } from './directory.js';
import { ProtocolError } from './errors.js';
import { DhcpEvents } from './events.js';
import { StepJournal } from './journal.js';
import { ingress, servedInterfaces, type InterfaceTable, type ServedInterface } from './interfaces.js';
import { clientMac, decodeDhcp, encodeDhcp } from './packet.js';
import { decideBootServer, decideProxy } from './proxy.js';
import { SerialQueue } from './queue.js';
import { destination, type Destination } from './reply.js';
import { inheritedFromEnv, udpSockets, type DhcpSockets, type OpenSockets, type Via } from './sockets.js';
import { replyTargets, route, type Route, type ServedNetwork } from './targets.js';
import { transaction, withMachine, xidHex, type Answer, type Datagram, type Transaction } from './transaction.js';

/**
 * The DHCP service: receive → decode → classify → decide → apply → send, one datagram at a time
 * in arrival order (queue.ts), so the facts one decision read are never changed under it by
 * another. The common path — a client the inventory does not know, or a known one whose step is
 * not recorded — is synchronous from datagram to reply: the address space answers from memory,
 * and only writes (sightings, events, released and declined leases, the ACK batch's commit)
 * wait for the store. Where the parts live: docs/dhcp.md, "Structure".
 */

export type { DhcpCounters } from './counters.js';
export { inheritedFromEnv } from './sockets.js';

/** What DHCP needs from the inventory, and nothing more; the SQLite inventory satisfies it. */
export interface DhcpInventory {
  /** Feeds the machine directory unless `DhcpDeps.directory` is given. */
  readonly lookup?: InventoryLookup | undefined;
  readonly machines: Pick<MachineRepo, 'recordSighting' | 'recordBootScripts'>;
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
  /**
   * Where the machine directory comes from; defaults to polling `inventory.lookup`
   * (directory.ts). A store that pushes changes to the service passes its own feed.
   */
  readonly directory?: MachineFeed;
  /** Defaults to `os.networkInterfaces()`. */
  readonly interfaces?: () => InterfaceTable;
  /** Folders holding `<arch>/shim*.efi` + `grub*.efi` (default: `signed-boot-dir`); the fetched chain's too. */
  readonly signedBootDirs?: readonly string[];
  /** Defaults to `Date.now`. */
  readonly now?: () => number;
  /**
   * Pre-bound sockets handed over by the service manager (systemd socket activation, names
   * `dhcp` and `dhcp-proxy`); defaults to reading LISTEN_FDS/LISTEN_FDNAMES from the environment.
   */
  readonly inheritedFds?: ReadonlyMap<string, number>;
  /** Defaults to UDP sockets (sockets.ts); tests pass sockets that record the replies. */
  readonly sockets?: OpenSockets;
  /** `racksmith_dhcp_offer_duration_seconds` (the counters are read from `health().detail`). */
  readonly metrics?: Metrics;
  /** How many unknown PXE clients one segment may add (default: DEFAULT_DISCOVERY_PER_SEGMENT an hour). */
  readonly discovery?: DiscoveryGate;
  /** Sees every datagram as received (fixture capture in tests). */
  readonly tap?: (msg: Buffer, from: RemoteInfo, port: 'dhcp' | 'boot-server') => void;
}

/** Datagrams waiting behind the one being handled; beyond this they are dropped and counted. */
export const MAX_QUEUE = 50_000;
/** Unknown PXE clients one segment may add per DISCOVERY_WINDOW_MS unless the caller says. */
export const DEFAULT_DISCOVERY_PER_SEGMENT = 1000;

export interface DhcpService extends Service {
  counters(): DhcpCounters;
  /** The interfaces being served (after start). */
  interfaces(): readonly ServedInterface[];
}

export function createDhcpService(settings: DhcpSettings, deps: DhcpDeps): DhcpService {
  // Validated once, at creation (the config loader already checked the syntax).
  const range = settings.dhcpRange ? parseRange(settings.dhcpRange) : null;
  if (settings.dhcpMode === 'authoritative' && !range) {
    throw new ServiceStartError('dhcp', 'dhcp-range', 'authoritative mode needs a pool (RACKSMITH_DHCP_RANGE)');
  }
  return new DhcpServer(settings, deps, range);
}

/** An ACK waiting for its binding's commit, encoded and addressed. */
interface Outgoing {
  readonly answer: Answer;
  readonly bytes: Buffer;
  readonly to: Destination;
}

/** The parts a running loop works with, made at start. */
interface LoopParts {
  readonly settings: DhcpSettings;
  readonly mode: 'proxy' | 'authoritative';
  readonly net: ServedNetwork;
  readonly boot: BootConfig;
  readonly space: AddressSpace;
  readonly inventory: DhcpInventory;
  readonly counters: DhcpCounters;
  readonly log: Logger;
  readonly now: () => number;
  readonly metrics: Metrics;
  readonly tap: DhcpDeps['tap'];
  readonly discovery: DiscoveryGate;
}

/** The loop: every datagram from every socket goes through `receive`. */
class DhcpLoop {
  /** New datagrams are handled only while serving; the queue still drains while stopping. */
  accepting = false;
  sockets: DhcpSockets | null = null;
  readonly commits: LeaseCommits<Outgoing>;
  private readonly settings: DhcpSettings;
  private readonly mode: 'proxy' | 'authoritative';
  private readonly net: ServedNetwork;
  private readonly boot: BootConfig;
  private readonly space: AddressSpace;
  private readonly machines: DhcpInventory['machines'];
  private readonly counters: DhcpCounters;
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly tap: DhcpDeps['tap'];
  private readonly discovery: DiscoveryGate;
  private readonly queue: SerialQueue<Datagram>;
  private readonly events: DhcpEvents;
  readonly journal: StepJournal;
  private readonly chainloads = new Chainloads();
  private readonly offerSeconds;

  constructor(p: LoopParts) {
    this.settings = p.settings;
    this.mode = p.mode;
    this.net = p.net;
    this.boot = p.boot;
    this.space = p.space;
    this.machines = p.inventory.machines;
    this.counters = p.counters;
    this.log = p.log;
    this.now = p.now;
    this.tap = p.tap;
    this.discovery = p.discovery;
    this.queue = new SerialQueue<Datagram>((d) => this.handle(d), (err) => this.failed(err), MAX_QUEUE);
    this.journal = new StepJournal({ machines: p.inventory.machines, log: p.log, unrecorded: () => p.counters.unrecorded++ });
    this.events = new DhcpEvents(p.inventory, this.journal, p.mode, p.log);
    this.commits = new LeaseCommits<Outgoing>({ leases: p.inventory.leases, space: p.space, deliver: this.acked, counters: p.counters, log: p.log, now: p.now });
    this.offerSeconds = instrument(p.metrics, DHCP_METRICS.offerSeconds);
  }

  readonly receive = (msg: Buffer, from: RemoteInfo, via: Via): void => {
    this.counters.received++;
    this.tap?.(msg, from, via.kind);
    if (!this.accepting) return;
    if (this.queue.waiting >= MAX_QUEUE) {
      bump(this.counters.dropped, 'queue-full');
      return;
    }
    this.queue.push({ msg, from, via, at: this.now(), hr: performance.now() });
  };

  /** Resolves once every datagram received so far has been handled. */
  drained(): Promise<void> {
    return this.queue.drained();
  }

  private handle(d: Datagram): Promise<void> | void {
    try {
      const tx = this.decode(d);
      if (tx.mac !== null && macRefusal(tx.mac) !== null) {
        // A broadcast, multicast or all-zero chaddr is no network card: nothing to answer or record.
        bump(this.counters.dropped, 'ignored-group-mac');
        this.log.debug({ from: `${d.from.address}:${d.from.port}`, mac: tx.mac }, 'DHCP: a client with a group or all-zero MAC dropped');
        return;
      }
      const waiting = this.sighting(tx) ?? this.answer(tx, 0);
      return waiting?.catch((err: unknown) => this.malformed(err, d));
    } catch (err) {
      this.malformed(err, d);
    }
  }

  /** Decodes and classifies the datagram once, with what the inventory knows of its client. */
  private decode(d: Datagram): Transaction {
    const req = decodeDhcp(d.msg);
    const mac = clientMac(req);
    const machine = mac ? this.space.machine(mac, d.at) : null;
    const chainloaded = mac !== null && this.chainloads.recent(mac, d.at) && machine?.lastStep === 'tftp';
    const info = classify(req, this.boot, { chainloaded, bootLoader: machine?.bootLoader, secureBoot: machine?.secureBoot });
    return transaction(d, req, info, machine, ingress(this.net.served, d.via.iface, this.exact(), d.from.address, req.giaddr));
  }

  /**
   * A booting client's first contact: an unknown PXE client becomes a `discovered` machine
   * (within its segment's allowance) before it is answered; a known one is answered at once, and
   * the facts it showed go with its request's step (journal.ts).
   */
  private sighting(tx: Transaction): Promise<void> | null {
    if (tx.machine !== null || !this.firstContact(tx) || !this.admitDiscovery(tx)) return null;
    return this.machines.recordSighting(this.facts(tx, tx.mac as Mac)).then((seen) => this.answer(withMachine(tx, seen.machine), 0));
  }

  /** A boot client's DISCOVER (or, in proxy mode, its boot-server request): the facts it shows are recorded. */
  private firstContact(tx: Transaction): boolean {
    const { mac, info } = tx;
    const first = info.messageType === 'discover' || (this.mode === 'proxy' && tx.via.kind === 'boot-server');
    return mac !== null && isBootClient(info) && first && !this.settings.dhcpIgnoreUnknown && tx.req.op === 'BOOTREQUEST';
  }

  /** A known machine's first-contact facts, recorded with its request's step; null otherwise. */
  private knownFacts(tx: Transaction): Sighting | null {
    return tx.machine !== null && tx.mac !== null && this.firstContact(tx) ? this.facts(tx, tx.mac) : null;
  }

  private facts(tx: Transaction, mac: Mac): Sighting {
    const { info } = tx;
    return { mac, arch: info.arch, firmware: info.firmware, vendorClass: info.vendorClass, uuid: info.uuid, source: 'dhcp' };
  }

  /**
   * Spends one discovery allowance of the client's segment (its relay, else its interface). The
   * first refusal in a row is logged and recorded once; the client is answered all the same.
   */
  private admitDiscovery(tx: Transaction): boolean {
    const segment = tx.req.giaddr !== '0.0.0.0' ? `relay ${tx.req.giaddr}` : `interface ${tx.ingress?.name ?? this.settings.dhcpInterface ?? '?'}`;
    const admission = this.discovery.admit(segment);
    if (admission.ok) return true;
    if (admission.first) this.events.discoveryLimited(segment, tx.mac);
    return false;
  }

  /** Decides and applies the answer on each route from the i-th on; waits only for released and declined leases. */
  private answer(tx: Transaction, from: number): Promise<void> | void {
    const targets = replyTargets(tx, this.net);
    for (let i = from; i < targets.length; i++) {
      const a = this.decide(tx, route(targets[i] ?? null, tx, this.net), i === 0);
      if (a.first) this.events.request(a, this.knownFacts(tx));
      const applied = this.apply(a);
      if (applied) return applied.then(() => this.answer(tx, i + 1));
    }
  }

  private decide(tx: Transaction, r: Route, first: boolean): Answer {
    let decision: Decision;
    if (this.mode === 'proxy') {
      const f = { serverId: r.serverId, nextServer: r.nextServer, ignoreUnknown: this.settings.dhcpIgnoreUnknown, known: tx.machine !== null };
      decision = tx.via.kind === 'boot-server' ? decideBootServer(tx.req, tx.info, f) : decideProxy(tx.req, tx.info, f);
    } else {
      decision = decideAuthoritative(tx.req, tx.info, this.space.facts(tx, r));
    }
    return { tx, route: r, decision, first };
  }

  /** Makes the decision's effect, then sends its reply; a released or declined lease is written first. */
  private apply(a: Answer): Promise<void> | void {
    const d = a.decision;
    const e = d.effect;
    if (!d.reply) {
      if (d.reason === 'released' || d.reason === 'declined') bump(this.counters.handled, d.reason);
      else bump(this.counters.dropped, d.reason);
      this.log.debug({ mac: a.tx.mac, xid: xidHex(a.tx.req.xid), type: a.tx.info.messageType, reason: d.reason, from: a.tx.from.address }, 'DHCP: no reply');
    }
    if (e) {
      this.space.apply(e, a.tx.at);
      if (e.kind === 'release' || e.kind === 'decline') return this.commits.write(e, a.tx.at).then(() => this.send(a));
    }
    this.send(a);
  }

  /** Sends the reply, or hands an ACK to the commits: it leaves once its binding is in the store. */
  private send(a: Answer): void {
    const reply = a.decision.reply;
    if (!reply) return;
    const { tx } = a;
    const to: Destination =
      tx.via.kind === 'boot-server'
        ? { address: tx.from.address, port: tx.from.port, broadcast: false, why: 'source' }
        : destination(tx.req, reply, this.settings.dhcpPort);
    const bytes = encodeDhcp(reply);
    const e = a.decision.effect;
    if (e?.kind === 'bind') {
      this.commits.add(e, { answer: a, bytes, to });
      return;
    }
    this.transmit(a, bytes, to);
    // Queue wait included: that is the delay a client sees.
    if (a.decision.reason === 'offer' || a.decision.reason === 'proxy-offer') this.offerSeconds.observe({}, (performance.now() - tx.hr) / 1000);
    this.replied(a, to);
  }

  /** An ACK whose binding is now in the store. */
  private readonly acked = (o: Outgoing): void => {
    this.transmit(o.answer, o.bytes, o.to);
    this.replied(o.answer, o.to);
  };

  private transmit(a: Answer, bytes: Buffer, to: Destination): void {
    if (this.sockets?.send(bytes, to, a.route.target, a.tx.via)) bump(this.counters.replies, a.decision.reason);
  }

  /** What follows a reply that left: the machine's event, the chainload window, the log line. */
  private replied(a: Answer, to: Destination): void {
    const { tx } = a;
    if (a.first) this.events.reply(a);
    if (tx.mac && tx.info.bootfile?.name === BIOS_BOOTFILE) this.chainloads.handed(tx.mac, tx.at);
    this.logTransaction(a, to);
  }

  /** One line per finished transaction (ACK, NAK, proxy answers); offers at debug. */
  private logTransaction(a: Answer, to: Destination): void {
    const d = a.decision;
    const { log } = this;
    if (!log.isLevelEnabled(d.reason === 'offer' ? 'debug' : 'info')) return;
    const { tx } = a;
    const fields = {
      mac: tx.mac,
      xid: xidHex(tx.req.xid),
      type: tx.info.messageType,
      reason: d.reason,
      ip: d.reply?.yiaddr,
      bootfile: tx.info.bootfile?.name,
      to: `${to.address}:${to.port}`,
      via: to.why,
      ms: this.now() - tx.at,
    };
    if (d.reason === 'offer') log.debug(fields, 'DHCP offer');
    else log.info(fields, `DHCP ${d.reason}`);
  }

  private exact(): boolean {
    return this.sockets?.exact ?? false;
  }

  private malformed(err: unknown, d: Datagram): void {
    if (!(err instanceof ProtocolError)) throw err;
    bump(this.counters.dropped, err.code);
    this.log.debug({ from: `${d.from.address}:${d.from.port}`, code: err.code, why: err.message }, 'DHCP: malformed datagram dropped');
  }

  private failed(err: unknown): void {
    bump(this.counters.dropped, 'internal-error');
    this.log.error({ err: err instanceof Error ? err.stack : String(err) }, 'DHCP: unexpected error handling a datagram');
  }
}

/** The service around the loop: start, stop, health. */
class DhcpServer implements DhcpService {
  readonly name = 'dhcp';
  private readonly counts = newCounters();
  private state: ServiceState = 'stopped';
  private log: Logger = silentLogger();
  private served: readonly ServedInterface[] = [];
  private loop: DhcpLoop | null = null;
  private space: AddressSpace | null = null;
  private sockets: DhcpSockets | null = null;
  private stopping: Promise<void> | null = null;
  private readonly discovery: DiscoveryGate;

  constructor(
    private readonly settings: DhcpSettings,
    private readonly deps: DhcpDeps,
    private readonly range: IPv4Range | null,
  ) {
    this.discovery = deps.discovery ?? createDiscoveryGate({ perWindow: DEFAULT_DISCOVERY_PER_SEGMENT, windowMs: DISCOVERY_WINDOW_MS });
  }

  async start(ctx: ServiceContext): Promise<void> {
    const { settings, deps } = this;
    this.log = ctx.log.child({ component: 'dhcp' });
    if (settings.dhcpMode === 'off') {
      this.state = 'off';
      return;
    }
    const mode = settings.dhcpMode;
    // Never every interface: a PXE answer on a segment nobody meant reinstalls machines there.
    if (!settings.dhcpInterface) throw noDhcpInterface(mode);
    this.state = 'starting';
    const found = servedInterfaces((deps.interfaces ?? networkInterfaces)(), settings.dhcpInterface);
    if (found.error) throw new ServiceStartError('dhcp', 'dhcp-interface', found.error);
    const served = found.served;
    this.served = served;
    const inherited = deps.inheritedFds ?? inheritedFromEnv();
    const sendFailed = (err: Error): void => {
      bump(this.counts.dropped, 'send-error');
      this.log.warn({ err: err.message }, 'DHCP: send failed');
    };
    const sockets = (deps.sockets ?? udpSockets)(
      { port: settings.dhcpPort, bootServerPort: mode === 'proxy' && settings.dhcpProxyPort !== 0 ? settings.dhcpProxyPort : null, served, inherited, interfaceName: settings.dhcpInterface },
      this.log,
      sendFailed,
    );
    const advertise = (settings.advertiseAddress ?? served[0]?.address) as IPv4;
    const boot: BootConfig = {
      advertise,
      httpPort: settings.httpPort,
      efiBootfile: settings.efiBootfile,
      arm64Bootfile: ARM64_BOOTFILE_CANDIDATES.find((f) => existsSync(join(settings.tftpRoot, f))) ?? null,
      bootLoader: settings.bootLoader,
      signedChains: signedChainsAvailable(deps.signedBootDirs ?? (settings.signedBootDir ? [settings.signedBootDir] : [])),
    };
    const pool = mode === 'authoritative' && this.range ? poolOn(this.range, settings, served) : null;
    const space = new AddressSpace(pool, deps.directory ?? lookupFeed(required(deps.inventory.lookup)), settings.dhcpIgnoreUnknown);
    if (pool) space.load(await deps.inventory.leases.list());
    this.space = space;

    const loop = new DhcpLoop({
      settings,
      mode,
      net: { mode, served, poolInterface: pool?.iface ?? null, advertise },
      boot,
      space,
      inventory: deps.inventory,
      counters: this.counts,
      log: this.log,
      now: deps.now ?? Date.now,
      metrics: deps.metrics ?? NO_METRICS,
      tap: deps.tap,
      discovery: this.discovery,
    });
    await sockets.open(loop.receive);
    loop.sockets = sockets;
    loop.accepting = true;
    this.loop = loop;
    this.sockets = sockets;
    ctx.signal.addEventListener('abort', () => void this.stop(), { once: true });
    this.state = 'serving';
    this.log.info(
      {
        mode,
        interfaces: served.map((i) => `${i.name} ${i.address}/${i.netmask}`),
        exactIngress: sockets.exact,
        inheritedSocket: inherited.has('dhcp'),
        port: settings.dhcpPort,
        pool: settings.dhcpRange ?? null,
        leases: space.leaseCount,
        recvBufferBytes: sockets.recvBufferBytes(),
      },
      'DHCP serving',
    );
  }

  stop(): Promise<void> {
    if (this.state === 'stopped' || this.state === 'off') return Promise.resolve();
    // The abort signal and main.ts may both ask: both wait for the same stop.
    this.stopping ??= (async () => {
      this.state = 'stopping';
      const loop = this.loop;
      if (loop) {
        loop.accepting = false;
        // Finish what was already received (bounded: the queue holds at most MAX_QUEUE datagrams),
        // commit and send the last ACKs, then release the sockets.
        await Promise.race([loop.drained(), new Promise((r) => setTimeout(r, 5_000).unref())]);
        await loop.commits.settle();
        await loop.journal.settled();
      }
      await this.sockets?.close();
      this.state = 'stopped';
      this.log.info({ counters: this.counts }, 'DHCP stopped');
    })();
    return this.stopping;
  }

  health(): ServiceHealth {
    const c = this.counts;
    return {
      state: this.state,
      detail: {
        mode: this.settings.dhcpMode,
        interfaces: this.served.map((i) => i.name),
        exactIngress: this.sockets?.exact ?? false,
        leases: this.space?.leaseCount ?? 0,
        offers: this.space?.offerCount ?? 0,
        recvBufferBytes: this.sockets?.recvBufferBytes() ?? 0,
        received: c.received,
        replies: { ...c.replies },
        dropped: { ...c.dropped },
        discoveryRefused: this.discovery.refused(),
        unrecorded: c.unrecorded,
      },
    };
  }

  counters(): DhcpCounters {
    return structuredClone(this.counts);
  }

  interfaces(): readonly ServedInterface[] {
    return this.served;
  }
}

function required(lookup: InventoryLookup | undefined): InventoryLookup {
  if (!lookup) throw new Error('the DHCP service needs a machine directory: a feed (deps.directory) or the inventory\'s lookup');
  return lookup;
}
