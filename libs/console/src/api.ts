/**
 * The console's only way to read or change anything: the broker's admin, compliance and privacy
 * HTTP API, called with the signed-in person's own access token. Nothing here is privileged —
 * the API decides (401/403) exactly as it does for any other caller.
 */
import type { ConsoleOidcClient } from './console-oidc';
import type { ConsoleSession, ConsoleSessionStore } from './session';

export interface ApiAnswer {
  status: number;
  // The API's JSON answers vary per route; pages read the members they render.
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- JSON of many shapes
  body: any;
  headers: Headers;
}

/** The session is over (tokens expired or revoked and not refreshable): sign in again. */
export class SessionEndedError extends Error {
  constructor() {
    super('the console session has ended');
    this.name = 'SessionEndedError';
  }
}

/** The API could not be reached or failed (5xx). */
export class ApiUnavailableError extends Error {
  constructor(readonly status: number | undefined) {
    super('the broker API is unavailable');
    this.name = 'ApiUnavailableError';
  }
}

export interface ConsoleApiDeps {
  apiBase: () => string;
  timeoutMs: number;
  sessions: ConsoleSessionStore;
  oidc: ConsoleOidcClient;
}

const REFRESH_MARGIN_SECONDS = 20;

export class ConsoleApi {
  constructor(
    private readonly deps: ConsoleApiDeps,
    private readonly sid: string,
    private session: ConsoleSession,
  ) {}

  get current(): ConsoleSession {
    return this.session;
  }

  async call(method: string, path: string, body?: unknown): Promise<ApiAnswer> {
    if (this.session.accessTokenExpiresAt - REFRESH_MARGIN_SECONDS < Date.now() / 1000) await this.refresh();
    let answer = await this.send(method, path, body);
    if (answer.status === 401) {
      await this.refresh(true);
      answer = await this.send(method, path, body);
      if (answer.status === 401) throw new SessionEndedError();
    }
    if (answer.status >= 500) throw new ApiUnavailableError(answer.status);
    return answer;
  }

  /** Unauthenticated GET of a public URL (a region's /readyz). */
  static async probe(
    url: string,
    timeoutMs: number,
  ): Promise<{ status?: number; ms: number; body?: unknown; error?: string }> {
    const started = Date.now();
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs), redirect: 'manual' });
      const text = await res.text();
      let body: unknown;
      try {
        body = JSON.parse(text);
      } catch {
        body = undefined;
      }
      return { status: res.status, ms: Date.now() - started, body };
    } catch (err) {
      const e = err as Error;
      return {
        ms: Date.now() - started,
        error: e.name === 'TimeoutError' ? 'no answer in time' : 'cannot be reached',
      };
    }
  }

  private async send(method: string, path: string, body?: unknown): Promise<ApiAnswer> {
    let res: Response;
    try {
      res = await fetch(`${this.deps.apiBase()}${path}`, {
        method,
        headers: {
          authorization: `Bearer ${this.session.accessToken}`,
          accept: 'application/json',
          ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(this.deps.timeoutMs),
        redirect: 'manual',
      });
    } catch {
      throw new ApiUnavailableError(undefined);
    }
    const text = await res.text();
    let parsed: unknown = undefined;
    if (text) {
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = text;
      }
    }
    return { status: res.status, body: parsed, headers: res.headers };
  }

  /** Refreshes under the session's row lock; another request may have refreshed already. */
  private async refresh(force = false): Promise<void> {
    const used = this.session.accessToken;
    const next = await this.deps.sessions.update(this.sid, async (current) => {
      const fresh = current.accessTokenExpiresAt - REFRESH_MARGIN_SECONDS > Date.now() / 1000;
      if (current.accessToken !== used && fresh) return current;
      if (!force && fresh) return current;
      if (!current.refreshToken) return undefined;
      try {
        const tokens = await this.deps.oidc.refresh(current.sub, current.refreshToken);
        return {
          ...current,
          scopes: tokens.scopes,
          accessToken: tokens.accessToken,
          accessTokenExpiresAt: tokens.accessTokenExpiresAt,
          refreshToken: tokens.refreshToken ?? current.refreshToken,
          idToken: tokens.idToken ?? current.idToken,
        };
      } catch {
        return undefined;
      }
    });
    if (!next) throw new SessionEndedError();
    this.session = next;
  }
}
