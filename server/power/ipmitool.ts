import type { BootDevice, BootOptions, PowerFailureKind, PowerState } from './driver.js';

/**
 * The decisions behind the IPMI driver, as pure functions over plain data: which arguments
 * ipmitool gets, what its output means, which cipher suite to try next and whether to retry.
 * The runner (`ipmi.ts`) only spawns, waits and sleeps.
 *
 * ipmitool facts this relies on (ipmitool 1.8.19, `lib/ipmi_chassis.c`, `src/plugins/lanplus`):
 * - it exits 0 even when the BMC rejects `chassis bootdev` ("Set Chassis Boot Parameter 5
 *   failed: …"), so success is read from the output, never from the exit code alone;
 * - successes go to stdout, errors to stderr; `-v` adds the reason a session failed (RAKP 2
 *   HMAC invalid = wrong password, "unauthorized name" = unknown user, "invalid authentication
 *   algorithm" = cipher suite not supported, "Get Auth Capabilities error" = no answer);
 * - `-f FILE` reads the password's first line from a file; racksmith gives it a FIFO it has
 *   written, so the password is neither on the command line (visible in `ps`) nor in the
 *   environment nor on disk (`ipmi.ts`).
 */

export const DEFAULT_IPMI_PORT = 623;

export type IpmiOp = 'status' | 'on' | 'off' | 'cycle' | 'reset' | 'bootdev' | 'bootread' | 'identify' | 'mcinfo' | 'fru';

export interface IpmiCommand {
  readonly op: IpmiOp;
  readonly device?: BootDevice;
  readonly boot?: BootOptions;
  /** identify: seconds the LED stays on (1–255), 0 for off, null for "until turned off" (`force`). */
  readonly seconds?: number | null;
}

export interface IpmiEndpoint {
  readonly address: string;
  readonly port: number;
  readonly username: string;
}

export interface RequestTiming {
  /** ipmitool `-N`: seconds it waits for each answer. */
  readonly timeoutSec: number;
  /** ipmitool `-R`: how often it resends an unanswered request. */
  readonly retries: number;
}

/** ipmitool's own per-request timing, sized so one attempt ends on its own well inside the deadline. */
export function requestTiming(deadlineMs: number): RequestTiming {
  return { timeoutSec: Math.min(5, Math.max(1, Math.floor(deadlineMs / 8000))), retries: 1 };
}

export function commandArgs(cmd: IpmiCommand): string[] {
  switch (cmd.op) {
    case 'status':
    case 'on':
    case 'off':
    case 'cycle':
    case 'reset':
      return ['chassis', 'power', cmd.op];
    case 'bootdev': {
      const opts = [cmd.boot?.efi ? 'efiboot' : null, cmd.boot?.persistent ? 'persistent' : null].filter((o): o is string => o !== null);
      return ['chassis', 'bootdev', cmd.device ?? 'pxe', ...(opts.length ? [`options=${opts.join(',')}`] : [])];
    }
    case 'bootread':
      // Parameter 5 = boot flags (IPMI 2.0 §28.13, table 28-14).
      return ['chassis', 'bootparam', 'get', '5'];
    case 'identify':
      // Chassis Identify (IPMI 2.0 §28.5): an interval of 0 turns it off; `force` keeps it on.
      return ['chassis', 'identify', cmd.seconds === null || cmd.seconds === undefined ? 'force' : String(cmd.seconds)];
    case 'mcinfo':
      return ['bmc', 'info'];
    case 'fru':
      return ['fru', 'print', '0'];
  }
}

/** The full argument list. It never holds the password, only the path it is read from. */
export function ipmitoolArgs(endpoint: IpmiEndpoint, suite: number, timing: RequestTiming, cmd: IpmiCommand, passwordFile: string): string[] {
  return [
    '-I', 'lanplus',
    '-H', endpoint.address,
    '-p', String(endpoint.port),
    '-U', endpoint.username,
    '-f', passwordFile,
    '-C', String(suite),
    '-N', String(timing.timeoutSec),
    '-R', String(timing.retries),
    '-v',
    ...commandArgs(cmd),
  ];
}

export interface RunResult {
  /** null when the process was killed (deadline) or could not start. */
  readonly exitCode: number | null;
  readonly stdout: string;
  readonly stderr: string;
  /** Killed because the deadline passed. */
  readonly timedOut: boolean;
  /** The spawn itself failed (ENOENT…): the message. */
  readonly spawnError?: string | undefined;
}

export type BootRead = { readonly device: BootDevice | 'none' | 'other'; readonly selector: string; readonly efi: boolean };

/** `Name : value` lines of `bmc info` and `fru print`, by name. */
export type IpmiFields = Readonly<Record<string, string>>;

export type IpmiOutcome =
  | { readonly ok: true; readonly state?: PowerState; readonly boot?: BootRead; readonly fields?: IpmiFields }
  | { readonly ok: false; readonly kind: PowerFailureKind; readonly detail: string };

const fail = (kind: PowerFailureKind, detail: string): IpmiOutcome => ({ ok: false, kind, detail });

/** Completion codes that mean "try again later" (IPMI 2.0 §5.2, table 5-2: C0h node busy, C3h timeout, CEh, FFh…). */
const BUSY = /busy|\btimeout\b|command response could not be provided|out of space/i;

const SESSION_RULES: readonly (readonly [RegExp, PowerFailureKind])[] = [
  [/invalid (authentication|integrity|confidentiality) algorithm|no matching cipher suite|invalid cipher suite|unsupported cipher suite/i, 'cipher'],
  [/RAKP 2 HMAC is invalid|RAKP \d message indicates an error : (unauthorized name|invalid role|unauthorized role|invalid integrity check value|inactive session|invalid name length)|Invalid user name|Insufficient privilege level|Activate Session error/i, 'auth'],
  [/insufficient resources for session|no session slot available/i, 'busy'],
  [/Get Auth Capabilities error|No response from remote controller|Error issuing Get Channel Authentication Capabilities|Unable to establish IPMI v2 \/ RMCP\+ session|Unable to establish LAN session|Error: no response/i, 'unreachable'],
];

const CONTROL_ACK: Record<'on' | 'off' | 'cycle' | 'reset', RegExp> = {
  on: /^Chassis Power Control: Up\/On\s*$/m,
  off: /^Chassis Power Control: Down\/Off\s*$/m,
  cycle: /^Chassis Power Control: Cycle\s*$/m,
  reset: /^Chassis Power Control: Reset\s*$/m,
};

/** The one line worth showing from ipmitool's error output, without the `-v` chatter. */
export function errorLine(stderr: string, stdout = ''): string {
  const lines = `${stderr}\n${stdout}`
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !/^(Loading IANA PEN Registry|Running Get VSO Capabilities|Invalid completion code received: Invalid command|Discovered IPMB address|>)/.test(l));
  const line = lines.find((l) => /failed|error|unable|invalid|unauthorized/i.test(l)) ?? lines[0] ?? '(no output)';
  return line.length > 200 ? line.slice(0, 200) + '…' : line;
}

function bootRead(stdout: string): BootRead | null {
  const sel = /Boot Device Selector : (.+?)\s*$/m.exec(stdout);
  if (!sel || sel[1] === undefined) return null;
  const selector = sel[1];
  const device = /Force PXE/i.test(selector) ? 'pxe' : /Hard-Drive/i.test(selector) ? 'disk' : /No override/i.test(selector) ? 'none' : 'other';
  return { device, selector, efi: /BIOS EFI boot/i.test(stdout) };
}

/** `Name : value` lines (ipmitool's `bmc info`, `fru print`), the first of each name. */
export function ipmiFields(out: string): IpmiFields {
  const fields: Record<string, string> = {};
  for (const line of out.split('\n')) {
    const m = /^\s*([A-Za-z][A-Za-z /#.-]{0,40}?)\s+:\s?(.*?)\s*$/.exec(line);
    if (m && m[1] !== undefined && m[2] !== undefined && !Object.hasOwn(fields, m[1])) fields[m[1]] = m[2].slice(0, 200);
  }
  return fields;
}

/** What one ipmitool run meant, read from its output (the exit code alone proves nothing). */
export function parseIpmitool(cmd: IpmiCommand, r: RunResult): IpmiOutcome {
  if (r.spawnError !== undefined) return fail('tool', `cannot run ipmitool: ${r.spawnError}`);
  if (r.timedOut) return fail('timeout', 'no answer before the deadline');
  const out = r.stdout;
  switch (cmd.op) {
    case 'status': {
      const m = /^Chassis Power is (on|off)\s*$/m.exec(out);
      if (m) return { ok: true, state: m[1] as PowerState };
      break;
    }
    case 'on':
    case 'off':
    case 'cycle':
    case 'reset':
      if (CONTROL_ACK[cmd.op].test(out)) return { ok: true };
      break;
    case 'bootdev': {
      const m = /^Set Boot Device to (\S+)\s*$/m.exec(out);
      if (m && m[1] === cmd.device) return { ok: true };
      if (m) return fail('output', `asked for boot device ${cmd.device ?? '?'}, ipmitool set ${m[1] ?? '?'}`);
      break;
    }
    case 'bootread': {
      const b = bootRead(out);
      if (b) return { ok: true, boot: b };
      break;
    }
    case 'identify':
      if (/^Chassis identify interval: (off|indefinite|\d+ seconds?)\s*$/m.test(out)) return { ok: true };
      break;
    case 'mcinfo':
      if (/^Manufacturer ID\s*:/m.test(out)) return { ok: true, fields: ipmiFields(out) };
      break;
    case 'fru':
      // A BMC without FRU data answers "Device not present": facts without a serial, not a failure.
      if (/^\s*(Product|Board|Chassis) \w+/m.test(out) || /Device not present/.test(`${r.stderr}\n${out}`)) return { ok: true, fields: ipmiFields(out) };
      break;
  }
  const all = `${r.stderr}\n${out}`;
  // Session set-up failures first (cipher, credentials), then what the BMC said about the command.
  for (const [re, kind] of SESSION_RULES) if (kind !== 'unreachable' && re.test(all)) return fail(kind, errorLine(r.stderr, out));
  const rejected = /^(.*) failed: (.+)$/m.exec(all);
  if (rejected) return fail(BUSY.test(rejected[2] ?? '') ? 'busy' : 'rejected', errorLine(rejected[0]));
  for (const [re, kind] of SESSION_RULES) if (re.test(all)) return fail(kind, errorLine(r.stderr, out));
  // ipmitool prints these when a request inside an open session got no answer.
  if (/^(Unable to (get|set) Chassis|Error setting Chassis Boot Parameter|Error Getting Chassis Boot Parameter)/m.test(all)) return fail('unreachable', errorLine(r.stderr, out));
  return fail('output', `unexpected ipmitool output (exit ${r.exitCode ?? 'none'}): ${errorLine(r.stderr, out)}`);
}

/**
 * Cipher suites to try, in order. Suite 17 (SHA-256, AES-128) is ipmitool's default since 1.8.19
 * but many BMCs (and ipmi_sim 2.0.33) lack it, and auto-selection breaks some (ipmitool#376), so
 * racksmith always passes `-C`: 17 then 3 (SHA-1, AES-128) unless the machine names one. A suite
 * that worked before on this BMC goes first.
 */
export function cipherOrder(configured: number | null, learned: number | null): number[] {
  const base = configured === null || configured === 17 ? [17, 3] : [configured];
  return learned !== null && base.includes(learned) ? [learned, ...base.filter((s) => s !== learned)] : base;
}

export interface RetryPolicy {
  /** Attempts for transient failures (no answer, busy), the first included. */
  readonly maxAttempts: number;
  readonly baseDelayMs: number;
  readonly maxDelayMs: number;
}

export interface AttemptRecord {
  readonly suite: number;
  readonly kind: PowerFailureKind;
}

export type NextStep =
  | { readonly action: 'retry'; readonly suite: number; readonly delayMs: number }
  | { readonly action: 'give-up'; readonly kind: PowerFailureKind; readonly reason: string };

const TRANSIENT: readonly PowerFailureKind[] = ['timeout', 'unreachable', 'busy'];

export function isTransient(kind: PowerFailureKind): boolean {
  return TRANSIENT.includes(kind);
}

/**
 * After a failed attempt: another cipher suite (cipher refused; free), the same suite after a
 * backoff (no answer, busy; bounded), or give up (wrong credentials, a rejection, garbage: retrying
 * cannot help, and hammering a BMC is what makes some stop answering — siderolabs/omni#785).
 */
export function nextStep(history: readonly AttemptRecord[], suites: readonly number[], policy: RetryPolicy, remainingMs: number): NextStep {
  const last = history[history.length - 1];
  if (!last) return { action: 'retry', suite: suites[0] ?? 3, delayMs: 0 };
  if (last.kind === 'cipher') {
    const tried = new Set(history.map((h) => h.suite));
    const next = suites.find((s) => !tried.has(s));
    if (next === undefined) return { action: 'give-up', kind: 'cipher', reason: `the BMC accepts none of the cipher suites tried (${suites.join(', ')})` };
    return { action: 'retry', suite: next, delayMs: 0 };
  }
  if (!isTransient(last.kind)) return { action: 'give-up', kind: last.kind, reason: 'not worth retrying' };
  const transient = history.filter((h) => isTransient(h.kind)).length;
  if (transient >= policy.maxAttempts) return { action: 'give-up', kind: last.kind, reason: `${transient} attempts` };
  const delayMs = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (transient - 1));
  if (remainingMs <= delayMs) return { action: 'give-up', kind: 'timeout', reason: 'the deadline passed' };
  return { action: 'retry', suite: last.suite, delayMs };
}
