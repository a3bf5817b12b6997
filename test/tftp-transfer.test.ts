import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { admit, fileRefusal } from '../server/tftp/decide.js';
import { toNetascii } from '../server/tftp/netascii.js';
import type { TftpOption, TftpPacket } from '../server/tftp/packet.js';
import {
  CLIENT_QUIET_MS,
  MIN_RTO_MS,
  QUIET_AFTER,
  absoluteAck,
  initialState,
  lastBlock,
  mayYield,
  negotiate,
  step,
  type TransferAction,
  type TransferConfig,
  type TransferEvent,
  type TransferState,
} from '../server/tftp/transfer.js';

const opts = (...pairs: [string, string][]): TftpOption[] => pairs.map(([name, value]) => ({ name, value }));
const LIMITS = { maxBlksize: 1468, maxWindowsize: 64 };

// ── negotiation ──────────────────────────────────────────────────────────────────────────────
const neg = suite('tftp negotiate: named cases');
const NEG: [string, TftpOption[], Partial<ReturnType<typeof negotiate>>][] = [
  ['no options: RFC 1350 defaults and no OACK', [], { blksize: 512, windowsize: 1, timeoutMs: null, oack: [] }],
  [
    'EDK2 asks tsize, blksize, windowsize: all granted in its order, tsize is the real size',
    opts(['tsize', '0'], ['blksize', '1468'], ['windowsize', '4']),
    { blksize: 1468, windowsize: 4, oack: opts(['tsize', '1048576'], ['blksize', '1468'], ['windowsize', '4']) },
  ],
  ['blksize above the cap is answered with the cap (RFC 2348 §2)', opts(['blksize', '65464']), { blksize: 1468, oack: opts(['blksize', '1468']) }],
  ['blksize 8 is the smallest allowed', opts(['blksize', '8']), { blksize: 8, oack: opts(['blksize', '8']) }],
  ['blksize 7 is out of range: left out', opts(['blksize', '7']), { blksize: 512, oack: [], ignored: ['blksize'] }],
  ['blksize 65465 is out of range: left out', opts(['blksize', '65465']), { blksize: 512, oack: [] }],
  ['blksize not a number: left out', opts(['blksize', '14a8']), { blksize: 512, oack: [] }],
  ['windowsize above the cap is capped', opts(['windowsize', '128']), { windowsize: 64, oack: opts(['windowsize', '64']) }],
  ['windowsize 0 is out of range', opts(['windowsize', '0']), { windowsize: 1, oack: [] }],
  ['windowsize 65536 is out of range', opts(['windowsize', '65536']), { windowsize: 1, oack: [] }],
  ['timeout 5 is echoed and used', opts(['timeout', '5']), { timeoutMs: 5000, oack: opts(['timeout', '5']) }],
  ['timeout 0 and 256 are out of range', opts(['timeout', '0'], ['timeout', '256']), { timeoutMs: null, oack: [] }],
  ['unknown options are never echoed (UEFI clients reject them)', opts(['multicast', ''], ['utimeout', '1000']), { oack: [], ignored: ['multicast', 'utimeout'] }],
  ['names are case-insensitive and echoed as spelled', opts(['BLKSIZE', '1024'], ['TSize', '0']), { blksize: 1024, oack: opts(['BLKSIZE', '1024'], ['TSize', '1048576']) }],
  ['a repeated option: the first one counts', opts(['blksize', '1024'], ['blksize', '512']), { blksize: 1024, oack: opts(['blksize', '1024']), ignored: ['blksize'] }],
];
for (const [name, requested, want] of NEG) {
  neg(name, () => {
    const got = negotiate(requested, 1048576, LIMITS);
    for (const [k, v] of Object.entries(want)) assert.equal((got as unknown as Record<string, unknown>)[k], v, k);
  });
}
neg('the MTU cap wins over a larger setting', () => {
  assert.is(negotiate(opts(['blksize', '9000']), 10, { maxBlksize: 1500 - 32, maxWindowsize: 8 }).blksize, 1468);
});
neg.run();

// ── the transfer state machine ──────────────────────────────────────────────────────────────
function config(over: Partial<TransferConfig> = {}): TransferConfig {
  return { size: 1024, blksize: 512, windowsize: 1, oack: false, timeoutMs: 1000, maxTimeoutMs: 4000, clientTimeoutMs: null, maxRetries: 5, ...over };
}

function drive(c: TransferConfig, events: TransferEvent[]): { state: TransferState; actions: TransferAction[][] } {
  let s = initialState(c);
  const actions: TransferAction[][] = [];
  for (const ev of events) {
    const r = step(c, s, ev);
    s = r.state;
    actions.push([...r.actions]);
  }
  return { state: s, actions };
}

const ack = (block: number, now = 0): TransferEvent => ({ type: 'ack', block, now });
const timeout = (now = 0): TransferEvent => ({ type: 'timeout', now });
const start: TransferEvent = { type: 'start', now: 0 };

const sm = suite('tftp transfer: state machine');
sm('last block: a file that is an exact multiple ends with an empty block (RFC 1350 §6)', () => {
  assert.is(lastBlock(1024, 512), 3);
  assert.is(lastBlock(1023, 512), 2);
  assert.is(lastBlock(0, 512), 1);
});
sm('lockstep: one block per ACK, done on the last ACK', () => {
  const { state, actions } = drive(config(), [start, ack(1), ack(2), ack(3)]);
  assert.equal(actions[0], [{ type: 'send-data', first: 1, last: 1 }, { type: 'arm-timer', ms: 1000 }]);
  assert.equal(actions[1]?.[0], { type: 'send-data', first: 2, last: 2 });
  assert.equal(actions[2]?.[0], { type: 'send-data', first: 3, last: 3 });
  assert.equal(actions[3], [{ type: 'done' }]);
  assert.is(state.phase, 'done');
});
sm('OACK first; only ACK 0 confirms it (RFC 2347 §4)', () => {
  const { actions, state } = drive(config({ oack: true, windowsize: 2 }), [start, ack(5), ack(0)]);
  assert.equal(actions[0], [{ type: 'send-oack' }, { type: 'arm-timer', ms: 1000 }]);
  assert.equal(actions[1], []);
  assert.equal(actions[2]?.[0], { type: 'send-data', first: 1, last: 2 });
  assert.is(state.sent, 2);
});
sm('duplicate ACK sends nothing (no Sorcerer\'s Apprentice)', () => {
  const { actions, state } = drive(config({ size: 5000 }), [start, ack(1), ack(1), ack(1)]);
  assert.equal(actions[2], []);
  assert.equal(actions[3], []);
  assert.is(state.sent, 2);
  assert.is(state.retransmissions, 0);
});
sm('ACK beyond what was sent is ignored', () => {
  const { actions, state } = drive(config({ size: 5000 }), [start, ack(9)]);
  assert.equal(actions[1], []);
  assert.is(state.acked, 0);
});
sm('window of 4: full-window ACK slides on; a short ACK resends from the gap (RFC 7440 §4)', () => {
  const c = config({ size: 10 * 512 + 100, windowsize: 4 });
  const { actions, state } = drive(c, [start, ack(4), ack(6), ack(6), ack(10), ack(11)]);
  assert.equal(actions[0]?.[0], { type: 'send-data', first: 1, last: 4 });
  assert.equal(actions[1]?.[0], { type: 'send-data', first: 5, last: 8 });
  assert.equal(actions[2]?.[0], { type: 'send-data', first: 7, last: 10 });
  assert.equal(actions[3], [], 'a duplicate of the short ACK sends nothing');
  assert.equal(actions[4]?.[0], { type: 'send-data', first: 11, last: 11 });
  assert.equal(actions[5], [{ type: 'done' }]);
  assert.is(state.retransmissions, 2, 'blocks 7 and 8 went twice');
});
sm('timeout resends the whole outstanding window with backoff', () => {
  const c = config({ size: 10 * 512, windowsize: 4, timeoutMs: 100 });
  const { actions, state } = drive(c, [start, ack(2), timeout()]);
  assert.equal(actions[2], [{ type: 'send-data', first: 3, last: 6 }, { type: 'arm-timer', ms: 200 }]);
  assert.is(state.retransmissions, 6, 'blocks 3–4 after the short ACK, then 3–6 after the timeout');
  assert.is(state.retries, 1);
});
sm(`after ${QUIET_AFTER} unanswered retransmissions the server waits out the client's own timer`, () => {
  const events = [start, ...Array.from({ length: QUIET_AFTER + 1 }, () => timeout())];
  const { actions } = drive(config({ timeoutMs: 10, maxRetries: 10 }), events);
  for (let i = 1; i < QUIET_AFTER; i++) assert.equal(actions[i]?.[1], { type: 'arm-timer', ms: 10 * 2 ** i }, `backoff ${i}`);
  assert.equal(actions[QUIET_AFTER]?.[1], { type: 'arm-timer', ms: CLIENT_QUIET_MS });
  assert.equal(actions[QUIET_AFTER + 1]?.[1], { type: 'arm-timer', ms: CLIENT_QUIET_MS });
});
sm('with an RFC 2349 timeout the quiet gap is 1.5 × the client timeout and backoff stops at it', () => {
  const c = config({ timeoutMs: 1000, maxTimeoutMs: 2000, clientTimeoutMs: 2000, maxRetries: 10 });
  const { actions } = drive(c, [start, ...Array.from({ length: QUIET_AFTER }, () => timeout())]);
  assert.equal(actions[1]?.[1], { type: 'arm-timer', ms: 2000 });
  assert.equal(actions[QUIET_AFTER - 1]?.[1], { type: 'arm-timer', ms: 2000 });
  assert.equal(actions[QUIET_AFTER]?.[1], { type: 'arm-timer', ms: 3000 });
});
sm('gives up after maxRetries timeouts without progress', () => {
  const c = config({ maxRetries: 3 });
  const { actions, state } = drive(c, [start, timeout(), timeout(), timeout(), timeout()]);
  assert.is(actions[4]?.[0]?.type, 'abort');
  assert.is((actions[4]?.[0] as { reason: string }).reason, 'timeout');
  assert.is(state.phase, 'failed');
  assert.equal(drive(c, [start, timeout(), timeout(), timeout(), timeout(), ack(1)]).actions[5], [], 'nothing after the end');
});
sm('no ACK for the final block: the transfer ends "unconfirmed", not "timeout"', () => {
  const c = config({ size: 100, maxRetries: 1 });
  const { actions } = drive(c, [start, timeout(), timeout()]);
  assert.is((actions[2]?.[0] as { reason: string }).reason, 'unconfirmed');
  const longer = drive(config({ size: 5000, maxRetries: 1 }), [start, timeout(), timeout()]);
  assert.is((longer.actions[2]?.[0] as { reason: string }).reason, 'timeout');
});
sm('progress resets the retry count', () => {
  const c = config({ size: 10 * 512, maxRetries: 2 });
  const { state } = drive(c, [start, timeout(), timeout(), ack(1), timeout(), timeout()]);
  assert.is(state.phase, 'data');
});
sm('the round trip sets the timeout, floored at MIN_RTO_MS; Karn: no sample from a resent window', () => {
  const c = config({ size: 10 * 512 });
  const { state } = drive(c, [{ type: 'start', now: 0 }, ack(1, 2)]);
  assert.is(state.rto, MIN_RTO_MS);
  const resent = drive(c, [{ type: 'start', now: 0 }, timeout(1000), ack(1, 1002)]);
  assert.is(resent.state.rto, 2000, 'backed-off timeout kept');
});
sm('error 8 answering an OACK is EDK2\'s size probe; other errors are client aborts', () => {
  const probe = drive(config({ oack: true }), [start, { type: 'error', code: 8, message: 'tsize' }]);
  assert.is((probe.actions[1]?.[0] as { reason: string }).reason, 'probe');
  const abort = drive(config(), [start, { type: 'error', code: 0, message: 'disk full' }]);
  assert.is((abort.actions[1]?.[0] as { reason: string }).reason, 'client-error');
});
sm('block numbers roll over past 65535 to 0: a 70,000-block transfer completes', () => {
  const c = config({ size: 70_000 * 512 + 7, windowsize: 8, oack: true });
  let s = initialState(c);
  let r = step(c, s, start);
  s = r.state;
  r = step(c, s, ack(0));
  s = r.state;
  let steps = 0;
  const wireSeen = new Set<number>();
  while (s.phase === 'data' && steps < 20_000) {
    const send = r.actions.find((a) => a.type === 'send-data') as { first: number; last: number };
    for (let b = send.first; b <= send.last; b++) if (b >= 65534 && b <= 65538) wireSeen.add(b & 0xffff);
    r = step(c, s, ack(send.last & 0xffff));
    s = r.state;
    steps++;
  }
  assert.is(s.phase, 'done');
  assert.is(s.acked, 70_001);
  assert.equal([...wireSeen].sort((a, b) => a - b), [0, 1, 2, 65534, 65535]);
  assert.is(s.retransmissions, 0);
});
sm('absoluteAck maps 16-bit numbers inside the outstanding range only', () => {
  assert.is(absoluteAck(0, 65535, 65540), 65536);
  assert.is(absoluteAck(65535, 65535, 65540), 65535);
  assert.is(absoluteAck(5, 65535, 65540), null);
  assert.is(absoluteAck(3, 0, 2), null);
});
sm('a transfer gives up its slot only when the final block went unanswered twice', () => {
  const c = config({ size: 1000 }); // blocks 1 and 2
  const yields = (events: TransferEvent[]): boolean => mayYield(c, drive(c, events).state);
  assert.is(yields([start, ack(1)]), false, 'final block just sent');
  assert.is(yields([start, ack(1), timeout()]), false, 'one retransmission');
  assert.is(yields([start, ack(1), timeout(), timeout()]), true, 'two retransmissions without an answer');
  assert.is(yields([start, timeout(), timeout(), timeout()]), false, 'block 1 of 2 unanswered: the client lacks bytes');
  assert.is(yields([start, ack(1), timeout(), timeout(), ack(2)]), false, 'done');
});
sm.run();

// ── admission ─────────────────────────────────────────────────────────────────────────────────
const rrq: TftpPacket = { op: 'RRQ', filename: 'ipxe.efi', mode: 'octet', options: [] };
const idle = { active: 0, fromClient: 0, sameClientPort: false, waiting: 0, waitingFromClient: 0, waitingAlready: false };
const LIM = { maxTransfers: 10, maxClientTransfers: 2, maxWaiting: 3 };
const adm = suite('tftp admit: named cases');
const ADMIT: [string, TftpPacket, typeof idle, string, string | null][] = [
  ['a plain read is served', rrq, idle, 'serve', null],
  ['a write is refused with error 2', { op: 'WRQ', filename: 'x', mode: 'octet', options: [] }, idle, 'refuse', 'refusedWrite'],
  ['mail mode is refused with error 4', { ...rrq, mode: 'mail' }, idle, 'refuse', 'refusedMode'],
  ['an ACK on the request port is dropped', { op: 'ACK', block: 1 }, idle, 'drop', 'unexpected'],
  ['a repeated request from the same port is dropped', rrq, { ...idle, sameClientPort: true }, 'drop', 'duplicateRequests'],
  ['over the total limit: waits in line for a slot', rrq, { ...idle, active: 10 }, 'wait', 'waited'],
  ['over the total limit, a repeat of a waiting request keeps its place', rrq, { ...idle, active: 10, waiting: 3, waitingFromClient: 2, waitingAlready: true }, 'wait', 'duplicateRequests'],
  ['over the total limit with the line full: dropped so the firmware retries', rrq, { ...idle, active: 10, waiting: 3 }, 'drop', 'refusedBusy'],
  ['over the total limit, waiting requests count towards the client limit', rrq, { ...idle, active: 10, fromClient: 1, waitingFromClient: 1 }, 'drop', 'refusedClientLimit'],
  ['over the per-client limit: dropped', rrq, { ...idle, active: 3, fromClient: 2 }, 'drop', 'refusedClientLimit'],
];
for (const [name, p, load, verdict, counter] of ADMIT) {
  adm(name, () => {
    const a = admit(p, load, LIM);
    assert.is(a.verdict, verdict);
    if (counter) assert.is((a as { counter: string }).counter, counter);
    if (name.includes('error 2')) assert.is((a as { code: number }).code, 2);
    if (name.includes('error 4')) assert.is((a as { code: number }).code, 4);
  });
}
adm('file errors map to TFTP errors 1, 2 and 0', () => {
  assert.is(fileRefusal('ERR_FILE_NOT_FOUND').code, 1);
  assert.is(fileRefusal('ERR_FILE_DENIED').code, 2);
  assert.is(fileRefusal('ERR_FILE_UNREADABLE').code, 0);
});
adm('netascii: LF → CR LF, CR → CR NUL (RFC 764)', () => {
  assert.equal(toNetascii(Buffer.from('a\nb\rc')), Buffer.from('a\r\nb\r\0c', 'latin1'));
  const plain = Buffer.from('no newline');
  assert.is(toNetascii(plain), plain);
});
adm.run();
