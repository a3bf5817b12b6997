/**
 * The items under each key, in their order; items whose key is null or undefined are left out.
 * (Map.groupBy does this from Node 21; racksmith runs on 20.)
 */
export function groupBy<T, K>(items: Iterable<T>, key: (item: T) => K | null | undefined): Map<K, T[]> {
  const groups = new Map<K, T[]>();
  for (const item of items) {
    const k = key(item);
    if (k === null || k === undefined) continue;
    const list = groups.get(k);
    if (list) list.push(item);
    else groups.set(k, [item]);
  }
  return groups;
}
