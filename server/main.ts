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
import { powerRoutes } from './http/api/power.js';
import { orchestrationRoutes } from './http/api/orchestration-routes.js';
import { createOrchestrationRepo } from './inventory/sqlite/orchestration.js';
import { openSqliteInventory, type SqliteInventory } from './inventory/sqlite/index.js';
import { DB_FILE } from './inventory/sqlite/db.js';
import { collectDiscoveryMetrics, collectInventoryMetrics } from './inventory/metrics.js';
import { createDiscoveryGate, DISCOVERY_WINDOW_MS } from './inventory/discovery.js';
import { acquireInstanceLock, type InstanceLock } from './lib/instance-lock.js';
import type { Logger } from './lib/log.js';
import type { Mac } from './lib/mac.js';
import { collectServiceHealth } from './lib/metric-catalogue.js';
import { createMetrics, type MetricsRegistry } from './lib/metrics.js';
import { createSecretBox, loadSecretKey } from './lib/secrets.js';
import type { Service, ServiceHealth } from './lib/service.js';
import { instanceId } from './lib/instance-id.js';
import { ensureSshIdentity } from './lib/ssh-identity.js';
import { createIpmiDriver } from './power/ipmi.js';
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
import { resolveInstallers } from './boot/releases.js';
import { createArpResolver, firstResolver } from './lib/neighbours.js';
import { createTftpService, tftpFiles } from './tftp/index.js';

export interface Runtime {
  readonly config: Config;
  readonly inventory: SqliteInventory;
  readonly services: readonly Service[];
  readonly metrics: MetricsRegistry;
  /** Stops every service in reverse order and closes the store; safe to call twice. */
  stop(reason: string): Promise<void>;
  /** Settles with the exit code once the runtime has stopped (0 clean, 1 after a fatal error). */
  readonly done: Promise<number>;
}

/** Opens the data directory's store (and its key) the way `serve` does, for CLI commands. */
export function openInventory(config: Config): SqliteInventory {
  mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
  const box = createSecretBox(loadSecretKey(config.secretKey, config.dataDir));
  return openSqliteInventory({ file: join(config.dataDir, DB_FILE), box });
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
  mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
  const lock: InstanceLock = acquireInstanceLock(config.dataDir);
  let inventory: SqliteInventory | undefined;
  let identity: Awaited<ReturnType<typeof ensureSshIdentity>>;
  try {
    inventory = openInventory(config);
    identity = await ensureSshIdentity(inventory.secrets);
  } catch (err) {
    await inventory?.close();
    lock.release();
    throw err;
  }

  const services: Service[] = [];
  const health = (): Record<string, ServiceHealth> => Object.fromEntries(services.map((s) => [s.name, s.health()]));

  const installers = resolveInstallers(config.installers ?? {});
  const artifacts = createArtifactStore({
    artifactsDir: config.artifactsDir ?? join(config.dataDir, 'artifacts'),
    cacheDir: join(config.dataDir, 'artifacts'),
    installers,
    fetchIdleTimeoutMs: config.artifactsFetchTimeoutSeconds * 1000,
    log: log.child({ svc: 'artifacts' }),
    onFetched: (f) => {
      void inventory.events.append({ type: 'artifact.cached', source: 'artifacts', message: `cached ${f.release}/${f.file} (${f.size} bytes, sha256 ${f.sha256})`, data: { ...f } });
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
  const ipmi = createIpmiDriver({
    ipmitool: config.ipmitool,
    deadlineMs: config.powerTimeoutSeconds * 1000,
    retry: { maxAttempts: config.powerRetries + 1, baseDelayMs: 500, maxDelayMs: 4000 },
    gate: createBmcGate(config.powerMaxInFlight),
    log: log.child({ svc: 'power' }),
  });
  const power = createPowerService({
    inventory,
    driver: meteredDriver(ipmi, metrics),
    settings: {
      rackConcurrency: config.rackPowerConcurrency,
      rackDelaySeconds: config.rackPowerDelaySeconds,
      removalTimeoutMs: config.reimageRemovalTimeoutSeconds * 1000,
      removalPollMs: 2000,
    },
    onStopped: () => ipmi.close(),
  });
  // Power starts before HTTP (the API calls into it) and stops after it.
  services.push(power);
  const orchestrator = createOrchestrator({
    inventory,
    orchestration: createOrchestrationRepo(inventory.db, inventory.now),
    shell: createSshShell(),
    privateKey: async () => identity.privateKey,
    settings: orchestratorSettings(config),
    owner: instanceId(config.dataDir),
    holder: `${hostname()} pid ${process.pid}`,
    metrics,
  });

  const app = createApp({
    log,
    version: VERSION,
    health,
    inventory,
    revision: inventory.revision,
    adminToken: config.adminToken,
    sshPublicKey: async () => identity.publicKey,
    machineRouter: machineRouter({
      machines: inventory.machines,
      clusters: inventory.clusters,
      events: inventory.events,
      bootTemplates: createRenderer(BOOT_TEMPLATES_DIR),
      seedTemplates: createRenderer(AUTOINSTALL_DIR),
      artifacts,
      installers,
      boot: {
        waitSeconds: config.bootWaitSeconds,
        waitAttempts: config.bootWaitAttempts,
        chainTries: 5,
        retrySeconds: 5,
        kernelArgs: config.installerKernelArgs.split(/\s+/).filter(Boolean),
      },
      seed: {
        sshUser: config.sshUser,
        ubuntuMirror: config.ubuntuMirror,
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
      // Only racksmith's own leases say where a MAC is; in proxy mode the site's DHCP knows.
      leasedAddress:
        config.dhcpMode === 'authoritative'
          ? async (mac) => {
              const lease = await inventory.leases.byMac(mac);
              return lease?.state === 'bound' && Date.parse(lease.expiresAt) > inventory.now().getTime() ? lease.ip : null;
            }
          : undefined,
      log: log.child({ svc: 'http' }),
    }),
    eventStream,
    metrics,
    rootRouters: [metricsRouter(metrics, config.metricsToken), consoleRouter()],
    clusterDetail: orchestrator,
    extraRoutes: [...powerRoutes(power), ...orchestrationRoutes(orchestrator, inventory.clusters)],
  });
  services.push(createHttpService(config, app));
  services.push(createDhcpService(config, { inventory, metrics, discovery: discovery.dhcp }));
  // TFTP tells machines apart by IP only: our own bound leases name the MAC first (exact, and they
  // outlive an ARP entry), then the kernel's neighbour table (proxy mode, static addresses).
  const leaseResolver = async (ip: string): Promise<Mac | null> => {
    const lease = await inventory.leases.byIp(ip);
    return lease?.state === 'bound' ? lease.mac : null;
  };
  const resolveClient = firstResolver([leaseResolver, createArpResolver()]);
  services.push(createTftpService(config, { files: tftpFiles(config).source, root: config.tftpRoot, resolveClient, inventory }));
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
        try {
          await s.stop();
        } catch (err) {
          log.error({ err, service: s.name }, 'service did not stop cleanly');
        }
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
