import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { PACKAGE_ROOT } from '../server/lib/paths.js';
import { MIRROR_DEBIAN_PACKAGES, ROOTFS_INCLUDE, ensureRootfs } from './lib/cloudinit/rootfs.js';
import { requirements, skipNote } from './lib/tools.js';

/**
 * The cloud-init test's root filesystem, built (or found) in the system cache. This suite exists
 * so the cold build runs on its own, before `cloudinit.heavy.test` (the runner runs heavy suites
 * one at a time in name order, and `-` sorts before `.`): on a fresh CI machine the build gets the
 * runner's whole per-suite limit to itself, and the test that uses it starts with a warm cache.
 * It also checks that what the cache holds is what the test relies on.
 */
const test = suite('cloud-init test root filesystem: built once, cached outside the clone');

const missing = requirements(['debootstrap', 'unshare', 'flock', 'chroot', 'dpkg-query'], { root: true });

test('the cached Debian 12 root has cloud-init and sshd, no host keys; the mirror packages lie beside it', async (ctx) => {
  if (missing) {
    skipNote(ctx.__test__, missing);
    return;
  }
  const image = await ensureRootfs({ log: (l) => process.stdout.write(`  ${l}\n`) });
  process.stdout.write(`  root filesystem ${image.key} at ${image.dir}: ${image.built ? `built in ${image.seconds.toFixed(0)} s` : 'from the cache'}\n`);

  // Outside the clone: a fresh clone on the same machine finds it, `git clean` never removes it.
  assert.ok(relative(PACKAGE_ROOT, image.dir).startsWith('..'), `${image.dir} is inside the clone`);
  assert.ok(image.dir.endsWith(`rootfs-${image.key}`));

  const packages = new Map(
    readFileSync(join(image.dir, 'packages.txt'), 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => l.split(' ') as [string, string]),
  );
  for (const p of ['cloud-init', ...ROOTFS_INCLUDE]) assert.ok(packages.has(p), `${p} is installed in the root`);
  assert.match(packages.get('cloud-init') ?? '', /^22\.4/, "Debian 12's cloud-init");
  assert.ok(existsSync(join(image.root, 'usr/bin/cloud-init')));
  assert.ok(existsSync(join(image.root, 'usr/sbin/sshd')));
  assert.match(readFileSync(join(image.root, 'etc/os-release'), 'utf8'), /^VERSION_CODENAME=bookworm$/m);
  assert.match(readFileSync(join(image.root, 'etc/default/locale'), 'utf8'), /LANG=en_US\.UTF-8/);

  // Every machine makes its own identity, as a first boot does.
  assert.equal(readdirSync(join(image.root, 'etc/ssh')).filter((f) => f.startsWith('ssh_host_')), []);
  assert.is(readFileSync(join(image.root, 'etc/machine-id'), 'utf8'), '');
  assert.equal(readdirSync(join(image.root, 'var/lib/apt/lists')).filter((f) => f !== 'partial' && f !== 'lock' && f !== 'auxfiles'), []);

  // The Debian packages the test mirror serves as the "Ubuntu archive".
  const debs = readdirSync(image.debs);
  for (const p of MIRROR_DEBIAN_PACKAGES) assert.ok(debs.some((f) => f.startsWith(`${p}_`) && f.endsWith('.deb')), `${p} .deb in ${image.debs}`);
});

test.run();
