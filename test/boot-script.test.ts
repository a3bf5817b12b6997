import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { DEFAULT_INSTALLERS, resolveInstallers } from '../server/boot/releases.js';
import { BootQueryError, parseBootQuery, type BootQuery } from '../server/boot/query.js';
import { artifactsBase, decideBootScript, type BootFacts } from '../server/boot/script.js';
import { UBUNTU_RELEASES } from '../server/inventory/model.js';
import type { MachineState } from '../server/inventory/lifecycle.js';
import { BOOT_TEMPLATES_DIR } from '../server/lib/paths.js';
import { createRenderer, ipxeArg, ipxeText } from '../server/render/templates.js';
import { matchGolden } from './lib/golden.js';
import { BOOT_SETTINGS, TOKEN, fixtureCluster, fixtureMachine } from './lib/seed-fixtures.js';

/** The iPXE decision as a table of named cases, the rendered scripts as golden files. */
const test = suite('boot: which iPXE script each machine gets');
const renderer = createRenderer(BOOT_TEMPLATES_DIR);
const MAC = '52:54:00:77:00:11';

function q(extra: Partial<BootQuery> = {}): BootQuery {
  return { mac: MAC as BootQuery['mac'], arch: 'x86_64', platform: 'pcbios', uuid: null, attempt: 1, ...extra };
}

function facts(state: MachineState | null, query: BootQuery = q(), release: (typeof UBUNTU_RELEASES)[number] = '22.04'): BootFacts {
  const cluster = fixtureCluster(release);
  const machine = state === null ? null : fixtureMachine(cluster.name, MAC, 'cp1', 'control-plane', '10.77.0.11', state);
  const assigned = machine !== null && state !== 'discovered';
  return { query, machine: assigned ? machine : machine && { ...machine, role: null, cluster: null }, cluster: assigned ? cluster : null, installer: assigned ? DEFAULT_INSTALLERS[release] : null, seedToken: assigned ? TOKEN : null };
}

const CASES: [string, BootFacts, string, string | null][] = [
  ['no MAC → chain script', { query: q({ mac: null }), machine: null, cluster: null, installer: null, seedToken: null }, 'chain', null],
  ['unknown MAC → wait for a role', facts(null), 'wait', null],
  ['discovered → wait for a role', facts('discovered'), 'wait', null],
  ['assigned → install, and the installer-served transition', facts('assigned'), 'install', 'installer-served'],
  ['provisioning (power blip) → install again', facts('provisioning'), 'install', 'installer-served'],
  ['reimaging → install', facts('reimaging'), 'install', 'installer-served'],
  ['installed → local disk', facts('installed'), 'local', null],
  ['ready → local disk', facts('ready'), 'local', null],
  ['joining → local disk', facts('joining'), 'local', null],
  ['joined → local disk', facts('joined'), 'local', null],
  ['failed → wait for an operator', facts('failed'), 'wait', null],
];

for (const [name, f, kind, transition] of CASES) {
  test(name, () => {
    const d = decideBootScript(f, BOOT_SETTINGS);
    assert.is(d.kind, kind);
    assert.is(d.transition, transition);
    const script = renderer.render(d.template, d.context);
    assert.ok(script.startsWith('#!ipxe\n'), 'an iPXE script');
  });
}

test('golden scripts: chain, wait, install per release × firmware, local per firmware', () => {
  const chain = decideBootScript({ query: q({ mac: null }), machine: null, cluster: null, installer: null, seedToken: null }, BOOT_SETTINGS);
  matchGolden('boot/chain.ipxe', renderer.render(chain.template, chain.context));
  const wait = decideBootScript(facts(null, q({ attempt: 3 })), BOOT_SETTINGS);
  matchGolden('boot/wait.ipxe', renderer.render(wait.template, wait.context));
  const last = decideBootScript(facts(null, q({ attempt: 99 })), BOOT_SETTINGS);
  const lastScript = renderer.render(last.template, last.context);
  assert.not.match(lastScript, /chain/, 'the last attempt does not ask again');
  assert.match(lastScript, /reboot/);
  for (const release of UBUNTU_RELEASES) {
    for (const platform of ['pcbios', 'efi'] as const) {
      const d = decideBootScript(facts('assigned', q({ platform }), release), BOOT_SETTINGS);
      matchGolden(`boot/install-${release}-${platform}.ipxe`, renderer.render(d.template, d.context));
    }
  }
  for (const platform of ['pcbios', 'efi'] as const) {
    const d = decideBootScript(facts('installed', q({ platform })), BOOT_SETTINGS);
    matchGolden(`boot/local-${platform}.ipxe`, renderer.render(d.template, d.context));
  }
});

test('local boot: exit with an error on EFI (the firmware goes on to the disk), sanboot of the first disk on BIOS', () => {
  const efi = decideBootScript(facts('ready', q({ platform: 'efi' })), BOOT_SETTINGS);
  const bios = decideBootScript(facts('ready', q({ platform: 'pcbios' })), BOOT_SETTINGS);
  assert.match(renderer.render(efi.template, efi.context), /^set racksmith-local-boot 1\nexit 1$/m);
  assert.match(renderer.render(bios.template, bios.context), /^sanboot --no-describe --drive 0x80 \|\| exit$/m);
});

test('installers: d-i for 18.04, casper + nocloud-net for 20.04+, named initrd on the kernel line', () => {
  const di = renderer.render(...tpl(decideBootScript(facts('assigned', q(), '18.04'), BOOT_SETTINGS)));
  assert.match(di, /^kernel --name kernel http:\/\/10\.77\.0\.1:8080\/artifacts\/18\.04\/linux\?mac=52-54-00-77-00-11 initrd=initrd\.gz auto=true priority=critical url=http:\/\/10\.77\.0\.1:8080\/seed\/tok3n-[^/]+\/preseed\.cfg interface=auto netcfg\/dhcp_timeout=60 netcfg\/no_default_route=true hostname=cp1 locale=en_US\.UTF-8 keyboard-configuration\/layoutcode=us console-setup\/ask_detect=false console=ttyS0,115200 --- \|\| goto failed$/m);
  assert.match(di, /^initrd --name initrd\.gz http:\/\/10\.77\.0\.1:8080\/artifacts\/18\.04\/initrd\.gz\?mac=52-54-00-77-00-11 \|\| goto failed$/m);
  const sub = renderer.render(...tpl(decideBootScript(facts('assigned', q(), '24.04'), BOOT_SETTINGS)));
  assert.match(sub, / url=http:\/\/10\.77\.0\.1:8080\/artifacts\/24\.04\/ubuntu-24\.04\.4-live-server-amd64\.iso autoinstall ds=nocloud-net;s=http:\/\/10\.77\.0\.1:8080\/seed\/tok3n-[A-Za-z0-9_-]+\/ cloud-config-url=\/dev\/null/);
  assert.match(sub, /initrd=initrd /);
});

test('d-i: the name server racksmith hands out goes on the command line; none without one', () => {
  // d-i loses DHCP's name servers when the lease has no router (its udhcpc script stops first),
  // then asks for them at priority critical: racksmith answers with what its DHCP hands out.
  const withDns = renderer.render(...tpl(decideBootScript(facts('assigned', q(), '18.04'), { ...BOOT_SETTINGS, nameservers: ['10.77.0.53', '10.77.0.54'] })));
  assert.match(withDns, / netcfg\/no_default_route=true netcfg\/get_nameservers=10\.77\.0\.53 hostname=cp1 /);
  const without = renderer.render(...tpl(decideBootScript(facts('assigned', q(), '18.04'), BOOT_SETTINGS)));
  assert.not.match(without, /get_nameservers/);
  const sub = renderer.render(...tpl(decideBootScript(facts('assigned', q(), '24.04'), { ...BOOT_SETTINGS, nameservers: ['10.77.0.53'] })));
  assert.not.match(sub, /get_nameservers/, 'subiquity takes DNS from its own DHCP client');
});

test('installer names and upstreams are configuration', () => {
  const t = resolveInstallers({ '22.04': { iso: 'custom.iso', upstream: { 'custom.iso': 'http://mirror.lan/custom.iso' } } });
  assert.is(t['22.04'].iso, 'custom.iso');
  assert.is(t['22.04'].upstream['custom.iso'], 'http://mirror.lan/custom.iso');
  assert.is(t['22.04'].kernel, 'vmlinuz');
  assert.is(t['18.04'], DEFAULT_INSTALLERS['18.04']);
});

function tpl(d: { template: string; context: Record<string, unknown> }): [string, Record<string, unknown>] {
  return [d.template, d.context];
}

// ── the query string: nothing from a request reaches a script unchecked ──────────────────────
const QUERIES: [string, Record<string, unknown>, Partial<BootQuery> | string][] = [
  ['hex-hyphen MAC (iPXE ${net0/mac:hexhyp})', { mac: '52-54-00-AA-BB-CC', arch: 'x86_64', platform: 'efi' }, { mac: '52:54:00:aa:bb:cc' as BootQuery['mac'], arch: 'x86_64', platform: 'efi' }],
  ['no MAC', {}, { mac: null }],
  ['empty MAC is no MAC', { mac: '' }, { mac: null }],
  ['unknown arch and platform are dropped', { mac: '525400aabbcc', arch: 'x86_64\nshell', platform: 'efi;reboot' }, { arch: null, platform: null }],
  ['a UUID is kept lower-case; junk is dropped', { mac: '525400aabbcc', uuid: 'A0B1C2D3-0000-1111-2222-333344445555' }, { uuid: 'a0b1c2d3-0000-1111-2222-333344445555' }],
  ['junk UUID dropped', { mac: '525400aabbcc', uuid: '${reboot}' }, { uuid: null }],
  ['attempt bounded to digits', { mac: '525400aabbcc', attempt: '7' }, { attempt: 7 }],
  ['attempt junk → 1', { mac: '525400aabbcc', attempt: '1\nreboot' }, { attempt: 1 }],
  ['bad MAC → error naming mac', { mac: '52:54:00:aa:bb:cc\nshell' }, 'mac'],
  ['repeated MAC → error', { mac: ['525400aabbcc', '525400aabbcd'] }, 'mac'],
];

for (const [name, query, want] of QUERIES) {
  test(`query: ${name}`, () => {
    if (typeof want === 'string') {
      try {
        parseBootQuery(query);
        assert.unreachable('should throw');
      } catch (err) {
        assert.instance(err, BootQueryError);
        assert.is((err as BootQueryError).field, want);
        assert.is((err as BootQueryError).code, 'ERR_BOOT_QUERY');
      }
      return;
    }
    const got = parseBootQuery(query);
    for (const [k, v] of Object.entries(want)) assert.equal(got[k as keyof BootQuery], v, k);
  });
}

test('seeded fuzz: any query parses or throws the typed error; no script line ever gains a command', () => {
  let seed = 0x5eed;
  const rnd = (n: number): number => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  const alphabet = 'ab09:-\n\r ;#${}|&%\u0000"\'\\x';
  const word = (): string => Array.from({ length: rnd(24) }, () => alphabet[rnd(alphabet.length)]).join('');
  for (let i = 0; i < 3000; i++) {
    const query: Record<string, unknown> = {};
    for (const k of ['mac', 'arch', 'platform', 'uuid', 'attempt']) if (rnd(3)) query[k] = rnd(5) ? word() : '52-54-00-aa-bb-cc';
    let parsed: BootQuery;
    try {
      parsed = parseBootQuery(query);
    } catch (err) {
      assert.instance(err, BootQueryError);
      continue;
    }
    const d = decideBootScript({ query: parsed, machine: null, cluster: null, installer: null, seedToken: null }, BOOT_SETTINGS);
    const script = renderer.render(d.template, d.context);
    const commands = script.split('\n').filter((l) => l && !l.startsWith('#') && !l.startsWith(':'));
    for (const line of commands) assert.match(line, /^(chain|echo|sleep|goto|reboot)( |$)/, line);
  }
});

test('filters: iPXE words refuse what iPXE would split, expand or end', () => {
  for (const bad of ['a b', '${x}', '#c', ';', '||', '&&', 'a\nb', '"q"']) assert.throws(() => ipxeArg(bad), /ipxearg/);
  assert.is(ipxeArg('ds=nocloud-net;s=http://10.0.0.1:8080/seed/a_b-c/'), 'ds=nocloud-net;s=http://10.0.0.1:8080/seed/a_b-c/');
  assert.throws(() => ipxeText('x ${reboot}'), /ipxetext/);
  assert.throws(() => ipxeText('x\nreboot'), /ipxetext/);
});

test("the artifacts' base: artifacts-url, else racksmith's own nginx on its port at the address the machine used, else racksmith", () => {
  assert.is(artifactsBase({ baseUrl: 'http://10.77.0.1:8080' }), 'http://10.77.0.1:8080');
  assert.is(artifactsBase({ baseUrl: 'http://10.77.0.1:8080', artifactsPort: 8081 }), 'http://10.77.0.1:8081');
  assert.is(artifactsBase({ baseUrl: 'http://[fd00::1]:8080', artifactsPort: 8081 }), 'http://[fd00::1]:8081');
  assert.is(artifactsBase({ baseUrl: 'http://10.77.0.1:8080', artifactsPort: 80 }), 'http://10.77.0.1', 'the default port is left out');
  assert.is(artifactsBase({ baseUrl: 'http://10.77.0.1:8080', artifactsPort: 8081, artifactsBaseUrl: 'http://artifacts.rack1:8081' }), 'http://artifacts.rack1:8081');
  const d = decideBootScript(facts('assigned', q({ platform: 'efi' })), { ...BOOT_SETTINGS, artifactsPort: 8081 });
  const script = renderer.render(d.template, d.context);
  const base = new URL(BOOT_SETTINGS.baseUrl);
  assert.ok(script.includes(`kernel --name kernel http://${base.hostname}:8081/artifacts/`), script);
  assert.ok(script.includes(`s=${BOOT_SETTINGS.baseUrl}/seed/`), 'the seed stays with racksmith');
});

test.run();
