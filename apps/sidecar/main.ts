/**
 * Entry point of the auth sidecar (CONTRACT.md, "Auth sidecar"). Configuration is validated
 * before anything else; each bad variable is reported on its own line, then the process exits
 * with status 1.
 */
import { exitOnSignals } from '@meridian/observability';
import { validateSidecarEnv } from './src/config';
import { createSidecarLogger } from './src/logger';
import { startSidecar, type RunningSidecar } from './src/server';

async function main(): Promise<void> {
  const result = validateSidecarEnv(process.env);
  if (!result.ok) {
    for (const line of result.errors) process.stderr.write(`config error: ${line}\n`);
    process.exit(1);
  }
  const { config } = result;
  const logger = createSidecarLogger({ level: config.logLevel, audience: config.audience });
  let sidecar: RunningSidecar;
  try {
    sidecar = await startSidecar(config, { logger });
  } catch (err) {
    const e = err as Error & { code?: string };
    if (e.code === 'EADDRINUSE')
      process.stderr.write(`startup error: PORT ${config.port} is already in use\n`);
    else process.stderr.write(`startup error: ${e.message}\n`);
    process.exit(1);
  }
  logger.info(
    {
      port: sidecar.port,
      upstream: config.upstream.origin + config.upstream.pathname.replace(/^\/$/, ''),
      trustBundleUrl: config.trustBundleUrl,
      requiredScopes: config.requiredScopes,
      routes: config.routes.map((r) => ({ rule: r.source, scopes: r.scopes })),
      region: config.region,
      extAuthzPrefix: config.extAuthzPrefix ?? 'off',
      securityReport: config.report ? { url: config.report.url, clientId: config.report.clientId } : 'off',
      tls: config.tls ? { certFile: config.tls.certFile, clientCa: config.tls.clientCaFile ?? 'any' } : 'off',
      // Key ids only, never key material.
      decryptionKeys: config.decryptionKeys?.map((k) => k.kid ?? k.kty),
    },
    'sidecar listening',
  );
  exitOnSignals(logger, async () => {
    await sidecar.close();
    logger.info('stopped');
  });
}

void main();
