import { notFound } from '../lib/errors.js';
import type { Logger } from '../lib/log.js';
import type { Cluster, UbuntuRelease } from '../inventory/model.js';
import type { ClusterRepo, EventRepo } from '../inventory/store.js';
import type { ReleaseInstaller } from '../boot/releases.js';
import type { ArtifactStore } from '../artifacts/store.js';
import { prefetchArtifacts, prefetchList, type PrefetchOptions, type PrefetchResult } from '../artifacts/prefetch.js';
import { osOfRelease } from './compatibility.js';
import { httpGet, type HttpGet } from './http-get.js';
import { planPreflight, runPreflight, type PreflightReport, type PreflightSettings } from './preflight.js';

/**
 * A cluster's checks before power-on, by name: its preflight (every upstream its seeds use) and
 * its prefetch (every installer artifact its machines will ask for). Each run is also an event in
 * the cluster's history. The HTTP routes and the rack power-on gate both use this.
 */
export interface ClusterChecks {
  /** `kubernetesVersion`: check that version's packages instead of the cluster's own (an upgrade's target). */
  preflight(name: string, opts?: { readonly signal?: AbortSignal; readonly kubernetesVersion?: string }): Promise<PreflightReport>;
  prefetch(names: readonly string[], opts?: PrefetchOptions): Promise<PrefetchResult>;
}

export interface ClusterChecksDeps {
  readonly clusters: Pick<ClusterRepo, 'get'>;
  readonly events: Pick<EventRepo, 'append'>;
  readonly installers: Readonly<Record<UbuntuRelease, ReleaseInstaller>>;
  readonly artifacts: Pick<ArtifactStore, 'locate' | 'resolve' | 'progress'>;
  readonly settings: PreflightSettings;
  /** Each preflight request's deadline. */
  readonly timeoutMs: number;
  readonly get?: HttpGet | undefined;
  readonly log?: Logger | undefined;
}

export function createClusterChecks(d: ClusterChecksDeps): ClusterChecks {
  const get = d.get ?? httpGet;

  async function load(name: string): Promise<Cluster> {
    const c = await d.clusters.get(name);
    if (!c) throw notFound('ERR_UNKNOWN_CLUSTER', `no cluster named "${name}"`);
    return c;
  }

  return {
    async preflight(name, opts = {}) {
      const c = await load(name);
      const plan = planPreflight({ name: c.name, os: osOfRelease(c.ubuntuRelease), kubernetesVersion: opts.kubernetesVersion ?? c.kubernetesVersion, containerRuntime: c.containerRuntime, cni: c.cni }, d.settings, d.installers[c.ubuntuRelease]);
      const report = await runPreflight(c.name, plan, { get, locate: (r, f) => d.artifacts.locate(r, f), timeoutMs: d.timeoutMs, signal: opts.signal }, d.settings.aptProxy ?? null);
      const failed = report.checks.filter((x) => x.state === 'failed');
      await d.events.append({
        cluster: c.name,
        type: 'preflight',
        source: 'preflight',
        message: report.ok ? `preflight passed: ${report.checks.length} checks` : `preflight failed: ${failed.map((x) => `${x.title}: ${x.detail}`).join('; ')}`.slice(0, 1000),
        data: { ok: report.ok, failed: failed.map((x) => x.id), checks: report.checks.length },
      });
      d.log?.info({ cluster: c.name, ok: report.ok, failed: failed.map((x) => x.id) }, 'preflight');
      return report;
    },
    async prefetch(names, opts = {}) {
      const clusters = await Promise.all(names.map(load));
      const files = prefetchList(clusters.map((c) => d.installers[c.ubuntuRelease]));
      const result = await prefetchArtifacts(d.artifacts, files, opts);
      for (const c of clusters) {
        const mine = result.items.filter((i) => i.release === c.ubuntuRelease);
        const bad = mine.filter((i) => i.state !== 'done');
        await d.events.append({
          cluster: c.name,
          type: 'prefetch',
          source: 'prefetch',
          message: bad.length === 0 ? `installer artifacts ready: ${mine.map((i) => `${i.release}/${i.file}`).join(', ')}` : `prefetch failed: ${bad.map((i) => `${i.release}/${i.file}: ${i.error ?? i.state}`).join('; ')}`.slice(0, 1000),
          data: { ok: bad.length === 0, items: mine.map((i) => ({ release: i.release, file: i.file, state: i.state, source: i.source, bytes: i.bytes })) },
        });
      }
      return result;
    },
  };
}
