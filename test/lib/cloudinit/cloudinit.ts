import type { MachineRoot } from './chroot.js';

/**
 * Real cloud-init (Debian 12's 22.4) run in a test machine the way a first boot runs it: the
 * NoCloud seed in the seed directory, then the four stages systemd would start in order.
 */

export const STAGES: ReadonlyArray<readonly string[]> = [
  ['init', '--local'],
  ['init'],
  ['modules', '--mode=config'],
  ['modules', '--mode=final'],
];

/**
 * /etc/cloud/cloud.cfg.d/90_dpkg.cfg as cloud-init's package writes it from the debconf answer
 * `cloud-init cloud-init/datasources multiselect NoCloud, None` (the 18.04 preseed gives it).
 */
export function debconfDatasources(answer: string): string {
  const list = answer
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  return `# to update this file, run dpkg-reconfigure cloud-init\ndatasource_list: [ ${list.join(', ')} ]\n`;
}

/**
 * The test's own system configuration. The root is an overlay in a chroot, not a disk: there is
 * no partition to grow and no file system to resize (on a node these modules find its real disk;
 * subiquity's installs turn them off anyway).
 */
export const TEST_DISK_CONFIG = `# racksmith cloud-init test: no disk to grow or resize in the test root.
growpart:
  mode: "off"
resize_rootfs: false
`;

export function writeTestSystemConfig(m: MachineRoot): void {
  m.write('/etc/cloud/cloud.cfg.d/95-racksmith-test.cfg', TEST_DISK_CONFIG);
}

export interface StageRun {
  readonly stage: string;
  readonly code: number;
  readonly seconds: number;
  readonly output: string;
}

export interface CloudInitStatus {
  /** Exit code of `cloud-init status --wait --long --format json`: 0 done, 1 error (2: recoverable, 23.4+). */
  readonly code: number;
  readonly status: string;
  readonly errors: readonly string[];
  readonly raw: string;
}

export interface CloudInitRun {
  readonly stages: readonly StageRun[];
  readonly status: CloudInitStatus;
  /** WARNING/ERROR/CRITICAL lines of cloud-init.log: what 23.4+ reports as recoverable errors. */
  readonly problems: readonly string[];
  readonly seconds: number;
}

/**
 * cloud-init 23.4+ counts every WARNING (and DEPRECATED) log record as a "recoverable error" and
 * makes `status` exit 2; 22.4 does not. Reading the same records out of cloud-init.log makes the
 * test as strict on 22.4 as on the releases the nodes run.
 */
export function logProblems(log: string): string[] {
  return log
    .split('\n')
    .filter((line) => /^\d{4}-\d\d-\d\d [\d:,]+ - [^\s[]+\[(WARNING|ERROR|CRITICAL|DEPRECATED)\]: /.test(line))
    .map((line) => line.replace(/^\S+ \S+ - /, ''));
}

/**
 * The one warning a node gets whatever racksmith does: subiquity hands the installed system its
 * config through the `None` datasource, and cloud-init's final module warns whenever `None` was
 * used, even when it was the only one configured (canonical/cloud-init#5192, removed upstream in
 * 2024). Accepted only on the subiquity path.
 */
export const SUBIQUITY_NONE_DATASOURCE_WARNING = /^cc_final_message\.py\[WARNING\]: Used fallback datasource$/;

export function parseStatus(code: number, raw: string): CloudInitStatus {
  let parsed: { status?: unknown; errors?: unknown } = {};
  try {
    parsed = JSON.parse(raw) as typeof parsed;
  } catch {
    /* not JSON: reported through status 'unparsable' */
  }
  return {
    code,
    status: typeof parsed.status === 'string' ? parsed.status : 'unparsable',
    errors: Array.isArray(parsed.errors) ? parsed.errors.map(String) : [],
    raw,
  };
}

/** Runs the four stages in order (stopping at a stage that crashes), then asks `cloud-init status`. */
export async function runCloudInit(m: MachineRoot, opts: { stageTimeoutMs?: number; accept?: readonly RegExp[] } = {}): Promise<CloudInitRun> {
  const started = Date.now();
  const stages: StageRun[] = [];
  for (const args of STAGES) {
    const t = Date.now();
    const r = await m.exec(['cloud-init', ...args], { timeoutMs: opts.stageTimeoutMs ?? 10 * 60_000 });
    stages.push({ stage: args.join(' '), code: r.code, seconds: (Date.now() - t) / 1000, output: r.stdout + r.stderr });
    // Like systemd: a stage that fails does not stop the next one (only a crash of init would).
  }
  const st = await m.exec(['cloud-init', 'status', '--wait', '--long', '--format', 'json'], { timeoutMs: 60_000 });
  return {
    stages,
    status: parseStatus(st.code, st.stdout),
    problems: logProblems(m.readOr('/var/log/cloud-init.log', '')).filter((p) => !(opts.accept ?? []).some((re) => re.test(p))),
    seconds: (Date.now() - started) / 1000,
  };
}

/** A short account of a run for assertion messages: stage codes, errors, problems, output tail. */
export function describeRun(run: CloudInitRun, m: MachineRoot): string {
  return [
    ...run.stages.map((s) => `stage ${s.stage}: exit ${s.code} (${s.seconds.toFixed(1)} s)`),
    `status: ${run.status.status} (exit ${run.status.code})`,
    ...run.status.errors.map((e) => `error: ${e}`),
    ...run.problems.map((p) => `log: ${p}`),
    '--- cloud-init-output.log (tail) ---',
    m.readOr('/var/log/cloud-init-output.log', '(none)').slice(-4000),
  ].join('\n');
}
