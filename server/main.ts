/**
 * The composition root: config → data directory lock → secrets key → inventory → services.
 * The only module that wires concrete implementations together. Services start in order and stop
 * in reverse; the first fatal error stops the rest cleanly.
 */
import { mkdirSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { serveRefusal } from './config/serve.js';
import type { Config } from './config/settings.js';
import { createDhcpService } from './dhcp/server.js';
import { createApp } from './http/app.js';
import { consoleRouter } from './http/console.js';
import { createEventStream } from './http/event-stream.js';
import { metricsRouter } from './http/metrics.js';
import { createHttpService } from './http/service.js';
import { leanFront } from './http/lean.js';
import { powerRoutes } from './http/api/power.js';
import { orchestrationRoutes } from './http/api/orchestration-routes.js';
import { instanceName, openStore } from './inventory/open.js';
import type { Store } from './inventory/store.js';
import { collectDiscoveryMetrics, collectInventoryMetrics } from './inventory/metrics.js';
import { createDiscoveryGate, DISCOVERY_WINDOW_MS } from './inventory/discovery.js';
import { acquireInstanceLock, type InstanceLock } from './lib/instance-lock.js';
import type { Logger } from './lib/log.js';
import type { Mac } from './lib/mac.js';
import { collectServiceHealth } from './lib/metric-catalogue.js';
import { createMetrics, type MetricsRegistry } from './lib/metrics.js';
import type { Service, ServiceHealth } from './lib/service.js';
import { instanceId } from './lib/instance-id.js';
import { ensureSshIdentity } from './lib/ssh-identity.js';
import { routeDrivers } from './power/drivers.js';
import { createIpmiDriver } from './power/ipmi.js';
import { createRedfishDriver } from './power/redfish/driver.js';
import { parseRackList } from './power/sol/policy.js';
import { createSolService } from './power/sol/service.js';
import { consoleRoutes } from './http/api/serial-console.js';
import { meteredDriver } from './power/metered.js';
import { createBmcGate } from './power/scheduler.js';
import { createPowerService } from './power/service.js';
import { createOrchestrator } from './orchestrator/service.js';
import { orchestratorSettings } from './orchestrator/settings.js';
import { createSshShell } from './orchestrator/ssh.js';
import { VERSION } from './lib/version.js';
import { AUTOINSTALL_DIR, BOOT_TEMPLATES_DIR } from './lib/paths.js';
import { createRenderer } from './render/templates.js';
import { machineRouter } from './http/machine-router.js';
import { createArtifactStore } from './artifacts/store.js';
import { formatReport } from './clusters/preflight.js';
import { createClusterChecks } from './clusters/checks.js';
import { preflightSettings } from './clusters/settings.js';
import { createPowerOnGate } from './clusters/power-on.js';
import { clusterChecksRoutes } from './http/api/cluster-checks-routes.js';
import { installerTables, resolveInstallers } from './boot/releases.js';
import { AGENT_INITRD, AGENT_KERNEL, ensureAgent } from './agent/build.js';
import { createImageStore, type ImageStore } from './images/store.js';
import { imageFor } from './images/catalog.js';
import { createDeadlineService } from './seeds/deadline.js';
import { createArpResolver, firstResolver } from './lib/neighbours.js';
import { createTftpService, tftpFiles } from './tftp/index.js';
import { findSignedChains } from './boot/loaders.js';
import { fetchSignedDebs, signedBootDirs } from './boot/signed-debs.js';
import { bootFiles } from './boot/tftp-files.js';
import { layeredSource } from './lib/files.js';
import { vipChecker } from './clusters/load-balancers.js';
import { vipSources } from './clusters/vip-sources.js';
import { inProcessSender, workerSender } from './http/artifact-sender.js';
import { createFileWorkers } from './artifacts/file-workers.js';
import { createNginxFront } from './artifacts/nginx-front.js';
import { createEventRetentionService } from './inventory/retention.js';
import { bootScriptRecorder } from './http/boot-scripts.js';
import { readAdminKeys } from './seeds/admin-keys.js';
import { waitAtMost } from './lib/sleep.js';

/** How long stopping waits for one service (the HTTP service's own drain is 10 s). */
const SERVICE_STOP_MS = 12_000;

export interface Runtime {
  readonly config: Config;
  readonly inventory: Store;
  readonly services: readonly Service[];
  readonly metrics: MetricsRegistry;
  /** Stops every service in reverse order and closes the store; safe to call twice. */
  stop(reason: string): Promise<void>;
  /** Settles with the exit code once the runtime has stopped (0 clean, 1 after a fatal error). */
  readonly done: Promise<number>;
}

/** Opens the store (and its key) the way `serve` does, for CLI commands. */
export function openInventory(config: Config): Promise<Store> {
  return openStore(config);
}

/** Where a person reaches the console: the HTTP address unless it is a wildcard, else the advertised one. */
export function consoleHost(config: Pick<Config, 'httpAddress' | 'advertiseAddress'>): string {
  const wildcard = config.httpAddress === '0.0.0.0' || config.httpAddress === '::' || config.httpAddress === '';
  const host = wildcard ? (config.advertiseAddress ?? '127.0.0.1') : config.httpAddress;
  return host.includes(':') ? `[${host}]` : host;
}

export async function startRacksmith(config: Config, log: Logger): Promise<Runtime> {
  const refusal = serveRefusal(config);
  if (refusal) throw refusal;
  // Read and checked before anything starts: a bad key is a refusal to start, not a locked-out node.
  const adminSshKeys = config.adminSshKeysFile ? readAdminKeys(config.adminSshKeysFile) : [];
  mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
  const lock: InstanceLock = acquireInstanceLock(config.dataDir);
  let inventory: Store | undefined;
  let identity: Awaited<ReturnType<typeof ensureSshIdentity>>;
  try {
    // The server checkpoints SQLite's WAL from a worker thread, never in a request's commit.
    inventory = await openStore(config, {
      onCheckpointFailure: (message) => log.warn({ err: message }, 'SQLite checkpoint failed; retried at the next pass'),
      onDatabaseLost: (reason) => log.warn({ reason }, 'the database does not answer: DHCP answers known machines from memory but commits no lease; the API and boot scripts answer 503 until it is back'),
      onDatabaseBack: () => log.info('the database answers again'),
    });
    identity = await ensureSshIdentity(inventory.secrets);
    if (identity.replaced) log.warn('the stored SSH key pair could not be loaded (a malformed ed25519 key); a new one replaces it, and seeds carry its public key from now on');
  } catch (err) {
    await inventory?.close();
    lock.release();
    throw err;
  }

  const services: Service[] = [];
  // Until every service has started, /healthz says "starting" (503): HTTP starts before DHCP and TFTP.
  let starting = true;
  const health = (): Record<string, ServiceHealth> => Object.fromEntries(services.map((s) => [s.name, s.health()]));

  const installers = resolveInstallers(config.installers ?? {}, { debianMirror: config.debianMirror });
  // The deploy agent: built once per set of inputs (a minute the first time), on the first
  // machine's request unless `racksmith agent build` made it before.
  let agentBuild: Promise<Record<string, string>> | null = null;
  const agentLog = log.child({ svc: 'agent' });
  const agentFiles = (): Promise<Record<string, string>> => {
    agentBuild ??= ensureAgent({ dir: join(config.dataDir, 'agent'), kernelPackage: config.agentKernelPackage, log: (line) => agentLog.info(line) }).then(
      (b) => {
        if (b.built) void inventory.events.append({ type: 'agent.built', source: 'agent', message: `deploy agent ${b.key} built (kernel ${b.kernelVersion}) in ${b.seconds.toFixed(0)} s`, data: { key: b.key, kernel: b.kernelPackage } });
        return { [AGENT_KERNEL]: b.kernel, [AGENT_INITRD]: b.initrd };
      },
      (err: unknown) => {
        agentBuild = null;
        throw err;
      },
    );
    return agentBuild;
  };
  let images: ImageStore | null = null;
  const artifacts = createArtifactStore({
    artifactsDir: config.artifactsDir ?? join(config.dataDir, 'artifacts'),
    cacheDir: config.artifactsCacheDir ?? join(config.dataDir, 'artifacts'),
    installers,
    agent: agentFiles,
    imageUpstream: (file) => images?.upstreamOf(file) ?? null,
    fetchIdleTimeoutMs: config.artifactsFetchTimeoutSeconds * 1000,
    log: log.child({ svc: 'artifacts' }),
    onFetched: (f) => {
      void inventory.events.append({ type: 'artifact.cached', source: 'artifacts', message: `cached ${f.release}/${f.file} (${f.size} bytes, sha256 ${f.sha256})`, data: { ...f } });
    },
  });
  const fileWorkers = createFileWorkers(config.artifactWorkers, log.child({ svc: 'artifact-workers' }));
  // racksmith's own nginx front (artifacts-nginx-port): the bytes by sendfile, the decisions here.
  const nginxFront =
    config.artifactsNginxPort === undefined
      ? null
      : createNginxFront({
          binary: config.nginxBinary,
          httpAddress: config.httpAddress,
          httpPort: config.httpPort,
          port: config.artifactsNginxPort,
          artifactsDir: config.artifactsDir ?? join(config.dataDir, 'artifacts'),
          cacheDir: config.artifactsCacheDir ?? join(config.dataDir, 'artifacts'),
          dir: join(config.dataDir, 'artifacts-nginx'),
          log: log.child({ svc: 'artifacts-nginx' }),
        });
  images = createImageStore({
    artifactsDir: config.artifactsDir ?? join(config.dataDir, 'artifacts'),
    cacheDir: config.artifactsCacheDir ?? join(config.dataDir, 'artifacts'),
    artifacts,
    log: log.child({ svc: 'images' }),
    onConverted: (f) => {
      void inventory.events.append({ type: 'image.converted', source: 'images', message: `converted ${f.source} to ${f.file} (${f.rawSize} bytes raw, ${f.size} compressed, sha256 ${f.sha256}) in ${f.seconds.toFixed(0)} s`, data: { ...f } });
    },
  });
  const metrics = createMetrics();
  collectServiceHealth(metrics, health);
  const stopInventoryMetrics = collectInventoryMetrics(metrics, inventory, VERSION);
  const discovery = {
    http: createDiscoveryGate({ perWindow: config.discoveryPerAddress, windowMs: DISCOVERY_WINDOW_MS }),
    dhcp: createDiscoveryGate({ perWindow: config.discoveryPerSegment, windowMs: DISCOVERY_WINDOW_MS }),
  };
  collectDiscoveryMetrics(metrics, discovery);
  const eventStream = createEventStream({ events: inventory.events, machines: inventory.machines, metrics });
  const bmcGate = createBmcGate(config.powerMaxInFlight);
  const ipmi = createIpmiDriver({
    ipmitool: config.ipmitool,
    deadlineMs: config.powerTimeoutSeconds * 1000,
    retry: { maxAttempts: config.powerRetries + 1, baseDelayMs: 500, maxDelayMs: 4000 },
    gate: bmcGate,
    log: log.child({ svc: 'power' }),
  });
  // Same gate: one command per BMC and one global limit, whichever protocol speaks to it.
  const redfish = createRedfishDriver({
    deadlineMs: config.powerTimeoutSeconds * 1000,
    retry: { maxAttempts: config.powerRetries + 1, baseDelayMs: 500, maxDelayMs: 4000 },
    gate: bmcGate,
    log: log.child({ svc: 'power', driver: 'redfish' }),
    sessionIdleMs: config.redfishSessionIdleSeconds * 1000,
  });
  const clusterChecks = createClusterChecks({
    clusters: inventory.clusters,
    events: inventory.events,
    installers,
    artifacts,
    settings: preflightSettings(config),
    timeoutMs: config.preflightTimeoutSeconds * 1000,
    log: log.child({ svc: 'preflight' }),
  });
  const power = createPowerService({
    powerOnGate: createPowerOnGate(clusterChecks),
    inventory,
    driver: routeDrivers({ ipmi: meteredDriver(ipmi, metrics), redfish: meteredDriver(redfish, metrics) }),
    settings: {
      rackConcurrency: config.rackPowerConcurrency,
      rackDelaySeconds: config.rackPowerDelaySeconds,
      removalTimeoutMs: config.reimageRemovalTimeoutSeconds * 1000,
      removalPollMs: 2000,
    },
    onStopped: async () => {
      ipmi.close();
      await redfish.close();
    },
    // etcd's own member list and health before a control node is reimaged (the orchestrator, made below).
    liveQuorum: (m) => orchestrator.liveQuorum(m),
  });
  // Power starts before HTTP (the API calls into it) and stops after it.
  services.push(power);
  const sol = createSolService({
    inventory,
    settings: { ipmitool: config.ipmitool, racks: parseRackList(config.solCaptureRacks), retryMs: config.solRetrySeconds * 1000 },
  });
  services.push(sol);
  const orchestrator = createOrchestrator({
    inventory,
    orchestration: inventory.orchestration,
    shell: createSshShell(),
    privateKey: async () => identity.privateKey,
    settings: orchestratorSettings(config),
    owner: instanceId(config.dataDir),
    holder: `${instanceName(config)} (${hostname()} pid ${process.pid})`,
    metrics,
    // A rolling upgrade reimages its nodes through the power service.
    reimage: (mac, opts) => power.reimage(mac, opts),
    // The upgrade's package preflight: the cluster preflight (`POST /clusters/{name}/preflight`)
    // is handed in here once it exists; until then only the skew rules are checked.
    // The upgrade's preflight: every upstream the target version's seeds will use, its packages pinned.
    checkPackages: async (cluster, version) => {
      const report = await clusterChecks.preflight(cluster.name, { kubernetesVersion: version });
      return { ok: report.ok, lines: formatReport(report).trimEnd().split('\n') };
    },
  });

  // Only racksmith's own leases say where a MAC is; in proxy mode the site's DHCP knows.
  const leasedAddress =
    config.dhcpMode === 'authoritative'
      ? async (mac: Mac): Promise<string | null> => {
          const lease = await inventory.leases.byMac(mac);
          return lease?.state === 'bound' && Date.parse(lease.expiresAt) > inventory.now().getTime() ? lease.ip : null;
        }
      : undefined;
  // Boot scripts answered in one turn of the event loop are recorded in one commit (HTTP and TFTP alike).
  const bootScripts = bootScriptRecorder(inventory.machines);
  const machineRoutes = machineRouter({
    machines: inventory.machines,
    clusters: inventory.clusters,
    events: inventory.events,
    recordBootScript: bootScripts,
    bootTemplates: createRenderer(BOOT_TEMPLATES_DIR),
    seedTemplates: createRenderer(AUTOINSTALL_DIR),
    artifacts,
    sendArtifact: config.artifactWorkers > 0 ? workerSender(fileWorkers, inProcessSender()) : inProcessSender(),
    // The same resolver as TFTP's (below), for an artifact request without a MAC in its URL.
    resolveClient: (ip: string) => resolveClient(ip),
    artifactsFronts: [...(config.artifactsFronts ?? []), ...(nginxFront ? [nginxFront.trustedAddress] : [])],
    installers,
    images,
    imageSettings: config.images,
    boot: {
      waitSeconds: config.bootWaitSeconds,
      waitAttempts: config.bootWaitAttempts,
      chainTries: 5,
      retrySeconds: 5,
      kernelArgs: config.installerKernelArgs.split(/\s+/).filter(Boolean),
      artifactsBaseUrl: config.artifactsUrl,
      artifactsPort: config.artifactsNginxPort,
      nameservers: config.dhcpMode === 'authoritative' ? config.dhcpDns : undefined,
    },
    seed: {
      sshUser: config.sshUser,
      adminSshKeys,
      ubuntuMirror: config.ubuntuMirror,
      debianMirror: config.debianMirror,
      aptProxy: config.aptProxy ?? null,
      installDiskMinGb: config.installDiskMinGb,
      kubernetesRepo: config.kubernetesRepo,
      kubernetesLegacyRepo: config.kubernetesLegacyRepo,
      kubernetesLegacyGpgUrl: config.kubernetesLegacyGpgUrl,
      dockerRepo: config.dockerRepo,
      dockerGpgUrl: config.dockerGpgUrl,
    },
    sshPublicKey: async () => identity.publicKey,
    bootBinariesDir: config.tftpRoot,
    advertiseUrl: config.advertiseAddress ? `http://${config.advertiseAddress}:${config.httpPort}` : null,
    now: () => inventory.now(),
    discovery: discovery.http,
    leasedAddress,
    log: log.child({ svc: 'http' }),
  });
  const app = createApp({
    log,
    version: VERSION,
    health,
    database: () => (inventory as Store).database(),
    starting: () => starting,
    inventory,
    revision: inventory.revision,
    adminToken: config.adminToken,
    sshPublicKey: async () => identity.publicKey,
    machineRouter: machineRoutes,
    eventStream,
    metrics,
    rootRouters: [metricsRouter(metrics, config.metricsToken), consoleRouter()],
    clusterDetail: orchestrator,
    checkVip: vipChecker(vipSources(inventory, config)),
    removeFromCluster: (m, opts) => orchestrator.removeFromCluster(m, opts),
    extraRoutes: [...powerRoutes(power), ...consoleRoutes(sol), ...orchestrationRoutes(orchestrator, inventory.clusters), ...clusterChecksRoutes(clusterChecks, inventory.clusters)],
  });
  // Before HTTP, so it stops after it: the server waits for the workers' connections, cut at its grace.
  services.push(fileWorkers);
  // The boot script a waiting rack polls is answered before Express (http/lean.ts).
  services.push(createHttpService(config, leanFront(machineRoutes.lean, app, { log, metrics }), undefined, () => fileWorkers.abort()));
  // After HTTP, so it stops first: nginx's downloads in flight get their grace while racksmith still answers.
  if (nginxFront) services.push(nginxFront);
  // The signed chain's packages, when the site names them, are fetched before DHCP decides which
  // architectures have a signed chain (a cached one needs no network).
  const artifactsCacheDir = config.artifactsCacheDir ?? join(config.dataDir, 'artifacts');
  await fetchSignedDebs({ debs: config.signedBootDebs ?? [], store: artifacts, cacheDir: artifactsCacheDir, log: log.child({ svc: 'artifacts' }) });
  const signedDirs = signedBootDirs(config.signedBootDir, artifactsCacheDir);
  services.push(createDhcpService(config, { inventory, directory: inventory.machineFeed(), metrics, discovery: discovery.dhcp, signedBootDirs: signedDirs }));
  // TFTP tells machines apart by IP only: our own bound leases name the MAC first (exact, and they
  // outlive an ARP entry), then the kernel's neighbour table (proxy mode, static addresses).
  const leaseResolver = async (ip: string): Promise<Mac | null> => {
    const lease = await inventory.leases.byIp(ip);
    return lease?.state === 'bound' ? lease.mac : null;
  };
  const resolveClient = firstResolver([leaseResolver, createArpResolver()]);
  // The signed shim → GRUB chain's files (signed binaries, GRUB configs, installer artifacts) in
  // front of the TFTP root; GRUB configs go through the same code as /boot.ipxe.
  const signedBoot = bootFiles({
    serve: {
      machines: inventory.machines,
      clusters: inventory.clusters,
      events: inventory.events,
      templates: createRenderer(BOOT_TEMPLATES_DIR),
      installers: installerTables(installers),
      boot: { waitSeconds: config.bootWaitSeconds, waitAttempts: config.bootWaitAttempts, chainTries: 5, retrySeconds: 5, kernelArgs: config.installerKernelArgs.split(/\s+/).filter(Boolean), artifactsBaseUrl: config.artifactsUrl, artifactsPort: config.artifactsNginxPort, nameservers: config.dhcpMode === 'authoritative' ? config.dhcpDns : undefined },
      now: () => inventory.now(),
      discovery: discovery.http,
      leasedAddress,
      recordBootScript: bootScripts,
      log: log.child({ svc: 'tftp' }),
      prepareImage: (cluster) => void images?.prepare(imageFor(cluster, config.images)).catch(() => undefined),
    },
    artifacts,
    chains: findSignedChains(signedDirs),
    baseUrl: `http://${config.advertiseAddress ?? '127.0.0.1'}:${config.httpPort}`,
  });
  const tftpSource = layeredSource([signedBoot, tftpFiles(config).source]);
  services.push(createTftpService(config, { files: tftpSource, root: config.tftpRoot, resolveClient, inventory }));
  services.push(createEventRetentionService({ events: inventory.events, now: () => inventory.now(), eventDays: config.eventRetentionDays, bootDays: config.bootEventRetentionDays, log: log.child({ svc: 'event-retention' }) }));
  services.push(createDeadlineService({ machines: inventory.machines, events: inventory.events, deadlineMinutes: config.installTimeoutMinutes, now: () => inventory.now() }));
  // After HTTP, so it stops first: open streams end, and the HTTP server closes without waiting on them.
  services.push(eventStream.service);
  services.push(orchestrator);

  const abort = new AbortController();
  let resolveDone!: (code: number) => void;
  const done = new Promise<number>((r) => (resolveDone = r));
  let stopping: Promise<void> | null = null;
  let exitCode = 0;

  const started: Service[] = [];
  const stop = (reason: string): Promise<void> => {
    stopping ??= (async () => {
      log.info({ reason }, 'stopping');
      abort.abort();
      for (const s of [...started].reverse()) {
        // Bounded: a service waiting on a database that went silent must not keep the process
        // from ending (closing the store below cuts what it waits on).
        const done = await waitAtMost(
          s.stop().then(
            () => true,
            (err: unknown) => {
              log.error({ err, service: s.name }, 'service did not stop cleanly');
              return true;
            },
          ),
          SERVICE_STOP_MS,
        );
        if (!done) log.warn({ service: s.name }, `service still stopping after ${SERVICE_STOP_MS / 1000} s (waiting on the database?); going on`);
      }
      stopInventoryMetrics();
      await inventory.close();
      lock.release();
      log.info('stopped');
      resolveDone(exitCode);
    })();
    return stopping;
  };

  const ctx = {
    signal: abort.signal,
    log,
    fatal(err: Error) {
      log.fatal({ err }, 'fatal service error');
      exitCode = 1;
      void stop(`fatal: ${err.message}`);
    },
  };
  try {
    for (const s of services) {
      await s.start({ ...ctx, log: log.child({ svc: s.name }) });
      started.push(s);
    }
    starting = false;
  } catch (err) {
    exitCode = 1;
    await stop('start failed');
    throw err;
  }
  if (!config.adminToken && (await inventory.tokens.list()).length === 0) {
    log.warn('no API tokens yet: create one with "racksmith token create --role admin" (same --data-dir)');
  }
  const consoleUrl = `http://${consoleHost(config)}:${config.httpPort}/`;
  log.info({ version: VERSION, dataDir: config.dataDir, advertise: config.advertiseAddress, console: consoleUrl, services: Object.fromEntries(services.map((s) => [s.name, s.health().state])) }, `serving; console at ${consoleUrl}`);
  return { config, inventory, services, metrics, stop, done };
}
