import { join } from 'node:path';
import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { PACKAGE_ROOT } from '../server/lib/paths.js';

/**
 * The console's pure formatting (web/src/format.ts, built to dist/web): a rack tile's boot line
 * names the firmware and arch seen, the boot loader and Secure Boot as seen, for every machine.
 */
const test = suite('web: tile formatting');

type Summary = (m: { firmware: string | null; arch: string | null; bootLoader: string | null; secureBootSeen: string | null; boot?: { lastLoader: string | null } }) => string;
let bootSummary: Summary;

test.before(async () => {
  ({ bootSummary } = (await import(join(PACKAGE_ROOT, 'dist', 'web', 'format.js'))) as { bootSummary: Summary });
});

test('a Secure Boot machine through the signed chain', () => {
  assert.is(bootSummary({ firmware: 'efi', arch: 'x86_64', bootLoader: 'shim-grub', secureBootSeen: 'enforced', boot: { lastLoader: 'shim-grub' } }), 'UEFI x86_64 · loader shim-grub · Secure Boot enforced');
});

test('an ARM64 machine, and a BIOS one on iPXE', () => {
  assert.is(bootSummary({ firmware: 'efi', arch: 'arm64', bootLoader: null, secureBootSeen: 'off', boot: { lastLoader: 'shim-grub' } }), 'UEFI arm64 · loader shim-grub · Secure Boot off');
  assert.is(bootSummary({ firmware: 'bios', arch: 'x86_64', bootLoader: null, secureBootSeen: null, boot: { lastLoader: 'ipxe' } }), 'BIOS x86_64 · loader ipxe · Secure Boot not seen');
});

test('nothing seen yet: the setting is shown as a setting, not as what was served', () => {
  assert.is(bootSummary({ firmware: null, arch: null, bootLoader: 'auto', secureBootSeen: null, boot: { lastLoader: null } }), 'firmware not seen yet · loader auto (set) · Secure Boot not seen');
  assert.is(bootSummary({ firmware: null, arch: null, bootLoader: null, secureBootSeen: null }), 'firmware not seen yet · loader not served yet · Secure Boot not seen');
});

test.run();
