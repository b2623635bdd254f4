import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ValidationPipe } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ExpressAdapter, type NestExpressApplication } from '@nestjs/platform-express';
import { DocumentBuilder, SwaggerModule } from '@nestjs/swagger';
import express from 'express';
import type { Logger } from 'pino';
import type { BrokerConfig } from '@meridian/config';
import { PinoNestLogger, createBrokerMetrics, createLogger } from '@meridian/observability';
import { BrokerRuntime } from './broker-runtime';
import { BrokerModule } from './broker.module';
import type { BrokerState } from './broker-state';
import { BrokerErrorFilter } from './error.filter';
import { createDispatcher } from './http-dispatch';

export interface RunningBroker {
  server: Server;
  url: string;
  state: BrokerState;
  logger: Logger;
  /** Stop accepting, let in-flight requests finish (up to the grace period), close pools. */
  close(): Promise<void>;
}

export async function startBroker(
  config: BrokerConfig,
  opts: { logger?: Logger } = {},
): Promise<RunningBroker> {
  const logger = opts.logger ?? createLogger({ level: config.logLevel, region: config.region });
  const metrics = createBrokerMetrics(config.region);
  const runtime = await BrokerRuntime.start(config, logger, metrics);
  const state: BrokerState = { runtime, shuttingDown: false };

  const expressApp = express();
  expressApp.disable('x-powered-by');
  const app = await NestFactory.create<NestExpressApplication>(
    BrokerModule.forRoot(state),
    new ExpressAdapter(expressApp),
    {
      logger: new PinoNestLogger(logger.child({ component: 'nest' })),
      bodyParser: false,
      abortOnError: false,
    },
  );
  // Small JSON bodies only; a malformed one is a 400 through the filter, not a trace.
  app.use(express.json({ limit: '64kb', strict: true, type: ['application/json', 'application/*+json'] }));
  app.useGlobalPipes(
    new ValidationPipe({
      whitelist: true,
      forbidNonWhitelisted: true,
      forbidUnknownValues: true,
      transform: true,
      stopAtFirstError: false,
      validationError: { target: false, value: false },
    }),
  );
  app.useGlobalFilters(new BrokerErrorFilter(logger));
  const document = SwaggerModule.createDocument(
    app,
    new DocumentBuilder()
      .setTitle('Meridian admin and compliance API')
      .setDescription(
        `Region ${config.region}. Bearer tokens from this broker for audience urn:meridian:admin.`,
      )
      .setVersion('1')
      .addBearerAuth()
      .build(),
  );
  expressApp.get('/admin/openapi.json', (_req, res) => {
    res.json(document);
  });
  await app.init();

  let jwksCache = { fingerprint: '', body: '' };
  const dispatch = createDispatcher({
    issuer: new URL(config.issuer),
    nest: expressApp,
    op: () => runtime.handler,
    jwks: () => {
      const keys = runtime.keys;
      if (jwksCache.fingerprint !== keys.fingerprint) {
        jwksCache = {
          fingerprint: keys.fingerprint,
          body: JSON.stringify({ keys: keys.published.map((k) => k.publicJwk) }),
        };
      }
      return jwksCache.body;
    },
    logger,
    metrics,
  });
  const server = createServer(dispatch);
  server.keepAliveTimeout = 65_000;
  server.headersTimeout = 66_000;
  server.requestTimeout = 30_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, config.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const url = `http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`;
  logger.info({ issuer: config.issuer, port: address.port }, 'broker listening');

  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      state.shuttingDown = true;
      const drained = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      const timer = setTimeout(() => server.closeAllConnections(), config.shutdownGraceMs);
      await drained;
      clearTimeout(timer);
      await app.close();
      await runtime.close();
      logger.info('broker stopped');
    })());

  return { server, url, state, logger, close };
}
