import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import {
  TftpProtocolError,
  ackBlock,
  decodeTftp,
  encodeDataHeader,
  encodeTftp,
  encodingLength,
  opcodeName,
  tftpErrorName,
  type TftpPacket,
} from '../server/tftp/packet.js';
import { seededRandom } from './lib/udp-relay.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const ascii = (...parts: string[]): Buffer => Buffer.from(parts.join('\0') + '\0', 'latin1');

/** One helper for every packet kind: encode, check the length, decode, compare. */
function roundTrip(p: TftpPacket): void {
  const buf = encodeTftp(p);
  assert.is(buf.length, encodingLength(p), 'encodingLength');
  assert.equal(decodeTftp(buf), p);
}

const rt = suite('tftp packet: round trips');
const CASES: [string, TftpPacket][] = [
  ['RRQ without options', { op: 'RRQ', filename: 'ipxe.efi', mode: 'octet', options: [] }],
  ['RRQ with EDK2 options', { op: 'RRQ', filename: 'ipxe.efi', mode: 'octet', options: [{ name: 'tsize', value: '0' }, { name: 'blksize', value: '1468' }, { name: 'windowsize', value: '4' }] }],
  ['RRQ in a sub-folder, netascii', { op: 'RRQ', filename: 'pxelinux.cfg/default', mode: 'netascii', options: [] }],
  ['RRQ with a UTF-8 name', { op: 'RRQ', filename: 'bôot/ファイル', mode: 'octet', options: [] }],
  ['WRQ', { op: 'WRQ', filename: 'upload.bin', mode: 'octet', options: [] }],
  ['DATA full', { op: 'DATA', block: 1, data: Buffer.alloc(512, 7) }],
  ['DATA empty (last block of an exact multiple)', { op: 'DATA', block: 65535, data: Buffer.alloc(0) }],
  ['ACK 0', { op: 'ACK', block: 0 }],
  ['ACK 65535', { op: 'ACK', block: 65535 }],
  ['ERROR with text', { op: 'ERROR', code: 8, message: 'option negotiation failed' }],
  ['ERROR empty text', { op: 'ERROR', code: 0, message: '' }],
  ['OACK', { op: 'OACK', options: [{ name: 'blksize', value: '1468' }, { name: 'tsize', value: '1048576' }] }],
  ['OACK empty', { op: 'OACK', options: [] }],
];
for (const [name, p] of CASES) rt(name, () => roundTrip(p));
rt.run();

const dec = suite('tftp packet: decoding real shapes');
dec('EDK2-style RRQ bytes', () => {
  const buf = Buffer.concat([hex('0001'), ascii('ipxe.efi', 'octet', 'tsize', '0', 'blksize', '1468')]);
  assert.equal(decodeTftp(buf), { op: 'RRQ', filename: 'ipxe.efi', mode: 'octet', options: [{ name: 'tsize', value: '0' }, { name: 'blksize', value: '1468' }] });
});
dec('mode is case-insensitive (RFC 1350 §5), option names keep their spelling', () => {
  const p = decodeTftp(Buffer.concat([hex('0001'), ascii('a', 'OCTET', 'BlkSize', '1024')]));
  assert.equal(p, { op: 'RRQ', filename: 'a', mode: 'octet', options: [{ name: 'BlkSize', value: '1024' }] });
});
dec('zero padding after the last option is tolerated (PXE ROMs pad requests)', () => {
  const p = decodeTftp(Buffer.concat([hex('0001'), ascii('a', 'octet'), Buffer.alloc(40)]));
  assert.equal(p, { op: 'RRQ', filename: 'a', mode: 'octet', options: [] });
});
dec('an ACK padded with zeros is still an ACK', () => {
  assert.equal(decodeTftp(hex('0004 0007 0000')), { op: 'ACK', block: 7 });
});
dec('an ERROR without its final NUL is read to the end', () => {
  assert.equal(decodeTftp(Buffer.concat([hex('0005 0008'), Buffer.from('abort')])), { op: 'ERROR', code: 8, message: 'abort' });
});
dec('ackBlock fast path agrees with the decoder and rejects others', () => {
  assert.is(ackBlock(hex('0004 ffff')), 65535);
  assert.is(ackBlock(hex('0003 0001')), null);
  assert.is(ackBlock(hex('0004 00')), null);
  assert.equal(encodeDataHeader(65536), hex('0003 0000'));
  assert.equal(encodeDataHeader(65537), hex('0003 0001'));
});
dec('names for codes', () => {
  assert.is(tftpErrorName(5), 'unknownTid');
  assert.is(tftpErrorName(99), 'unknown (99)');
  assert.is(opcodeName(6), 'OACK');
  assert.is(opcodeName(9), 'unknown (9)');
});
dec('encode refuses NUL inside text', () => {
  assert.throws(() => encodeTftp({ op: 'RRQ', filename: 'a\0b', mode: 'octet', options: [] }), /NUL/);
});
dec.run();

const bad = suite('tftp packet: malformed input throws one typed error');
const BAD: [string, Buffer, string][] = [
  ['empty datagram', Buffer.alloc(0), 'ERR_TFTP_SHORT'],
  ['one byte', hex('00'), 'ERR_TFTP_SHORT'],
  ['unknown opcode 7', hex('0007 0000'), 'ERR_TFTP_OPCODE'],
  ['opcode 0', hex('0000'), 'ERR_TFTP_OPCODE'],
  ['RRQ filename without NUL', Buffer.concat([hex('0001'), Buffer.from('ipxe.efi')]), 'ERR_TFTP_UNTERMINATED'],
  ['RRQ without mode', Buffer.concat([hex('0001'), ascii('ipxe.efi')]), 'ERR_TFTP_UNTERMINATED'],
  ['RRQ empty filename', Buffer.concat([hex('0001'), ascii('', 'octet')]), 'ERR_TFTP_FILENAME'],
  ['RRQ filename not UTF-8', Buffer.concat([hex('0001 ff fe 00'), ascii('octet')]), 'ERR_TFTP_FILENAME'],
  ['RRQ unknown mode', Buffer.concat([hex('0001'), ascii('a', 'binary')]), 'ERR_TFTP_MODE'],
  ['RRQ option without value', Buffer.concat([hex('0001'), ascii('a', 'octet', 'blksize')]), 'ERR_TFTP_OPTION'],
  ['RRQ option value unterminated', Buffer.concat([hex('0001'), ascii('a', 'octet', 'blksize'), Buffer.from('1468')]), 'ERR_TFTP_UNTERMINATED'],
  ['RRQ empty option name then bytes', Buffer.concat([hex('0001'), ascii('a', 'octet', '', 'x')]), 'ERR_TFTP_OPTION'],
  ['DATA without block', hex('0003 00'), 'ERR_TFTP_SHORT'],
  ['ACK without block', hex('0004'), 'ERR_TFTP_SHORT'],
  ['ACK with trailing garbage', hex('0004 0001 41'), 'ERR_TFTP_TRAILING'],
  ['ERROR without code', hex('0005 00'), 'ERR_TFTP_SHORT'],
];
for (const [name, buf, code] of BAD) {
  bad(name, () => {
    try {
      decodeTftp(buf);
      assert.unreachable('decoded');
    } catch (err) {
      assert.instance(err, TftpProtocolError);
      assert.is((err as TftpProtocolError).code, code);
      assert.match((err as Error).message, /at byte \d+/);
    }
  });
}
bad.run();

const fuzz = suite('tftp packet: seeded fuzz');
fuzz('100,000 random and mutated datagrams: decode, or throw TftpProtocolError — nothing else', () => {
  const rand = seededRandom(0x7f7f);
  const seeds = CASES.map(([, p]) => encodeTftp(p));
  let decoded = 0;
  let refused = 0;
  for (let i = 0; i < 100_000; i++) {
    let buf: Buffer;
    if (i % 2 === 0) {
      const len = Math.floor(rand() * 64);
      buf = Buffer.alloc(len);
      for (let j = 0; j < len; j++) buf[j] = Math.floor(rand() * 256);
      // Bias half of them towards valid opcodes so the deeper paths are reached.
      if (len >= 2 && rand() < 0.5) {
        buf[0] = 0;
        buf[1] = 1 + Math.floor(rand() * 6);
      }
    } else {
      const base = seeds[Math.floor(rand() * seeds.length)] as Buffer;
      buf = Buffer.from(base);
      const flips = 1 + Math.floor(rand() * 4);
      for (let f = 0; f < flips && buf.length > 0; f++) buf[Math.floor(rand() * buf.length)] = Math.floor(rand() * 256);
      if (rand() < 0.3) buf = buf.subarray(0, Math.floor(rand() * buf.length));
    }
    try {
      const p = decodeTftp(buf);
      decoded++;
      // Whatever decodes must encode again without throwing.
      encodeTftp(p);
    } catch (err) {
      if (!(err instanceof TftpProtocolError)) throw new Error(`input ${buf.toString('hex')} threw ${String(err)}`);
      refused++;
    }
  }
  assert.ok(decoded > 1000, `decoded ${decoded}`);
  assert.ok(refused > 1000, `refused ${refused}`);
});
fuzz.run();
