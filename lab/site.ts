import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startPostgres, type TestPostgres } from '../test/lib/postgres.js';
import { Testbed } from '../test/lib/netns.js';
import type { LabImages } from './images.js';
import { CLUSTER, CSV_HEADER, KUBERNETES_VERSION, Rack, planMachines, segment, type FirmwareChoice, type LabMachine } from './rack.js';
import type { LabClient, RackView } from './flow.js';

/**
 * Several provisioning networks on one host (`npm run lab -- --instances N`): per network a rack
 * (lab/rack.ts) — its bridge, its machines and BMCs, its own racksmith instance serving DHCP,
 * TFTP and HTTP there — and for the whole site a router namespace joined to every segment (each
 * segment's `.254`, handed out as the DHCP router) and a database namespace behind the router
 * holding the PostgreSQL every instance shares. The cluster's machines span the networks: the
 * machines and the orchestrating instance reach each other through the router, as racks on
 * separate subnets of a site do.
 */
export const DATABASE_NET = '10.90.0';
export const DATABASE_ADDRESS = `${DATABASE_NET}.1`;

export interface SiteOptions {
  /** Testbed tag of the site's own namespaces (1–2 letters: each rack adds one). */
  readonly tag: string;
  readonly instances: number;
  readonly machines: number;
  readonly firmware: FirmwareChoice;
  readonly images: LabImages;
  readonly maxBooting?: number;
  readonly log?: (line: string) => void;
}

/** Instance names: lab-a, lab-b, … (shown as the holder of a cluster's lock). */
export function instanceNameOf(index: number): string {
  return `lab-${String.fromCharCode(97 + index)}`;
}

/**
 * The rack's plan cut into one contiguous part per network: with 4 machines and 2 networks the
 * load balancer and the first control-plane node on the first, the second control-plane node and
 * the worker on the second — the cluster spans them.
 */
export function splitPlan<T>(plan: readonly T[], parts: number): T[][] {
  const size = Math.ceil(plan.length / parts);
  return Array.from({ length: parts }, (_, i) => plan.slice(i * size, (i + 1) * size));
}

export class Site implements RackView {
  readonly tb: Testbed;
  readonly racks: Rack[] = [];
  readonly secretKey = randomBytes(32).toString('hex');
  pg: TestPostgres | null = null;
  databaseUrl = '';
  router = '';
  database = '';
  private readonly log: (line: string) => void;
  /** Each rack's racksmith environment, filled in once the database is up. */
  private readonly envs: Record<string, string>[] = [];

  constructor(private readonly opts: SiteOptions) {
    if (!Number.isInteger(opts.instances) || opts.instances < 2 || opts.instances > 4) throw new Error('--instances: 2 to 4');
    const parts = splitPlan(planMachines(opts.machines, opts.firmware), opts.instances);
    if (parts.some((p) => p.length === 0)) throw new Error(`--instances ${opts.instances}: every network needs a machine (--machines ${opts.machines} is too few)`);
    this.tb = new Testbed(opts.tag);
    this.log = opts.log ?? (() => undefined);
    parts.forEach((plan, index) => {
      this.envs.push({});
      this.racks.push(
        new Rack({
          tag: `${opts.tag}${String.fromCharCode(97 + index)}`,
          machines: plan.length,
          firmware: opts.firmware,
          images: opts.images,
          maxBooting: opts.maxBooting,
          log: (l) => this.log(`${instanceNameOf(index)}: ${l}`),
          network: {
            index,
            plan,
            env: this.envs[index] as Record<string, string>,
            attach: (rack) => this.attach(rack),
            bootingElsewhere: () => this.racks.reduce((n, r) => n + (r === this.racks[index] ? 0 : r.booting()), 0),
          },
        }),
      );
    });
  }

  get machines(): LabMachine[] {
    return this.racks.flatMap((r) => r.machines);
  }

  get maxBooting(): number {
    return this.opts.maxBooting ?? 3;
  }

  get maxBootingSeen(): number {
    return this.racks.reduce((n, r) => Math.max(n, r.maxBootingSeen), 0);
  }

  booting(): number {
    return this.racks.reduce((n, r) => n + r.booting(), 0);
  }

  /** Every machine's CSV row, one file for the whole site. */
  csv(): string {
    return [CSV_HEADER, ...this.racks.flatMap((r) => r.csvRows())].join('\n') + '\n';
  }

  /** The rack whose racksmith calls itself `name` in a lock's holder ("lab-a (host pid 123)"). */
  rackOfHolder(holder: string): Rack | null {
    const i = this.racks.findIndex((_, k) => holder.split(' ')[0] === instanceNameOf(k));
    return this.racks[i] ?? null;
  }

  async start(): Promise<void> {
    this.router = await this.tb.addNamespace('rt');
    this.database = await this.tb.addNamespace('db');
    await this.tb.exec(this.router, 'sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
    await this.tb.veth(this.database, 'd0', this.router, 'd9', `${DATABASE_ADDRESS}/24`, `${DATABASE_NET}.254/24`);
    await this.tb.ip(this.database, ['route', 'add', 'default', 'via', `${DATABASE_NET}.254`]);
    const allow = [`${DATABASE_NET}.0/24`, ...this.racks.map((r) => `${segment(r.net)}.0/24`)];
    this.pg = await startPostgres({ netns: this.database, listen: [DATABASE_ADDRESS], allow });
    this.databaseUrl = await this.pg.newDatabase('lab');
    this.log(`PostgreSQL at ${DATABASE_ADDRESS}:${this.pg.port} in namespace ${this.database}, routed through ${this.router}`);
    for (const [i, rack] of this.racks.entries()) {
      Object.assign(this.envs[i] as Record<string, string>, {
        RACKSMITH_DATABASE_URL: this.databaseUrl,
        RACKSMITH_SECRET_KEY: this.secretKey,
        RACKSMITH_INSTANCE_NAME: instanceNameOf(i),
      });
      await rack.start();
    }
  }

  /** The router's leg on the rack's bridge; the rack's racksmith and BMCs route through it. */
  private async attach(rack: Rack): Promise<void> {
    const i = rack.net;
    const gw = `${segment(i)}.254`;
    await this.tb.veth(this.router, `r${i}`, rack.bed.sw, `u${i}`, `${gw}/24`);
    await rack.bed.tb.ip(rack.bed.sw, ['link', 'set', this.tb.name(`u${i}`), 'master', rack.bed.bridge]);
    await rack.bed.tb.ip(rack.bed.srv, ['route', 'add', 'default', 'via', gw]);
    // The BMCs' addresses come later, on the bridge: the route is there for them from the start.
    await rack.bed.tb.ip(rack.bed.sw, ['route', 'add', 'default', 'via', gw, 'dev', rack.bed.bridge, 'onlink']);
  }

  async destroy(): Promise<void> {
    for (const r of this.racks) await r.destroy().catch(() => undefined);
    await this.pg?.stop().catch(() => undefined);
    this.pg = null;
    await this.tb.destroy();
  }
}

/**
 * The admin and the techs on a site: one token and one cluster made through the first instance,
 * the site's CSV imported through the last (any instance serves the whole inventory), and each
 * rack powered on through the instance on its own network. Returns when the power jobs are accepted.
 */
export async function provisionSite(site: Site, clients: readonly LabClient[], print: (t: string) => void): Promise<number> {
  const first = clients[0] as LabClient;
  const last = clients[clients.length - 1] as LabClient;
  const rs = first.rack.rs;
  if (!rs) throw new Error('racksmith is not running');
  const token = (await rs.cli(['token', 'create', '--role', 'admin', '--name', 'lab'])).trim();
  for (const c of clients) c.token = token;
  const create = ['clusters', 'create', '--name', CLUSTER, '--ubuntu-release', '22.04', '--kubernetes-version', KUBERNETES_VERSION, '--container-runtime', 'containerd', '--cni', 'flannel'];
  print(`[${instanceNameOf(0)}] $ racksmith ${create.join(' ')}\n`);
  print(await first.cli(create));
  const csv = join(last.rack.work, 'site.csv');
  writeFileSync(csv, site.csv(), { mode: 0o600 });
  print(`[${instanceNameOf(clients.length - 1)}] $ racksmith machines import site.csv   (${site.machines.length} machines on ${site.racks.length} networks)\n`);
  print(await last.cli(['machines', 'import', csv]));
  const startedAt = Date.now();
  for (const [i, c] of clients.entries()) {
    // --force: as on one rack, there are no upstreams to preflight.
    const power = ['rack', 'power', c.rack.rackName, '--action', 'on', '--concurrency', String(site.maxBooting), '--force', '--no-wait'];
    print(`[${instanceNameOf(i)}] $ racksmith ${power.join(' ')}\n`);
    print(await c.cli(power));
  }
  return startedAt;
}
