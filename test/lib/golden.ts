import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import * as assert from 'uvu/assert';
import { PACKAGE_ROOT } from '../../server/lib/paths.js';

/**
 * Golden files under test/golden/. A mismatch fails with a diff; the files are rewritten only
 * when UPDATE_GOLDEN=1 is set, never silently.
 */
export const GOLDEN_DIR = join(PACKAGE_ROOT, 'test', 'golden');
export const UPDATE_GOLDEN = process.env['UPDATE_GOLDEN'] === '1';

export function matchGolden(name: string, actual: string): void {
  const file = join(GOLDEN_DIR, name);
  if (UPDATE_GOLDEN) {
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, actual);
    return;
  }
  if (!existsSync(file)) assert.unreachable(`no golden file ${name}; run with UPDATE_GOLDEN=1 to create it`);
  assert.fixture(actual, readFileSync(file, 'utf8'), `golden ${name} differs (UPDATE_GOLDEN=1 regenerates it)`);
}
