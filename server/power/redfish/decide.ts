import type { BootDevice, BootOptions, PowerFailureKind } from '../driver.js';
import type { SystemView } from './decode.js';

/**
 * The Redfish driver's decisions as pure functions: where the BMC is, which ResetType does an
 * action, what a boot override PATCH holds, what an HTTP status means, whether to retry.
 */

export interface RedfishEndpoint {
  readonly protocol: 'https' | 'http';
  /** Host name or address, IPv6 without brackets. */
  readonly host: string;
  readonly port: number;
  /** `host:port` with IPv6 in brackets, for messages and the gate's key. */
  readonly display: string;
}

/**
 * `bmc.address` as a URL (`https://bmc1`, `https://[fd00::5]:8443`, `http://127.0.0.1:8000` for a
 * lab BMC) or a bare host (HTTPS). A port in the URL wins over `bmc.port`, then 443 (80 for http).
 */
export function parseEndpoint(address: string, port: number | null): RedfishEndpoint | { readonly error: string } {
  let protocol: 'https' | 'http' = 'https';
  let rest = address.trim();
  const scheme = /^([a-z]+):\/\//i.exec(rest);
  if (scheme) {
    const s = (scheme[1] ?? '').toLowerCase();
    if (s !== 'https' && s !== 'http') return { error: `a Redfish BMC address must be https:// or http://, got ${s}://` };
    protocol = s;
    rest = rest.slice(scheme[0].length);
  }
  rest = rest.replace(/\/(redfish(\/v1)?\/?)?$/, '');
  if (rest.includes('/') || rest.includes('@') || rest === '') return { error: `expected a BMC host or https://host[:port], got ${JSON.stringify(address)}` };
  let host = rest;
  let urlPort: number | null = null;
  const v6 = /^\[([0-9a-fA-F:.]+)\](?::(\d+))?$/.exec(rest);
  if (v6) {
    host = v6[1] ?? '';
    urlPort = v6[2] !== undefined ? Number(v6[2]) : null;
  } else if (/^[^:]+:\d+$/.test(rest)) {
    const i = rest.lastIndexOf(':');
    host = rest.slice(0, i);
    urlPort = Number(rest.slice(i + 1));
  } else if (rest.includes(':') && !scheme) {
    host = rest; // a bare IPv6 address
  }
  if (!/^[A-Za-z0-9.:-]{1,253}$/.test(host)) return { error: `not a host name or address: ${JSON.stringify(host)}` };
  const p = urlPort ?? port ?? (protocol === 'https' ? 443 : 80);
  if (!Number.isInteger(p) || p < 1 || p > 65535) return { error: `port out of range: ${p}` };
  return { protocol, host, port: p, display: `${host.includes(':') ? `[${host}]` : host}:${p}` };
}

export type PowerAction = 'on' | 'off' | 'cycle' | 'reset';

/**
 * ResetType candidates per action, best first. `off` is hard (ForceOff), as with IPMI; `cycle`
 * prefers a real power cycle and falls back to a forced restart (many BMCs lack PowerCycle);
 * PushPowerButton toggles, so it only stands in for "on".
 */
const RESET_CANDIDATES: Record<PowerAction, readonly string[]> = {
  on: ['On', 'ForceOn', 'PushPowerButton'],
  off: ['ForceOff'],
  cycle: ['PowerCycle', 'ForceRestart'],
  reset: ['ForceRestart', 'PowerCycle'],
};

export function chooseResetType(action: PowerAction, allowed: readonly string[] | null): { type: string } | { error: string } {
  const candidates = RESET_CANDIDATES[action];
  if (allowed === null || allowed.length === 0) return { type: candidates[0] as string };
  const type = candidates.find((c) => allowed.includes(c));
  if (type) return { type };
  return { error: `the BMC offers ResetType ${allowed.join(', ')}; none of them does "${action}" (${candidates.join(' or ')})` };
}

export interface BootPatch {
  readonly body: { readonly Boot: Record<string, string> };
  readonly target: string;
}

/** The PATCH body of a boot override, or why the BMC cannot take it. */
export function bootPatch(device: BootDevice, opts: BootOptions, system: SystemView): BootPatch | { error: string } {
  const allowed = system.boot?.allowedTargets ?? null;
  let target = device === 'disk' ? 'Hdd' : opts.http ? 'UefiHttp' : 'Pxe';
  if (target === 'UefiHttp' && allowed !== null && !allowed.includes('UefiHttp')) target = 'Pxe';
  if (allowed !== null && !allowed.includes(target)) return { error: `the BMC does not offer boot target ${target} (it offers ${allowed.join(', ') || 'none'})` };
  const Boot: Record<string, string> = { BootSourceOverrideTarget: target, BootSourceOverrideEnabled: opts.persistent ? 'Continuous' : 'Once' };
  // Only where the BMC reports a mode: some reject the property they do not implement.
  if (system.boot?.mode) Boot['BootSourceOverrideMode'] = opts.efi || target === 'UefiHttp' ? 'UEFI' : 'Legacy';
  return { body: { Boot }, target };
}

/** The locator LED PATCH for this system, or null when it has no LED property. */
export function ledPatch(system: SystemView, on: boolean): Record<string, unknown> | null {
  if (!system.led) return null;
  return system.led.kind === 'LocationIndicatorActive' ? { LocationIndicatorActive: on } : { IndicatorLED: on ? 'Blinking' : 'Off' };
}

export function ledIsOn(system: SystemView): boolean | null {
  if (!system.led) return null;
  return system.led.kind === 'LocationIndicatorActive' ? system.led.on : system.led.state !== 'Off';
}

/** What an HTTP status from a BMC means. */
export function statusFailure(status: number): PowerFailureKind {
  if (status === 401 || status === 403) return 'auth';
  if (status === 408 || status === 504) return 'timeout';
  if (status === 429 || status === 503) return 'busy';
  return 'rejected';
}

/** A network error's code (ECONNREFUSED, ETIMEDOUT, a TLS code) → failure kind. */
export function networkFailure(code: string | undefined): PowerFailureKind {
  if (code === undefined) return 'unreachable';
  if (code === 'ERR_TLS_PIN' || code === 'ERR_TLS_CERT_ALTNAME_INVALID' || /CERT|SELF_SIGNED|UNABLE_TO_(GET|VERIFY)|SSL|TLS|EPROTO/.test(code)) return 'tls';
  if (code === 'ETIMEDOUT' || code === 'ERR_BMC_SOCKET_TIMEOUT') return 'timeout';
  return 'unreachable';
}

const TRANSIENT: readonly PowerFailureKind[] = ['timeout', 'unreachable', 'busy'];

/** Retry after `attempt` transient failures (0.5 s, 1 s, 2 s… capped), or give up. */
export function retryDelay(kind: PowerFailureKind, attempt: number, policy: { readonly maxAttempts: number; readonly baseDelayMs: number; readonly maxDelayMs: number }, remainingMs: number): number | null {
  if (!TRANSIENT.includes(kind) || attempt >= policy.maxAttempts) return null;
  const delay = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (attempt - 1));
  return remainingMs > delay ? delay : null;
}

/** Polling a task monitor: the BMC's Retry-After (bounded to 1–10 s), else 1 s. */
export function taskPollDelay(retryAfter: string | null): number {
  const n = retryAfter !== null && /^\d{1,4}$/.test(retryAfter.trim()) ? Number(retryAfter.trim()) : 1;
  return Math.min(10, Math.max(1, n)) * 1000;
}
