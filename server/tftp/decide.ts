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
  /** Requests waiting for a free transfer slot. */
  readonly waiting: number;
  /** Requests of this client address waiting for a slot (they count towards its limit). */
  readonly waitingFromClient: number;
  /** This client address already waits for this file (a repeat, perhaps from a new port). */
  readonly waitingAlready: boolean;
}

/**
 * A held request older than this (since its client last repeated it) is dropped unstarted: the
 * firmware has given up on that socket by then (PXE ROMs wait at most a few seconds between
 * retransmissions, the longest we know of is 8 s), and an OACK to a socket nobody reads would
 * hold a slot through every retransmission.
 */
export const WAIT_MAX_MS = 10_000;

/** How many requests may wait for a slot: enough for a whole site powering on behind one limit. */
export function maxWaiting(maxTransfers: number): number {
  return Math.max(1024, maxTransfers * 16);
}

export interface Limits {
  readonly maxTransfers: number;
  readonly maxClientTransfers: number;
  /** Requests held over `maxTransfers`, started in arrival order as transfers end. */
  readonly maxWaiting: number;
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
  | 'waited'
  | 'unexpected';

export type Admission =
  | { readonly verdict: 'serve' }
  /** Hold the request until a transfer ends (a repeat updates the one already held). */
  | { readonly verdict: 'wait'; readonly counter: 'waited' | 'duplicateRequests'; readonly reason: string }
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
  // At the total limit the request waits in line for a slot rather than being dropped: firmware
  // retransmits on a fixed schedule, so a burst of machines asks again in waves, and each wave
  // would find the slots taken by the few admitted from the wave before (decision 0406).
  if (load.active >= limits.maxTransfers) {
    if (load.waitingAlready) return { verdict: 'wait', counter: 'duplicateRequests', reason: 'repeated request, already waiting for a slot' };
    if (load.fromClient + load.waitingFromClient >= limits.maxClientTransfers) return clientLimit(load);
    if (load.waiting >= limits.maxWaiting) return { verdict: 'drop', counter: 'refusedBusy', reason: `${load.active} transfers running and ${load.waiting} requests waiting` };
    return { verdict: 'wait', counter: 'waited', reason: `${load.active} transfers running (tftp-max-transfers)` };
  }
  if (load.fromClient >= limits.maxClientTransfers) return clientLimit(load);
  return { verdict: 'serve' };
}

// Over a limit nothing is answered: PXE firmware repeats an unanswered request after a few
// seconds, while an ERROR makes it give up the boot.
function clientLimit(load: Load): Admission {
  return { verdict: 'drop', counter: 'refusedClientLimit', reason: `${load.fromClient} transfers running for this client (tftp-max-client-transfers)` };
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
