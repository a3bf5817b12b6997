/**
 * The one error the DHCP codec throws. `code` says what kind of malformation it was (tests and
 * the socket loop's drop counters key on it); the message says what and where, e.g.
 * "option 93 at offset 250 claims 4 bytes, 2 remain".
 */
export type DhcpErrorCode =
  /** Fewer bytes than the fixed BOOTP header (236) plus the magic cookie (4). */
  | 'ERR_DHCP_SHORT'
  /** The four bytes after the header are not 99.130.83.99 (RFC 2131 §3, RFC 1497). */
  | 'ERR_DHCP_COOKIE'
  /** `op` is neither 1 (BOOTREQUEST) nor 2 (BOOTREPLY). */
  | 'ERR_DHCP_OP'
  /** `hlen` exceeds the 16-byte `chaddr` field. */
  | 'ERR_DHCP_HLEN'
  /** An option's length byte, or its value, runs past the end of the area it is in. */
  | 'ERR_DHCP_OPTION_TRUNCATED'
  /** An option's value has a length its type does not allow (option 53 must be 1 byte…). */
  | 'ERR_DHCP_OPTION_LENGTH'
  /** An option's value is outside its allowed set (message type 9, overload 4…). */
  | 'ERR_DHCP_OPTION_VALUE'
  /** Option 52 (overload) is malformed or appears inside `file`/`sname` (RFC 2131 §4.1). */
  | 'ERR_DHCP_OVERLOAD'
  /** A sub-option inside an encapsulating option (43, 82, 175) runs past its parent's value. */
  | 'ERR_DHCP_SUBOPTION_TRUNCATED'
  /** Encoding was asked for something the wire format cannot carry (a 200-byte `file`). */
  | 'ERR_DHCP_ENCODE';

export class ProtocolError extends Error {
  readonly code: DhcpErrorCode;
  /** Byte offset in the datagram where the problem was found, when there is one. */
  readonly offset: number | undefined;

  constructor(code: DhcpErrorCode, message: string, offset?: number) {
    super(message);
    this.name = 'ProtocolError';
    this.code = code;
    this.offset = offset;
  }
}

export function isProtocolError(err: unknown): err is ProtocolError {
  return err instanceof ProtocolError;
}
