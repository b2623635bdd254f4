import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { ValidationPipe } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ExpressAdapter, type NestExpressApplication } from '@nestjs/platform-express';
import { DocumentBuilder, SwaggerModule } from '@nestjs/swagger';
import express from 'express';
import type { Logger } from 'pino';
import { trustedProxyMatcher, type BrokerConfig } from '@meridian/config';
import { PinoNestLogger, createBrokerMetrics, createLogger } from '@meridian/observability';
import { BrokerRuntime } from './broker-runtime';
import { BrokerModule } from './broker.module';
import type { BrokerState } from './broker-state';
import { BrokerErrorFilter } from './error.filter';
import { Drain, SHUTDOWN_RETRY_AFTER_SECONDS } from './drain';
import { createDispatcher } from './http-dispatch';
import { isPagePath, unavailableAnswer } from './unavailable';

export interface RunningBroker {
  server: Server;
  tlsServer?: HttpsServer;
  url: string;
  state: BrokerState;
  logger: Logger;
  /** Stop accepting, let in-flight requests finish (up to the grace period), close pools. */
  close(): Promise<void>;
}

const JSON_TYPE = /^application\/(?:[\w.+-]+\+)?json\s*(?:;|$)/i;

/** A request with a body must say it is JSON: anything else is 415, not a validation riddle. */
function refuseNonJsonBodies(req: express.Request, res: express.Response, next: express.NextFunction): void {
  const hasBody =
    Number(req.headers['content-length'] ?? 0) > 0 || req.headers['transfer-encoding'] !== undefined;
  if (hasBody && !JSON_TYPE.test(req.headers['content-type'] ?? '')) {
    res
      .status(415)
      .json({ error: 'unsupported_media_type', error_description: 'the body must be application/json' });
    return;
  }
  next();
}

const FORBIDDEN_KEYS = new Set(['__proto__', 'constructor', 'prototype']);

/** Prototype-pollution keys are refused by name, at any depth (class-transformer would silently drop them). */
function refusePrototypeKeys(req: express.Request, res: express.Response, next: express.NextFunction): void {
  const found = findForbiddenKey(req.body, 0);
  if (found) {
    res.status(400).json({ error: 'invalid_request', error_description: `property ${found} is not allowed` });
    return;
  }
  next();
}

function findForbiddenKey(value: unknown, depth: number): string | undefined {
  if (depth > 32 || value === null || typeof value !== 'object') return undefined;
  for (const key of Object.keys(value)) {
    if (FORBIDDEN_KEYS.has(key)) return key;
    const nested = findForbiddenKey((value as Record<string, unknown>)[key], depth + 1);
    if (nested) return nested;
  }
  return undefined;
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
  // APIs take JSON only; the login pages post small urlencoded forms.
  app.use(['/admin', '/compliance', '/privacy', '/audit'], refuseNonJsonBodies);
  app.use(express.json({ limit: '64kb', strict: true, type: ['application/json', 'application/*+json'] }));
  app.use('/interaction', express.urlencoded({ extended: false, limit: '8kb', parameterLimit: 20 }));
  // The console's forms (a policy document is the largest).
  app.use('/console', express.urlencoded({ extended: false, limit: '128kb', parameterLimit: 100 }));
  app.use(refusePrototypeKeys);
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
  app.useGlobalFilters(new BrokerErrorFilter(logger, runtime.outage));
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
    trustedProxies: trustedProxyMatcher(config.trustedProxies),
    clientCertHeader: config.clientCertHeader,
    refuseUnavailable: runtime.outage.gate,
    admission: runtime.security.admission,
  });
  // SIGTERM: requests already accepted finish, later ones get a clean 503 (drain.ts).
  const basePath = new URL(config.issuer).pathname.replace(/\/+$/, '');
  const drain = new Drain((req, res) => {
    const a = unavailableAnswer({
      region: config.region,
      description: 'this broker is shutting down; try again',
      page: isPagePath((req.url ?? '/').slice(basePath.length)),
      acceptLanguage: req.headers['accept-language'],
      retryAfterSeconds: SHUTDOWN_RETRY_AFTER_SECONDS,
    });
    res.writeHead(a.status, a.headers).end(a.body);
  });
  const handler = drain.wrap(dispatch);
  const server = createServer(handler);
  drain.attach(server, { tls: false });
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
  // The console calls this broker's API on its own listener (a wildcard address is reached on loopback).
  const loopback =
    address.address === '0.0.0.0'
      ? '127.0.0.1'
      : address.address === '::'
        ? '[::1]'
        : url.slice(7, url.lastIndexOf(':'));
  state.localUrl = `http://${loopback}:${address.port}${new URL(config.issuer).pathname.replace(/\/+$/, '')}`;
  logger.info({ issuer: config.issuer, port: address.port }, 'broker listening');

  // RFC 8705: an optional HTTPS listener that asks for client certificates (verified against
  // the configured client CA when there is one; self-signed ones are checked against the
  // client's registered JWK by oidc-provider).
  let tlsServer: HttpsServer | undefined;
  if (config.tls) {
    tlsServer = createHttpsServer(
      {
        cert: readFileSync(config.tls.certFile),
        key: readFileSync(config.tls.keyFile),
        ca: config.tls.clientCaFile ? readFileSync(config.tls.clientCaFile) : undefined,
        requestCert: true,
        rejectUnauthorized: false,
        minVersion: 'TLSv1.2',
      },
      handler,
    );
    drain.attach(tlsServer, { tls: true });
    await new Promise<void>((resolve, reject) => {
      tlsServer!.once('error', reject);
      tlsServer!.listen(config.tls!.port, config.host, () => resolve());
    });
    logger.info({ port: (tlsServer.address() as AddressInfo).port }, 'mutual-TLS listener');
  }

  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      state.shuttingDown = true;
      const requests = await drain.drain(
        [server, tlsServer].filter((s) => s !== undefined),
        config.shutdownGraceMs,
      );
      await app.close();
      await runtime.close();
      logger.info({ requests }, 'broker stopped');
    })());

  return { server, tlsServer, url, state, logger, close };
}
