/** The DHCP service's machine directory lives with the store that keeps it (inventory/directory.ts). */
export { DIRECTORY_PATCH_MAX, INVENTORY_CACHE_MS, lookupFeed, patchDirectory, type MachineFeed } from '../inventory/directory.js';
