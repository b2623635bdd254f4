import type { Logger } from 'pino';

/**
 * SIGTERM/SIGINT → `close()` (stop accepting, drain in-flight requests, release resources),
 * then exit 0; a failed shutdown exits 1. Shared by every Meridian process.
 */
export function exitOnSignals(logger: Logger, close: () => Promise<void>): void {
  const stop = (signal: string) => {
    logger.info({ signal }, 'shutting down: finishing in-flight requests');
    close().then(
      () => process.exit(0),
      (err: Error) => {
        logger.error({ err: { message: err.message } }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
}
