import { AppError } from '../../lib/errors.js';
import type { Cluster, Machine } from '../../inventory/model.js';
import type { ClusterRepo, MachineRepo } from '../../inventory/store.js';
import { decideClusterChange, type ClusterPatchFacts } from '../../clusters/changes.js';
import { checkPlacements, checkTopology, type Placement } from '../../clusters/topology.js';

/**
 * The cluster-domain rules (server/clusters/) applied at the API boundary: a PATCH that would
 * change what a live cluster is built of, and machine placements that break a cluster's shape.
 * The decisions are pure; this only reads the members, and turns findings into errors.
 */
export function guardClusterChange(before: Cluster, patch: ClusterPatchFacts, members: readonly Machine[]): void {
  const d = decideClusterChange(before, patch, members);
  if (!d.ok) throw new AppError(d.status === 409 ? 'conflict' : 'invalid', d.code, d.message, d.field);
}

/**
 * Refuses placements that break a cluster's topology (409, one detail per finding, with the CSV
 * row when there is one) and returns the warnings of the clusters they touch.
 */
export async function guardPlacements(machines: Pick<MachineRepo, 'list'>, clusterRepo: Pick<ClusterRepo, 'get'>, placements: readonly Placement[]): Promise<string[]> {
  // Only the clusters the placements land in are checked: their members are all that is read.
  const clusters = [...new Set(placements.map((p) => p.cluster).filter((c): c is string => c !== null))];
  const members = (await Promise.all(clusters.map((cluster) => machines.list({ cluster })))).flat();
  const vips = new Map(await Promise.all(clusters.map(async (name) => [name, (await clusterRepo.get(name))?.vip ?? null] as const)));
  const { problems, warnings } = checkPlacements(members, placements, vips);
  const first = problems[0];
  if (first) {
    throw new AppError(
      'conflict',
      'ERR_TOPOLOGY',
      problems.length === 1 ? first.message : `${problems.length} topology problems; the first: ${first.message}`,
      first.field,
      problems.map((p) => ({ message: p.message, field: p.field, row: p.row })),
    );
  }
  return warnings;
}

/** What a cluster's view warns about (shown by the API, the console and `clusters show`). */
export function clusterWarnings(c: Pick<Cluster, 'name' | 'vip'>, members: readonly Machine[]): readonly string[] {
  return checkTopology(c, members).warnings;
}
