import type { IncomingMessage } from 'node:http';
import { join } from 'node:path';
import express, { Router, type Request, type Response } from 'express';
import { AppError } from '../lib/errors.js';
import { macHexHyphen, parseMac, type Mac } from '../lib/mac.js';
import type { Cluster, Machine } from '../inventory/model.js';
import type { InstallerKey } from '../inventory/os.js';
import type { MachineEventType } from '../inventory/lifecycle.js';
import type { ClusterRepo, EventRepo, MachineRepo } from '../inventory/store.js';
import type { Renderer } from '../render/templates.js';
import { BootQueryError, grubConfigQuery, parseBootQuery, type BootQuery } from '../boot/query.js';
import type { BootScriptLoader, BootSettings } from '../boot/script.js';
import { clusterInstaller, installerArchOf, installerTables, type InstallerTables, type ReleaseInstaller } from '../boot/releases.js';
import { serveBootScript, type BootServeDeps } from '../boot/serve.js';
import type { ArtifactStore } from '../artifacts/store.js';
import { accelUri } from '../artifacts/accel.js';
import type { ClientResolver } from '../lib/neighbours.js';
import { clientView, peerAddress } from './client-address.js';
import type { LeanHandler, LeanReply, LeanRoutes } from './lean.js';
import type { ArtifactSender } from './artifact-sender.js';
import type { BootScriptRecorder } from './boot-scripts.js';
import type { ImageOverrides } from '../config/settings.js';
import { imageFor } from '../images/catalog.js';
import type { ImageStore, PreparedImage } from '../images/store.js';
import { errorMessage } from '../lib/errors.js';
import { checkSeedAccess, normalizeRemote, plausibleToken, type SeedUse } from '../seeds/access.js';
import { createDiscoveryGate, DISCOVERY_WINDOW_MS, type DiscoveryGate } from '../inventory/discovery.js';
import type { Logger } from '../lib/log.js';
import { newInstanceId, seedContext, type SeedSettings } from '../seeds/context.js';
import { CONTENT_TYPE, isSeedFile, renderSeedFile } from '../seeds/render.js';
import { otherInstance, parsePhoneHome, PhoneHomeError } from '../seeds/phone-home.js';
import { InstallerEventError, parseInstallerEvent } from '../seeds/installer-events.js';
import { decideRoleSetupReport, parseRoleSetupReport, RoleSetupReportError } from '../seeds/role-setup.js';

/**
 * What machines see over HTTP without an API token (INTERFACE.md): the iPXE boot scripts, the
 * installer artifacts, the seeds, and the installer's and cloud-init's reports. Handlers stay
 * thin: parse → pure decision (boot/, seeds/) → render → record. Every script, artifact and seed
 * file served is an event in the machine's log, and moves the step a tech sees on its tile.
 */
export interface MachineRouterDeps {
  readonly machines: Pick<MachineRepo, 'get' | 'byIp' | 'list' | 'recordSighting' | 'transition' | 'setLastStep' | 'seedTokenFor' | 'seedAddress' | 'findBySeedToken' | 'setInstanceId' | 'setHostKeys' | 'recordBootStep' | 'setInstalledDisk'>;
  readonly clusters: Pick<ClusterRepo, 'get'>;
  readonly events: Pick<EventRepo, 'append'>;
  /** Writes a boot script's step (sighting, transition, event, step) in the next group commit. */
  readonly recordBootScript: BootScriptRecorder;
  readonly bootTemplates: Renderer;
  readonly seedTemplates: Renderer;
  readonly artifacts: ArtifactStore;
  /** Sends an artifact's bytes when no front does (in process, or by file workers). */
  readonly sendArtifact: ArtifactSender;
  /** A machine by address when no machine has it as its `ip`: DHCP leases, then the neighbour table. */
  readonly resolveClient?: ClientResolver | undefined;
  /** Artifacts fronts (nginx): believed about the client of an artifact request, answered with X-Accel-Redirect. */
  readonly artifactsFronts?: readonly string[] | undefined;
  readonly installers: Readonly<Record<InstallerKey, ReleaseInstaller>>;
  /** Installers by architecture (default: `installers` for amd64 and the built-in arm64 table). */
  readonly installerTables?: InstallerTables;
  /** OS images for image deployment; without it, image clusters cannot install. */
  readonly images?: ImageStore | undefined;
  /** The `images` setting: per-OS images over the built-in ones. */
  readonly imageSettings?: ImageOverrides | undefined;
  /** Boot settings without the base URL, which depends on the address the request came in on. */
  readonly boot: Omit<BootSettings, 'baseUrl'>;
  readonly seed: Omit<SeedSettings, 'baseUrl' | 'sshPublicKey'>;
  readonly sshPublicKey: () => Promise<string>;
  /** The TFTP root: its iPXE binaries are also served at `/ipxe/<file>` for UEFI HTTP Boot clients. */
  readonly bootBinariesDir: string;
  /** `http://<advertise>:<port>`; null: use the local address of each request's connection. */
  readonly advertiseUrl: string | null;
  readonly now: () => Date;
  /** How many unknown MACs one client address may add (default: DEFAULT_DISCOVERY_PER_ADDRESS an hour). */
  readonly discovery?: DiscoveryGate | undefined;
  /** The address racksmith's own DHCP has bound to this MAC (authoritative mode), or null. */
  readonly leasedAddress?: ((mac: Mac) => Promise<string | null>) | undefined;
  readonly log?: Logger | undefined;
}

/** Unknown MACs one client address may add per DISCOVERY_WINDOW_MS unless the caller says. */
export const DEFAULT_DISCOVERY_PER_ADDRESS = 8;

type Source = string;

function sourceOf(req: IncomingMessage): Source {
  return `http ${peerAddress(req) ?? '?'}`;
}

/** The iPXE builds the DHCP service may name for HTTP Boot (Debian's ipxe package and arm64 builds). */
export const IPXE_BINARIES: readonly string[] = ['ipxe.efi', 'snponly.efi', 'undionly.kpxe', 'arm64-efi/snponly.efi', 'arm64-efi/ipxe.efi', 'ipxe-arm64.efi', 'snp-arm64.efi'];

/** The machine-facing routes: an Express router, and those of them also served before Express (lean.ts). */
export type MachineRouter = Router & { readonly lean: LeanRoutes };

export function machineRouter(d: MachineRouterDeps): MachineRouter {
  const r = Router();
  const discovery = d.discovery ?? createDiscoveryGate({ perWindow: DEFAULT_DISCOVERY_PER_ADDRESS, windowMs: DISCOVERY_WINDOW_MS });
  const form = express.urlencoded({ extended: false, limit: '64kb' });
  const json = express.json({ limit: '256kb', strict: true });
  // curtin's webhook and hand-made reports may omit or vary the content type: read any body as JSON.
  const anyJson = express.json({ limit: '256kb', strict: true, type: () => true });
  const fronts = new Set(d.artifactsFronts ?? []);

  function baseUrl(req: IncomingMessage): string {
    if (d.advertiseUrl) return d.advertiseUrl;
    // Never the Host header: it is the client's to choose, and it goes into scripts and seeds.
    const local = normalizeRemote(req.socket.localAddress) ?? '127.0.0.1';
    const host = local.includes(':') ? `[${local}]` : local;
    return `http://${host}:${req.socket.localPort ?? 80}`;
  }

  async function machineEvent(m: Pick<Machine, 'mac' | 'cluster'>, type: string, req: Request, message: string, data?: Record<string, unknown>): Promise<void> {
    await d.events.append({ mac: m.mac, cluster: m.cluster, type, source: sourceOf(req), message, data: data ?? null });
  }

  function sendText(res: Response, type: string, body: string): void {
    res.status(200).type(type).set('Cache-Control', 'no-store').send(body);
  }

  const bootServe: BootServeDeps = {
    machines: d.machines,
    clusters: d.clusters,
    events: d.events,
    templates: d.bootTemplates,
    installers: d.installerTables ?? installerTables(d.installers),
    boot: d.boot,
    // The image is made ready while the deploy agent boots: the first machine of a rack pays a
    // download or a conversion once, the others find it done.
    prepareImage: d.images ? (cluster) => void d.images?.prepare(imageFor(cluster, d.imageSettings)).catch(() => undefined) : undefined,
    now: d.now,
    discovery,
    leasedAddress: d.leasedAddress,
    recordBootScript: d.recordBootScript,
    log: d.log,
  };

  function bootQuery(raw: Record<string, unknown>): BootQuery {
    try {
      return parseBootQuery(raw);
    } catch (err) {
      if (err instanceof BootQueryError) throw new AppError('invalid', err.code, err.message, err.field);
      throw err;
    }
  }

  async function bootScript(req: IncomingMessage, query: BootQuery, loader: BootScriptLoader): Promise<LeanReply> {
    const served = await serveBootScript(bootServe, { query, loader, baseUrl: baseUrl(req), source: sourceOf(req), remote: peerAddress(req) });
    return { type: 'text/plain; charset=utf-8', body: served.body };
  }

  async function sendBootScript(req: Request, res: Response, query: BootQuery, loader: BootScriptLoader): Promise<void> {
    const reply = await bootScript(req, query, loader);
    sendText(res, reply.type, reply.body);
  }

  // ── iPXE ────────────────────────────────────────────────────────────────────
  // A waiting rack polls it every few seconds per machine: served before Express too (lean.ts).
  const bootIpxe: LeanHandler = (req, query) => bootScript(req, bootQuery(query), 'ipxe');
  r.get('/boot.ipxe', async (req, res) => {
    const reply = await bootIpxe(req, req.query as Record<string, string | string[] | undefined>);
    sendText(res, reply.type, reply.body);
  });

  // ── GRUB (the signed chain) over HTTP, for a GRUB that has an HTTP client ───
  // The same names GRUB asks for over TFTP (server/boot/tftp-files.ts): grub/grub.cfg, then
  // grub/grub.cfg-01-<mac>?arch=…&platform=…&lockdown=…
  r.get('/grub/grub.cfg', async (req, res) => {
    await sendBootScript(req, res, bootQuery({}), 'grub');
  });
  r.get(/^\/grub\/(grub\.cfg-01-[0-9A-Fa-f-]+)$/, async (req, res) => {
    const name = String((req.params as Record<string, string>)[0] ?? '');
    const raw = grubConfigQuery(`grub/${name}`);
    if (!raw) throw new AppError('not-found', 'ERR_UNKNOWN_GRUB_CONFIG', `no GRUB config "${name.slice(0, 60)}"`);
    await sendBootScript(req, res, bootQuery({ ...(req.query as Record<string, unknown>), mac: raw['mac'] }), 'grub');
  });

  /**
   * The machine at a client's address, by keyed lookups only: the machine whose `ip` it is, else
   * the MAC a DHCP lease or the neighbour table has for it (proxy mode: the site's DHCP server
   * gave the address, racksmith never stored it).
   */
  async function machineAt(remote: string | null): Promise<Machine | null> {
    if (!remote) return null;
    const byIp = await d.machines.byIp(remote);
    if (byIp) return byIp;
    const mac = d.resolveClient ? await d.resolveClient(remote) : null;
    return mac ? d.machines.get(mac) : null;
  }

  // ── iPXE binaries over HTTP (UEFI HTTP Boot) ────────────────────────────────
  // The DHCP service hands UEFI HTTP Boot clients (vendor class HTTPClient, UEFI 2.5 §24.7) a URI
  // under /ipxe/. Only the iPXE builds it can name are served — the allow-list is the jail — and
  // they may be Debian's links into /boot (/usr/lib/ipxe/ipxe.efi → /boot/ipxe.efi).
  r.get(/^\/ipxe\/(.+)$/, async (req, res, next) => {
    const name = String((req.params as Record<string, string>)[0] ?? '');
    if (!IPXE_BINARIES.includes(name)) throw new AppError('not-found', 'ERR_UNKNOWN_BOOTFILE', `no iPXE binary "${name.slice(0, 60)}" (served: ${IPXE_BINARIES.join(', ')})`);
    const m = await machineAt(peerAddress(req));
    if (m) {
      await Promise.all([machineEvent(m, 'http.bootfile', req, `iPXE binary ${name} over HTTP (UEFI HTTP Boot)`, { file: name }), d.machines.setLastStep(m.mac, 'http-boot')]);
      await d.machines.recordBootStep(m.mac, { kind: 'bootfile', file: name });
    }
    res.sendFile(join(d.bootBinariesDir, name), { acceptRanges: true, lastModified: true, cacheControl: false, dotfiles: 'deny' }, (err) => {
      if (err && !res.headersSent) next((err as NodeJS.ErrnoException).code === 'ENOENT' ? new AppError('not-found', 'ERR_UNKNOWN_BOOTFILE', `${name} is not installed in the TFTP root`) : err);
    });
  });

  // ── installer artifacts ─────────────────────────────────────────────────────
  async function artifactMachine(req: Request, remote: string | null): Promise<Machine | null> {
    const given = typeof req.query['mac'] === 'string' ? parseMac(req.query['mac']) : null;
    if (given) return d.machines.get(given);
    return machineAt(remote);
  }

  r.get(['/artifacts/:release/:file', '/artifacts/:release/:arch/:file'], async (req, res, next) => {
    const arch = req.params['arch'];
    const art = await d.artifacts.resolve(String(req.params['release']), String(req.params['file']), arch === undefined ? undefined : String(arch));
    // Through an artifacts front, the machine is the one the front names.
    const client = clientView(req, fronts);
    const m = await artifactMachine(req, client.address);
    if (m) {
      const range = req.get('range');
      const where = art.arch ? `${art.release}/${art.arch}` : art.release;
      const message = `artifact ${where}/${art.file} (${art.source}${range ? `, ${range.slice(0, 40)}` : ''})`;
      const data = { release: art.release, ...(art.arch ? { arch: art.arch } : {}), file: art.file, size: art.size, source: art.source };
      const installing = ['assigned', 'provisioning', 'reimaging'].includes(m.state);
      await Promise.all([d.events.append({ mac: m.mac, cluster: m.cluster, type: 'http.artifact', source: `http ${client.address ?? '?'}`, message, data }), installing ? d.machines.setLastStep(m.mac, 'installer') : null]);
    }
    const accel = client.accel ? accelUri(art) : null;
    if (accel) {
      // The front sends the bytes, with its own Range, HEAD and Last-Modified handling.
      res.status(200).set({ 'X-Accel-Redirect': accel, 'Cache-Control': 'public, max-age=3600', 'Content-Type': 'application/octet-stream' }).end();
      return;
    }
    d.sendArtifact(req, res, art, next);
  });

  // ── seeds ───────────────────────────────────────────────────────────────────
  async function seedMachine(req: Request, use: SeedUse): Promise<{ machine: Machine; token: string }> {
    const token = String(req.params['token']);
    const machine = plausibleToken(token) ? await d.machines.findBySeedToken(token) : null;
    const boundTo = machine ? await d.machines.seedAddress(machine.mac) : null;
    const access = checkSeedAccess(machine, peerAddress(req), use, boundTo);
    if (!access.ok) {
      if (access.status === 403 && access.machine) {
        const owners = [boundTo, access.machine.ip].filter((a) => a !== null).join(' or ') || 'none yet';
        await machineEvent(access.machine, 'http.seed.refused', req, `seed token used from ${peerAddress(req) ?? '?'}, not from the machine's address (${owners})`, { use, remote: peerAddress(req), boundTo, ip: access.machine.ip });
      }
      throw new AppError(access.status === 403 ? 'forbidden' : 'not-found', access.code, access.message);
    }
    return { machine: access.machine, token };
  }

  /** Applies lifecycle events in order, skipping those that would not move the machine. */
  async function advance(m: Machine, events: readonly MachineEventType[], req: Request, message: string): Promise<Machine> {
    let cur = m;
    for (const e of events) {
      cur = await d.machines.transition(cur.mac, e, { source: sourceOf(req), message });
    }
    return cur;
  }

  /** The image a machine is to write, ready; a machine whose image cannot be made ready fails with the reason. */
  async function machineImage(machine: Machine, cluster: Cluster, req: Request): Promise<PreparedImage> {
    if (!d.images) throw new AppError('unavailable', 'ERR_NO_IMAGES', 'this racksmith serves no images for image deployment');
    const spec = imageFor(cluster, d.imageSettings);
    try {
      return await d.images.prepare(spec);
    } catch (err) {
      const reason = `image ${spec.source}: ${errorMessage(err)}`.slice(0, 300);
      if (machine.state !== 'failed') await d.machines.transition(machine.mac, 'fail', { source: sourceOf(req), step: 'image', reason });
      throw err instanceof AppError ? err : new AppError('unavailable', 'ERR_IMAGE', reason);
    }
  }

  r.get('/seed/:token/:file', async (req, res) => {
    const file = String(req.params['file']);
    const { machine, token } = await seedMachine(req, 'read');
    if (!isSeedFile(file)) throw new AppError('not-found', 'ERR_UNKNOWN_SEED_FILE', `no seed file "${file.slice(0, 40)}"`);
    const cluster = machine.cluster ? await d.clusters.get(machine.cluster) : null;
    if (!cluster || !machine.role) throw new AppError('conflict', 'ERR_NOT_ASSIGNED', 'this machine has no role or cluster');
    const installer = clusterInstaller(cluster, bootServe.installers, installerArchOf(machine.arch));
    if (!installer) throw new AppError('conflict', 'ERR_NO_INSTALLER', `no installer of ${cluster.os} by ${cluster.installMethod} for a ${machine.arch ?? 'amd64'} machine`);
    let instanceId = machine.instanceId;
    if (!instanceId) {
      instanceId = newInstanceId(machine, d.now());
      await d.machines.setInstanceId(machine.mac, instanceId);
    }
    const members = await d.machines.list({ cluster: cluster.name });
    const ctx = seedContext({ machine, cluster, members, installer, token, instanceId }, { ...d.seed, baseUrl: baseUrl(req), sshPublicKey: await d.sshPublicKey() });
    if (file === 'deploy.env' && installer.kind === 'deploy-agent') {
      const image = await machineImage(machine, cluster, req);
      ctx['image'] = { url: `${baseUrl(req)}/artifacts/images/${image.file}?mac=${macHexHyphen(machine.mac)}`, sha256: image.sha256, format: image.format, rawSize: image.rawSize };
    }
    const body = renderSeedFile(d.seedTemplates, file, installer.kind, ctx);
    if (body === null) throw new AppError('not-found', 'ERR_UNKNOWN_SEED_FILE', `no ${file} for ${cluster.os} by ${cluster.installMethod} (${installer.kind})`);
    // Asked together: a store that groups its commits (PostgreSQL) writes both in one.
    await Promise.all([machineEvent(machine, 'http.seed', req, `seed ${file} served`, { file }), d.machines.setLastStep(machine.mac, 'installer')]);
    sendText(res, CONTENT_TYPE[file], body);
  });

  r.post('/seed/:token/installed', form, async (req, res) => {
    const { machine } = await seedMachine(req, 'report');
    let m = machine;
    if (m.state === 'assigned' || m.state === 'reimaging') m = await advance(m, ['installer-served'], req, 'installer reported in without racksmith serving it');
    if (m.state === 'provisioning') m = await advance(m, ['installed'], req, 'the installer reports the OS is on disk');
    else if (m.state !== 'installed') throw new AppError('conflict', 'ERR_TRANSITION', `a machine in state "${m.state}" cannot report an install`, 'state');
    await d.machines.setLastStep(m.mac, 'installed');
    res.json({ mac: m.mac, state: m.state });
  });

  r.post('/seed/:token/events', anyJson, async (req, res) => {
    const { machine } = await seedMachine(req, 'report');
    let ev;
    try {
      ev = parseInstallerEvent(req.body);
    } catch (err) {
      if (err instanceof InstallerEventError) throw new AppError('invalid', err.code, err.message, err.field);
      throw err;
    }
    await machineEvent(machine, 'installer.event', req, `${ev.eventType} ${ev.name}${ev.result ? ` ${ev.result}` : ''}${ev.description ? `: ${ev.description}` : ''}`.slice(0, 300), {
      eventType: ev.eventType,
      name: ev.name,
      result: ev.result,
      origin: ev.origin,
      ...(ev.disk ? { disk: ev.disk } : {}),
      ...(ev.inventory ? { inventory: ev.inventory } : {}),
    });
    if (ev.disk && !ev.failed) await d.machines.setInstalledDisk(machine.mac, ev.disk);
    let m = machine;
    if (ev.failed && m.state !== 'failed') {
      m = await d.machines.transition(m.mac, 'fail', { source: sourceOf(req), step: 'installer', reason: `${ev.name || 'install'}: ${ev.description || 'failed'}`.slice(0, 300) });
    } else if (m.state !== 'failed') {
      await d.machines.setLastStep(m.mac, 'installer');
    }
    res.json({ mac: m.mac, state: m.state });
  });

  r.post('/seed/:token/phone-home', form, json, async (req, res) => {
    const { machine } = await seedMachine(req, 'report');
    let ph;
    try {
      ph = parsePhoneHome(req.body ?? {});
    } catch (err) {
      if (err instanceof PhoneHomeError) throw new AppError('invalid', err.code, err.message, err.field);
      throw err;
    }
    let m = machine;
    if (m.state === 'failed') {
      // A failed role setup reported first: the phone-home that follows it must not make the machine ready.
      await d.machines.setHostKeys(m.mac, ph.hostKeys);
      await machineEvent(m, 'phone-home', req, `phoned home${ph.hostname ? ` as ${ph.hostname}` : ''}, but stays failed at ${m.failedStep ?? '?'}: ${m.failedReason ?? 'no reason given'}`, {
        hostname: ph.hostname,
        fqdn: ph.fqdn,
        instanceId: ph.instanceId,
        keyTypes: ph.hostKeys.map((k) => k.type),
        failed: true,
      });
      res.json({ mac: m.mac, state: m.state });
      return;
    }
    if (m.state === 'assigned' || m.state === 'reimaging') m = await advance(m, ['installer-served'], req, 'phoned home without racksmith serving the installer');
    if (m.state === 'provisioning') m = await advance(m, ['installed'], req, 'phoned home before the installer reported: the OS is on disk');
    if (m.state !== 'installed') throw new AppError('conflict', 'ERR_TRANSITION', `a machine in state "${m.state}" cannot phone home`, 'state');
    await d.machines.setHostKeys(m.mac, ph.hostKeys);
    const cluster = m.cluster ? await d.clusters.get(m.cluster) : null;
    const other = otherInstance(cluster ? (clusterInstaller(cluster, bootServe.installers, installerArchOf(m.arch))?.kind ?? null) : null, ph.instanceId, m.instanceId);
    await machineEvent(m, 'phone-home', req, `phoned home${ph.hostname ? ` as ${ph.hostname}` : ''}: ${ph.hostKeys.length} host key(s) pinned${other ? ` (instance ${ph.instanceId} is not the current install's ${m.instanceId ?? '?'})` : ''}`, {
      hostname: ph.hostname,
      fqdn: ph.fqdn,
      instanceId: ph.instanceId,
      keyTypes: ph.hostKeys.map((k) => k.type),
    });
    m = await advance(m, ['phoned-home'], req, 'phoned home: role config ran, host keys pinned');
    await d.machines.setLastStep(m.mac, 'ready');
    res.json({ mac: m.mac, state: m.state });
  });

  // The role setup's outcome, posted by its script just before the phone-home (roles/cloud-config.yaml.njk).
  r.post('/seed/:token/role-setup', form, json, async (req, res) => {
    const { machine } = await seedMachine(req, 'report');
    let report;
    try {
      report = parseRoleSetupReport(req.body ?? {});
    } catch (err) {
      if (err instanceof RoleSetupReportError) throw new AppError('invalid', err.code, err.message, err.field);
      throw err;
    }
    const decision = decideRoleSetupReport(machine, report);
    let m = machine;
    for (const e of decision.events) {
      m = await d.machines.transition(m.mac, e, e === 'fail' && decision.failure ? { source: sourceOf(req), step: decision.failure.step, reason: decision.failure.reason } : { source: sourceOf(req), message: 'the role setup reported: the OS is on disk' });
    }
    await machineEvent(m, 'role-setup', req, decision.message, { status: report.status, command: report.command, log: report.log });
    if (m.state !== 'failed') await d.machines.setLastStep(m.mac, 'role-setup');
    res.json({ mac: m.mac, state: m.state });
  });

  return Object.assign(r, { lean: new Map([['/boot.ipxe', bootIpxe]]) as LeanRoutes });
}
