import { conflict, notFound } from '../../lib/errors.js';
import type { Cluster } from '../model.js';
import { defaultInstallMethod, osOfUbuntuRelease, ubuntuReleaseOf, type OsId } from '../os.js';
import type { ClusterPatch, ClusterRepo, NewCluster, NewEvent } from '../store.js';
import { prepared, type Db } from './db.js';
import { clusterFromRow, type ClusterRow } from './rows.js';

/** The OS a new cluster or a patch names: `os`, else the older `ubuntuRelease`. */
export function osOf(input: Pick<NewCluster, 'os' | 'ubuntuRelease'>): OsId {
  if (input.os) return input.os;
  if (input.ubuntuRelease) return osOfUbuntuRelease(input.ubuntuRelease);
  throw new Error('a cluster needs an os (or an ubuntuRelease)');
}

/** The column of each patchable field (both engines). */
export const CLUSTER_COLUMNS: Record<keyof ClusterPatch, string> = {
  ubuntuRelease: 'ubuntu_release',
  os: 'os',
  installMethod: 'install_method',
  installDiskRule: 'install_disk_rule',
  imageUrl: 'image_url',
  imageSha256: 'image_sha256',
  kubernetesVersion: 'kubernetes_version',
  containerRuntime: 'container_runtime',
  cni: 'cni',
  podSubnet: 'pod_subnet',
  serviceSubnet: 'service_subnet',
  controlPlaneEndpoint: 'control_plane_endpoint',
  vip: 'vip',
};

/** A new cluster's row, columns and values in the same order (both engines insert it as it is). */
export function newClusterRow(input: NewCluster, at: string): { columns: string[]; values: unknown[] } {
  const os = osOf(input);
  const row: Record<string, unknown> = {
    name: input.name,
    ubuntu_release: ubuntuReleaseOf(os) ?? '',
    kubernetes_version: input.kubernetesVersion,
    container_runtime: input.containerRuntime,
    cni: input.cni,
    pod_subnet: input.podSubnet ?? null,
    service_subnet: input.serviceSubnet ?? null,
    control_plane_endpoint: input.controlPlaneEndpoint ?? null,
    state: 'pending',
    created_at: at,
    updated_at: at,
    vip: input.vip ?? null,
    os,
    install_method: input.installMethod ?? defaultInstallMethod(os),
    install_disk_rule: input.installDiskRule ?? 'smallest',
    image_url: input.imageUrl ?? null,
    image_sha256: input.imageSha256 ?? null,
  };
  return { columns: Object.keys(row), values: Object.values(row) };
}

export function createClusterRepo(db: Db, now: () => Date, appendEvent: (e: NewEvent) => void): ClusterRepo {
  const sql = prepared(db);
  const byName = sql<[string], ClusterRow>('SELECT * FROM clusters WHERE name = ?');

  function load(name: string): Cluster {
    const row = byName.get(name);
    if (!row) throw notFound('ERR_UNKNOWN_CLUSTER', `no cluster named "${name}"`);
    return clusterFromRow(row);
  }

  return {
    async create(input: NewCluster) {
      return db
        .transaction(() => {
          if (byName.get(input.name)) throw conflict('ERR_DUPLICATE', `a cluster named "${input.name}" already exists`, 'name');
          const row = newClusterRow(input, now().toISOString());
          sql(`INSERT INTO clusters (${row.columns.join(', ')}) VALUES (${row.values.map(() => '?').join(', ')})`).run(...row.values);
          appendEvent({ cluster: input.name, type: 'cluster.created', source: 'api', message: `cluster ${input.name} created` });
          return load(input.name);
        })
        .immediate();
    },
    async get(name) {
      const row = byName.get(name);
      return row ? clusterFromRow(row) : null;
    },
    async list() {
      return sql<[], ClusterRow>('SELECT * FROM clusters ORDER BY name').all().map(clusterFromRow);
    },
    async update(name, given: ClusterPatch) {
      let patch = given;
      return db
        .transaction(() => {
          load(name);
          if (patch.os !== undefined || patch.ubuntuRelease !== undefined) {
            // One OS, stored in both columns.
            const os = osOf(patch as NewCluster);
            patch = { ...patch, os, ubuntuRelease: undefined };
            sql('UPDATE clusters SET ubuntu_release = ? WHERE name = ?').run(ubuntuReleaseOf(os) ?? '', name);
          }
          const sets: string[] = [];
          const values: unknown[] = [];
          for (const [key, column] of Object.entries(CLUSTER_COLUMNS) as [keyof ClusterPatch, string][]) {
            if (patch[key] === undefined) continue;
            sets.push(`${column} = ?`);
            values.push(patch[key]);
          }
          if (sets.length === 0) return load(name);
          sql(`UPDATE clusters SET ${sets.join(', ')}, updated_at = ? WHERE name = ?`).run(...values, now().toISOString(), name);
          appendEvent({ cluster: name, type: 'cluster.updated', source: 'api', message: `updated ${Object.keys(given).join(', ')}` });
          return load(name);
        })
        .immediate();
    },
    async setState(name, state, message) {
      return db
        .transaction(() => {
          const before = load(name);
          if (before.state === state) return before;
          sql('UPDATE clusters SET state = ?, updated_at = ? WHERE name = ?').run(state, now().toISOString(), name);
          appendEvent({ cluster: name, type: 'cluster.state', source: 'orchestrator', message, data: { from: before.state, to: state } });
          return load(name);
        })
        .immediate();
    },
    async setUpgrade(name, upgrade, message, opts = {}) {
      return db
        .transaction(() => {
          const before = load(name);
          const version = opts.kubernetesVersion ?? before.kubernetesVersion;
          sql('UPDATE clusters SET upgrade = ?, kubernetes_version = ?, updated_at = ? WHERE name = ?').run(upgrade ? JSON.stringify(upgrade) : null, version, now().toISOString(), name);
          appendEvent({
            cluster: name,
            type: 'cluster.upgrade',
            source: opts.source ?? 'orchestrator',
            message,
            data: { upgrade: upgrade ? { ...upgrade } : null, ...(version !== before.kubernetesVersion ? { kubernetesVersion: { from: before.kubernetesVersion, to: version } } : {}) },
          });
          return load(name);
        })
        .immediate();
    },
    async delete(name) {
      db.transaction(() => {
        load(name);
        const n = sql<[string], { n: number }>('SELECT COUNT(*) AS n FROM machines WHERE cluster = ?').get(name)?.n ?? 0;
        if (n > 0) throw conflict('ERR_CLUSTER_NOT_EMPTY', `cluster "${name}" still has ${n} machine(s); move or delete them first`, 'name');
        sql('DELETE FROM secrets WHERE scope = ?').run(`cluster:${name}`);
        sql('DELETE FROM clusters WHERE name = ?').run(name);
        appendEvent({ cluster: name, type: 'cluster.deleted', source: 'api', message: `cluster ${name} deleted` });
      }).immediate();
    },
  };
}
