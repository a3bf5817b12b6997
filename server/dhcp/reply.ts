import type { IPv4 } from '../lib/ipv4.js';
import type { ClientInfo } from './classify.js';
import {
  IPXE_SUBOPTION,
  OPTION,
  PXE_SUBOPTION,
  messageTypeOption,
  stringOption,
  subOptionsValue,
  uint8Option,
  type MessageTypeName,
} from './options.js';
import { ZERO_IP, isBroadcast, type DhcpPacket } from './packet.js';

/** UDP ports: RFC 2131 §4.1 (67 server, 68 client) and PXE spec 2.1 (4011 boot server). */
export const SERVER_PORT = 67;
export const CLIENT_PORT = 68;
export const BOOT_SERVER_PORT = 4011;

export interface ReplyFields {
  readonly yiaddr?: IPv4;
  readonly ciaddr?: IPv4;
  readonly siaddr?: IPv4;
  readonly file?: string;
}

/**
 * A reply skeleton per RFC 2131 §4.3.1 table 3: BOOTREPLY, xid/flags/giaddr/chaddr copied from
 * the request, hops and secs zero. Options go in the order given, message type first; option 82
 * is appended last, echoed verbatim (RFC 3046 §2.2).
 */
export function buildReply(req: DhcpPacket, type: MessageTypeName, fields: ReplyFields, options: ReadonlyMap<number, Buffer>): DhcpPacket {
  const opts = replyOptions(type);
  for (const [code, value] of options) if (code !== OPTION.RELAY_AGENT_INFO) opts.set(code, value);
  return replyPacket(req, fields.yiaddr ?? ZERO_IP, fields.ciaddr ?? ZERO_IP, fields.siaddr ?? ZERO_IP, fields.file ?? '', opts);
}

/**
 * The options of a reply of this type, message type first, for the caller to fill in order and
 * hand to `replyPacket` (the hot path builds one map per reply instead of copying a second).
 */
export function replyOptions(type: MessageTypeName): Map<number, Buffer> {
  // Built by set, not from an entry list: the Map constructor walks its argument as an iterator.
  const options = new Map<number, Buffer>();
  options.set(OPTION.MESSAGE_TYPE, messageTypeOption(type));
  return options;
}

/**
 * `buildReply` for options made by `replyOptions` (taken over, not copied; no option 82 in them).
 * The addresses come as arguments, not as a fields object: the hot path then makes no object
 * whose shape varies with which fields a reply sets (that made these reads megamorphic).
 */
export function replyPacket(req: DhcpPacket, yiaddr: IPv4, ciaddr: IPv4, siaddr: IPv4, file: string, options: Map<number, Buffer>): DhcpPacket {
  const agent = req.options.get(OPTION.RELAY_AGENT_INFO);
  if (agent) options.set(OPTION.RELAY_AGENT_INFO, agent);
  return {
    op: 'BOOTREPLY',
    htype: req.htype,
    hlen: req.hlen,
    hops: 0,
    xid: req.xid,
    secs: 0,
    flags: req.flags,
    ciaddr,
    yiaddr,
    siaddr,
    giaddr: req.giaddr,
    chaddr: req.chaddr,
    sname: '',
    file,
    options,
  };
}

export interface BootOptions {
  readonly fields: { readonly file: string };
  readonly options: ReadonlyMap<number, Buffer>;
}

/** A client with no bootfile (most DHCP clients): one shared, empty answer. */
const NO_BOOT: BootOptions = { fields: { file: '' }, options: new Map() };

// The same values in every booting client's reply, encoded once (encoding copies them; nothing
// writes into an option value).
const HTTP_CLIENT = stringOption('HTTPClient');
const PXE_CLIENT = stringOption('PXEClient');
/** 43.6 PXE_DISCOVERY_CONTROL = 8: boot the file in this offer, no boot server discovery. */
const BOOT_THIS_FILE = subOptionsValue(new Map([[PXE_SUBOPTION.DISCOVERY_CONTROL, uint8Option(8)]]));
/** 175.176 = 1: iPXE need not wait for ProxyDHCP offers. */
const NO_PXEDHCP = subOptionsValue(new Map([[IPXE_SUBOPTION.NO_PXEDHCP, uint8Option(1)]]));

/** The 128-byte `file` field holds a NUL-terminated name: 127 bytes at most (RFC 2131 §2). */
const FILE_FIELD_MAX = 127;

/**
 * Boot instructions for a booting client, shared by both modes: `siaddr` and `file` (what PXE
 * ROMs read), option 67 when the name is too long for `file` or the client asked for it (iPXE
 * reads it), option 60 mirrored (PXE spec 2.1 §2.4.1: a PXE reply carries `PXEClient`; UEFI HTTP
 * Boot needs `HTTPClient`, UEFI 2.5 §24.7), and the client GUID echoed (PXE spec §2.5).
 * `pxeVendor`: add option 43 with PXE_DISCOVERY_CONTROL = 8 ("boot the file in this offer, no
 * boot server discovery") — for BIOS PXE ROMs only; UEFI clients get none so that firmware that
 * ignores a plain proxy offer asks the boot server on 4011 instead (pixiecore does the same).
 */
export function bootOptions(info: ClientInfo, opts: { readonly pxeVendor: boolean; readonly ipxeNoProxy: boolean; readonly uefiPxeClient?: boolean }): BootOptions {
  const boot = info.bootfile;
  if (!boot) return NO_BOOT;
  const options = new Map<number, Buffer>();
  const fits = Buffer.byteLength(boot.name, 'latin1') <= FILE_FIELD_MAX;
  const asked = info.parameterList?.includes(OPTION.BOOTFILE_NAME) ?? false;
  if (info.httpBoot && !info.ipxe) options.set(OPTION.VENDOR_CLASS, HTTP_CLIENT);
  // `uefiPxeClient: false` (authoritative mode): no `PXEClient` to UEFI firmware. EDK2 (OVMF
  // 2022.11) takes a full offer that says PXEClient without PXE vendor options as one that needs
  // boot-server discovery, finds none, and stops with "PXE-E16: No valid offer received"; the same
  // offer without option 60 boots the file at once (dnsmasq answers so; QEMU test, boot chain).
  else if (info.pxe && (opts.uefiPxeClient !== false || info.firmware === 'bios')) options.set(OPTION.VENDOR_CLASS, PXE_CLIENT);
  if (opts.pxeVendor && info.pxe && !info.ipxe && !info.chainloaded && info.firmware === 'bios') {
    options.set(OPTION.VENDOR_SPECIFIC, BOOT_THIS_FILE);
  }
  if (info.guid) options.set(OPTION.CLIENT_GUID, info.guid);
  if (info.ipxe && opts.ipxeNoProxy) {
    options.set(OPTION.IPXE_ENCAP, NO_PXEDHCP);
  }
  if (!fits || asked) options.set(OPTION.BOOTFILE_NAME, stringOption(boot.name));
  return { fields: { file: fits ? boot.name : '' }, options };
}

export interface Destination {
  readonly address: string;
  readonly port: number;
  /** Sent to 255.255.255.255 out of the serving interface. */
  readonly broadcast: boolean;
  readonly why: 'relay' | 'ciaddr' | 'broadcast-flag' | 'broadcast' | 'nak-broadcast' | 'source';
}

/**
 * Where a reply goes, RFC 2131 §4.1 ("If the 'giaddr' field … is not zero, the server sends any
 * return messages to the 'DHCP server' port on the BOOTP relay agent whose address appears in
 * 'giaddr'. If the 'giaddr' field is zero and the 'ciaddr' field is nonzero, then the server
 * unicasts DHCPOFFER and DHCPACK messages to the address in 'ciaddr'. If 'giaddr' is zero and
 * 'ciaddr' is zero, and the broadcast bit is set, then the server broadcasts … In all cases,
 * when 'giaddr' is zero, the server broadcasts any DHCPNAK messages").
 * The remaining case (unicast to yiaddr at chaddr) needs an ARP entry written by the server,
 * which Node cannot do; such replies are broadcast, which every client accepts.
 */
export function destination(req: DhcpPacket, reply: DhcpPacket, serverPort: number): Destination {
  const type = reply.options.get(OPTION.MESSAGE_TYPE)?.[0];
  if (req.giaddr !== ZERO_IP) return { address: req.giaddr, port: serverPort, broadcast: false, why: 'relay' };
  if (type === 6) return { address: '255.255.255.255', port: CLIENT_PORT, broadcast: true, why: 'nak-broadcast' };
  if (req.ciaddr !== ZERO_IP) return { address: req.ciaddr, port: CLIENT_PORT, broadcast: false, why: 'ciaddr' };
  if (isBroadcast(req)) return { address: '255.255.255.255', port: CLIENT_PORT, broadcast: true, why: 'broadcast-flag' };
  return { address: '255.255.255.255', port: CLIENT_PORT, broadcast: true, why: 'broadcast' };
}
