import { intToIp, ipToInt, type IPv4, type IPv4Range } from '../lib/ipv4.js';
import type { Mac } from '../lib/mac.js';
import type { Lease, LeaseState } from '../inventory/model.js';

/**
 * The DHCP service's in-memory view of its address space: the persisted leases (a mirror of the
 * lease table, loaded at start and updated after each commit) plus the offers it has made,
 * which are held in memory only (RFC 2131 §4.3.1: "the server need not reserve the offered
 * address", but holding it keeps a burst of DISCOVERs from being offered one address twice).
 * No I/O and no clock: `now` is always passed in, so it is tested like a pure module.
 *
 * One record per address (its lease, its offer, its reservation skip) and one per MAC (where its
 * lease and its offer are), updated in place: a datagram's questions about an address or a MAC
 * are one map lookup each, where separate lease, offer and skip maps cost one each (on a busy
 * pool these maps hold tens of thousands of entries, and each lookup misses the CPU cache).
 */

/** What the book knows of one address. */
interface AddressSlot {
  /** The lease row's state, or null when the address has no row. */
  leaseState: LeaseState | null;
  leaseMac: Mac | null;
  /** ms since the epoch: the lease's end, or the end of a quarantine. */
  leaseUntil: number;
  /** The lease row's client identifier and host name (a reused lease must not change them). */
  leaseClientId: string | null;
  leaseHostname: string | null;
  /** The lease is in the store: read from it, or its binding's commit has finished. */
  leaseDurable: boolean;
  /** The MAC the address is offered to, or null. */
  offerMac: Mac | null;
  offerUntil: number;
  /** Found reserved for another machine: `nextFree` passes over it until then. */
  skipUntil: number;
}

/** Where one MAC's lease row and offer are (−1: none). */
interface ClientSlot {
  lease: number;
  offer: number;
}

export type Holder =
  | { readonly kind: 'offer' | 'bound'; readonly mac: Mac }
  | { readonly kind: 'quarantine'; readonly mac: null };

const QUARANTINE: Holder = { kind: 'quarantine', mac: null };

export interface LeaseView {
  readonly ip: IPv4;
  readonly state: LeaseState;
  readonly until: number;
  /** `bound` and not yet expired. */
  readonly active: boolean;
  readonly clientId: string | null;
  readonly hostname: string | null;
  /** Committed: a binding mirrored before its commit finished is not, until `durable`. */
  readonly durable: boolean;
}

const rangeKeys = new WeakMap<IPv4Range, string>();

/** A range's cursor key, made once per range object (a pool's range is one object for its life). */
function rangeKey(range: IPv4Range): string {
  let key = rangeKeys.get(range);
  if (key === undefined) {
    key = `${range.start}-${range.end}`;
    rangeKeys.set(range, key);
  }
  return key;
}

/** How many holds at least between sweeps of expired offers and empty records. */
const SWEEP_EVERY = 4096;

export class LeaseBook {
  private readonly addresses = new Map<number, AddressSlot>();
  private readonly clients = new Map<string, ClientSlot>();
  private readonly cursors = new Map<string, number>();
  private leases = 0;
  private offers = 0;
  private holdsSinceSweep = 0;
  private lastMac: string | null = null;
  private lastClient: ClientSlot | undefined = undefined;
  /** A sweep walks every record: at most once per as many holds as it found records left. */
  private sweepAfter = SWEEP_EVERY;

  load(leases: readonly Lease[]): void {
    for (const l of leases) this.setLease(ipToInt(l.ip), l.mac, l.state, Date.parse(l.expiresAt), l.clientId, l.hostname, true);
  }

  get leaseCount(): number {
    return this.leases;
  }

  get offerCount(): number {
    return this.offers;
  }

  /** The MAC's persisted lease (any state), or null. */
  leaseOf(mac: Mac, now: number): LeaseView | null {
    const n = this.find(mac)?.lease ?? -1;
    if (n < 0) return null;
    const s = this.addresses.get(n) as AddressSlot;
    const state = s.leaseState as LeaseState;
    return { ip: intToIp(n), state, until: s.leaseUntil, active: state === 'bound' && s.leaseUntil > now, clientId: s.leaseClientId, hostname: s.leaseHostname, durable: s.leaseDurable };
  }

  /** The address currently offered to the MAC, or null. */
  offerOf(mac: Mac, now: number): IPv4 | null {
    const n = this.find(mac)?.offer ?? -1;
    if (n < 0) return null;
    const s = this.addresses.get(n);
    return s && s.offerMac === mac && s.offerUntil > now ? intToIp(n) : null;
  }

  /** Who holds the address now: an unexpired offer or lease, or a quarantine. Null when free. */
  holder(ip: string, now: number): Holder | null {
    return this.holderOf(ipToInt(ip), now);
  }

  /** `holder` for an address already in numeric form. */
  holderOf(n: number, now: number): Holder | null {
    const s = this.addresses.get(n);
    return s === undefined ? null : holderIn(s, now);
  }

  /**
   * Next free address of the range after the range's cursor (next-fit: recently released
   * addresses are reused last, so a returning client usually finds its old address still free).
   * Does not move the cursor; `hold` does.
   */
  nextFree(range: IPv4Range, now: number): IPv4 | null {
    const start = ipToInt(range.start);
    const size = ipToInt(range.end) - start + 1;
    const key = rangeKey(range);
    const from = this.cursors.get(key) ?? 0;
    for (let i = 0; i < size; i++) {
      const n = start + ((from + i) % size);
      const s = this.addresses.get(n);
      // A free address still remembered for another MAC (released or expired) is taken only
      // once no never-used address is left ahead of the cursor: the scan reaches it last anyway.
      if (s === undefined || (s.skipUntil <= now && holderIn(s, now) === null)) return intToIp(n);
    }
    return null;
  }

  /** Marks an address as reserved for another machine, so `nextFree` passes over it for a while. */
  skipReserved(ip: string, until: number): void {
    this.slot(ipToInt(ip)).skipUntil = until;
  }

  /** Holds an offered address for the MAC (drops any earlier offer to it). */
  hold(ip: string, mac: Mac, now: number, until: number, range?: IPv4Range): void {
    this.unoffer(mac);
    const n = ipToInt(ip);
    const s = this.slot(n);
    this.dropOffer(n, s);
    s.offerMac = mac;
    s.offerUntil = until;
    this.offers++;
    this.client(mac).offer = n;
    if (range) this.cursors.set(rangeKey(range), n - ipToInt(range.start) + 1);
    if (++this.holdsSinceSweep >= this.sweepAfter) this.sweep(now);
  }

  unoffer(mac: Mac): void {
    const c = this.find(mac);
    if (c === undefined || c.offer < 0) return;
    const s = this.addresses.get(c.offer);
    if (s !== undefined && s.offerMac === mac) this.dropOffer(c.offer, s);
    c.offer = -1;
  }

  /**
   * Mirrors a binding: the MAC now holds this address and no other. The loop mirrors it as soon
   * as it is decided (so the next datagram sees it) and marks it `durable` once its commit has
   * finished; until then it is not given again without a write.
   */
  bind(ip: string, mac: Mac, until: number, clientId: string | null = null, hostname: string | null = null): void {
    this.unoffer(mac);
    this.setLease(ipToInt(ip), mac, 'bound', until, clientId, hostname, false);
  }

  /** The binding of `ip` to `mac` is committed. */
  durable(ip: string, mac: Mac): void {
    const s = this.addresses.get(ipToInt(ip));
    if (s !== undefined && s.leaseMac === mac && s.leaseState === 'bound') s.leaseDurable = true;
  }

  release(ip: string, mac: Mac, now: number): void {
    const s = this.addresses.get(ipToInt(ip));
    if (s !== undefined && s.leaseState !== null && s.leaseMac === mac) {
      s.leaseState = 'released';
      s.leaseUntil = now;
    }
  }

  decline(ip: string, until: number): void {
    this.setLease(ipToInt(ip), null, 'declined', until, null, null, true);
  }

  /** Drops what the book knows about an address and a MAC (before reloading them from the store). */
  forget(ip: string, mac: Mac): void {
    this.dropLease(ipToInt(ip));
    const c = this.find(mac);
    if (c !== undefined && c.lease >= 0) this.dropLease(c.lease);
    this.unoffer(mac);
  }

  private setLease(n: number, mac: Mac | null, state: LeaseState, until: number, clientId: string | null, hostname: string | null, durable: boolean): void {
    const s = this.slot(n);
    if (s.leaseState !== null && s.leaseMac !== null && s.leaseMac !== mac) {
      const previous = this.clients.get(s.leaseMac);
      if (previous !== undefined && previous.lease === n) previous.lease = -1;
    }
    if (mac !== null) {
      const c = this.client(mac);
      // A binding moves the MAC: its row at another address goes (as in the store).
      if (c.lease >= 0 && c.lease !== n) this.dropLease(c.lease);
      c.lease = n;
    }
    if (s.leaseState === null) this.leases++;
    s.leaseState = state;
    s.leaseMac = mac;
    s.leaseUntil = until;
    s.leaseClientId = clientId;
    s.leaseHostname = hostname;
    s.leaseDurable = durable;
    if (s.offerMac !== null && s.offerMac !== mac) this.dropOffer(n, s);
  }

  /** The address's lease row is gone; its MAC no longer points at it. */
  private dropLease(n: number): void {
    const s = this.addresses.get(n);
    if (s === undefined || s.leaseState === null) return;
    if (s.leaseMac !== null) {
      const c = this.clients.get(s.leaseMac);
      if (c !== undefined && c.lease === n) c.lease = -1;
    }
    s.leaseState = null;
    s.leaseMac = null;
    s.leaseUntil = 0;
    s.leaseClientId = null;
    s.leaseHostname = null;
    s.leaseDurable = false;
    this.leases--;
  }

  /** The address's offer is gone; its MAC no longer points at it. */
  private dropOffer(n: number, s: AddressSlot): void {
    if (s.offerMac === null) return;
    const c = this.clients.get(s.offerMac);
    if (c !== undefined && c.offer === n) c.offer = -1;
    s.offerMac = null;
    s.offerUntil = 0;
    this.offers--;
  }

  private slot(n: number): AddressSlot {
    let s = this.addresses.get(n);
    if (s === undefined) {
      s = { leaseState: null, leaseMac: null, leaseUntil: 0, leaseClientId: null, leaseHostname: null, leaseDurable: false, offerMac: null, offerUntil: 0, skipUntil: 0 };
      this.addresses.set(n, s);
    }
    return s;
  }

  /**
   * The MAC's record. One datagram asks about the same MAC several times in a row (its lease, its
   * offer, then the effect), so the last answer is kept; records leave the map only in a sweep.
   */
  private find(mac: string): ClientSlot | undefined {
    if (mac !== this.lastMac) {
      this.lastMac = mac;
      this.lastClient = this.clients.get(mac);
    }
    return this.lastClient;
  }

  private client(mac: Mac): ClientSlot {
    let c = this.find(mac);
    if (c === undefined) {
      c = { lease: -1, offer: -1 };
      this.clients.set(mac, c);
      this.lastClient = c;
    }
    return c;
  }

  /**
   * Forgets expired offers, and the records left with nothing in them (a DISCOVER-only flood of
   * new MACs must not grow memory without bound).
   */
  private sweep(now: number): void {
    this.holdsSinceSweep = 0;
    for (const [n, s] of this.addresses) {
      if (s.offerMac !== null && s.offerUntil <= now) this.dropOffer(n, s);
      if (s.leaseState === null && s.offerMac === null && s.skipUntil <= now) this.addresses.delete(n);
    }
    for (const [mac, c] of this.clients) if (c.lease < 0 && c.offer < 0) this.clients.delete(mac);
    this.lastMac = null;
    this.lastClient = undefined;
    this.sweepAfter = Math.max(SWEEP_EVERY, this.addresses.size);
  }
}

function holderIn(s: AddressSlot, now: number): Holder | null {
  if (s.offerMac !== null && s.offerUntil > now) return { kind: 'offer', mac: s.offerMac };
  if (s.leaseState === null || s.leaseUntil <= now) return null;
  if (s.leaseState === 'bound') return { kind: 'bound', mac: s.leaseMac as Mac };
  if (s.leaseState === 'declined') return QUARANTINE;
  return null;
}
