/**
 * RFC 7662 — asking the broker whether a token is still active, for routes where a revoked
 * token must stop working before it expires. Answers are cached briefly (never past `exp`).
 */
import { BoundedCache } from './caches';
import { VerifierError } from './errors';

/**
 * Where and as whom to introspect (from `VerifierOptions.introspection`).
 *
 * @internal
 * @example
 * ```ts
 * const cfg: IntrospectionConfig = { url, clientId, clientSecret, cacheTtlMs: 5000, fetch, now: Date.now, timeoutMs: 5000 };
 * ```
 */
export interface IntrospectionConfig {
  url: string;
  clientId: string;
  clientSecret: string;
  cacheTtlMs: number;
  fetch: typeof fetch;
  now: () => number;
  timeoutMs: number;
}

/** RFC 6749 §2.3.1: client_secret_basic form-encodes id and secret before base64. */
function basic(id: string, secret: string): string {
  const enc = (s: string) => encodeURIComponent(s).replace(/%20/g, '+');
  return `Basic ${Buffer.from(`${enc(id)}:${enc(secret)}`).toString('base64')}`;
}

/**
 * RFC 7662 client with a short answer cache and one request in flight per token.
 *
 * @internal
 * @example
 * ```ts
 * await new Introspector(cfg).assertActive(token, tokenHash, expMs, 'Bearer'); // throws ERR_TOKEN_INACTIVE
 * ```
 */
export class Introspector {
  private readonly cache: BoundedCache<{ active: boolean; expiresAtMs: number }>;
  private readonly inflight = new Map<string, Promise<boolean>>();

  constructor(private readonly cfg: IntrospectionConfig) {
    this.cache = new BoundedCache(10_000);
  }

  /** Throws ERR_TOKEN_INACTIVE when the broker says so, ERR_TRUST_UNAVAILABLE when it cannot be asked. */
  async assertActive(token: string, tokenHash: string, tokenExpiresAtMs: number, scheme: 'Bearer' | 'DPoP') {
    const now = this.cfg.now();
    let active = this.cache.get(tokenHash, now)?.active;
    if (active === undefined) {
      let pending = this.inflight.get(tokenHash);
      if (!pending) {
        pending = this.ask(token).finally(() => this.inflight.delete(tokenHash));
        this.inflight.set(tokenHash, pending);
      }
      try {
        active = await pending;
      } catch (err) {
        // Fail closed: a revocation-sensitive route does not pass on an unanswered question.
        throw new VerifierError('ERR_TRUST_UNAVAILABLE', 'the token status cannot be checked right now', {
          cause: err,
          detail: (err as Error).message,
          scheme,
          retryAfterSeconds: 5,
        });
      }
      this.cache.set(tokenHash, {
        active,
        expiresAtMs: Math.min(this.cfg.now() + this.cfg.cacheTtlMs, tokenExpiresAtMs),
      });
    }
    if (!active) {
      throw new VerifierError(
        'ERR_TOKEN_INACTIVE',
        'the access token has been revoked or is no longer active',
        {
          scheme,
        },
      );
    }
  }

  private async ask(token: string): Promise<boolean> {
    const res = await this.cfg.fetch(this.cfg.url, {
      method: 'POST',
      headers: {
        accept: 'application/json',
        'content-type': 'application/x-www-form-urlencoded',
        authorization: basic(this.cfg.clientId, this.cfg.clientSecret),
      },
      body: new URLSearchParams({ token, token_type_hint: 'access_token' }).toString(),
      redirect: 'error',
      signal: AbortSignal.timeout(this.cfg.timeoutMs),
    });
    if (res.status !== 200) {
      await res.body?.cancel().catch(() => undefined);
      throw new Error(`introspection answered HTTP ${res.status}`);
    }
    const body = (await res.json()) as { active?: unknown };
    // RFC 7662 §2.2: `active` is the only required member; anything but true is inactive.
    return body?.active === true;
  }
}
