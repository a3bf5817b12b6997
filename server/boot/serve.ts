import type { Machine, SecureBootSeen } from '../inventory/model.js';
import type { ClusterRepo, EventRepo, MachineRepo } from '../inventory/store.js';
import type { Renderer } from '../render/templates.js';
import { newInstanceId } from '../seeds/context.js';
import { firmwareOf, type BootQuery } from './query.js';
import { installerArchOf, installerFor, type InstallerTables } from './releases.js';
import { decideBootScript, type BootDecision, type BootScriptLoader, type BootSettings } from './script.js';

/**
 * Serving a machine its boot script — an iPXE script over HTTP, or a GRUB config over TFTP or
 * HTTP — the one way for both: record the sighting, read the machine's seed token, decide
 * (pure), render, then apply the transition and record the step. Whatever binds a seed token to
 * the address that fetched the script carrying it belongs here, so that it holds for every loader.
 */
export interface BootServeDeps {
  readonly machines: Pick<MachineRepo, 'recordSighting' | 'transition' | 'setLastStep' | 'seedToken' | 'setInstanceId' | 'recordBootStep'>;
  readonly clusters: Pick<ClusterRepo, 'get'>;
  readonly events: Pick<EventRepo, 'append'>;
  readonly templates: Renderer;
  readonly installers: InstallerTables;
  readonly boot: Omit<BootSettings, 'baseUrl'>;
  readonly now: () => Date;
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
  if (q.mac === null) {
    const decision = decideBootScript({ query: q, machine: null, cluster: null, installer: null, seedToken: null, loader: r.loader }, settings);
    return { body: d.templates.render(decision.template, decision.context), decision, machine: null };
  }
  const { machine } = await d.machines.recordSighting({ mac: q.mac, arch: q.arch, firmware: firmwareOf(q.platform), uuid: q.uuid, source: r.source });
  const cluster = machine.cluster ? await d.clusters.get(machine.cluster) : null;
  // The architecture the loader reports, else the one DHCP saw: an ARM64 machine never gets amd64 files.
  const installer = cluster ? installerFor(d.installers, cluster.ubuntuRelease, installerArchOf(q.arch ?? machine.arch)) : null;
  const seedToken = machine.role && cluster ? await d.machines.seedToken(machine.mac) : null;
  const decision = decideBootScript({ query: q, machine, cluster, installer, seedToken, loader: r.loader }, settings);
  // Render before any state change: a failed render changes nothing.
  const body = d.templates.render(decision.template, decision.context);
  if (decision.transition) {
    const what = installer ? `Ubuntu ${installer.release}${installer.arch ? ` ${installer.arch}` : ''} (${installer.kind})` : '?';
    await d.machines.transition(machine.mac, decision.transition, { source: r.source, message: `installer served: ${what}` });
    await d.machines.setInstanceId(machine.mac, newInstanceId(machine, d.now()));
  }
  await d.machines.recordBootStep(machine.mac, { kind: 'loader', secureBoot: secureBootShown(r.loader, q) });
  const data = { script: decision.kind, arch: q.arch, platform: q.platform, attempt: q.attempt, ...(r.loader === 'grub' ? { loader: 'shim-grub', lockdown: q.lockdown ?? null } : {}) };
  await d.events.append({ mac: machine.mac, cluster: machine.cluster, type: r.loader === 'grub' ? 'boot.grub' : 'http.ipxe', source: r.source, message: decision.summary, data });
  const loaderStep = r.loader === 'grub' ? 'grub' : 'ipxe';
  await d.machines.setLastStep(machine.mac, decision.kind === 'install' ? 'installer' : decision.kind === 'local' ? 'local-boot' : loaderStep);
  return { body, decision, machine };
}
