#!/usr/bin/env node
/**
 * `npm run lab`: a virtual rack on this machine — QEMU machines with simulated BMCs on a private
 * bridge, racksmith serving them — driven as an admin and a tech would, through racksmith's CLI
 * and API, until the HA cluster is ready. See docs/lab.md.
 */
import { copyFileSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { buildImageDeployment, buildImages, buildSecureBootEsp, type ImageDeployment, type LabImages } from './images.js';
import { ensurePackages, IMAGE_PACKAGES, LAB_PACKAGES } from './packages.js';
import { instanceNameOf, provisionSite, Site, splitPlan } from './site.js';
import { figures, figuresTable, LabClient, provision, watch } from './flow.js';
import { CLUSTER, FIRMWARE_CHOICES, Rack, UPGRADE_VERSION, VIP, planMachines, type FirmwareChoice } from './rack.js';

const USAGE = `Usage: npm run lab -- [--machines N] [--firmware bios|uefi|mixed|secureboot|http] [--no-upgrade]
                      [--os ubuntu-22.04|debian-12] [--install autoinstall|image] [--instances N]
                      [--keep] [--timeout MINUTES] [--out DIR]

Builds a virtual rack (QEMU machines with ipmi_sim BMCs on a private bridge in network
namespaces), starts racksmith on it, and drives it through racksmith's CLI and API: a cluster,
the rack's CSV, the rack powered on through its BMCs, a live table until the cluster is ready,
then the figures of the run. Needs root (namespaces, taps) and Debian 12's packages, which it
installs when missing. Ctrl-C or a failure tears everything down.

  --machines N        4 or more: 1 load balancer (2 sharing a VIP from 7 on), 2 control-plane nodes (3 from 6 on),
                      the rest workers (default 4); with a load-balancer pair the ready cluster is then
                      upgraded one minor (racksmith clusters upgrade … --wait)
  --no-upgrade        skip that upgrade
  --firmware F        bios, uefi or mixed (default mixed: every other machine UEFI); secureboot:
                      UEFI with Secure Boot enforced (the signed shim → GRUB chain); http: UEFI
                      HTTP Boot with racksmith's TFTP off
  --os debian-12 --install image
                      real Debian 12 machines, deployed by racksmith's deploy agent from a Debian
                      image built here, HAProxy and containerd through apt-cacher-ng, the
                      Kubernetes packages from a stand-in repository (default: ubuntu-22.04 by
                      autoinstall, with the test guest playing the installer and the system);
                      firmware bios, uefi or mixed
  --instances N       2 to 4: as many provisioning networks, each with its own bridge, machines,
                      BMCs and racksmith instance, all instances on one PostgreSQL in a database
                      namespace, the networks joined by a router namespace; one cluster spans them
  --keep              keep the rack running after the run, until Ctrl-C
  --timeout MINUTES   give up after this long (default 30)
  --out DIR           where the summary, kubeconfig and logs go (default ./lab-runs/<time>)
`;

interface Args {
  machines: number;
  firmware: FirmwareChoice;
  os: 'ubuntu-22.04' | 'debian-12';
  install: 'autoinstall' | 'image';
  keep: boolean;
  timeoutMin: number;
  out: string | null;
  upgrade: boolean;
  instances: number;
}

function parse(argv: readonly string[]): Args {
  const a: Args = { machines: 4, firmware: 'mixed', os: 'ubuntu-22.04', install: 'autoinstall', keep: false, timeoutMin: 30, out: null, upgrade: true, instances: 1 };
  for (let i = 0; i < argv.length; i++) {
    const w = argv[i];
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${w} needs a value`);
      return v;
    };
    if (w === '--machines') a.machines = Number(value());
    else if (w === '--firmware') {
      const f = value();
      if (f === 'arm64') throw new Error('--firmware arm64: not in the virtual rack yet (its installed-system image is amd64 only); npm test runs the ARM64 boot chain in QEMU (test/arm64.qemu.test.ts)');
      const choice = FIRMWARE_CHOICES.find((c) => c === f);
      if (!choice) throw new Error(`--firmware: ${FIRMWARE_CHOICES.join(', ')}`);
      a.firmware = choice;
    } else if (w === '--os') {
      const o = value();
      if (o !== 'ubuntu-22.04' && o !== 'debian-12') throw new Error('--os: ubuntu-22.04 (the test guest) or debian-12 (real machines by image)');
      a.os = o;
    } else if (w === '--install') {
      const i = value();
      if (i !== 'autoinstall' && i !== 'image') throw new Error('--install: autoinstall or image');
      a.install = i;
    } else if (w === '--keep') a.keep = true;
    else if (w === '--no-upgrade') a.upgrade = false;
    else if (w === '--instances') a.instances = Number(value());
    else if (w === '--timeout') a.timeoutMin = Number(value());
    else if (w === '--out') a.out = value();
    else if (w === '--help' || w === '-h') {
      process.stdout.write(USAGE);
      process.exit(0);
    } else throw new Error(`unknown option ${w}`);
  }
  planMachines(a.machines, a.firmware);
  if (!(a.timeoutMin > 0)) throw new Error('--timeout: minutes, more than 0');
  // Debian's installer cannot finish here (its mirror serves no .udeb), and the test guest plays Ubuntu only.
  if ((a.os === 'debian-12') !== (a.install === 'image')) throw new Error('--os debian-12 goes with --install image (real machines); the test guest plays ubuntu-22.04 by autoinstall');
  // The lab's Debian image carries GRUB unsigned, and the deploy agent is fetched over TFTP/iPXE.
  if (!Number.isInteger(a.instances) || a.instances < 1 || a.instances > 4) throw new Error('--instances: 1 to 4');
  if (a.instances > 1 && (a.install === 'image' || (a.firmware !== 'bios' && a.firmware !== 'uefi' && a.firmware !== 'mixed'))) throw new Error('--instances: the test guest by autoinstall, firmware bios, uefi or mixed');
  if (a.instances > 1 && splitPlan(planMachines(a.machines, a.firmware), a.instances).some((p) => p.length === 0)) throw new Error(`--instances ${a.instances}: --machines ${a.machines} leaves a network without a machine`);
  if (a.install === 'image' && a.firmware !== 'bios' && a.firmware !== 'uefi' && a.firmware !== 'mixed') throw new Error('--install image: firmware bios, uefi or mixed');
  return a;
}

const say = (line: string): void => void process.stdout.write(`${line}\n`);

async function main(): Promise<number> {
  let args: Args;
  try {
    args = parse(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n\n${USAGE}`);
    return 2;
  }
  if (process.getuid?.() !== 0) {
    process.stderr.write('npm run lab needs root: it creates network namespaces, a bridge and taps (sudo npm run lab).\n');
    return 2;
  }
  const out = resolve(args.out ?? join('lab-runs', new Date().toISOString().replace(/[:.]/g, '-')));
  const t0 = Date.now();
  say('checking Debian packages…');
  await ensurePackages(say, args.install === 'image' ? [...LAB_PACKAGES, ...IMAGE_PACKAGES] : LAB_PACKAGES);
  say('building guest images (cached after the first run)…');
  const base = await buildImages(say);
  const images = args.firmware === 'secureboot' ? { ...base, secureBootEsp: await buildSecureBootEsp() } : base;
  let imageDeployment: ImageDeployment | undefined;
  if (args.install === 'image') {
    say('building the Debian 12 image and the deploy agent (cached after the first run)…');
    imageDeployment = await buildImageDeployment(say);
  }
  say(`images ready in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  if (args.instances > 1) return runSite(args, images, out, t0);

  const rack = new Rack({ tag: 'l', machines: args.machines, firmware: args.firmware, images, imageDeployment, log: (l) => say(`  lab: ${l}`) });
  let stopping = false;
  const teardown = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    say('tearing the rack down…');
    saveLogs(rack, out);
    await rack.destroy();
    say(`done; the run's summary and logs are in ${out}`);
  };
  const onSignal = (): void => {
    void teardown().then(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  try {
    await rack.start();
    const client = new LabClient(rack);
    const startedAt = await provision(client, (t) => process.stdout.write(t));
    const outcome = await watch(client, startedAt, { timeoutMs: args.timeoutMin * 60_000, print: (t) => process.stdout.write(t), tty: process.stdout.isTTY === true }, (ms, state) => state === 'ready' && ms.every((m) => m.state === 'joined'));
    mkdirSync(out, { recursive: true });
    const show = await client.cli(['clusters', 'show', CLUSTER]);
    const figs = await figures(client, startedAt);
    const lines = [
      outcome.ok ? `cluster ${CLUSTER} is ready: ${rack.machines.length} machines in ${((Date.now() - startedAt) / 1000).toFixed(0)} s from the rack power-on` : `the run failed: ${outcome.reason}`,
      '',
      show.trimEnd(),
      '',
      'seconds from the rack power-on to each state, per machine:',
      figuresTable(figs).trimEnd(),
      '',
      `at most ${rack.maxBootingSeen} machines booting at once (limit ${rack.maxBooting}); images ready in ${((startedAt - t0) / 1000).toFixed(0)} s before that`,
    ];
    let ok = outcome.ok;
    const pair = rack.machines.filter((m) => m.role === 'loadbalancer').length === 2;
    if (outcome.ok && pair) lines.push('', `the API is reached through the VIP: endpoint ${String((await client.api('GET', `/clusters/${CLUSTER}`)).body?.controlPlaneEndpoint)} (vip ${VIP})`);
    if (outcome.ok && pair && args.upgrade) {
      // The second day: a rolling upgrade by reimage, one minor up, through the CLI.
      const u0 = Date.now();
      // --force: as for the power-on, the virtual rack has no upstreams to preflight.
      say(`\n$ racksmith clusters upgrade ${CLUSTER} --kubernetes-version ${UPGRADE_VERSION} --force --wait`);
      const r = await client.cliResult(['clusters', 'upgrade', CLUSTER, '--kubernetes-version', UPGRADE_VERSION, '--force', '--wait', '--timeout', String(args.timeoutMin * 60)]);
      ok = r.code === 0;
      lines.push('', ok ? `upgrade to ${UPGRADE_VERSION} done in ${((Date.now() - u0) / 1000).toFixed(0)} s (racksmith clusters upgrade … --wait)` : `the upgrade did not complete (exit ${r.code}): ${r.stderr.trim().slice(-500)}`);
      writeFileSync(join(out, 'summary.txt'), lines.join('\n') + '\n');
    }
    if (outcome.ok) {
      const kubeconfig = join(out, 'kubeconfig');
      writeFileSync(kubeconfig, await client.cli(['clusters', 'kubeconfig', CLUSTER]), { mode: 0o600 });
      lines.push(`kubeconfig (from racksmith clusters kubeconfig ${CLUSTER}): ${kubeconfig}`);
    }
    writeFileSync(join(out, 'summary.txt'), lines.join('\n') + '\n');
    say('\n' + lines.join('\n'));
    if (args.keep) {
      say(`\nthe rack keeps running (--keep). racksmith: ip netns exec ${rack.bed.srv} curl ${'http://10.77.0.1:8080/healthz'}; API token in ${join(out, 'token')}. Ctrl-C tears it down.`);
      writeFileSync(join(out, 'token'), client.token + '\n', { mode: 0o600 });
      await new Promise<never>(() => undefined);
    }
    await teardown();
    return ok ? 0 : 1;
  } catch (e) {
    say(`\nthe lab failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    if (args.keep) {
      say('the rack keeps running (--keep) for a look; Ctrl-C tears it down.');
      await new Promise<never>(() => undefined);
    }
    await teardown();
    return 1;
  }
}

/**
 * `--instances N`: a site of N provisioning networks, a racksmith instance on each, one
 * PostgreSQL; the cluster spans the networks. The admin talks to the first instance, the site's
 * CSV goes in through the last, each rack is powered on through its own; the table is the
 * cluster's as the first instance sees it.
 */
async function runSite(args: Args, images: LabImages, out: string, t0: number): Promise<number> {
  const site = new Site({ tag: 'l', instances: args.instances, machines: args.machines, firmware: args.firmware, images, log: (l) => say(`  lab: ${l}`) });
  let stopping = false;
  const teardown = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    say('tearing the site down…');
    site.racks.forEach((r, i) => saveLogs(r, out, instanceNameOf(i)));
    await site.destroy();
    say(`done; the run's summary and logs are in ${out}`);
  };
  const onSignal = (): void => {
    void teardown().then(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    await site.start();
    const clients = site.racks.map((r) => new LabClient(r, site));
    const startedAt = await provisionSite(site, clients, (t) => process.stdout.write(t));
    const c = clients[0] as LabClient;
    const outcome = await watch(c, startedAt, { timeoutMs: args.timeoutMin * 60_000, print: (t) => process.stdout.write(t), tty: process.stdout.isTTY === true }, (ms, state) => state === 'ready' && ms.every((m) => m.state === 'joined'));
    mkdirSync(out, { recursive: true });
    const detail = (await c.api('GET', `/clusters/${CLUSTER}`)).body;
    const lines = [
      outcome.ok ? `cluster ${CLUSTER} is ready: ${site.machines.length} machines on ${site.racks.length} networks in ${((Date.now() - startedAt) / 1000).toFixed(0)} s from the power-on` : `the run failed: ${outcome.reason}`,
      '',
      ...site.racks.map((r, i) => `${instanceNameOf(i)}: ${r.base} on ${r.bed.bridge}, machines ${r.machines.map((m) => `${m.name} ${m.ip}`).join(', ')}`),
      `orchestrated by: ${String(detail?.orchestration?.lock?.holder ?? 'nobody now (the lock is let go once the cluster is ready)')}`,
      '',
      (await c.cli(['clusters', 'show', CLUSTER])).trimEnd(),
      '',
      'seconds from the power-on to each state, per machine:',
      figuresTable(await figures(c, startedAt)).trimEnd(),
      '',
      `at most ${site.maxBootingSeen} machines booting at once on the site (limit ${site.maxBooting}); images ready in ${((startedAt - t0) / 1000).toFixed(0)} s before that`,
    ];
    writeFileSync(join(out, 'summary.txt'), lines.join('\n') + '\n');
    say('\n' + lines.join('\n'));
    if (args.keep) {
      say(`\nthe site keeps running (--keep). API token in ${join(out, 'token')}. Ctrl-C tears it down.`);
      writeFileSync(join(out, 'token'), c.token + '\n', { mode: 0o600 });
      await new Promise<never>(() => undefined);
    }
    await teardown();
    return outcome.ok ? 0 : 1;
  } catch (e) {
    say(`\nthe lab failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    if (args.keep) {
      say('the site keeps running (--keep) for a look; Ctrl-C tears it down.');
      await new Promise<never>(() => undefined);
    }
    await teardown();
    return 1;
  }
}

function saveLogs(rack: Rack, out: string, instance?: string): void {
  try {
    mkdirSync(join(out, 'logs'), { recursive: true });
    if (rack.rs) writeFileSync(join(out, 'logs', instance ? `racksmith-${instance}.log` : 'racksmith.log'), rack.racksmithLog());
    for (const m of rack.machines) {
      writeFileSync(join(out, 'logs', `${m.name}-console.log`), rack.console(m));
      const sys = rack.syslog(m);
      if (sys) writeFileSync(join(out, 'logs', `${m.name}-syslog.log`), sys);
      if (existsSync(join(m.dir, 'qemu.err'))) copyFileSync(join(m.dir, 'qemu.err'), join(out, 'logs', `${m.name}-qemu.err`));
    }
  } catch (e) {
    say(`could not keep every log: ${e instanceof Error ? e.message : String(e)}`);
  }
}

process.exitCode = await main();
