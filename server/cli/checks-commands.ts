import { ApiError, apiErrorOf } from './client.js';
import { parse, UsageError, type Options } from './args.js';
import { formatReport, type PreflightReport } from '../clusters/preflight.js';
import { prefetchLine, type PrefetchItem } from '../artifacts/prefetch.js';

/**
 * The checks before a rack power-on, from the command line: `clusters preflight NAME` (one line
 * per upstream check, exit 1 when one failed) and `artifacts prefetch CLUSTER` (the installer
 * artifacts into racksmith's cache, a line per file as it moves, exit 1 when one failed).
 */
type Out = (text: string) => void;
export type EndpointOf = (values: Record<string, string | boolean | undefined>) => Promise<{ url: string; token: string }>;

const COMMON: Options = { url: { type: 'string' }, token: { type: 'string' }, 'token-file': { type: 'string' }, json: { type: 'boolean' } };

export const PREFLIGHT_HELP = `Usage: racksmith clusters preflight NAME [--json]

Checks, from racksmith's host, every upstream the cluster's seeds will make its machines use:
  - the OS mirror: the Release file of the release's suite and of its -updates suite
  - the installer artifacts: present in the artifacts directory or cache, or answering upstream
  - the Kubernetes apt repository and the pinned kubelet, kubeadm and kubectl versions in its
    Packages index (the legacy repository of Kubernetes < 1.24 is gone upstream: a site mirror
    must be configured with --kubernetes-legacy-repo)
  - Docker CE's repository and its pinned version (the docker runtime)
  - the CNI manifest of the pinned CNI release
  - the apt proxy, when one is configured
One line per check: "ok", "FAILED" with the HTTP status or the missing version, or "skipped".
Exits 1 when a check failed. A rack power-on runs the same preflight first (unless --force).
See docs/preflight.md.

Common: --url URL (RACKSMITH_URL) --json; the API token from --token-file FILE or RACKSMITH_TOKEN
(or asked for on a terminal; --token TOKEN works too, but a flag is visible to every user in ps)
`;

export const ARTIFACTS_HELP = `Usage: racksmith artifacts prefetch CLUSTER [--json]

Downloads into racksmith's cache every installer artifact the cluster's machines will ask for
(the kernel and initrd; from Ubuntu 20.04 on also the live-server ISO, about 2-3 GB), so that a
rack of machines never waits on the first download. A download already running is joined.
Prints a line per file as it moves (every few seconds while it downloads); exits 1 when a file
could not be fetched. A rack power-on does the same first (unless --force).

Common: --url URL (RACKSMITH_URL) --json; the API token from --token-file FILE or RACKSMITH_TOKEN
(or asked for on a terminal; --token TOKEN works too, but a flag is visible to every user in ps)
`;

async function post(endpoint: { url: string; token: string }, path: string, timeoutMs: number): Promise<Response> {
  const base = endpoint.url.replace(/\/+$/, '');
  let res: Response;
  try {
    res = await fetch(`${base}/api/v1${path}`, { method: 'POST', headers: { authorization: `Bearer ${endpoint.token}`, accept: 'application/json' }, signal: AbortSignal.timeout(timeoutMs) });
  } catch (err) {
    const why = (err as { cause?: { code?: string; message?: string } }).cause;
    throw new Error(`cannot reach racksmith at ${base} (${why?.code ?? why?.message ?? (err as Error).message}); is "racksmith serve" running? (--url, RACKSMITH_URL)`);
  }
  if (!res.ok) throw apiErrorOf(res.status, await res.text());
  return res;
}

export async function preflightCommand(rest: readonly string[], endpointOf: EndpointOf, out: Out): Promise<number> {
  const { values, positionals } = parse(rest, COMMON, 1);
  if (values['help']) {
    out(PREFLIGHT_HELP);
    return 0;
  }
  const name = positionals[0];
  if (!name) throw new UsageError('clusters preflight: give the cluster name');
  // Each upstream request has the server's own deadline; this one only bounds the whole.
  const res = await post(await endpointOf(values), `/clusters/${encodeURIComponent(name)}/preflight`, 10 * 60_000);
  const report = (await res.json()) as PreflightReport;
  out(values['json'] ? JSON.stringify(report, null, 2) + '\n' : formatReport(report));
  return report.ok ? 0 : 1;
}

export async function artifactsCommand(args: readonly string[], endpointOf: EndpointOf, out: Out): Promise<number> {
  const [sub, ...rest] = args;
  if (!sub || sub === '--help' || sub === '-h') {
    out(ARTIFACTS_HELP);
    return sub ? 0 : 2;
  }
  if (sub !== 'prefetch') throw new UsageError(`artifacts: unknown subcommand "${sub}" (prefetch)`);
  const { values, positionals } = parse(rest, COMMON, 1);
  if (values['help']) {
    out(ARTIFACTS_HELP);
    return 0;
  }
  const name = positionals[0];
  if (!name) throw new UsageError('artifacts prefetch: give the cluster name');
  const json = Boolean(values['json']);
  // A multi-gigabyte ISO may take long: the stream's own progress lines keep it alive.
  const res = await post(await endpointOf(values), `/clusters/${encodeURIComponent(name)}/prefetch`, 24 * 3600_000);
  const shown = new Map<string, string>();
  const time = (): string => new Date().toISOString().slice(11, 19);
  let result: { ok: boolean; seconds: number; items: PrefetchItem[] } | null = null;
  let partial = '';
  const decoder = new TextDecoder();
  const handle = (line: string): void => {
    if (line.trim() === '') return;
    const msg = JSON.parse(line) as { type: string; items?: PrefetchItem[]; ok?: boolean; seconds?: number; error?: { code: string; message: string } };
    if (json) out(line + '\n');
    if (msg.type === 'error') throw new ApiError(200, msg.error?.code ?? 'ERR_PREFETCH', msg.error?.message ?? 'the prefetch failed');
    for (const item of msg.items ?? []) {
      const text = prefetchLine(item);
      const key = `${item.release}/${item.file}`;
      if (shown.get(key) === text) continue;
      shown.set(key, text);
      if (!json) out(`${time()}  ${text}\n`);
    }
    if (msg.type === 'result') result = { ok: msg.ok === true, seconds: msg.seconds ?? 0, items: msg.items ?? [] };
  };
  for await (const chunk of res.body ?? []) {
    const lines = (partial + decoder.decode(chunk as Uint8Array, { stream: true })).split('\n');
    partial = lines.pop() ?? '';
    for (const l of lines) handle(l);
  }
  handle(partial);
  const final = result as { ok: boolean; seconds: number; items: PrefetchItem[] } | null;
  if (!final) throw new Error('the server ended the prefetch without a result');
  const failed = final.items.filter((i) => i.state !== 'done').length;
  if (!json) out(final.ok ? `cluster ${name}: ${final.items.length} installer artifact(s) in the cache (${final.seconds.toFixed(1)} s)\n` : `cluster ${name}: ${failed} of ${final.items.length} artifact(s) could not be cached\n`);
  return final.ok ? 0 : 1;
}
