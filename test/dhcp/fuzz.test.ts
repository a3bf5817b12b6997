import { test } from '../lib/suite.js';
import * as assert from 'uvu/assert';
import { dhcpFixtures } from '../lib/dhcp-fixtures.js';
import { fuzzDhcp } from '../lib/dhcp-fuzz.js';

/** ≥ 100,000 seeded mutations of the captured fixtures (the benchmark runs 1,000,000). */
test('100,000 mutations: each decodes (and is handled) or throws ProtocolError, nothing else', () => {
  const fixtures = dhcpFixtures().map((f) => f.bytes);
  assert.ok(fixtures.length >= 5, 'fixtures are missing');
  const r = fuzzDhcp(fixtures, 100_000, 0x5eed);
  const rejectedTotal = Object.values(r.rejected).reduce((a, b) => a + b, 0);
  assert.is(r.decoded + rejectedTotal, 100_000);
  // The mutations must reach both outcomes, and several kinds of malformation.
  assert.ok(r.decoded > 10_000, `only ${r.decoded} decoded`);
  assert.ok(Object.keys(r.rejected).length >= 5, `rejections: ${JSON.stringify(r.rejected)}`);
  process.stdout.write(`  decoded ${r.decoded}, rejected ${JSON.stringify(r.rejected)}\n`);
});

test.run();
