import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { locateInIso } from '../server/artifacts/iso-extract.js';
import { decodeDirectory, decodePrimaryVolume, decodeRecord, IsoError, PVD_SECTOR, SECTOR } from '../server/artifacts/iso9660.js';
import { requirements, skipNote } from './lib/tools.js';

/** The ISO 9660 reader against images made by the real xorriso, and a seeded fuzz loop. */
const test = suite('iso9660: find casper/vmlinuz in an installer ISO');
const run = promisify(execFile);
const missing = requirements(['xorriso']);
let work = '';

test.before(() => {
  work = mkdtempSync(join(tmpdir(), 'racksmith-iso-'));
});
test.after(() => rmSync(work, { recursive: true, force: true }));

async function makeIso(name: string, flags: string[]): Promise<string> {
  const tree = join(work, `tree-${name}`);
  mkdirSync(join(tree, 'casper'), { recursive: true });
  mkdirSync(join(tree, 'boot', 'grub'), { recursive: true });
  writeFileSync(join(tree, 'casper', 'vmlinuz'), Buffer.alloc(5000, 7));
  writeFileSync(join(tree, 'casper', 'initrd'), 'initrd!');
  writeFileSync(join(tree, 'boot', 'grub', 'grub.cfg'), 'menuentry');
  for (let i = 0; i < 120; i++) writeFileSync(join(tree, 'casper', `filler-with-a-long-name-${i}.squashfs`), String(i));
  const iso = join(work, `${name}.iso`);
  await run('xorriso', ['-as', 'mkisofs', ...flags, '-o', iso, tree]);
  return iso;
}

test('Rock Ridge + Joliet (as Ubuntu builds them), and plain ISO 9660 names, across several directory sectors', async () => {
  if (missing) return skipNote('iso9660 against xorriso', missing);
  for (const [name, flags] of [['rr', ['-r', '-J']], ['plain', []]] as const) {
    const iso = await makeIso(name, [...flags]);
    const img = readFileSync(iso);
    const k = await locateInIso(iso, 'casper/vmlinuz');
    assert.ok(img.subarray(k.offset, k.offset + k.size).equals(Buffer.alloc(5000, 7)), `${name}: vmlinuz bytes`);
    const i = await locateInIso(iso, 'casper/initrd');
    assert.is(img.subarray(i.offset, i.offset + i.size).toString(), 'initrd!');
    const g = await locateInIso(iso, 'boot/grub/grub.cfg');
    assert.is(g.size, 9);
    for (const bad of ['casper/nothing', 'casper/vmlinuz/x', 'casper']) {
      await locateInIso(iso, bad).then(() => assert.unreachable(bad), (err: IsoError) => assert.instance(err, IsoError));
    }
  }
});

test('not an ISO: a typed error naming what is wrong', async () => {
  assert.throws(() => decodePrimaryVolume(Buffer.alloc(SECTOR)), (e: IsoError) => e.code === 'ERR_ISO_MAGIC');
  assert.throws(() => decodePrimaryVolume(Buffer.alloc(10)), (e: IsoError) => e.code === 'ERR_ISO_SHORT' && /needs 190 bytes/.test(e.message));
  assert.throws(() => decodeRecord(Buffer.from([40, 0, 0]), 0), (e: IsoError) => e.code === 'ERR_ISO_SHORT');
  assert.throws(() => decodeRecord(Buffer.from([20]), 0), (e: IsoError) => e.code === 'ERR_ISO_RECORD');
  const f = join(work, 'zero.iso');
  writeFileSync(f, Buffer.alloc(40 * SECTOR));
  await locateInIso(f, 'casper/vmlinuz').then(() => assert.unreachable(), (e: IsoError) => assert.is(e.code, 'ERR_ISO_MAGIC'));
});

test('seeded fuzz: mutated descriptor and directory sectors decode or throw IsoError, nothing else', async () => {
  if (missing) return skipNote('iso9660 fuzz', missing);
  const img = readFileSync(await makeIso('fuzz', ['-r']));
  const pvd = img.subarray(PVD_SECTOR * SECTOR, (PVD_SECTOR + 1) * SECTOR);
  const root = decodePrimaryVolume(pvd).root;
  const dir = img.subarray(root.lba * SECTOR, root.lba * SECTOR + root.size);
  let seed = 0xc0ffee;
  const rnd = (n: number): number => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  for (let i = 0; i < 20_000; i++) {
    const src = i % 2 ? pvd : dir;
    const buf = Buffer.from(src.subarray(0, rnd(3) === 0 ? rnd(src.length + 1) : src.length));
    for (let m = rnd(8); m >= 0; m--) if (buf.length) buf[rnd(buf.length)] = rnd(256);
    try {
      if (i % 2) decodePrimaryVolume(buf);
      else decodeDirectory(buf);
    } catch (err) {
      if (!(err instanceof IsoError)) throw new Error(`iteration ${i}: ${String(err)}`);
    }
  }
});

test.run();
