import { ProtocolError } from './errors.js';
import {
  OPTION,
  decodeSubOptions,
  getClientArch,
  getClientGuid,
  getClientNdi,
  getIp,
  getIpList,
  getMaxMessageSize,
  getMessageType,
  getParameterList,
  getString,
  getUint32,
  getUserClasses,
  guidToUuid,
  optionName,
} from './options.js';
import type { DhcpPacket } from './packet.js';

/**
 * A stable, line-per-field text form of a packet: what golden files store beside the hex and
 * what a debug log shows. Known options are shown decoded, every option also as hex, so a
 * change in either the bytes or their meaning shows up in a diff.
 */
export function formatDhcp(p: DhcpPacket): string {
  const lines = [
    `op ${p.op} htype ${p.htype} hlen ${p.hlen} hops ${p.hops}`,
    `xid 0x${p.xid.toString(16).padStart(8, '0')} secs ${p.secs} flags 0x${p.flags.toString(16).padStart(4, '0')}`,
    `ciaddr ${p.ciaddr} yiaddr ${p.yiaddr} siaddr ${p.siaddr} giaddr ${p.giaddr}`,
    `chaddr ${p.chaddr.subarray(0, p.hlen).toString('hex')}`,
    `sname ${JSON.stringify(p.sname)}`,
    `file ${JSON.stringify(p.file)}`,
  ];
  for (const [code, value] of p.options) {
    lines.push(`option ${code} ${optionName(code)} [${value.length}] ${value.toString('hex')}${describe(p, code)}`);
  }
  return lines.join('\n') + '\n';
}

function describe(p: DhcpPacket, code: number): string {
  try {
    const v = meaning(p, code);
    return v === undefined ? '' : ` = ${v}`;
  } catch (err) {
    if (err instanceof ProtocolError) return ` (malformed: ${err.code})`;
    throw err;
  }
}

function meaning(p: DhcpPacket, code: number): string | undefined {
  const o = p.options;
  switch (code) {
    case OPTION.MESSAGE_TYPE:
      return getMessageType(o) ?? undefined;
    case OPTION.SUBNET_MASK:
    case OPTION.REQUESTED_IP:
    case OPTION.SERVER_ID:
    case OPTION.BROADCAST_ADDRESS:
      return getIp(o, code) ?? undefined;
    case OPTION.ROUTER:
    case OPTION.DNS_SERVERS:
      return getIpList(o, code)?.join(',');
    case OPTION.LEASE_TIME:
    case OPTION.RENEWAL_TIME:
    case OPTION.REBINDING_TIME:
      return String(getUint32(o, code));
    case OPTION.MAX_MESSAGE_SIZE:
      return String(getMaxMessageSize(o));
    case OPTION.PARAMETER_LIST:
      return getParameterList(o)?.join(',');
    case OPTION.HOSTNAME:
    case OPTION.DOMAIN_NAME:
    case OPTION.VENDOR_CLASS:
    case OPTION.BOOTFILE_NAME:
    case OPTION.TFTP_SERVER_NAME:
    case OPTION.MESSAGE:
      return JSON.stringify(getString(o, code));
    case OPTION.USER_CLASS:
      return JSON.stringify(getUserClasses(o));
    case OPTION.CLIENT_ARCH:
      return getClientArch(o)?.join(',');
    case OPTION.CLIENT_NDI: {
      const n = getClientNdi(o);
      return n ? `type ${n.type} v${n.major}.${n.minor}` : undefined;
    }
    case OPTION.CLIENT_GUID: {
      const g = getClientGuid(o);
      return g ? guidToUuid(g) : undefined;
    }
    case OPTION.VENDOR_SPECIFIC:
    case OPTION.IPXE_ENCAP:
    case OPTION.RELAY_AGENT_INFO: {
      const v = o.get(code);
      if (!v) return undefined;
      // Option 43 is PXE-encapsulated only when the client says PXEClient (RFC 2132 §8.4).
      if (code === OPTION.VENDOR_SPECIFIC && !(getString(o, OPTION.VENDOR_CLASS) ?? '').startsWith('PXEClient')) return undefined;
      const subs = decodeSubOptions(v);
      return [...subs].map(([c, b]) => `${c}:${b.toString('hex')}`).join(' ');
    }
    default:
      return undefined;
  }
}
