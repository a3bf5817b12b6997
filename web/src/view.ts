import type { InventoryEvent, Who } from './api.js';

/** What every page gets: who is signed in, the route's parameters, and hooks for leaving. */
export interface ViewContext {
  readonly who: Who;
  readonly params: readonly string[];
  navigate(hash: string): void;
  /** Runs when the page is left (timers, subscriptions); at once if it was already left. */
  onLeave(fn: () => void): void;
  /** The page's handler for live events, for as long as it is the page on screen. */
  live(fn: (e: InventoryEvent) => void): void;
}

/**
 * A page renders into its own element, which goes on screen when the page has loaded and only if
 * it is still the current page: a slow page or a late timer of a page already left never
 * overwrites the one in front of the user.
 */
export type View = (ctx: ViewContext, el: HTMLElement) => Promise<void>;
