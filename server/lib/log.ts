import { pino, type Logger, type LoggerOptions } from 'pino';

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

export function createLogger(level: string, destination?: NodeJS.WritableStream): Logger {
  const options: LoggerOptions = {
    level,
    base: { service: 'racksmith' },
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
    formatters: { level: (label) => ({ level: label }) },
  };
  return destination ? pino(options, destination as pino.DestinationStream) : pino(options);
}

/** A logger that drops everything: for pure tests and CLI commands that print for people. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
