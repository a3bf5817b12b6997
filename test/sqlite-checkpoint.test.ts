import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import Database from 'better-sqlite3';
import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { openDb } from '../server/inventory/sqlite/db.js';
import { startCheckpointer } from '../server/inventory/sqlite/checkpointer.js';

/**
 * `serve` checkpoints SQLite's WAL from a worker thread (server/inventory/sqlite/checkpointer.ts):
 * its own commits only append, the worker copies the pages into the database file, and a
 * checkpointer that cannot work hands the job back to SQLite's default.
 */
const test = suite('sqlite: WAL checkpoints in a worker thread, not in the commits of the event loop');

const dirs: string[] = [];
const tempFile = (): string => {
  const dir = mkdtempSync(join(tmpdir(), 'racksmith-ckpt-'));
  dirs.push(dir);
  return join(dir, 'racksmith.db');
};
test.after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const until = async (what: string, ok: () => boolean): Promise<void> => {
  for (let i = 0; i < 200 && !ok(); i++) await new Promise((r) => setTimeout(r, 25));
  assert.ok(ok(), what);
};

/** Closed and opened again: how many `test` events the file holds. */
const testEventsIn = (file: string): number => {
  const reopened = new Database(file, { readonly: true });
  try {
    return (reopened.prepare('SELECT COUNT(*) AS n FROM events WHERE type = ?').get('test') as { n: number }).n;
  } finally {
    reopened.close();
  }
};

test('the commits only append; the worker copies them into the database file', async () => {
  const file = tempFile();
  const db = openDb(file);
  const checkpointer = startCheckpointer(db, file, { intervalMs: 50 });
  assert.is(db.pragma('wal_autocheckpoint', { simple: true }), 0, 'no checkpoint in a commit');
  const insert = db.prepare('INSERT INTO events (at, type, message) VALUES (?, ?, ?)');
  // Far past the 1,000 pages at which a commit would checkpoint by default.
  for (let batch = 0; batch < 40; batch++) db.transaction(() => {
    for (let i = 0; i < 500; i++) insert.run(new Date().toISOString(), 'test', `event ${batch}.${i} ${'x'.repeat(200)}`);
  })();
  const passesBefore = checkpointer.stats().passes;
  await until('a pass after the writes', () => checkpointer.stats().passes > passesBefore + 1);
  // Nothing is left for this connection to copy: the worker did it.
  const [left] = db.pragma('wal_checkpoint(PASSIVE)') as { log: number; checkpointed: number }[];
  assert.is(left?.log, left?.checkpointed);
  assert.is(checkpointer.stats().failures, 0);
  await checkpointer.close();
  db.close();
  // Closed and opened again: every row is there.
  assert.is(testEventsIn(file), 20_000);
});

test('a long WAL is truncated by the thread once the writers are quiet, not by the next commit; a short one is left', async () => {
  const file = tempFile();
  const db = openDb(file);
  const checkpointer = startCheckpointer(db, file, { intervalMs: 50 });
  assert.is(db.pragma('journal_size_limit', { simple: true }), -1, 'a commit never cuts the WAL back itself');
  const insert = db.prepare('INSERT INTO events (at, type, message) VALUES (?, ?, ?)');
  const walBytes = (): number => statSync(file + '-wal').size;
  // One commit of more than 1,024 pages, then nothing.
  db.transaction(() => {
    for (let i = 0; i < 12_000; i++) insert.run(new Date().toISOString(), 'test', `event ${i} ${'x'.repeat(400)}`);
  })();
  assert.ok(walBytes() > 1024 * 4096, `a WAL longer than the threshold (${walBytes()} bytes)`);
  // Copied, then left alone for a whole interval, then truncated to nothing and restarted by the
  // thread: the WAL's header and the thread's one frame (32 + 24 + 4,096 bytes).
  await until('a truncation once quiet', () => checkpointer.stats().truncations === 1);
  assert.is(walBytes(), 32 + 24 + 4096);
  assert.is(checkpointer.stats().failures, 0);
  // A short WAL stays as it is, however quiet.
  db.transaction(() => insert.run(new Date().toISOString(), 'test', 'one more'))();
  const passes = checkpointer.stats().passes;
  await until('several passes after a short write', () => checkpointer.stats().passes > passes + 4);
  assert.is(checkpointer.stats().truncations, 1);
  assert.ok(walBytes() > 0);
  await checkpointer.close();
  db.close();
  assert.is(testEventsIn(file), 12_001);
});

test("a quiet WAL is restarted by the thread: the event loop's next commit appends to it, no new header to sync", async () => {
  const file = tempFile();
  const db = openDb(file);
  const checkpointer = startCheckpointer(db, file, { intervalMs: 50 });
  const insert = db.prepare('INSERT INTO events (at, type, message) VALUES (?, ?, ?)');
  // A WAL header's salts (bytes 16–23) change at every restart of the log.
  const salts = (): string => readFileSync(file + '-wal').subarray(16, 24).toString('hex');
  db.transaction(() => {
    for (let i = 0; i < 200; i++) insert.run(new Date().toISOString(), 'test', `event ${i}`);
  })();
  const written = salts();
  await until('the thread to restart the quiet WAL', () => checkpointer.stats().primes >= 1);
  const restarted = salts();
  assert.is.not(restarted, written, 'the thread wrote the new header');
  const passes = checkpointer.stats().passes;
  await until('more passes', () => checkpointer.stats().passes > passes + 3);
  assert.is(checkpointer.stats().primes, 1, 'once per quiet spell, not at every pass');
  db.transaction(() => insert.run(new Date().toISOString(), 'test', 'after the quiet spell'))();
  assert.is(salts(), restarted, "the event loop's commit appended: no restart, no header sync of its own");
  // Copied and restarted again once quiet: the first commit of every burst finds a WAL in use.
  await until('a second restart', () => checkpointer.stats().primes === 2);
  assert.is.not(salts(), restarted);
  assert.is(checkpointer.stats().failures, 0);
  await checkpointer.close();
  db.close();
  assert.is(testEventsIn(file), 201);
});

test('a checkpointer never keeps the process alive: a store left open (a failed start or test) still lets it exit', async () => {
  const file = tempFile();
  const module = (name: string): string => new URL(`../server/inventory/sqlite/${name}.js`, import.meta.url).href;
  const script = `
    const { openDb } = await import(${JSON.stringify(module('db'))});
    const { startCheckpointer } = await import(${JSON.stringify(module('checkpointer'))});
    const db = openDb(${JSON.stringify(file)});
    const c = startCheckpointer(db, ${JSON.stringify(file)}, { intervalMs: 20 });
    for (let i = 0; i < 250 && c.stats().passes === 0; i++) await new Promise((r) => setTimeout(r, 20));
    process.stdout.write('passes ' + c.stats().passes);
  `;
  // A file, not `-e`: the thread would inherit `--input-type` and refuse to start.
  const main = join(dirname(file), 'left-open.mjs');
  writeFileSync(main, script);
  const child = spawn(process.execPath, [main], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const killer = setTimeout(() => child.kill('SIGKILL'), 15_000);
  const [code, signal] = (await once(child, 'exit')) as [number | null, string | null];
  clearTimeout(killer);
  assert.is(signal, null, 'exited by itself, not killed after 15 s');
  assert.is(code, 0);
  assert.match(out, /^passes [1-9]/, `the thread was working: ${out}`);
});

test('a checkpointer that cannot work hands checkpoints back to the commits', async () => {
  const file = tempFile();
  const db = openDb(file);
  const failures: string[] = [];
  const checkpointer = startCheckpointer(db, join(file, 'not-a-database'), { intervalMs: 50, onFailure: (m) => failures.push(m) });
  await until('the failure reported', () => failures.length > 0);
  assert.is(db.pragma('wal_autocheckpoint', { simple: true }), 1000);
  assert.ok(checkpointer.stats().failures >= 1);
  await checkpointer.close();
  db.close();
});

test.run();
