import type { Cluster, Machine, Role } from '../inventory/model.js';
import { groupBy } from '../lib/group.js';

/**
 * The shape of a cluster, as rules over its members: what is refused (more load balancers than
 * racksmith configures: one, or a pair sharing the cluster's virtual IP) and what is
 * allowed but worth a warning (an even number of control-plane nodes: stacked etcd needs a
 * majority, so 2 tolerate no failure and 4 no more than 3 do). Pure: the caller gives the members
 * as they would be after the change it is about to make.
 */
export type Member = Pick<Machine, 'mac' | 'hostname' | 'role'>;

export interface TopologyProblem {
  readonly rule: string;
  readonly field: 'role' | 'cluster';
  readonly message: string;
  /** The members the rule is about, in order; the last one is the newcomer when there is one. */
  readonly macs: readonly string[];
}

export interface TopologyCheck {
  readonly problems: readonly TopologyProblem[];
  readonly warnings: readonly string[];
}

const nameOf = (m: Member): string => m.hostname ?? m.mac;

/** The facts of a cluster its shape depends on: a `vip` lets two load balancers share the API's address. */
export type ClusterShape = Pick<Cluster, 'name'> & { readonly vip?: string | null | undefined };

/** How many load balancers a cluster may have: one, or a pair once it has a virtual IP for them (keepalived). */
export function maxLoadBalancers(cluster: ClusterShape): number {
  return cluster.vip ? 2 : 1;
}

interface Rule {
  readonly id: string;
  check(cluster: ClusterShape, byRole: ReadonlyMap<Role, readonly Member[]>): { problem?: Omit<TopologyProblem, 'rule'>; warning?: string } | null;
}

const RULES: readonly Rule[] = [
  {
    id: 'load-balancers',
    check(cluster, byRole) {
      const lbs = byRole.get('loadbalancer') ?? [];
      const max = maxLoadBalancers(cluster);
      if (lbs.length <= max) return null;
      return {
        problem: {
          field: 'role',
          macs: lbs.map((m) => m.mac),
          message:
            max === 1
              ? `cluster ${cluster.name} would have ${lbs.length} load balancers (${lbs.map(nameOf).join(', ')}): one per cluster, or a pair sharing a virtual IP — set the cluster's vip first`
              : `cluster ${cluster.name} would have ${lbs.length} load balancers (${lbs.map(nameOf).join(', ')}): at most a pair, sharing the vip ${cluster.vip ?? ''}`,
        },
      };
    },
  },
  {
    id: 'even-control-plane',
    check(cluster, byRole) {
      const n = (byRole.get('control-plane') ?? []).length;
      if (n === 0 || n % 2 === 1) return null;
      const tolerated = Math.floor((n - 1) / 2);
      return {
        warning: `cluster ${cluster.name} has ${n} control-plane nodes: etcd needs a majority, so ${n} tolerate ${tolerated === 0 ? 'no failure' : `${tolerated} failure${tolerated === 1 ? '' : 's'}`}, no more than ${n - 1} would; use ${n - 1} or ${n + 1}`,
      };
    },
  },
];

export function checkTopology(cluster: ClusterShape, members: readonly Member[]): TopologyCheck {
  const byRole = groupBy<Member, Role>(members, (m) => m.role);
  const problems: TopologyProblem[] = [];
  const warnings: string[] = [];
  for (const rule of RULES) {
    const r = rule.check(cluster, byRole);
    if (r?.problem) problems.push({ rule: rule.id, ...r.problem });
    if (r?.warning) warnings.push(r.warning);
  }
  return { problems, warnings };
}

/** A placement the caller is about to make: a machine (new or existing) with its role and cluster afterwards. */
export interface Placement extends Member {
  readonly cluster: string | null;
  /** The CSV row it comes from, for import errors. */
  readonly row?: number | undefined;
}

export interface PlacementProblem extends TopologyProblem {
  readonly cluster: string;
  readonly row?: number | undefined;
}

/**
 * The members of each affected cluster after the placements (existing machines moved or replaced
 * by MAC), checked. Problems only count when a placement made them: a cluster that already had two
 * load balancers before this rule existed is not refused an unrelated worker.
 */
export function checkPlacements(
  existing: readonly (Member & { readonly cluster: string | null })[],
  placements: readonly Placement[],
  vips: ReadonlyMap<string, string | null> = new Map(),
): { problems: PlacementProblem[]; warnings: string[] } {
  const placed = new Map<string, Placement>(placements.map((p) => [p.mac, p]));
  const clusters = new Set(placements.map((p) => p.cluster).filter((c): c is string => c !== null));
  const problems: PlacementProblem[] = [];
  const warnings: string[] = [];
  for (const name of [...clusters].sort()) {
    const before = existing.filter((m) => m.cluster === name);
    const after = [...existing.filter((m) => !placed.has(m.mac)), ...placements].filter((m) => m.cluster === name);
    const shape = { name, vip: vips.get(name) ?? null };
    const was = checkTopology(shape, before);
    const now = checkTopology(shape, after);
    for (const p of now.problems) {
      const old = was.problems.find((x) => x.rule === p.rule);
      if (old && p.macs.every((mac) => old.macs.includes(mac))) continue;
      const newcomer = p.macs.map((mac) => placed.get(mac)).find((x) => x !== undefined && !old?.macs.includes(x.mac));
      problems.push({ ...p, cluster: name, row: newcomer?.row });
    }
    warnings.push(...now.warnings);
  }
  return { problems, warnings };
}
