import type { DiscoveryGate } from '../inventory/discovery.js';
import type { Machine, SecureBootSeen } from '../inventory/model.js';
import type { ClusterRepo, EventRepo, MachineRepo } from '../inventory/store.js';
import { AppError } from '../lib/errors.js';
import type { Logger } from '../lib/log.js';
import type { Mac } from '../lib/mac.js';
import type { BootScriptRecorder } from '../http/boot-scripts.js';
import type { Renderer } from '../render/templates.js';
import { checkBootAddress } from '../seeds/access.js';
import { newInstanceId } from '../seeds/context.js';
import { firmwareOf, type BootQuery } from './query.js';
import { installerArchOf, installerFor, type InstallerTables } from './releases.js';
import { carriesSeedToken, decideBootScript, type BootDecision, type BootScriptLoader, type BootSettings } from './script.js';

/**
 * Serving a machine its boot script — an iPXE script over HTTP, or a GRUB config over TFTP or
 * HTTP — the one way for both: a first contact recorded, the machine's seed token read, decide
 * (pure), render, then the transition, the sighting and the step in one group commit. Whatever binds a seed token to
 * the address that fetched the script carrying it belongs here, so that it holds for every loader.
 */
export interface BootServeDeps {
  readonly machines: Pick<MachineRepo, 'get' | 'recordSighting' | 'seedTokenFor'>;
  /** Writes what a script answered records (transition, sighting, instance id, event, step) in the next group commit. */
  readonly recordBootScript: BootScriptRecorder;
  readonly clusters: Pick<ClusterRepo, 'get'>;
  readonly events: Pick<EventRepo, 'append'>;
  readonly templates: Renderer;
  readonly installers: InstallerTables;
  readonly boot: Omit<BootSettings, 'baseUrl'>;
  readonly now: () => Date;
  /** Caps how many unknown MACs one address may add; without it every sighting is recorded. */
  readonly discovery?: DiscoveryGate | undefined;
  /** Where racksmith's own DHCP leased the MAC (authoritative mode), or null. */
  readonly leasedAddress?: ((mac: Mac) => Promise<string | null>) | undefined;
  readonly log?: Logger | undefined;
}

export interface BootRequest {
  readonly query: BootQuery;
  readonly loader: BootScriptLoader;
  /** `http://<advertise>:<port>` as this request should see it. */
  readonly baseUrl: string;
  /** For the event log: `http 10.0.0.5`, `tftp 10.0.0.5`. */
  readonly source: string;
  /** The address the request came from (null when unknown). */
  readonly remote: string | null;
}

export interface ServedBootScript {
  readonly body: string;
  readonly decision: BootDecision;
  readonly machine: Machine | null;
}

/**
 * What the loader asking shows of Secure Boot: signed GRUB says so in `$lockdown`; iPXE running
 * on EFI at all means the firmware is not enforcing it (Debian's iPXE is not signed).
 */
export function secureBootShown(loader: BootScriptLoader, q: BootQuery): SecureBootSeen | null {
  if (loader === 'grub') return q.lockdown === true ? 'enforced' : q.lockdown === false ? 'off' : null;
  return q.platform === 'efi' ? 'off' : null;
}

export async function serveBootScript(d: BootServeDeps, r: BootRequest): Promise<ServedBootScript> {
  const q = r.query;
  const settings: BootSettings = { ...d.boot, baseUrl: r.baseUrl };
  const anonymous = (): ServedBootScript => {
    const decision = decideBootScript({ query: q, machine: null, cluster: null, installer: null, seedToken: null, loader: r.loader }, settings);
    return { body: d.templates.render(decision.template, decision.context), decision, machine: null };
  };
  if (q.mac === null) return anonymous();
  // Over its allowance: the same answer an unknown machine gets, but nothing recorded.
  const known = await d.machines.get(q.mac);
  if (known === null && !(await admitDiscovery(d, r))) return anonymous();
  const sighting = { mac: q.mac, arch: q.arch, firmware: firmwareOf(q.platform), uuid: q.uuid, source: r.source };
  // First contact records the machine (discovered) before it is answered; a known machine's
  // sighting goes with the rest of its step, in the next group commit.
  const machine = known ?? (await d.machines.recordSighting(sighting)).machine;
  const cluster = machine.cluster ? await d.clusters.get(machine.cluster) : null;
  // The architecture the loader reports, else the one DHCP saw: an ARM64 machine never gets amd64 files.
  const installer = cluster ? installerFor(d.installers, cluster.ubuntuRelease, installerArchOf(q.arch ?? machine.arch)) : null;
  const seedToken = carriesSeedToken(machine, cluster) ? await bindSeedToken(d, r, machine) : null;
  const decision = decideBootScript({ query: q, machine, cluster, installer, seedToken, loader: r.loader }, settings);
  // Render before any state change: a failed render changes nothing.
  const body = d.templates.render(decision.template, decision.context);
  const what = installer ? `Ubuntu ${installer.release}${installer.arch ? ` ${installer.arch}` : ''} (${installer.kind})` : '?';
  const data = { script: decision.kind, arch: q.arch, platform: q.platform, attempt: q.attempt, ...(r.loader === 'grub' ? { loader: 'shim-grub', lockdown: q.lockdown ?? null } : {}) };
  const loaderStep = r.loader === 'grub' ? 'grub' : 'ipxe';
  await d.recordBootScript({
    sighting,
    transition: decision.transition ? { event: decision.transition, message: `installer served: ${what}` } : null,
    instanceId: decision.transition ? newInstanceId(machine, d.now()) : null,
    event: { cluster: machine.cluster, type: r.loader === 'grub' ? 'boot.grub' : 'http.ipxe', message: decision.summary, data },
    lastStep: decision.kind === 'install' ? 'installer' : decision.kind === 'local' ? 'local-boot' : loaderStep,
    loader: { kind: 'loader', secureBoot: secureBootShown(r.loader, q) },
  });
  return { body, decision, machine };
}

/** Spends one of the asking address's discovery allowances; the first refusal is logged and recorded. */
async function admitDiscovery(d: BootServeDeps, r: BootRequest): Promise<boolean> {
  if (!d.discovery) return true;
  const admission = d.discovery.admit(r.remote ?? '?');
  if (admission.ok) return true;
  if (admission.first) {
    const message = `${r.remote ?? '?'} asked for boot scripts of more unknown MACs than its allowance: they are answered but not recorded as machines`;
    d.log?.warn({ remote: r.remote }, message);
    await d.events.append({ type: 'discovery.limited', source: r.source, message, data: { path: r.loader === 'grub' ? 'grub' : 'http', remote: r.remote } });
  }
  return false;
}

/**
 * The machine's seed token for the install script, bound to the address asking for it. A MAC
 * racksmith's DHCP leased elsewhere is not this asker's: refused (403), and the machine's log says so.
 */
async function bindSeedToken(d: BootServeDeps, r: BootRequest, machine: Machine): Promise<string | null> {
  const leased = d.leasedAddress ? await d.leasedAddress(machine.mac) : null;
  const check = checkBootAddress(machine, r.remote, leased);
  if (!check.ok || r.remote === null) {
    const message = check.ok ? 'no client address' : check.message;
    await d.events.append({ mac: machine.mac, cluster: machine.cluster, type: 'http.boot.refused', source: r.source, message: `install script refused: ${message}`, data: null });
    throw new AppError('forbidden', 'ERR_WRONG_ADDRESS', message);
  }
  const bound = await d.machines.seedTokenFor(machine.mac, r.remote);
  if (bound?.rebound) {
    await d.events.append({
      mac: machine.mac,
      cluster: machine.cluster,
      type: 'http.seed.rebound',
      source: r.source,
      message: `seed token bound to ${r.remote} now; the one handed to ${bound.rebound} no longer works`,
      data: { from: bound.rebound, to: r.remote },
    });
  }
  return bound?.token ?? null;
}
