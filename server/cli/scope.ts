import { closest } from '../lib/words.js';
import { ApiError, type ApiClient } from './client.js';

/**
 * A rack or cluster named on the command line must exist: `watch --rack r21` for a rack called
 * r12 would otherwise show an empty table forever, and `machines list --cluster prod` an empty one.
 */
export async function checkScope(client: ApiClient, scope: { readonly cluster?: string | undefined; readonly rack?: string | undefined }): Promise<void> {
  if (scope.cluster !== undefined) {
    const clusters = await client.request<{ name: string }[]>('GET', '/clusters');
    const names = clusters.map((c) => c.name);
    if (!names.includes(scope.cluster)) throw unknown('cluster', scope.cluster, names);
  }
  if (scope.rack !== undefined) {
    const racks = await client.request<{ name: string }[]>('GET', '/racks');
    const names = racks.map((r) => r.name);
    if (!names.includes(scope.rack)) throw unknown('rack', scope.rack, names);
  }
}

function unknown(what: 'rack' | 'cluster', name: string, known: readonly string[]): ApiError {
  const guess = closest(name, known);
  const list = known.length === 0 ? `there are no ${what}s yet` : `${what}s: ${known.slice(0, 20).join(', ')}${known.length > 20 ? ', …' : ''}`;
  return new ApiError(404, what === 'rack' ? 'ERR_UNKNOWN_RACK' : 'ERR_UNKNOWN_CLUSTER', `no ${what} named "${name}"${guess ? ` (did you mean ${guess}?)` : ''}; ${list}`);
}
