import { fileURLToPath } from 'node:url';
import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { requirements, skipNote } from './lib/tools.js';
import { SERVER_IP, createTftpBed, patternBytes, writeFixture, type TftpBed } from './lib/tftp-bed.js';

/**
 * A power-on burst bigger than tftp-max-transfers: 60 simulated PXE ROMs (test/lib/pxe-rom-tftp.ts:
 * lockstep, retransmitting on the firmware's fixed 1, 2, 4, 8, 8, 8 s schedule, each from its own
 * address) ask racksmith, limited to 4 transfers at once, for a bootfile of undionly.kpxe's size
 * at the same instant. Every machine must end with the whole file: requests over the limit wait
 * for a slot instead of being dropped (dropped ones come back in waves and each wave finds the
 * slots taken again), and a transfer whose final ACK never comes gives its slot up to them.
 */
const test = suite('tftp: a burst over the transfer limit');
const missing = requirements([], { netns: true });
const BURST = fileURLToPath(new URL('./lib/tftp-burst.js', import.meta.url));
const MACHINES = 60;
const SIZE = 74_213;
let bed: TftpBed;
let sha = '';
const addresses = Array.from({ length: MACHINES }, (_, i) => `10.77.0.${100 + i}`);

interface Summary {
  clients: number;
  served: number;
  never: number;
  errors: Record<string, number>;
}

async function burst(loseFinalAck: boolean): Promise<Summary> {
  const args = { addresses, server: SERVER_IP, file: 'undionly.kpxe', size: SIZE, sha256: sha, spreadMs: 0, loseFinalAck };
  const { stdout } = await bed.client(process.execPath, [BURST, JSON.stringify(args)], 120_000);
  return JSON.parse(stdout) as Summary;
}

test.before(async () => {
  if (missing) return;
  bed = await createTftpBed('b');
  sha = writeFixture(bed, 'undionly.kpxe', patternBytes(SIZE, 22));
  await bed.tb.exec(bed.cli, 'ip', ['-batch', '-'], { input: addresses.map((a) => `addr add ${a}/32 dev ${bed.tb.name('cv')}`).join('\n') + '\n' });
  await bed.start({ RACKSMITH_TFTP_MAX_TRANSFERS: '4', RACKSMITH_LOG_LEVEL: 'info' });
});

test.after(async () => {
  await bed?.destroy();
});

if (missing) {
  skipNote('tftp burst', missing);
} else {
  test('60 machines at once, 4 slots: every one gets the whole file, the rest waited for a slot', async () => {
    const before = await bed.tftpCounters();
    const s = await burst(false);
    assert.equal({ served: s.served, never: s.never, errors: s.errors }, { served: MACHINES, never: 0, errors: {} });
    const c = await bed.tftpCounters();
    assert.ok((c['waited'] ?? 0) - (before['waited'] ?? 0) > 0, 'requests waited for a slot');
    assert.is((c['transfersCompleted'] ?? 0) - (before['transfersCompleted'] ?? 0), MACHINES);
    assert.is(c['refusedBusy'], 0);
  });

  test('60 machines whose final ACK is lost: the waiting ones still get the whole file', async () => {
    const before = await bed.tftpCounters();
    const s = await burst(true);
    assert.equal({ served: s.served, never: s.never, errors: s.errors }, { served: MACHINES, never: 0, errors: {} });
    const c = await bed.tftpCounters();
    // All but the last few gave their slot to a waiting request instead of retrying for a minute.
    assert.ok((c['transfersUnconfirmed'] ?? 0) - (before['transfersUnconfirmed'] ?? 0) >= MACHINES - 4 - 4, `unconfirmed ${c['transfersUnconfirmed']}`);
  });
}

test.run();
