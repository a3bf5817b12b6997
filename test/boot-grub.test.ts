import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { BOOTFILE_STALL_SECONDS, bootStall, findSignedChains, loaderOfBootfile, nextStallAt, resolveBootLoader, type LoaderFacts } from '../server/boot/loaders.js';
import { BootQueryError, grubConfigQuery, parseBootQuery, type BootQuery } from '../server/boot/query.js';
import { DEFAULT_ARM64_INSTALLERS, DEFAULT_INSTALLERS, artifactDir, installerArchOf, installerFor, installerTables } from '../server/boot/releases.js';
import { decideBootScript, grubConfigName, type BootFacts } from '../server/boot/script.js';
import { secureBootShown } from '../server/boot/serve.js';
import { UBUNTU_PORTS, mirrorFor } from '../server/seeds/context.js';
import { UBUNTU_RELEASES } from '../server/inventory/model.js';
import type { MachineState } from '../server/inventory/lifecycle.js';
import { BOOT_TEMPLATES_DIR } from '../server/lib/paths.js';
import { createRenderer, grubArg } from '../server/render/templates.js';
import { Rng, seedFromEnv } from './lib/fuzz.js';
import { matchGolden } from './lib/golden.js';
import { BOOT_SETTINGS, TOKEN, fixtureCluster, fixtureMachine } from './lib/seed-fixtures.js';

/**
 * The signed chain's GRUB configs: the same decision as the iPXE scripts, rendered for GRUB,
 * with golden files for every state; GRUB's config names as TFTP delivers them; which loader a
 * machine gets; and what racksmith infers of a machine stuck after its bootfile.
 */
const test = suite('boot: GRUB configs for the signed shim → GRUB chain');
const renderer = createRenderer(BOOT_TEMPLATES_DIR);
const MAC = '52:54:00:77:00:31';

function q(extra: Partial<BootQuery> = {}): BootQuery {
  return { mac: MAC as BootQuery['mac'], arch: 'x86_64', platform: 'efi', uuid: null, attempt: 1, lockdown: true, ...extra };
}

function facts(state: MachineState | null, query: BootQuery = q(), release: (typeof UBUNTU_RELEASES)[number] = '22.04'): BootFacts {
  const cluster = fixtureCluster(release);
  const machine = state === null ? null : fixtureMachine(cluster.name, MAC, 'w1', 'worker', '10.77.0.31', state);
  const assigned = machine !== null && state !== 'discovered';
  const installer = installerFor(installerTables(DEFAULT_INSTALLERS), release, installerArchOf(query.arch));
  return { query, machine: assigned ? machine : machine && { ...machine, role: null, cluster: null }, cluster: assigned ? cluster : null, installer: assigned ? installer : null, seedToken: assigned ? TOKEN : null, loader: 'grub' };
}

const render = (f: BootFacts): string => {
  const d = decideBootScript(f, BOOT_SETTINGS);
  return renderer.render(d.template, d.context);
};

const CASES: [string, BootFacts, string, string | null][] = [
  ['no MAC → grub.cfg asks for the machine\'s own config', { query: q({ mac: null }), machine: null, cluster: null, installer: null, seedToken: null, loader: 'grub' }, 'chain', null],
  ['unknown MAC → wait for a role', facts(null), 'wait', null],
  ['discovered → wait', facts('discovered'), 'wait', null],
  ['assigned → install, and the installer-served transition', facts('assigned'), 'install', 'installer-served'],
  ['reimaging → install', facts('reimaging'), 'install', 'installer-served'],
  ['ready → local disk', facts('ready'), 'local', null],
  ['failed → wait for an operator', facts('failed'), 'wait', null],
];

for (const [name, f, kind, transition] of CASES) {
  test(name, () => {
    const d = decideBootScript(f, BOOT_SETTINGS);
    assert.is(d.kind, kind);
    assert.is(d.transition, transition);
    assert.match(d.template, /grub/);
    assert.match(d.summary, /^GRUB config: /);
    assert.not.match(renderer.render(d.template, d.context), /^#!ipxe/);
  });
}

test('golden configs: grub.cfg, wait, install per release × arch, local', () => {
  matchGolden('boot/grub.cfg', render({ query: q({ mac: null }), machine: null, cluster: null, installer: null, seedToken: null, loader: 'grub' }));
  matchGolden('boot/wait.grub', render(facts(null, q({ attempt: 3 }))));
  for (const release of UBUNTU_RELEASES) {
    for (const arch of ['x86_64', 'arm64'] as const) matchGolden(`boot/install-${release}-${arch}.grub`, render(facts('assigned', q({ arch }), release)));
  }
  matchGolden('boot/local.grub', render(facts('installed')));
  const last = render(facts(null, q({ attempt: 99 })));
  assert.not.match(last, /configfile/, 'the last attempt does not ask again');
  assert.match(last, /^reboot$/m);
});

test('install: kernel and initrd from the TFTP server by path, every word single-quoted, the seed URL whole', () => {
  const cfg = render(facts('assigned'));
  assert.match(cfg, /^linux '\/artifacts\/22\.04\/vmlinuz' 'root=\/dev\/ram0' .* 'ds=nocloud-net;s=http:\/\/10\.77\.0\.1:8080\/seed\/tok3n-[A-Za-z0-9_-]+\/' 'cloud-config-url=\/dev\/null' 'console=ttyS0,115200'$/m);
  assert.match(cfg, /^initrd '\/artifacts\/22\.04\/initrd'$/m);
  assert.match(cfg, /^boot$/m);
  const di = render(facts('assigned', q(), '18.04'));
  assert.match(di, /^linux '\/artifacts\/18\.04\/linux' 'auto=true' 'priority=critical' 'url=http:\/\/10\.77\.0\.1:8080\/seed\/[^']+\/preseed\.cfg'/m);
});

test('ARM64: the arm64 installer of the release, never the amd64 one', () => {
  for (const release of UBUNTU_RELEASES) {
    const cfg = render(facts('assigned', q({ arch: 'arm64' }), release));
    assert.match(cfg, new RegExp(`^linux '/artifacts/${release.replace('.', '\\.')}/arm64/`, 'm'), release);
    assert.not.match(cfg, /amd64/, `${release}: nothing amd64`);
    const inst = DEFAULT_ARM64_INSTALLERS[release];
    assert.is(inst.arch, 'arm64');
    assert.is(artifactDir(inst), `${release}/arm64`);
    for (const url of Object.values(inst.upstream)) assert.not.match(url, /amd64/, url);
  }
  assert.is(installerArchOf('arm64'), 'arm64');
  assert.is(installerArchOf('x86_64'), 'amd64');
  assert.is(installerArchOf(null), 'amd64');
});

test('wait asks again under GRUB\'s per-MAC name with the same query, attempt + 1', () => {
  const cfg = render(facts('discovered', q({ attempt: 2 })));
  assert.match(cfg, /^configfile "\$\{prefix\}\/grub\.cfg-01-52-54-00-77-00-31\?arch=x86_64&platform=efi&lockdown=y&attempt=3"$/m);
  assert.is(grubConfigName(MAC as NonNullable<BootQuery['mac']>, q({ lockdown: null })), 'grub.cfg-01-52-54-00-77-00-31?arch=x86_64&platform=efi');
});

// ── GRUB's config names as they arrive over TFTP ─────────────────────────────────────────────
const NAMES: [string, string, Partial<BootQuery> | 'none' | 'error'][] = [
  ['the name grub.cfg asks for', 'grub/grub.cfg-01-52-54-00-77-00-31?arch=x86_64&platform=efi&lockdown=y', { mac: MAC as BootQuery['mac'], arch: 'x86_64', platform: 'efi', lockdown: true }],
  ['GRUB\'s plain per-MAC name', 'grub/grub.cfg-01-52-54-00-77-00-31', { mac: MAC as BootQuery['mac'], arch: null, lockdown: null }],
  ['upper-case hex', 'grub/grub.cfg-01-52-54-00-AA-BB-CC', { mac: '52:54:00:aa:bb:cc' as BootQuery['mac'] }],
  ['arm64 without lockdown', 'grub/grub.cfg-01-52-54-00-77-00-31?arch=arm64&platform=efi&lockdown=n&attempt=4', { arch: 'arm64', lockdown: false, attempt: 4 }],
  ['junk values are dropped', 'grub/grub.cfg-01-52-54-00-77-00-31?arch=x86_64%0Areboot&lockdown=maybe', { arch: null, lockdown: null }],
  ['a mac in the query cannot override the name', 'grub/grub.cfg-01-52-54-00-77-00-31?mac=52-54-00-00-00-01', { mac: MAC as BootQuery['mac'] }],
  ['repeated key → refused', 'grub/grub.cfg-01-52-54-00-77-00-31?arch=arm64&arch=x86_64', 'error'],
  ['not a per-MAC name', 'grub/grub.cfg-C0A8', 'none'],
  ['short MAC', 'grub/grub.cfg-01-52-54-00-77-00', 'none'],
  ['traversal', 'grub/grub.cfg-01-52-54-00-77-00-31/../../etc/passwd', 'none'],
];
for (const [name, file, want] of NAMES) {
  test(`GRUB config name: ${name}`, () => {
    const raw = grubConfigQuery(file);
    if (want === 'none') return assert.is(raw, null);
    assert.ok(raw);
    if (want === 'error') return assert.throws(() => parseBootQuery(raw), (e: unknown) => e instanceof BootQueryError);
    const got = parseBootQuery(raw);
    for (const [k, v] of Object.entries(want)) assert.equal(got[k as keyof BootQuery], v, k);
  });
}

test('seeded fuzz: any name is a config name or not; configs only ever hold the expected commands', () => {
  const rng = new Rng(seedFromEnv(0x9e3b));
  const alphabet = 'ab09:-\n\r ;#${}|&%?=\u0000"\'\\x';
  const word = (): string => Array.from({ length: rng.int(20) }, () => alphabet[rng.int(alphabet.length)]).join('');
  const keys = ['arch', 'platform', 'lockdown', 'attempt', 'uuid'];
  for (let i = 0; i < 3000; i++) {
    const tail = rng.int(4) ? `?${keys[rng.int(keys.length)] ?? word()}=${rng.int(3) ? word() : 'y'}&attempt=${word()}` : word();
    const raw = grubConfigQuery(`grub/grub.cfg-01-52-54-00-aa-bb-cc${tail}`);
    if (!raw) continue;
    let parsed: BootQuery;
    try {
      parsed = parseBootQuery(raw);
    } catch (err) {
      assert.instance(err, BootQueryError);
      continue;
    }
    const cfg = render({ query: parsed, machine: null, cluster: null, installer: null, seedToken: null, loader: 'grub' });
    for (const line of cfg.split('\n').filter((l) => l && !l.startsWith('#'))) assert.match(line, /^(echo '[^'\n]*'|sleep \d+|configfile "\$\{prefix\}\/grub\.cfg-01-[0-9a-f-]+\?[A-Za-z0-9=&._%-]*"|reboot)$/, line);
  }
});

test('grubarg: single-quoted, and refuses what would end the quote or the line', () => {
  assert.is(grubArg('ds=nocloud-net;s=http://10.0.0.1:8080/seed/a_b-c/'), "'ds=nocloud-net;s=http://10.0.0.1:8080/seed/a_b-c/'");
  for (const bad of ["it's", 'a\nb', 'a\rb', '${x}', 'a"b', 'a\\b', 'a\u0000']) assert.throws(() => grubArg(bad), /grubarg/, JSON.stringify(bad));
});

// ── which loader, and what racksmith can see ─────────────────────────────────────────────────
const BASE_LOADER: LoaderFacts = { setting: null, siteDefault: 'ipxe', arch: 'x86_64', secureBoot: false, ipxeAvailable: true, shimGrubAvailable: true };
const LOADERS: [string, Partial<LoaderFacts>, string | null][] = [
  ['site default ipxe', {}, 'ipxe'],
  ['machine set to shim-grub', { setting: 'shim-grub' }, 'shim-grub'],
  ['site default shim-grub, machine set to ipxe', { siteDefault: 'shim-grub', setting: 'ipxe' }, 'ipxe'],
  ['auto, not marked Secure Boot', { setting: 'auto' }, 'ipxe'],
  ['auto, marked Secure Boot', { setting: 'auto', secureBoot: true }, 'shim-grub'],
  ['site auto, marked Secure Boot', { siteDefault: 'auto', secureBoot: true }, 'shim-grub'],
  ['shim-grub wanted but not installed: iPXE', { setting: 'shim-grub', shimGrubAvailable: false }, 'ipxe'],
  ['arm64 with no arm64 iPXE: the signed chain whatever the setting', { arch: 'arm64', ipxeAvailable: false }, 'shim-grub'],
  ['neither: nothing', { ipxeAvailable: false, shimGrubAvailable: false }, null],
];
for (const [name, f, want] of LOADERS) test(`loader: ${name}`, () => assert.is(resolveBootLoader({ ...BASE_LOADER, ...f }), want));

test('signed binaries: both shim and GRUB, from an extra folder first, then the package paths', () => {
  const present = new Set(['/srv/signed/arm64/shimaa64.efi', '/srv/signed/arm64/grubaa64.efi', '/usr/lib/shim/shimx64.efi.signed']);
  const found = findSignedChains(['/srv/signed'], (p) => present.has(p));
  assert.equal([...(found.arm64 ?? new Map())], [['shimaa64.efi', '/srv/signed/arm64/shimaa64.efi'], ['grubaa64.efi', '/srv/signed/arm64/grubaa64.efi']]);
  assert.is(found.x86_64, undefined, 'shim without GRUB is no chain');
});

test('Secure Boot as seen: GRUB\'s lockdown, or iPXE running on EFI', () => {
  assert.is(secureBootShown('grub', q({ lockdown: true })), 'enforced');
  assert.is(secureBootShown('grub', q({ lockdown: false })), 'off');
  assert.is(secureBootShown('grub', q({ lockdown: null })), null);
  assert.is(secureBootShown('ipxe', q({ platform: 'efi' })), 'off');
  assert.is(secureBootShown('ipxe', q({ platform: 'pcbios' })), null);
});

test('stuck after the bootfile: a bootfile, no loader after it, for longer than the threshold', () => {
  const t0 = Date.parse('2026-12-01T10:00:00Z');
  const at = (s: number): string => new Date(t0 + s * 1000).toISOString();
  const later = t0 + (BOOTFILE_STALL_SECONDS + 1) * 1000;
  assert.is(bootStall({ bootfile: null, bootfileAt: null, loaderAt: null }, later), null);
  assert.is(bootStall({ bootfile: 'ipxe.efi', bootfileAt: at(0), loaderAt: null }, t0 + 5000), null, 'not yet');
  const stuck = bootStall({ bootfile: 'ipxe.efi', bootfileAt: at(0), loaderAt: null }, later);
  assert.ok(stuck);
  assert.match(stuck.message, /Secure Boot/);
  assert.is(bootStall({ bootfile: 'ipxe.efi', bootfileAt: at(0), loaderAt: at(3) }, later), null, 'the loader asked after it');
  assert.ok(bootStall({ bootfile: 'ipxe.efi', bootfileAt: at(10), loaderAt: at(3) }, t0 + (BOOTFILE_STALL_SECONDS + 11) * 1000), 'a loader from an earlier boot does not count');
  assert.is(nextStallAt([{ bootfile: 'ipxe.efi', bootfileAt: at(0), loaderAt: null }, { bootfile: 'ipxe.efi', bootfileAt: at(5), loaderAt: null }], t0 + 1000), t0 + BOOTFILE_STALL_SECONDS * 1000, 'a cached list expires when the first stall shows');
  assert.is(nextStallAt([{ bootfile: 'ipxe.efi', bootfileAt: at(0), loaderAt: at(1) }], t0 + 1000), null);
  assert.is(loaderOfBootfile('shim-grub/x86_64/shimx64.efi'), 'shim-grub');
  assert.is(loaderOfBootfile('undionly.kpxe'), 'ipxe');
  assert.is(loaderOfBootfile('artifacts/22.04/vmlinuz'), null);
  assert.is(loaderOfBootfile('grub/grub.cfg'), null);
});

test('ARM64 seeds: Ubuntu\'s default archive becomes ubuntu-ports; a site mirror stays', () => {
  assert.is(mirrorFor('arm64', 'http://archive.ubuntu.com/ubuntu'), UBUNTU_PORTS);
  assert.is(mirrorFor('x86_64', 'http://archive.ubuntu.com/ubuntu'), 'http://archive.ubuntu.com/ubuntu');
  assert.is(mirrorFor('arm64', 'http://mirror.lan/ubuntu'), 'http://mirror.lan/ubuntu');
});

test.run();
