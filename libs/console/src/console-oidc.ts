/**
 * The console as an OIDC client of its own broker, through openid-client: authorization code
 * with PKCE S256, state, nonce, RFC 9207 `iss`, ID token signature checked, private_key_jwt with
 * the region's signing key (the client's JWKS is the region's published keys, kept current at
 * every key reload like the peer clients'). The front channel uses the public issuer; the back
 * channel (token, JWKS, revocation) goes to `apiBase`, this broker's own listener by default.
 */
import * as oidc from 'openid-client';
import { decodeJwt } from 'jose';
import { privateKeyJwtAuth, type JwtSigningKey } from '@meridian/keys';
import { ADMIN_AUDIENCE } from '@meridian/tokens';

export const CONSOLE_SCOPE = 'openid offline_access meridian:admin meridian:compliance';
export const ADMIN_SCOPE_NAMES = ['meridian:admin', 'meridian:compliance'] as const;

export interface ConsoleOidcDeps {
  issuer: string;
  clientId: string;
  signingAlg: string;
  /** The region's current signing key (private JWK with `kid`). */
  signingKey: () => JwtSigningKey;
  apiBase: () => string;
  timeoutMs: number;
}

export interface ConsoleTokens {
  sub: string;
  scopes: string[];
  accessToken: string;
  accessTokenExpiresAt: number;
  refreshToken?: string;
  idToken?: string;
}

export class ConsoleOidcError extends Error {
  constructor(
    message: string,
    /** The OAuth error code, when the broker answered with one. */
    readonly error?: string,
  ) {
    super(message);
    this.name = 'ConsoleOidcError';
  }
}

/** Rewrites a URL on the public issuer to the same path on the back-channel base. */
function backChannel(url: string | undefined, issuer: string, base: string): string | undefined {
  if (!url) return undefined;
  return url.startsWith(`${issuer}/`) ? `${base}${url.slice(issuer.length)}` : url;
}

export class ConsoleOidcClient {
  private metadata: Promise<oidc.ServerMetadata> | undefined;
  private cached: { key: string; config: oidc.Configuration } | undefined;

  constructor(private readonly deps: ConsoleOidcDeps) {}

  get callbackUrl(): string {
    return `${this.deps.issuer}/console/callback`;
  }

  get signedOutUrl(): string {
    return `${this.deps.issuer}/console/signed-out`;
  }

  private async serverMetadata(): Promise<oidc.ServerMetadata> {
    if (!this.metadata) {
      this.metadata = (async () => {
        const base = this.deps.apiBase();
        const res = await fetch(`${base}/.well-known/openid-configuration`, {
          signal: AbortSignal.timeout(this.deps.timeoutMs),
        });
        if (!res.ok) throw new ConsoleOidcError(`discovery answered ${res.status}`);
        const doc = (await res.json()) as oidc.ServerMetadata;
        if (doc.issuer !== this.deps.issuer) throw new ConsoleOidcError('discovery names another issuer');
        return {
          ...doc,
          token_endpoint: backChannel(doc.token_endpoint, this.deps.issuer, base),
          jwks_uri: backChannel(doc.jwks_uri, this.deps.issuer, base),
          revocation_endpoint: backChannel(doc.revocation_endpoint, this.deps.issuer, base),
        };
      })();
      this.metadata.catch(() => (this.metadata = undefined));
    }
    return this.metadata;
  }

  private async config(): Promise<oidc.Configuration> {
    const signingKey = this.deps.signingKey();
    const key = signingKey.kid;
    if (this.cached?.key === key) return this.cached.config;
    const server = await this.serverMetadata();
    const config = new oidc.Configuration(
      server,
      this.deps.clientId,
      { id_token_signed_response_alg: this.deps.signingAlg },
      await privateKeyJwtAuth(signingKey),
    );
    config.timeout = Math.ceil(this.deps.timeoutMs / 1000);
    if (new URL(this.deps.issuer).protocol === 'http:' || new URL(this.deps.apiBase()).protocol === 'http:')
      oidc.allowInsecureRequests(config);
    oidc.enableNonRepudiationChecks(config);
    this.cached = { key, config };
    return config;
  }

  /** The authorization request: a fresh sign-in every time, so the roles see current claims. */
  async start(
    idpHint?: string,
  ): Promise<{ url: string; state: string; nonce: string; codeVerifier: string }> {
    const config = await this.config();
    const codeVerifier = oidc.randomPKCECodeVerifier();
    const state = oidc.randomState();
    const nonce = oidc.randomNonce();
    const url = oidc.buildAuthorizationUrl(config, {
      redirect_uri: this.callbackUrl,
      response_type: 'code',
      scope: CONSOLE_SCOPE,
      resource: ADMIN_AUDIENCE,
      prompt: 'login consent',
      code_challenge: await oidc.calculatePKCECodeChallenge(codeVerifier),
      code_challenge_method: 'S256',
      state,
      nonce,
      ...(idpHint ? { idp_hint: idpHint } : {}),
    });
    return { url: url.href, state, nonce, codeVerifier };
  }

  async finish(
    callbackQuery: string,
    expected: { state: string; nonce: string; codeVerifier: string },
  ): Promise<ConsoleTokens> {
    const config = await this.config();
    try {
      const tokens = await oidc.authorizationCodeGrant(
        config,
        new URL(`${this.callbackUrl}?${callbackQuery}`),
        {
          pkceCodeVerifier: expected.codeVerifier,
          expectedState: expected.state,
          expectedNonce: expected.nonce,
          idTokenExpected: true,
        },
        { resource: ADMIN_AUDIENCE },
      );
      const sub = tokens.claims()?.sub;
      if (!sub) throw new ConsoleOidcError('the ID token names no subject');
      return this.toTokens(sub, tokens);
    } catch (err) {
      throw asConsoleError(err);
    }
  }

  async refresh(sub: string, refreshToken: string): Promise<ConsoleTokens> {
    const config = await this.config();
    try {
      const tokens = await oidc.refreshTokenGrant(config, refreshToken, { resource: ADMIN_AUDIENCE });
      const claimed = tokens.claims()?.sub;
      if (claimed && claimed !== sub) throw new ConsoleOidcError('the refreshed tokens name another subject');
      return this.toTokens(sub, tokens);
    } catch (err) {
      throw asConsoleError(err);
    }
  }

  async revoke(refreshToken: string): Promise<void> {
    const config = await this.config();
    await oidc.tokenRevocation(config, refreshToken).catch(() => undefined);
  }

  async endSessionUrl(idToken: string | undefined): Promise<string | undefined> {
    const config = await this.config();
    if (!config.serverMetadata().end_session_endpoint) return undefined;
    return oidc.buildEndSessionUrl(config, {
      post_logout_redirect_uri: this.signedOutUrl,
      client_id: this.deps.clientId,
      ...(idToken ? { id_token_hint: idToken } : {}),
    }).href;
  }

  private toTokens(sub: string, tokens: oidc.TokenEndpointResponse): ConsoleTokens {
    // The access token is this broker's own JWT: what it grants is what the API will see. Read
    // for display only; the API verifies it on every call.
    let claims: { scope?: unknown; exp?: number } = {};
    try {
      claims = decodeJwt(tokens.access_token);
    } catch {
      // not a JWT: fall back to the token response
    }
    const granted = new Set(String(claims.scope ?? tokens.scope ?? '').split(' '));
    return {
      sub,
      scopes: ADMIN_SCOPE_NAMES.filter((s) => granted.has(s)),
      accessToken: tokens.access_token,
      accessTokenExpiresAt: claims.exp ?? Math.floor(Date.now() / 1000) + (tokens.expires_in ?? 60),
      refreshToken: tokens.refresh_token,
      idToken: tokens.id_token,
    };
  }
}

function asConsoleError(err: unknown): ConsoleOidcError {
  if (err instanceof ConsoleOidcError) return err;
  const e = err as { error?: string; error_description?: string; message?: string };
  return new ConsoleOidcError(e.error_description ?? e.message ?? 'the sign-in failed', e.error);
}
