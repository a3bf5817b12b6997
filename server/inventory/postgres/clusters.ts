import { conflict, notFound } from '../../lib/errors.js';
import type { Cluster } from '../model.js';
import { ubuntuReleaseOf } from '../os.js';
import type { ClusterPatch, ClusterRepo, NewCluster } from '../store.js';
import { clusterFromRow, type ClusterRow } from '../sqlite/rows.js';
import { CLUSTER_COLUMNS, newClusterRow, osOf } from '../sqlite/clusters.js';
import type { PgDb, Queryable } from './db.js';
import type { AppendEvent } from './events.js';

/** Clusters on PostgreSQL: the SQLite repository's rules, each write one transaction with its event. */
export function createPgClusterRepo(db: PgDb, now: () => Date, appendEvent: AppendEvent): ClusterRepo {
  const row = async (c: Queryable, name: string, forUpdate = false): Promise<ClusterRow | null> =>
    (await c.query<ClusterRow>(`SELECT * FROM clusters WHERE name = $1${forUpdate ? ' FOR UPDATE' : ''}`, [name])).rows[0] ?? null;
  const load = async (c: Queryable, name: string, forUpdate = false): Promise<Cluster> => {
    const r = await row(c, name, forUpdate);
    if (!r) throw notFound('ERR_UNKNOWN_CLUSTER', `no cluster named "${name}"`);
    return clusterFromRow(r);
  };

  return {
    async create(input: NewCluster) {
      return db.tx(async (c) => {
        const row = newClusterRow(input, now().toISOString());
        const inserted = await c.query(
          `INSERT INTO clusters (${row.columns.join(', ')}) VALUES (${row.values.map((_, i) => `$${i + 1}`).join(', ')}) ON CONFLICT (name) DO NOTHING`,
          row.values,
        );
        if (inserted.rowCount === 0) throw conflict('ERR_DUPLICATE', `a cluster named "${input.name}" already exists`, 'name');
        await appendEvent(c, { cluster: input.name, type: 'cluster.created', source: 'api', message: `cluster ${input.name} created` });
        return load(c, input.name);
      });
    },
    async get(name) {
      const r = await row(db.any, name);
      return r ? clusterFromRow(r) : null;
    },
    async list() {
      return (await db.all<ClusterRow>('SELECT * FROM clusters ORDER BY name')).map(clusterFromRow);
    },
    async update(name, given: ClusterPatch) {
      return db.tx(async (c) => {
        let patch = given;
        await load(c, name, true);
        if (patch.os !== undefined || patch.ubuntuRelease !== undefined) {
          // One OS, stored in both columns.
          const os = osOf(patch as NewCluster);
          patch = { ...patch, os, ubuntuRelease: undefined };
          await c.query('UPDATE clusters SET ubuntu_release = $1 WHERE name = $2', [ubuntuReleaseOf(os) ?? '', name]);
        }
        const sets: string[] = [];
        const values: unknown[] = [];
        for (const [key, column] of Object.entries(CLUSTER_COLUMNS) as [keyof ClusterPatch, string][]) {
          if (patch[key] === undefined) continue;
          values.push(patch[key]);
          sets.push(`${column} = $${values.length}`);
        }
        if (sets.length === 0) return load(c, name);
        values.push(now().toISOString(), name);
        await c.query(`UPDATE clusters SET ${sets.join(', ')}, updated_at = $${values.length - 1} WHERE name = $${values.length}`, values);
        await appendEvent(c, { cluster: name, type: 'cluster.updated', source: 'api', message: `updated ${Object.keys(given).join(', ')}` });
        return load(c, name);
      });
    },
    async setState(name, state, message) {
      return db.tx(async (c) => {
        const before = await load(c, name, true);
        if (before.state === state) return before;
        await c.query('UPDATE clusters SET state = $1, updated_at = $2 WHERE name = $3', [state, now().toISOString(), name]);
        await appendEvent(c, { cluster: name, type: 'cluster.state', source: 'orchestrator', message, data: { from: before.state, to: state } });
        return load(c, name);
      });
    },
    async setUpgrade(name, upgrade, message, opts = {}) {
      return db.tx(async (c) => {
        const before = await load(c, name, true);
        const version = opts.kubernetesVersion ?? before.kubernetesVersion;
        await c.query('UPDATE clusters SET upgrade = $1, kubernetes_version = $2, updated_at = $3 WHERE name = $4', [upgrade ? JSON.stringify(upgrade) : null, version, now().toISOString(), name]);
        await appendEvent(c, {
          cluster: name,
          type: 'cluster.upgrade',
          source: opts.source ?? 'orchestrator',
          message,
          data: { upgrade: upgrade ? { ...upgrade } : null, ...(version !== before.kubernetesVersion ? { kubernetesVersion: { from: before.kubernetesVersion, to: version } } : {}) },
        });
        return load(c, name);
      });
    },
    async delete(name) {
      await db.tx(async (c) => {
        await load(c, name, true);
        const n = (await c.query<{ n: number }>('SELECT COUNT(*)::int AS n FROM machines WHERE cluster = $1', [name])).rows[0]?.n ?? 0;
        if (n > 0) throw conflict('ERR_CLUSTER_NOT_EMPTY', `cluster "${name}" still has ${n} machine(s); move or delete them first`, 'name');
        await c.query('DELETE FROM secrets WHERE scope = $1', [`cluster:${name}`]);
        await c.query('DELETE FROM clusters WHERE name = $1', [name]);
        await appendEvent(c, { cluster: name, type: 'cluster.deleted', source: 'api', message: `cluster ${name} deleted` });
      });
    },
  };
}
