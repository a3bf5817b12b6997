import type { NextFunction, Request, Response } from 'express';
import type { ResolvedArtifact } from '../artifacts/store.js';
import type { FileWorkerPool } from '../artifacts/file-workers.js';
import { wholeFileHead, wholeFileRequest } from '../artifacts/file-response.js';
import { peerAddress } from './client-address.js';

/** Sends an artifact's bytes, once racksmith has decided and recorded the request. */
export type ArtifactSender = (req: Request, res: Response, art: ResolvedArtifact, next: NextFunction) => void;

/** In the main process, the chunk size `send` reads and writes by (docs/artifacts.md has the measurements). */
export const IN_PROCESS_CHUNK = 1 << 20;

/**
 * In this process, through Express's `send` (Range and If-Range, conditional GET, HEAD,
 * Last-Modified), reading `chunkBytes` at a time: fewer, larger reads and writes per byte than
 * the stream default of 64 KiB.
 */
export function inProcessSender(chunkBytes = IN_PROCESS_CHUNK): ArtifactSender {
  return (_req, res, art, next) => {
    // `send` hands its options to fs.createReadStream, highWaterMark included. The content type
    // is the same for every artifact, and the same as the file workers' and the nginx front's.
    const options = {
      acceptRanges: true,
      lastModified: true,
      cacheControl: false,
      dotfiles: 'allow' as const,
      headers: { 'Cache-Control': 'public, max-age=3600', 'Content-Type': 'application/octet-stream' },
      highWaterMark: chunkBytes,
    };
    res.sendFile(art.path, options, (err) => {
      if (err && !res.headersSent) next(err);
    });
  };
}

/**
 * By the file workers: a plain GET of a whole file is handed over with its response head and
 * the connection; anything else (Range, conditional, HEAD), or no worker ready, goes to `fallback`.
 * The access log line is written when the worker reports, with the bytes it sent.
 */
export function workerSender(pool: FileWorkerPool, fallback: ArtifactSender): ArtifactSender {
  return (req, res, art, next) => {
    if (!wholeFileRequest(req.method, req.headers)) return fallback(req, res, art, next);
    const started = performance.now();
    const head = wholeFileHead(art, { 'X-Request-Id': req.id }, new Date());
    const remote = peerAddress(req);
    const handed = pool.hand(req.socket, { path: art.path, size: art.size, mtimeMs: art.mtimeMs, head }, (r) => {
      const line = { method: req.method, path: req.path, status: 200, ms: Math.round(performance.now() - started), bytes: r.bytes, remote, by: 'file worker' };
      if (r.error && r.bytes < art.size) req.log.info({ ...line, cut: r.error }, 'http');
      else req.log.info(line, 'http');
    });
    if (!handed) fallback(req, res, art, next);
  };
}
