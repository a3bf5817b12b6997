import type { FileErrorCode } from '../lib/files.js';
import { TFTP_ERRORS, type TftpPacket } from './packet.js';

/**
 * What to do with a datagram that reached the TFTP port, before any file is touched. Pure: the
 * loop supplies the load figures and carries out the verdict.
 */

export interface Load {
  /** Transfers running now (including ones being set up). */
  readonly active: number;
  /** Transfers running now for this client address. */
  readonly fromClient: number;
  /** A transfer is already running for this exact client address and port. */
  readonly sameClientPort: boolean;
}

export interface Limits {
  readonly maxTransfers: number;
  readonly maxClientTransfers: number;
}

/** Counter names a refusal or drop is counted under. */
export type RefusalCounter =
  | 'refusedWrite'
  | 'refusedMode'
  | 'refusedNotFound'
  | 'refusedDenied'
  | 'refusedUnreadable'
  | 'refusedBusy'
  | 'refusedClientLimit'
  | 'duplicateRequests'
  | 'unexpected';

export type Admission =
  | { readonly verdict: 'serve' }
  /** Answer with a TFTP ERROR and forget the request. */
  | { readonly verdict: 'refuse'; readonly code: number; readonly message: string; readonly counter: RefusalCounter }
  /** Say nothing: the client will ask again (or was never a TFTP client). */
  | { readonly verdict: 'drop'; readonly counter: RefusalCounter; readonly reason: string };

export function admit(p: TftpPacket, load: Load, limits: Limits): Admission {
  if (p.op === 'WRQ') {
    // RFC 1350 §5 error 2: racksmith's TFTP is read-only; boot files never arrive this way.
    return { verdict: 'refuse', code: TFTP_ERRORS.accessViolation, message: 'read-only server: write requests are refused', counter: 'refusedWrite' };
  }
  if (p.op !== 'RRQ') return { verdict: 'drop', counter: 'unexpected', reason: `${p.op} sent to the TFTP port` };
  // A client that did not hear our first answer repeats its request from the same port; the
  // running transfer's own retransmission answers it, and a second transfer would only compete.
  if (load.sameClientPort) return { verdict: 'drop', counter: 'duplicateRequests', reason: 'repeated request for a running transfer' };
  if (p.mode === 'mail') return { verdict: 'refuse', code: TFTP_ERRORS.illegalOperation, message: 'mail mode is not supported', counter: 'refusedMode' };
  // Over a limit the request is dropped, not refused: PXE firmware repeats an unanswered request
  // after a few seconds, while an ERROR makes it give up the boot.
  if (load.active >= limits.maxTransfers) return { verdict: 'drop', counter: 'refusedBusy', reason: `${load.active} transfers running (tftp-max-transfers)` };
  if (load.fromClient >= limits.maxClientTransfers) {
    return { verdict: 'drop', counter: 'refusedClientLimit', reason: `${load.fromClient} transfers running for this client (tftp-max-client-transfers)` };
  }
  return { verdict: 'serve' };
}

/** The TFTP error for a file that could not be opened. */
export function fileRefusal(code: FileErrorCode): { code: number; message: string; counter: RefusalCounter } {
  switch (code) {
    case 'ERR_FILE_NOT_FOUND':
      return { code: TFTP_ERRORS.fileNotFound, message: 'file not found', counter: 'refusedNotFound' };
    case 'ERR_FILE_DENIED':
      // The client learns that it may not, not why: the reason goes to the log.
      return { code: TFTP_ERRORS.accessViolation, message: 'access violation', counter: 'refusedDenied' };
    case 'ERR_FILE_UNREADABLE':
      return { code: TFTP_ERRORS.notDefined, message: 'cannot read the file', counter: 'refusedUnreadable' };
  }
}
