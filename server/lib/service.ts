import type { Logger } from './log.js';

/**
 * One lifecycle for every service (DHCP, TFTP, HTTP, orchestrator, power): `main.ts` starts them
 * in order, stops them in reverse, and the first fatal error stops the rest cleanly.
 */
export interface ServiceContext {
  /** Aborted when the process is shutting down. */
  readonly signal: AbortSignal;
  readonly log: Logger;
  /** A fault the service cannot recover from: the process stops every service and exits non-zero. */
  fatal(err: Error): void;
}

export type ServiceState = 'starting' | 'serving' | 'stopping' | 'stopped' | 'off' | 'failed';

export interface ServiceHealth {
  readonly state: ServiceState;
  readonly detail?: Record<string, unknown>;
}

export interface Service {
  readonly name: string;
  /** Resolves once the service is serving (sockets bound); rejects with a ServiceStartError. */
  start(ctx: ServiceContext): Promise<void>;
  /** Stops accepting, finishes in-flight work, releases every socket and timer. */
  stop(): Promise<void>;
  health(): ServiceHealth;
}

/** A service that could not start: one line naming the service, the setting and the cause. */
export class ServiceStartError extends Error {
  readonly service: string;
  readonly setting: string;
  constructor(service: string, setting: string, cause: string) {
    super(`${service}: cannot start (${setting}): ${cause}`);
    this.name = 'ServiceStartError';
    this.service = service;
    this.setting = setting;
  }
}

/** Human words for the errno codes a bind() gives. */
export function bindFailure(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  switch (e.code) {
    case 'EADDRINUSE':
      return 'the port is already in use by another process';
    case 'EACCES':
      return 'permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)';
    case 'EADDRNOTAVAIL':
      return 'the address is not assigned to any interface here';
    case 'ENODEV':
      return 'no such interface';
    default:
      return e.message ?? String(err);
  }
}
