/**
 * Live status of the broker's own JWT access tokens. oidc-provider does not store JWT access
 * tokens and refuses to introspect or revoke them; Meridian answers for them itself:
 * signature against this region's published keys, issuer, `typ: at+jwt`, expiry, the
 * revocation list, and — for tokens about a person — whether the grant behind them still exists.
 */
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify, type JWTPayload } from 'jose';
import type { Middleware } from 'koa';
import type Provider from 'oidc-provider';
import type { KoaContextWithOIDC } from 'oidc-provider';
import type { RegionDatabase } from '@meridian/persistence';
import type { KeySet } from '@meridian/keys';

const ALGORITHMS = ['ES256', 'RS256', 'PS256', 'EdDSA'];

export class AccessTokenStatus {
  private jwks: ReturnType<typeof createLocalJWKSet> | undefined;
  private fingerprint = '';

  constructor(
    private readonly issuer: string,
    private readonly regionDb: RegionDatabase,
    private readonly keys: () => KeySet,
  ) {}

  private keySet() {
    const keys = this.keys();
    if (!this.jwks || keys.fingerprint !== this.fingerprint) {
      this.jwks = createLocalJWKSet({ keys: keys.published.map((k) => k.publicJwk) });
      this.fingerprint = keys.fingerprint;
    }
    return this.jwks;
  }

  /** The verified payload, or undefined when the token is not an active token of this broker. */
  async verify(token: string, options: { audience?: string } = {}): Promise<JWTPayload | undefined> {
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, this.keySet(), {
        issuer: this.issuer,
        typ: 'at+jwt',
        algorithms: ALGORITHMS,
        audience: options.audience,
        requiredClaims: ['exp', 'iat', 'jti', 'sub', 'client_id'],
      }));
    } catch {
      return undefined;
    }
    const jti = payload.jti!;
    const [revoked] = await this.regionDb.query('select 1 from revoked_token where jti = $1', [jti]);
    if (revoked) return undefined;
    if (payload.sub !== payload.client_id) {
      // A token about a person is only as alive as its grant (revoked on logout, erasure,
      // refresh-token reuse). No record of the grant → inactive: fail closed.
      const rows = await this.regionDb.query(
        `select 1 from access_token_grant t
           join oidc_payload g on g.model = 'Grant' and g.id = t.grant_id
          where t.jti = $1 and (g.expires_at is null or g.expires_at > now())`,
        [jti],
      );
      if (rows.length === 0) return undefined;
    }
    return payload;
  }

  /** RFC 7009: the token stays on the revocation list until it would have expired anyway. */
  async revoke(payload: JWTPayload): Promise<void> {
    await this.regionDb.query(
      'insert into revoked_token (jti, expires_at) values ($1, to_timestamp($2)) on conflict do nothing',
      [payload.jti, payload.exp],
    );
  }
}

function isJwt(token: unknown): token is string {
  if (typeof token !== 'string') return false;
  try {
    return !!decodeProtectedHeader(token);
  } catch {
    return false;
  }
}

/**
 * Takes over introspection (RFC 7662) and revocation (RFC 7009) of JWT access tokens after
 * oidc-provider has authenticated the client and refused the structured token.
 */
/**
 * RFC 7662 §4: who may learn what a token says. The client it was issued to, or the service it
 * was issued for (the resource's registered client); anyone else is told `active: false`.
 */
export type IntrospectionPolicy = (callerClientId: string, payload: JWTPayload) => Promise<boolean>;

export function jwtIntrospectionAndRevocation(
  status: AccessTokenStatus,
  mayIntrospect: IntrospectionPolicy,
): Middleware {
  return async (koaCtx, next) => {
    await next();
    const ctx = koaCtx as unknown as KoaContextWithOIDC;
    const route = ctx.oidc?.route;
    if (route !== 'introspection' && route !== 'revocation') return;
    const body = ctx.body as { error?: string } | undefined;
    const client = ctx.oidc.client;
    const token = ctx.oidc.params?.token;
    if (ctx.status !== 400 || body?.error !== 'unsupported_token_type' || !client || !isJwt(token)) return;

    const payload = await status.verify(token);
    if (route === 'introspection') {
      ctx.status = 200;
      ctx.set('cache-control', 'no-store');
      // RFC 7662 §2.2: an inactive token gets `active: false` and nothing else.
      if (!payload || !(await mayIntrospect(client.clientId, payload))) {
        ctx.body = { active: false };
        return;
      }
      const { iss, sub, aud, exp, iat, jti, client_id, scope, residency, cnf } = payload as JWTPayload &
        Record<string, unknown>;
      ctx.body = {
        active: true,
        iss,
        sub,
        aud,
        exp,
        iat,
        jti,
        client_id,
        scope,
        residency,
        cnf,
        token_type: 'Bearer',
      };
      return;
    }
    // RFC 7009 §2.2: invalid tokens do not cause an error; a client revokes only its own tokens.
    if (payload) {
      if (payload.client_id !== client.clientId) {
        ctx.status = 400;
        ctx.body = {
          error: 'invalid_request',
          error_description: 'client is not authorized to revoke the presented token',
        };
        return;
      }
      await status.revoke(payload);
    }
    ctx.status = 200;
    ctx.body = '';
  };
}

export function installTokenStatus(
  provider: Provider,
  status: AccessTokenStatus,
  mayIntrospect: IntrospectionPolicy,
): void {
  provider.use(jwtIntrospectionAndRevocation(status, mayIntrospect));
}
