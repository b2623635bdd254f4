/**
 * Every call to an upstream OpenID Provider goes through openid-client: discovery, the
 * authorization request (PKCE S256, state, nonce), the code exchange with full ID token
 * validation and the RFC 9207 `iss` check, and userinfo.
 */
import { createHash } from 'node:crypto';
import * as oidc from 'openid-client';
import { isLoopbackHost } from '@meridian/config';
import { privateKeyJwtAuth, type JwtSigningKey } from '@meridian/keys';
import { FederationError, type UpstreamAuthMethod } from './federation.types';

export interface UpstreamTarget {
  /** Cache key: changes whenever the configuration does. */
  key: string;
  issuer: string;
  clientId: string;
  auth: {
    method: UpstreamAuthMethod;
    secret?: string;
    /**
     * During a rotation's overlap: the secret before the current one, tried when the upstream
     * refuses the current one as `invalid_client` (it may not have switched yet).
     */
    previousSecret?: string;
    /** private_key_jwt: this region's current signing key (sealed, or in a PKCS#11 token). */
    signingKey?: JwtSigningKey;
  };
}

export interface UpstreamLoginStart {
  url: URL;
  state: string;
  nonce: string;
  codeVerifier: string;
}

export interface UpstreamLoginResult {
  claims: Record<string, unknown>;
  sub: string;
  /** Which client secret the upstream accepted (secret-based client authentication only). */
  secretUsed?: 'current' | 'previous';
}

/**
 * RFC 6749 §5.2: the token endpoint refused the client's authentication — `invalid_client` in
 * the body, or a 401 (with HTTP Basic it comes as a WWW-Authenticate challenge).
 */
function isInvalidClient(err: unknown): boolean {
  if (err instanceof oidc.ResponseBodyError) return err.error === 'invalid_client' || err.status === 401;
  return err instanceof oidc.WWWAuthenticateChallengeError && err.status === 401;
}

function insecureFor(issuer: string): oidc.DiscoveryRequestOptions['execute'] {
  // http only for loopback issuers (tests, the local stack); anything else must be https.
  return isLoopbackHost(new URL(issuer).hostname) ? [oidc.allowInsecureRequests] : [];
}

export class UpstreamClient {
  private readonly configs = new Map<string, Promise<oidc.Configuration>>();

  constructor(private readonly timeoutMs: number) {}

  /**
   * Fetches and checks an issuer's discovery document: the issuer must match, it must publish
   * keys and support the code flow. Throws ERR_FEDERATION_DISCOVERY with the reason.
   */
  async checkIssuer(issuer: string, clientId: string): Promise<oidc.ServerMetadata> {
    let config: oidc.Configuration;
    try {
      config = await oidc.discovery(new URL(issuer), clientId, undefined, oidc.None(), {
        execute: insecureFor(issuer),
        timeout: Math.ceil(this.timeoutMs / 1000),
      });
    } catch (err) {
      throw new FederationError(
        'ERR_FEDERATION_DISCOVERY',
        `the discovery document of ${issuer} could not be used: ${describe(err)}`,
      );
    }
    const meta = config.serverMetadata();
    if (!meta.jwks_uri)
      throw new FederationError('ERR_FEDERATION_DISCOVERY', `${issuer} publishes no jwks_uri`);
    if (!meta.authorization_endpoint || !meta.token_endpoint)
      throw new FederationError(
        'ERR_FEDERATION_DISCOVERY',
        `${issuer} has no authorization or token endpoint`,
      );
    if (meta.response_types_supported && !meta.response_types_supported.includes('code'))
      throw new FederationError(
        'ERR_FEDERATION_DISCOVERY',
        `${issuer} does not support the code response type`,
      );
    return meta;
  }

  private async config(target: UpstreamTarget): Promise<oidc.Configuration> {
    let pending = this.configs.get(target.key);
    if (!pending) {
      pending = this.discover(target);
      this.configs.set(target.key, pending);
      pending.catch(() => this.configs.delete(target.key));
    }
    return pending;
  }

  private async discover(target: UpstreamTarget): Promise<oidc.Configuration> {
    let clientAuth: oidc.ClientAuth;
    switch (target.auth.method) {
      case 'client_secret_basic':
      case 'client_secret_post': {
        if (!target.auth.secret)
          throw new FederationError(
            'ERR_FEDERATION_NO_SECRET',
            'this region has no client secret for the identity provider',
          );
        clientAuth =
          target.auth.method === 'client_secret_basic'
            ? oidc.ClientSecretBasic(target.auth.secret)
            : oidc.ClientSecretPost(target.auth.secret);
        break;
      }
      case 'private_key_jwt': {
        clientAuth = await privateKeyJwtAuth(target.auth.signingKey!);
        break;
      }
      default: {
        const never: never = target.auth.method;
        throw new Error(`unknown upstream auth method ${String(never)}`);
      }
    }
    let config: oidc.Configuration;
    try {
      config = await oidc.discovery(new URL(target.issuer), target.clientId, undefined, clientAuth, {
        execute: insecureFor(target.issuer),
        timeout: Math.ceil(this.timeoutMs / 1000),
      });
    } catch (err) {
      throw classify(err, target.issuer);
    }
    // openid-client trusts an ID token received over TLS from the token endpoint without
    // checking its signature (OIDC Core §3.1.3.7 allows it). A broker does not: every ID token
    // is verified against the issuer's JWKS.
    oidc.enableNonRepudiationChecks(config);
    return config;
  }

  /**
   * Whether `url` answers 200 within the timeout; why not otherwise. A peer broker's `/readyz`
   * says it can take a hand-off (its databases answer, it is not shutting down).
   */
  async probe(url: string): Promise<string | undefined> {
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(this.timeoutMs), redirect: 'manual' });
      await res.body?.cancel();
      return res.status === 200 ? undefined : `it answered ${res.status}`;
    } catch (err) {
      return describe(err);
    }
  }

  async start(
    target: UpstreamTarget,
    params: { redirectUri: string; scope: string; extra?: Record<string, string> },
    opts: { probed?: boolean } = {},
  ): Promise<UpstreamLoginStart> {
    if (!opts.probed && this.configs.has(target.key)) {
      // The discovery document is cached: without a request to the provider, a person would be
      // sent to one that is down and see only their browser's connection error. One bounded GET
      // turns that into a clear temporarily_unavailable for the app.
      const discovery = `${target.issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`;
      const problem = await this.probe(discovery);
      if (problem) {
        const host = new URL(target.issuer).host;
        throw new FederationError(
          'ERR_UPSTREAM_TIMEOUT',
          problem === 'no answer in time'
            ? `the identity provider (${host}) did not answer in time`
            : problem.startsWith('it answered')
              ? `the identity provider (${host}) is unavailable`
              : `the identity provider (${host}) cannot be reached`,
          problem,
        );
      }
    }
    const config = await this.config(target);
    const codeVerifier = oidc.randomPKCECodeVerifier();
    const state = oidc.randomState();
    const nonce = oidc.randomNonce();
    const url = oidc.buildAuthorizationUrl(config, {
      redirect_uri: params.redirectUri,
      scope: params.scope,
      response_type: 'code',
      code_challenge: await oidc.calculatePKCECodeChallenge(codeVerifier),
      code_challenge_method: 'S256',
      state,
      nonce,
      ...params.extra,
    });
    return { url, state, nonce, codeVerifier };
  }

  /** RP-Initiated Logout 1.0 §2 at the upstream, when it offers an end_session_endpoint. */
  async endSessionUrl(
    target: UpstreamTarget,
    params: { postLogoutRedirectUri: string; state: string },
  ): Promise<URL | undefined> {
    const config = await this.config(target);
    if (!config.serverMetadata().end_session_endpoint) return undefined;
    return oidc.buildEndSessionUrl(config, {
      post_logout_redirect_uri: params.postLogoutRedirectUri,
      state: params.state,
      client_id: target.clientId,
    });
  }

  async finish(
    target: UpstreamTarget,
    callbackUrl: URL,
    expected: { state: string; nonce: string; codeVerifier: string; useUserinfo: boolean },
  ): Promise<UpstreamLoginResult> {
    let config = await this.config(target);
    const checks = {
      pkceCodeVerifier: expected.codeVerifier,
      expectedState: expected.state,
      expectedNonce: expected.nonce,
      idTokenExpected: true,
    };
    let tokens: Awaited<ReturnType<typeof oidc.authorizationCodeGrant>>;
    let secretUsed: UpstreamLoginResult['secretUsed'] =
      target.auth.method === 'private_key_jwt' ? undefined : 'current';
    try {
      tokens = await oidc.authorizationCodeGrant(config, callbackUrl, checks);
    } catch (err) {
      // A refused client authentication leaves the code unredeemed (RFC 6749 §5.2 answers
      // before the grant is processed), so the same code is tried with the previous secret.
      if (!isInvalidClient(err) || !target.auth.previousSecret) throw classify(err, target.issuer);
      config = await this.config({
        ...target,
        key: `${target.key}:previous:${secretTag(target.auth.previousSecret)}`,
        auth: { method: target.auth.method, secret: target.auth.previousSecret },
      });
      try {
        tokens = await oidc.authorizationCodeGrant(config, callbackUrl, checks);
      } catch (retryErr) {
        throw classify(retryErr, target.issuer);
      }
      secretUsed = 'previous';
    }
    const idClaims = tokens.claims();
    if (!idClaims?.sub)
      throw new FederationError('ERR_UPSTREAM_INVALID_RESPONSE', 'the identity provider sent no subject');
    let claims: Record<string, unknown> = { ...idClaims };
    if (expected.useUserinfo && config.serverMetadata().userinfo_endpoint) {
      try {
        claims = { ...claims, ...(await oidc.fetchUserInfo(config, tokens.access_token, idClaims.sub)) };
      } catch (err) {
        throw classify(err, target.issuer);
      }
    }
    return { claims, sub: idClaims.sub, ...(secretUsed ? { secretUsed } : {}) };
  }
}

/** A short non-secret tag of a secret: configurations cached per secret, never the secret itself. */
export function secretTag(secret: string): string {
  return createHash('sha256')
    .update('meridian-upstream-secret')
    .update(secret)
    .digest('base64url')
    .slice(0, 12);
}

function describe(err: unknown): string {
  const e = err as { code?: string; message?: string; cause?: { code?: string } };
  if (e.cause?.code === 'ECONNREFUSED') return 'connection refused';
  if (e.code === 'OAUTH_TIMEOUT' || e.message?.includes('aborted') || e.message?.includes('timeout'))
    return 'no answer in time';
  return (e.message ?? 'unknown error').slice(0, 200);
}

/** openid-client errors → stable codes; the upstream's own error text goes to logs only. */
function classify(err: unknown, issuer: string): FederationError {
  if (err instanceof FederationError) return err;
  const e = err as { name?: string; code?: string; error?: string; message?: string; cause?: unknown };
  const detail = `${e.name ?? 'Error'} ${e.code ?? ''} ${e.message ?? ''}`.trim();
  if (err instanceof oidc.AuthorizationResponseError) {
    const relayed = { error: String(e.error ?? 'server_error'), description: err.error_description };
    if (e.error === 'access_denied')
      return new FederationError(
        'ERR_UPSTREAM_CANCELLED',
        'the sign-in was cancelled or refused at the identity provider',
        detail,
        relayed,
      );
    return new FederationError(
      'ERR_UPSTREAM_ERROR',
      `the identity provider answered with an error (${e.error ?? 'unknown'})`,
      detail,
      relayed,
    );
  }
  const text = `${e.message ?? ''} ${(e.cause as { name?: string } | undefined)?.name ?? ''}`;
  if (e.name === 'TimeoutError' || e.name === 'AbortError' || /timeout|aborted/i.test(text))
    return new FederationError(
      'ERR_UPSTREAM_TIMEOUT',
      `the identity provider (${new URL(issuer).host}) did not answer in time`,
      detail,
    );
  if (err instanceof TypeError && /fetch failed/.test(e.message ?? ''))
    return new FederationError(
      'ERR_UPSTREAM_TIMEOUT',
      `the identity provider (${new URL(issuer).host}) cannot be reached`,
      detail,
    );
  return new FederationError(
    'ERR_UPSTREAM_INVALID_RESPONSE',
    'the answer of the identity provider could not be verified',
    detail,
  );
}
