import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { CLI_PATH } from '../server/lib/paths.js';
import { requirements, skipNote } from './lib/tools.js';
import { CLIENTS, SERVER_IP, createTftpBed, link, patternBytes, readOut, sha256, writeFixture, type TftpBed } from './lib/tftp-bed.js';

/**
 * The real `racksmith serve` in a namespace, real clients (tftp-hpa, curl, atftp) and a raw probe
 * in another: byte-identical 1 MiB downloads with every client, escapes and writes refused with
 * the right TFTP error while a watched canary outside the root is never opened, EDK2's size
 * probe, an unknown TID, garbage, a client that goes silent — and the evidence racksmith keeps
 * (machine events, counters).
 */

const PROBE = fileURLToPath(new URL('./lib/tftp-probe.js', import.meta.url));
const test = suite('tftp: real clients against racksmith serve');
const missing = requirements(['tftp', 'curl', 'atftp', 'inotifywait'], { netns: true });

let bed: TftpBed;
let oneMiB = '';
let canaryWatch: ChildProcess | null = null;
let canaryEvents = '';

async function probe(...args: string[]): Promise<any> {
  const { stdout } = await bed.client(process.execPath, [PROBE, ...args], 60_000);
  return JSON.parse(stdout.trim().split('\n').pop() ?? '{}');
}

async function until<T>(what: string, fn: () => Promise<T | null | undefined | false>, ms = 30_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

test.before(async () => {
  if (missing) return;
  bed = await createTftpBed('t');
  oneMiB = writeFixture(bed, 'f1m.bin', patternBytes(1 << 20, 1));
  writeFixture(bed, 'exact.bin', patternBytes(3 * 512, 2));
  mkdirSync(join(bed.root, 'pxelinux.cfg'));
  writeFileSync(join(bed.root, 'pxelinux.cfg', 'default'), 'line one\nline two\n');
  writeFileSync(join(bed.outside, 'canary'), 'outside the root\n');
  link('../outside/canary', join(bed.root, 'escape'));
  link(join(bed.outside, 'canary'), join(bed.root, 'abs-escape'));
  link(bed.outside, join(bed.root, 'outdir'));
  // The kernel reports every open of the canary, whoever opens it and by whatever path.
  canaryWatch = spawn('inotifywait', ['-m', '-e', 'open,access', '--format', '%e %w', join(bed.outside, 'canary')], { stdio: ['ignore', 'pipe', 'pipe'] });
  canaryWatch.stdout?.on('data', (d: Buffer) => (canaryEvents += d.toString()));
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('inotifywait did not start')), 10_000);
    canaryWatch?.stderr?.on('data', (d: Buffer) => {
      if (d.toString().includes('Watches established')) {
        clearTimeout(t);
        resolve();
      }
    });
  });
  // Few retries so that the silent-client case ends within seconds, but not two: the timeout
  // follows the veth's round trip down to 30 ms, so two retries gave up on a client starved of
  // CPU for 210 ms (curl, beside two other suites). Four reach the quiet gap (6 s) first.
  await bed.start({ RACKSMITH_TFTP_TIMEOUT_MS: '200', RACKSMITH_TFTP_RETRIES: '4' });
  await bed.api('POST', '/api/v1/clusters', { name: 'lab', ubuntuRelease: '22.04', kubernetesVersion: '1.30.0', containerRuntime: 'containerd', cni: 'flannel' });
  const m = await bed.api('POST', '/api/v1/machines', { mac: bed.clientMac, hostname: 'node1', role: 'worker', cluster: 'lab' });
  assert.is(m.mac, bed.clientMac, JSON.stringify(m));
});

test.after(async () => {
  canaryWatch?.kill();
  const keep = process.env['TFTP_TEST_LOG'];
  if (keep && bed?.rs) writeFileSync(keep, bed.rs.output());
  await bed?.destroy();
});

if (missing) {
  skipNote('tftp interop', missing);
} else {
  for (const c of CLIENTS) {
    test(`${c.name}: 1 MiB byte-identical`, async () => {
      const name = c.name.replace(/\W+/g, '_');
      const [cmd, args] = c.argv(SERVER_IP, 69, 'f1m.bin', join(bed.out, name));
      await bed.client(cmd, args);
      assert.is(sha256(readOut(bed, name)), oneMiB);
    });
  }

  test('a file that is an exact multiple of the block size ends with an empty block', async () => {
    await bed.client('tftp', ['-m', 'octet', SERVER_IP, '-c', 'get', 'exact.bin', join(bed.out, 'exact.bin')]);
    assert.is(readOut(bed, 'exact.bin').length, 1536);
  });

  test('netascii: tftp-hpa in ascii mode gets the text back with its own line ends', async () => {
    await bed.client('tftp', ['-m', 'netascii', SERVER_IP, '-c', 'get', 'pxelinux.cfg/default', join(bed.out, 'default')]);
    assert.is(readOut(bed, 'default').toString(), 'line one\nline two\n');
    const raw = await probe('request', SERVER_IP, '69', 'RRQ', 'pxelinux.cfg/default', 'netascii', 'tsize=0');
    assert.is(raw.options.tsize, String('line one\r\nline two\r\n'.length), 'tsize counts the converted bytes');
  });

  test('the transfers of a known machine are its events, and its last step is tftp', async () => {
    const events = await until('tftp events', async () => {
      const list = (await bed.api('GET', `/api/v1/machines/${bed.clientMac}/events`)) as any[];
      const t = list.filter((e) => e.type === 'tftp.transfer' && e.data?.file === 'f1m.bin');
      return t.length >= CLIENTS.length ? t : null;
    });
    const windowed = events.find((e) => e.data.windowsize === 8);
    assert.ok(windowed, 'the atftp windowsize 8 transfer is recorded with its window');
    assert.is(windowed.data.bytes, 1 << 20);
    assert.is(windowed.data.blksize, 1468);
    assert.is(windowed.data.outcome, 'complete');
    assert.type(windowed.data.durationMs, 'number');
    assert.type(windowed.data.retransmissions, 'number');
    assert.ok(events.some((e) => e.data.blksize === 512), 'a 512-byte transfer is recorded too');
    const m = await bed.api('GET', `/api/v1/machines/${bed.clientMac}`);
    assert.is(m.lastStep, 'tftp');
  });

  const ESCAPES: [string, string[]][] = [
    ['../ climbing out', ['RRQ', '../outside/canary']],
    ['an absolute path', ['RRQ', '__OUTSIDE__/canary']],
    ['percent-encoded ..', ['RRQ', '%2e%2e/outside/canary']],
    ['backslashes', ['RRQ', '..\\outside\\canary']],
    ['a relative symlink out', ['RRQ', 'escape']],
    ['an absolute symlink out', ['RRQ', 'abs-escape']],
    ['a folder symlink out', ['RRQ', 'outdir/canary']],
    ['a write request', ['WRQ', 'upload.bin']],
  ];
  for (const [name, req] of ESCAPES) {
    test(`refused with error 2 (access violation): ${name}`, async () => {
      const args = req.map((a) => a.replace('__OUTSIDE__', bed.outside));
      const r = await probe('request', SERVER_IP, '69', ...args);
      assert.is(r.reply, 'ERROR', JSON.stringify(r));
      assert.is(r.code, 2, JSON.stringify(r));
    });
  }

  test('tftp-hpa itself is told "access violation" for a symlink escape', async () => {
    const err = await bed.client('tftp', ['-m', 'octet', SERVER_IP, '-c', 'get', 'escape', join(bed.out, 'escape')]).then(
      (r) => r.stdout + r.stderr,
      (e: { stdout?: string; stderr?: string }) => `${e.stdout ?? ''}${e.stderr ?? ''}`,
    );
    assert.match(err, /Error code 2/);
  });

  test('missing file: error 1; mail mode: error 4', async () => {
    assert.is((await probe('request', SERVER_IP, '69', 'RRQ', 'missing.bin')).code, 1);
    assert.is((await probe('request', SERVER_IP, '69', 'RRQ', 'f1m.bin', 'mail')).code, 4);
  });

  test('the canary outside the root was never opened (inotify), though the watch works', async () => {
    await new Promise((r) => setTimeout(r, 300));
    assert.is(canaryEvents, '', `racksmith opened the canary: ${canaryEvents}`);
    readFileSync(join(bed.outside, 'canary'));
    await until('the watch to see our own read', async () => canaryEvents.includes('OPEN'), 5000);
  });

  test('only the options asked for come back in the OACK, tsize is the real size', async () => {
    const r = await probe('request', SERVER_IP, '69', 'RRQ', 'f1m.bin', 'octet', 'tsize=0');
    assert.equal(r.options, { tsize: String(1 << 20) });
    const b = await probe('request', SERVER_IP, '69', 'RRQ', 'f1m.bin', 'octet', 'blksize=65464', 'windowsize=1000', 'color=blue');
    assert.equal(b.options, { blksize: '1468', windowsize: '64' });
    const none = await probe('request', SERVER_IP, '69', 'RRQ', 'f1m.bin', 'octet');
    assert.is(none.reply, 'DATA');
    assert.is(none.block, 1);
    assert.ok(none.fromPort !== 69, 'a new port per transfer');
  });

  test('EDK2: tsize probe, error 8, then the real download (quietly)', async () => {
    const r = await probe('edk2', SERVER_IP, '69', 'f1m.bin');
    assert.equal(r.probe.options, { tsize: String(1 << 20), blksize: '1468' });
    assert.is(r.sha256, oneMiB);
    const log = bed.rs?.output() ?? '';
    assert.not.match(log, /"level":"(warn|error)".*size probe/);
  });

  test('a packet from an unknown TID gets error 5 and the transfer finishes intact', async () => {
    const r = await probe('unknown-tid', SERVER_IP, '69', 'f1m.bin');
    assert.is(r.intruder.reply, 'ERROR');
    assert.is(r.intruder.code, 5);
    assert.is(r.sha256, oneMiB);
  });

  test('garbage on the TFTP port is dropped without an answer and counted', async () => {
    const before = await bed.tftpCounters();
    const r = await probe('garbage', SERVER_IP, '69', '200');
    assert.is(r.reply, null);
    const after = await until('malformed count', async () => {
      const c = await bed.tftpCounters();
      return (c['malformed'] ?? 0) + (c['unexpected'] ?? 0) - (before['malformed'] ?? 0) - (before['unexpected'] ?? 0) >= 200 ? c : null;
    });
    assert.ok((after['malformed'] ?? 0) > (before['malformed'] ?? 0));
  });

  test('a client that goes silent: retransmissions, then the transfer is released', async () => {
    const before = await bed.tftpCounters();
    const r = await probe('abandon', SERVER_IP, '69', 'f1m.bin');
    assert.is(r.first.reply, 'DATA');
    assert.ok(r.repeats >= 1, 'the block was sent again');
    const h = await until('the transfer to time out', async () => {
      const health = await bed.api('GET', '/healthz');
      const d = health.services.tftp.detail;
      return d.counters.transfersTimedOut > (before['transfersTimedOut'] ?? 0) && d.active === 0 ? d : null;
    });
    assert.is(h.active, 0, `no transfer, socket or timer left: ${JSON.stringify(h.transfers)}`);
  });

  async function serveFails(env: Record<string, string>): Promise<string> {
    const dataDir = join(bed.dir, `data-${Object.keys(env).join('-').length}-${Date.now()}`);
    const vars = { RACKSMITH_DATA_DIR: dataDir, RACKSMITH_HTTP_PORT: '18081', RACKSMITH_DHCP_MODE: 'off', RACKSMITH_TFTP_ADDRESS: SERVER_IP, RACKSMITH_TFTP_ROOT: bed.root, ...env };
    const args = [...Object.entries(vars).map(([k, v]) => `${k}=${v}`), process.execPath, CLI_PATH, 'serve'];
    return bed.tb.exec(bed.srv, 'env', args, { timeoutMs: 30_000 }).then(
      () => 'started',
      (e: { stderr?: string }) => e.stderr ?? '',
    );
  }

  test('serve fails with one line naming the setting when port 69 is taken', async () => {
    const err = await serveFails({ RACKSMITH_TFTP_PORT: '69' });
    assert.match(err, /tftp: cannot start \(tftp-port\): .*already in use/);
  });

  test('serve fails with one line naming the setting when the TFTP root is missing', async () => {
    const err = await serveFails({ RACKSMITH_TFTP_PORT: '6970', RACKSMITH_TFTP_ROOT: join(bed.dir, 'no-such-root') });
    assert.match(err, /tftp: cannot start \(tftp-root\): .*no such folder/);
  });

  test('counters add up', async () => {
    const c = await bed.tftpCounters();
    assert.ok((c['refusedDenied'] ?? 0) >= 8, `denied ${c['refusedDenied']}`);
    assert.is(c['refusedWrite'], 1);
    assert.ok((c['refusedNotFound'] ?? 0) >= 1);
    assert.ok((c['refusedMode'] ?? 0) >= 1);
    assert.ok((c['probes'] ?? 0) >= 1);
    assert.ok((c['unknownTid'] ?? 0) >= 1);
    assert.ok((c['transfersCompleted'] ?? 0) >= CLIENTS.length + 3);
  });
}

test.run();
