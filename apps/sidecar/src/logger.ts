import pino, { type Logger } from 'pino';
import type { LogLevel } from './config';

/**
 * JSON lines on stdout. The sidecar never logs a header value, a token or a query string; the
 * redaction below is the second line of defence should a future log call pass headers along.
 */
export function createSidecarLogger(opts: { level: LogLevel; audience?: string }): Logger {
  return pino({
    level: opts.level,
    base: { service: 'meridian-sidecar', ...(opts.audience ? { audience: opts.audience } : {}) },
    redact: {
      paths: [
        'headers.authorization',
        'headers.dpop',
        'headers.cookie',
        'req.headers.authorization',
        'req.headers.dpop',
        'req.headers.cookie',
        '*.token',
        '*.access_token',
      ],
      censor: '[redacted]',
    },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  });
}
