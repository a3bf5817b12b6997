import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { parsePromText, promValue, type PromFamily } from './lib/prom-text.js';
import { SERVER_IP, createTftpBed, patternBytes, writeFixture, type TftpBed } from './lib/tftp-bed.js';
import { requirements, skipNote } from './lib/tools.js';

/**
 * /metrics while real TFTP transfers run: racksmith serve with TFTP on in a server namespace,
 * tftp-hpa's client in another. The TFTP counters, read from the service's own health detail,
 * move by exactly what the client did.
 */
const test = suite('metrics: TFTP counters move with real transfers');
const missing = requirements(['tftp', 'curl'], { netns: true });
let bed: TftpBed;

async function scrape(): Promise<Map<string, PromFamily>> {
  const { stdout } = await bed.tb.exec(bed.srv, 'curl', ['-sS', '--fail', '--max-time', '5', `${bed.rs?.url}/metrics`]);
  return parsePromText(stdout);
}

test.before(async () => {
  if (missing) return;
  bed = await createTftpBed('m');
  writeFixture(bed, 'm64k.bin', patternBytes(64 * 1024, 7));
  await bed.start();
});

test.after(async () => {
  await bed?.destroy();
});

test('a download and a missing file move transfers, bytes and errors', async () => {
  if (missing) return skipNote('metrics: TFTP', missing);
  const v = (m: Map<string, PromFamily>, name: string, labels: Record<string, string> = {}): number => promValue(m, name, labels) ?? 0;
  const before = await scrape();
  assert.is(v(before, 'racksmith_service_up', { service: 'tftp' }), 1);
  await bed.client('tftp', ['-m', 'octet', SERVER_IP, '69', '-c', 'get', 'm64k.bin', `${bed.out}/m64k.bin`], 30_000);
  await bed.client('tftp', ['-m', 'octet', SERVER_IP, '69', '-c', 'get', 'no-such-file', `${bed.out}/none`], 30_000).catch(() => undefined);
  let after = await scrape();
  for (let i = 0; i < 50 && v(after, 'racksmith_tftp_transfers_total', { outcome: 'complete' }) === v(before, 'racksmith_tftp_transfers_total', { outcome: 'complete' }); i++) {
    await new Promise((r) => setTimeout(r, 100));
    after = await scrape();
  }
  assert.is(v(after, 'racksmith_tftp_transfers_total', { outcome: 'complete' }) - v(before, 'racksmith_tftp_transfers_total', { outcome: 'complete' }), 1);
  assert.is(v(after, 'racksmith_tftp_sent_bytes_total') - v(before, 'racksmith_tftp_sent_bytes_total'), 64 * 1024);
  assert.is(v(after, 'racksmith_tftp_errors_total', { reason: 'not-found' }) - v(before, 'racksmith_tftp_errors_total', { reason: 'not-found' }), 1);
  assert.is(after.get('racksmith_tftp_retransmitted_blocks_total')?.type, 'counter');
  assert.is(v(after, 'racksmith_tftp_active_transfers'), 0);
});

test.run();
