import { join } from 'node:path';
import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { requirements, skipNote } from './lib/tools.js';
import { CLIENTS, SERVER_IP, createTftpBed, patternBytes, readOut, sha256, writeFixture, type TftpBed } from './lib/tftp-bed.js';

/**
 * The heavy TFTP cases: a 40 MiB file with every client (at 512-byte blocks that is 81,920
 * blocks, so the block number rolls over past 65535), and every client through a seeded relay
 * that drops about 10 % of the datagrams each way — all but the option negotiation (OACK and
 * ACK 0), which atftp cannot lose: it aborts on a retransmitted OACK, whatever the server.
 */

const test = suite('tftp heavy: big files and loss');
const missing = requirements(['tftp', 'curl', 'atftp'], { netns: true });
let bed: TftpBed;
let big = '';
let lossy = '';

test.before(async () => {
  if (missing) return;
  bed = await createTftpBed('t');
  big = writeFixture(bed, 'f40m.bin', patternBytes(40 << 20, 40));
  // 256 KiB: 179 to 512 blocks a client, dozens lost each way; the loss cases wait out a timeout
  // per lost datagram, so a bigger file only waits longer (1 MiB: 127 s for atftp at 1468 bytes).
  lossy = writeFixture(bed, 'f256k.bin', patternBytes(256 << 10, 3));
  await bed.start({ RACKSMITH_LOG_LEVEL: 'info' });
});

test.after(async () => {
  await bed?.destroy();
});

if (missing) {
  skipNote('tftp heavy', missing);
} else {
  for (const c of CLIENTS) {
    test(`${c.name}: 40 MiB byte-identical`, async () => {
      const name = `big-${c.name.replace(/\W+/g, '_')}`;
      const [cmd, args] = c.argv(SERVER_IP, 69, 'f40m.bin', join(bed.out, name));
      const t0 = Date.now();
      await bed.client(cmd, args, 300_000);
      process.stdout.write(`    ${c.name}, 40 MiB: ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
      assert.is(sha256(readOut(bed, name)), big);
    });
  }

  test('the 512-byte transfers rolled over: blocks past 65535 were sent', async () => {
    const c = await bed.tftpCounters();
    // Two 512-byte clients × 81,921 blocks; rollover is exercised by both.
    assert.ok((c['blocksSent'] ?? 0) > 2 * 65536, `blocks ${c['blocksSent']}`);
    assert.is(c['transfersCompleted'], CLIENTS.length);
  });

  test('10 % loss each way through a seeded relay: every client still gets a byte-identical file', async () => {
    const before = await bed.tftpCounters();
    // All clients share the relay, so which datagrams it drops depends on how their traffic
    // interleaves. Negotiation is spared: atftp gives up on a retransmitted OACK (see the relay).
    const relay = await bed.relay(6969, 0.1, 20251125, 0, true);
    try {
      const results = await Promise.all(
        CLIENTS.map(async (c) => {
          const name = `lossy-${c.name.replace(/\W+/g, '_')}`;
          const [cmd, args] = c.argv(SERVER_IP, 6969, 'f256k.bin', join(bed.out, name));
          const t0 = Date.now();
          await bed.client(cmd, args, 400_000);
          process.stdout.write(`    ${c.name} through loss: ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
          return [c.name, sha256(readOut(bed, name))] as const;
        }),
      );
      for (const [name, hash] of results) assert.is(hash, lossy, name);
    } finally {
      relay.kill('SIGTERM');
    }
    // A client that exits without dallying may lose its final ACK to the relay: that transfer
    // ends "unconfirmed" on our side although the client has the file (checked above), but only
    // after the server has spent its retries on the last block — up to about a minute with the
    // quiet gaps — so wait for every transfer to end before reading how they ended.
    let after = await bed.tftpCounters();
    const ended = (k: string): number => (after[k] ?? 0) - (before[k] ?? 0);
    const endedAll = (): number => ended('transfersCompleted') + ended('transfersUnconfirmed') + ended('transfersTimedOut');
    for (let i = 0; i < 240 && endedAll() < CLIENTS.length; i++) {
      await new Promise((r) => setTimeout(r, 500));
      after = await bed.tftpCounters();
    }
    assert.ok((after['retransmittedBlocks'] ?? 0) > (before['retransmittedBlocks'] ?? 0), 'losses were repaired by retransmission');
    assert.is(ended('transfersCompleted') + ended('transfersUnconfirmed'), CLIENTS.length);
    assert.is(ended('transfersTimedOut'), 0);
  });
}

test.run();
