import type { Who } from './api.js';

/** What every page gets: who is signed in, the route's parameters, and hooks for leaving. */
export interface ViewContext {
  readonly who: Who;
  readonly params: readonly string[];
  navigate(hash: string): void;
  /** Runs when the page is left (timers, subscriptions). */
  onLeave(fn: () => void): void;
}

export type View = (ctx: ViewContext, el: HTMLElement) => Promise<void>;
