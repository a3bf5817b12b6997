import type { Logger } from '../../lib/log.js';
import { sleepUnlessAborted as sleep } from '../../lib/sleep.js';
import { PowerError, type BmcFacts, type BmcTarget, type BootDevice, type BootOptions, type PowerCallInfo, type PowerDriver, type PowerState } from '../driver.js';
import type { BmcGate } from '../scheduler.js';
import { parseJson, readEthernetMac, readMembers, readServiceRoot, readSystem, readTask, RedfishDecodeError, type SystemView } from './decode.js';
import { bootPatch, chooseResetType, ledIsOn, ledPatch, parseEndpoint, retryDelay, taskPollDelay, type PowerAction, type RedfishEndpoint } from './decide.js';
import type { HttpRequest, HttpResponse } from './http.js';
import { answerError, createBmcConnection, type BmcConnection } from './session.js';

/**
 * The Redfish driver (docs/power.md): power through `ComputerSystem.Reset`, state from
 * `PowerState`, the one-time boot override through a PATCH of `Boot`, the locator LED, and the
 * system's facts. Each call runs inside the BMC gate shared with IPMI (one command per BMC, a
 * global limit) and under the same deadline; a BMC that answers 202 gets its task monitor polled
 * until the task ends or the deadline passes.
 */
export interface RedfishDriverOptions {
  readonly deadlineMs: number;
  readonly retry: { readonly maxAttempts: number; readonly baseDelayMs: number; readonly maxDelayMs: number };
  readonly gate: BmcGate;
  readonly log: Logger;
  /** A session unused this long is deleted (BMCs have few session slots). */
  readonly sessionIdleMs?: number;
}

export interface RedfishDriver extends PowerDriver {
  /** Deletes every session and closes the sockets. */
  close(): Promise<void>;
  /** For tests: the login kind per BMC. */
  connections(): { endpoint: string; auth: string }[];
}

/** NICs read per system for its facts. */
const MAX_NICS = 32;

interface Op {
  /** GET/PATCH/POST with the BMC's answer checked: non-2xx is a PowerError. */
  get(path: string): Promise<{ json: unknown; res: HttpResponse }>;
  write(method: 'PATCH' | 'POST', path: string, body: unknown, etag?: string | null): Promise<HttpResponse>;
  /** The system's path (cached per BMC). */
  system(): Promise<{ path: string; view: SystemView; etag: string | null }>;
  /** The action was sent: a failure after this is not retried (a second reset would reset twice). */
  sent(): void;
}

export function createRedfishDriver(opts: RedfishDriverOptions): RedfishDriver {
  if (!(opts.deadlineMs >= 1000)) throw new RangeError(`the BMC deadline must be at least 1 s, got ${opts.deadlineMs} ms`);
  const idleMs = opts.sessionIdleMs ?? 60_000;
  const conns = new Map<string, BmcConnection>();
  const systemPaths = new Map<string, string>();
  const ledTimers = new Map<string, NodeJS.Timeout>();
  let closing = false;

  const sweeper = setInterval(() => {
    for (const [key, c] of conns) {
      if (!c.busy() && Date.now() - c.lastUsed() > idleMs) {
        conns.delete(key);
        void c.close();
      }
    }
  }, Math.min(idleMs, 10_000));
  sweeper.unref();

  function endpointOf(t: BmcTarget): RedfishEndpoint {
    const e = parseEndpoint(t.address, t.port > 0 ? t.port : null);
    if ('error' in e) throw new PowerError('rejected', `BMC address ${JSON.stringify(t.address)}: ${e.error}`, 0);
    return e;
  }

  function connection(t: BmcTarget, e: RedfishEndpoint): { key: string; conn: BmcConnection } {
    const tls = { verify: t.verifyTls ?? true, fingerprint: t.tlsFingerprint ?? null };
    // Credentials and TLS policy are part of the key: a changed password or pin gets a new login.
    const key = `${e.protocol}://${e.display} ${t.username} ${tls.verify} ${tls.fingerprint ?? ''} ${hash(t.password)}`;
    let conn = conns.get(key);
    if (!conn) {
      conn = createBmcConnection(e, tls, t.username, t.password);
      conns.set(key, conn);
    }
    return { key, conn };
  }

  function decodeFailure(e: RedfishEndpoint, path: string, err: unknown): never {
    if (err instanceof RedfishDecodeError) throw new PowerError('output', `BMC ${e.display}: GET ${path}: ${err.message}`, 1);
    throw err;
  }

  /** Polls a task monitor until the task is done or the deadline passes (DSP0266 § 12.2 Asynchronous operations). */
  async function awaitTask(e: RedfishEndpoint, conn: BmcConnection, first: HttpResponse, what: string, deadline: number, signal?: AbortSignal): Promise<void> {
    let monitor = typeof first.headers['location'] === 'string' ? pathOf(first.headers['location']) : null;
    if (!monitor) {
      try {
        const body = parseJson(first.body) as Record<string, unknown>;
        const m = body['TaskMonitor'] ?? body['@odata.id'];
        monitor = typeof m === 'string' ? pathOf(m) : null;
      } catch {
        /* no body */
      }
    }
    if (!monitor) throw new PowerError('output', `BMC ${e.display} accepted ${what} (202) without a task monitor to follow`, 1);
    let last = 'New';
    let retryAfter = typeof first.headers['retry-after'] === 'string' ? first.headers['retry-after'] : null;
    for (let polls = 0; polls < 10_000; polls++) {
      const wait = taskPollDelay(retryAfter);
      if (Date.now() + wait >= deadline) break;
      await sleep(wait, signal);
      if (signal?.aborted) throw new PowerError('aborted', `BMC ${e.display}: ${what} was cancelled because racksmith is stopping`, 1);
      const req: HttpRequest = { method: 'GET', path: monitor };
      const res = await conn.send(req, deadline, signal);
      retryAfter = typeof res.headers['retry-after'] === 'string' ? res.headers['retry-after'] : null;
      if (res.status === 202) {
        try {
          const t = readTask(parseJson(res.body));
          last = `${t.state}${t.percent !== null ? `, ${t.percent} %` : ''}`;
        } catch {
          /* a monitor may answer 202 with no body */
        }
        continue;
      }
      if (res.status === 204 || res.body.length === 0) {
        if (res.status >= 200 && res.status < 300) return;
      }
      if (res.status < 200 || res.status > 299) throw answerError(e, req, res, '');
      let task;
      try {
        task = readTask(parseJson(res.body));
      } catch {
        return; // the monitor answered with the operation's own result
      }
      if (!task.done) {
        last = `${task.state}${task.percent !== null ? `, ${task.percent} %` : ''}`;
        continue;
      }
      if (task.failed) throw new PowerError('rejected', `BMC ${e.display}: ${what} failed as task ${monitor} (${task.state})${task.messages.length ? `: ${task.messages.join('; ')}` : ''}`, 1);
      return;
    }
    throw new PowerError('timeout', `BMC ${e.display}: ${what} did not complete within the ${(opts.deadlineMs / 1000).toFixed(0)} s deadline (task ${monitor}, last state ${last})`, 1);
  }

  function pathOf(loc: string): string | null {
    try {
      const u = new URL(loc, 'https://x');
      return u.pathname + u.search;
    } catch {
      return null;
    }
  }

  /** One operation: the gate, the deadline, retries of what is transient and not yet sent. */
  async function call<T>(t: BmcTarget, what: string, fn: (op: Op) => Promise<T>, signal?: AbortSignal): Promise<{ value: T; info: PowerCallInfo }> {
    if (closing) throw new PowerError('aborted', `BMC ${t.address}: racksmith is stopping`, 0);
    const e = endpointOf(t);
    return opts.gate.run(
      `redfish:${e.display}`,
      async () => {
        const started = Date.now();
        const deadline = started + opts.deadlineMs;
        for (let attempt = 1; ; attempt++) {
          const { conn } = connection(t, e);
          let sent = false;
          const op: Op = {
            async get(path) {
              const req: HttpRequest = { method: 'GET', path };
              const res = await conn.send(req, deadline, signal);
              if (res.status < 200 || res.status > 299) throw answerError(e, req, res, t.username);
              try {
                return { json: parseJson(res.body), res };
              } catch (err) {
                return decodeFailure(e, path, err);
              }
            },
            async write(method, path, body, etag) {
              const req: HttpRequest = { method, path, body, ...(etag ? { headers: { 'If-Match': etag } } : {}) };
              const res = await conn.send(req, deadline, signal);
              if (res.status === 202) {
                sent = true;
                await awaitTask(e, conn, res, `${method} ${path}`, deadline, signal);
                return res;
              }
              if (res.status < 200 || res.status > 299) throw answerError(e, { ...req, body: undefined }, res, t.username);
              return res;
            },
            async system() {
              const key = `${e.display} ${t.systemId ?? ''}`;
              let path = systemPaths.get(key) ?? null;
              if (path === null) {
                const root = await op.get('/redfish/v1/');
                let systems: string | null;
                try {
                  systems = readServiceRoot(root.json).systems;
                } catch (err) {
                  return decodeFailure(e, '/redfish/v1/', err);
                }
                if (!systems) throw new PowerError('rejected', `BMC ${e.display} has no Systems collection`, 1);
                let members: string[];
                try {
                  members = readMembers((await op.get(systems)).json, 'Systems');
                } catch (err) {
                  return decodeFailure(e, systems, err);
                }
                if (t.systemId) {
                  path = members.find((m) => m.replace(/\/$/, '').split('/').pop() === t.systemId) ?? null;
                  if (!path) throw new PowerError('rejected', `BMC ${e.display} has no system "${t.systemId}" (it has: ${members.map((m) => m.split('/').pop()).join(', ') || 'none'}); fix bmc.systemId`, 1);
                } else if (members.length === 1) {
                  path = members[0] as string;
                } else {
                  throw new PowerError('rejected', `BMC ${e.display} has ${members.length} systems (${members.map((m) => m.split('/').pop()).join(', ') || 'none'}): set bmc.systemId`, 1);
                }
                systemPaths.set(key, path);
              }
              let got;
              try {
                got = await op.get(path);
              } catch (err) {
                // The system went away (or the id was wrong all along): forget the cached path.
                if (err instanceof PowerError && /answered 404/.test(err.message)) {
                  systemPaths.delete(key);
                  throw new PowerError('rejected', `${err.message}: BMC ${e.display} has no system at ${path}; check bmc.systemId`, 1);
                }
                throw err;
              }
              let view: SystemView;
              try {
                view = readSystem(got.json);
              } catch (err) {
                return decodeFailure(e, path, err);
              }
              const header = got.res.headers['etag'];
              return { path, view, etag: typeof header === 'string' && header !== '' ? header : view.etag };
            },
            sent() {
              sent = true;
            },
          };
          try {
            const value = await fn(op);
            return { value, info: { attempts: attempt, cipherSuite: null, ms: Date.now() - started } };
          } catch (err) {
            if (!(err instanceof PowerError)) throw err;
            if (signal?.aborted) throw new PowerError('aborted', `BMC ${e.display}: ${what} was cancelled because racksmith is stopping`, attempt);
            const delay = sent ? null : retryDelay(err.kind, attempt, opts.retry, deadline - Date.now());
            opts.log.debug({ bmc: e.display, op: what, kind: err.kind, attempt, error: err.message }, 'redfish attempt failed');
            if (delay === null) {
              const deadlinePassed = Date.now() >= deadline && (err.kind === 'timeout' || err.kind === 'unreachable' || err.kind === 'busy');
              const message = deadlinePassed ? `BMC ${e.display} did not answer within the ${(opts.deadlineMs / 1000).toFixed(0)} s deadline (${attempt} attempt${attempt === 1 ? '' : 's'}): ${err.message}` : err.message;
              throw new PowerError(deadlinePassed ? 'timeout' : err.kind, message, attempt);
            }
            await sleep(delay, signal);
          }
        }
      },
      signal,
    );
  }

  function powerState(view: SystemView, e: string): PowerState {
    if (view.powerState === null) throw new PowerError('output', `BMC ${e}: the system reports no PowerState`, 1);
    // PoweringOn is on its way up, PoweringOff on its way down; Paused is powered.
    return view.powerState === 'Off' || view.powerState === 'PoweringOff' ? 'off' : 'on';
  }

  const control = (action: PowerAction) => async (t: BmcTarget, signal?: AbortSignal): Promise<PowerCallInfo> =>
    (
      await call(
        t,
        action,
        async (op) => {
          const s = await op.system();
          if (!s.view.reset) throw new PowerError('rejected', `BMC ${t.address}: the system has no ComputerSystem.Reset action`, 1);
          const choice = chooseResetType(action, s.view.reset.allowed);
          if ('error' in choice) throw new PowerError('rejected', `BMC ${t.address}: ${choice.error}`, 1);
          await op.write('POST', s.view.reset.target, { ResetType: choice.type });
          op.sent();
          return choice.type;
        },
        signal,
      )
    ).info;

  function clearLedTimer(key: string): void {
    const timer = ledTimers.get(key);
    if (timer) clearTimeout(timer);
    ledTimers.delete(key);
  }

  const driver: RedfishDriver = {
    name: 'redfish',
    async status(t, signal) {
      const r = await call(t, 'status', async (op) => powerState((await op.system()).view, t.address), signal);
      return { ...r.info, state: r.value };
    },
    on: control('on'),
    off: control('off'),
    cycle: control('cycle'),
    reset: control('reset'),
    async setNextBoot(t: BmcTarget, device: BootDevice, boot: BootOptions, signal?: AbortSignal) {
      const r = await call(
        t,
        'bootdev',
        async (op) => {
          let s = await op.system();
          let patch = bootPatch(device, boot, s.view);
          if ('error' in patch) throw new PowerError('rejected', `BMC ${t.address}: ${patch.error}`, 1);
          try {
            await op.write('PATCH', s.path, patch.body, s.etag);
          } catch (err) {
            // 412: the system changed since it was read; read it again and retry once with the new ETag.
            if (!(err instanceof PowerError) || !/answered 412/.test(err.message)) throw err;
            s = await op.system();
            patch = bootPatch(device, boot, s.view);
            if ('error' in patch) throw new PowerError('rejected', `BMC ${t.address}: ${patch.error}`, 1);
            await op.write('PATCH', s.path, patch.body, s.etag);
          }
          // Read it back: BMCs that acknowledge and ignore exist (bmc-toolbox/bmclib#209).
          const back = (await op.system()).view.boot;
          const warnings: string[] = [];
          // A BMC that cannot boot UefiHttp without a URL may set Pxe instead (sushy-emulator does): the chain still netboots.
          if (patch.target === 'UefiHttp' && back?.target === 'Pxe') warnings.push('the BMC set Pxe instead of UefiHttp');
          else if (back?.target !== patch.target) throw new PowerError('rejected', `BMC ${t.address} acknowledged boot target ${patch.target} but reports ${back?.target ?? 'nothing'}`, 1);
          const asked = patch.body.Boot['BootSourceOverrideEnabled'];
          if (back?.enabled && back.enabled !== asked) warnings.push(`the BMC reports BootSourceOverrideEnabled ${back.enabled} although ${asked} was asked for`);
          if (device === 'pxe' && boot.http && patch.target !== 'UefiHttp') warnings.push('the BMC offers no UefiHttp boot target: PXE was set instead');
          return warnings.join('; ') || undefined;
        },
        signal,
      );
      return { ...r.info, warning: r.value };
    },
    async identify(t, on, seconds, signal) {
      const key = `${t.address} ${t.systemId ?? ''}`;
      clearLedTimer(key);
      const r = await call(
        t,
        'identify',
        async (op) => {
          const s = await op.system();
          const body = ledPatch(s.view, on);
          if (!body) throw new PowerError('rejected', `BMC ${t.address}: the system has neither LocationIndicatorActive nor IndicatorLED`, 1);
          await op.write('PATCH', s.path, body, s.etag);
          const back = ledIsOn((await op.system()).view);
          if (back !== on) throw new PowerError('rejected', `BMC ${t.address} acknowledged the locator LED ${on ? 'on' : 'off'} but reports it ${back ? 'on' : 'off'}`, 1);
        },
        signal,
      );
      // Redfish LEDs have no interval: racksmith turns it off itself (lost on a restart: docs/power.md).
      if (on && seconds !== null) {
        const timer = setTimeout(() => {
          ledTimers.delete(key);
          driver.identify(t, false, null).catch((err: unknown) => opts.log.warn({ bmc: t.address, err }, 'turning the locator LED off failed'));
        }, seconds * 1000);
        timer.unref();
        ledTimers.set(key, timer);
      }
      return r.info;
    },
    async facts(t, signal) {
      const r = await call(
        t,
        'facts',
        async (op): Promise<BmcFacts> => {
          const s = await op.system();
          let nics: string[] | null = null;
          if (s.view.ethernetInterfaces) {
            const members = readMembersOr(await op.get(s.view.ethernetInterfaces), t.address, s.view.ethernetInterfaces);
            nics = [];
            for (const m of members.slice(0, MAX_NICS)) {
              let mac: string | null;
              try {
                mac = readEthernetMac((await op.get(m)).json);
              } catch (err) {
                return decodeFailure(endpointOf(t), m, err);
              }
              if (mac && !nics.includes(mac)) nics.push(mac);
            }
          }
          return { source: 'redfish', manufacturer: s.view.manufacturer, model: s.view.model, serial: s.view.serial, biosVersion: s.view.biosVersion, firmwareVersion: null, nics };
        },
        signal,
      );
      return { ...r.info, facts: r.value };
    },
    async close() {
      closing = true;
      clearInterval(sweeper);
      for (const k of [...ledTimers.keys()]) clearLedTimer(k);
      const all = [...conns.values()];
      conns.clear();
      await Promise.all(all.map((c) => c.close()));
    },
    connections() {
      return [...conns.values()].map((c) => ({ endpoint: c.endpoint.display, auth: c.authMode() }));
    },
  };
  return driver;
}

function readMembersOr(got: { json: unknown }, address: string, path: string): string[] {
  try {
    return readMembers(got.json, 'EthernetInterfaces');
  } catch (err) {
    if (err instanceof RedfishDecodeError) throw new PowerError('output', `BMC ${address}: GET ${path}: ${err.message}`, 1);
    throw err;
  }
}

/** A short digest of the password for the connection key (never logged, never stored). */
function hash(s: string): string {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return (h >>> 0).toString(16);
}
