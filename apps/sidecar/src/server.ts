/**
 * The sidecar: one node:http server (no framework on the request path — STACK.md, "Where
 * request time goes") that answers its own three operational paths, Envoy ext_authz checks,
 * and proxies everything else to the protected service once the token checks out.
 */
import http, { type IncomingMessage, type OutgoingHttpHeaders, type ServerResponse } from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import { SecurityReporter, createVerifier, readCredentials, type Verifier } from '@meridian/verifier';
import { authorize, type AuthorizationPolicy, type Decision } from './authorize';
import type { SidecarConfig } from './config';
import { watchDecryptionKeys } from './decryption-keys';
import { callerIdentityHeaders, downstreamResponseHeaders, upstreamRequestHeaders } from './headers';
import { createSidecarMetrics, type Mode, type SidecarMetrics } from './metrics';
import { listenerTlsOptions, peerCertificate, watchTlsFiles, type TlsWatch } from './tls';

export interface SidecarDeps {
  logger: Logger;
  /** Default: a verifier built from the configuration. */
  verifier?: Verifier;
}

export interface RunningSidecar {
  readonly port: number;
  readonly server: http.Server;
  readonly verifier: Verifier;
  readonly metrics: SidecarMetrics;
  /** Security events for the broker (SIDECAR_REPORT_URL); undefined when not configured. */
  readonly reporter: SecurityReporter | undefined;
  /** Stops accepting, lets in-flight requests finish (up to the grace period), then closes. */
  close(): Promise<void>;
}

const OPS_PATHS = new Set(['/healthz', '/readyz', '/metrics']);
const IDEMPOTENT_WITHOUT_BODY = new Set(['GET', 'HEAD', 'OPTIONS']);

class UpstreamTimeout extends Error {
  override readonly name = 'UpstreamTimeout';
}

function seconds(since: number): number {
  return (performance.now() - since) / 1000;
}

function pathOf(target: string): string {
  const q = target.indexOf('?');
  return q === -1 ? target : target.slice(0, q);
}

function hasBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: OutgoingHttpHeaders = {},
): void {
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return;
  }
  const payload = JSON.stringify(body);
  res.writeHead(status, {
    ...headers,
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(payload),
    'cache-control': 'no-store',
  });
  res.end(res.req.method === 'HEAD' ? undefined : payload);
}

export async function startSidecar(config: SidecarConfig, deps: SidecarDeps): Promise<RunningSidecar> {
  const log = deps.logger;
  const keySource =
    config.decryptionKeysFile && config.decryptionKeys
      ? watchDecryptionKeys(config.decryptionKeysFile, config.decryptionKeys, log)
      : undefined;
  const verifier =
    deps.verifier ??
    createVerifier({
      trustBundleUrl: config.trustBundleUrl,
      audience: config.audience,
      bundleRefreshCooldownMs: config.bundleRefreshCooldownMs,
      clockToleranceSeconds: config.clockToleranceSeconds,
      ...(keySource ? { decryptionKeys: keySource.keys } : {}),
    });
  const metrics = createSidecarMetrics(verifier);
  const reporter = config.report
    ? new SecurityReporter(config.report, { audience: config.audience, region: config.region }, log)
    : undefined;
  const policy: AuthorizationPolicy = {
    requiredScopes: config.requiredScopes,
    routes: config.routes,
    region: config.region,
  };
  const upstream = config.upstream;
  const upstreamIsHttps = upstream.protocol === 'https:';
  const requestUpstream = upstreamIsHttps ? https.request : http.request;
  const agent = new (upstreamIsHttps ? https.Agent : http.Agent)({
    keepAlive: true,
    // Most recently used first: fewer sockets stay warm, idle ones age out at the upstream.
    scheduling: 'lifo',
    maxFreeSockets: 256,
  });
  const upstreamHost = upstream.host;
  const upstreamBase = upstream.pathname === '/' ? '' : upstream.pathname;
  const inboundScheme = config.tls ? 'https' : 'http';
  const forwardedProto = config.publicUrl?.startsWith('https:') || config.tls ? 'https' : 'http';
  const extAuthz = config.extAuthzPrefix;
  let draining = false;

  /**
   * RFC 9449 §4.3 check 9: the URL the client called. SIDECAR_PUBLIC_URL when set (TLS or a
   * load balancer in front changes scheme and host on the way); otherwise http:// plus the Host
   * the client sent — the sidecar then assumes it is reached directly.
   */
  const publicUrlFor =
    (req: IncomingMessage, target: string, scheme: string, host: string | undefined) => () =>
      `${config.publicUrl ?? `${scheme}://${host ?? req.headers.host ?? 'localhost'}`}${target}`;

  // ------------------------------------------------------------------ operational paths

  let announcedLoaded = false;
  const kickBundle = () => {
    verifier.ready().then(
      (status) => {
        if (status.loaded && !announcedLoaded) {
          announcedLoaded = true;
          log.info(
            { issuers: status.issuers.map((i) => i.issuer), fetches: status.fetches },
            'trust bundle loaded',
          );
        } else if (!status.loaded) {
          log.warn(
            { lastError: status.lastError, fetches: status.fetches },
            'trust bundle not loaded yet: refusing requests',
          );
        }
      },
      (err: unknown) => log.error({ err: { message: (err as Error)?.message } }, 'trust bundle load failed'),
    );
  };

  async function answerOps(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    req.resume();
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      sendJson(
        res,
        405,
        { error: 'method_not_allowed', error_description: `${path} answers GET only` },
        { allow: 'GET, HEAD' },
      );
      return;
    }
    const closing: OutgoingHttpHeaders = draining ? { connection: 'close' } : {};
    if (path === '/healthz') {
      sendJson(res, 200, { status: 'ok' }, closing);
      return;
    }
    if (path === '/readyz') {
      const s = verifier.bundleStatus();
      if (!s.loaded) kickBundle();
      const ready = s.loaded && !draining;
      sendJson(
        res,
        ready ? 200 : 503,
        {
          status: ready ? 'ready' : draining ? 'draining' : 'no trust bundle loaded',
          bundle: { loaded: s.loaded, stale: s.stale, loadedAt: s.loadedAt, fetches: s.fetches },
        },
        closing,
      );
      return;
    }
    const text = await metrics.registry.metrics();
    if (res.destroyed) return;
    res.writeHead(200, {
      ...closing,
      'content-type': metrics.registry.contentType,
      'cache-control': 'no-store',
    });
    res.end(req.method === 'HEAD' ? undefined : text);
  }

  // ------------------------------------------------------------------------ decisions

  function refuse(
    req: IncomingMessage,
    res: ServerResponse,
    mode: Mode,
    decision: Extract<Decision, { allowed: false }>,
    started: number,
  ) {
    metrics.denied(mode, decision.reason);
    reporter?.refused(
      decision.reason,
      () => readCredentials(req.headers.authorization, req.headers.dpop)?.token,
    );
    log.info(
      {
        mode,
        reason: decision.reason,
        status: decision.refusal.status,
        detail: decision.detail,
        method: req.method,
        path: pathOf(req.url ?? ''),
      },
      'request refused',
    );
    const headers: OutgoingHttpHeaders = { ...decision.refusal.headers };
    // The body of a refused request is not wanted: read and dropped, and the connection closed
    // afterwards so a large upload does not hold it.
    if (draining || hasBody(req)) headers.connection = 'close';
    req.resume();
    res.once('close', () => metrics.completed(mode, 'denied', seconds(started)));
    sendJson(res, decision.refusal.status, decision.refusal.body, headers);
  }

  function failInternally(res: ServerResponse, err: unknown) {
    log.error(
      { err: { name: (err as Error)?.name, message: (err as Error)?.message } },
      'request failed unexpectedly',
    );
    sendJson(
      res,
      500,
      { error: 'server_error', error_description: 'the request could not be checked' },
      { connection: 'close' },
    );
  }

  async function check(req: IncomingMessage, target: string, publicUrl: () => string): Promise<Decision> {
    return authorize(verifier, policy, {
      method: req.method ?? 'GET',
      target,
      headers: req.headers,
      publicUrl,
      clientCertificate: config.tls ? peerCertificate(req.socket) : undefined,
    });
  }

  // ------------------------------------------------------------------------ ext_authz

  /**
   * Envoy's HTTP ext_authz service: the check request carries the original method, the original
   * path after the prefix, and the headers Envoy was told to pass. 200 = allow (Envoy copies the
   * `x-meridian-*` answer headers upstream and removes those listed in
   * `x-envoy-auth-headers-to-remove`); anything else is returned to the client as is.
   */
  async function answerExtAuthz(req: IncomingMessage, res: ServerResponse, target: string, started: number) {
    req.resume();
    const rest = target.slice(extAuthz!.length);
    const original = rest === '' || rest[0] === '?' ? `/${rest}` : rest;
    const xfp = req.headers['x-forwarded-proto'];
    const scheme = xfp === 'https' || xfp === 'http' ? xfp : 'http';
    let decision: Decision;
    try {
      decision = await check(req, original, publicUrlFor(req, original, scheme, undefined));
    } catch (err) {
      failInternally(res, err);
      return;
    }
    metrics.decision(seconds(started));
    if (!decision.allowed) {
      refuse(req, res, 'ext_authz', decision, started);
      return;
    }
    metrics.allowed('ext_authz');
    const headers: OutgoingHttpHeaders = { ...decision.identity, 'content-length': 0 };
    const spoofed = callerIdentityHeaders(req.headers).filter((name) => !(name in decision.identity));
    if (spoofed.length) headers['x-envoy-auth-headers-to-remove'] = spoofed.join(',');
    if (draining) headers.connection = 'close';
    res.once('close', () => metrics.completed('ext_authz', 'allowed', seconds(started)));
    res.writeHead(200, headers);
    res.end();
  }

  // ---------------------------------------------------------------------------- proxy

  async function proxy(
    req: IncomingMessage,
    res: ServerResponse,
    target: string,
    host: string | undefined,
    expectContinue: boolean,
    started: number,
  ) {
    let decision: Decision;
    try {
      decision = await check(req, target, publicUrlFor(req, target, inboundScheme, host));
    } catch (err) {
      failInternally(res, err);
      return;
    }
    if (!decision.allowed) {
      metrics.decision(seconds(started));
      refuse(req, res, 'proxy', decision, started);
      return;
    }
    metrics.allowed('proxy');
    const headers = upstreamRequestHeaders(req.headers, {
      upstreamHost,
      remoteAddress: req.socket.remoteAddress,
      proto: forwardedProto,
      identity: decision.identity,
    });
    metrics.decision(seconds(started));
    if (log.isLevelEnabled('debug')) {
      log.debug(
        { method: req.method, path: pathOf(target), client_id: decision.token.clientId },
        'request allowed',
      );
    }
    res.once('close', () => metrics.completed('proxy', 'allowed', seconds(started)));
    if (expectContinue) res.writeContinue();
    forward(req, res, target, headers, hasBody(req), false);
  }

  function forward(
    req: IncomingMessage,
    res: ServerResponse,
    target: string,
    headers: OutgoingHttpHeaders,
    body: boolean,
    retried: boolean,
  ) {
    const upstreamReq = requestUpstream({
      protocol: upstream.protocol,
      hostname: upstream.hostname,
      port: upstream.port,
      method: req.method,
      path: `${upstreamBase}${target}`,
      headers,
      agent,
    });
    let timedOut = false;
    upstreamReq.setTimeout(config.upstreamTimeoutMs, () => {
      timedOut = true;
      upstreamReq.destroy(new UpstreamTimeout(`no answer within ${config.upstreamTimeoutMs} ms`));
    });
    upstreamReq.once('response', (upstreamRes) => {
      const out = downstreamResponseHeaders(upstreamRes.headers);
      if (draining) out.connection = 'close';
      try {
        res.writeHead(upstreamRes.statusCode ?? 502, upstreamRes.statusMessage, out);
      } catch (err) {
        // A status or header node:http will not send on: the answer is unusable.
        upstreamRes.destroy();
        log.warn({ err: { message: (err as Error).message } }, 'upstream answer not forwardable');
        sendJson(res, 502, {
          error: 'bad_gateway',
          error_description: 'the protected service answered invalidly',
        });
        return;
      }
      upstreamRes.pipe(res);
      // The upstream cut its answer short: so must we (the client sees a truncated response).
      const cut = () => {
        if (res.destroyed) return;
        metrics.upstreamError('reset');
        res.destroy();
      };
      upstreamRes.on('error', cut);
      upstreamRes.once('aborted', cut);
    });
    let failed = false;
    // `on`, not `once`: a second error event must not become an uncaught exception.
    upstreamReq.on('error', (err: NodeJS.ErrnoException) => {
      if (failed) return;
      failed = true;
      if (res.destroyed || req.destroyed) return; // the client went away first
      // A kept-alive socket the upstream closed just as it was reused: safe to retry once when
      // nothing was sent that the upstream may have acted on.
      if (
        !retried &&
        !body &&
        !timedOut &&
        upstreamReq.reusedSocket &&
        err.code === 'ECONNRESET' &&
        IDEMPOTENT_WITHOUT_BODY.has(req.method ?? '')
      ) {
        forward(req, res, target, headers, body, true);
        return;
      }
      if (res.headersSent) {
        metrics.upstreamError('reset');
        res.destroy();
        return;
      }
      metrics.upstreamError(timedOut ? 'timeout' : 'connect');
      log.warn(
        {
          err: { name: err.name, code: err.code, message: err.message },
          method: req.method,
          path: pathOf(target),
        },
        timedOut ? 'upstream timed out' : 'upstream unreachable',
      );
      // The connection state after a failed exchange is unknown: close it.
      sendJson(
        res,
        timedOut ? 504 : 502,
        timedOut
          ? { error: 'upstream_timeout', error_description: 'the protected service did not answer in time' }
          : { error: 'bad_gateway', error_description: 'the protected service could not be reached' },
        { connection: 'close' },
      );
      req.resume();
    });
    res.once('close', () => {
      if (!res.writableFinished) upstreamReq.destroy();
    });
    if (body) req.pipe(upstreamReq);
    else upstreamReq.end();
  }

  // --------------------------------------------------------------------------- server

  function handle(req: IncomingMessage, res: ServerResponse, expectContinue: boolean) {
    const started = performance.now();
    let target = req.url ?? '/';
    let host: string | undefined;
    if (target[0] !== '/') {
      // RFC 9112 §3.2.2: absolute-form must be accepted; its authority replaces Host.
      let url: URL | undefined;
      try {
        url = /^https?:\/\//i.test(target) ? new URL(target) : undefined;
      } catch {
        url = undefined;
      }
      if (!url) {
        req.resume();
        sendJson(
          res,
          400,
          { error: 'invalid_request', error_description: 'the request target is not a path' },
          { connection: 'close' },
        );
        return;
      }
      target = `${url.pathname}${url.search}`;
      host = url.host;
    }
    const path = pathOf(target);
    if (OPS_PATHS.has(path)) {
      answerOps(req, res, path).catch((err: unknown) => failInternally(res, err));
      return;
    }
    if (extAuthz !== undefined && (path === extAuthz || path.startsWith(`${extAuthz}/`))) {
      answerExtAuthz(req, res, target, started).catch((err: unknown) => failInternally(res, err));
      return;
    }
    // Whatever goes wrong below is answered (500, or the connection cut once the answer has
    // started), never left as an unhandled rejection.
    proxy(req, res, target, host, expectContinue, started).catch((err: unknown) => failInternally(res, err));
  }

  const serverOptions = { keepAliveTimeout: 65_000, headersTimeout: 66_000 };
  const onRequest = (req: IncomingMessage, res: ServerResponse) => handle(req, res, false);
  let tlsWatch: TlsWatch | undefined;
  let server: http.Server;
  if (config.tls) {
    // TLS terminated here: client certificates requested for RFC 8705 §3 bound tokens.
    const httpsServer = https.createServer(
      { ...serverOptions, ...listenerTlsOptions(config.tls) },
      onRequest,
    );
    tlsWatch = watchTlsFiles(httpsServer, config.tls, log);
    server = httpsServer;
  } else server = http.createServer(serverOptions, onRequest);
  // 100-continue is sent only once the token is accepted: a refused client never uploads.
  server.on('checkContinue', (req, res) => handle(req, res, true));

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, config.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;

  kickBundle();
  reporter?.start();
  // Until a first bundle is in use, keep trying (the verifier's cooldown paces the fetches).
  const retry = setInterval(
    () => {
      if (verifier.bundleStatus().loaded) clearInterval(retry);
      else kickBundle();
    },
    Math.max(1000, Math.min(config.bundleRefreshCooldownMs, 30_000)),
  );
  retry.unref();

  let closing: Promise<void> | undefined;
  return {
    port,
    server,
    verifier,
    metrics,
    reporter,
    close() {
      closing ??= new Promise<void>((resolve) => {
        draining = true;
        clearInterval(retry);
        keySource?.close();
        tlsWatch?.close();
        const force = setTimeout(() => server.closeAllConnections(), config.shutdownGraceMs);
        force.unref();
        server.close(() => {
          clearTimeout(force);
          agent.destroy();
          // What was seen up to the end still reaches the broker.
          void (reporter?.close() ?? Promise.resolve()).then(() => resolve());
        });
        server.closeIdleConnections();
      });
      return closing;
    },
  };
}
