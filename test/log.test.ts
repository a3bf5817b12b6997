import { spawn } from 'node:child_process';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { createLogger } from '../server/lib/log.js';
import { api, startRacksmith, type RacksmithProcess } from './lib/racksmith.js';

/**
 * Logs a person and a collector can both read: JSON lines when stdout is not a terminal (no key
 * twice in a line, the access log's `path` always the full request path with seed tokens
 * redacted, the console's URL on the startup line), and readable lines on a terminal.
 */
const test = suite('log: JSON for collectors, readable lines on a terminal, one path, no repeated keys');

let rs: RacksmithProcess;

test.before(async () => {
  rs = await startRacksmith({ env: { RACKSMITH_LOG_LEVEL: 'debug' } });
});

test.after(async () => {
  await rs?.stop();
  rs?.cleanup();
});

/** Parses a JSON line, failing on a key that appears twice in one object. */
function parseStrict(line: string): Record<string, unknown> {
  const dup: string[] = [];
  // JSON.parse keeps the last of two equal keys; count them from the text's objects instead.
  const keys = [...line.matchAll(/[{,]"([^"\\]+)":/g)].map((m) => m[1]);
  const top = JSON.parse(line) as Record<string, unknown>;
  for (const k of Object.keys(top)) if (keys.filter((x) => x === k).length > 1 && !nestedHas(top, k)) dup.push(k);
  assert.equal(dup, [], `a key twice in: ${line}`);
  return top;
}

function nestedHas(o: Record<string, unknown>, key: string): boolean {
  return Object.values(o).some((v) => v !== null && typeof v === 'object' && (key in (v as object) || nestedHas(v as Record<string, unknown>, key)));
}

test('piped stdout: JSON lines, the console URL on the startup line, full paths, seed tokens redacted', async () => {
  const admin = (await rs.cli(['token', 'create', '--role', 'admin'])).trim();
  assert.is((await api(rs.url, admin, 'GET', '/api/v1/machines')).status, 200);
  assert.is((await api(rs.url, admin, 'GET', '/api/v1/machines/52:54:00:00:00:99')).status, 404);
  await api(rs.url, null, 'GET', '/seed/rs_secretseedtoken123/user-data');
  // The last access line reaches us through racksmith's stdout pipe after its answer: wait for it,
  // not a fixed time (under load 200 ms were too few); the lines before it are there by then.
  const parsed = (): Record<string, unknown>[] => rs.output().split('\n').filter((l) => l.trim() !== '').map(parseStrict);
  const healthLines = (): number => parsed().filter((e) => e['msg'] === 'http' && e['path'] === '/healthz').length;
  const before = healthLines();
  await api(rs.url, null, 'GET', '/healthz?x=1');
  for (let i = 0; i < 100 && healthLines() === before; i++) await new Promise((r) => setTimeout(r, 100));
  const entries = parsed();
  const serving = entries.find((e) => String(e['msg']).startsWith('serving'));
  assert.ok(serving, 'a startup line');
  assert.match(String(serving['msg']), new RegExp(`console at ${rs.url.replace(/\./g, '\\.')}/`));
  assert.is(serving['console'], `${rs.url}/`);
  const paths = entries.filter((e) => e['msg'] === 'http').map((e) => `${String(e['status'])} ${String(e['path'])}`);
  for (const want of ['200 /api/v1/machines', '404 /api/v1/machines/52:54:00:00:00:99', '404 /seed/[redacted]/user-data', '200 /healthz']) assert.ok(paths.includes(want), `${want} in ${paths.join(', ')}`);
  assert.not.ok(rs.output().includes('rs_secretseedtoken123'), 'a seed token in the log');
});

test('on a terminal: one readable line per entry, with the request line and the same redaction', () => {
  let out = '';
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      out += chunk.toString();
      cb();
    },
  });
  const log = createLogger('info', sink, { pretty: true, colour: false });
  log.child({ reqId: 'r1' }).info({ method: 'GET', path: '/api/v1/machines', status: 200, ms: 1.5, remote: '127.0.0.1' }, 'http');
  log.warn({ bmc: { password: 'hunter2' } }, 'a BMC said no');
  const [access, warn] = out.trimEnd().split('\n');
  assert.match(access ?? '', /^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}\] INFO: http GET \/api\/v1\/machines 200 1\.5 ms \{"reqId":"r1","remote":"127\.0\.0\.1"\}$/);
  assert.match(warn ?? '', /WARN: a BMC said no \{"bmc":\{"password":"\[redacted\]"\}\}$/);
  assert.not.ok(out.includes('hunter2'));
});

/** Runs a small program against the built logger with stdout a pipe, as under systemd or docker. */
function logChild(body: string): Promise<{ out: string; code: number | null }> {
  const logModule = fileURLToPath(new URL('../server/lib/log.js', import.meta.url));
  const program = `import { createLogger } from ${JSON.stringify(logModule)};\nconst log = createLogger('info');\n${body}`;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', program], { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ out, code }));
  });
}

test('piped stdout: every line is there at once, and none is lost to an exit or a fatal error', async () => {
  // A line is on the pipe before anything written after it (tests and people read the log as it comes).
  const quiet = await logChild(`log.info('quiet line');\nsetTimeout(() => { process.stdout.write('marker\\n'); process.exit(0); }, 300);`);
  assert.match(quiet.out, /"msg":"quiet line"[^\n]*\n[\s\S]*marker/, 'the quiet line came before the marker');
  // A thousand lines and an exit at once (process.exit, a fatal error's path): every one written.
  const burst = await logChild(`for (let i = 0; i < 1000; i++) log.info({ i }, 'burst');\nprocess.exit(3);`);
  assert.is(burst.code, 3);
  const lines = burst.out.trim().split('\n').map((l) => JSON.parse(l) as { i: number });
  assert.is(lines.length, 1000);
  assert.is(lines[999]?.i, 999);
  // A fatal error: the line logged just before it is still there.
  const fatal = await logChild(`log.error('about to fail');\nthrow new Error('boom');`);
  assert.is(fatal.code, 1);
  assert.match(fatal.out, /"msg":"about to fail"/);
});

test.run();
