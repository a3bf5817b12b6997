import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { logFailure } from '../../inventory/unavailable.js';
import { closeSync, mkdtempSync, openSync, rmSync, unlinkSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { conflict, notFound } from '../../lib/errors.js';
import { silentLogger, type Logger } from '../../lib/log.js';
import type { Mac } from '../../lib/mac.js';
import type { Service, ServiceContext, ServiceState } from '../../lib/service.js';
import type { InventoryEvent, Machine } from '../../inventory/model.js';
import type { EventRepo, MachineRepo } from '../../inventory/store.js';
import { cipherOrder, DEFAULT_IPMI_PORT } from '../ipmitool.js';
import { ConsoleLines, type ConsoleLine } from './lines.js';
import { CAPTURE_STATES, captureStep, captureWanted, eventMayMoveCapture, sessionEnd, type CaptureState } from './policy.js';

const run = promisify(execFile);

/**
 * Serial console capture (docs/power.md, "Serial console"): `ipmitool sol activate` per machine
 * while it installs, its output kept as the last 200 lines, shown live through the API, and
 * carried by a machine that fails (a `console.tail` event). The decisions are in `policy.ts`;
 * this file starts and ends ipmitool processes around them.
 */
export interface SolSettings {
  readonly ipmitool: string;
  /** Racks whose machines are captured unless their own bmc.solCapture says otherwise ("*": all). */
  readonly racks: readonly string[];
  /** How long to wait before asking again for a slot someone else holds, or after a failure. */
  readonly retryMs: number;
  /** How often the store is read again (another racksmith instance may move a machine). */
  readonly pollMs?: number;
}

export interface SolDeps {
  readonly inventory: { readonly machines: Pick<MachineRepo, 'get' | 'list' | 'bmcPassword'>; readonly events: Pick<EventRepo, 'append' | 'subscribe'> };
  readonly settings: SolSettings;
}

export interface ConsoleView {
  readonly mac: Mac;
  readonly attached: boolean;
  readonly state: CaptureState;
  readonly reason: string | null;
  readonly lines: readonly ConsoleLine[];
}

export interface SolService extends Service {
  console(mac: Mac, after: number): Promise<ConsoleView>;
  /** A person wants the console: racksmith lets go and stays off until the install ends or `attach`. */
  detach(mac: Mac, source: string): Promise<ConsoleView>;
  attach(mac: Mac, source: string): Promise<ConsoleView>;
  /** The seam for failure reasons built elsewhere: the machine's captured console lines (newest last). */
  consoleLines(mac: Mac): readonly string[];
}

interface Capture {
  readonly mac: Mac;
  bmc: string;
  state: CaptureState;
  reason: string | null;
  heldBack: boolean;
  /** The failure's console.tail was written for this install. */
  tailWritten: boolean;
  /** The machine's state when last seen, to tell a new install from the same one. */
  seen: string | null;
  lines: ConsoleLines;
  child: ChildProcess | null;
  stopping: boolean;
  retry: NodeJS.Timeout | null;
  suites: number[];
}

export function createSolService(deps: SolDeps): SolService {
  const { machines, events } = deps.inventory;
  const s = deps.settings;
  let log: Logger = silentLogger();
  let state: ServiceState = 'stopped';
  let unsubscribe: (() => void) | null = null;
  let fifoDir: string | null = null;
  let fifoSeq = 0;
  const captures = new Map<Mac, Capture>();
  /** BMC (address:port) → the MAC whose session holds it: one session per BMC. */
  const holders = new Map<string, Mac>();
  let queue = Promise.resolve();
  let poller: NodeJS.Timeout | null = null;

  /** Serialises reactions so two events for one machine never race a spawn. */
  const serial = (fn: () => Promise<void>): void => {
    queue = queue.then(fn).catch((err: unknown) => logFailure(log, err, 'console capture step failed'));
  };

  function captureOf(mac: Mac): Capture {
    let c = captures.get(mac);
    if (!c) {
      c = { mac, bmc: '', state: 'off', reason: null, heldBack: false, tailWritten: false, seen: null, lines: new ConsoleLines(), child: null, stopping: false, retry: null, suites: [] };
      captures.set(mac, c);
    }
    return c;
  }

  const view = (c: Capture, after = 0): ConsoleView => ({ mac: c.mac, attached: c.state === 'attached', state: c.state, reason: c.reason, lines: c.lines.after(after) });

  /** The password reaches ipmitool through a FIFO (never argv, environment or disk), as in the IPMI driver. */
  async function passwordFifo(password: string): Promise<{ path: string; release(): void }> {
    fifoDir ??= mkdtempSync(join(tmpdir(), 'racksmith-sol-'));
    const path = join(fifoDir, `pw-${++fifoSeq}`);
    await run('mkfifo', ['-m', '600', path]);
    const fd = openSync(path, 'r+');
    writeSync(fd, password + '\n');
    return {
      path,
      release() {
        closeSync(fd);
        try {
          unlinkSync(path);
        } catch {
          /* gone */
        }
      },
    };
  }

  async function attach(m: Machine, c: Capture): Promise<void> {
    const bmc = m.bmc;
    if (!bmc) return;
    c.seen = m.state;
    const key = `${bmc.address}:${bmc.port ?? DEFAULT_IPMI_PORT}`;
    const holder = holders.get(key);
    if (holder && holder !== m.mac) {
      c.state = 'busy';
      c.reason = `the BMC's one SOL session is racksmith's capture of ${holder}`;
      return;
    }
    const password = await machines.bmcPassword(m.mac);
    if (password === null) return;
    if (c.suites.length === 0) c.suites = cipherOrder(bmc.cipherSuite, null);
    const suite = c.suites[0] ?? 3;
    const fifo = await passwordFifo(password);
    const args = ['-I', 'lanplus', '-H', bmc.address, '-p', String(bmc.port ?? DEFAULT_IPMI_PORT), '-U', bmc.username, '-f', fifo.path, '-C', String(suite), '-N', '2', '-R', '2', 'sol', 'activate'];
    const child = spawn(s.ipmitool, args, { stdio: ['pipe', 'pipe', 'pipe'], env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', LANG: 'C', LC_ALL: 'C' } });
    c.bmc = key;
    c.child = child;
    c.state = 'attaching';
    c.reason = null;
    c.stopping = false;
    holders.set(key, m.mac);
    let output = '';
    let operational = false;
    let released = false;
    const releaseFifo = (): void => {
      if (!released) fifo.release();
      released = true;
    };
    const onText = (text: string): void => {
      if (!operational) {
        output = (output + text).slice(-4000);
        const at = output.indexOf('[SOL Session operational');
        if (at < 0) return;
        operational = true;
        c.state = 'attached';
        releaseFifo();
        log.info({ mac: m.mac, bmc: key }, 'serial console attached');
        void events.append({ mac: m.mac, cluster: m.cluster, type: 'console', source: 'power', message: `serial console capture attached (IPMI SOL on ${key})`, data: { state: 'attached', bmc: key } });
        const rest = output.slice(output.indexOf('\n', at) + 1);
        if (rest) c.lines.feed(rest);
        return;
      }
      c.lines.feed(text);
    };
    child.stdout?.on('data', (d: Buffer) => onText(d.toString('latin1')));
    child.stderr?.on('data', (d: Buffer) => {
      if (!operational) output = (output + d.toString('latin1')).slice(-4000);
    });
    child.stdin?.on('error', () => undefined);
    child.on('error', (err) => {
      output += `\n${err.message}`;
    });
    // Bounded: a BMC that never completes the activation is given up and asked again later.
    const activation = setTimeout(() => {
      if (operational) return;
      output += '\nno answer to the SOL activation within 30 s';
      child.kill('SIGKILL');
    }, 30_000);
    activation.unref();
    child.on('close', () => {
      clearTimeout(activation);
      releaseFifo();
      if (holders.get(key) === m.mac) holders.delete(key);
      c.child = null;
      const end = sessionEnd(output, operational, c.stopping);
      if (end.state === 'failed' && /cipher suite/.test(end.reason) && c.suites.length > 1) {
        c.suites = c.suites.slice(1);
        end.retryable = true;
      }
      c.state = end.state;
      c.reason = end.reason;
      if (end.state === 'yielded') c.heldBack = true;
      log.info({ mac: m.mac, bmc: key, state: end.state, reason: end.reason }, 'serial console session ended');
      if (!c.stopping) void events.append({ mac: m.mac, cluster: m.cluster, type: 'console', source: 'power', message: `serial console capture ${end.state}: ${end.reason}`, data: { state: end.state, bmc: key } });
      if (end.retryable && state === 'serving') {
        c.retry = setTimeout(() => {
          c.retry = null;
          serial(() => evaluate(m.mac));
        }, s.retryMs);
        c.retry.unref();
      }
    });
  }

  /** Ends racksmith's SOL session cleanly: ipmitool's `~.` escape deactivates the payload, then a kill. */
  async function detach(c: Capture): Promise<void> {
    if (c.retry) clearTimeout(c.retry);
    c.retry = null;
    const child = c.child;
    if (!child) return;
    c.stopping = true;
    child.stdin?.write('\r~.\r');
    const ended = await Promise.race([new Promise<boolean>((r) => child.once('close', () => r(true))), new Promise<boolean>((r) => setTimeout(() => r(false), 3000))]);
    if (!ended) {
      child.kill('SIGKILL');
      await new Promise((r) => child.once('close', r));
    }
  }

  async function evaluate(mac: Mac): Promise<void> {
    if (state !== 'serving') return;
    const m = await machines.get(mac);
    const c = captures.get(mac) ?? null;
    if (c && m && m.state !== c.seen) {
      const installing = m.state === 'reimaging' || m.state === 'provisioning';
      if (installing && c.seen !== 'reimaging' && c.seen !== 'provisioning' && c.state !== 'attached' && c.state !== 'attaching') {
        // A new install: a person's earlier "hands off" no longer applies; a fresh buffer.
        c.heldBack = false;
        c.tailWritten = false;
        c.lines = new ConsoleLines();
      }
      c.seen = m.state;
    }
    if (c && m?.state === 'failed' && !c.tailWritten) {
      // The failure carries the console: its last lines as an event beside the state change.
      c.tailWritten = true;
      const tail = c.lines.tail();
      if (tail.length > 0) {
        await events.append({ mac, cluster: m.cluster, type: 'console.tail', source: 'power', message: `serial console before the failure: ${tail[tail.length - 1] ?? ''}`, data: { lines: tail, step: m.failedStep } });
      }
    }
    const step = captureStep(m, c, s.racks);
    if (step === 'detach' && c) await detach(c);
    if (step === 'attach' && m) await attach(m, captureOf(mac));
  }

  /** Machines with an evaluation queued: a burst of events for one machine is one read of it. */
  const queued = new Set<Mac>();
  function onEvent(e: InventoryEvent): void {
    const mac = e.mac;
    if (!mac || !eventMayMoveCapture(e, captures.has(mac))) return;
    if (queued.has(mac)) return;
    queued.add(mac);
    serial(() => {
      queued.delete(mac);
      return evaluate(mac);
    });
  }

  /** Every machine that installs or has a capture, read again from the store. */
  async function scan(): Promise<void> {
    const macs = new Set<Mac>(captures.keys());
    for (const st of CAPTURE_STATES) for (const m of await machines.list({ state: st })) if (captureWanted(m, s.racks)) macs.add(m.mac);
    for (const mac of macs) await evaluate(mac);
  }

  return {
    name: 'console',
    async start(ctx: ServiceContext) {
      log = ctx.log;
      state = 'serving';
      unsubscribe = events.subscribe(onEvent);
      // After a restart, and for changes made by another instance: the store, now and every pollMs.
      serial(scan);
      poller = setInterval(() => serial(scan), s.pollMs ?? 10_000);
      poller.unref();
    },
    async stop() {
      state = 'stopping';
      unsubscribe?.();
      if (poller) clearInterval(poller);
      await queue;
      await Promise.all([...captures.values()].map((c) => detach(c)));
      if (fifoDir) rmSync(fifoDir, { recursive: true, force: true });
      fifoDir = null;
      state = 'stopped';
    },
    health() {
      return { state, detail: { attached: [...captures.values()].filter((c) => c.state === 'attached').length } };
    },
    async console(mac, after) {
      const m = await machines.get(mac);
      if (!m) throw notFound('ERR_UNKNOWN_MACHINE', `no machine with MAC ${mac}`);
      const c = captures.get(mac);
      return c ? view(c, after) : { mac, attached: false, state: 'off', reason: captureWanted(m, s.racks) ? 'captured while the machine installs' : 'capture is off for this machine (bmc.solCapture or sol-capture-racks)', lines: [] };
    },
    async detach(mac, source) {
      const m = await machines.get(mac);
      if (!m) throw notFound('ERR_UNKNOWN_MACHINE', `no machine with MAC ${mac}`);
      const c = captureOf(mac);
      c.heldBack = true;
      await new Promise<void>((resolve) => serial(async () => resolve(await detach(c))));
      c.state = 'detached';
      c.reason = `detached by ${source}: the SOL session is free; racksmith does not attach again during this install`;
      await events.append({ mac, cluster: m.cluster, type: 'console', source, message: 'serial console capture detached on request: the BMC SOL session is free', data: { state: 'detached' } });
      return view(c);
    },
    async attach(mac, source) {
      const m = await machines.get(mac);
      if (!m) throw notFound('ERR_UNKNOWN_MACHINE', `no machine with MAC ${mac}`);
      if (!m.bmc || m.bmc.driver !== 'ipmi') throw conflict('ERR_NO_SOL', `${m.hostname ?? mac} has no IPMI BMC; serial console capture runs over IPMI SOL`, 'bmc');
      const c = captureOf(mac);
      c.heldBack = false;
      await new Promise<void>((resolve) => serial(async () => resolve(await evaluate(mac))));
      if (c.state === 'off' || c.state === 'detached') c.reason = captureWanted(m, s.racks) ? 'attaches while the machine installs' : 'capture is off for this machine (bmc.solCapture or sol-capture-racks)';
      void source;
      return view(c);
    },
    consoleLines(mac) {
      return captures.get(mac)?.lines.tail() ?? [];
    },
  };
}
