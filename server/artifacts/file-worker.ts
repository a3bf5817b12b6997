/**
 * A file worker: a child process that sends artifacts' bytes on connections the main process
 * hands it (file-workers.ts), so that a rack's kernel, initrd and ISO downloads are copied on
 * other cores than the one racksmith decides, records and answers DHCP on. It never decides
 * anything: it writes the head it was given, then the file, then closes the connection, and says
 * how it went.
 */
import { open } from 'node:fs/promises';
import type { Socket } from 'node:net';
import { pipeline } from 'node:stream/promises';
import type { FileJob, WorkerMessage, WorkerReport } from './file-workers.js';

/** Larger reads and writes than the stream default of 64 KiB: fewer system calls per byte. */
const CHUNK = 1 << 20;
/** A client that takes nothing for this long is cut (the main process's timeouts no longer apply). */
const IDLE_MS = 120_000;

const sockets = new Set<Socket>();

function report(r: WorkerReport): void {
  if (process.connected) process.send?.(r);
}

async function serve(job: FileJob, socket: Socket): Promise<void> {
  const started = performance.now();
  sockets.add(socket);
  socket.setTimeout(IDLE_MS, () => socket.destroy(new Error(`the client took nothing for ${IDLE_MS / 1000} s`)));
  socket.on('error', () => undefined);
  const done = (error?: string): void => {
    sockets.delete(socket);
    report({ type: 'sent', id: job.id, bytes: socket.bytesWritten, ms: performance.now() - started, ...(error ? { error } : {}) });
  };
  let fh;
  try {
    fh = await open(job.path, 'r');
    const st = await fh.stat();
    // Replaced between the decision and now: the length in the head would be wrong.
    if (st.size !== job.size || st.mtimeMs !== job.mtimeMs) throw new Error('the file changed after racksmith chose it');
  } catch (err) {
    await fh?.close();
    const body = JSON.stringify({ error: { code: 'ERR_ARTIFACT_CHANGED', message: 'the artifact changed or vanished while being sent; ask again' } });
    socket.end(`HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n${body}`);
    done((err as Error).message);
    return;
  }
  try {
    socket.write(job.head);
    await pipeline(fh.createReadStream({ highWaterMark: CHUNK, autoClose: true }), socket);
    done();
  } catch (err) {
    socket.destroy();
    done((err as Error).message);
  }
}

process.on('message', (m: WorkerMessage, handle?: unknown) => {
  if (m.type === 'abort') {
    for (const s of sockets) s.destroy();
    return;
  }
  if (m.type === 'file' && handle) void serve(m, handle as Socket);
});
// The main process is gone: nobody decides or records any more.
process.on('disconnect', () => process.exit(0));
report({ type: 'ready' });
