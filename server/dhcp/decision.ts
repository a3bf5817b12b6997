import type { IPv4, IPv4Range } from '../lib/ipv4.js';
import type { Mac } from '../lib/mac.js';
import type { ClientInfo } from './classify.js';
import type { DhcpPacket } from './packet.js';

/**
 * What every decision function returns: a reply (or null: stay silent), why, and the change to
 * the address space the loop must apply (persisting a binding before the ACK goes out).
 */

export type ReplyReason =
  | 'offer'
  | 'ack'
  /** The client's young lease given again as it stands, with the time it has left (no write). */
  | 'ack-reused'
  | 'ack-inform'
  | 'nak-wrong-network'
  | 'nak-wrong-address'
  | 'nak-taken'
  | 'proxy-offer'
  | 'boot-server-ack';

export type SilentReason =
  | 'released'
  | 'declined'
  /** op is BOOTREPLY: another server's (or our own) reply seen on the wire. */
  | 'ignored-bootreply'
  /** No option 53: plain BOOTP, which racksmith does not serve. */
  | 'ignored-bootp'
  /** chaddr is not an Ethernet address (htype 1, hlen 6). */
  | 'ignored-not-ethernet'
  /** OFFER, ACK or NAK sent to a server port. */
  | 'ignored-server-message'
  /** RACKSMITH_DHCP_IGNORE_UNKNOWN and the MAC is not in the inventory. */
  | 'ignored-unknown-mac'
  /** No pool covers the subnet the request came from (relay giaddr or interface). */
  | 'ignored-no-pool'
  | 'ignored-pool-exhausted'
  /** REQUEST naming another server: the client took someone else's offer. */
  | 'ignored-other-server'
  /** INIT-REBOOT for a client we have no record of: RFC 2131 §4.3.2 says remain silent. */
  | 'ignored-no-record'
  /** RELEASE/DECLINE for an address the client does not hold here. */
  | 'ignored-not-holder'
  /** REQUEST with neither option 50 nor ciaddr. */
  | 'ignored-no-address'
  /** ProxyDHCP: not a PXE/HTTP-boot client (the site's DHCP server answers it). */
  | 'ignored-not-pxe'
  /** ProxyDHCP: a message other than DISCOVER on port 67 (REQUESTs go to the site server). */
  | 'ignored-not-discover'
  /** A booting client we have no binary for (i386/arm32 EFI, or arm64 without one installed). */
  | 'ignored-no-bootfile';

export type Reason = ReplyReason | SilentReason;

export type LeaseEffect =
  /** `range`: the pool whose next-fit cursor moves past `ip` — set only for a new address. */
  | { readonly kind: 'hold'; readonly ip: IPv4; readonly mac: Mac; readonly until: number; readonly range: IPv4Range | null }
  | { readonly kind: 'unhold'; readonly mac: Mac }
  | {
      readonly kind: 'bind';
      readonly ip: IPv4;
      readonly mac: Mac;
      readonly until: number;
      readonly clientId: string | null;
      readonly hostname: string | null;
    }
  | { readonly kind: 'release'; readonly ip: IPv4; readonly mac: Mac }
  | { readonly kind: 'decline'; readonly ip: IPv4; readonly mac: Mac; readonly until: number };

export interface Decision {
  readonly reply: DhcpPacket | null;
  readonly reason: Reason;
  readonly effect: LeaseEffect | null;
}

export function silent(reason: SilentReason, effect: LeaseEffect | null = null): Decision {
  return { reply: null, reason, effect };
}

/** Checks both modes share: which requests a server considers at all. */
export function screen(req: DhcpPacket, info: ClientInfo): SilentReason | null {
  if (req.op !== 'BOOTREQUEST') return 'ignored-bootreply';
  if (info.messageType === null) return 'ignored-bootp';
  if (info.mac === null) return 'ignored-not-ethernet';
  if (info.messageType === 'offer' || info.messageType === 'ack' || info.messageType === 'nak') return 'ignored-server-message';
  return null;
}
