import { suite } from '../lib/suite.js';
import * as assert from 'uvu/assert';
import { ProtocolError, type DhcpErrorCode } from '../../server/dhcp/errors.js';
import {
  OPTION,
  decodeSubOptions,
  getClientArch,
  getClientGuid,
  getIp,
  getMessageType,
  getString,
  getUserClasses,
  guidToUuid,
  optionName,
} from '../../server/dhcp/options.js';
import { MIN_REPLY_LENGTH, clientMac, decodeDhcp, dhcpCodec, encodeDhcp, type DhcpPacket } from '../../server/dhcp/packet.js';
import { roundTrip } from '../lib/codec.js';
import { ascii, dhcpFixtures, rawRequest } from '../lib/dhcp-fixtures.js';

const decode = suite('dhcp codec: decoding');

decode('PAD is one octet with no length (RFC 2132 §3.1): options around it survive', () => {
  const p = decodeDhcp(rawRequest([53, 1, 1, 0, 0, 60, 9, ...ascii('PXEClient'), 0, 255]));
  assert.is(getMessageType(p.options), 'discover');
  assert.is(getString(p.options, OPTION.VENDOR_CLASS), 'PXEClient');
  assert.equal([...p.options.keys()], [53, 60]);
});

decode('END stops the options; what follows is padding', () => {
  const p = decodeDhcp(rawRequest([53, 1, 3, 255, 60, 200, 1, 2, 3]));
  assert.equal([...p.options.keys()], [53]);
});

decode('an options area that runs out without END is accepted', () => {
  const p = decodeDhcp(rawRequest([53, 1, 1]));
  assert.is(getMessageType(p.options), 'discover');
});

decode('RFC 3396: repeated instances of a code are concatenated in order', () => {
  const p = decodeDhcp(rawRequest([53, 1, 1, 60, 4, ...ascii('PXEC'), 12, 1, 0x61, 60, 5, ...ascii('lient'), 255]));
  assert.is(getString(p.options, OPTION.VENDOR_CLASS), 'PXEClient');
  assert.equal([...p.options.keys()], [53, 60, 12]);
});

decode('option overload 1 reads options from `file`, after the options field (RFC 2131 §4.1)', () => {
  const file = Buffer.from([60, 5, ...ascii('lient'), 255]);
  const p = decodeDhcp(rawRequest([53, 1, 1, 52, 1, 1, 60, 4, ...ascii('PXEC'), 255], { file, sname: Buffer.from('srv') }));
  assert.is(getString(p.options, OPTION.VENDOR_CLASS), 'PXEClient');
  assert.is(p.file, '');
  assert.is(p.sname, 'srv');
});

decode('option overload 3: options field, then file, then sname', () => {
  const file = Buffer.from([77, 2, ...ascii('bb'), 255]);
  const sname = Buffer.from([77, 2, ...ascii('cc'), 255]);
  const p = decodeDhcp(rawRequest([53, 1, 1, 52, 1, 3, 77, 2, ...ascii('aa'), 255], { file, sname }));
  assert.is(p.options.get(OPTION.USER_CLASS)?.toString(), 'aabbcc');
  assert.is(p.file, '');
  assert.is(p.sname, '');
});

decode('without overload, file and sname are NUL-terminated text', () => {
  const p = decodeDhcp(rawRequest([53, 1, 1, 255], { file: Buffer.from('undionly.kpxe\0junk'), sname: Buffer.from('boot') }));
  assert.is(p.file, 'undionly.kpxe');
  assert.is(p.sname, 'boot');
});

decode('chaddr gives the MAC for Ethernet only', () => {
  const p = decodeDhcp(rawRequest([53, 1, 1, 255], { mac: '52:54:00:AA:BB:CC' }));
  assert.is(clientMac(p), '52:54:00:aa:bb:cc');
  const b = rawRequest([53, 1, 1, 255]);
  b[1] = 6; // IEEE 802 but not Ethernet
  assert.is(clientMac(decodeDhcp(b)), null);
});

const errors = suite('dhcp codec: every malformed case has its code');

const CASES: [string, () => Buffer, DhcpErrorCode, RegExp][] = [
  ['shorter than header + cookie', () => rawRequest([]).subarray(0, 239), 'ERR_DHCP_SHORT', /at least 240 bytes \(header and magic cookie\), got 239/],
  ['bad magic cookie', () => Object.assign(rawRequest([53, 1, 1]), {}).fill(0, 236, 240), 'ERR_DHCP_COOKIE', /offset 236 is 0x00000000/],
  ['op 3', () => rawRequest([53, 1, 1], { op: 3 }), 'ERR_DHCP_OP', /op at offset 0 is 3/],
  ['hlen 17', () => { const b = rawRequest([53, 1, 1]); b[2] = 17; return b; }, 'ERR_DHCP_HLEN', /hlen at offset 2 is 17/],
  ['option value past the end', () => rawRequest([53, 1, 1, 93, 4, 0, 7]), 'ERR_DHCP_OPTION_TRUNCATED', /option 93 at offset 243 claims 4 bytes, 2 remain/],
  ['option without its length byte', () => rawRequest([53, 1, 1, 93]), 'ERR_DHCP_OPTION_TRUNCATED', /option 93 at offset 243 has no length byte/],
  ['overload with 2 bytes', () => rawRequest([52, 2, 1, 1, 255]), 'ERR_DHCP_OVERLOAD', /52 \(overload\) has 2 bytes/],
  ['overload value 4', () => rawRequest([52, 1, 4, 255]), 'ERR_DHCP_OVERLOAD', /value 4/],
  ['overload inside file', () => rawRequest([52, 1, 1, 255], { file: Buffer.from([52, 1, 2, 255]) }), 'ERR_DHCP_OVERLOAD', /inside the file field/],
  ['truncated option inside file reports the real offset', () => rawRequest([52, 1, 1, 255], { file: Buffer.from([0, 0, 12, 200]) }), 'ERR_DHCP_OPTION_TRUNCATED', /option 12 at offset 110 claims 200 bytes/],
];
for (const [name, make, code, message] of CASES) {
  errors(name, () => {
    try {
      decodeDhcp(make());
      assert.unreachable('decoded');
    } catch (err) {
      assert.instance(err, ProtocolError);
      assert.is((err as ProtocolError).code, code);
      assert.match((err as ProtocolError).message, message);
    }
  });
}

const getters = suite('dhcp options: typed getters check the RFC lengths');

const getterError = (fn: () => unknown, code: DhcpErrorCode): void => {
  try {
    fn();
    assert.unreachable('no error');
  } catch (err) {
    assert.instance(err, ProtocolError);
    assert.is((err as ProtocolError).code, code);
  }
};

getters('message type: 1 byte, 1–8', () => {
  getterError(() => getMessageType(decodeDhcp(rawRequest([53, 2, 1, 1])).options), 'ERR_DHCP_OPTION_LENGTH');
  getterError(() => getMessageType(decodeDhcp(rawRequest([53, 1, 9])).options), 'ERR_DHCP_OPTION_VALUE');
  assert.is(getMessageType(decodeDhcp(rawRequest([])).options), null);
});

getters('addresses are 4 bytes; client arch a multiple of 2; GUID type 0 + 16', () => {
  getterError(() => getIp(decodeDhcp(rawRequest([50, 3, 10, 0, 0])).options, 50), 'ERR_DHCP_OPTION_LENGTH');
  getterError(() => getClientArch(decodeDhcp(rawRequest([93, 3, 0, 7, 0])).options), 'ERR_DHCP_OPTION_LENGTH');
  getterError(() => getClientGuid(decodeDhcp(rawRequest([97, 16, ...new Array(16).fill(1)])).options), 'ERR_DHCP_OPTION_LENGTH');
  getterError(() => getClientGuid(decodeDhcp(rawRequest([97, 17, 1, ...new Array(16).fill(1)])).options), 'ERR_DHCP_OPTION_VALUE');
  assert.equal(getClientArch(decodeDhcp(rawRequest([93, 4, 0, 7, 0, 9])).options), [7, 9]);
});

getters('GUID as SMBIOS UUID text (first three groups little-endian)', () => {
  const raw = Buffer.from('00' + '33221100554477668899aabbccddeeff', 'hex');
  assert.is(guidToUuid(raw), '00112233-4455-6677-8899-aabbccddeeff');
});

getters('user class: RFC 3004 list, or one bare string (iPXE)', () => {
  assert.equal(getUserClasses(decodeDhcp(rawRequest([77, 4, ...ascii('iPXE')])).options), ['iPXE']);
  assert.equal(getUserClasses(decodeDhcp(rawRequest([77, 8, 3, ...ascii('abc'), 3, ...ascii('def')])).options), ['abc', 'def']);
});

getters('sub-options: PAD skipped, END stops, overrun is an error', () => {
  assert.equal([...decodeSubOptions(Buffer.from([0, 6, 1, 8, 255, 9, 9]))], [[6, Buffer.from([8])]]);
  getterError(() => decodeSubOptions(Buffer.from([71, 4, 0, 1])), 'ERR_DHCP_SUBOPTION_TRUNCATED');
});

getters('names: a table with an unknown fallback', () => {
  assert.is(optionName(93), 'client-arch');
  assert.is(optionName(250), 'unknown (250)');
});

const encode = suite('dhcp codec: encoding');

function reply(options: Map<number, Buffer>, file = ''): DhcpPacket {
  return { ...decodeDhcp(rawRequest([])), op: 'BOOTREPLY', file, options };
}

encode('replies are padded to the 300-byte BOOTP minimum, END then zeros', () => {
  const b = encodeDhcp(reply(new Map([[53, Buffer.from([2])]])));
  assert.is(b.length, MIN_REPLY_LENGTH);
  assert.equal([...b.subarray(240, 244)], [53, 1, 2, 255]);
  assert.ok(b.subarray(244).every((x) => x === 0));
});

encode('RFC 3396: an option over 255 bytes is split into instances, and decodes whole', () => {
  const long = Buffer.alloc(600, 0x41);
  const b = encodeDhcp(reply(new Map([[53, Buffer.from([5])], [OPTION.BOOTFILE_NAME, long]])));
  assert.equal([b[243], b[244]], [67, 255]);
  assert.equal([b[243 + 257], b[244 + 257]], [67, 255]);
  assert.equal([b[243 + 514], b[244 + 514]], [67, 90]);
  assert.ok(decodeDhcp(b).options.get(OPTION.BOOTFILE_NAME)?.equals(long));
});

encode('a file name longer than the field is an encoding error', () => {
  try {
    encodeDhcp(reply(new Map(), 'x'.repeat(129)));
    assert.unreachable();
  } catch (err) {
    assert.is((err as ProtocolError).code, 'ERR_DHCP_ENCODE');
  }
});

const fixtures = suite('dhcp codec: captured fixtures round-trip');
for (const f of dhcpFixtures()) {
  fixtures(f.name, () => {
    const p = roundTrip(dhcpCodec, f.bytes, f.name);
    assert.is(getMessageType(p.options) !== null, true);
  });
}

decode.run();
errors.run();
getters.run();
encode.run();
fixtures.run();
