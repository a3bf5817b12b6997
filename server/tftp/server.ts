import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { constants as fsc } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import { networkInterfaces, type NetworkInterfaceInfo } from 'node:os';
import { performance } from 'node:perf_hooks';
import { FileError, memoryFile, type FileSource, type OpenedFile } from '../lib/files.js';
import { literalLookup } from '../lib/ipv4.js';
import type { Logger } from '../lib/log.js';
import type { ClientResolver } from '../lib/neighbours.js';
import { ServiceStartError, bindFailure, type Service, type ServiceContext, type ServiceHealth, type ServiceState } from '../lib/service.js';
import type { EventRepo, MachineRepo } from '../inventory/store.js';
import { loaderOfBootfile } from '../boot/loaders.js';
import { WAIT_MAX_MS, admit, fileRefusal, maxWaiting, type RefusalCounter } from './decide.js';
import { tftpListenAddress } from './listen.js';
import { toNetascii } from './netascii.js';
import { TFTP_ERRORS, ackBlock, decodeTftp, encodeDataHeader, encodeTftp, tftpErrorName, type RequestPacket, type TftpPacket } from './packet.js';
import { MAX_RTO_MS, blockRange, initialState, mayYield, negotiate, step, type AbortReason, type Negotiation, type TransferAction, type TransferConfig, type TransferEvent, type TransferState } from './transfer.js';

/**
 * The only impure part of TFTP: the listening socket, one new socket per transfer (its port is
 * the server's transfer ID, RFC 1350 §4), timers, file reads and evidence. Decisions come from
 * `decide.ts` and `transfer.ts`; this loop receives, dispatches and sends.
 */

export interface TftpSettings {
  readonly tftpPort: number;
  /** Unset or 0.0.0.0: the DHCP interface's address (see listen.ts). */
  readonly tftpAddress?: string | undefined;
  readonly dhcpInterface?: string | undefined;
  readonly tftpMaxBlksize: number;
  readonly tftpMaxWindowsize: number;
  readonly tftpMaxTransfers: number;
  readonly tftpMaxClientTransfers: number;
  readonly tftpTimeoutMs: number;
  readonly tftpRetries: number;
}

/** The inventory as TFTP needs it: is this a known machine, and where to write its evidence. */
export interface TftpInventory {
  readonly machines: Pick<MachineRepo, 'get' | 'setLastStep'> & Partial<Pick<MachineRepo, 'recordBootStep'>>;
  readonly events: Pick<EventRepo, 'append'>;
}

export interface TftpDeps {
  readonly files: FileSource;
  /** IP → MAC; without it, transfers are counted and logged but not tied to machines. */
  readonly resolveClient?: ClientResolver;
  readonly inventory?: TftpInventory;
  /** MTU of the interface towards a client (caps blksize). */
  readonly mtuTowards?: (ip: string) => number;
  /** The TFTP root folder, checked at start so that a wrong setting fails `serve` at once. */
  readonly root?: string;
  /** Defaults to `os.networkInterfaces()`: where the DHCP interface's address is read. */
  readonly interfaces?: () => NodeJS.Dict<NetworkInterfaceInfo[]>;
}

export interface TftpCounters {
  datagrams: number;
  malformed: number;
  unexpected: number;
  requests: number;
  duplicateRequests: number;
  refusedWrite: number;
  refusedMode: number;
  refusedNotFound: number;
  refusedDenied: number;
  refusedUnreadable: number;
  refusedBusy: number;
  refusedClientLimit: number;
  /** Requests held over tftp-max-transfers until a slot freed (first arrival only). */
  waited: number;
  /** Held requests dropped unstarted: their client had not repeated them for WAIT_MAX_MS. */
  waitExpired: number;
  transfersStarted: number;
  transfersCompleted: number;
  transfersTimedOut: number;
  transfersUnconfirmed: number;
  transfersAbortedByClient: number;
  transfersFailed: number;
  probes: number;
  unknownTid: number;
  duplicateAcks: number;
  staleAcks: number;
  timeouts: number;
  blocksSent: number;
  retransmittedBlocks: number;
  bytesSent: number;
  errorsSent: number;
  eventsRecorded: number;
}

function zeroCounters(): TftpCounters {
  return {
    datagrams: 0,
    malformed: 0,
    unexpected: 0,
    requests: 0,
    duplicateRequests: 0,
    refusedWrite: 0,
    refusedMode: 0,
    refusedNotFound: 0,
    refusedDenied: 0,
    refusedUnreadable: 0,
    refusedBusy: 0,
    refusedClientLimit: 0,
    waited: 0,
    waitExpired: 0,
    transfersStarted: 0,
    transfersCompleted: 0,
    transfersTimedOut: 0,
    transfersUnconfirmed: 0,
    transfersAbortedByClient: 0,
    transfersFailed: 0,
    probes: 0,
    unknownTid: 0,
    duplicateAcks: 0,
    staleAcks: 0,
    timeouts: 0,
    blocksSent: 0,
    retransmittedBlocks: 0,
    bytesSent: 0,
    errorsSent: 0,
    eventsRecorded: 0,
  };
}

export interface TftpService extends Service {
  counters(): Readonly<TftpCounters>;
  activeTransfers(): number;
  /** The bound listening port (useful when the setting was moved for tests). */
  port(): number | null;
}

async function folderProblem(path: string): Promise<string | null> {
  try {
    if (!(await stat(path)).isDirectory()) return 'not a folder';
    await access(path, fsc.R_OK | fsc.X_OK);
    return null;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === 'ENOENT' ? 'no such folder' : code === 'EACCES' ? 'permission denied' : String(code ?? err);
  }
}

function waitKey(address: string, file: string): string {
  return `${address}\n${file}`;
}

/** IP + UDP + TFTP DATA headers: what an MTU leaves for one block. */
const HEADER_OVERHEAD = 20 + 8 + 4;
/** Netascii is converted in memory; bigger text files are refused rather than streamed. */
const NETASCII_MAX = 16 * 1024 * 1024;

export type TransferOutcome = 'complete' | AbortReason | 'protocol-error' | 'read-error' | 'shutdown';

export interface TransferSummary {
  readonly client: string;
  readonly port: number;
  readonly file: string;
  readonly mode: string;
  readonly outcome: TransferOutcome;
  readonly size: number;
  readonly bytes: number;
  readonly blksize: number;
  readonly windowsize: number;
  readonly durationMs: number;
  readonly retransmissions: number;
  readonly timeouts: number;
}

/**
 * Reads a file not held in memory in chunks aligned to whole blocks, one chunk ahead of the
 * sender, so that a window is always sent from bytes already read.
 */
class BlockReader {
  private cur: { start: number; buf: Buffer } | null = null;
  private next: { start: number; buf: Buffer } | null = null;
  private prefetching: Promise<void> | null = null;
  private readonly chunk: number;

  constructor(
    private readonly file: OpenedFile,
    private readonly blksize: number,
    windowsize: number,
  ) {
    const want = Math.max(1024 * 1024, blksize * windowsize * 4);
    this.chunk = Math.ceil(want / blksize) * blksize;
  }

  block(n: number): Buffer | null {
    const { start, end } = blockRange(n, this.file.size, this.blksize);
    for (let pass = 0; pass < 2; pass++) {
      const c = this.cur;
      if (c && start >= c.start && end <= c.start + c.buf.length) return c.buf.subarray(start - c.start, end - c.start);
      const nx = this.next;
      if (pass === 0 && nx && start >= nx.start && end <= nx.start + nx.buf.length) {
        this.cur = nx;
        this.next = null;
        this.prefetch();
        continue;
      }
      break;
    }
    return null;
  }

  async load(n: number): Promise<void> {
    const { start } = blockRange(n, this.file.size, this.blksize);
    this.cur = { start, buf: await this.file.read(start, this.chunk) };
    this.next = null;
    this.prefetch();
  }

  private prefetch(): void {
    const c = this.cur;
    if (!c || this.next || this.prefetching) return;
    const start = c.start + c.buf.length;
    if (start >= this.file.size) return;
    this.prefetching = this.file
      .read(start, this.chunk)
      .then((buf) => {
        if (this.cur === c) this.next = { start, buf };
      })
      .catch(() => {
        // A failed read ahead is retried by load() when the block is needed.
      })
      .finally(() => {
        this.prefetching = null;
      });
  }
}

class Transfer {
  private state: TransferState;
  private timer: NodeJS.Timeout | null = null;
  private timerMs = 0;
  private busy = false;
  private readonly queue: TransferEvent[] = [];
  private closed = false;
  private readonly reader: BlockReader | null;
  private readonly startedAt = performance.now();
  private readonly peerAddress: string;
  private readonly peerPort: number;

  constructor(
    private readonly server: TftpServer,
    private readonly sock: Socket,
    readonly key: string,
    readonly client: RemoteInfo,
    readonly file: OpenedFile,
    readonly mode: string,
    readonly neg: Negotiation,
    private readonly config: TransferConfig,
  ) {
    this.peerAddress = client.address;
    this.peerPort = client.port;
    this.state = initialState(config);
    this.reader = file.bytes ? null : new BlockReader(file, config.blksize, config.windowsize);
    sock.on('message', (msg, rinfo) => this.onDatagram(msg, rinfo));
    sock.on('error', (err) => {
      server.log.warn({ client: this.peerAddress, file: file.name, err: err.message }, 'tftp transfer socket error');
      this.finish('read-error', `socket error: ${err.message}`);
    });
  }

  start(): void {
    this.event({ type: 'start', now: performance.now() });
  }

  private onDatagram(msg: Buffer, rinfo: RemoteInfo): void {
    const c = this.server.stats;
    if (rinfo.port !== this.peerPort || rinfo.address !== this.peerAddress) {
      // RFC 1350 §4: a packet from another TID gets error 5 and the transfer goes on untouched.
      c.unknownTid++;
      this.server.sendError(this.sock, rinfo, TFTP_ERRORS.unknownTid, 'unknown transfer ID');
      return;
    }
    const block = ackBlock(msg);
    if (block !== null) {
      this.event({ type: 'ack', block, now: performance.now() });
      return;
    }
    let p: TftpPacket;
    try {
      p = decodeTftp(msg);
    } catch {
      c.malformed++;
      return;
    }
    if (p.op === 'ACK') this.event({ type: 'ack', block: p.block, now: performance.now() });
    else if (p.op === 'ERROR') this.event({ type: 'error', code: p.code, message: p.message });
    else {
      c.unexpected++;
      this.server.sendError(this.sock, rinfo, TFTP_ERRORS.illegalOperation, `${p.op} is not expected during a read`);
      this.finish('protocol-error', `client sent ${p.op} during the transfer`);
    }
  }

  private event(ev: TransferEvent): void {
    if (this.closed) return;
    if (this.busy) {
      this.queue.push(ev);
      return;
    }
    this.handle(ev);
  }

  private handle(ev: TransferEvent): void {
    const r = step(this.config, this.state, ev);
    const before = this.state;
    this.state = r.state;
    const c = this.server.stats;
    if (r.verdict === 'duplicate') c.duplicateAcks++;
    else if (r.verdict === 'stale' || r.verdict === 'ignored') c.staleAcks++;
    if (ev.type === 'timeout') c.timeouts++;
    c.retransmittedBlocks += r.state.retransmissions - before.retransmissions;
    for (const a of r.actions) {
      if (this.closed) return;
      this.run(a);
    }
    if (ev.type === 'timeout' && !this.closed && this.server.waitingRequests() > 0 && mayYield(this.config, this.state)) {
      this.finish('unconfirmed', `no ACK of the final block after ${this.state.retries} retransmissions; the slot went to a waiting request`);
    }
  }

  private run(a: TransferAction): void {
    switch (a.type) {
      case 'send-oack':
        this.send(encodeTftp({ op: 'OACK', options: this.neg.oack }));
        return;
      case 'send-data':
        this.sendRange(a.first, a.last);
        return;
      case 'arm-timer':
        this.arm(a.ms);
        return;
      case 'done':
        this.finish('complete', 'complete');
        return;
      case 'abort':
        this.finish(a.reason, a.detail);
        return;
    }
  }

  private sendRange(first: number, last: number): void {
    const bytes = this.file.bytes;
    const { blksize } = this.config;
    const size = this.file.size;
    const c = this.server.stats;
    for (let b = first; b <= last; b++) {
      let data: Buffer | null;
      if (bytes) {
        const start = (b - 1) * blksize;
        data = bytes.subarray(start, Math.min(start + blksize, size));
      } else data = (this.reader as BlockReader).block(b);
      if (data === null) {
        this.stall(b, last);
        return;
      }
      // Header and file bytes go to the kernel as two pieces: no copy of the block.
      this.sock.send([encodeDataHeader(b), data], this.peerPort, this.peerAddress);
      c.blocksSent++;
      c.bytesSent += data.length;
    }
  }

  /** The blocks are not read yet: hold events until they are, then send and catch up. */
  private stall(from: number, last: number): void {
    this.busy = true;
    (this.reader as BlockReader).load(from).then(
      () => {
        this.busy = false;
        if (this.closed) return;
        this.sendRange(from, last);
        while (!this.busy && !this.closed && this.queue.length > 0) this.handle(this.queue.shift() as TransferEvent);
      },
      (err: unknown) => {
        this.busy = false;
        this.server.sendError(this.sock, this.client, TFTP_ERRORS.notDefined, 'read error');
        this.finish('read-error', err instanceof Error ? err.message : String(err));
      },
    );
  }

  private send(buf: Buffer): void {
    this.sock.send(buf, this.peerPort, this.peerAddress);
  }

  private arm(ms: number): void {
    // refresh() restarts a running timer without allocating: one per ACK on a fast transfer.
    if (this.timer && this.timerMs === ms) {
      this.timer.refresh();
      return;
    }
    if (this.timer) clearTimeout(this.timer);
    this.timerMs = ms;
    this.timer = setTimeout(() => this.event({ type: 'timeout', now: performance.now() }), ms);
  }

  finish(outcome: TransferOutcome, detail: string): void {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.queue.length = 0;
    try {
      this.sock.close();
    } catch {
      /* already closed */
    }
    void this.file.close().catch(() => {});
    const s = this.state;
    this.server.transferEnded(this, {
      client: this.peerAddress,
      port: this.peerPort,
      file: this.file.name,
      mode: this.mode,
      outcome,
      size: this.file.size,
      bytes: outcome === 'complete' ? this.file.size : Math.min(this.file.size, s.acked * this.config.blksize),
      blksize: this.config.blksize,
      windowsize: this.config.windowsize,
      durationMs: Math.round((performance.now() - this.startedAt) * 10) / 10,
      retransmissions: s.retransmissions,
      timeouts: s.timeouts,
    }, detail);
  }
}

export class TftpServer implements TftpService {
  readonly name = 'tftp';
  readonly stats = zeroCounters();
  log: Logger;
  private listener: Socket | null = null;
  private boundPort: number | null = null;
  private serviceState: ServiceState = 'stopped';
  /** The address listened on (after start). */
  private address: string | null = null;
  /** Transfers by client `address:port`; null while one is being set up. */
  private readonly active = new Map<string, Transfer | null>();
  private readonly perClient = new Map<string, number>();
  /**
   * Requests over tftp-max-transfers, by client address and file, in order of first arrival; a
   * repeat (from the same port or a new one) updates its entry and keeps its place.
   */
  private readonly waiting = new Map<string, { p: RequestPacket; rinfo: RemoteInfo; at: number }>();
  private readonly waitingPerClient = new Map<string, number>();
  private readonly evidence = new Set<Promise<void>>();

  constructor(
    private readonly settings: TftpSettings,
    private readonly deps: TftpDeps,
    log: Logger,
  ) {
    this.log = log;
  }

  counters(): Readonly<TftpCounters> {
    return { ...this.stats };
  }

  activeTransfers(): number {
    return this.active.size;
  }

  waitingRequests(): number {
    return this.waiting.size;
  }

  port(): number | null {
    return this.boundPort;
  }

  health(): ServiceHealth {
    return {
      state: this.serviceState,
      detail: {
        port: this.boundPort,
        address: this.address,
        active: this.active.size,
        waiting: this.waiting.size,
        // A few running transfers by client, for a tech watching a rack boot.
        transfers: [...this.active.entries()].slice(0, 20).map(([k, t]) => ({ client: k, file: t?.file.name ?? null })),
        counters: this.counters(),
      },
    };
  }

  async start(ctx: ServiceContext): Promise<void> {
    this.log = ctx.log.child({ component: 'tftp' });
    if (this.settings.tftpPort === 0) {
      this.serviceState = 'off';
      return;
    }
    this.serviceState = 'starting';
    if (this.deps.root !== undefined) {
      const why = await folderProblem(this.deps.root);
      if (why) {
        this.serviceState = 'failed';
        throw new ServiceStartError('tftp', 'tftp-root', `${this.deps.root}: ${why}`);
      }
    }
    const where = tftpListenAddress(this.settings, (this.deps.interfaces ?? networkInterfaces)());
    if ('problem' in where) {
      this.serviceState = 'failed';
      throw new ServiceStartError('tftp', 'tftp-address', where.problem);
    }
    const address = where.address;
    this.address = address;
    const sock = createSocket({ type: 'udp4', lookup: literalLookup });
    await new Promise<void>((resolve, reject) => {
      sock.once('error', (err) => {
        this.serviceState = 'failed';
        try {
          sock.close();
        } catch {
          /* not open */
        }
        reject(new ServiceStartError('tftp', 'tftp-port', `${address}:${this.settings.tftpPort}: ${bindFailure(err)}`));
      });
      sock.bind(this.settings.tftpPort, address, () => resolve());
    });
    sock.removeAllListeners('error');
    sock.on('error', (err) => {
      this.log.error({ err: err.message }, 'tftp listening socket failed');
      ctx.fatal(err);
    });
    sock.on('message', (msg, rinfo) => this.onRequest(msg, rinfo));
    this.listener = sock;
    this.boundPort = sock.address().port;
    this.serviceState = 'serving';
    ctx.signal.addEventListener('abort', () => void this.stop(), { once: true });
    this.log.info({ address, port: this.boundPort }, 'tftp serving');
  }

  async stop(): Promise<void> {
    if (this.serviceState === 'stopped' || this.serviceState === 'off') return;
    this.serviceState = 'stopping';
    const l = this.listener;
    this.listener = null;
    if (l) await new Promise<void>((r) => l.close(() => r()));
    this.waiting.clear();
    this.waitingPerClient.clear();
    for (const t of [...this.active.values()]) t?.finish('shutdown', 'racksmith is stopping');
    await Promise.allSettled([...this.evidence]);
    this.serviceState = 'stopped';
  }

  private count(counter: RefusalCounter): void {
    this.stats[counter]++;
  }

  sendError(sock: Socket, to: { address: string; port: number }, code: number, message: string): void {
    this.stats.errorsSent++;
    try {
      sock.send(encodeTftp({ op: 'ERROR', code, message }), to.port, to.address);
    } catch {
      /* socket closed meanwhile */
    }
  }

  private onRequest(msg: Buffer, rinfo: RemoteInfo): void {
    this.stats.datagrams++;
    let p: TftpPacket;
    try {
      p = decodeTftp(msg);
    } catch (err) {
      this.stats.malformed++;
      this.log.debug({ client: rinfo.address, err: (err as Error).message }, 'tftp malformed datagram dropped');
      return;
    }
    if (p.op === 'RRQ') this.stats.requests++;
    this.consider(p, rinfo);
  }

  private consider(p: TftpPacket, rinfo: RemoteInfo): void {
    const key = `${rinfo.address}:${rinfo.port}`;
    const line = p.op === 'RRQ' ? waitKey(rinfo.address, p.filename) : '';
    const limit = maxWaiting(this.settings.tftpMaxTransfers);
    if (this.waiting.size >= limit) this.pruneWaiting();
    const verdict = admit(
      p,
      {
        active: this.active.size,
        fromClient: this.perClient.get(rinfo.address) ?? 0,
        sameClientPort: this.active.has(key),
        waiting: this.waiting.size,
        waitingFromClient: this.waitingPerClient.get(rinfo.address) ?? 0,
        waitingAlready: this.waiting.has(line),
      },
      { maxTransfers: this.settings.tftpMaxTransfers, maxClientTransfers: this.settings.tftpMaxClientTransfers, maxWaiting: limit },
    );
    if (verdict.verdict === 'drop') {
      this.count(verdict.counter);
      this.log.debug({ client: key, reason: verdict.reason }, 'tftp request dropped');
      return;
    }
    if (verdict.verdict === 'refuse') {
      this.count(verdict.counter);
      this.log.info({ client: key, op: p.op, error: tftpErrorName(verdict.code) }, `tftp request refused: ${verdict.message}`);
      if (this.listener) this.sendError(this.listener, rinfo, verdict.code, verdict.message);
      return;
    }
    if (p.op !== 'RRQ') return;
    if (verdict.verdict === 'wait') {
      this.count(verdict.counter);
      const held = this.waiting.get(line);
      // Map.set on a present key keeps its place in line: a repeat is not sent to the back.
      this.waiting.set(line, { p, rinfo, at: performance.now() });
      if (!held) this.waitingPerClient.set(rinfo.address, (this.waitingPerClient.get(rinfo.address) ?? 0) + 1);
      this.log.debug({ client: key, file: p.filename, waiting: this.waiting.size, reason: verdict.reason }, 'tftp request waits for a slot');
      return;
    }
    this.active.set(key, null);
    this.perClient.set(rinfo.address, (this.perClient.get(rinfo.address) ?? 0) + 1);
    this.setUp(p, rinfo, key).catch((err: unknown) => {
      this.log.error({ client: key, err: err instanceof Error ? err.message : String(err) }, 'tftp transfer setup failed');
      this.release(key, rinfo.address);
    });
  }

  private release(key: string, address: string): void {
    if (!this.active.delete(key)) return;
    const n = (this.perClient.get(address) ?? 1) - 1;
    if (n <= 0) this.perClient.delete(address);
    else this.perClient.set(address, n);
    this.startWaiting();
  }

  private unwait(line: string, address: string): void {
    this.waiting.delete(line);
    const n = (this.waitingPerClient.get(address) ?? 1) - 1;
    if (n <= 0) this.waitingPerClient.delete(address);
    else this.waitingPerClient.set(address, n);
  }

  /** The line is full: requests whose clients stopped asking leave it. */
  private pruneWaiting(): void {
    const now = performance.now();
    for (const [line, w] of this.waiting) {
      if (now - w.at <= WAIT_MAX_MS) continue;
      this.unwait(line, w.rinfo.address);
      this.stats.waitExpired++;
    }
  }

  /** A slot is free: the longest-waiting request whose client still asks gets it. */
  private startWaiting(): void {
    const now = performance.now();
    while (this.listener && this.active.size < this.settings.tftpMaxTransfers && this.waiting.size > 0) {
      const [line, w] = this.waiting.entries().next().value as [string, { p: RequestPacket; rinfo: RemoteInfo; at: number }];
      this.unwait(line, w.rinfo.address);
      if (now - w.at > WAIT_MAX_MS) {
        this.stats.waitExpired++;
        this.log.debug({ client: `${w.rinfo.address}:${w.rinfo.port}`, file: w.p.filename }, 'tftp waiting request expired');
        continue;
      }
      this.consider(w.p, w.rinfo);
    }
  }

  private async setUp(p: RequestPacket, rinfo: RemoteInfo, key: string): Promise<void> {
    let file: OpenedFile;
    try {
      file = await this.deps.files.open(p.filename, { address: rinfo.address });
    } catch (err) {
      this.release(key, rinfo.address);
      if (!(err instanceof FileError)) throw err;
      const r = fileRefusal(err.code);
      this.count(r.counter);
      this.log.info({ client: key, file: p.filename, reason: err.reason, why: err.message }, `tftp request refused: ${r.message}`);
      if (this.listener) this.sendError(this.listener, rinfo, r.code, r.message);
      return;
    }
    if (p.mode === 'netascii') {
      if (file.size > NETASCII_MAX) {
        await file.close();
        this.release(key, rinfo.address);
        this.count('refusedUnreadable');
        if (this.listener) this.sendError(this.listener, rinfo, TFTP_ERRORS.notDefined, 'file too large for netascii; use octet');
        return;
      }
      const bytes = file.bytes ?? (await file.read(0, file.size));
      await file.close();
      file = memoryFile(file.name, toNetascii(bytes));
    }
    if (!this.listener) {
      await file.close();
      this.release(key, rinfo.address);
      return;
    }
    const mtu = (this.deps.mtuTowards ?? (() => 1500))(rinfo.address);
    const neg = negotiate(p.options, file.size, {
      maxBlksize: Math.min(this.settings.tftpMaxBlksize, mtu - HEADER_OVERHEAD),
      maxWindowsize: this.settings.tftpMaxWindowsize,
    });
    const sock = createSocket({ type: 'udp4', lookup: literalLookup });
    try {
      await new Promise<void>((resolve, reject) => {
        sock.once('error', reject);
        sock.bind(0, this.address ?? undefined, () => {
          sock.off('error', reject);
          resolve();
        });
      });
    } catch (err) {
      await file.close();
      this.release(key, rinfo.address);
      throw err;
    }
    const config: TransferConfig = {
      size: file.size,
      blksize: neg.blksize,
      windowsize: neg.windowsize,
      oack: neg.oack.length > 0,
      timeoutMs: this.settings.tftpTimeoutMs,
      maxTimeoutMs: neg.timeoutMs ?? Math.max(MAX_RTO_MS, this.settings.tftpTimeoutMs),
      clientTimeoutMs: neg.timeoutMs,
      maxRetries: this.settings.tftpRetries,
    };
    const t = new Transfer(this, sock, key, rinfo, file, p.mode, neg, config);
    this.active.set(key, t);
    this.stats.transfersStarted++;
    this.log.debug(
      { client: key, file: p.filename, size: file.size, blksize: neg.blksize, windowsize: neg.windowsize, oack: neg.oack, ignored: neg.ignored },
      'tftp transfer started',
    );
    t.start();
  }

  transferEnded(t: Transfer, s: TransferSummary, detail: string): void {
    this.release(t.key, s.client);
    const c = this.stats;
    switch (s.outcome) {
      case 'complete':
        c.transfersCompleted++;
        break;
      case 'probe':
        c.probes++;
        break;
      case 'timeout':
        c.transfersTimedOut++;
        break;
      case 'unconfirmed':
        c.transfersUnconfirmed++;
        break;
      case 'client-error':
        c.transfersAbortedByClient++;
        break;
      default:
        c.transfersFailed++;
    }
    const fields = { ...s, client: `${s.client}:${s.port}`, detail };
    if (s.outcome === 'complete') {
      const mbps = s.durationMs > 0 ? Math.round((s.bytes / 1e6 / (s.durationMs / 1000)) * 10) / 10 : null;
      this.log.info({ ...fields, mbps }, 'tftp transfer complete');
    } else if (s.outcome === 'probe') {
      // EDK2 asks for the size and hangs up before asking again: routine, not worth a line at info.
      this.log.debug(fields, 'tftp size probe ended by the client');
    } else this.log.warn(fields, `tftp transfer ended: ${s.outcome}`);
    if (s.outcome !== 'probe' && s.outcome !== 'shutdown') this.record(s);
  }

  /** Every transfer of a known machine becomes one of its events. */
  private record(s: TransferSummary): void {
    const { resolveClient } = this.deps;
    const inv = this.deps.inventory;
    if (!resolveClient || !inv) return;
    const p = (async () => {
      const mac = await resolveClient(s.client);
      if (!mac || !(await inv.machines.get(mac))) return;
      await inv.events.append({
        mac,
        type: 'tftp.transfer',
        source: s.client,
        message: s.outcome === 'complete' ? `TFTP sent ${s.file} (${s.bytes} bytes)` : `TFTP transfer of ${s.file} ended: ${s.outcome}`,
        data: {
          file: s.file,
          outcome: s.outcome,
          bytes: s.bytes,
          size: s.size,
          blksize: s.blksize,
          windowsize: s.windowsize,
          durationMs: s.durationMs,
          retransmissions: s.retransmissions,
          timeouts: s.timeouts,
          mode: s.mode,
        },
      });
      if (s.outcome === 'complete') await inv.machines.setLastStep(mac, 'tftp');
      // A boot binary sent: if no loader asks for its script after it, the machine is stuck there.
      if (s.outcome === 'complete' && loaderOfBootfile(s.file) !== null) await inv.machines.recordBootStep?.(mac, { kind: 'bootfile', file: s.file });
      this.stats.eventsRecorded++;
    })()
      .catch((err: unknown) => this.log.warn({ client: s.client, err: err instanceof Error ? err.message : String(err) }, 'tftp evidence not recorded'))
      .finally(() => this.evidence.delete(p));
    this.evidence.add(p);
  }
}
