import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { LAB_PACKAGES, readPackageList } from '../lab/packages.js';
import { PACKAGE_ROOT } from '../server/lib/paths.js';

/** One list of Debian packages: `.ci/run`, `npm test` and the lab all read `.ci/packages`. */
const test = suite('packages: one Debian package list for CI, npm test and the lab');
const read = (p: string): string => readFileSync(join(PACKAGE_ROOT, p), 'utf8');

test('.ci/run installs exactly the list, and keeps no list of its own', () => {
  const ci = read('.ci/run');
  assert.match(ci, /mapfile -t PACKAGES < <\(sed -e 's\/#\.\*\/\/' \.ci\/packages \| awk 'NF \{ print \$1 \}'\)/);
  assert.match(ci, /apt-get install -y --no-install-recommends "\$\{PACKAGES\[@\]\}"/);
  assert.not.match(ci, /PACKAGES=\(/);
});

test('npm test installs from it first; the lab takes the packages tagged lab', () => {
  const scripts = (JSON.parse(read('package.json')) as { scripts: Record<string, string> }).scripts;
  assert.match(scripts['test'] ?? '', /node dist\/test\/prepare\.js && node dist\/test\/run\.js$/);
  const all = readPackageList();
  assert.ok(all.length >= 40, `${all.length} packages`);
  assert.is(new Set(all).size, all.length, 'a package listed twice');
  for (const p of ['qemu-system-x86', 'openipmi', 'chromium', 'zsh']) assert.ok(all.includes(p), p);
  assert.ok(LAB_PACKAGES.length >= 15);
  for (const p of LAB_PACKAGES) assert.ok(all.includes(p), p);
  for (const p of ['qemu-system-x86', 'ovmf', 'openipmi', 'ipmitool', 'dropbear-bin', 'haproxy']) assert.ok(LAB_PACKAGES.includes(p), `the lab needs ${p}`);
  assert.not.ok(LAB_PACKAGES.includes('chromium'), 'the lab installs only what it runs');
});

test.run();
