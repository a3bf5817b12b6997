import type { ClusterLock, OrchestrationRepo, StepWrite } from '../store.js';
import { lockFromRow, stepFromRow, type LockRow, type StepRow } from '../sqlite/orchestration.js';
import type { PgDb } from './db.js';

/**
 * Orchestration steps and the per-cluster lock on PostgreSQL, shared by every instance: the lock
 * row says which instance drives a cluster and until when. The holder renews it while it drives;
 * an instance that dies (kill -9, a lost host) stops renewing, and once the row has expired the
 * next instance to look takes it and resumes from the persisted steps. As with SQLite, expiry is
 * compared with the instance's clock: instances keep theirs in sync (NTP), far within a lock's life.
 */
export function createPgOrchestrationRepo(db: PgDb, now: () => Date): OrchestrationRepo {
  return {
    async steps(cluster) {
      return (await db.all<StepRow>('SELECT * FROM orchestration_steps WHERE cluster = $1 ORDER BY seq', [cluster])).map(stepFromRow);
    },
    async allSteps() {
      return (await db.all<StepRow>('SELECT * FROM orchestration_steps ORDER BY cluster, seq')).map(stepFromRow);
    },
    async saveStep(step: StepWrite) {
      const row = await db.tx(async (c) => {
        // The cluster's steps are numbered one writer at a time.
        await c.query('SELECT 1 FROM clusters WHERE name = $1 FOR UPDATE', [step.cluster]);
        const r = await c.query<StepRow>(
          `INSERT INTO orchestration_steps (cluster, id, seq, kind, mac, state, attempts, started_at, ended_at, output, error, data)
           VALUES ($1, $2, (SELECT COALESCE(MAX(seq), 0) + 1 FROM orchestration_steps WHERE cluster = $1), $3, $4, $5, $6, $7, $8, $9, $10, $11)
           ON CONFLICT (cluster, id) DO UPDATE SET kind = excluded.kind, mac = excluded.mac, state = excluded.state,
             attempts = excluded.attempts, started_at = excluded.started_at, ended_at = excluded.ended_at,
             output = excluded.output, error = excluded.error, data = excluded.data
           RETURNING *`,
          [step.cluster, step.id, step.kind, step.mac, step.state, step.attempts, step.startedAt, step.endedAt, JSON.stringify(step.output), step.error, JSON.stringify(step.data)],
        );
        return r.rows[0]!;
      });
      return stepFromRow(row);
    },
    async resetFailed(cluster) {
      const rows = await db.all<{ id: string }>(
        `UPDATE orchestration_steps SET state = 'pending', attempts = 0, error = NULL WHERE cluster = $1 AND state = 'failed' RETURNING id, seq`,
        [cluster],
      );
      return (rows as unknown as { id: string; seq: number }[]).sort((a, b) => a.seq - b.seq).map((r) => r.id);
    },
    async acquireLock(cluster, owner, holder, ttlMs) {
      // One statement: free, expired or already ours → ours; else the row stays as it is.
      await db.run(
        `INSERT INTO orchestration_locks (cluster, owner, holder, expires_at_ms) VALUES ($1, $2, $3, $5::bigint + $4)
         ON CONFLICT (cluster) DO UPDATE SET owner = excluded.owner, holder = excluded.holder, expires_at_ms = excluded.expires_at_ms
         WHERE orchestration_locks.owner = excluded.owner OR orchestration_locks.expires_at_ms <= $5`,
        [cluster, owner, holder, ttlMs, now().getTime()],
      );
      const after = await db.one<LockRow>('SELECT * FROM orchestration_locks WHERE cluster = $1', [cluster]);
      if (!after) throw new Error(`lock of ${cluster} vanished right after it was taken`);
      return lockFromRow(after) satisfies ClusterLock;
    },
    async renewLock(cluster, owner, ttlMs) {
      return (await db.run(`UPDATE orchestration_locks SET expires_at_ms = $1 WHERE cluster = $2 AND owner = $3`, [now().getTime() + ttlMs, cluster, owner])) === 1;
    },
    async releaseLock(cluster, owner) {
      await db.run('DELETE FROM orchestration_locks WHERE cluster = $1 AND owner = $2', [cluster, owner]);
    },
    async lock(cluster) {
      const row = await db.one<LockRow>('SELECT * FROM orchestration_locks WHERE cluster = $1', [cluster]);
      return row ? lockFromRow(row) : null;
    },
  };
}
