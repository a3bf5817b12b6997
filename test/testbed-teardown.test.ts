import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { runToEnd } from './lib/child.js';
import { Testbed } from './lib/netns.js';
import { requirements, skipNote } from './lib/tools.js';

/**
 * A test bed's namespaces go with the process that made them, however it ends: killed by the
 * runner's timeout (SIGTERM), by ^C (SIGINT), or ending with the bed never destroyed (a setup
 * that threw before the suite kept it). Each case runs in a child process — this file, run as a
 * program — that makes a bed, prints its namespaces, then ends that way.
 */
const test = suite('test bed: namespaces removed however the suite process ends');

const missing = requirements(['ip'], { netns: true });

function namespaces(): string[] {
  return execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
    .split('\n')
    .map((l) => l.split(' ')[0] ?? '')
    .filter(Boolean);
}

async function endedBy(how: 'SIGTERM' | 'SIGINT' | 'exit'): Promise<{ made: string[]; code: number | null; signal: string | null }> {
  const { out, code, signal } = await runToEnd(fileURLToPath(import.meta.url), [how], 30_000);
  const made = /made (.*)\n/.exec(out)?.[1]?.split(' ') ?? [];
  assert.is(made.length, 2, `the child made its bed: ${out}`);
  return { made, code, signal };
}

for (const how of ['SIGTERM', 'SIGINT'] as const) {
  test(`killed by ${how}: its namespaces are gone and the signal still ends it`, async (ctx) => {
    if (missing) return skipNote(ctx.__test__, missing);
    const r = await endedBy(how);
    assert.is(r.signal, how, 'the signal took its default course after the cleanup');
    const left = namespaces();
    for (const ns of r.made) assert.not.ok(left.includes(ns), `${ns} outlived its process`);
  });
}

test('ended without destroy(): its namespaces are gone', async (ctx) => {
  if (missing) return skipNote(ctx.__test__, missing);
  const r = await endedBy('exit');
  assert.is(r.code, 0);
  const left = namespaces();
  for (const ns of r.made) assert.not.ok(left.includes(ns), `${ns} outlived its process`);
});

if (process.argv[1] === fileURLToPath(import.meta.url) && process.argv[2]) {
  // As a program: make a bed with two namespaces and a process inside one, then end as told.
  const how = process.argv[2];
  const tb = new Testbed('td');
  const a = await tb.addNamespace('a');
  const b = await tb.addNamespace('b');
  tb.spawn(a, 'sleep', ['60']);
  process.stdout.write(`made ${a} ${b}\n`);
  if (how === 'exit') process.exit(0);
  else {
    process.kill(process.pid, how as NodeJS.Signals);
    await new Promise((r) => setTimeout(r, 10_000));
  }
} else test.run();
