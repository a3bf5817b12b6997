import { MAX_BLKSIZE, type TftpOption } from './packet.js';

/**
 * One read transfer as a pure state machine: option negotiation, windowing, block-number
 * rollover and retransmission decisions. The socket loop feeds it events (start, ACK, client
 * ERROR, timer expiry) and carries out the actions it returns; nothing here touches a socket, a
 * timer or a clock of its own, so every rule is testable as a table.
 *
 * Blocks are counted with absolute numbers (1, 2, … past 65535); only the wire carries them
 * modulo 65536, so block 65536 goes out as 0 (the rollover every current client expects).
 */

// ── Negotiation (RFC 2347, 2348, 2349, 7440) ───────────────────────────────────────────────

/** RFC 1350's fixed block size, used when the client asks for none. */
export const DEFAULT_BLKSIZE = 512;
/** RFC 2348 §2: "Valid values range between 8 and 65464 octets, inclusive." */
export const MIN_BLKSIZE = 8;
/** RFC 7440 §3: windowsize is 1 to 65535 blocks. */
export const MAX_WINDOWSIZE_RFC = 65535;

export interface NegotiationLimits {
  /** Largest block granted: the setting, already capped by the interface MTU. */
  readonly maxBlksize: number;
  readonly maxWindowsize: number;
}

export interface Negotiation {
  readonly blksize: number;
  readonly windowsize: number;
  /** RFC 2349 timeout the client asked for, in ms, or null. */
  readonly timeoutMs: number | null;
  /** The OACK to send, in the client's order and spelling; empty means "no OACK, start with DATA 1". */
  readonly oack: readonly TftpOption[];
  /** Options left out of the OACK (unknown, repeated, or with a value we cannot accept). */
  readonly ignored: readonly string[];
}

const DECIMAL = /^[0-9]{1,10}$/;

/**
 * Decides which requested options are granted. RFC 2347 §3: options the server does not accept
 * are simply omitted from the OACK — never add one the client did not ask for, since some UEFI
 * clients abort on an unrequested option. `size` is the number of bytes the transfer will send
 * (after any netascii conversion), which is what RFC 2349 `tsize` reports on a read.
 */
export function negotiate(requested: readonly TftpOption[], size: number, limits: NegotiationLimits): Negotiation {
  let blksize = DEFAULT_BLKSIZE;
  let windowsize = 1;
  let timeoutMs: number | null = null;
  const oack: TftpOption[] = [];
  const ignored: string[] = [];
  const seen = new Set<string>();
  for (const opt of requested) {
    const key = opt.name.toLowerCase();
    const n = DECIMAL.test(opt.value) ? Number(opt.value) : NaN;
    if (seen.has(key)) {
      ignored.push(opt.name);
      continue;
    }
    seen.add(key);
    switch (key) {
      case 'blksize':
        // RFC 2348 §2: the server may answer a smaller value, never a larger one.
        if (n >= MIN_BLKSIZE && n <= MAX_BLKSIZE) {
          blksize = Math.min(n, Math.max(MIN_BLKSIZE, limits.maxBlksize));
          oack.push({ name: opt.name, value: String(blksize) });
        } else ignored.push(opt.name);
        break;
      case 'tsize':
        // RFC 2349 §4: on a read request the client sends 0 and the server answers the size.
        if (Number.isFinite(n)) oack.push({ name: opt.name, value: String(size) });
        else ignored.push(opt.name);
        break;
      case 'timeout':
        // RFC 2349 §3: 1 to 255 seconds, echoed unchanged when accepted.
        if (n >= 1 && n <= 255) {
          timeoutMs = n * 1000;
          oack.push({ name: opt.name, value: String(n) });
        } else ignored.push(opt.name);
        break;
      case 'windowsize':
        // RFC 7440 §3: 1 to 65535; the server may answer a smaller value.
        if (n >= 1 && n <= MAX_WINDOWSIZE_RFC) {
          windowsize = Math.min(n, Math.max(1, limits.maxWindowsize));
          oack.push({ name: opt.name, value: String(windowsize) });
        } else ignored.push(opt.name);
        break;
      default:
        ignored.push(opt.name);
    }
  }
  return { blksize, windowsize, timeoutMs, oack, ignored };
}

// ── The transfer ─────────────────────────────────────────────────────────────────────────────

/** Floor for the adaptive retransmission timeout: below this a busy event loop alone would look like loss. */
export const MIN_RTO_MS = 30;
/** Ceiling for exponential backoff when the client sets no timeout. */
export const MAX_RTO_MS = 4000;

/**
 * Some clients answer a repeated block with one extra ACK and then ignore further repeats until
 * their own timer fires — atftp does, and its timer restarts on every packet it receives. If
 * that one extra ACK is lost too, a server that keeps retransmitting faster than the client's
 * timeout keeps the client from ever speaking again. So after QUIET_AFTER unanswered
 * retransmissions the server waits longer than the client's timeout (not sooner: at 10 % loss
 * each way two failed round trips in a row are common for clients that do re-ACK, and a gap
 * of seconds would cost them dearly; four in a row are rare): RFC 2349's value when the
 * client sent one, else CLIENT_QUIET_MS (atftp's and tftp-hpa's clients wait 5 s).
 */
export const QUIET_AFTER = 4;
export const CLIENT_QUIET_MS = 6000;

export function quietGap(config: TransferConfig): number {
  return config.clientTimeoutMs !== null ? Math.ceil(config.clientTimeoutMs * 1.5) : CLIENT_QUIET_MS;
}

/**
 * Timeouts in a row, with the final block sent, after which a transfer gives its slot to a
 * request waiting at tftp-max-transfers. The client has every block but the last ACK is lost, or
 * it has gone: PXE ROMs and most clients send the final ACK and leave without dallying (RFC 1350
 * §6 allows it), so waiting out every retry would hold the slot for most of a minute.
 */
export const YIELD_AFTER = 2;

/** Whether the transfer may end now as `unconfirmed` so a waiting request can start. */
export function mayYield(config: TransferConfig, s: TransferState): boolean {
  return s.phase === 'data' && s.sent === lastBlock(config.size, config.blksize) && s.retries >= YIELD_AFTER;
}

export interface TransferConfig {
  readonly size: number;
  readonly blksize: number;
  readonly windowsize: number;
  /** Start with an OACK and wait for ACK 0 (RFC 2347 §4). */
  readonly oack: boolean;
  /** First retransmission timeout (before a round trip is measured). */
  readonly timeoutMs: number;
  /**
   * Ceiling for the adaptive timeout and its backoff: MAX_RTO_MS, or the RFC 2349 timeout the
   * client asked for. We never wait longer than the client said; we may resend sooner when the
   * measured round trip says a block is lost, which costs a correct client only a duplicate.
   */
  readonly maxTimeoutMs: number;
  /** The RFC 2349 timeout the client sent (its own retransmission interval too), or null. */
  readonly clientTimeoutMs: number | null;
  /** Timeouts in a row without progress before the transfer is abandoned. */
  readonly maxRetries: number;
}

export type TransferPhase = 'oack' | 'data' | 'done' | 'failed';

export interface TransferState {
  readonly phase: TransferPhase;
  /** Highest block the client acknowledged (0: none yet, or the OACK). */
  readonly acked: number;
  /** Highest block sent so far. */
  readonly sent: number;
  /** Timeouts in a row without progress. */
  readonly retries: number;
  /** Current retransmission timeout, ms. */
  readonly rto: number;
  readonly srtt: number | null;
  readonly rttvar: number;
  /** When the outstanding window (or OACK) was first sent, for a round-trip sample. */
  readonly windowSentAt: number;
  /** Karn's rule: no round-trip sample from a window that was sent more than once. */
  readonly windowResent: boolean;
  /** Blocks (and OACKs) sent again, over the whole transfer. */
  readonly retransmissions: number;
  readonly timeouts: number;
}

export type TransferEvent =
  | { readonly type: 'start'; readonly now: number }
  | { readonly type: 'ack'; readonly block: number; readonly now: number }
  | { readonly type: 'timeout'; readonly now: number }
  | { readonly type: 'error'; readonly code: number; readonly message: string };

/**
 * `unconfirmed`: the final block went out but its ACK never came. RFC 1350 §6 asks the client to
 * dally and re-ACK, but tftp-hpa's and curl's clients exit at once: if that last ACK is lost the
 * client may well have the whole file.
 */
export type AbortReason = 'timeout' | 'unconfirmed' | 'client-error' | 'probe';

export type TransferAction =
  | { readonly type: 'send-oack' }
  /** Send blocks `first`..`last` (absolute numbers, inclusive). */
  | { readonly type: 'send-data'; readonly first: number; readonly last: number }
  | { readonly type: 'arm-timer'; readonly ms: number }
  | { readonly type: 'done' }
  | { readonly type: 'abort'; readonly reason: AbortReason; readonly detail: string };

/** What an event did besides its actions, for counters and debug logs. */
export type AckVerdict = 'progress' | 'duplicate' | 'stale' | 'ignored';

export interface StepResult {
  readonly state: TransferState;
  readonly actions: readonly TransferAction[];
  readonly verdict?: AckVerdict;
}

/** Number of the final block: RFC 1350 §6, a block shorter than blksize (possibly empty) ends the file. */
export function lastBlock(size: number, blksize: number): number {
  return Math.floor(size / blksize) + 1;
}

/** Byte range of an absolute block. */
export function blockRange(block: number, size: number, blksize: number): { start: number; end: number } {
  const start = (block - 1) * blksize;
  return { start, end: Math.min(start + blksize, size) };
}

export function initialState(config: TransferConfig): TransferState {
  return {
    phase: config.oack ? 'oack' : 'data',
    acked: 0,
    sent: 0,
    retries: 0,
    rto: Math.min(config.timeoutMs, config.maxTimeoutMs),
    srtt: null,
    rttvar: 0,
    windowSentAt: 0,
    windowResent: false,
    retransmissions: 0,
    timeouts: 0,
  };
}

/** RFC 6298 §2 smoothing, with our own floor and ceiling (a LAN, not the Internet). */
function withSample(config: TransferConfig, s: TransferState, sample: number): Pick<TransferState, 'srtt' | 'rttvar' | 'rto'> {
  const srtt = s.srtt === null ? sample : 0.875 * s.srtt + 0.125 * sample;
  const rttvar = s.srtt === null ? sample / 2 : 0.75 * s.rttvar + 0.25 * Math.abs(s.srtt - sample);
  const rto = Math.min(config.maxTimeoutMs, Math.max(MIN_RTO_MS, Math.ceil(srtt + 4 * rttvar)));
  return { srtt, rttvar, rto };
}

function sendWindow(config: TransferConfig, s: TransferState, from: number, now: number, resent: boolean): StepResult {
  const last = Math.min(from + config.windowsize - 1, lastBlock(config.size, config.blksize));
  const again = Math.max(0, Math.min(s.sent, last) - from + 1);
  return {
    state: {
      ...s,
      phase: 'data',
      sent: Math.max(s.sent, last),
      windowSentAt: now,
      windowResent: resent,
      retransmissions: s.retransmissions + again,
    },
    actions: [
      { type: 'send-data', first: from, last },
      { type: 'arm-timer', ms: s.rto },
    ],
  };
}

/**
 * Maps a 16-bit ACK onto the outstanding range [acked, sent]. The window never spans more than
 * 65535 blocks, so at most one absolute number in that range has these low 16 bits.
 */
export function absoluteAck(block: number, acked: number, sent: number): number | null {
  const a = acked + ((block - acked) & 0xffff);
  return a <= sent ? a : null;
}

export function step(config: TransferConfig, s: TransferState, ev: TransferEvent): StepResult {
  if (s.phase === 'done' || s.phase === 'failed') return { state: s, actions: [] };
  switch (ev.type) {
    case 'start':
      if (s.phase === 'oack') {
        return {
          state: { ...s, windowSentAt: ev.now },
          actions: [{ type: 'send-oack' }, { type: 'arm-timer', ms: s.rto }],
        };
      }
      return sendWindow(config, s, 1, ev.now, false);

    case 'error': {
      // EDK2 asks for the size with `tsize`, reads the OACK and ends the exchange with error 8,
      // then requests the file again (pin/tftp#125): a normal probe, not a failure.
      const probe = s.phase === 'oack' && ev.code === 8;
      return {
        state: { ...s, phase: 'failed' },
        actions: [{ type: 'abort', reason: probe ? 'probe' : 'client-error', detail: `client error ${ev.code}: ${ev.message}` }],
      };
    }

    case 'timeout': {
      const retries = s.retries + 1;
      if (retries > config.maxRetries) {
        return {
          state: { ...s, phase: 'failed', retries, timeouts: s.timeouts + 1 },
          actions: [
            {
              type: 'abort',
              reason: s.phase === 'data' && s.sent === lastBlock(config.size, config.blksize) ? 'unconfirmed' : 'timeout',
              detail: `no answer after ${config.maxRetries} retransmissions (last block acknowledged: ${s.acked})`,
            },
          ],
        };
      }
      const backoff = Math.min(config.maxTimeoutMs, s.rto * 2);
      const rto = retries >= QUIET_AFTER ? Math.max(backoff, quietGap(config)) : backoff;
      const next: TransferState = { ...s, retries, rto, timeouts: s.timeouts + 1 };
      if (s.phase === 'oack') {
        return {
          state: { ...next, windowSentAt: ev.now, windowResent: true, retransmissions: s.retransmissions + 1 },
          actions: [{ type: 'send-oack' }, { type: 'arm-timer', ms: rto }],
        };
      }
      // Go back to the first unacknowledged block and send a whole window again.
      return sendWindow(config, next, s.acked + 1, ev.now, true);
    }

    case 'ack': {
      if (s.phase === 'oack') {
        // RFC 2347 §4: the client confirms the OACK with ACK 0; anything else is not for us yet.
        if (ev.block !== 0) return { state: s, actions: [], verdict: 'ignored' };
        const timing = s.windowResent ? {} : withSample(config, s, ev.now - s.windowSentAt);
        return sendWindow(config, { ...s, ...timing, retries: 0 }, 1, ev.now, false);
      }
      const a = absoluteAck(ev.block, s.acked, s.sent);
      if (a === null) return { state: s, actions: [], verdict: 'stale' };
      // Sorcerer's Apprentice (RFC 1350 errata, RFC 1123 §4.2.3.1): a repeated ACK must not send
      // anything, or every duplicate doubles the traffic for the rest of the transfer.
      if (a === s.acked) return { state: s, actions: [], verdict: 'duplicate' };
      const timing = a === s.sent && !s.windowResent ? withSample(config, s, ev.now - s.windowSentAt) : {};
      const progressed: TransferState = { ...s, ...timing, acked: a, retries: 0 };
      if (a === lastBlock(config.size, config.blksize)) {
        return { state: { ...progressed, phase: 'done' }, actions: [{ type: 'done' }], verdict: 'progress' };
      }
      // RFC 7440 §4: an ACK short of the window's end says the blocks after it were lost;
      // the next window starts right after it.
      const r = sendWindow(config, progressed, a + 1, ev.now, a < s.sent);
      return { ...r, verdict: 'progress' };
    }
  }
}
