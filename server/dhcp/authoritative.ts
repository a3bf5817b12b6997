import type { IPv4, IPv4Range } from '../lib/ipv4.js';
import type { Mac } from '../lib/mac.js';
import type { LeaseState } from '../inventory/model.js';
import type { ClientInfo } from './classify.js';
import { screen, silent, type Decision, type LeaseEffect, type ReplyReason } from './decision.js';
import { OPTION, getIp, ipListOption, ipOption, serverIdOption, stringOption, uint32Option } from './options.js';
import { ZERO_IP, type DhcpPacket } from './packet.js';
import { bootOptions, buildReply, replyOptions, replyPacket } from './reply.js';

/**
 * Authoritative mode, RFC 2131 §4.3: racksmith owns a pool and answers every client on its
 * subnet (unless told to ignore unknown MACs). A pure function of the request and the facts the
 * loop gathered; the loop applies the returned effect (persisting a binding before the ACK).
 */

export interface PoolConfig {
  readonly range: IPv4Range;
  readonly network: IPv4;
  readonly mask: IPv4;
  readonly router: IPv4 | null;
  readonly dns: readonly IPv4[];
  readonly leaseSeconds: number;
  /**
   * A lease younger than this fraction of `leaseSeconds` is reused: ACKed again unchanged, with
   * the time it has left, and not written again (Kea's cache-threshold). 0: never.
   */
  readonly cacheThreshold: number;
}

/** One address as it stands for this client. */
export interface AddressFacts {
  readonly ip: IPv4;
  /** Inside the pool's subnet. */
  readonly onSubnet: boolean;
  /** Inside the pool's dynamic range. */
  readonly inRange: boolean;
  /** Who holds it now: nobody, this client, another client (offer or lease), or a quarantine. */
  readonly holder: 'none' | 'self' | 'other' | 'quarantine';
  /** Reserved (a machine's `ip` in the inventory) for this client, for another one, or not at all. */
  readonly reserved: 'self' | 'other' | null;
}

export interface AuthoritativeFacts {
  /** ms since the epoch. */
  readonly now: number;
  /** Our address toward the client: option 54 (RFC 2131 §4.3.1). */
  readonly serverId: IPv4;
  /** `siaddr`: where the TFTP bootfile is (RFC 2131 §2: "next server"). */
  readonly nextServer: IPv4;
  /** The pool for the request's subnet (chosen by giaddr, else by interface), or null. */
  readonly pool: PoolConfig | null;
  readonly ignoreUnknown: boolean;
  /** The MAC is in the inventory. */
  readonly known: boolean;
  /** The client's reservation (its machine's `ip`), or null. */
  readonly reservation: AddressFacts | null;
  /** The client's persisted lease, or null. */
  readonly lease:
    | (AddressFacts & {
        readonly state: LeaseState;
        readonly active: boolean;
        /** ms since the epoch. */
        readonly until: number;
        readonly clientId: string | null;
        readonly hostname: string | null;
        /** Committed to the store (false while its binding's commit is still pending). */
        readonly durable: boolean;
      })
    | null;
  /** The address last offered to this client, while the offer is held. */
  readonly offered: IPv4 | null;
  /** The address the client asks for (option 50, or ciaddr when renewing), as it stands. */
  readonly requested: AddressFacts | null;
  /** A free pool address for a client that needs a new one, or null (pool exhausted). */
  readonly candidate: IPv4 | null;
}

/** How long an offered address is held for the client's REQUEST. */
export const OFFER_HOLD_MS = 30_000;
/** How long a declined address stays out of the pool (RFC 2131 §4.3.3 leaves it to the server). */
export const DECLINE_QUARANTINE_MS = 3_600_000;

export function decideAuthoritative(req: DhcpPacket, info: ClientInfo, f: AuthoritativeFacts): Decision {
  const screened = screen(req, info);
  if (screened) return silent(screened);
  const mac = info.mac as Mac;
  if (f.ignoreUnknown && !f.known) return silent('ignored-unknown-mac');

  switch (info.messageType) {
    case 'discover':
      return discover(req, info, f, mac);
    case 'request':
      return request(req, info, f, mac);
    case 'decline': {
      // §4.3.3: the client found the address in use (ARP): take it out of service.
      const ip = getIp(req.options, OPTION.REQUESTED_IP);
      if (!ip || !f.lease || f.lease.ip !== ip) return silent('ignored-not-holder');
      return silent('declined', { kind: 'decline', ip, mac, until: f.now + DECLINE_QUARANTINE_MS });
    }
    case 'release':
      // §4.3.4: ciaddr is the address given back; keep the row so the client gets it back later.
      if (!f.lease || f.lease.ip !== req.ciaddr || !f.lease.active) return silent('ignored-not-holder');
      return silent('released', { kind: 'release', ip: req.ciaddr, mac });
    case 'inform':
      // §4.3.5: configuration only, no lease: no yiaddr, no lease time, unicast to ciaddr.
      if (!f.pool) return silent('ignored-no-pool');
      return reply(req, info, f, 'ack', 'ack-inform', ZERO_IP, req.ciaddr, false);
    default:
      return silent('ignored-server-message');
  }
}

function usable(a: AddressFacts): boolean {
  return a.onSubnet && (a.holder === 'none' || a.holder === 'self') && a.reserved !== 'other';
}

/** A dynamic address this client may take: in the range, free for it, not someone's reservation. */
function usableDynamic(a: AddressFacts): boolean {
  return usable(a) && (a.inRange || a.reserved === 'self');
}

/**
 * The client's reservation when it can have it now. One held by another client (a dynamic lease
 * granted before the reservation was made) is set aside until that lease ends, and the machine
 * gets a pool address meanwhile, as dnsmasq does.
 */
function reservedAddress(f: AuthoritativeFacts): IPv4 | null {
  return f.reservation && usable(f.reservation) ? f.reservation.ip : null;
}

function discover(req: DhcpPacket, info: ClientInfo, f: AuthoritativeFacts, mac: Mac): Decision {
  if (!f.pool) return silent('ignored-no-pool');
  // §4.3.1 order: the client's reservation, its current or previous address, the address it
  // asks for, then a new one from the pool.
  const reserved = reservedAddress(f);
  let ip: IPv4 | null = null;
  let fresh = false;
  if (reserved) ip = reserved;
  else if (f.offered) ip = f.offered;
  else if (f.lease && usableDynamic(f.lease)) ip = f.lease.ip;
  else if (f.requested && usableDynamic(f.requested)) ip = f.requested.ip;
  else {
    ip = f.candidate;
    fresh = true;
  }
  if (!ip) return silent('ignored-pool-exhausted');
  // Only a new address moves the pool's next-fit cursor: re-offering a returning client's old
  // address must not send the cursor back to it, or the next new client would scan forward
  // over every address bound since (and be given recently freed addresses first).
  return reply(req, info, f, 'offer', 'offer', ip, ZERO_IP, true, { kind: 'hold', ip, mac, until: f.now + OFFER_HOLD_MS, range: fresh ? f.pool.range : null }, reusable(f, info, ip));
}

function request(req: DhcpPacket, info: ClientInfo, f: AuthoritativeFacts, mac: Mac): Decision {
  const serverId = getIp(req.options, OPTION.SERVER_ID);
  const requestedIp = getIp(req.options, OPTION.REQUESTED_IP);
  if (serverId !== null && serverId !== f.serverId) {
    // SELECTING another server's offer: ours is no longer needed.
    return silent('ignored-other-server', f.offered ? { kind: 'unhold', mac } : null);
  }
  if (!f.pool) return silent('ignored-no-pool');
  const a = f.requested;
  if (!a || (requestedIp === null && req.ciaddr === ZERO_IP)) return silent('ignored-no-address');
  if (!a.onSubnet) return nak(req, f, 'nak-wrong-network', `${a.ip} is not on this network`);

  const reserved = reservedAddress(f);
  if (serverId !== null) {
    // SELECTING (§4.3.2): the client takes our offer. Grant it if the address is still this
    // client's to take (the offer may be gone after a restart: then it must still be free).
    if (reserved && reserved !== a.ip) return nak(req, f, 'nak-wrong-address', `${a.ip} is not the address reserved for this machine`);
    if (!usableDynamic(a)) return nak(req, f, 'nak-taken', `${a.ip} is not available`);
    return ack(req, info, f, mac, a.ip);
  }

  const renewing = requestedIp === null;
  if (reserved && reserved !== a.ip) {
    // The machine has a reservation elsewhere: send it back to INIT so it picks it up.
    return nak(req, f, 'nak-wrong-address', `this machine's address is ${reserved}`);
  }
  if (a.holder === 'other' || a.holder === 'quarantine' || a.reserved === 'other') return nak(req, f, 'nak-taken', `${a.ip} is held by another client`);
  if (renewing) {
    // RENEWING/REBINDING (ciaddr set): extend the client's lease; after a lost lease table,
    // adopt a free pool address rather than pull the rug from under a running machine.
    if (f.lease?.ip === a.ip || usableDynamic(a)) return ack(req, info, f, mac, a.ip);
    return nak(req, f, 'nak-wrong-address', `${a.ip} is not a lease of this server`);
  }
  // INIT-REBOOT: "If the DHCP server has no record of this client, then it MUST remain silent".
  const hasRecord = f.lease !== null || (f.reservation !== null && f.reservation.onSubnet);
  if (!hasRecord) return silent('ignored-no-record');
  if (reserved === a.ip || f.lease?.ip === a.ip) return ack(req, info, f, mac, a.ip);
  return nak(req, f, 'nak-wrong-address', `${a.ip} is not this client's address`);
}

function ack(req: DhcpPacket, info: ClientInfo, f: AuthoritativeFacts, mac: Mac, ip: IPv4): Decision {
  const pool = f.pool as PoolConfig;
  // The lease as it stands is already in the store: nothing to write before this ACK.
  const left = reusable(f, info, ip);
  if (left !== null) return reply(req, info, f, 'ack', 'ack-reused', ip, req.ciaddr, true, f.offered ? { kind: 'unhold', mac } : null, left);
  return reply(req, info, f, 'ack', 'ack', ip, req.ciaddr, true, {
    kind: 'bind',
    ip,
    mac,
    until: f.now + pool.leaseSeconds * 1000,
    clientId: info.clientId,
    hostname: info.hostname,
  });
}

function nak(req: DhcpPacket, f: AuthoritativeFacts, reason: ReplyReason, message: string): Decision {
  // §4.3.2 table 3: a NAK carries no address and no configuration, only the server id and a message.
  const options = new Map<number, Buffer>([
    [OPTION.SERVER_ID, ipOption(f.serverId)],
    [OPTION.MESSAGE, stringOption(message)],
  ]);
  return { reply: buildReply(req, 'nak', {}, options), reason, effect: null };
}

function reply(
  req: DhcpPacket,
  info: ClientInfo,
  f: AuthoritativeFacts,
  type: 'offer' | 'ack',
  reason: ReplyReason,
  yiaddr: IPv4,
  ciaddr: IPv4,
  lease: boolean,
  effect: LeaseEffect | null = null,
  secondsLeft: number | null = null,
): Decision {
  const pool = f.pool as PoolConfig;
  const options = replyOptions(type);
  options.set(OPTION.SERVER_ID, serverIdOption(f.serverId));
  const own = poolOptions(pool);
  for (const [code, value] of lease ? own.lease : own.config) options.set(code, value);
  // A reused lease: its own end, and T1/T2 of what is left (same places in the map, set again).
  if (lease && secondsLeft !== null) for (const [code, value] of leaseTimes(secondsLeft)) options.set(code, value);
  const boot = bootOptions(info, { pxeVendor: true, ipxeNoProxy: true, uefiPxeClient: false });
  for (const [code, value] of boot.options) options.set(code, value);
  const siaddr = info.bootfile?.kind === 'tftp' ? f.nextServer : ZERO_IP;
  return { reply: replyPacket(req, yiaddr, ciaddr, siaddr, boot.fields.file, options), reason, effect };
}

/**
 * Seconds left on the client's lease of `ip` when it can be given again as it stands, else null.
 * As Kea's lease caching: the lease is this client's, bound, committed, unexpired, for the same
 * client id and host name, and younger than `cacheThreshold` of a lease time (it has more than
 * the rest of one left). Its end was committed when it was bound, so the ACK needs no write; a
 * lease with more left than one lease time (the setting was lowered) is written again.
 */
function reusable(f: AuthoritativeFacts, info: ClientInfo, ip: IPv4): number | null {
  const pool = f.pool;
  const l = f.lease;
  if (!pool || pool.cacheThreshold <= 0 || !l || l.ip !== ip || !l.active || l.holder !== 'self') return null;
  // A binding whose commit has not finished is not in the store yet: an ACK must wait for it.
  if (!l.durable) return null;
  if (l.clientId !== info.clientId || l.hostname !== info.hostname) return null;
  const leftMs = l.until - f.now;
  const leaseMs = pool.leaseSeconds * 1000;
  if (leftMs > leaseMs || leftMs <= (1 - pool.cacheThreshold) * leaseMs) return null;
  return Math.floor(leftMs / 1000);
}

/** Options 51, 58 and 59 for a lease of `seconds`: §4.4.5, T1 defaults to 0.5 and T2 to 0.875 of it. */
function leaseTimes(seconds: number): [number, Buffer][] {
  return [
    [OPTION.LEASE_TIME, uint32Option(seconds)],
    [OPTION.RENEWAL_TIME, uint32Option(Math.floor(seconds * 0.5))],
    [OPTION.REBINDING_TIME, uint32Option(Math.floor(seconds * 0.875))],
  ];
}

type OptionList = readonly (readonly [number, Buffer])[];
const LEASE_TIMES: ReadonlySet<number> = new Set([OPTION.LEASE_TIME, OPTION.RENEWAL_TIME, OPTION.REBINDING_TIME]);
const poolOptionCache = new WeakMap<PoolConfig, { readonly lease: OptionList; readonly config: OptionList }>();

/**
 * A pool's own options, in reply order: with the lease times (OFFER, ACK) and without (an
 * INFORM's ACK). The same for every reply, so encoded once per pool.
 */
function poolOptions(pool: PoolConfig): { readonly lease: OptionList; readonly config: OptionList } {
  let options = poolOptionCache.get(pool);
  if (!options) {
    const lease: [number, Buffer][] = leaseTimes(pool.leaseSeconds);
    // RFC 2132 §3.5: the subnet mask comes before the router.
    lease.push([OPTION.SUBNET_MASK, ipOption(pool.mask)]);
    if (pool.router) lease.push([OPTION.ROUTER, ipOption(pool.router)]);
    if (pool.dns.length > 0) lease.push([OPTION.DNS_SERVERS, ipListOption(pool.dns)]);
    options = { lease, config: lease.filter(([code]) => !LEASE_TIMES.has(code)) };
    poolOptionCache.set(pool, options);
  }
  return options;
}
