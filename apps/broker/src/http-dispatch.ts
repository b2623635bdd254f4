/**
 * One node:http server per broker. Requests for Meridian's own routes go to Nest (express);
 * everything else goes straight to oidc-provider, without express's per-request cost in front
 * of the token endpoint (STACK.md: express costs more per request than an ES256 signature).
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { AddressMatcher } from '@meridian/config';
import type { BrokerMetrics } from '@meridian/observability';
import { attachClientCertificate } from '@meridian/tokens';

const NEST_PREFIXES = [
  '/admin',
  '/compliance',
  '/privacy',
  '/audit',
  '/healthz',
  '/readyz',
  '/metrics',
  '/.well-known/meridian',
  '/interaction',
  '/federation',
  '/console',
  '/security',
];
const QUIET = new Set(['/healthz', '/readyz', '/metrics']);
const OP_ROUTES: Record<string, string> = {
  '/token': 'token',
  '/token/introspection': 'introspection',
  '/token/revocation': 'revocation',
  '/auth': 'authorization',
  '/me': 'userinfo',
  '/session/end': 'end_session',
  '/.well-known/openid-configuration': 'discovery',
  '/jwks': 'jwks',
};

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

export interface DispatchDeps {
  /** The issuer: its path is the mount point, its origin the only one the OP speaks for. */
  issuer: URL;
  nest: Handler;
  op: () => Handler;
  jwks: () => string;
  logger: Logger;
  metrics: BrokerMetrics;
  /** RFC 8705: proxies whose client-certificate header is believed, and its name. */
  trustedProxies: AddressMatcher;
  clientCertHeader: string;
  /**
   * Fail closed (RFC 9110 §15.6.4): answers 503 and returns true when the route needs a database
   * that is down (see unavailable.ts).
   */
  refuseUnavailable?: (req: IncomingMessage, res: ServerResponse, route: string) => boolean;
  /**
   * Load shedding and rate limits (libs/security): `true` routes the request; otherwise it was
   * answered (`'quiet'`: a shed request, logged at debug only — overload is no time for a line
   * per request). May decide asynchronously.
   */
  admission?: (
    req: IncomingMessage,
    res: ServerResponse,
    route: string,
  ) => boolean | 'quiet' | Promise<boolean>;
}

function isNestPath(path: string): boolean {
  for (const p of NEST_PREFIXES) if (path === p || path.startsWith(`${p}/`)) return true;
  return false;
}

function routeGroup(path: string, nest: boolean): string {
  if (!nest) return OP_ROUTES[path] ?? (path.startsWith('/auth/') ? 'authorization' : 'op_other');
  if (path.startsWith('/admin')) return 'admin';
  if (path.startsWith('/interaction') || path.startsWith('/federation')) return 'login';
  if (path.startsWith('/.well-known/meridian')) return 'trust_bundle';
  return path.slice(1).split('/')[0] || 'other';
}

export function createDispatcher(deps: DispatchDeps): Handler {
  const { logger, metrics } = deps;
  // prom-client hashes a label object on every observe; bound children skip that per request.
  const observers = new Map<string, { observe(v: number): void }>();
  const observe = (route: string, status: number, seconds: number) => {
    const key = `${route}|${Math.floor(status / 100)}`;
    let child = observers.get(key);
    if (!child)
      observers.set(key, (child = metrics.httpDuration.labels(route, `${Math.floor(status / 100)}xx`)));
    child.observe(seconds);
  };
  const basePath = deps.issuer.pathname.replace(/\/+$/, '');
  const issuerHost = deps.issuer.host;
  const issuerProto = deps.issuer.protocol.slice(0, -1);
  const route = (req: IncomingMessage, res: ServerResponse, path: string, nest: boolean): void => {
    if (nest) return deps.nest(req, res);
    if (path === '/jwks' && req.method === 'GET') {
      res.writeHead(200, {
        'content-type': 'application/jwk-set+json',
        'cache-control': 'public, max-age=60',
      });
      res.end(deps.jwks());
      return;
    }
    // oidc-provider builds endpoint URLs from the request; pin them to the issuer so a forged
    // Host or X-Forwarded-Host can never make discovery point somewhere else.
    req.headers.host = issuerHost;
    req.headers['x-forwarded-proto'] = issuerProto;
    delete req.headers['x-forwarded-host'];
    deps.op()(req, res);
  };
  return (req, res) => {
    const started = process.hrtime.bigint();
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    let path = q === -1 ? url : url.slice(0, q);
    if (basePath) {
      if (path !== basePath && !path.startsWith(`${basePath}/`)) {
        res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"not_found"}');
        return;
      }
      req.url = url.slice(basePath.length) || '/';
      path = path.slice(basePath.length) || '/';
    }
    const incomingId = req.headers['x-request-id'];
    const reqId =
      typeof incomingId === 'string' && /^[\w.-]{1,64}$/.test(incomingId) ? incomingId : randomUUID();
    res.setHeader('x-request-id', reqId);
    attachClientCertificate(req, { trustedProxies: deps.trustedProxies, header: deps.clientCertHeader });
    const nest = isNestPath(path);
    const group = routeGroup(path, nest);
    let quiet = false;
    res.on('finish', () => {
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      observe(group, res.statusCode, seconds);
      // Refusals and failures are operations news; the stream of successful requests is counted
      // by the metrics and logged only at debug (a log line costs more than a signature).
      const level = quiet
        ? 'debug'
        : res.statusCode >= 500
          ? 'error'
          : res.statusCode >= 400 && !QUIET.has(path)
            ? 'info'
            : 'debug';
      if (!logger.isLevelEnabled(level)) return;
      // Path only: query strings carry codes and state.
      const line = {
        reqId,
        method: req.method,
        path,
        route: group,
        status: res.statusCode,
        ms: Math.round(seconds * 1e4) / 10,
      };
      logger[level](line, 'request');
    });
    if (deps.refuseUnavailable?.(req, res, group)) return;
    const admitted = deps.admission ? deps.admission(req, res, group) : true;
    if (admitted === true) return route(req, res, path, nest);
    if (admitted === 'quiet') quiet = true;
    else if (admitted !== false)
      admitted.then(
        (ok) => ok && route(req, res, path, nest),
        (err: unknown) => {
          logger.error({ err: { message: (err as Error).message } }, 'admission failed');
          if (!res.headersSent)
            res.writeHead(500, { 'content-type': 'application/json' }).end('{"error":"server_error"}');
        },
      );
  };
}
