/**
 * subiquity/curtin reporting webhook events (curtin/reporter/events.py): JSON objects such as
 * `{"event_type": "finish", "name": "cmd-install/stage-partitioning", "result": "FAIL",
 * "description": "…", "origin": "curtin", "timestamp": 1.7e9, "level": "INFO"}`. Parsed once;
 * a `finish` with result `FAIL` marks the install failed.
 */
export interface InstallerEvent {
  readonly eventType: string;
  readonly name: string;
  readonly result: string | null;
  readonly description: string;
  readonly origin: string | null;
  readonly failed: boolean;
}

export class InstallerEventError extends Error {
  readonly code = 'ERR_INSTALLER_EVENT';
  readonly field: string | undefined;
  constructor(message: string, field?: string) {
    super(message);
    this.name = 'InstallerEventError';
    this.field = field;
  }
}

function str(b: Record<string, unknown>, key: string, max: number): string | null {
  const v = b[key];
  if (v === undefined || v === null) return null;
  if (typeof v !== 'string' && typeof v !== 'number') throw new InstallerEventError(`${key} must be a string`, key);
  return String(v).replace(/[\r\n\0]+/g, ' ').slice(0, max);
}

export function parseInstallerEvent(body: unknown): InstallerEvent {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new InstallerEventError('expected a JSON object (a curtin webhook event)');
  const b = body as Record<string, unknown>;
  const eventType = str(b, 'event_type', 32);
  if (!eventType) throw new InstallerEventError('event_type is required', 'event_type');
  const result = str(b, 'result', 32);
  return {
    eventType,
    name: str(b, 'name', 200) ?? '',
    result,
    description: str(b, 'description', 500) ?? '',
    origin: str(b, 'origin', 64),
    failed: eventType === 'finish' && result !== null && result.toUpperCase() === 'FAIL',
  };
}
