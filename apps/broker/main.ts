/**
 * Entry point of one regional broker. Configuration is validated before anything else; each
 * bad variable is reported on its own line, then the process exits with status 1.
 */
import 'reflect-metadata';
import { validateBrokerEnv } from '@meridian/config';
import { createLogger, exitOnSignals } from '@meridian/observability';

async function main(): Promise<void> {
  const result = validateBrokerEnv(process.env);
  if (!result.ok) {
    for (const line of result.errors) process.stderr.write(`config error: ${line}\n`);
    process.exit(1);
  }
  const { config, warnings } = result;
  const logger = createLogger({ level: config.logLevel, region: config.region });
  for (const w of warnings) logger.warn({ variable: w.variable }, w.message);
  // Loaded only after the configuration is known to be good: a bad variable stops the process
  // before any library gets to print anything.
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- deferred on purpose (see above); CommonJS build
  const { startBroker } = require('./src/bootstrap') as typeof import('./src/bootstrap');
  let broker: Awaited<ReturnType<typeof startBroker>>;
  try {
    broker = await startBroker(config, { logger });
  } catch (err) {
    const e = err as Error & { code?: string };
    if (e.code === 'EADDRINUSE')
      process.stderr.write(`startup error: PORT ${config.port} is already in use\n`);
    else process.stderr.write(`startup error: ${e.message}\n`);
    logger.debug({ err: { message: e.message, stack: e.stack } }, 'startup failed');
    process.exit(1);
  }
  exitOnSignals(logger, () => broker.close());
}

void main();
