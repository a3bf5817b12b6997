import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { settingsMarkdown } from '../server/config/table.js';
import { PACKAGE_ROOT } from '../server/lib/paths.js';

/** The README stays true: its settings table is the code's, and CI runs its test command. */
const test = suite('readme');
const readme = readFileSync(join(PACKAGE_ROOT, 'README.md'), 'utf8');

test('the settings table is exactly the settings the code reads', () => {
  const block = /<!-- settings:begin -->\n([\s\S]*?)<!-- settings:end -->/.exec(readme)?.[1];
  assert.ok(block, 'README has no settings block');
  assert.fixture(block, settingsMarkdown());
});

test('the quick start has two commands, and .ci/run runs the test one', () => {
  const quick = /## Quick start\n\n```sh\n([\s\S]*?)```/.exec(readme)?.[1] ?? '';
  const commands = quick.split('\n').filter((l) => l.trim() !== '');
  assert.is(commands.length, 2);
  const testCommand = commands[1]?.replace(/#.*$/, '').trim();
  assert.is(testCommand, 'npm test');
  const ci = readFileSync(join(PACKAGE_ROOT, '.ci', 'run'), 'utf8');
  assert.match(ci, new RegExp(`^${testCommand}$`, 'm'));
});

test.run();
