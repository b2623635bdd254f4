/**
 * Failing closed while a database is down. A request that needs a database the broker knows to
 * be down is answered 503 with `Retry-After` (RFC 9110 §15.6.4, §10.2.3) before any handler
 * runs; one that finds out on the way (the outage began during it) gets the same answer from
 * oidc-provider's error path or the Nest filter. Never a 500, a stack trace or a wait for a
 * connection timeout; nothing is sent to, or served from, another region.
 *
 * The body is an OAuth error (RFC 6749 §5.2 shape) with `temporarily_unavailable`, the code
 * RFC 6749 §4.1.2.1 defines for this condition; people get the login pages' error page.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Request, Response } from 'express';
import type { Middleware } from 'koa';
import type Provider from 'oidc-provider';
import type { KoaContextWithOIDC } from 'oidc-provider';
import { negotiateLanguage, pageHeaders, providerErrorPage } from '@meridian/federation';
import { isDatabaseUnavailable, type DatabaseAvailability, type DatabaseName } from '@meridian/persistence';

/** How long a client should wait before trying again; the probes notice a recovery well within it. */
export const RETRY_AFTER_SECONDS = 5;

/** Route groups (http-dispatch.ts) that work without a database, or with the control plane only. */
const NEEDS: Record<string, readonly DatabaseName[]> = {
  healthz: [],
  readyz: [],
  metrics: [],
  discovery: [],
  jwks: [],
  // The console renders its own answers to the API's 503s; the filter covers its sessions.
  console: [],
  trust_bundle: ['control'],
};
const BOTH: readonly DatabaseName[] = ['control', 'region'];

/** Routes people reach with a browser: they get a page, not JSON. */
const PAGE_ROUTES = new Set(['authorization', 'end_session', 'login', 'op_other', 'console']);
/** oidc-provider's route names that are pages. */
const OP_PAGE_ROUTES = /^(authorization|resume|end_session|end_session_confirm|end_session_success)$/;

export function describeOutage(region: string, databases: readonly DatabaseName[]): string {
  const region_ = databases.includes('region');
  const control = databases.includes('control');
  const what =
    region_ && control
      ? `the databases of region ${region} (its data and the control plane) are unavailable`
      : region_
        ? `the database of region ${region} is unavailable`
        : control
          ? `the control-plane database (configuration of clients and identity providers) is unavailable at region ${region}`
          : `a database of region ${region} is unavailable`;
  return `${what}; try again in a few seconds`;
}

export interface OutageAnswer {
  status: 503;
  headers: Record<string, string>;
  body: string;
}

/** A 503 for a person (the login pages' error page) or for a client (an OAuth error body). */
export function unavailableAnswer(o: {
  region: string;
  description: string;
  page: boolean;
  acceptLanguage?: string;
  retryAfterSeconds: number;
}): OutageAnswer {
  const retry = { 'Retry-After': String(o.retryAfterSeconds) };
  if (o.page) {
    const lang = negotiateLanguage(o.acceptLanguage);
    return {
      status: 503,
      headers: {
        ...pageHeaders(lang),
        ...retry,
        Vary: 'Accept-Language',
        'Content-Type': 'text/html; charset=utf-8',
      },
      body: providerErrorPage({
        lang,
        region: o.region,
        error: 'temporarily_unavailable',
        description: o.description,
      }),
    };
  }
  return {
    status: 503,
    headers: { ...retry, 'Cache-Control': 'no-store', 'Content-Type': 'application/json; charset=utf-8' },
    body: JSON.stringify({ error: 'temporarily_unavailable', error_description: o.description }),
  };
}

/** Paths people open in a browser (under the issuer's path): they get a page, not JSON. */
export function isPagePath(path: string): boolean {
  return /^\/(auth|interaction|federation|session\/end|console)(\/|$|\?)/.test(path);
}

export class OutageResponder {
  constructor(
    private readonly region: string,
    readonly availability: DatabaseAvailability,
  ) {}

  answer(o: { databases: readonly DatabaseName[]; page: boolean; acceptLanguage?: string }): OutageAnswer {
    return unavailableAnswer({
      region: this.region,
      description: describeOutage(this.region, o.databases),
      page: o.page,
      acceptLanguage: o.acceptLanguage,
      retryAfterSeconds: RETRY_AFTER_SECONDS,
    });
  }

  /**
   * The dispatcher's gate: answers (and returns true) when `route` needs a database that is
   * down. Costs a map lookup per request while everything is up.
   */
  gate = (req: IncomingMessage, res: ServerResponse, route: string): boolean => {
    const needs = NEEDS[route] ?? BOTH;
    if (needs.length === 0) return false;
    const down = this.availability.down().filter((d) => needs.includes(d));
    if (down.length === 0) return false;
    const a = this.answer({
      databases: down,
      page: PAGE_ROUTES.has(route),
      acceptLanguage: header(req.headers['accept-language']),
    });
    res.writeHead(a.status, a.headers);
    res.end(a.body);
    return true;
  };

  /**
   * A request failed as if a database were unreachable: probe now (briefly waiting, so the answer
   * can name which database), then answer 503.
   */
  async forError(o: { page: boolean; acceptLanguage?: string }): Promise<OutageAnswer> {
    await Promise.race([this.availability.suspect(), new Promise((r) => setTimeout(r, 500).unref())]);
    return this.answer({ databases: this.availability.down(), ...o });
  }

  /** For the Nest exception filter. */
  async sendExpress(req: Request, res: Response): Promise<void> {
    const path = req.path ?? '';
    const page = /^\/(interaction|federation|console)(\/|$)/.test(path);
    const a = await this.forError({ page, acceptLanguage: req.headers['accept-language'] });
    if (res.headersSent) return;
    res.status(a.status).set(a.headers).send(a.body);
  }

  /**
   * The outermost oidc-provider middleware: a database outage found during a request — thrown
   * by a middleware, or caught and rendered by oidc-provider as `server_error` (500, or an error
   * redirect to the client) — becomes 503. Install it before any other `provider.use`.
   */
  installOn(provider: Provider): void {
    const failed = new WeakSet<object>();
    provider.on('server_error', (ctx: unknown, err: unknown) => {
      if (ctx && isDatabaseUnavailable(err)) failed.add(ctx as object);
    });
    const middleware: Middleware = async (koaCtx, next) => {
      try {
        await next();
        if (!failed.has(koaCtx)) return;
      } catch (err) {
        if (!isDatabaseUnavailable(err)) throw err;
      }
      const ctx = koaCtx as unknown as KoaContextWithOIDC;
      const route = ctx.oidc?.route ?? '';
      const page = OP_PAGE_ROUTES.test(route) || (route === '' && ctx.accepts('json', 'html') === 'html');
      const a = await this.forError({ page, acceptLanguage: ctx.get('accept-language') });
      // Not an error redirect to the client: the request could not be processed at all.
      ctx.remove('Location');
      ctx.status = a.status;
      ctx.set(a.headers);
      ctx.body = a.body;
    };
    provider.use(middleware);
  }
}

function header(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}
