import type { IncomingHttpHeaders } from 'node:http';

/**
 * The one answer a file worker gives: a plain GET of a whole artifact, `200` with its length and
 * `Connection: close` (the worker owns the connection from then on, so it ends it). Everything
 * else about serving files — Range and If-Range, conditional GETs, HEAD — stays with Express's
 * `send` in the main process: those requests are few (a resumed download), and `send` already
 * implements their rules.
 */
const CONDITIONAL = ['range', 'if-range', 'if-match', 'if-none-match', 'if-modified-since', 'if-unmodified-since'] as const;

export function wholeFileRequest(method: string, headers: IncomingHttpHeaders): boolean {
  return method === 'GET' && CONDITIONAL.every((h) => headers[h] === undefined);
}

export interface FileFacts {
  readonly size: number;
  readonly mtimeMs: number;
}

/** Header values are ours (no client text), but a line break would still end the head early. */
function headerValue(v: string): string {
  if (/[\r\n]/.test(v)) throw new Error('a header value cannot hold a line break');
  return v;
}

/** The status line and headers, as the in-process path's `send` would write them for the same file. */
export function wholeFileHead(f: FileFacts, extra: Readonly<Record<string, string>>, now: Date): string {
  const headers: [string, string][] = [
    ['Date', now.toUTCString()],
    ['Content-Type', 'application/octet-stream'],
    ['Content-Length', String(f.size)],
    ['Accept-Ranges', 'bytes'],
    ['Last-Modified', new Date(Math.floor(f.mtimeMs / 1000) * 1000).toUTCString()],
    ['Cache-Control', 'public, max-age=3600'],
    ...Object.entries(extra),
    ['Connection', 'close'],
  ];
  return `HTTP/1.1 200 OK\r\n${headers.map(([k, v]) => `${k}: ${headerValue(v)}\r\n`).join('')}\r\n`;
}
