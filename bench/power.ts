/**
 * What racksmith's IPMI driver costs over the bare peer, on ipmi_sim BMCs on loopback:
 * 1. one `chassis power status`, sequentially: racksmith's driver (FIFO for the password, the
 *    gate, `-v`, output parsing) vs `ipmitool -P` run directly;
 * 2. `chassis power on` over 10 BMCs, 3 at a time: racksmith's gate vs `xargs -P 3 ipmitool`;
 * 3. one Redfish power status against sushy-emulator (the peer BMC emulator): racksmith's driver
 *    (gate, session or Basic, decoding) vs `curl` fetching the system resource, beside the IPMI
 *    figures of the same run.
 * Figures and ratios, measured in the same run. `npm run bench:power` takes the machine-wide lock:
 *   flock /tmp/racksmith-heavy.lock node dist/bench/power.js
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { silentLogger } from '../server/lib/log.js';
import { createIpmiDriver } from '../server/power/ipmi.js';
import { createBmcGate } from '../server/power/scheduler.js';
import { startBmcSim, type BmcSim } from '../test/lib/bmc-sim.js';
import { createRedfishDriver } from '../server/power/redfish/driver.js';
import { startRedfishFront } from '../test/lib/redfish-front.js';
import { startSushy, sushyMissing } from '../test/lib/sushy.js';

const run = promisify(execFile);
const PASSWORD = 'bench-Pw-1';
const N = Number(process.env['BENCH_N'] ?? 40);

const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
};
const ms = (t0: bigint): number => Number(process.hrtime.bigint() - t0) / 1e6;

async function main(): Promise<void> {
  const sims: BmcSim[] = [];
  for (let i = 0; i < 10; i++) sims.push(await startBmcSim({ name: `bench${i}`, password: PASSWORD }));
  const driver = createIpmiDriver({ ipmitool: 'ipmitool', deadlineMs: 20_000, retry: { maxAttempts: 3, baseDelayMs: 500, maxDelayMs: 4000 }, gate: createBmcGate(3), log: silentLogger() });
  try {
    const s0 = sims[0] as BmcSim;
    const target = (s: BmcSim) => ({ address: '127.0.0.1', port: s.port, username: 'admin', password: PASSWORD, cipherSuite: 3 });
    const peerArgs = (s: BmcSim, ...cmd: string[]) => ['-I', 'lanplus', '-C', '3', '-H', '127.0.0.1', '-p', String(s.port), '-U', 'admin', '-P', PASSWORD, ...cmd];

    // Warm both paths once (page cache, IANA registry file).
    await driver.status(target(s0));
    await run('ipmitool', peerArgs(s0, 'chassis', 'power', 'status'));

    const ours: number[] = [];
    const peer: number[] = [];
    for (let i = 0; i < N; i++) {
      let t = process.hrtime.bigint();
      await driver.status(target(s0));
      ours.push(ms(t));
      t = process.hrtime.bigint();
      await run('ipmitool', peerArgs(s0, 'chassis', 'power', 'status'));
      peer.push(ms(t));
    }
    const line = (name: string, xs: number[]) => `  ${name.padEnd(34)} median ${pct(xs, 50).toFixed(1).padStart(6)} ms   p95 ${pct(xs, 95).toFixed(1).padStart(6)} ms`;
    process.stdout.write(`power status, one BMC, ${N} sequential calls each (interleaved)\n`);
    process.stdout.write(line('racksmith driver', ours) + '\n' + line('ipmitool -P (peer)', peer) + '\n');
    process.stdout.write(`  ratio racksmith / peer (median)    ${(pct(ours, 50) / pct(peer, 50)).toFixed(2)}\n\n`);

    const oursRack: number[] = [];
    const peerRack: number[] = [];
    for (let round = 0; round < 5; round++) {
      let t = process.hrtime.bigint();
      await Promise.all(sims.map((s) => driver.on(target(s))));
      oursRack.push(ms(t));
      t = process.hrtime.bigint();
      await run('sh', ['-c', `printf '%s\\n' ${sims.map((s) => s.port).join(' ')} | xargs -P 3 -I{} ipmitool -I lanplus -C 3 -H 127.0.0.1 -p {} -U admin -P '${PASSWORD}' chassis power on >/dev/null`]);
      peerRack.push(ms(t));
    }
    process.stdout.write(`power on, 10 BMCs, 3 at a time, 5 rounds each\n`);
    process.stdout.write(line('racksmith gate + driver', oursRack) + '\n' + line('xargs -P 3 ipmitool (peer)', peerRack) + '\n');
    process.stdout.write(`  ratio racksmith / peer (median)    ${(pct(oursRack, 50) / pct(peerRack, 50)).toFixed(2)}\n\n`);

    const why = sushyMissing();
    if (why) {
      process.stdout.write(`Redfish: skipped (${why})\n`);
    } else {
      const uuid = 'b0000000-0000-4000-8000-000000000001';
      const sushy = await startSushy({ users: { admin: PASSWORD }, fake: [{ uuid, name: 'bench', nics: ['52:54:00:00:00:01'] }] });
      const front = await startRedfishFront({ upstream: sushy.url, sessions: true });
      const rf = createRedfishDriver({ deadlineMs: 20_000, retry: { maxAttempts: 3, baseDelayMs: 500, maxDelayMs: 4000 }, gate: createBmcGate(3), log: silentLogger() });
      try {
        const rt = (url: string) => ({ driver: 'redfish' as const, address: url, port: 0, username: 'admin', password: PASSWORD, cipherSuite: null, systemId: uuid });
        await rf.status(rt(sushy.url));
        await rf.status(rt(front.url));
        const direct: number[] = [];
        const session: number[] = [];
        const curl: number[] = [];
        for (let i = 0; i < N; i++) {
          let t = process.hrtime.bigint();
          await rf.status(rt(sushy.url));
          direct.push(ms(t));
          t = process.hrtime.bigint();
          await rf.status(rt(front.url));
          session.push(ms(t));
          t = process.hrtime.bigint();
          await run('curl', ['-sf', '-u', `admin:${PASSWORD}`, `${sushy.url}/redfish/v1/Systems/${uuid}`]);
          curl.push(ms(t));
        }
        process.stdout.write(`Redfish power status, sushy-emulator (fake driver, Basic auth, bcrypt), ${N} calls each (interleaved)\n`);
        process.stdout.write(line('racksmith driver, Basic', direct) + '\n' + line('racksmith driver, session (front)', session) + '\n' + line('curl GET of the system (peer)', curl) + '\n');
        process.stdout.write(`  ratio racksmith Basic / curl (median)   ${(pct(direct, 50) / pct(curl, 50)).toFixed(2)}  (racksmith also reads the root and the Systems collection once, then caches the path)\n`);
        process.stdout.write(`  Redfish status / IPMI status, racksmith (median)   ${(pct(direct, 50) / pct(ours, 50)).toFixed(2)}\n`);
      } finally {
        await rf.close();
        await front.stop();
        await sushy.stop();
      }
    }
  } finally {
    driver.close();
    await Promise.all(sims.map((s) => s.stop()));
  }
}

await main();
