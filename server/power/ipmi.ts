import { execFile, spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, unlinkSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Logger } from '../lib/log.js';
import { PowerError, type BmcFacts, type BmcTarget, type BootDevice, type BootOptions, type PowerCallInfo, type PowerDriver, type PowerFailureKind, type PowerState } from './driver.js';
import {
  cipherOrder,
  ipmitoolArgs,
  nextStep,
  parseIpmitool,
  requestTiming,
  type AttemptRecord,
  type IpmiCommand,
  type IpmiOutcome,
  type RetryPolicy,
  type RunResult,
} from './ipmitool.js';
import type { BmcGate } from './scheduler.js';

const run = promisify(execFile);

/**
 * The IPMI driver: Debian's `ipmitool -I lanplus`, one process per attempt. The decisions live in
 * `ipmitool.ts`; this file spawns, feeds the password, enforces the deadline and sleeps between
 * attempts. Every call goes through the gate (one command per BMC, a global limit).
 */
export interface IpmiDriverOptions {
  /** The ipmitool binary. */
  readonly ipmitool: string;
  /** Deadline for one operation, every attempt and cipher fallback included. */
  readonly deadlineMs: number;
  readonly retry: RetryPolicy;
  readonly gate: BmcGate;
  readonly log: Logger;
}

export interface IpmiDriver extends PowerDriver {
  /** Removes the private folder of password FIFOs. */
  close(): void;
}

/** How long the output pipes may stay open after ipmitool (or its wrapper) exited. */
const EXIT_GRACE_MS = 1000;
/** Output kept per stream: ipmitool `-v` is chatty, and a broken BMC must not fill memory. */
const MAX_OUTPUT = 64 * 1024;

export function createIpmiDriver(opts: IpmiDriverOptions): IpmiDriver {
  if (!(opts.deadlineMs >= 1000)) throw new RangeError(`the BMC deadline must be at least 1 s, got ${opts.deadlineMs} ms`);
  if (!Number.isInteger(opts.retry.maxAttempts) || opts.retry.maxAttempts < 1) throw new RangeError(`the BMC attempts must be a positive integer, got ${opts.retry.maxAttempts}`);
  // Password FIFOs live in a folder only this user can enter (mkdtemp makes it 0700).
  let fifoDir: string | null = null;
  let fifoSeq = 0;
  /** The suite that last worked per BMC, so a BMC without 17 is not asked for it every time. */
  const learned = new Map<string, number>();
  /** Locator LEDs racksmith turns off itself (on for longer than IPMI's 255 s). */
  const ledTimers = new Map<string, NodeJS.Timeout>();

  /**
   * The password goes through a FIFO opened read-write by racksmith: ipmitool's `-f` reads it
   * from there, so it is never on a command line (`ps`), in an environment, or on disk. Opening
   * a FIFO O_RDWR never blocks on Linux, and the bytes wait in the kernel until ipmitool reads.
   * (Node's extra stdio "pipes" are socket pairs, which `/dev/fd/N` cannot reopen.)
   */
  async function withPasswordFifo<T>(password: string, fn: (path: string) => Promise<T>): Promise<T> {
    fifoDir ??= mkdtempSync(join(tmpdir(), 'racksmith-ipmi-'));
    const path = join(fifoDir, `pw-${++fifoSeq}`);
    try {
      await run('mkfifo', ['-m', '600', path]);
    } catch (err) {
      throw new PowerError('tool', `cannot make the password FIFO for ipmitool (mkfifo, coreutils): ${err instanceof Error ? err.message : String(err)}`, 0);
    }
    let fd: number | null = null;
    try {
      fd = openSync(path, 'r+');
      writeSync(fd, password + '\n');
      return await fn(path);
    } finally {
      if (fd !== null) closeSync(fd);
      try {
        unlinkSync(path);
      } catch {
        /* already gone */
      }
    }
  }

  /**
   * One ipmitool run with a hard deadline. It runs in its own process group (a new session), and
   * the deadline or a stop ends the whole group: a configured `ipmitool` may be a wrapper that
   * forks, and killing only the wrapper would leave its children holding the output pipes, so the
   * call — and every later call to that BMC behind it — would wait for them. Once the group is
   * ended the call settles when the wrapper is gone, whether or not an escaped child still holds
   * a pipe. After a normal exit, anything the wrapper left behind in its group is ended too.
   */
  function runIpmitool(args: string[], timeoutMs: number, signal: AbortSignal | undefined): Promise<RunResult> {
    return new Promise((resolve) => {
      let stdout = '';
      let stderr = '';
      let timedOut = false;
      let settled = false;
      let exited = false;
      let ended = false;
      let graceTimer: NodeJS.Timeout | null = null;
      const child = spawn(opts.ipmitool, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true, env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', LANG: 'C', LC_ALL: 'C' } });
      const endGroup = (): void => {
        if (child.pid === undefined) return;
        try {
          process.kill(-child.pid, 'SIGKILL');
        } catch {
          /* the group is already gone */
        }
      };
      const finish = (r: RunResult): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (graceTimer) clearTimeout(graceTimer);
        signal?.removeEventListener('abort', onAbort);
        resolve(r);
      };
      /** Ends the group; the call settles once the wrapper itself has exited, pipes or not. */
      const end = (): void => {
        ended = true;
        endGroup();
        if (exited) settleAfterEnd();
      };
      const settleAfterEnd = (): void => {
        child.stdout?.destroy();
        child.stderr?.destroy();
        finish({ exitCode: null, stdout, stderr, timedOut });
      };
      const timer = setTimeout(() => {
        timedOut = true;
        end();
      }, Math.max(1, timeoutMs));
      const onAbort = (): void => end();
      signal?.addEventListener('abort', onAbort, { once: true });
      child.stdout?.on('data', (d: Buffer) => {
        if (stdout.length < MAX_OUTPUT) stdout += d.toString('utf8');
      });
      child.stderr?.on('data', (d: Buffer) => {
        if (stderr.length < MAX_OUTPUT) stderr += d.toString('utf8');
      });
      child.on('error', (err) => finish({ exitCode: null, stdout, stderr, timedOut: false, spawnError: err.message }));
      child.on('exit', () => {
        exited = true;
        if (ended) return settleAfterEnd();
        // What the wrapper left running in its group is nobody's; its pipes close with it. A child
        // that left the group and keeps a pipe open does not hold the call past a short grace.
        endGroup();
        graceTimer = setTimeout(() => {
          child.stdout?.destroy();
          child.stderr?.destroy();
          finish({ exitCode: child.exitCode, stdout, stderr, timedOut });
        }, EXIT_GRACE_MS);
      });
      child.on('close', (code) => {
        if (!ended) finish({ exitCode: code, stdout, stderr, timedOut });
      });
    });
  }

  const sleep = (ms: number, signal?: AbortSignal): Promise<void> =>
    new Promise((resolve) => {
      const t = setTimeout(done, ms);
      function done(): void {
        clearTimeout(t);
        signal?.removeEventListener('abort', done);
        resolve();
      }
      signal?.addEventListener('abort', done, { once: true });
    });

  function failureMessage(t: BmcTarget, cmd: IpmiCommand, kind: PowerFailureKind, detail: string, attempts: number, ms: number): string {
    const bmc = `BMC ${t.address}:${t.port}`;
    const tries = `${attempts} attempt${attempts === 1 ? '' : 's'} in ${(ms / 1000).toFixed(1)} s`;
    switch (kind) {
      case 'timeout':
        return `${bmc} did not answer within the ${(opts.deadlineMs / 1000).toFixed(0)} s deadline (${tries})`;
      case 'unreachable':
        return `${bmc} did not answer (${tries}): ${detail}`;
      case 'auth':
        return `${bmc} refused the login of user "${t.username}": wrong user name or password (${detail})`;
      case 'cipher':
        return `${bmc}: ${detail}`;
      case 'busy':
        return `${bmc} stayed busy (${tries}): ${detail}`;
      case 'rejected':
        return `${bmc} rejected "${cmd.op}": ${detail}`;
      case 'aborted':
        return `${bmc}: "${cmd.op}" was cancelled because racksmith is stopping`;
      default:
        return `${bmc} "${cmd.op}": ${detail}`;
    }
  }

  async function call(t: BmcTarget, cmd: IpmiCommand, signal?: AbortSignal): Promise<{ outcome: IpmiOutcome & { ok: true }; info: PowerCallInfo }> {
    const key = `${t.address}:${t.port}`;
    return opts.gate.run(
      key,
      async () => {
        const started = Date.now();
        const deadline = started + opts.deadlineMs;
        const suites = cipherOrder(t.cipherSuite, learned.get(key) ?? null);
        const timing = requestTiming(opts.deadlineMs);
        const history: AttemptRecord[] = [];
        let suite = suites[0] ?? 3;
        let lastDetail = '';
        // Bounded: nextStep gives up after maxAttempts transient failures or every suite refused.
        for (;;) {
          if (signal?.aborted) throw new PowerError('aborted', failureMessage(t, cmd, 'aborted', '', history.length, Date.now() - started), history.length);
          const remaining = deadline - Date.now();
          if (remaining <= 0) throw new PowerError('timeout', failureMessage(t, cmd, 'timeout', lastDetail, history.length, Date.now() - started), history.length);
          const result = await withPasswordFifo(t.password, (fifo) => {
            return runIpmitool(ipmitoolArgs(t, suite, timing, cmd, fifo), remaining, signal);
          });
          const outcome = parseIpmitool(cmd, result);
          if (outcome.ok) {
            learned.set(key, suite);
            return { outcome, info: { attempts: history.length + 1, cipherSuite: suite, ms: Date.now() - started } };
          }
          const kind: PowerFailureKind = signal?.aborted ? 'aborted' : outcome.kind;
          history.push({ suite, kind });
          lastDetail = outcome.detail;
          opts.log.debug({ bmc: key, op: cmd.op, suite, kind, detail: outcome.detail, attempt: history.length }, 'ipmitool attempt failed');
          const step = nextStep(history, suites, opts.retry, deadline - Date.now());
          if (step.action === 'give-up') {
            const detail = step.kind === 'cipher' ? step.reason : outcome.detail;
            throw new PowerError(step.kind, failureMessage(t, cmd, step.kind, detail, history.length, Date.now() - started), history.length);
          }
          if (step.delayMs > 0) await sleep(Math.min(step.delayMs, Math.max(0, deadline - Date.now())), signal);
          suite = step.suite;
        }
      },
      signal,
    );
  }

  const control = (op: 'on' | 'off' | 'cycle' | 'reset') => async (t: BmcTarget, signal?: AbortSignal): Promise<PowerCallInfo> => (await call(t, { op }, signal)).info;

  return {
    name: 'ipmi',
    async status(t, signal) {
      const { outcome, info } = await call(t, { op: 'status' }, signal);
      return { ...info, state: outcome.state as PowerState };
    },
    on: control('on'),
    off: control('off'),
    cycle: control('cycle'),
    reset: control('reset'),
    async setNextBoot(t: BmcTarget, device: BootDevice, boot: BootOptions, signal?: AbortSignal) {
      const set = await call(t, { op: 'bootdev', device, boot }, signal);
      // Read it back: some BMCs acknowledge and ignore (bmc-toolbox/bmclib#209).
      const read = await call(t, { op: 'bootread' }, signal);
      const got = read.outcome.boot;
      if (!got || got.device !== device) {
        throw new PowerError('rejected', `BMC ${t.address}:${t.port} acknowledged boot device ${device} but reports "${got?.selector ?? 'nothing'}"`, set.info.attempts + read.info.attempts);
      }
      const warning = boot.efi && !got.efi ? 'the BMC reports legacy (BIOS) boot although UEFI was asked for; some BMCs ignore the efiboot flag' : undefined;
      return { attempts: set.info.attempts + read.info.attempts, cipherSuite: read.info.cipherSuite, ms: set.info.ms + read.info.ms, warning };
    },
    async identify(t, on, seconds, signal) {
      const key = `${t.address}:${t.port}`;
      const pending = ledTimers.get(key);
      if (pending) clearTimeout(pending);
      ledTimers.delete(key);
      // The BMC keeps the LED on by itself for at most 255 s; longer is `force`, and racksmith turns it off.
      const interval = !on ? 0 : seconds !== null && seconds <= 255 ? Math.max(1, Math.round(seconds)) : null;
      const info = (await call(t, { op: 'identify', seconds: interval }, signal)).info;
      if (on && seconds !== null && interval === null) {
        const timer = setTimeout(() => {
          ledTimers.delete(key);
          call(t, { op: 'identify', seconds: 0 }).catch((err: unknown) => opts.log.warn({ bmc: key, err }, 'turning the locator LED off failed'));
        }, seconds * 1000);
        timer.unref();
        ledTimers.set(key, timer);
      }
      return info;
    },
    async facts(t, signal) {
      const mc = await call(t, { op: 'mcinfo' }, signal);
      const fru = await call(t, { op: 'fru' }, signal);
      const m = mc.outcome.fields ?? {};
      const f = fru.outcome.fields ?? {};
      const pick = (...vals: (string | undefined)[]): string | null => vals.find((v) => v !== undefined && v.trim() !== '') ?? null;
      const facts: BmcFacts = {
        source: 'ipmi',
        manufacturer: pick(f['Product Manufacturer'], f['Board Mfg'], m['Manufacturer Name']),
        model: pick(f['Product Name'], f['Board Product'], m['Product Name']),
        serial: pick(f['Product Serial'], f['Chassis Serial'], f['Board Serial']),
        biosVersion: null,
        firmwareVersion: pick(m['Firmware Revision']),
        // IPMI has no standard command listing the host's NICs.
        nics: null,
      };
      return { attempts: mc.info.attempts + fru.info.attempts, cipherSuite: fru.info.cipherSuite, ms: mc.info.ms + fru.info.ms, facts };
    },
    close() {
      for (const timer of ledTimers.values()) clearTimeout(timer);
      ledTimers.clear();
      if (fifoDir) rmSync(fifoDir, { recursive: true, force: true });
      fifoDir = null;
    },
  };
}
