import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from '../lib/suite.js';
import * as assert from 'uvu/assert';
import type { Mac } from '../../server/lib/mac.js';
import { newDataDir, openDataDir, removeDataDir, serveInNamespace, udhcpcScript, type ServeProcess } from '../lib/dhcp.js';
import { Testbed } from '../lib/netns.js';
import { requirements, skipNote } from '../lib/tools.js';

/**
 * Serving one interface of two (docs/decisions/0002): replies leave only through the served
 * interface; with a device-bound socket handed over the way systemd socket activation does
 * (BindToDevice=, LISTEN_FDS), datagrams from the other link never reach racksmith at all.
 */
const missing = requirements(['udhcpc', 'python3', 'curl', 'ss'], { netns: true });
const MAC_A = '52:54:00:77:01:0a' as Mac;
const MAC_B = '52:54:00:77:01:0b' as Mac;

/** Creates UDP 0.0.0.0:67 bound to one device as fd 3, then execs the command (keeps the PID). */
const SOCKET_ACTIVATION = `
import os, socket, sys
dev = sys.argv[1]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, dev.encode())
s.bind(("0.0.0.0", 67))
os.dup2(os.dup(s.fileno()), 3, inheritable=True)
os.environ.update(LISTEN_FDS="1", LISTEN_PID=str(os.getpid()), LISTEN_FDNAMES="dhcp")
os.execvp(sys.argv[2], sys.argv[2:])
`;

/** A separate folder for the other link's client log. */
function otherDir(dataDir: string): string {
  const d = join(dataDir, 'other-link');
  mkdirSync(d, { recursive: true });
  return d;
}

if (missing) {
  skipNote('dhcp interface binding', missing);
} else {
  const tb = new Testbed('d');
  let srv = '', cliA = '', cliB = '';

  test.before(async () => {
    srv = await tb.addNamespace('s');
    cliA = await tb.addNamespace('a');
    cliB = await tb.addNamespace('b');
    await tb.veth(srv, 'sa', cliA, 'ca', '10.77.0.1/24');
    await tb.veth(srv, 'sb', cliB, 'cb', '10.79.0.1/24');
    await tb.ip(cliA, ['link', 'set', tb.name('ca'), 'address', MAC_A]);
    await tb.ip(cliB, ['link', 'set', tb.name('cb'), 'address', MAC_B]);
  });
  test.after(() => tb.destroy());

  const env = (): Record<string, string> => ({
    RACKSMITH_DHCP_MODE: 'authoritative',
    RACKSMITH_DHCP_INTERFACE: tb.name('sa'),
    RACKSMITH_DHCP_RANGE: '10.77.0.100-10.77.0.199',
    RACKSMITH_ADVERTISE_ADDRESS: '10.77.0.1',
  });

  /** udhcpc posing as a BIOS PXE ROM, so that racksmith would record it if it saw it. */
  const pxeUdhcpc = async (ns: string, iface: string, dir: string): Promise<string> => {
    const ud = udhcpcScript(dir);
    await tb
      .exec(ns, 'udhcpc', ['-i', iface, '-s', ud.script, '-n', '-q', '-t', '3', '-T', '1', '-V', 'PXEClient:Arch:00000:UNDI:002001', '-x', '0x5d:0000'], { timeoutMs: 30_000 })
      .catch(() => undefined);
    try {
      return readFileSync(ud.log, 'utf8');
    } catch {
      return '';
    }
  };

  const run = async (wrap: readonly string[] | undefined, check: (serve: ServeProcess, dataDir: string) => Promise<void>): Promise<void> => {
    const dataDir = newDataDir();
    const serve = await serveInNamespace(srv, env(), { dataDir, ...(wrap ? { wrap } : {}) });
    try {
      await check(serve, dataDir);
    } finally {
      await serve.stop();
      removeDataDir(dataDir);
    }
  };

  test('plain sockets: the served link gets leases, replies never leave through the other link', async () => {
    await run(undefined, async (serve, dataDir) => {
      assert.match(await pxeUdhcpc(cliA, tb.name('ca'), dataDir), /event=bound ip=10\.77\.0\.1\d\d/);
      const before = Number((await serve.health()).services['dhcp']?.detail?.['received']);
      const logB = await pxeUdhcpc(cliB, tb.name('cb'), otherDir(dataDir));
      assert.not.match(logB, /event=bound/, 'the client on the other link got an answer');
      const h = (await serve.health()).services['dhcp']?.detail ?? {};
      // Node cannot see the ingress device of a broadcast: it was received, and said so at start.
      assert.ok(Number(h['received']) > before);
      assert.is(h['exactIngress'], false);
      assert.ok(serve.logs().some((l) => String(l['msg']).includes('cannot be told apart')));
    });
  });

  test('a device-bound socket (systemd BindToDevice=, LISTEN_FDS): the other link is not even heard', async () => {
    await run(['python3', '-c', SOCKET_ACTIVATION, tb.name('sa')], async (serve, dataDir) => {
      assert.is((await serve.health()).services['dhcp']?.detail?.['exactIngress'], true);
      assert.match(await pxeUdhcpc(cliA, tb.name('ca'), dataDir), /event=bound ip=10\.77\.0\.1\d\d/);
      const before = Number((await serve.health()).services['dhcp']?.detail?.['received']);
      assert.not.match(await pxeUdhcpc(cliB, tb.name('cb'), otherDir(dataDir)), /event=bound/);
      assert.is(Number((await serve.health()).services['dhcp']?.detail?.['received']), before, 'a datagram from the other link reached racksmith');
      const inv = openDataDir(dataDir);
      try {
        assert.is((await inv.machines.get(MAC_A))?.state, 'discovered');
        assert.is(await inv.machines.get(MAC_B), null);
      } finally {
        await inv.close();
      }
    });
  });

  test('serve fails with one line naming the setting: no such interface; port 67 taken', async () => {
    const fails = async (env: Record<string, string>, wrap?: readonly string[]): Promise<string> => {
      const dataDir = newDataDir();
      try {
        // Waits for the refusal (the process exiting), however loaded the machine; a serve that
        // started instead ends the wait at once.
        await serveInNamespace(srv, { ...env }, { dataDir, timeoutMs: 60_000, ...(wrap ? { wrap } : {}) });
        assert.unreachable('serve started');
        return '';
      } catch (err) {
        return String((err as Error).message);
      } finally {
        removeDataDir(dataDir);
      }
    };
    const noIface = await fails({ ...env(), RACKSMITH_DHCP_INTERFACE: 'nosuch0' });
    assert.match(noIface, /racksmith: dhcp: cannot start \(dhcp-interface\): no interface named nosuch0/, noIface);
    const holder = tb.spawn(srv, process.execPath, ['-e', "require('node:dgram').createSocket('udp4').bind(67, '0.0.0.0', () => console.log('bound')); setInterval(() => {}, 1000)"]);
    try {
      // The port is held once the holder says so (a loaded machine starts node slowly).
      await new Promise<void>((resolve, reject) => {
        let said = '';
        holder.stdout?.on('data', (d: Buffer) => (said += d.toString()).includes('bound') && resolve());
        holder.once('exit', (code) => reject(new Error(`the port holder exited (${code}) before it bound UDP 67`)));
      });
      const taken = await fails(env());
      assert.match(taken, /racksmith: dhcp: cannot start \(dhcp-port\): UDP 67: the port is already in use/, taken);
    } finally {
      holder.kill('SIGKILL');
    }
  });

  test('no interface named: serve refuses DHCP in proxy and authoritative mode, and TFTP without an address', async () => {
    const refused = async (env: Record<string, string>): Promise<string> => {
      const dataDir = newDataDir();
      try {
        const serve = await serveInNamespace(srv, env, { dataDir, timeoutMs: 60_000 });
        await serve.stop();
        assert.unreachable(`serve started with ${JSON.stringify(env)}`);
        return '';
      } catch (err) {
        return String((err as Error).message);
      } finally {
        removeDataDir(dataDir);
      }
    };
    const unnamed = Object.fromEntries(Object.entries(env()).filter(([k]) => k !== 'RACKSMITH_DHCP_INTERFACE'));
    for (const mode of ['authoritative', 'proxy']) {
      const err = await refused({ ...unnamed, RACKSMITH_DHCP_MODE: mode });
      assert.match(err, new RegExp(`racksmith: dhcp: cannot start \\(dhcp-interface\\): DHCP mode ${mode} answers PXE only on a named interface: give --dhcp-interface NAME`), err);
    }
    for (const address of [undefined, '0.0.0.0']) {
      const err = await refused({ RACKSMITH_DHCP_MODE: 'off', RACKSMITH_TFTP_PORT: '6969', ...(address ? { RACKSMITH_TFTP_ADDRESS: address } : {}) });
      assert.match(err, /racksmith: tftp: cannot start \(tftp-address\): TFTP listens only on a named address: give --tftp-address ADDRESS/, err);
    }
  });

  test('TFTP listens on the DHCP interface\'s address when --tftp-address is unset, else on that address', async () => {
    const dataDir = newDataDir();
    const serve = await serveInNamespace(srv, { ...env(), RACKSMITH_TFTP_PORT: '6969', RACKSMITH_TFTP_ROOT: dataDir }, { dataDir });
    try {
      assert.is((await serve.health()).services['tftp']?.detail?.['address'], '10.77.0.1');
      const sockets = (await tb.exec(srv, 'ss', ['-Hnul', 'sport = :6969'])).stdout;
      assert.match(sockets, /10\.77\.0\.1:6969/);
      assert.not.match(sockets, /0\.0\.0\.0:6969|\*:6969/);
    } finally {
      await serve.stop();
    }
    const other = await serveInNamespace(srv, { RACKSMITH_DHCP_MODE: 'off', RACKSMITH_TFTP_PORT: '6969', RACKSMITH_TFTP_ROOT: dataDir, RACKSMITH_TFTP_ADDRESS: '10.79.0.1' }, { dataDir });
    try {
      assert.is((await other.health()).services['tftp']?.detail?.['address'], '10.79.0.1');
    } finally {
      await other.stop();
      removeDataDir(dataDir);
    }
  });

  test.run();
}
