import { fork, type ChildProcess } from 'node:child_process';
import type { Socket } from 'node:net';
import type { Logger } from '../lib/log.js';
import type { Service, ServiceHealth, ServiceState } from '../lib/service.js';

/**
 * The file workers (`artifact-workers`): child processes that send artifacts' bytes, so that the
 * copying of a rack's downloads runs on other cores than the main process's event loop, where
 * racksmith decides, records events and answers DHCP, TFTP and boot scripts. The main process
 * keeps every decision — which file, for which machine, the `http.artifact` event — writes the
 * response head into the job and hands the connection over (the socket's descriptor travels
 * over the IPC channel); the worker sends the file and closes the connection.
 *
 * Workers start on the first download (a racksmith that serves no artifact runs none), restart
 * after a pause when one dies, and are told to cut their connections when the HTTP service's
 * stop grace runs out. While no worker is ready, the caller sends the file itself.
 */
export interface FileJob {
  readonly type: 'file';
  readonly id: number;
  readonly path: string;
  readonly size: number;
  readonly mtimeMs: number;
  /** The status line and headers, already decided. */
  readonly head: string;
}
export type WorkerMessage = FileJob | { readonly type: 'abort' };

export interface FileSent {
  readonly type: 'sent';
  readonly id: number;
  readonly bytes: number;
  readonly ms: number;
  /** Why the transfer ended early (the client went away, the file changed…). */
  readonly error?: string;
}
export type WorkerReport = FileSent | { readonly type: 'ready' };

export interface FileWorkerPool extends Service {
  /**
   * Hands the connection to a worker with the job; `done` hears how it went. False when no worker
   * is ready or the connection still has bytes of an earlier response to write: send it yourself.
   */
  hand(socket: Socket, job: Omit<FileJob, 'type' | 'id'>, done: (r: FileSent) => void): boolean;
  /** Cuts every connection the workers hold (the HTTP stop grace ran out). */
  abort(): void;
}

interface Worker {
  readonly child: ChildProcess;
  ready: boolean;
  /** Jobs handed and not yet reported, by id. */
  readonly jobs: Map<number, (r: FileSent) => void>;
}

const RESTART_MS = 1000;

export function createFileWorkers(count: number, log: Logger, entry = new URL('./file-worker.js', import.meta.url)): FileWorkerPool {
  const workers: Worker[] = [];
  let state: ServiceState = count > 0 ? 'stopped' : 'off';
  let next = 0;
  let ids = 0;
  let handed = 0;
  let restarts = 0;
  let stopping = false;
  let started = false;
  const timers = new Set<NodeJS.Timeout>();

  function spawnWorker(slot: number): void {
    const child = fork(entry, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], serialization: 'json' });
    const w: Worker = { child, ready: false, jobs: new Map() };
    workers[slot] = w;
    child.on('message', (m: WorkerReport) => {
      if (m.type === 'ready') {
        w.ready = true;
        return;
      }
      const done = w.jobs.get(m.id);
      w.jobs.delete(m.id);
      done?.(m);
    });
    child.on('error', (err) => log.warn({ err, worker: child.pid }, 'file worker error'));
    child.on('exit', (code, signal) => {
      w.ready = false;
      for (const [id, done] of w.jobs) done({ type: 'sent', id, bytes: 0, ms: 0, error: `file worker exited (${signal ?? code})` });
      w.jobs.clear();
      if (stopping) return;
      restarts++;
      log.error({ worker: child.pid, code, signal }, 'file worker exited; starting another');
      const t = setTimeout(() => {
        timers.delete(t);
        if (!stopping) spawnWorker(slot);
      }, RESTART_MS);
      timers.add(t);
    });
  }

  return {
    name: 'artifact-workers',
    async start() {
      if (count === 0) return;
      stopping = false;
      state = 'serving';
    },
    async stop() {
      if (count === 0) return;
      stopping = true;
      state = 'stopping';
      for (const t of timers) clearTimeout(t);
      timers.clear();
      await Promise.all(
        workers.map(
          (w) =>
            new Promise<void>((resolve) => {
              if (w.child.exitCode !== null || w.child.signalCode !== null) return resolve();
              w.child.once('exit', () => resolve());
              w.child.kill('SIGTERM');
            }),
        ),
      );
      state = 'stopped';
    },
    health(): ServiceHealth {
      const ready = workers.filter((w) => w.ready);
      return { state, detail: { workers: count, ready: ready.length, pids: ready.map((w) => w.child.pid), inFlight: workers.reduce((n, w) => n + w.jobs.size, 0), handed, restarts } };
    },
    hand(socket, job, done) {
      if (state !== 'serving') return false;
      if (!started) {
        started = true;
        for (let i = 0; i < count; i++) spawnWorker(i);
      }
      if (socket.destroyed || socket.writableLength > 0) return false;
      for (let i = 0; i < workers.length; i++) {
        const w = workers[(next + i) % workers.length];
        if (!w?.ready || !w.child.connected) continue;
        next = (next + i + 1) % workers.length;
        const id = ++ids;
        w.jobs.set(id, done);
        handed++;
        // keepOpen: this process closes its copy of the descriptor itself, once the message and
        // the descriptor are on their way, through the socket object (so the HTTP server lets go).
        w.child.send({ type: 'file', id, ...job } satisfies FileJob, socket, { keepOpen: true }, (err) => {
          if (err) {
            w.jobs.delete(id);
            done({ type: 'sent', id, bytes: 0, ms: 0, error: `could not hand the connection over: ${err.message}` });
          }
          socket.destroy();
        });
        return true;
      }
      return false;
    },
    abort() {
      for (const w of workers) if (w.child.connected) w.child.send({ type: 'abort' } satisfies WorkerMessage);
    },
  };
}
