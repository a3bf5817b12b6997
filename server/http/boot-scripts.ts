import type { BootScriptRecord, MachineRepo } from '../inventory/store.js';

/**
 * Group commit for the boot path: the steps of every boot script answered in one turn of the
 * event loop are written in one transaction, after the turn (setImmediate), and each request is
 * answered once its step has committed. A rack in its wait loop, or powered on at once, asks
 * for scripts by the hundred a second; one commit per turn instead of four per request keeps
 * the store's writes off the answer's critical path (docs/artifacts.md has the measurements).
 */
export type BootScriptRecorder = (step: BootScriptRecord) => Promise<void>;

/** Steps in one transaction at most: a long burst is committed in slices, not held in one. */
const MAX_BATCH = 256;

export function bootScriptRecorder(machines: Pick<MachineRepo, 'recordBootScripts'>): BootScriptRecorder {
  const queue: { step: BootScriptRecord; resolve: () => void; reject: (err: Error) => void }[] = [];
  let scheduled = false;

  function flush(): void {
    scheduled = false;
    const batch = queue.splice(0, MAX_BATCH);
    if (queue.length > 0) schedule();
    machines.recordBootScripts(batch.map((b) => b.step)).then(
      (outcomes) =>
        outcomes.forEach((o, i) => {
          const b = batch[i];
          if (!b) return;
          if (o.ok) b.resolve();
          else b.reject(o.error);
        }),
      (err: unknown) => {
        for (const b of batch) b.reject(err instanceof Error ? err : new Error(String(err)));
      },
    );
  }

  function schedule(): void {
    if (scheduled) return;
    scheduled = true;
    setImmediate(flush);
  }

  return (step) =>
    new Promise<void>((resolve, reject) => {
      queue.push({ step, resolve, reject });
      schedule();
    });
}
