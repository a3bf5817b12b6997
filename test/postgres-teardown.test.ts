import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { runToEnd, running } from './lib/child.js';
import { Testbed } from './lib/netns.js';
import { pgMissing, testPostgres } from './lib/postgres.js';
import { requirements, skipNote } from './lib/tools.js';

/**
 * A test process's private PostgreSQL goes with it, however it ends: killed by the runner's
 * timeout (SIGTERM) or by ^C in a bench (SIGINT), with or without a test bed whose own cleanup
 * also listens for the signal. Each case runs in a child process — this file, run as a program —
 * that starts the server, prints its postmaster and directory, then ends that way.
 */
const test = suite('test PostgreSQL: stopped and removed however the process ends');

const missing = requirements(['ip'], { root: true, netns: true }) ?? pgMissing();

async function endedBy(how: string): Promise<{ pid: number; dir: string; signal: string | null; code: number | null }> {
  const { out, code, signal } = await runToEnd(fileURLToPath(import.meta.url), [how], 60_000);
  const m = /postmaster (\d+) in (\S+)\n/.exec(out);
  assert.ok(m, `the child started its server: ${out}`);
  return { pid: Number(m?.[1]), dir: m?.[2] ?? '', signal, code };
}

for (const how of ['SIGTERM', 'SIGINT', 'SIGTERM with a test bed'] as const) {
  test(`killed by ${how}: the server is gone, its directory too, and the signal still ends the process`, async (ctx) => {
    if (missing) return skipNote(ctx.__test__, missing);
    const r = await endedBy(how);
    assert.is(r.signal, how.split(' ')[0], 'the signal took its default course after the cleanup');
    for (let i = 0; i < 100 && running(r.pid); i++) await new Promise((res) => setTimeout(res, 50));
    assert.not.ok(running(r.pid), `postmaster ${r.pid} outlived its process`);
    assert.not.ok(existsSync(r.dir), `${r.dir} outlived its process`);
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url) && process.argv[2]) {
  // As a program: start the server (and a bed, if asked), print where it is, then end as told.
  const how = process.argv[2];
  if (how.includes('test bed')) await new Testbed('pt').addNamespace('a');
  const pg = await testPostgres();
  const pid = Number(readFileSync(join(pg.dir, 'data', 'postmaster.pid'), 'utf8').split('\n')[0]);
  process.stdout.write(`postmaster ${pid} in ${pg.dir}\n`);
  process.kill(process.pid, how.startsWith('SIGINT') ? 'SIGINT' : 'SIGTERM');
  await new Promise((r) => setTimeout(r, 30_000));
} else {
  test.run();
}
