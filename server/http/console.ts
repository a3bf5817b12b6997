import { existsSync } from 'node:fs';
import { join } from 'node:path';
import express, { Router, type RequestHandler } from 'express';
import { PACKAGE_ROOT } from '../lib/paths.js';

/**
 * The web console at `/`: one HTML page, a stylesheet and ES modules, all served from here (no
 * CDN; it works on an isolated provisioning network). The page and stylesheet come from the
 * source tree (`web/`), the scripts from their compiled form (`dist/web/`, `npm run build`).
 */
export const CONSOLE_STATIC_DIR = join(PACKAGE_ROOT, 'web');
export const CONSOLE_SCRIPTS_DIR = join(PACKAGE_ROOT, 'dist', 'web');

/** Nothing but our own origin: no inline script, no framing (clickjacking on the power buttons). */
export const CONSOLE_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const headers: RequestHandler = (_req, res, next) => {
  res.setHeader('Content-Security-Policy', CONSOLE_CSP);
  res.setHeader('X-Content-Type-Options', 'nosniff');
  res.setHeader('Referrer-Policy', 'no-referrer');
  res.locals.metricsRoute = 'console';
  next();
};

export function consoleRouter(dirs: { readonly static: string; readonly scripts: string } = { static: CONSOLE_STATIC_DIR, scripts: CONSOLE_SCRIPTS_DIR }): Router {
  const r = Router();
  // Small files that change with each release: revalidate every time, never serve a stale script.
  const opts = { index: false, fallthrough: true, etag: true, lastModified: true, cacheControl: true, maxAge: 0 } as const;
  r.get('/', headers, (_req, res) => {
    res.sendFile(join(dirs.static, 'index.html'), { headers: { 'Cache-Control': 'no-cache' } });
  });
  r.use('/console/js', headers, (req, res, next) => {
    if (!existsSync(join(dirs.scripts, 'main.js'))) {
      res.status(503).type('text/plain').send('the console scripts are not built: run "npm run build"\n');
      return;
    }
    next();
  }, express.static(dirs.scripts, opts));
  r.use('/console', headers, express.static(join(dirs.static, 'assets'), opts));
  return r;
}
