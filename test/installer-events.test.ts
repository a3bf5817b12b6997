import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { sniffImageFormat } from '../server/images/format.js';
import { InstallerEventError, parseInstallerEvent } from '../server/seeds/installer-events.js';
import { Rng, seedFromEnv } from './lib/fuzz.js';

/**
 * The installer events racksmith reads — curtin's webhook, racksmith's deploy agent, its d-i
 * reporter — parsed once at the boundary: the agent's disk and inventory taken in bounded shapes,
 * d-i's steps named as on its screen, and any JSON either parsed or refused with the typed error.
 */
const test = suite('installer events: curtin, the deploy agent and the d-i reporter; fuzzed');

test('the agent\'s disk report becomes the machine\'s disk facts; a FAIL is a failure', () => {
  const ev = parseInstallerEvent({
    event_type: 'finish',
    origin: 'racksmith-agent',
    name: 'racksmith-agent/disk',
    result: 'SUCCESS',
    description: '/dev/nvme0n1: nvme, 6.4 GB',
    disk: { name: 'nvme0n1', path: '/dev/sda', kind: 'nvme', sizeBytes: 6_442_450_944, serial: 'NVME0001', model: 'QEMU NVMe Ctrl', chosenBy: 'rule smallest' },
  });
  assert.equal(ev.disk, { name: 'nvme0n1', path: '/dev/nvme0n1', kind: 'nvme', sizeBytes: 6_442_450_944, serial: 'NVME0001', model: 'QEMU NVMe Ctrl', chosenBy: 'rule smallest' }, 'the path comes from the name, never from the report');
  assert.is(ev.failed, false);
  assert.is(parseInstallerEvent({ event_type: 'finish', name: 'racksmith-agent/image', result: 'FAIL', description: 'checksum mismatch' }).failed, true);
  assert.is(parseInstallerEvent({ event_type: 'start', name: 'racksmith-agent/image', result: 'FAIL' }).failed, false, 'only a finish ends a step');
  // Empty strings are no serial or model.
  assert.equal(parseInstallerEvent({ event_type: 'finish', name: 'x', disk: { name: 'vda', sizeBytes: 0, serial: '', model: '' } }).disk?.serial, null);
});

test('d-i\'s steps are named as d-i shows them; an inventory keeps its lists, bounded', () => {
  assert.is(parseInstallerEvent({ event_type: 'start', name: 'd-i/download-installer', origin: 'debian-installer' }).description, 'Download installer components');
  assert.is(parseInstallerEvent({ event_type: 'start', name: 'd-i/netcfg', description: 'own words' }).description, 'own words');
  assert.is(parseInstallerEvent({ event_type: 'start', name: 'd-i/some-new-step' }).description, '');
  const big = parseInstallerEvent({ event_type: 'finish', name: 'racksmith-agent/inventory', inventory: { disks: Array.from({ length: 100 }, (_, i) => ({ name: `sd${i}` })), nics: [{ mac: 'x' }, 5, null, 'eth0'], extra: 'dropped' } });
  assert.is((big.inventory?.['disks'] as unknown[]).length, 64);
  assert.equal(big.inventory?.['nics'], [{ mac: 'x' }]);
  assert.not.ok('extra' in (big.inventory ?? {}));
});

test('bad reports are refused with the field', () => {
  const cases: [unknown, string | undefined][] = [
    [{ event_type: 'finish', disk: 'nvme0n1' }, 'disk'],
    [{ event_type: 'finish', disk: { name: '../sda', sizeBytes: 1 } }, 'disk.name'],
    [{ event_type: 'finish', disk: { name: 'NVME0N1', sizeBytes: 1 } }, 'disk.name'],
    [{ event_type: 'finish', disk: { name: 'sda', sizeBytes: -1 } }, 'disk.sizeBytes'],
    [{ event_type: 'finish', disk: { name: 'sda', sizeBytes: 1.5 } }, 'disk.sizeBytes'],
    [{ event_type: 'finish', disk: { name: 'sda', sizeBytes: '1' } }, 'disk.sizeBytes'],
    [{ event_type: 'finish', inventory: [] }, 'inventory'],
    [{ event_type: 'finish', inventory: null }, 'inventory'],
    [{ name: 'x' }, 'event_type'],
    [[], undefined],
  ];
  for (const [body, field] of cases) {
    try {
      parseInstallerEvent(body);
      assert.unreachable(JSON.stringify(body));
    } catch (err) {
      assert.instance(err, InstallerEventError, JSON.stringify(body));
      assert.is((err as InstallerEventError).field, field, JSON.stringify(body));
    }
  }
});

function randomJson(r: Rng, depth = 0): unknown {
  switch (r.int(depth > 3 ? 5 : 7)) {
    case 0:
      return null;
    case 1:
      return r.chance(0.5);
    case 2:
      return r.pick([0, -1, 1.5, 2 ** 53, Number.MAX_VALUE, 6_442_450_944]);
    case 3:
      return r.string(r.int(40), 'abcdefghijklmnopqrstuvwxyz0123456789/._-\u0000\n"\\é');
    case 4:
      return r.pick(['finish', 'start', 'FAIL', 'SUCCESS', 'nvme0n1', 'd-i/netcfg']);
    case 5:
      return Array.from({ length: r.int(4) }, () => randomJson(r, depth + 1));
    default: {
      const keys = ['event_type', 'name', 'result', 'description', 'origin', 'disk', 'inventory', 'disks', 'nics', 'sizeBytes', 'serial', 'kind', 'model', 'chosenBy'];
      return Object.fromEntries(Array.from({ length: r.int(8) }, () => [r.pick(keys), randomJson(r, depth + 1)]));
    }
  }
}

test('fuzz: any JSON value parses or is refused with InstallerEventError — nothing else', () => {
  const r = new Rng(seedFromEnv(18));
  for (let i = 0; i < 20_000; i++) {
    const body = randomJson(r);
    try {
      const ev = parseInstallerEvent(body);
      assert.type(ev.eventType, 'string');
      if (ev.disk) assert.match(ev.disk.path, /^\/dev\/[a-z][a-z0-9]+$/);
      for (const s of [ev.name, ev.description]) assert.not.match(s, /[\r\n\0]/);
    } catch (err) {
      if (!(err instanceof InstallerEventError)) throw new Error(`seed ${r.seed}, case ${i}: ${JSON.stringify(body)} threw ${String(err)}`);
    }
  }
  // The image sniffer reads any bytes.
  for (let i = 0; i < 5000; i++) sniffImageFormat(r.bytes(r.int(600)));
});

test.run();
