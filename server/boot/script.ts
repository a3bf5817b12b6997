import type { Cluster, Machine } from '../inventory/model.js';
import { OS_NAMES } from '../inventory/os.js';
import type { MachineState } from '../inventory/lifecycle.js';
import { macHexHyphen, type Mac } from '../lib/mac.js';
import type { BootQuery, Platform } from './query.js';
import { artifactDir, type ReleaseInstaller } from './releases.js';

/**
 * Which iPXE script a machine gets, as a pure function of what it sent and what the inventory
 * knows. The HTTP handler records the sighting and the transition the decision names, then
 * renders `boot-templates/<template>` with the context.
 *
 *   no MAC                         → chain: ask again with mac/arch/platform/uuid
 *   unknown, discovered            → wait: "waiting for a role", ask again later, bounded
 *   assigned, provisioning,
 *   reimaging                      → install: the installer of the cluster's OS, or the deploy agent
 *   installed, ready, joining,
 *   joined                         → local: boot from disk (breaks the reinstall loop)
 *   failed                         → wait: an operator has to retry it
 */
export type BootScriptKind = 'chain' | 'wait' | 'install' | 'local';

/**
 * The language of the answer: an iPXE script, or a GRUB config for the signed shim → GRUB chain.
 * Both mean the same for each state; GRUB reads its files from the TFTP server it was loaded from
 * (the distribution's signed GRUB has no HTTP client), iPXE from racksmith's HTTP.
 */
export type BootScriptLoader = 'ipxe' | 'grub';

export interface BootSettings {
  /** `http://<advertise>:<port>` — what machines use to reach racksmith. */
  readonly baseUrl: string;
  /** Where machines fetch installer artifacts (an nginx front, `artifacts-url`); default `baseUrl`. */
  readonly artifactsBaseUrl?: string | undefined;
  /** racksmith's own nginx front (`artifacts-nginx-port`): `baseUrl`'s host on this port, unless `artifactsBaseUrl` names one. */
  readonly artifactsPort?: number | undefined;
  readonly waitSeconds: number;
  readonly waitAttempts: number;
  /** Tries of the chain script before it reboots. */
  readonly chainTries: number;
  readonly retrySeconds: number;
  /** Extra kernel arguments for every installer (already checked by the settings schema). */
  readonly kernelArgs: readonly string[];
  /** Name servers racksmith's own DHCP hands out (authoritative mode), else none. */
  readonly nameservers?: readonly string[] | undefined;
}

/** Where machines fetch installer artifacts: `artifacts-url`, else racksmith's own front on its port, else racksmith. */
export function artifactsBase(s: Pick<BootSettings, 'baseUrl' | 'artifactsBaseUrl' | 'artifactsPort'>): string {
  if (s.artifactsBaseUrl) return s.artifactsBaseUrl;
  if (s.artifactsPort === undefined) return s.baseUrl;
  const u = new URL(s.baseUrl);
  u.port = String(s.artifactsPort);
  return u.origin;
}

export interface BootFacts {
  readonly query: BootQuery;
  readonly machine: Machine | null;
  readonly cluster: Cluster | null;
  readonly installer: ReleaseInstaller | null;
  /** The machine's seed token in clear (assigned machines only). */
  readonly seedToken: string | null;
  /** Default `ipxe`. */
  readonly loader?: BootScriptLoader;
}

export interface BootDecision {
  readonly kind: BootScriptKind;
  readonly template: string;
  readonly context: Record<string, unknown>;
  /** The lifecycle event the handler applies before answering (`installer-served`), if any. */
  readonly transition: 'installer-served' | null;
  /** One line for the machine's event log. */
  readonly summary: string;
}

const INSTALL_STATES: readonly MachineState[] = ['assigned', 'provisioning', 'reimaging'];
const LOCAL_STATES: readonly MachineState[] = ['installed', 'ready', 'joining', 'joined'];

/** Whether the machine's boot script carries its seed token (the install script). */
export function carriesSeedToken(machine: Pick<Machine, 'state' | 'role'> | null, cluster: Cluster | null): boolean {
  return machine !== null && INSTALL_STATES.includes(machine.state) && machine.role !== null && cluster !== null;
}

export function bootUrl(s: BootSettings): string {
  return `${s.baseUrl}/boot.ipxe`;
}

function machineQuery(mac: Mac, q: BootQuery, extra: Record<string, string> = {}): string {
  const parts: [string, string][] = [['mac', macHexHyphen(mac)]];
  if (q.arch) parts.push(['arch', q.arch]);
  if (q.platform) parts.push(['platform', q.platform]);
  if (q.uuid) parts.push(['uuid', q.uuid]);
  if (q.lockdown != null) parts.push(['lockdown', q.lockdown ? 'y' : 'n']);
  parts.push(...Object.entries(extra));
  return parts.map(([k, v]) => `${k}=${encodeURIComponent(v)}`).join('&');
}

/** GRUB's name for a machine's own config, relative to its prefix, with the query after it. */
export function grubConfigName(mac: Mac, q: BootQuery, extra: Record<string, string> = {}): string {
  const query = machineQuery(mac, q, extra).split('&').slice(1).join('&');
  return `grub.cfg-01-${macHexHyphen(mac)}${query ? `?${query}` : ''}`;
}

const TEMPLATES: Record<BootScriptLoader, Record<BootScriptKind, string>> = {
  ipxe: { chain: 'chain.ipxe.njk', wait: 'wait.ipxe.njk', install: 'install.ipxe.njk', local: 'local.ipxe.njk' },
  grub: { chain: 'grub.cfg.njk', wait: 'wait.grub.njk', install: 'install.grub.njk', local: 'local.grub.njk' },
};
const LABEL: Record<BootScriptLoader, string> = { ipxe: 'iPXE script', grub: 'GRUB config' };

function waitDecision(mac: Mac, q: BootQuery, s: BootSettings, reason: 'unknown' | 'discovered' | 'failed' | 'misconfigured', message: string, loader: BootScriptLoader): BootDecision {
  const attempt = Math.min(q.attempt, s.waitAttempts);
  const next = { attempt: String(attempt + 1) };
  return {
    kind: 'wait',
    template: TEMPLATES[loader].wait,
    transition: null,
    summary: `${LABEL[loader]}: wait (${message}, attempt ${attempt} of ${s.waitAttempts})`,
    context: {
      mac,
      reason,
      message,
      attempt,
      attempts: s.waitAttempts,
      waitSeconds: s.waitSeconds,
      nextUrl: loader === 'grub' ? grubConfigName(mac, q, next) : `${bootUrl(s)}?${machineQuery(mac, q, next)}`,
    },
  };
}

/** Kernel command line of each installer, word by word. */
export function installerArgs(inst: ReleaseInstaller, machine: Machine, seedUrl: string, s: BootSettings): string[] {
  if (inst.kind === 'deploy-agent') {
    // The agent finds its NIC by the MAC racksmith booted it on, and everything else at the seed.
    return [`racksmith.seed=${seedUrl}`, `racksmith.mac=${machine.mac}`, 'quiet', ...s.kernelArgs];
  }
  if (inst.kind === 'debian-installer') {
    // d-i asks the network questions before it can fetch a network preseed, so netcfg, locale
    // and keyboard answers go on the command line (installation guide, appendix B.2.1).
    return [
      'auto=true',
      'priority=critical',
      `url=${seedUrl}preseed.cfg`,
      'interface=auto',
      'netcfg/dhcp_timeout=60',
      // A provisioning network may hand out no router (the mirror reached through a proxy on the
      // segment): d-i would stop to ask whether to go on without one.
      'netcfg/no_default_route=true',
      // d-i's udhcpc script runs under `sh -e` and dies on `ip route add default via ""` when the
      // lease has no router, before it writes resolv.conf: netcfg then holds no name server and
      // stops to ask for one. The answer is ours to give (one word: the first server suffices).
      ...(s.nameservers?.length ? [`netcfg/get_nameservers=${s.nameservers[0]}`] : []),
      ...(machine.hostname ? [`hostname=${machine.hostname}`] : []),
      'locale=en_US.UTF-8',
      'keyboard-configuration/layoutcode=us',
      'console-setup/ask_detect=false',
      ...s.kernelArgs,
      '---',
    ];
  }
  // casper fetches the ISO into RAM (url=); cloud-config-url=/dev/null keeps the live system's
  // cloud-init from downloading it a second time (Ubuntu server docs, netboot how-to).
  // `ds=nocloud-net;s=…` is one word: iPXE does not treat quotes specially, and cloud-init
  // matches " ds=nocloud-net;" literally, so quoting it (as GRUB needs) would break it here.
  // nocloud-net, not nocloud: `ds=nocloud;s=http…` needs cloud-init ≥ 23.2.
  return [
    'root=/dev/ram0',
    'ramdisk_size=1500000',
    'ip=dhcp',
    `url=${artifactsBase(s)}/artifacts/${artifactDir(inst)}/${inst.iso ?? ''}`,
    'autoinstall',
    `ds=nocloud-net;s=${seedUrl}`,
    'cloud-config-url=/dev/null',
    ...s.kernelArgs,
  ];
}

function localTemplatePlatform(q: BootQuery, machine: Machine): Platform {
  if (q.platform) return q.platform;
  return machine.firmware === 'efi' ? 'efi' : 'pcbios';
}

export function decideBootScript(f: BootFacts, s: BootSettings): BootDecision {
  const { query: q, machine } = f;
  const loader = f.loader ?? 'ipxe';
  const label = LABEL[loader];
  if (q.mac === null) {
    return {
      kind: 'chain',
      template: TEMPLATES[loader].chain,
      transition: null,
      summary: `${label}: chain`,
      context: { bootUrl: bootUrl(s), tries: s.chainTries, retrySeconds: s.retrySeconds },
    };
  }
  if (machine === null) return waitDecision(q.mac, q, s, 'unknown', 'waiting for a role', loader);
  if (machine.state === 'discovered') return waitDecision(q.mac, q, s, 'discovered', 'waiting for a role', loader);
  if (machine.state === 'failed') return waitDecision(q.mac, q, s, 'failed', `failed at ${sanitize(machine.failedStep ?? 'an unknown step')}, waiting for an operator`, loader);
  if (LOCAL_STATES.includes(machine.state)) {
    return {
      kind: 'local',
      template: TEMPLATES[loader].local,
      transition: null,
      summary: `${label}: boot from local disk (${machine.state})`,
      context: { mac: machine.mac, hostname: machine.hostname ?? machine.mac, state: machine.state, platform: localTemplatePlatform(q, machine) },
    };
  }
  if (INSTALL_STATES.includes(machine.state)) {
    const { cluster, installer, seedToken } = f;
    if (!cluster || !installer || !seedToken || !machine.role) {
      return waitDecision(q.mac, q, s, 'misconfigured', 'assigned but missing its cluster or seed token', loader);
    }
    const seedUrl = `${s.baseUrl}/seed/${seedToken}/`;
    const hex = macHexHyphen(machine.mac);
    // iPXE fetches over HTTP (with the MAC, for the machine's event log), through the artifacts
    // front when there is one; GRUB from the TFTP server it was loaded from, by path (TFTP tells
    // machines apart by address).
    const artifact = (file: string): string =>
      loader === 'grub' ? `/artifacts/${artifactDir(installer)}/${file}` : `${artifactsBase(s)}/artifacts/${artifactDir(installer)}/${file}?mac=${hex}`;
    return {
      kind: 'install',
      template: TEMPLATES[loader].install,
      transition: 'installer-served',
      summary: `${label}: install ${OS_NAMES[cluster.os]}${installer.arch && installer.arch !== 'amd64' ? ` ${installer.arch}` : ''} (${installer.kind})`,
      context: {
        mac: machine.mac,
        hostname: machine.hostname ?? machine.mac,
        role: machine.role,
        cluster: cluster.name,
        release: installer.release,
        osName: OS_NAMES[cluster.os],
        arch: installer.arch ?? 'amd64',
        installer: installer.kind,
        kernelUrl: artifact(installer.kernel),
        initrdUrl: artifact(installer.initrd),
        initrdName: installer.initrd,
        args: installerArgs(installer, machine, seedUrl, s),
        retrySeconds: s.retrySeconds,
      },
    };
  }
  return waitDecision(q.mac, q, s, 'misconfigured', `in state ${machine.state}`, loader);
}

/** Free text from the store shown on a console: only the characters the echo filter allows. */
function sanitize(text: string): string {
  return text.replace(/[^A-Za-z0-9 ._:/=+,@-]/g, ' ').slice(0, 60);
}
