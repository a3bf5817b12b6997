import { existsSync, readFileSync, rmSync, statSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { api, startRacksmith, type RacksmithProcess } from './lib/racksmith.js';

/**
 * `kill -9` racksmith while it imports a 1,000-row CSV, start it again: every row or none.
 *
 * Timing: the request is sent whole, then the test watches the server's own CPU time
 * (/proc/PID/schedstat, in nanoseconds) until it is clearly working on the import, waits a
 * different delay on each attempt and kills it. Whether the kill landed before the commit is
 * read from the SQLite write-ahead log: a commit writes it, so a WAL untouched from the send
 * to the process's death means the transaction was cut mid-way. Six attempts, from the first
 * instant of work to after the commit; more (bounded) until at least two kills were seen to land
 * mid-transaction.
 */
const test = suite('import crash: kill -9 during a 1,000-row import loses all rows or keeps all');

const ROWS = 1000;
// From the first instant of work to well after the commit; more tries only if too few landed mid-way.
const DELAYS_MS = [0, 20, 50, 90, 140, 400, 5, 30, 60, 10];
const MIN_ATTEMPTS = 6;
const NEEDED_MID_TRANSACTION = 2;

let rs: RacksmithProcess;
let admin = '';

function cpuNs(pid: number): number {
  try {
    return Number(readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[0]);
  } catch {
    return Number.NaN;
  }
}

function walStamp(dataDir: string): string {
  const wal = join(dataDir, 'racksmith.db-wal');
  if (!existsSync(wal)) return 'none';
  const s = statSync(wal, { bigint: true });
  return `${s.size}/${s.mtimeNs}`;
}

function csvFor(attempt: number): string {
  const lines = ['mac,hostname,role,cluster,ip,rack,bmc_address,bmc_username,bmc_password'];
  for (let i = 0; i < ROWS; i++) {
    const hi = (i >> 8).toString(16).padStart(2, '0');
    const lo = (i & 255).toString(16).padStart(2, '0');
    const a = attempt.toString(16).padStart(2, '0');
    lines.push(`52:54:03:${a}:${hi}:${lo},crash${attempt}-n${i},worker,crash${attempt},10.${100 + attempt}.${i >> 8}.${i & 255},r${i % 20},10.200.${i >> 8}.${i & 255},admin,pw-${attempt}-${i}`);
  }
  return lines.join('\n') + '\n';
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

test.before(async () => {
  rs = await startRacksmith({ env: { RACKSMITH_LOG_LEVEL: 'warn' } });
  admin = (await rs.cli(['token', 'create', '--role', 'admin'])).trim();
});

test.after(async () => {
  await rs?.stop();
  // Restarts reuse the first process's directory, which only that first helper would remove.
  if (rs) rmSync(rs.dataDir, { recursive: true, force: true });
});

test('all or none, with kills landing mid-transaction', async () => {
  const outcomes: { attempt: number; delay: number; rows: number; midTransaction: boolean; answered: boolean }[] = [];
  const complete = new Set<number>();
  let mid = 0;
  for (let attempt = 1; attempt <= DELAYS_MS.length && (attempt <= MIN_ATTEMPTS || mid < NEEDED_MID_TRANSACTION); attempt++) {
    const delay = DELAYS_MS[attempt - 1] as number;
    const c = await api(rs.url, admin, 'POST', '/api/v1/clusters', { name: `crash${attempt}`, ubuntuRelease: '22.04', kubernetesVersion: '1.28.4', containerRuntime: 'containerd', cni: 'flannel' });
    assert.is(c.status, 201, c.text);
    const body = Buffer.from(csvFor(attempt));
    const pid = rs.child.pid as number;
    const wal0 = walStamp(rs.dataDir);
    const cpu0 = cpuNs(pid);

    let answered = false;
    const u = new URL(rs.url);
    const req = request({
      host: u.hostname,
      port: u.port,
      method: 'POST',
      path: '/api/v1/machines/import',
      headers: { authorization: `Bearer ${admin}`, 'content-type': 'text/csv', 'content-length': String(body.length) },
    });
    req.on('response', (res) => {
      answered = true;
      res.resume();
    });
    req.on('error', () => {
      /* the reset from the kill is expected */
    });
    await new Promise<void>((resolve) => req.end(body, resolve));

    // The server is at work once it has burnt 3 ms of CPU since the send (idle, it burns none).
    const deadline = Date.now() + 5000;
    while (cpuNs(pid) - cpu0 < 3e6 && !answered && Date.now() < deadline) await sleep(1);
    if (delay > 0) await sleep(delay);
    const walBeforeKill = walStamp(rs.dataDir);
    await rs.kill9();
    const walAfterKill = walStamp(rs.dataDir);
    const midTransaction = !answered && walBeforeKill === wal0 && walAfterKill === wal0;
    if (midTransaction) mid++;

    rs = await startRacksmith({ dataDir: rs.dataDir, env: { RACKSMITH_LOG_LEVEL: 'warn' } });
    const got = await api(rs.url, admin, 'GET', `/api/v1/machines?cluster=crash${attempt}`);
    assert.is(got.status, 200, got.text);
    const rows = got.body.length as number;
    outcomes.push({ attempt, delay, rows, midTransaction, answered });
    assert.ok(rows === 0 || rows === ROWS, `attempt ${attempt} (delay ${delay} ms): ${rows} of ${ROWS} rows after the crash — a partial import`);
    if (midTransaction) assert.is(rows, 0, `attempt ${attempt}: the kill came before the commit, yet rows were stored`);
    if (rows === ROWS) {
      complete.add(attempt);
      assert.ok(got.body.every((m: any) => m.state === 'assigned' && m.bmc?.passwordSet === true), 'imported machines are whole');
    }
    // Earlier attempts are as they were left, and nothing else appeared.
    const all = await api(rs.url, admin, 'GET', '/api/v1/machines');
    assert.is(all.body.length, complete.size * ROWS);
  }
  process.stdout.write(
    '\n' + outcomes.map((o) => `  attempt ${o.attempt}: kill ${o.delay} ms into the import → ${o.rows} rows${o.midTransaction ? ' (killed at work, before the commit)' : o.answered ? ' (answered before the kill)' : ''}`).join('\n') + '\n',
  );
  assert.ok(mid >= NEEDED_MID_TRANSACTION, `only ${mid} kill(s) landed mid-transaction in ${outcomes.length} attempts`);

  // After all the crashes the same file still imports, whole.
  const again = await api(rs.url, admin, 'POST', '/api/v1/machines/import', csvFor(1), 'text/csv');
  if (complete.has(1)) assert.is(again.status, 409, again.text);
  else assert.is(again.status, 201, again.text);
  assert.is((await api(rs.url, admin, 'GET', '/api/v1/machines?cluster=crash1')).body.length, ROWS);
});

test.run();
