import type { Config } from '../config/settings.js';
import type { Lease } from '../inventory/model.js';
import type { MachineFacts } from '../inventory/store.js';
import { intToIp, ipToInt, sameSubnet, type IPv4, type IPv4Range } from '../lib/ipv4.js';
import type { Mac } from '../lib/mac.js';
import { ServiceStartError } from '../lib/service.js';
import type { AddressFacts, AuthoritativeFacts, PoolConfig } from './authoritative.js';
import type { LeaseEffect } from './decision.js';
import type { MachineFeed } from './directory.js';
import { interfaceOn, type ServedInterface } from './interfaces.js';
import { LeaseBook } from './leasebook.js';
import { OPTION, getIp } from './options.js';
import { ZERO_IP } from './packet.js';
import type { Route } from './targets.js';
import type { Transaction } from './transaction.js';

/**
 * The address space the service answers from: the pool, the lease book (the store's leases
 * mirrored, plus the offers held in memory) and the machine directory (who is known, which
 * address is whose reservation). `facts` reads it for one request on one route; `apply` makes a
 * decision's effect on it. No I/O and no clock of its own: time comes with each call, the
 * machines from a `MachineFeed`, the leases from the caller (at start, and after a commit).
 */

/** A pool as served: its configuration and the served interface on its subnet (null: relayed only). */
export interface Pool extends PoolConfig {
  readonly iface: ServedInterface | null;
}

export type PoolSettings = Pick<Config, 'dhcpRange' | 'dhcpNetmask' | 'dhcpRouter' | 'dhcpDns' | 'dhcpLeaseSeconds' | 'dhcpCacheThreshold'>;

/** The pool of `range` on the served interfaces; fails start with the setting to fix. */
export function poolOn(range: IPv4Range, settings: PoolSettings, served: readonly ServedInterface[]): Pool {
  const home = interfaceOn(served, range.start);
  const mask = settings.dhcpNetmask ?? home?.netmask;
  if (!mask) {
    throw new ServiceStartError('dhcp', 'dhcp-netmask', `the pool ${settings.dhcpRange} is on no served interface; set RACKSMITH_DHCP_NETMASK for a relayed subnet`);
  }
  if (!sameSubnet(range.start, range.end, mask)) {
    throw new ServiceStartError('dhcp', 'dhcp-range', `the pool ${settings.dhcpRange} spans more than one subnet of mask ${mask}`);
  }
  return {
    range,
    network: intToIp((ipToInt(range.start) & ipToInt(mask)) >>> 0),
    mask: mask as IPv4,
    router: (settings.dhcpRouter ?? null) as IPv4 | null,
    dns: (settings.dhcpDns ?? []) as IPv4[],
    leaseSeconds: settings.dhcpLeaseSeconds,
    cacheThreshold: settings.dhcpCacheThreshold,
    iface: home,
  };
}

/** How long the candidate search passes over a pool address found reserved for another machine. */
export const RESERVED_SKIP_MS = 60_000;
/** Pool addresses found reserved for others, at most, before one DISCOVER gives up. */
const CANDIDATE_TRIES = 64;

export class AddressSpace {
  private readonly book = new LeaseBook();
  /** The pool's addresses as numbers, for the per-datagram subnet and range tests. */
  private readonly net = { network: 0, mask: 0, start: 0, end: 0 };

  constructor(
    /** Null in proxy mode: no addresses to give, only machines to look up. */
    readonly pool: Pool | null,
    private readonly machines: MachineFeed,
    private readonly ignoreUnknown: boolean,
  ) {
    if (pool) {
      this.net.network = ipToInt(pool.network);
      this.net.mask = ipToInt(pool.mask);
      this.net.start = ipToInt(pool.range.start);
      this.net.end = ipToInt(pool.range.end);
    }
  }

  get leaseCount(): number {
    return this.book.leaseCount;
  }

  get offerCount(): number {
    return this.book.offerCount;
  }

  /**
   * Mirrors lease rows as the store has them (at start, and after a failed or refused commit).
   * Only the pool's subnet: on a database shared by several instances, the other networks'
   * leases are their instances' own.
   */
  load(leases: readonly Lease[]): void {
    this.book.load(this.pool ? leases.filter((l) => ((ipToInt(l.ip) & this.net.mask) >>> 0) === this.net.network >>> 0) : leases);
  }

  /** The inventory's machine with this MAC, or null. */
  machine(mac: Mac, now: number): MachineFacts | null {
    return this.machines.current(now).byMac.get(mac) ?? null;
  }

  /**
   * What authoritative mode decides a request from, as the space stands at the request's time.
   * Reads only, but for a DISCOVER's candidate search, which marks the pool addresses it finds
   * reserved for others so that the next search passes over them.
   */
  facts(tx: Transaction, route: Route): AuthoritativeFacts {
    const t = tx.at;
    const { req, mac } = tx;
    // The subnet the client is on: the relay's (giaddr), else the interface's.
    const subnetOf = req.giaddr !== ZERO_IP ? req.giaddr : (route.target?.address ?? (tx.from.address !== ZERO_IP ? tx.from.address : null));
    const pool = this.pool && subnetOf !== null && this.onPoolSubnet(ipToInt(subnetOf)) ? this.pool : null;
    const machineIp = tx.machine?.ip ?? null;
    const leaseView = mac ? this.book.leaseOf(mac, t) : null;
    const leaseFacts = leaseView ? this.address(leaseView.ip, mac, machineIp, pool, t) : null;
    const requestedIp = getIp(req.options, OPTION.REQUESTED_IP) ?? (req.ciaddr !== ZERO_IP ? req.ciaddr : null);
    return {
      now: t,
      serverId: route.serverId,
      nextServer: route.nextServer,
      pool,
      ignoreUnknown: this.ignoreUnknown,
      known: tx.machine !== null,
      reservation: this.address(machineIp, mac, machineIp, pool, t),
      lease: leaseView && leaseFacts ? { ...leaseView, ...leaseFacts } : null,
      offered: mac ? this.book.offerOf(mac, t) : null,
      requested: this.address(requestedIp, mac, machineIp, pool, t),
      candidate: pool && mac && tx.info.messageType === 'discover' ? this.nextCandidate(pool, mac, t) : null,
    };
  }

  /** Makes a decision's effect on the book: an offer held or dropped, a binding mirrored, a lease given back or declined. */
  apply(e: LeaseEffect, now: number): void {
    switch (e.kind) {
      case 'hold':
        this.book.hold(e.ip, e.mac, now, e.until, e.range ?? undefined);
        return;
      case 'unhold':
        this.book.unoffer(e.mac);
        return;
      case 'bind':
        // Mirrored at once, so the next datagram sees it; durable once its commit has finished.
        this.book.bind(e.ip, e.mac, e.until, e.clientId, e.hostname);
        return;
      case 'release':
        this.book.release(e.ip, e.mac, now);
        return;
      case 'decline':
        this.book.decline(e.ip, e.until);
        return;
    }
  }

  // ── after a commit (commit.ts) ─────────────────────────────────────────────────────────────

  /** The binding of `ip` to `mac` is in the store. */
  durable(ip: string, mac: Mac): void {
    this.book.durable(ip, mac);
  }

  /**
   * The store refused a binding because the address is another machine's reservation, which the
   * directory did not show: pass over the address for a while, and read the machines again.
   */
  reservedElsewhere(ip: string, now: number): void {
    this.book.skipReserved(ip, now + RESERVED_SKIP_MS);
    this.machines.invalidate();
  }

  /** Replaces what the book knows of an address and a MAC with the store's rows for them. */
  resync(ip: string, mac: Mac, rows: readonly (Lease | null)[]): void {
    this.book.forget(ip, mac);
    this.book.load(rows.filter((l) => l !== null));
  }

  // ── reading ────────────────────────────────────────────────────────────────────────────────

  /** One address as it stands for this client, or null (no address, no MAC, or no pool here). */
  private address(ip: string | null, mac: Mac | null, machineIp: string | null, pool: Pool | null, t: number): AddressFacts | null {
    if (!ip || !mac || !pool) return null;
    const n = ipToInt(ip);
    const h = this.book.holderOf(n, t);
    const owner = ip === machineIp ? mac : this.reservedFor(ip, t);
    return {
      ip: ip as IPv4,
      onSubnet: this.onPoolSubnet(n),
      inRange: n >= this.net.start && n <= this.net.end,
      holder: h === null ? 'none' : h.kind === 'quarantine' ? 'quarantine' : h.mac === mac ? 'self' : 'other',
      reserved: owner === null ? null : owner === mac ? 'self' : 'other',
    };
  }

  private onPoolSubnet(n: number): boolean {
    return ((n & this.net.mask) >>> 0) === this.net.network;
  }

  private reservedFor(ip: string, t: number): Mac | null {
    return this.machines.current(t).byIp.get(ip) ?? null;
  }

  /** The next free pool address that is nobody else's reservation. */
  private nextCandidate(pool: Pool, mac: Mac, t: number): IPv4 | null {
    for (let i = 0; i < CANDIDATE_TRIES; i++) {
      const ip = this.book.nextFree(pool.range, t);
      if (!ip) return null;
      const owner = this.reservedFor(ip, t);
      if (owner === null || owner === mac) return ip;
      this.book.skipReserved(ip, t + RESERVED_SKIP_MS);
    }
    return null;
  }
}
