import { pino, type Logger, type LoggerOptions } from 'pino';
import pretty from 'pino-pretty';

export type { Logger };

/**
 * Field names whose values never reach a log line, wherever they appear. Secrets are also kept
 * out of log calls by construction; this is the net under that rule.
 */
export const REDACTED_PATHS = [
  'password',
  '*.password',
  '*.*.password',
  'bmc.password',
  'token',
  '*.token',
  'secret',
  '*.secret',
  'authorization',
  '*.authorization',
  'req.headers.authorization',
  'headers.authorization',
  'privateKey',
  '*.privateKey',
];

export interface LogFormat {
  /** Human-readable lines (time, level, message, then the fields) instead of JSON. */
  readonly pretty: boolean;
  /** Colours, for a terminal. */
  readonly colour?: boolean | undefined;
}

/**
 * JSON lines for log collectors; on a terminal (stdout is a TTY) one readable line per entry,
 * formatted by pino-pretty in this process (docs/decisions/2102). Same fields, same redaction.
 */
export function createLogger(level: string, destination?: NodeJS.WritableStream, format: LogFormat = { pretty: destination === undefined && process.stdout.isTTY === true, colour: true }): Logger {
  const options: LoggerOptions = {
    level,
    base: { service: 'racksmith' },
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
    formatters: { level: (label) => ({ level: label }) },
  };
  if (format.pretty) {
    const stream = pretty({
      colorize: format.colour ?? false,
      translateTime: 'SYS:yyyy-mm-dd HH:MM:ss.l',
      // The access log's fields read as a request line; everything else follows as JSON.
      messageFormat: '{msg}{if method} {method} {path} {status} {ms} ms{end}',
      ignore: 'service,pid,hostname,method,path,status,ms',
      singleLine: true,
      sync: true,
      destination: (destination ?? process.stdout) as NodeJS.WritableStream & { write(s: string): boolean },
    });
    return pino(options, stream);
  }
  return destination ? pino(options, destination as pino.DestinationStream) : pino(options);
}

/** A logger that drops everything: for pure tests and CLI commands that print for people. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
