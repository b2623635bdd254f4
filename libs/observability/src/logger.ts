import pino, { type Logger } from 'pino';
import type { LoggerService } from '@nestjs/common';

/**
 * Structured JSON logs. Anything that can carry a credential is redacted at the source, and
 * request logs carry the path only — never the query string, which holds codes and state.
 */
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["dpop"]',
  'headers.authorization',
  'headers.cookie',
  '*.client_secret',
  '*.clientSecret',
  '*.password',
  '*.token',
  '*.access_token',
  '*.refresh_token',
  '*.id_token',
  '*.code',
  '*.kek',
  '*.privateJwk',
  '*.d',
];

export function createLogger(opts: { level: string; region: string; name?: string }): Logger {
  return pino({
    level: opts.level,
    base: { service: opts.name ?? 'meridian-broker', region: opts.region },
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  });
}

/** Nest's logger on top of pino, so framework messages are JSON lines like ours. */
export class PinoNestLogger implements LoggerService {
  constructor(private readonly logger: Logger) {}
  // Nest's start-up chatter (modules, routes) is debug material, not operations news.
  log(message: unknown, context?: string) {
    this.logger.debug({ context }, String(message));
  }
  error(message: unknown, trace?: string, context?: string) {
    // Stack traces go to the log only, never to a client.
    this.logger.error({ context, trace }, String(message));
  }
  warn(message: unknown, context?: string) {
    this.logger.warn({ context }, String(message));
  }
  debug(message: unknown, context?: string) {
    this.logger.debug({ context }, String(message));
  }
  verbose(message: unknown, context?: string) {
    this.logger.trace({ context }, String(message));
  }
}
