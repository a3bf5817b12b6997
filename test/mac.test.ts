import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { isMac, macFromBytes, macHexHyphen, macToBytes, parseMac } from '../server/lib/mac.js';

const mac = suite('MAC addresses');

mac('every spelling operators paste is normalised to lower-case colon form', () => {
  for (const text of ['52:54:00:AA:BB:CC', '52-54-00-aa-bb-cc', '5254.00aa.bbcc', '525400AABBCC', '  52:54:00:aa:bb:cc ']) {
    assert.is(parseMac(text), '52:54:00:aa:bb:cc', text);
  }
  for (const bad of ['52:54:00:aa:bb', '52:54-00:aa:bb:cc', '5254.00aa.bbc', 'zz:54:00:aa:bb:cc', '']) assert.is(parseMac(bad), null, bad);
  assert.ok(isMac('52:54:00:aa:bb:cc'));
  assert.not.ok(isMac('52:54:00:AA:BB:CC'));
  assert.is(macHexHyphen('52:54:00:aa:bb:cc' as never), '52-54-00-aa-bb-cc');
});

mac('raw bytes: every byte value formats as two lower-case hex digits and round-trips', () => {
  for (let v = 0; v < 256; v++) {
    const bytes = Buffer.from([v, 255 - v, v ^ 0x5a, 0, 255, v]);
    const text = macFromBytes(bytes);
    assert.is(text, bytes.toString('hex').replace(/(..)(?!$)/g, '$1:'));
    assert.ok(isMac(text));
    assert.equal(macToBytes(text), bytes);
  }
  // Only the first six bytes of a longer field (chaddr is 16).
  assert.is(macFromBytes(Buffer.from('525400aabbcc00000000000000000000', 'hex')), '52:54:00:aa:bb:cc');
  assert.throws(() => macFromBytes(Buffer.alloc(5)), /6 bytes/);
});

mac.run();
