import { intToIp, ipToInt, type IPv4, type IPv4Range } from '../lib/ipv4.js';
import type { Mac } from '../lib/mac.js';
import type { Lease, LeaseState } from '../inventory/model.js';

/**
 * The DHCP service's in-memory view of its address space: the persisted leases (a mirror of the
 * lease table, loaded at start and updated after each commit) plus the offers it has made,
 * which are held in memory only (RFC 2131 §4.3.1: "the server need not reserve the offered
 * address", but holding it keeps a burst of DISCOVERs from being offered one address twice).
 * No I/O and no clock: `now` is always passed in, so it is tested like a pure module.
 */

interface LeaseEntry {
  readonly mac: Mac | null;
  readonly state: LeaseState;
  /** ms since the epoch: the lease's end, or the end of a quarantine. */
  readonly until: number;
}

interface OfferEntry {
  readonly mac: Mac;
  readonly until: number;
}

export type Holder =
  | { readonly kind: 'offer' | 'bound'; readonly mac: Mac }
  | { readonly kind: 'quarantine'; readonly mac: null };

export interface LeaseView {
  readonly ip: IPv4;
  readonly state: LeaseState;
  readonly until: number;
  /** `bound` and not yet expired. */
  readonly active: boolean;
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

export class LeaseBook {
  private readonly leases = new Map<number, LeaseEntry>();
  private readonly leaseByMac = new Map<string, number>();
  private readonly offers = new Map<number, OfferEntry>();
  private readonly offerByMac = new Map<string, number>();
  /** Addresses found reserved for some machine: skipped by `nextFree` until the entry's time. */
  private readonly reservedSkip = new Map<number, number>();
  private readonly cursors = new Map<string, number>();
  private holdsSinceSweep = 0;

  load(leases: readonly Lease[]): void {
    for (const l of leases) this.setLease(ipToInt(l.ip), l.mac, l.state, Date.parse(l.expiresAt));
  }

  get leaseCount(): number {
    return this.leases.size;
  }

  get offerCount(): number {
    return this.offers.size;
  }

  /** The MAC's persisted lease (any state), or null. */
  leaseOf(mac: Mac, now: number): LeaseView | null {
    const n = this.leaseByMac.get(mac);
    if (n === undefined) return null;
    const e = this.leases.get(n) as LeaseEntry;
    return { ip: intToIp(n), state: e.state, until: e.until, active: e.state === 'bound' && e.until > now };
  }

  /** The address currently offered to the MAC, or null. */
  offerOf(mac: Mac, now: number): IPv4 | null {
    const n = this.offerByMac.get(mac);
    if (n === undefined) return null;
    const o = this.offers.get(n);
    return o && o.until > now ? intToIp(n) : null;
  }

  /** Who holds the address now: an unexpired offer or lease, or a quarantine. Null when free. */
  holder(ip: string, now: number): Holder | null {
    return this.holderOf(ipToInt(ip), now);
  }

  /** `holder` for an address already in numeric form. */
  holderOf(n: number, now: number): Holder | null {
    const o = this.offers.get(n);
    if (o && o.until > now) return { kind: 'offer', mac: o.mac };
    const l = this.leases.get(n);
    if (!l || l.until <= now) return null;
    if (l.state === 'bound') return { kind: 'bound', mac: l.mac as Mac };
    if (l.state === 'declined') return { kind: 'quarantine', mac: null };
    return null;
  }

  /** Free for this MAC: nobody holds it, or the MAC itself does. */
  freeFor(ip: string, mac: Mac, now: number): boolean {
    const h = this.holder(ip, now);
    return h === null || h.mac === mac;
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
      const skip = this.reservedSkip.get(n);
      if (skip !== undefined && skip > now) continue;
      if (this.holderOf(n, now) !== null) continue;
      // A free address still remembered for another MAC (released or expired) is taken only
      // once no never-used address is left ahead of the cursor: the scan reaches it last anyway.
      return intToIp(n);
    }
    return null;
  }

  /** Marks an address as reserved for another machine, so `nextFree` passes over it for a while. */
  skipReserved(ip: string, until: number): void {
    this.reservedSkip.set(ipToInt(ip), until);
  }

  /** Holds an offered address for the MAC (drops any earlier offer to it). */
  hold(ip: string, mac: Mac, now: number, until: number, range?: IPv4Range): void {
    this.unoffer(mac);
    const n = ipToInt(ip);
    this.offers.set(n, { mac, until });
    this.offerByMac.set(mac, n);
    if (range) this.cursors.set(rangeKey(range), n - ipToInt(range.start) + 1);
    if (++this.holdsSinceSweep >= 4096) this.sweep(now);
  }

  unoffer(mac: Mac): void {
    const n = this.offerByMac.get(mac);
    if (n === undefined) return;
    this.offerByMac.delete(mac);
    if (this.offers.get(n)?.mac === mac) this.offers.delete(n);
  }

  /** Mirrors a committed binding: the MAC now holds this address and no other. */
  bind(ip: string, mac: Mac, until: number): void {
    this.unoffer(mac);
    this.setLease(ipToInt(ip), mac, 'bound', until);
  }

  release(ip: string, mac: Mac, now: number): void {
    const n = ipToInt(ip);
    const l = this.leases.get(n);
    if (l && l.mac === mac) this.leases.set(n, { mac, state: 'released', until: now });
  }

  decline(ip: string, until: number): void {
    this.setLease(ipToInt(ip), null, 'declined', until);
  }

  /** Drops what the book knows about an address and a MAC (before reloading them from the store). */
  forget(ip: string, mac: Mac): void {
    const n = ipToInt(ip);
    const l = this.leases.get(n);
    if (l?.mac && this.leaseByMac.get(l.mac) === n) this.leaseByMac.delete(l.mac);
    this.leases.delete(n);
    const m = this.leaseByMac.get(mac);
    if (m !== undefined) {
      this.leases.delete(m);
      this.leaseByMac.delete(mac);
    }
    this.unoffer(mac);
  }

  private setLease(n: number, mac: Mac | null, state: LeaseState, until: number): void {
    const previous = this.leases.get(n);
    if (previous?.mac && previous.mac !== mac && this.leaseByMac.get(previous.mac) === n) this.leaseByMac.delete(previous.mac);
    if (mac) {
      const old = this.leaseByMac.get(mac);
      if (old !== undefined && old !== n) this.leases.delete(old);
      this.leaseByMac.set(mac, n);
    }
    this.leases.set(n, { mac, state, until });
    const o = this.offers.get(n);
    if (o && o.mac !== mac) {
      this.offers.delete(n);
      if (this.offerByMac.get(o.mac) === n) this.offerByMac.delete(o.mac);
    }
  }

  /** Forgets expired offers (a DISCOVER-only flood must not grow memory without bound). */
  private sweep(now: number): void {
    this.holdsSinceSweep = 0;
    for (const [n, o] of this.offers) {
      if (o.until <= now) {
        this.offers.delete(n);
        if (this.offerByMac.get(o.mac) === n) this.offerByMac.delete(o.mac);
      }
    }
  }
}
