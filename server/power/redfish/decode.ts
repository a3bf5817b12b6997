import { parseMac } from '../../lib/mac.js';

/**
 * What a BMC's Redfish answers mean, as pure functions from bytes and JSON to small typed views.
 * Every property is read by name and type-checked: a BMC that sends garbage, a string where a
 * list belongs or a 40 MB body gets `RedfishDecodeError` saying what and where, never a crash.
 *
 * Schema facts (DMTF DSP0266 and the ComputerSystem, Task, Message schemas):
 * - the service root links the sessions collection at `Links.Sessions` (§ 13.3.4 Session
 *   management); `Systems` is the ComputerSystem collection;
 * - `ComputerSystem.Actions["#ComputerSystem.Reset"]` has `target` and, on most BMCs,
 *   `ResetType@Redfish.AllowableValues`; `PowerState` is On, Off, PoweringOn, PoweringOff, Paused;
 * - `Boot.BootSourceOverrideTarget` (+ `@Redfish.AllowableValues`), `…Enabled` (Disabled, Once,
 *   Continuous), `…Mode` (Legacy, UEFI);
 * - the locator LED is `LocationIndicatorActive` (ComputerSystem 1.13+) or the older, deprecated
 *   `IndicatorLED` (Lit, Blinking, Off);
 * - errors carry `error.message` and `error["@Message.ExtendedInfo"][]` with `MessageId`,
 *   `Message` and `Resolution`; a Task has `TaskState` and `Messages`.
 */

export class RedfishDecodeError extends Error {
  readonly code = 'ERR_REDFISH_DECODE';
  constructor(
    message: string,
    /** Where in the document: `Boot.BootSourceOverrideTarget`, `(body)`. */
    readonly at: string,
  ) {
    super(message);
    this.name = 'RedfishDecodeError';
  }
}

type Json = Record<string, unknown>;

/** Parses a body as JSON; empty or not JSON is an error naming the first bad offset. */
export function parseJson(body: Uint8Array): unknown {
  if (body.length === 0) throw new RedfishDecodeError('the body is empty', '(body)');
  const text = Buffer.from(body).toString('utf8');
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    throw new RedfishDecodeError(`the body is not JSON (${why.slice(0, 120)})`, '(body)');
  }
}

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function asObject(v: unknown, at: string): Json {
  if (!isObject(v)) throw new RedfishDecodeError(`expected an object at ${at}, got ${kindOf(v)}`, at);
  return v;
}

function kindOf(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'a list' : typeof v === 'object' ? 'an object' : `a ${typeof v}`;
}

/** An optional string property: absent or null → null; another type → error. Trimmed, bounded. */
function optString(o: Json, key: string, at: string): string | null {
  const v = o[key];
  if (v === undefined || v === null) return null;
  if (typeof v !== 'string') throw new RedfishDecodeError(`expected a string at ${at}.${key}, got ${kindOf(v)}`, `${at}.${key}`);
  const t = v.trim();
  return t === '' ? null : t.slice(0, 256);
}

function optStringList(o: Json, key: string, at: string): string[] | null {
  const v = o[key];
  if (v === undefined || v === null) return null;
  if (!Array.isArray(v)) throw new RedfishDecodeError(`expected a list at ${at}.${key}, got ${kindOf(v)}`, `${at}.${key}`);
  return v.filter((x): x is string => typeof x === 'string').slice(0, 256);
}

function optObject(o: Json, key: string, at: string): Json | null {
  const v = o[key];
  if (v === undefined || v === null) return null;
  return asObject(v, `${at}.${key}`);
}

/** `{"@odata.id": "/redfish/v1/…"}` → the path, which must be an absolute path on the BMC. */
function link(v: unknown, at: string): string {
  const o = asObject(v, at);
  const id = o['@odata.id'];
  if (typeof id !== 'string' || !id.startsWith('/') || id.startsWith('//') || id.length > 1024 || /[\s\\]/.test(id)) {
    throw new RedfishDecodeError(`expected a path in ${at}["@odata.id"], got ${typeof id === 'string' ? JSON.stringify(id.slice(0, 80)) : kindOf(id)}`, `${at}["@odata.id"]`);
  }
  return id;
}

function optLink(o: Json, key: string, at: string): string | null {
  const v = o[key];
  return v === undefined || v === null ? null : link(v, `${at}.${key}`);
}

export interface ServiceRoot {
  /** The sessions collection, or null when the service offers no sessions (Basic auth only). */
  readonly sessions: string | null;
  readonly systems: string | null;
}

export function readServiceRoot(v: unknown): ServiceRoot {
  const o = asObject(v, 'ServiceRoot');
  const links = optObject(o, 'Links', 'ServiceRoot');
  return { sessions: links ? optLink(links, 'Sessions', 'ServiceRoot.Links') : null, systems: optLink(o, 'Systems', 'ServiceRoot') };
}

/** A collection's members' paths (bounded). */
export function readMembers(v: unknown, at = 'Collection'): string[] {
  const o = asObject(v, at);
  const m = o['Members'];
  if (!Array.isArray(m)) throw new RedfishDecodeError(`expected a list at ${at}.Members, got ${kindOf(m)}`, `${at}.Members`);
  return m.slice(0, 1024).map((x, i) => link(x, `${at}.Members[${i}]`));
}

export type RedfishPowerState = 'On' | 'Off' | 'PoweringOn' | 'PoweringOff' | 'Paused';
const POWER_STATES: readonly RedfishPowerState[] = ['On', 'Off', 'PoweringOn', 'PoweringOff', 'Paused'];

export type LedView = { readonly kind: 'LocationIndicatorActive'; readonly on: boolean } | { readonly kind: 'IndicatorLED'; readonly state: string };

export interface SystemView {
  readonly path: string | null;
  readonly powerState: RedfishPowerState | null;
  readonly reset: { readonly target: string; readonly allowed: readonly string[] | null } | null;
  readonly boot: {
    readonly target: string | null;
    readonly enabled: string | null;
    readonly mode: string | null;
    readonly allowedTargets: readonly string[] | null;
  } | null;
  /** `@odata.etag` in the body (the ETag header, when sent, takes precedence). */
  readonly etag: string | null;
  readonly manufacturer: string | null;
  readonly model: string | null;
  readonly serial: string | null;
  readonly biosVersion: string | null;
  readonly led: LedView | null;
  readonly ethernetInterfaces: string | null;
}

export function readSystem(v: unknown): SystemView {
  const at = 'ComputerSystem';
  const o = asObject(v, at);
  const ps = optString(o, 'PowerState', at);
  if (ps !== null && !POWER_STATES.includes(ps as RedfishPowerState)) throw new RedfishDecodeError(`unknown PowerState ${JSON.stringify(ps)}`, `${at}.PowerState`);
  let reset: SystemView['reset'] = null;
  const actions = optObject(o, 'Actions', at);
  const r = actions ? optObject(actions, '#ComputerSystem.Reset', `${at}.Actions`) : null;
  if (r) {
    const ra = `${at}.Actions["#ComputerSystem.Reset"]`;
    const target = optString(r, 'target', ra);
    if (target === null || !target.startsWith('/') || target.startsWith('//')) throw new RedfishDecodeError(`expected a path at ${ra}.target`, `${ra}.target`);
    reset = { target, allowed: optStringList(r, 'ResetType@Redfish.AllowableValues', ra) };
  }
  const b = optObject(o, 'Boot', at);
  const boot: SystemView['boot'] = b
    ? {
        target: optString(b, 'BootSourceOverrideTarget', `${at}.Boot`),
        enabled: optString(b, 'BootSourceOverrideEnabled', `${at}.Boot`),
        mode: optString(b, 'BootSourceOverrideMode', `${at}.Boot`),
        allowedTargets: optStringList(b, 'BootSourceOverrideTarget@Redfish.AllowableValues', `${at}.Boot`),
      }
    : null;
  let led: LedView | null = null;
  const lia = o['LocationIndicatorActive'];
  if (typeof lia === 'boolean') led = { kind: 'LocationIndicatorActive', on: lia };
  else if (lia !== undefined && lia !== null) throw new RedfishDecodeError(`expected true or false at ${at}.LocationIndicatorActive, got ${kindOf(lia)}`, `${at}.LocationIndicatorActive`);
  else {
    const il = optString(o, 'IndicatorLED', at);
    if (il !== null) led = { kind: 'IndicatorLED', state: il };
  }
  return {
    path: typeof o['@odata.id'] === 'string' ? (o['@odata.id'] as string).slice(0, 1024) : null,
    powerState: ps as RedfishPowerState | null,
    reset,
    boot,
    etag: optString(o, '@odata.etag', at),
    manufacturer: optString(o, 'Manufacturer', at),
    model: optString(o, 'Model', at),
    serial: optString(o, 'SerialNumber', at),
    biosVersion: optString(o, 'BiosVersion', at),
    led,
    ethernetInterfaces: optLink(o, 'EthernetInterfaces', at),
  };
}

/** An EthernetInterface's MAC (`MACAddress`, else `PermanentMACAddress`), normalised; null when it has none. */
export function readEthernetMac(v: unknown): string | null {
  const at = 'EthernetInterface';
  const o = asObject(v, at);
  for (const key of ['MACAddress', 'PermanentMACAddress']) {
    const s = optString(o, key, at);
    if (s !== null) {
      const mac = parseMac(s);
      if (mac === null) throw new RedfishDecodeError(`${at}.${key} is not a MAC address: ${JSON.stringify(s.slice(0, 40))}`, `${at}.${key}`);
      return mac;
    }
  }
  return null;
}

export interface TaskView {
  readonly state: string;
  readonly done: boolean;
  readonly failed: boolean;
  readonly percent: number | null;
  readonly messages: readonly string[];
}

/** Task states after which nothing more happens (Task schema, TaskState). */
const TASK_DONE = ['Completed', 'Exception', 'Killed', 'Cancelled'];
const TASK_FAILED = ['Exception', 'Killed', 'Cancelled'];

export function readTask(v: unknown): TaskView {
  const at = 'Task';
  const o = asObject(v, at);
  const state = optString(o, 'TaskState', at);
  if (state === null) throw new RedfishDecodeError(`${at}.TaskState is missing`, `${at}.TaskState`);
  const pc = o['PercentComplete'];
  const messages = Array.isArray(o['Messages']) ? (o['Messages'] as unknown[]).map(messageText).filter((m): m is string => m !== null).slice(0, 8) : [];
  const status = optString(o, 'TaskStatus', at);
  return {
    state,
    done: TASK_DONE.includes(state),
    failed: TASK_FAILED.includes(state) || (state === 'Completed' && status === 'Critical'),
    percent: typeof pc === 'number' && Number.isFinite(pc) ? pc : null,
    messages,
  };
}

function messageText(m: unknown): string | null {
  if (!isObject(m)) return null;
  const text = typeof m['Message'] === 'string' ? m['Message'] : null;
  const id = typeof m['MessageId'] === 'string' ? m['MessageId'] : null;
  const resolution = typeof m['Resolution'] === 'string' && m['Resolution'] !== 'None' ? m['Resolution'] : null;
  const parts = [text ?? id, text && id ? `(${id})` : null, resolution ? `Resolution: ${resolution}` : null].filter((p): p is string => !!p);
  return parts.length ? parts.join(' ').slice(0, 400) : null;
}

/**
 * The message of a Redfish error body: `error.message` and each `@Message.ExtendedInfo` entry's
 * `Message (MessageId) Resolution: …`. Null when the body is no Redfish error (or not JSON).
 */
export function errorText(body: Uint8Array): string | null {
  let v: unknown;
  try {
    v = parseJson(body);
  } catch {
    const text = Buffer.from(body.subarray(0, 200)).toString('utf8').replace(/\s+/g, ' ').trim();
    return text ? `(not JSON) ${text}` : null;
  }
  if (!isObject(v)) return null;
  const e = isObject(v['error']) ? v['error'] : v;
  const infos = Array.isArray(e['@Message.ExtendedInfo']) ? (e['@Message.ExtendedInfo'] as unknown[]).map(messageText).filter((m): m is string => m !== null).slice(0, 4) : [];
  const top = typeof e['message'] === 'string' ? e['message'].slice(0, 300) : null;
  const parts = [top, ...infos.filter((i) => i !== top)].filter((p): p is string => !!p);
  return parts.length ? parts.join('; ') : null;
}
