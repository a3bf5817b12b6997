/**
 * The floor under persisting DHCP leases in racksmith's inventory store: the CPU one lease
 * commit costs through `leases.bindAll`, in batches of 16 (the most the DHCP service groups),
 * for MACs in random order as perfdhcp sends them (each lease then dirties its own page of the
 * MAC index). No datagrams, no DHCP decisions: the store's share of an exchange alone.
 * `bench:dhcp` runs it on the servers' CPU and prints it beside the Node datagram floor.
 *   node bench/lib/lease-commit.js [leases]   → {"leases":…,"batch":16,"cpuUsPerLease":…}
 */
import { rmSync } from 'node:fs';
import type { Mac } from '../../server/lib/mac.js';
import { newDataDir, openDataDir } from '../../test/lib/dhcp.js';

const LEASES = Number(process.argv[2] ?? '60000');
const BATCH = 16;
const WARMUP = 5_000;

const dir = newDataDir();
const inv = openDataDir(dir);
try {
  // A fixed shuffle (seeded LCG) of the MAC numbers: random order, same in every run.
  const order = Array.from({ length: LEASES + WARMUP }, (_, i) => i);
  let seed = 0x2545f491;
  for (let i = order.length - 1; i > 0; i--) {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    const j = seed % (i + 1);
    [order[i], order[j]] = [order[j] as number, order[i] as number];
  }
  const hex = (n: number): string => (n & 255).toString(16).padStart(2, '0');
  const expiresAt = new Date(Date.now() + 3_600_000).toISOString();
  // Built before the clock starts: only the commits are measured.
  const batches = [];
  for (let from = 0; from < order.length; from += BATCH) {
    batches.push(
      order.slice(from, from + BATCH).map((m, k) => {
        const i = from + k;
        return { ip: `10.${(i >>> 16) & 255}.${(i >>> 8) & 255}.${i & 255}`, mac: `02:00:00:${hex(m >>> 16)}:${hex(m >>> 8)}:${hex(m)}` as Mac, expiresAt };
      }),
    );
  }
  const warm = Math.ceil(WARMUP / BATCH);
  for (const batch of batches.slice(0, warm)) await inv.leases.bindAll(batch, new Date());
  const measured = batches.slice(warm);
  const count = measured.reduce((n, b) => n + b.length, 0);
  const before = process.cpuUsage();
  for (const batch of measured) await inv.leases.bindAll(batch, new Date());
  const used = process.cpuUsage(before);
  process.stdout.write(`${JSON.stringify({ leases: count, batch: BATCH, cpuUsPerLease: (used.user + used.system) / count })}\n`);
} finally {
  await inv.close();
  rmSync(dir, { recursive: true, force: true });
}
