import type { Machine } from '../inventory/model.js';
import type { MachineEventType } from '../inventory/lifecycle.js';

/**
 * The role setup's report (`racksmith-role-report`, run by the role's setup script just before
 * cloud-init's phone-home): form-encoded or JSON `status` (its exit status), `command` (the
 * failing command, the last one its trace shows) and `log` (the log's last lines). Parsed once,
 * at the boundary; the decision what it does to the machine is a pure function of the two.
 */
export interface RoleSetupReport {
  readonly status: number;
  readonly command: string | null;
  readonly log: readonly string[];
}

export class RoleSetupReportError extends Error {
  readonly code = 'ERR_ROLE_SETUP_REPORT';
  readonly field: string | undefined;
  constructor(message: string, field?: string) {
    super(message);
    this.name = 'RoleSetupReportError';
    this.field = field;
  }
}

/** Lines kept from the log, and their length: enough for apt's error and what led to it. */
export const LOG_LINES = 40;
const LINE_MAX = 500;

/** Tabs become spaces; other control characters (a terminal's escapes in apt's output) are dropped. */
const printable = (s: string): string =>
  [...s]
    .map((ch) => (ch === '\t' ? ' ' : ch))
    .filter((ch) => ch.charCodeAt(0) >= 0x20 && ch.charCodeAt(0) !== 0x7f)
    .join('');

export function parseRoleSetupReport(body: unknown): RoleSetupReport {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new RoleSetupReportError('expected a form-encoded or JSON body with status, command and log');
  const b = body as Record<string, unknown>;
  const rawStatus = b['status'];
  const statusText = typeof rawStatus === 'number' ? String(rawStatus) : rawStatus;
  if (typeof statusText !== 'string' || !/^\d{1,3}$/.test(statusText.trim()) || Number(statusText) > 255) {
    throw new RoleSetupReportError('status must be the setup script\'s exit status, 0 to 255', 'status');
  }
  const command = b['command'];
  if (command !== undefined && command !== null && typeof command !== 'string') throw new RoleSetupReportError('command must be a string', 'command');
  const log = b['log'];
  if (log !== undefined && log !== null && typeof log !== 'string') throw new RoleSetupReportError('log must be a string', 'log');
  const lines = (typeof log === 'string' ? log : '')
    .split(/\r?\n/)
    .map((l) => printable(l).slice(0, LINE_MAX))
    .filter((l, i, all) => l !== '' || i < all.length - 1);
  const cmd = typeof command === 'string' ? printable(command.replace(/[\r\n]+/g, ' ')).trim().slice(0, 1000) : '';
  return { status: Number(statusText), command: cmd === '' ? null : cmd, log: lines.slice(-LOG_LINES) };
}

/**
 * The line that says why, from the failing command's own output (after the last traced line):
 * apt and dpkg start their errors with `E: ` and the first one is the cause (one per package
 * follows); other tools say `error`, `failed` or `not found` somewhere; else its last line.
 */
export function failureLine(log: readonly string[]): string | null {
  let start = 0;
  for (let i = log.length - 1; i >= 0; i--) {
    if (log[i]?.startsWith('+ ')) {
      start = i + 1;
      break;
    }
  }
  const out = log.slice(start).filter((l) => !l.startsWith('+ ') && l.trim() !== '');
  const found = out.find((l) => l.startsWith('E: ')) ?? out.find((l) => /\berror\b|\bfailed\b|not found|no such file/i.test(l)) ?? out[out.length - 1];
  return found?.trim() ?? null;
}

export interface RoleSetupDecision {
  /** Lifecycle events to apply in order (a report may be the first sign that the OS is on disk). */
  readonly events: readonly MachineEventType[];
  /** For a failure: the reason stored on the machine. */
  readonly failure: { readonly step: 'role-setup'; readonly reason: string } | null;
  readonly message: string;
}

/**
 * What a report does to a machine. A success is recorded; a failure fails the machine with the
 * failing command and the error line, so that its phone-home, which follows, cannot make it
 * ready. A machine that already failed keeps its first failure.
 */
export function decideRoleSetupReport(machine: Pick<Machine, 'state'>, r: RoleSetupReport): RoleSetupDecision {
  const before: MachineEventType[] = [];
  if (machine.state === 'assigned' || machine.state === 'reimaging') before.push('installer-served', 'installed');
  else if (machine.state === 'provisioning') before.push('installed');
  if (r.status === 0) return { events: before, failure: null, message: 'role setup done' };
  const why = failureLine(r.log);
  const reason = `${r.command ? `\`${r.command.slice(0, 200)}\`` : 'the role setup'} exited ${r.status}${why ? `: ${why.slice(0, 300)}` : ''}`;
  const message = `role setup failed: ${reason}`;
  if (machine.state === 'failed') return { events: [], failure: null, message: `${message} (the machine had already failed)` };
  return { events: [...before, 'fail'], failure: { step: 'role-setup', reason }, message };
}
