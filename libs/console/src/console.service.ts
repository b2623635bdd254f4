/**
 * Sign-in, sessions and the request pipeline of the console: every page runs with a valid
 * session (else: sign in), every POST with a valid CSRF token from the same origin (else: 403),
 * and every read or change through the API with the person's own token.
 */
import type { Logger } from 'pino';
import type { JwtSigningKey } from '@meridian/keys';
import type { RegionDatabase } from '@meridian/persistence';
import { ApiUnavailableError, ConsoleApi, SessionEndedError } from './api';
import { ConsoleOidcClient, ConsoleOidcError } from './console-oidc';
import { html, type Html } from './html';
import {
  ConsoleSessionStore,
  checkCsrf,
  csrfToken,
  deriveConsoleKeys,
  newSessionId,
  openLoginState,
  sealLoginState,
  signSessionId,
  verifySessionCookie,
  type ConsoleKeys,
  type ConsoleSession,
} from './session';
import { layout, type Frame, type Notice, type Section } from './views';

export interface ConsoleDeps {
  region: string;
  issuer: string;
  clientId: string;
  signingAlg: string;
  /** The region's current signing key: the console's private_key_jwt (sealed, or in an HSM). */
  signingKey: () => JwtSigningKey;
  /** Where this broker's API and token endpoint answer (its own listener by default). */
  apiBase: () => string;
  kek: Buffer;
  regionDb: RegionDatabase;
  sessionSeconds: number;
  timeoutMs: number;
  logger: Logger;
}

export const CONSOLE_DEPS = Symbol('CONSOLE_DEPS');

/** A request as the console sees it (the controller adapts express's). */
export interface ConsoleRequest {
  method: string;
  /** Path below `/console`, e.g. `/federations/de-eid` (`''` for the overview). */
  path: string;
  query: URLSearchParams;
  cookies: Record<string, string>;
  body: Record<string, unknown>;
  origin?: string;
  secFetchSite?: string;
}

export interface ConsoleAnswer {
  status: number;
  html?: Html;
  location?: string;
  download?: { filename: string; contentType: string; body: string };
  cookies?: string[];
}

export interface PageContext {
  sid: string;
  session: ConsoleSession;
  api: ConsoleApi;
  csrf: string;
  keys: ConsoleKeys;
  req: ConsoleRequest;
  /** The page frame for a section (nav, who is signed in, sign-out form). */
  frame(section?: Section): Frame;
  /** A URL of the console: `u('/federations')`. */
  u(path: string): string;
}

export type PageHandler = (ctx: PageContext) => Promise<ConsoleAnswer>;

const LOGIN_STATE_SECONDS = 600;

export class ConsoleService {
  readonly keys: ConsoleKeys;
  readonly sessions: ConsoleSessionStore;
  readonly oidc: ConsoleOidcClient;
  /** The issuer's path: console URLs are `${base}/console/...`. */
  readonly base: string;
  private readonly secure: boolean;
  private readonly origin: string;
  private readonly cookieName: string;
  private readonly loginCookieName: string;

  constructor(readonly deps: ConsoleDeps) {
    this.keys = deriveConsoleKeys(deps.kek, deps.region);
    this.sessions = new ConsoleSessionStore(deps.regionDb, this.keys);
    this.oidc = new ConsoleOidcClient({
      issuer: deps.issuer,
      clientId: deps.clientId,
      signingAlg: deps.signingAlg,
      signingKey: deps.signingKey,
      apiBase: deps.apiBase,
      timeoutMs: deps.timeoutMs,
    });
    const issuer = new URL(deps.issuer);
    this.base = issuer.pathname.replace(/\/+$/, '');
    this.secure = issuer.protocol === 'https:';
    this.origin = issuer.origin;
    // Browsers share cookies across ports of one host: brokers on one host must not collide.
    this.cookieName = `meridian_console_${deps.region.replace(/-/g, '_')}`;
    this.loginCookieName = `${this.cookieName}_login`;
  }

  u = (path: string) => `${this.base}/console${path}`;

  private cookie(name: string, value: string, maxAge: number): string {
    return [
      `${name}=${value}`,
      `Path=${this.base}/console`,
      `Max-Age=${maxAge}`,
      'HttpOnly',
      'SameSite=Lax',
      ...(this.secure ? ['Secure'] : []),
    ].join('; ');
  }

  private clearCookie(name: string): string {
    return this.cookie(name, '', 0);
  }

  frameWithout(): Frame {
    return { base: this.base, region: this.deps.region };
  }

  page(frame: Frame, status: number, title: string, body: Html, notice?: Notice): ConsoleAnswer {
    return { status, html: layout(frame, title, body, notice) };
  }

  // ---- sign-in

  /** GET /console/login — to the broker's authorization endpoint, a fresh sign-in every time. */
  async login(req: ConsoleRequest): Promise<ConsoleAnswer> {
    const returnTo = safeReturn(req.query.get('return'));
    const hint = req.query.get('idp_hint') ?? undefined;
    let start: Awaited<ReturnType<ConsoleOidcClient['start']>>;
    try {
      start = await this.oidc.start(hint && /^[A-Za-z0-9._~-]{1,64}$/.test(hint) ? hint : undefined);
    } catch (err) {
      this.deps.logger.error({ err: { message: (err as Error).message } }, 'console sign-in could not start');
      return this.problem(503, 'Sign-in unavailable', 'The sign-in could not be started. Try again shortly.');
    }
    const state = sealLoginState(this.keys, {
      state: start.state,
      nonce: start.nonce,
      codeVerifier: start.codeVerifier,
      returnTo,
      exp: Math.floor(Date.now() / 1000) + LOGIN_STATE_SECONDS,
    });
    return {
      status: 303,
      location: start.url,
      cookies: [this.cookie(this.loginCookieName, state, LOGIN_STATE_SECONDS)],
    };
  }

  /** GET /console/callback — the broker answers; a session starts. */
  async callback(req: ConsoleRequest): Promise<ConsoleAnswer> {
    const pending = openLoginState(this.keys, req.cookies[this.loginCookieName]);
    const clear = this.clearCookie(this.loginCookieName);
    if (!pending)
      return {
        ...this.problem(
          400,
          'Sign-in expired',
          html`This sign-in has expired or was started in another browser.
            <a href="${this.u('/login')}">Sign in again</a>.`,
        ),
        cookies: [clear],
      };
    const error = req.query.get('error');
    if (error) {
      const description = req.query.get('error_description') ?? 'the sign-in did not complete';
      return {
        ...this.problem(
          error === 'access_denied' ? 403 : 400,
          'Sign-in did not complete',
          html`${description.slice(0, 300)} <a href="${this.u('/login')}">Try again</a>.`,
        ),
        cookies: [clear],
      };
    }
    let tokens: Awaited<ReturnType<ConsoleOidcClient['finish']>>;
    try {
      tokens = await this.oidc.finish(req.query.toString(), pending);
    } catch (err) {
      this.deps.logger.info(
        { err: { message: (err as Error).message, error: (err as ConsoleOidcError).error } },
        'console sign-in refused',
      );
      return {
        ...this.problem(
          400,
          'Sign-in did not complete',
          html`The answer of the sign-in could not be verified. <a href="${this.u('/login')}">Try again</a>.`,
        ),
        cookies: [clear],
      };
    }
    const now = Math.floor(Date.now() / 1000);
    const sid = newSessionId();
    await this.sessions.save(sid, {
      ...tokens,
      createdAt: now,
      expiresAt: now + this.deps.sessionSeconds,
    });
    return {
      status: 303,
      location: this.u(pending.returnTo),
      cookies: [clear, this.cookie(this.cookieName, signSessionId(this.keys, sid), this.deps.sessionSeconds)],
    };
  }

  /** POST /console/logout — the console session ends, its refresh token is revoked, then the broker's. */
  async logout(req: ConsoleRequest): Promise<ConsoleAnswer> {
    const sid = verifySessionCookie(this.keys, req.cookies[this.cookieName]);
    if (!sid || !this.sameOrigin(req) || !checkCsrf(this.keys, sid, req.body._csrf))
      return this.refused(req, 'This sign-out was not sent from the console page.');
    const session = await this.sessions.find(sid);
    await this.sessions.destroy(sid);
    const clear = this.clearCookie(this.cookieName);
    if (session?.refreshToken) await this.oidc.revoke(session.refreshToken);
    const end = await this.oidc.endSessionUrl(session?.idToken).catch(() => undefined);
    return { status: 303, location: end ?? this.u('/signed-out'), cookies: [clear] };
  }

  signedOut(): ConsoleAnswer {
    return this.page(
      this.frameWithout(),
      200,
      'Signed out',
      html`<p>You are signed out of the console.</p>
        <p><a class="button" href="${this.u('/login')}">Sign in again</a></p>`,
    );
  }

  // ---- the pipeline

  /** Runs a page with the session; POSTs also need a CSRF token and the console's origin. */
  async run(req: ConsoleRequest, handler: PageHandler): Promise<ConsoleAnswer> {
    const raw = req.cookies[this.cookieName];
    const sid = verifySessionCookie(this.keys, raw);
    const session = sid ? await this.sessions.find(sid) : undefined;
    if (!sid || !session) {
      const cookies = raw !== undefined ? [this.clearCookie(this.cookieName)] : [];
      if (req.method === 'GET') {
        const back = `${req.path}${req.query.size ? `?${req.query.toString()}` : ''}`;
        return {
          status: 303,
          location: `${this.u('/login')}?return=${encodeURIComponent(back || '/')}`,
          cookies,
        };
      }
      return {
        ...this.problem(
          403,
          'Not signed in',
          html`Your console session has ended or is not valid, so nothing was changed.
            <a href="${this.u('/login')}">Sign in again</a>.`,
        ),
        cookies,
      };
    }
    const csrf = csrfToken(this.keys, sid);
    if (req.method !== 'GET' && (!this.sameOrigin(req) || !checkCsrf(this.keys, sid, req.body._csrf)))
      return this.refused(req, 'This form was not sent from a console page (missing or wrong CSRF token).');
    const api = new ConsoleApi(
      {
        apiBase: this.deps.apiBase,
        timeoutMs: this.deps.timeoutMs,
        sessions: this.sessions,
        oidc: this.oidc,
      },
      sid,
      session,
    );
    const ctx: PageContext = {
      sid,
      session,
      api,
      csrf,
      keys: this.keys,
      req,
      u: this.u,
      frame: (section) => ({
        base: this.base,
        region: this.deps.region,
        section,
        who: { sub: api.current.sub, scopes: api.current.scopes, csrf },
      }),
    };
    try {
      return await handler(ctx);
    } catch (err) {
      if (err instanceof SessionEndedError) {
        await this.sessions.destroy(sid);
        const cookies = [this.clearCookie(this.cookieName)];
        if (req.method === 'GET')
          return {
            status: 303,
            location: `${this.u('/login')}?return=${encodeURIComponent(req.path || '/')}`,
            cookies,
          };
        return {
          ...this.problem(
            401,
            'Session ended',
            html`Your sign-in has ended, so nothing was changed.
              <a href="${this.u('/login')}">Sign in again</a>.`,
          ),
          cookies,
        };
      }
      if (err instanceof ApiUnavailableError)
        return this.problem(
          502,
          'The broker did not answer',
          'The admin API of this broker could not complete the request. Try again shortly.',
          ctx.frame(),
        );
      this.deps.logger.error(
        { err: { message: (err as Error)?.message, stack: (err as Error)?.stack } },
        'console page failed',
      );
      return this.problem(500, 'Something went wrong', 'The page could not be shown.', ctx.frame());
    }
  }

  private sameOrigin(req: ConsoleRequest): boolean {
    if (req.secFetchSite && req.secFetchSite !== 'same-origin' && req.secFetchSite !== 'none') return false;
    return req.origin === undefined || req.origin === this.origin;
  }

  private refused(req: ConsoleRequest, why: string): ConsoleAnswer {
    this.deps.logger.info({ path: req.path }, 'console form refused (CSRF)');
    return this.problem(
      403,
      'Request refused',
      html`${why} Nothing was changed. <a href="${this.u('')}">Back to the console</a>.`,
    );
  }

  problem(status: number, title: string, message: Html | string, frame?: Frame): ConsoleAnswer {
    return this.page(frame ?? this.frameWithout(), status, title, html`<p>${message}</p>`, undefined);
  }
}

/** Only console paths: never an absolute URL (open redirect). */
export function safeReturn(value: string | null): string {
  if (
    !value ||
    value.length > 1000 ||
    !value.startsWith('/') ||
    value.startsWith('//') ||
    value.includes('\\')
  )
    return '';
  if (/[\r\n]/.test(value) || value === '/') return '';
  return value;
}
