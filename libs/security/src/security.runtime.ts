/**
 * Abuse limits, load shedding and anomaly detection of one broker process (issue 6). Built by
 * the broker runtime; plugged in at three narrow places:
 *
 * - `admission`: the node:http dispatcher asks it before routing (shedding, limits by source
 *   address, admin limits by token principal, authorization limits by client_id);
 * - `installInto(provider)`: oidc-provider hooks — lockouts and the per-client token limit at
 *   client authentication, failure bursts, code replay and refresh-token reuse;
 * - `loginEvents`: the login service reports upstream ID tokens that fail validation and home
 *   logins (impossible travel); sidecars report through POST /security/events (`report`).
 *
 * Every detection writes an audit entry `security.<detector>`, counts
 * `meridian_security_detections_total{detector}` and, when configured, sends a signed webhook.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createLocalJWKSet, jwtVerify, type JWK, type JWTPayload } from 'jose';
import Provider, { errors, type KoaContextWithOIDC } from 'oidc-provider';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { AuditLog, AuditOutcome } from '@meridian/audit';
import { trustedProxyMatcher, type AddressMatcher, type Rate, type SecurityConfig } from '@meridian/config';
import type { ReportedSecurityEvent } from '@meridian/verifier';
import { pseudonym } from '@meridian/federation';
import type { RegionDatabase } from '@meridian/persistence';
import { ADMIN_AUDIENCE, SECURITY_EVENTS_AUDIENCE, SECURITY_REPORT_SCOPE } from '@meridian/tokens';
import { LoadShedder } from './load-shedder';
import { RateLimiter, type LimitCheck, type Verdict } from './rate-limiter';
import { SecurityStore } from './security.store';
import { createSecurityMetrics, type SecurityMetrics } from './security.metrics';
import { requestSource } from './source-address';
import { impossibleTravel } from './travel';
import { WebhookSender } from './webhook';

export type DetectorName =
  | 'client_auth_burst'
  | 'source_auth_burst'
  | 'refresh_token_reuse'
  | 'code_replay'
  | 'residency_violation'
  | 'sidecar_token_failures'
  | 'upstream_id_token_invalid'
  | 'impossible_travel';

export interface SecurityDeps {
  config: SecurityConfig;
  region: string;
  issuer: string;
  regionDb: RegionDatabase;
  audit: AuditLog;
  registry: Registry;
  logger: Logger;
  trustedProxies: readonly string[];
  /** Pseudonyms for people whose home is another region (the locator pepper). */
  pepper: Buffer;
  /** This region's published public keys, and a value that changes when they do. */
  publicKeys: () => { fingerprint: string; keys: JWK[] };
  /** Full check of one of this broker's access tokens (signature, expiry, revocation, grant). */
  verifyToken: (token: string, audience: string) => Promise<JWTPayload | undefined>;
}

/** What the dispatcher does with a request: route it, or it was answered (quietly: not logged). */
export type AdmissionResult = boolean | 'quiet' | Promise<boolean>;
export type Admission = (req: IncomingMessage, res: ServerResponse, route: string) => AdmissionResult;

/** A report from a sidecar (validated by the controller's DTO). */
export interface SecurityReport {
  audience: string;
  region?: string;
  events: ReportedEvent[];
}

/** What sidecars and the verifier SDK send (libs/verifier SecurityReporter). */
export type ReportedEvent = ReportedSecurityEvent;

/** Port the login service calls (libs/federation defines its shape). */
export interface LoginSecurityEvents {
  upstreamRejected(e: { federationId: string; code: string; detail?: string }): Promise<void>;
  homeLogin(e: { sub: string; region: string; federationId: string }): Promise<void>;
}

interface Alert {
  detector: DetectorName;
  targetType: string;
  targetId?: string;
  outcome?: AuditOutcome;
  detail: Record<string, unknown>;
  /** What was done about it, in words (also in the webhook). */
  containment?: string;
}

const ADMIN_ROUTES = new Set(['admin', 'compliance', 'privacy', 'audit']);
const OPS_ROUTES = new Set(['healthz', 'readyz', 'metrics']);
/** oidc-provider routes that authenticate a client (RFC 6749 §2.3). */
const CLIENT_AUTH_ROUTES = new Set(['token', 'introspection', 'revocation']);
/** oidc-provider's detail texts for a second use of a single-use grant source (and our adapter's). */
const CODE_REPLAYED = new Set(['authorization code already consumed', 'grant already used']);
const REFRESH_REUSED = 'refresh token already used';
const TOKEN_FAILURE_CODES = new Set(['ERR_TOKEN_SIGNATURE', 'ERR_TOKEN_ISSUER']);
const LOCKOUT_POLL_MS = 1000;
const SWEEP_MS = 60_000;

type OidcCtx = KoaContextWithOIDC;

function bearerOf(authorization: string | undefined): string | undefined {
  const m = authorization ? /^Bearer ([A-Za-z0-9._~+/-]+=*)$/i.exec(authorization) : null;
  return m ? m[1] : undefined;
}

/** The client id of an HTTP Basic header (RFC 6749 §2.3.1: form-urlencoded, then base64). */
function basicClientId(authorization: string | undefined): string | undefined {
  if (!authorization || authorization.length > 4096 || !/^basic /i.test(authorization)) return undefined;
  const decoded = Buffer.from(authorization.slice(6).trim(), 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon <= 0 || colon > 200) return undefined;
  try {
    return decodeURIComponent(decoded.slice(0, colon).replace(/\+/g, ' '));
  } catch {
    return undefined;
  }
}

function seconds(ms: number): number {
  return Math.max(1, Math.ceil(ms / 1000));
}

function oauthError(status: number, error: string, description: string): Error {
  const err = new errors.OIDCProviderError(status, error);
  err.error_description = description;
  // oidc-provider hides the body of anything ≥ 500; a 503 here is deliberate and explained.
  err.expose = true;
  return err;
}

export class SecurityRuntime {
  readonly store: SecurityStore;
  readonly limiter: RateLimiter;
  readonly shedder: LoadShedder;
  readonly metrics: SecurityMetrics;
  private readonly webhook?: WebhookSender;
  private readonly trusted: AddressMatcher;
  /** Keys whose refusal was audited, and when (see limitReached). */
  private readonly limitAudited = new Map<string, number>();
  /** Lockouts in force (key → end, ms): polled from the region, set at once when made here. */
  private lockouts = new Map<string, number>();
  private timers: NodeJS.Timeout[] = [];
  private adminKeys?: { fingerprint: string; jwks: ReturnType<typeof createLocalJWKSet> };
  /** Requests whose token client limit the dispatcher already took (client_secret_basic). */
  private readonly tokenClientChecked = new WeakMap<IncomingMessage, string>();
  private readonly principals = new Map<string, { principal: string | null; exp: number }>();

  constructor(private readonly deps: SecurityDeps) {
    this.store = new SecurityStore(deps.regionDb);
    this.metrics = createSecurityMetrics(deps.registry);
    const storeErrors = this.metrics.storeErrors;
    this.limiter = new RateLimiter(this.store, {
      batch: deps.config.rateLimits.batch,
      onStoreError: (err) => {
        storeErrors.inc();
        deps.logger.warn(
          { err: { message: (err as Error).message } },
          'rate-limit store unavailable: failing closed',
        );
      },
    });
    this.shedder = new LoadShedder(deps.config.shedding);
    this.trusted = trustedProxyMatcher(deps.trustedProxies);
    if (deps.config.webhook) {
      const webhooks = this.metrics.webhooks;
      this.webhook = new WebhookSender({
        ...deps.config.webhook,
        logger: deps.logger,
        onOutcome: (outcome) => webhooks.inc({ outcome }),
      });
    }
  }

  start(): void {
    this.shedder.start();
    const poll = () =>
      this.store.activeLockouts().then(
        (m) => (this.lockouts = m),
        (err: unknown) =>
          this.deps.logger.debug({ err: { message: (err as Error).message } }, 'lockout poll failed'),
      );
    void poll();
    const lockPoll = setInterval(() => void poll(), LOCKOUT_POLL_MS);
    const sweep = setInterval(() => {
      this.store
        .sweep(this.deps.config.lockout.maxSeconds)
        .catch((err: unknown) =>
          this.deps.logger.debug({ err: { message: (err as Error).message } }, 'security sweep failed'),
        );
    }, SWEEP_MS);
    for (const t of [lockPoll, sweep]) t.unref();
    this.timers.push(lockPoll, sweep);
  }

  stop(): void {
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    this.shedder.stop();
    this.webhook?.stop();
  }

  // ------------------------------------------------------------------------ admission

  /** Asked by the dispatcher for every request, before routing. */
  readonly admission: Admission = (req, res, route) => {
    if (OPS_ROUTES.has(route)) return true;
    const shed = this.shedder.saturated();
    if (shed) {
      this.metrics.shed.inc({ reason: shed });
      this.noteShed(shed);
      refuse(req, res, 503, 1, 'temporarily_unavailable', 'the server is busy; retry in 1 s');
      return 'quiet';
    }
    this.shedder.track(res);
    if (ADMIN_ROUTES.has(route) && this.deps.config.rateLimits.admin.client) {
      const auth = req.headers.authorization;
      if (this.adminPrincipal(auth) === undefined && bearerOf(auth))
        return this.learnAdminPrincipal(auth).then(() => this.limit(req, res, route));
    }
    return this.limit(req, res, route);
  };

  private shedLog = { at: 0, count: 0 };

  /** One warning per 10 s while shedding: a log line per refused request would add to the load. */
  private noteShed(reason: string): void {
    this.shedLog.count++;
    const now = Date.now();
    if (now - this.shedLog.at < 10_000) return;
    this.deps.logger.warn(
      { reason, shed: this.shedLog.count, ...this.shedder.current },
      'shedding load: answering 503',
    );
    this.shedLog = { at: now, count: 0 };
  }

  private limit(req: IncomingMessage, res: ServerResponse, route: string): boolean | Promise<boolean> {
    const checks = this.checksFor(req, route);
    if (checks.length === 0) return true;
    const verdict = this.limiter.admit(checks);
    if (verdict instanceof Promise) return verdict.then((v) => this.answer(req, res, route, v));
    return this.answer(req, res, route, verdict);
  }

  private checksFor(req: IncomingMessage, route: string): LimitCheck[] {
    const limits = this.deps.config.rateLimits;
    const checks: LimitCheck[] = [];
    const add = (rate: Rate | undefined, key: string) => {
      if (rate) checks.push({ key, rate });
    };
    let source: string | undefined;
    const src = () => (source ??= requestSource(req, this.trusted));
    switch (route) {
      case 'token': {
        add(limits.token.source, `token:source:${src()}`);
        // client_secret_basic names the client in a header: its limit goes into the same
        // round trip (other methods name it in the body; oidc-provider's lookup checks those).
        const clientId = limits.token.client ? basicClientId(req.headers.authorization) : undefined;
        if (clientId) {
          add(limits.token.client, `token:client:${clientId}`);
          this.tokenClientChecked.set(req, clientId);
        }
        break;
      }
      case 'authorization': {
        add(limits.authorization.source, `authorization:source:${src()}`);
        const url = req.url ?? '';
        if (limits.authorization.client && (url === '/auth' || url.startsWith('/auth?'))) {
          const clientId = new URLSearchParams(url.slice(6)).get('client_id');
          if (clientId && clientId.length <= 200)
            add(limits.authorization.client, `authorization:client:${clientId}`);
        }
        break;
      }
      case 'login':
        add(limits.login.source, `login:source:${src()}`);
        break;
      default:
        if (ADMIN_ROUTES.has(route)) {
          add(limits.admin.source, `admin:source:${src()}`);
          const principal = this.adminPrincipal(req.headers.authorization);
          if (principal) add(limits.admin.client, `admin:principal:${principal}`);
        }
    }
    return checks;
  }

  private answer(req: IncomingMessage, res: ServerResponse, route: string, v: Verdict): boolean {
    if (v.ok) return true;
    if (v.reason === 'unavailable') {
      this.metrics.refusals.inc({ route, reason: 'store_unavailable' });
      refuse(
        req,
        res,
        503,
        seconds(v.retryAfterMs),
        'temporarily_unavailable',
        `request limits cannot be checked: the database of region ${this.deps.region} is unavailable; retry later`,
      );
      return false;
    }
    const kind = v.key.includes(':source:') ? 'source' : 'client';
    this.metrics.refusals.inc({ route, reason: kind });
    const wait = seconds(v.retryAfterMs);
    this.limitReached(route, v.key, wait);
    refuse(
      req,
      res,
      429,
      wait,
      'rate_limited',
      `too many requests ${kind === 'source' ? 'from this address' : 'for this client'}; retry in ${wait} s`,
    );
    return false;
  }

  /**
   * Who an admin API token speaks for (the person, else the client), when it is this broker's
   * own unexpired token for the admin audience — checked here by signature only (the guard does
   * the full check later); a token that does not verify counts against its source alone.
   */
  private adminPrincipal(authorization: string | undefined): string | null | undefined {
    const token = bearerOf(authorization);
    if (!token) return undefined;
    const hit = this.principals.get(token);
    if (!hit) return undefined;
    if (hit.principal !== null && hit.exp * 1000 <= Date.now()) return null;
    return hit.principal;
  }

  private async learnAdminPrincipal(authorization: string | undefined): Promise<void> {
    const token = bearerOf(authorization);
    if (!token || this.principals.has(token)) return;
    const keys = this.deps.publicKeys();
    if (this.adminKeys?.fingerprint !== keys.fingerprint)
      this.adminKeys = { fingerprint: keys.fingerprint, jwks: createLocalJWKSet({ keys: keys.keys }) };
    let entry: { principal: string | null; exp: number } = { principal: null, exp: 0 };
    try {
      const { payload } = await jwtVerify(token, this.adminKeys.jwks, {
        issuer: this.deps.issuer,
        audience: ADMIN_AUDIENCE,
        typ: 'at+jwt',
        requiredClaims: ['exp', 'client_id'],
      });
      entry = { principal: String(payload.sub ?? payload.client_id), exp: payload.exp! };
    } catch {
      // not ours, expired or forged: remembered as such (no second verification)
    }
    if (this.principals.size >= 10_000) this.principals.clear();
    this.principals.set(token, entry);
  }

  // -------------------------------------------------------------------- oidc-provider

  /** Lockouts, the per-client token limit and the grant-misuse detectors, on one OP instance. */
  installInto(provider: Provider): void {
    const Op = Provider as unknown as { ctx?: OidcCtx };
    const checked = new WeakSet<object>();
    const authFailures = new WeakSet<object>();
    const misuse = new WeakMap<object, { kind: 'code_replay' | 'refresh_token_reuse'; detail: string }>();
    const revoked = new WeakMap<object, string>();
    const consumedCodes = new WeakMap<object, { sub?: string; grantId?: string }>();

    const find = provider.Client.find.bind(provider.Client);
    provider.Client.find = async (id: string) => {
      const client = await find(id);
      const ctx = Op.ctx;
      const route = ctx?.oidc?.route;
      if (ctx && route && CLIENT_AUTH_ROUTES.has(route) && !checked.has(ctx)) {
        checked.add(ctx);
        await this.atClientAuthentication(ctx, route, client ? id : undefined);
      }
      return client;
    };

    // The code a replay presents is found before oidc-provider revokes its grant: remember whose.
    const codes = provider.AuthorizationCode as unknown as {
      find: (
        ...args: unknown[]
      ) => Promise<{ consumed?: unknown; accountId?: string; grantId?: string } | undefined>;
    };
    const findCode = codes.find.bind(codes);
    codes.find = async (...args: unknown[]) => {
      const code = await findCode(...args);
      const ctx = Op.ctx;
      if (code?.consumed && ctx) consumedCodes.set(ctx, { sub: code.accountId, grantId: code.grantId });
      return code;
    };

    const onError = (ctx: OidcCtx, err: unknown) => {
      const e = err as { error?: string; status?: number; error_detail?: string };
      if (e.error === 'invalid_client' && e.status === 401) authFailures.add(ctx);
      if (e.error === 'invalid_grant' && e.error_detail) {
        if (CODE_REPLAYED.has(e.error_detail) && ctx.oidc?.params?.grant_type === 'authorization_code')
          misuse.set(ctx, { kind: 'code_replay', detail: e.error_detail });
        else if (e.error_detail === REFRESH_REUSED)
          misuse.set(ctx, { kind: 'refresh_token_reuse', detail: e.error_detail });
      }
    };
    // Every refused token request also gets an audit entry (issue 6: token issuance failures).
    const grantFailures = new WeakMap<object, { error: string; description?: string }>();
    provider.on('grant.error', (ctx: OidcCtx, err: unknown) => {
      onError(ctx, err);
      const e = err as { error?: string; error_description?: string };
      if (ctx) grantFailures.set(ctx, { error: e.error ?? 'server_error', description: e.error_description });
    });
    provider.on('introspection.error', onError);
    provider.on('revocation.error', onError);
    provider.on('grant.revoked', (ctx: OidcCtx, grantId: string) => {
      if (ctx) revoked.set(ctx, grantId);
    });

    // After the OP answered (and before the answer leaves): the detectors that need the
    // database run here, so what they decide (a lockout) holds for the very next request.
    provider.use(async (koaCtx, next) => {
      await next();
      const ctx = koaCtx as unknown as OidcCtx;
      try {
        const failure = grantFailures.get(ctx);
        if (failure) await this.tokenRefused(ctx, failure);
        if (authFailures.has(ctx)) await this.clientAuthFailed(ctx);
        const m = misuse.get(ctx);
        if (m) {
          const code = consumedCodes.get(ctx);
          const refresh = ctx.oidc?.entities?.RefreshToken as
            { accountId?: string; grantId?: string } | undefined;
          await this.grantMisused(m.kind, {
            clientId: ctx.oidc?.client?.clientId,
            sub: m.kind === 'code_replay' ? code?.sub : refresh?.accountId,
            grantId: revoked.get(ctx) ?? (m.kind === 'code_replay' ? code?.grantId : refresh?.grantId),
            detail: m.detail,
          });
        }
      } catch (err) {
        this.deps.logger.error({ err: { message: (err as Error).message } }, 'security detector failed');
      }
    });
  }

  private async atClientAuthentication(
    ctx: OidcCtx,
    route: string,
    clientId: string | undefined,
  ): Promise<void> {
    const now = Date.now();
    const source = requestSource(ctx.req, this.trusted);
    const lockedFor = (key: string) => {
      const until = this.lockouts.get(key);
      return until !== undefined && until > now ? until - now : 0;
    };
    const clientLock = clientId ? lockedFor(`client:${clientId}`) : 0;
    const sourceLock = lockedFor(`source:${source}`);
    if (clientLock || sourceLock) {
      const wait = seconds(Math.max(clientLock, sourceLock));
      this.metrics.refusals.inc({ route, reason: clientLock ? 'client_locked' : 'source_locked' });
      ctx.set('Retry-After', String(wait));
      // 429 so HTTP clients back off for Retry-After; invalid_client so OAuth libraries report an
      // authentication problem. The right secret does not help until the lockout ends.
      throw oauthError(
        429,
        'invalid_client',
        `client authentication is locked after repeated failures ${clientLock ? 'for this client' : 'from this address'}; retry in ${wait} s`,
      );
    }
    const rate = this.deps.config.rateLimits.token.client;
    if (route !== 'token' || !clientId || !rate || this.tokenClientChecked.get(ctx.req) === clientId) return;
    let verdict = this.limiter.admit([{ key: `token:client:${clientId}`, rate }]);
    if (verdict instanceof Promise) verdict = await verdict;
    if (verdict.ok) return;
    const wait = seconds(verdict.retryAfterMs);
    ctx.set('Retry-After', String(wait));
    if (verdict.reason === 'unavailable') {
      this.metrics.refusals.inc({ route, reason: 'store_unavailable' });
      throw oauthError(
        503,
        'temporarily_unavailable',
        `request limits cannot be checked: the database of region ${this.deps.region} is unavailable; retry later`,
      );
    }
    this.metrics.refusals.inc({ route, reason: 'client' });
    this.limitReached(route, verdict.key, wait);
    throw oauthError(429, 'rate_limited', `too many token requests for this client; retry in ${wait} s`);
  }

  /**
   * A limit refused a request: one audit entry per key and minute on this replica (every 429 is
   * counted in meridian_security_refusals_total; auditing each one would turn a flood into audit
   * writes, which the region serializes).
   */
  private limitReached(route: string, key: string, retryAfterSeconds: number): void {
    const now = Date.now();
    const last = this.limitAudited.get(key);
    if (last !== undefined && now - last < 60_000) return;
    if (this.limitAudited.size >= 10_000) this.limitAudited.clear();
    this.limitAudited.set(key, now);
    // `<route>:<source|client|principal>:<id>`
    const [, kind = 'key', ...rest] = key.split(':');
    const id = rest.join(':').slice(0, 200);
    void (async () => {
      await this.deps.audit.record({
        actor: 'system',
        action: 'security.rate_limited',
        targetType: kind === 'source' ? 'source' : kind === 'principal' ? 'subject' : 'client',
        // A person (admin principal) by pseudonym unless homed here, like every subject reference.
        targetId: kind === 'principal' ? await this.subjectRef(id) : id,
        outcome: 'refused',
        detail: { route, retryAfterSeconds, repeatsWithinMinuteNotAudited: true },
      });
    })().catch((err: unknown) =>
      this.deps.logger.error({ err: { message: (err as Error).message } }, 'rate limit refusal not audited'),
    );
  }

  /**
   * One audit entry per refused token request: who asked (the authenticated client, or the id
   * it claimed), for what grant, what it was told, from where; the subject only when a code or
   * refresh token named one (by pseudonym unless this is its home region). Never a credential.
   */
  private async tokenRefused(ctx: OidcCtx, failure: { error: string; description?: string }): Promise<void> {
    // oidc-provider has found the client before it checks the credentials: invalid_client means
    // the one asking is not that client.
    const found = ctx.oidc?.client?.clientId;
    const clientId = failure.error === 'invalid_client' ? undefined : found;
    const claimed =
      found ??
      (typeof ctx.oidc?.params?.client_id === 'string' ? ctx.oidc.params.client_id : undefined) ??
      basicClientId(ctx.req.headers.authorization);
    const entities = ctx.oidc?.entities as
      { AuthorizationCode?: { accountId?: string }; RefreshToken?: { accountId?: string } } | undefined;
    const sub = entities?.AuthorizationCode?.accountId ?? entities?.RefreshToken?.accountId;
    const grantType = ctx.oidc?.params?.grant_type;
    await this.deps.audit.record({
      actor: clientId ?? 'unauthenticated',
      action: 'token.refused',
      targetType: 'client',
      targetId: claimed ? claimed.slice(0, 200) : undefined,
      outcome: 'refused',
      detail: {
        grant_type: typeof grantType === 'string' ? grantType.slice(0, 100) : null,
        error: failure.error,
        ...(failure.description ? { error_description: failure.description.slice(0, 300) } : {}),
        authenticated: clientId !== undefined,
        source: requestSource(ctx.req, this.trusted),
        ...(sub ? { subject: await this.subjectRef(sub) } : {}),
      },
    });
  }

  /** A failed client authentication: counts towards the client's and the source's burst. */
  private async clientAuthFailed(ctx: OidcCtx): Promise<void> {
    this.metrics.events.inc({ type: 'client_auth_failure' });
    const { lockout } = this.deps.config;
    const route = ctx.oidc?.route ?? 'token';
    const source = requestSource(ctx.req, this.trusted);
    const clientId = ctx.oidc?.client?.clientId;
    const work: Promise<void>[] = [];
    // Only clients that exist get a counter: random ids would only fill the table.
    if (clientId && lockout.clientFailures)
      work.push(
        this.burst('client_auth_burst', `client:${clientId}`, lockout.clientFailures, 'client', clientId, {
          route,
        }),
      );
    if (lockout.sourceFailures)
      work.push(
        this.burst('source_auth_burst', `source:${source}`, lockout.sourceFailures, 'source', source, {
          route,
          ...(clientId ? { client: clientId } : {}),
        }),
      );
    await Promise.all(work);
  }

  private async burst(
    detector: 'client_auth_burst' | 'source_auth_burst',
    key: string,
    rate: Rate,
    targetType: string,
    targetId: string,
    detail: Record<string, unknown>,
  ): Promise<void> {
    const { estimate } = await this.store.count(detector, key, rate.periodSeconds, 1, rate.limit);
    if (estimate < rate.limit) return;
    const { seconds: base, maxSeconds } = this.deps.config.lockout;
    const lock = await this.store.lock(key, base, maxSeconds);
    this.lockouts.set(key, Date.now() + lock.seconds * 1000);
    if (!lock.fresh) return;
    await this.alert({
      detector,
      targetType,
      targetId,
      outcome: 'refused',
      detail: {
        ...detail,
        failures: Math.round(estimate),
        windowSeconds: rate.periodSeconds,
        lockedSeconds: lock.seconds,
        lockedUntil: lock.lockedUntil.toISOString(),
        strikes: lock.strikes,
      },
      containment: `client authentication ${targetType === 'client' ? 'of the client' : 'from the address'} locked for ${lock.seconds} s`,
    });
  }

  private async grantMisused(
    kind: 'code_replay' | 'refresh_token_reuse',
    e: { clientId?: string; sub?: string; grantId?: string; detail: string },
  ): Promise<void> {
    this.metrics.events.inc({ type: kind });
    const rate =
      kind === 'code_replay'
        ? this.deps.config.detectors.codeReplay
        : this.deps.config.detectors.refreshTokenReuse;
    const clientId = e.clientId ?? 'unknown';
    this.deps.logger.warn({ client: clientId, grant: e.grantId, kind }, 'single-use grant presented twice');
    if (!rate) return;
    const { estimate, fire } = await this.store.count(
      kind,
      `client:${clientId}`,
      rate.periodSeconds,
      1,
      rate.limit,
    );
    if (!fire) return;
    const subject = e.sub && e.sub !== clientId ? await this.subjectRef(e.sub) : undefined;
    await this.alert({
      detector: kind,
      targetType: subject ? 'subject' : 'client',
      targetId: subject ?? clientId,
      detail: {
        client: clientId,
        ...(e.grantId ? { grant: e.grantId } : {}),
        occurrences: Math.round(estimate),
        windowSeconds: rate.periodSeconds,
        reason: e.detail,
      },
      containment:
        kind === 'code_replay'
          ? 'the grant behind the code is revoked: tokens issued from the code no longer introspect or refresh (RFC 6749 §4.1.2)'
          : 'the whole refresh-token family (the grant) is revoked (RFC 9700 §4.14.2)',
    });
  }

  // ----------------------------------------------------------------------- login events

  readonly loginEvents: LoginSecurityEvents = {
    upstreamRejected: async (e) => {
      this.metrics.events.inc({ type: 'upstream_id_token_invalid' });
      const rate = this.deps.config.detectors.upstreamIdTokenFailures;
      if (!rate) return;
      try {
        const { estimate, fire } = await this.store.count(
          'upstream_id_token_invalid',
          e.federationId,
          rate.periodSeconds,
          1,
          rate.limit,
        );
        if (!fire) return;
        await this.alert({
          detector: 'upstream_id_token_invalid',
          targetType: 'federation',
          targetId: e.federationId,
          detail: {
            failures: Math.round(estimate),
            windowSeconds: rate.periodSeconds,
            code: e.code,
            ...(e.detail ? { last: e.detail.slice(0, 200) } : {}),
          },
          containment: 'the logins were refused (access_denied); nothing from the upstream was stored',
        });
      } catch (err) {
        this.deps.logger.error({ err: { message: (err as Error).message } }, 'upstream detector failed');
      }
    },
    homeLogin: async (e) => {
      const travel = this.deps.config.detectors.travel;
      try {
        const previous = await this.store.traceLogin(e.sub, e.region);
        if (!travel || !previous) return;
        const verdict = impossibleTravel(previous, e.region, travel.locations, travel.maxKmh);
        if (!verdict) return;
        this.metrics.events.inc({ type: 'impossible_travel' });
        await this.alert({
          detector: 'impossible_travel',
          targetType: 'subject',
          targetId: e.sub,
          detail: { ...verdict, maxKmh: travel.maxKmh, federation: e.federationId },
          containment: 'detected and audited; the login was not refused',
        });
      } catch (err) {
        this.deps.logger.error({ err: { message: (err as Error).message } }, 'travel detector failed');
      }
    },
  };

  // --------------------------------------------------------------------- sidecar reports

  /** The reporting client, when the bearer token may report security events here. */
  async authenticateReporter(authorization: string | undefined): Promise<string | undefined> {
    const token = bearerOf(authorization);
    if (!token) return undefined;
    const payload = await this.deps.verifyToken(token, SECURITY_EVENTS_AUDIENCE);
    if (!payload || payload.act !== undefined || payload.sub !== payload.client_id) return undefined;
    const scopes = typeof payload.scope === 'string' ? payload.scope.split(' ') : [];
    return scopes.includes(SECURITY_REPORT_SCOPE) ? String(payload.client_id) : undefined;
  }

  /** Events a sidecar saw: residency violations and invalid-signature / unknown-issuer tokens. */
  async report(reporter: string, report: SecurityReport): Promise<{ accepted: number }> {
    let rejected = 0;
    const codes: Record<string, number> = {};
    const violations = new Map<string, { count: number; e: ReportedEvent }>();
    for (const e of report.events) {
      if (e.type === 'token_rejected' && e.code && TOKEN_FAILURE_CODES.has(e.code)) {
        rejected += e.count;
        codes[e.code] = (codes[e.code] ?? 0) + e.count;
      } else if (e.type === 'residency_violation') {
        const key = e.client_id ?? 'unknown';
        const v = violations.get(key);
        if (v) v.count += e.count;
        else violations.set(key, { count: e.count, e });
      }
    }
    const { detectors } = this.deps.config;
    if (rejected > 0) {
      this.metrics.events.inc({ type: 'sidecar_token_rejected' }, rejected);
      const rate = detectors.sidecarTokenFailures;
      if (rate) {
        const { estimate, fire } = await this.store.count(
          'sidecar_token_failures',
          reporter,
          rate.periodSeconds,
          rejected,
          rate.limit,
        );
        if (fire)
          await this.alert({
            detector: 'sidecar_token_failures',
            targetType: 'client',
            targetId: reporter,
            detail: {
              service: report.audience,
              ...(report.region ? { serviceRegion: report.region } : {}),
              codes,
              rejected: Math.round(estimate),
              windowSeconds: rate.periodSeconds,
            },
            containment: 'the tokens were refused at the sidecar (401)',
          });
      }
    }
    for (const [clientId, { count, e }] of violations) {
      this.metrics.events.inc({ type: 'residency_violation' }, count);
      const rate = detectors.residencyViolation;
      if (!rate) continue;
      const { estimate, fire } = await this.store.count(
        'residency_violation',
        `client:${clientId}`,
        rate.periodSeconds,
        count,
        rate.limit,
      );
      if (!fire) continue;
      const person = e.sub && e.sub !== clientId ? e.sub : undefined;
      const ref = person
        ? e.token_region === this.deps.region
          ? person
          : pseudonym(this.deps.pepper, 'log', person)
        : undefined;
      await this.alert({
        detector: 'residency_violation',
        targetType: ref ? 'subject' : 'client',
        targetId: ref ?? clientId,
        detail: {
          client: clientId,
          service: report.audience,
          ...(report.region ? { serviceRegion: report.region } : {}),
          ...(e.token_region ? { tokenRegion: e.token_region } : {}),
          ...(e.processing ? { processing: e.processing } : {}),
          occurrences: Math.round(estimate),
          windowSeconds: rate.periodSeconds,
          reporter,
        },
        containment: 'the request was refused at the service (403 insufficient_scope)',
      });
    }
    return { accepted: report.events.length };
  }

  // ----------------------------------------------------------------------------- alerts

  /** How the audit trail names a subject: plainly at its home region, by pseudonym elsewhere. */
  private async subjectRef(sub: string): Promise<string> {
    const home = await this.store.homeOf(sub).catch(() => undefined);
    return home === this.deps.region ? sub : pseudonym(this.deps.pepper, 'log', sub);
  }

  private async alert(a: Alert): Promise<void> {
    this.metrics.detections.inc({ detector: a.detector });
    const id = randomUUID();
    this.deps.logger.warn(
      { detector: a.detector, alert: id, target: a.targetType, containment: a.containment },
      'security anomaly detected',
    );
    try {
      await this.deps.audit.record({
        actor: 'system',
        action: `security.${a.detector}`,
        targetType: a.targetType,
        targetId: a.targetId,
        outcome: a.outcome ?? 'failure',
        detail: { ...a.detail, alert: id, ...(a.containment ? { containment: a.containment } : {}) },
      });
    } catch (err) {
      this.deps.logger.error(
        { err: { message: (err as Error).message }, alert: id },
        'security alert not audited',
      );
    }
    this.webhook?.send(id, {
      id,
      type: 'meridian.security.alert',
      detector: a.detector,
      region: this.deps.region,
      issuer: this.deps.issuer,
      at: new Date().toISOString(),
      target: { type: a.targetType, ...(a.targetId ? { id: a.targetId } : {}) },
      detail: a.detail,
      ...(a.containment ? { containment: a.containment } : {}),
    });
  }
}

// ------------------------------------------------------------------------------ answers

const PAGE_STATUS: Record<number, string> = { 429: 'Too many requests', 503: 'Service busy' };

/** A refusal before routing: OAuth-style JSON, or a small page for a browser on a login route. */
function refuse(
  req: IncomingMessage,
  res: ServerResponse,
  status: 429 | 503,
  retryAfter: number,
  error: string,
  description: string,
): void {
  req.resume();
  if (res.headersSent) return;
  const html =
    /\btext\/html\b/.test(req.headers.accept ?? '') &&
    !/\bapplication\/json\b/.test(req.headers.accept ?? '');
  const body = html
    ? `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${PAGE_STATUS[status]}</title></head><body><main><h1>${PAGE_STATUS[status]}</h1><p role="alert">Please try again in ${retryAfter} seconds.</p></main></body></html>`
    : JSON.stringify({ error, error_description: description });
  res.writeHead(status, {
    'retry-after': String(retryAfter),
    'cache-control': 'no-store',
    'content-type': html ? 'text/html; charset=utf-8' : 'application/json',
    'content-length': Buffer.byteLength(body),
    ...(html ? { 'content-security-policy': "default-src 'none'", 'x-content-type-options': 'nosniff' } : {}),
  });
  res.end(req.method === 'HEAD' ? undefined : body);
}
