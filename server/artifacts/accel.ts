import { sep } from 'node:path';
import type { ResolvedArtifact } from './store.js';

/**
 * Where an artifacts front (nginx, packaging/nginx/racksmith-artifacts.conf.template) finds a
 * file racksmith names in `X-Accel-Redirect`: an internal location per directory, mapped by the
 * front to the artifacts directory or the cache. The name is the file's real path under its
 * directory, already jailed by the store; a path the front could read differently (a segment
 * that is empty, hidden or has characters outside the artifact names' set) is not handed over,
 * and racksmith sends that file itself.
 */
export const ACCEL_PREFIX = '/_racksmith/artifacts';

const SEGMENT = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export function accelUri(a: Pick<ResolvedArtifact, 'root' | 'relative'>): string | null {
  const segments = a.relative.split(sep);
  if (!segments.every((s) => SEGMENT.test(s))) return null;
  return `${ACCEL_PREFIX}/${a.root}/${segments.join('/')}`;
}
