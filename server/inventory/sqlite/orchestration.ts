import type { Mac } from '../../lib/mac.js';
import type { ClusterLock, OrchestrationRepo, StepRecord, StepState, StepWrite } from '../store.js';
import type { Db } from './db.js';

/**
 * Orchestration steps and the per-cluster lock in SQLite. Every write is one transaction, so a
 * kill -9 leaves either the step as it was or as it became, never half of it.
 *
 * The lock's expiry is compared with this process's clock; instances sharing a store are
 * expected to keep their clocks in sync (NTP), and the lock's lifetime (a minute by default) is
 * far above any sane skew.
 */
export interface StepRow {
  cluster: string;
  id: string;
  seq: number;
  kind: string;
  mac: string | null;
  state: string;
  attempts: number;
  started_at: string | null;
  ended_at: string | null;
  output: string;
  error: string | null;
  data: string;
}

export interface LockRow {
  cluster: string;
  owner: string;
  holder: string;
  expires_at_ms: number;
}

export function stepFromRow(r: StepRow): StepRecord {
  return {
    cluster: r.cluster,
    id: r.id,
    kind: r.kind,
    mac: r.mac as Mac | null,
    state: r.state as StepState,
    attempts: r.attempts,
    startedAt: r.started_at,
    endedAt: r.ended_at,
    output: JSON.parse(r.output) as string[],
    error: r.error,
    data: JSON.parse(r.data) as Record<string, unknown>,
    seq: r.seq,
  };
}

export function lockFromRow(r: LockRow): ClusterLock {
  return { cluster: r.cluster, owner: r.owner, holder: r.holder, expiresAt: new Date(r.expires_at_ms).toISOString() };
}

export function createOrchestrationRepo(db: Db, now: () => Date): OrchestrationRepo {
  const list = db.prepare<[string], StepRow>('SELECT * FROM orchestration_steps WHERE cluster = ? ORDER BY seq');
  const all = db.prepare<[], StepRow>('SELECT * FROM orchestration_steps ORDER BY cluster, seq');
  const one = db.prepare<[string, string], StepRow>('SELECT * FROM orchestration_steps WHERE cluster = ? AND id = ?');
  const nextSeq = db.prepare<[string], { n: number | null }>('SELECT MAX(seq) AS n FROM orchestration_steps WHERE cluster = ?');
  const upsert = db.prepare(
    `INSERT INTO orchestration_steps (cluster, id, seq, kind, mac, state, attempts, started_at, ended_at, output, error, data)
     VALUES (@cluster, @id, @seq, @kind, @mac, @state, @attempts, @started_at, @ended_at, @output, @error, @data)
     ON CONFLICT (cluster, id) DO UPDATE SET kind = excluded.kind, mac = excluded.mac, state = excluded.state,
       attempts = excluded.attempts, started_at = excluded.started_at, ended_at = excluded.ended_at,
       output = excluded.output, error = excluded.error, data = excluded.data`,
  );
  const lockRow = db.prepare<[string], LockRow>('SELECT * FROM orchestration_locks WHERE cluster = ?');

  return {
    async steps(cluster) {
      return list.all(cluster).map(stepFromRow);
    },
    async allSteps() {
      return all.all().map(stepFromRow);
    },
    async saveStep(step: StepWrite) {
      return db
        .transaction(() => {
          const existing = one.get(step.cluster, step.id);
          upsert.run({
            cluster: step.cluster,
            id: step.id,
            seq: existing?.seq ?? (nextSeq.get(step.cluster)?.n ?? 0) + 1,
            kind: step.kind,
            mac: step.mac,
            state: step.state,
            attempts: step.attempts,
            started_at: step.startedAt,
            ended_at: step.endedAt,
            output: JSON.stringify(step.output),
            error: step.error,
            data: JSON.stringify(step.data),
          });
          const row = one.get(step.cluster, step.id);
          if (!row) throw new Error(`step ${step.cluster}/${step.id} vanished inside its own transaction`);
          return stepFromRow(row);
        })
        .immediate();
    },
    async resetFailed(cluster) {
      return db
        .transaction(() => {
          const ids = list
            .all(cluster)
            .filter((r) => r.state === 'failed')
            .map((r) => r.id);
          db.prepare(`UPDATE orchestration_steps SET state = 'pending', attempts = 0, error = NULL WHERE cluster = ? AND state = 'failed'`).run(cluster);
          return ids;
        })
        .immediate();
    },
    async acquireLock(cluster, owner, holder, ttlMs) {
      return db
        .transaction(() => {
          const t = now().getTime();
          const row = lockRow.get(cluster);
          if (!row || row.owner === owner || row.expires_at_ms <= t) {
            db.prepare(
              `INSERT INTO orchestration_locks (cluster, owner, holder, expires_at_ms) VALUES (?, ?, ?, ?)
               ON CONFLICT (cluster) DO UPDATE SET owner = excluded.owner, holder = excluded.holder, expires_at_ms = excluded.expires_at_ms`,
            ).run(cluster, owner, holder, t + ttlMs);
          }
          const after = lockRow.get(cluster);
          if (!after) throw new Error(`lock of ${cluster} vanished inside its own transaction`);
          return lockFromRow(after);
        })
        .immediate();
    },
    async renewLock(cluster, owner, ttlMs) {
      const r = db
        .prepare('UPDATE orchestration_locks SET expires_at_ms = ? WHERE cluster = ? AND owner = ?')
        .run(now().getTime() + ttlMs, cluster, owner);
      return r.changes === 1;
    },
    async releaseLock(cluster, owner) {
      db.prepare('DELETE FROM orchestration_locks WHERE cluster = ? AND owner = ?').run(cluster, owner);
    },
    async lock(cluster) {
      const row = lockRow.get(cluster);
      return row ? lockFromRow(row) : null;
    },
  };
}
