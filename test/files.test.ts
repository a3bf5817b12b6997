import { mkdirSync, mkdtempSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { FileError, createDirectorySource, createFileRegistry, layeredSource } from '../server/lib/files.js';
import { JailError, checkRequestPath, isDenial, resolveInside } from '../server/lib/jail.js';
import { parseArpTable } from '../server/lib/neighbours.js';
import { parseRouteTable, routeInterface } from '../server/lib/netif.js';

// ── the pure path check ───────────────────────────────────────────────────────────────────────
const paths = suite('jail: client paths');
const REFUSED: [string, string][] = [
  ['../etc/passwd', 'ERR_JAIL_TRAVERSAL'],
  ['a/../../b', 'ERR_JAIL_TRAVERSAL'],
  ['..', 'ERR_JAIL_TRAVERSAL'],
  ['./ipxe.efi', 'ERR_JAIL_TRAVERSAL'],
  ['a//b', 'ERR_JAIL_TRAVERSAL'],
  ['dir/', 'ERR_JAIL_TRAVERSAL'],
  ['/etc/passwd', 'ERR_JAIL_ABSOLUTE'],
  ['..\\..\\etc\\passwd', 'ERR_JAIL_BACKSLASH'],
  ['boot\\x86\\wdsnbp.com', 'ERR_JAIL_BACKSLASH'],
  ['%2e%2e/%2e%2e/etc/passwd', 'ERR_JAIL_ENCODED'],
  ['ipxe%2eefi', 'ERR_JAIL_ENCODED'],
  ['ipxe.efi\0.png', 'ERR_JAIL_CONTROL'],
  ['line\nbreak', 'ERR_JAIL_CONTROL'],
  ['', 'ERR_JAIL_EMPTY'],
  ['a'.repeat(1025), 'ERR_JAIL_TOO_LONG'],
];
for (const [name, code] of REFUSED) {
  paths(`${JSON.stringify(name.slice(0, 40))} → ${code}`, () => {
    assert.throws(() => checkRequestPath(name), (e: unknown) => e instanceof JailError && e.code === code);
    assert.ok(isDenial(code as JailError['code']));
  });
}
paths('ordinary names pass, split into segments', () => {
  assert.equal(checkRequestPath('ipxe.efi'), ['ipxe.efi']);
  assert.equal(checkRequestPath('pxelinux.cfg/01-52-54-00-aa-bb-cc'), ['pxelinux.cfg', '01-52-54-00-aa-bb-cc']);
  assert.equal(checkRequestPath('...hidden'), ['...hidden']);
});
paths.run();

// ── the directory source on a real folder ────────────────────────────────────────────────────
const dir = mkdtempSync(join(tmpdir(), 'racksmith-files-'));
const root = join(dir, 'root');
const outside = join(dir, 'outside');
mkdirSync(join(root, 'sub'), { recursive: true });
mkdirSync(outside);
writeFileSync(join(root, 'small.bin'), Buffer.alloc(1000, 1));
writeFileSync(join(root, 'big.bin'), Buffer.alloc(300_000, 2));
writeFileSync(join(root, 'sub', 'file.txt'), 'inside\n');
writeFileSync(join(outside, 'canary'), 'secret');
writeFileSync(join(outside, 'allowed.efi'), 'allowed');
symlinkSync('../outside/canary', join(root, 'escape'));
symlinkSync(join(outside, 'canary'), join(root, 'abs-escape'));
symlinkSync(join(outside), join(root, 'outdir'));
symlinkSync('sub/file.txt', join(root, 'inner-link'));
symlinkSync(join(outside, 'allowed.efi'), join(root, 'ipxe.efi'));
symlinkSync('loop', join(root, 'loop'));

const opened: string[] = [];
const source = createDirectorySource(root, { memoryFileMax: 100_000, allowLinksTo: [join(outside, 'allowed.efi')], onOpen: (p) => opened.push(p) });

async function code(name: string): Promise<string> {
  try {
    await source.open(name);
    return 'opened';
  } catch (err) {
    return err instanceof FileError ? `${err.code}/${err.reason}` : String(err);
  }
}

const ds = suite('files: jailed directory');
ds('symlinks out of the root are refused before anything is opened', async () => {
  assert.is(await code('escape'), 'ERR_FILE_DENIED/ERR_JAIL_OUTSIDE');
  assert.is(await code('abs-escape'), 'ERR_FILE_DENIED/ERR_JAIL_OUTSIDE');
  assert.is(await code('outdir/canary'), 'ERR_FILE_DENIED/ERR_JAIL_OUTSIDE');
  assert.is(await code('loop'), 'ERR_FILE_DENIED/ERR_JAIL_OUTSIDE');
  assert.is(await code('../outside/canary'), 'ERR_FILE_DENIED/ERR_JAIL_TRAVERSAL');
  assert.ok(!opened.some((p) => p.includes('canary')), `opened ${opened.join(', ')}`);
});
ds('a symlink to an explicitly allowed file outside is followed', async () => {
  const f = await source.open('ipxe.efi');
  assert.is(f.bytes?.toString(), 'allowed');
});
ds('links inside the root, sub-folders, missing files and folders', async () => {
  assert.is((await source.open('inner-link')).bytes?.toString(), 'inside\n');
  assert.is((await source.open('sub/file.txt')).size, 7);
  assert.is(await code('nope.bin'), 'ERR_FILE_NOT_FOUND/ERR_JAIL_NOT_FOUND');
  assert.is(await code('sub'), 'ERR_FILE_NOT_FOUND/ERR_JAIL_NOT_FOUND');
  assert.is(await code('small.bin/x'), 'ERR_FILE_NOT_FOUND/ERR_JAIL_NOT_FOUND');
});
ds('small files are served from memory and reloaded when they change on disk', async () => {
  const loads = source.cacheStats().loads;
  const a = await source.open('small.bin');
  const b = await source.open('small.bin');
  assert.ok(a.bytes && b.bytes);
  assert.is(source.cacheStats().loads, loads + 1, 'second open came from memory');
  writeFileSync(join(root, 'small.bin'), Buffer.alloc(1000, 9));
  utimesSync(join(root, 'small.bin'), new Date(), new Date(Date.now() + 5000));
  const c = await source.open('small.bin');
  assert.is(c.bytes?.[0], 9);
  assert.is(source.cacheStats().loads, loads + 2);
});
ds('big files are read from disk in pieces', async () => {
  const f = await source.open('big.bin');
  assert.is(f.bytes, null);
  assert.is(f.size, 300_000);
  const tail = await f.read(299_990, 100);
  assert.is(tail.length, 10);
  assert.is(tail[0], 2);
  await f.close();
});
ds('generated files come first; not-found falls through, a denial does not', async () => {
  const reg = createFileRegistry();
  reg.register('boot.cfg', 'generated');
  let calls = 0;
  reg.register('dynamic.txt', () => `call ${++calls}`);
  const layered = layeredSource([reg, source]);
  assert.is((await layered.open('boot.cfg')).bytes?.toString(), 'generated');
  assert.is((await layered.open('dynamic.txt')).bytes?.toString(), 'call 1');
  assert.is((await layered.open('dynamic.txt')).bytes?.toString(), 'call 2');
  assert.is((await layered.open('sub/file.txt')).size, 7);
  await layered.open('escape').then(
    () => assert.unreachable(),
    (e: unknown) => assert.is((e as FileError).code, 'ERR_FILE_DENIED'),
  );
  assert.throws(() => reg.register('../x', 'no'), (e: unknown) => e instanceof JailError);
  assert.equal(reg.names(), ['boot.cfg', 'dynamic.txt']);
  assert.ok(reg.unregister('boot.cfg'));
});
ds('resolveInside reports the real path', async () => {
  const r = await resolveInside(root, 'inner-link');
  assert.ok(r.path.endsWith(join('sub', 'file.txt')));
});
ds.after(() => rmSync(dir, { recursive: true, force: true }));
ds.run();

// ── kernel tables ─────────────────────────────────────────────────────────────────────────────
const k = suite('neighbours and routes: parsing the kernel tables');
k('ARP table: complete entries only, MACs canonical', () => {
  const text = [
    'IP address       HW type     Flags       HW address            Mask     Device',
    '10.77.0.50       0x1         0x2         52:54:00:77:00:01     *        eth0',
    '10.77.0.51       0x1         0x0         00:00:00:00:00:00     *        eth0',
    '10.77.0.52       0x1         0x6         52:54:00:AA:BB:CC     *        eth0',
    'garbage',
  ].join('\n');
  const t = parseArpTable(text);
  assert.equal([...t.entries()], [
    ['10.77.0.50', '52:54:00:77:00:01'],
    ['10.77.0.52', '52:54:00:aa:bb:cc'],
  ]);
});
k('route table: longest prefix wins, host byte order decoded', () => {
  const text = [
    'Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT',
    'eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0',
    'eth1\t00004D0A\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0',
    'eth2\t00054D0A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0',
  ].join('\n');
  const routes = parseRouteTable(text);
  assert.is(routes.length, 3);
  assert.is(routeInterface(routes, '10.77.5.9'), 'eth2');
  assert.is(routeInterface(routes, '10.77.9.9'), 'eth1');
  assert.is(routeInterface(routes, '8.8.8.8'), 'eth0');
});
k.run();
