import type { IPv4 } from '../lib/ipv4.js';
import { isBootClient, type ClientInfo } from './classify.js';
import { screen, silent, type Decision } from './decision.js';
import { OPTION, PXE_SUBOPTION, decodeSubOptions, serverIdOption, subOptionsValue } from './options.js';
import { ZERO_IP, type DhcpPacket } from './packet.js';
import { bootOptions, buildReply } from './reply.js';

/**
 * ProxyDHCP (PXE spec 2.1 §2.2.3, the way pixiecore and dnsmasq's `proxy` ranges do it): beside a
 * site's DHCP server, answer only booting clients, never with an address. Port 67 answers
 * DISCOVERs with an OFFER that carries boot instructions; port 4011 (the PXE boot server)
 * answers the REQUEST that UEFI firmware and iPXE send there after their DHCP is done.
 */

export interface ProxyFacts {
  /** Our address toward the client: option 54 and, for TFTP bootfiles, `siaddr`. */
  readonly serverId: IPv4;
  readonly nextServer: IPv4;
  readonly ignoreUnknown: boolean;
  readonly known: boolean;
}

function gate(req: DhcpPacket, info: ClientInfo, f: ProxyFacts): Decision | null {
  const screened = screen(req, info);
  if (screened) return silent(screened);
  if (!isBootClient(info)) return silent('ignored-not-pxe');
  if (f.ignoreUnknown && !f.known) return silent('ignored-unknown-mac');
  if (!info.bootfile) return silent('ignored-no-bootfile');
  return null;
}

/** Port 67: an OFFER with no lease (yiaddr 0) to a PXE DISCOVER; everything else is the site's. */
export function decideProxy(req: DhcpPacket, info: ClientInfo, f: ProxyFacts): Decision {
  const gated = gate(req, info, f);
  if (gated) return gated;
  if (info.messageType !== 'discover') return silent('ignored-not-discover');
  const boot = bootOptions(info, { pxeVendor: true, ipxeNoProxy: false });
  const options = new Map<number, Buffer>([[OPTION.SERVER_ID, serverIdOption(f.serverId)], ...boot.options]);
  const siaddr = info.bootfile?.kind === 'tftp' ? f.nextServer : ZERO_IP;
  return { reply: buildReply(req, 'offer', { siaddr, file: boot.fields.file }, options), reason: 'proxy-offer', effect: null };
}

/**
 * Port 4011: the boot server. The client has its address by now (ciaddr) and unicasts a
 * REQUEST (EDK2's "BINL" request; iPXE's ProxyDHCP request); the ACK carries the bootfile and
 * goes back to where the request came from. A PXE boot item (43.71) is echoed so that a ROM
 * that asked for item N sees item N answered (PXE spec 2.1 §2.2.5).
 */
export function decideBootServer(req: DhcpPacket, info: ClientInfo, f: ProxyFacts): Decision {
  const gated = gate(req, info, f);
  if (gated) return gated;
  if (info.messageType !== 'request' && info.messageType !== 'inform') return silent('ignored-not-discover');
  const boot = bootOptions(info, { pxeVendor: false, ipxeNoProxy: false });
  const options = new Map<number, Buffer>([[OPTION.SERVER_ID, serverIdOption(f.serverId)], ...boot.options]);
  const item = bootItem(req, info);
  if (item) options.set(OPTION.VENDOR_SPECIFIC, subOptionsValue(new Map([[PXE_SUBOPTION.BOOT_ITEM, item]])));
  const siaddr = info.bootfile?.kind === 'tftp' ? f.nextServer : ZERO_IP;
  return {
    reply: buildReply(req, 'ack', { ciaddr: req.ciaddr, siaddr, file: boot.fields.file }, options),
    reason: 'boot-server-ack',
    effect: null,
  };
}

function bootItem(req: DhcpPacket, info: ClientInfo): Buffer | null {
  const v = req.options.get(OPTION.VENDOR_SPECIFIC);
  if (!v || !info.pxe) return null;
  return decodeSubOptions(v).get(PXE_SUBOPTION.BOOT_ITEM) ?? null;
}
