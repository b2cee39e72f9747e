import pino, { type Logger } from 'pino';
import type { LogLevel } from './config/schema.js';

export type { Logger };

/**
 * JSON-lines logging on stdout. Secrets must never reach a log line (docs/threat-model.md): callers log
 * reasons, not values, and these paths are censored as a second line of defence.
 */
const REDACTED_PATHS = [
  'token',
  'secret',
  'authorization',
  'bearer_token',
  'token_jwt_secret',
  'key',
  'keyPem',
  '*.token',
  '*.secret',
  '*.authorization',
  '*.bearer_token',
  '*.token_jwt_secret',
  '*.keyPem',
];

export function createLogger(level: LogLevel, bindings: Record<string, unknown> = {}): Logger {
  return pino(
    {
      level,
      base: { ...bindings },
      redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    // Synchronous writes: a worker's last lines and the exit reason must not be lost at process exit.
    pino.destination({ dest: 1, sync: true }),
  );
}

/** Replaces every `rstream.token` query value in a URL or path before it is logged. */
export function redactUrl(url: string): string {
  return url.replace(/([?&]rstream\.token=)[^&#]*/gi, '$1[redacted]');
}
