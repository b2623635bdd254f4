import type { X509Certificate } from 'node:crypto';
import type { JSONWebKeySet, JWK } from 'jose';

/**
 * Meridian's `residency` claim (CONTRACT.md, "Access token claims").
 *
 * @example
 * ```ts
 * import type { Residency } from '@meridian/verifier';
 *
 * const mayProcessHere = (r: Residency | undefined, region: string) => !!r?.processing.includes(region);
 * ```
 */
export interface Residency {
  /** The subject's home region. */
  region: string;
  /** The subject's jurisdiction, e.g. `DE`. */
  jurisdiction?: string | null;
  /** `<policy id>@<version>` that decided it (absent for tokens about no person). */
  policy?: string;
  /** Regions where services may process the subject's personal data. */
  processing: string[];
}

/**
 * The payload of a Meridian access token (RFC 9068 §2.2 plus `residency`, `cnf`).
 *
 * @example
 * ```ts
 * import type { AccessTokenClaims } from '@meridian/verifier';
 *
 * const actor = (c: AccessTokenClaims) => (c.act as { sub?: string } | undefined)?.sub ?? c.sub;
 * ```
 */
export interface AccessTokenClaims {
  iss: string;
  sub: string;
  aud: string | string[];
  exp: number;
  iat: number;
  nbf?: number;
  jti: string;
  client_id: string;
  scope?: string;
  residency?: Residency;
  /** RFC 7800 confirmation: `x5t#S256` (RFC 8705 §3.1) or `jkt` (RFC 9449 §6.1). */
  cnf?: { 'x5t#S256'?: string; jkt?: string; [member: string]: unknown };
  [claim: string]: unknown;
}

/**
 * What a successful {@link Verifier.verify} returns. Frozen: a cache hit hands back the very same
 * object, so it must not be changed.
 *
 * @example
 * ```ts
 * import type { VerifiedToken } from '@meridian/verifier';
 *
 * function audit(t: VerifiedToken) {
 *   log.info({ sub: t.sub, client: t.clientId, region: t.region, scope: t.scope.join(' ') });
 * }
 * ```
 */
export interface VerifiedToken {
  readonly sub: string;
  readonly clientId: string;
  /** `scope` split on spaces (empty when the token has none). */
  readonly scope: readonly string[];
  /** The configured audience the token was accepted for. */
  readonly audience: string;
  readonly issuer: string;
  /** The issuer's region, from the trust bundle (or the `issuers` option; undefined when not given). */
  readonly region: string | undefined;
  readonly residency: Readonly<Residency> | undefined;
  /** The whole verified payload. */
  readonly claims: Readonly<AccessTokenClaims>;
  readonly expiresAt: Date;
}

/**
 * One trusted issuer given explicitly (instead of, or for tests of, a trust bundle).
 *
 * @example
 * ```ts
 * import type { TrustedIssuer } from '@meridian/verifier';
 *
 * const eu: TrustedIssuer = { issuer: 'https://eu.id.example.com', region: 'eu', jwks: { keys: [publicJwk] } };
 * ```
 */
export interface TrustedIssuer {
  issuer: string;
  jwks: JSONWebKeySet;
  region?: string;
  jurisdiction?: string | null;
}

/**
 * Where a replay cache for DPoP proof `jti`s lives. The default is in process memory, which is
 * only sound when one process serves the audience; replicas should share a store
 * (RFC 9449 §11.1).
 *
 * @example
 * ```ts
 * import type { DpopReplayStore } from '@meridian/verifier';
 *
 * const redisStore: DpopReplayStore = {
 *   async checkAndRemember(key, expiresAtMs) {
 *     return (await redis.set(`dpop:${key}`, '1', { NX: true, PXAT: expiresAtMs })) === 'OK';
 *   },
 * };
 * ```
 */
export interface DpopReplayStore {
  /** Remembers `key` until `expiresAtMs`; true when it was not seen before. Must be atomic. */
  checkAndRemember(key: string, expiresAtMs: number): boolean | Promise<boolean>;
}

/**
 * Options of {@link createVerifier}. Exactly one of `trustBundleUrl` and `issuers`.
 *
 * @example
 * ```ts
 * import { createVerifier, type VerifierOptions } from '@meridian/verifier';
 *
 * const options: VerifierOptions = {
 *   trustBundleUrl: 'https://eu.id.example.com/.well-known/meridian/trust-bundle',
 *   audience: 'https://orders.example.com',
 * };
 * const verifier = createVerifier(options);
 * ```
 */
export interface VerifierOptions {
  /** A broker's `/.well-known/meridian/trust-bundle` (https, or http on loopback). */
  trustBundleUrl?: string;
  /** Explicit issuers and their keys. */
  issuers?: TrustedIssuer[];
  /** The audience (RFC 8707 resource) this service accepts. */
  audience: string;
  /** Leeway for `exp`, `nbf`, `iat` (default 30). */
  clockToleranceSeconds?: number;
  /** Longer tokens are refused before any parsing (default 8192). */
  maxTokenBytes?: number;
  /** Verified-token cache (default on, 10 000 entries); `false` to verify every time. */
  cache?: { maxEntries?: number } | false;
  /** Minimum time between two bundle fetches (default 30 000). */
  bundleRefreshCooldownMs?: number;
  /** A bundle older than this is refreshed in the background (default 300 000). */
  bundleMaxAgeMs?: number;
  /** Timeout of one bundle or introspection request (default 5 000). */
  httpTimeoutMs?: number;
  /** The fetch used for the bundle and introspection (default: global fetch). */
  fetch?: typeof fetch;
  /** Clock in milliseconds since the epoch (default `Date.now`). */
  now?: () => number;
  /** RFC 7662 introspection for `verify(token, { introspect: true })`. */
  introspection?: { url: string; clientId: string; clientSecret: string; cacheTtlMs?: number };
  /**
   * Private JWKs that open access tokens encrypted to this service (nested JWT: JWE around the
   * signed token). A function is asked on every decryption, so keys can be reloaded (rotation)
   * without a restart. Only ECDH-ES(+A128KW/+A256KW) and RSA-OAEP-256 with AES-GCM are
   * accepted (RFC 8725 §3.2: never RSA1_5; never `dir`); the content must be a signed token.
   */
  decryptionKeys?: JWK[] | (() => JWK[] | Promise<JWK[]>);
  /**
   * Tell the broker about refusals worth its detectors (issue 6): tokens presented although
   * `region` is not in their `residency.processing`, and invalid-signature / unknown-issuer
   * tokens — counted here and sent in one batch per `intervalMs` (default 10 000) to
   * `<broker issuer>/security/events` with a client_credentials token of a client registered
   * for the audience `urn:meridian:security-events` and scope `meridian:security:report`.
   * Reporting never delays or changes a verification. The same reports as the sidecar's
   * SIDECAR_REPORT_*; call `close()` at shutdown to send what is pending.
   */
  report?: {
    url: string;
    clientId: string;
    clientSecret: string;
    intervalMs?: number;
    /** This service's region, as the report names it. */
    region?: string;
    /** Where an undelivered report is told (default: console.warn). */
    logger?: { warn(obj: object, msg: string): void };
  };
  /** DPoP proof checks (RFC 9449). */
  dpop?: {
    /** How old a proof's `iat` may be (default 60). */
    proofWindowSeconds?: number;
    /** Replay cache for proof `jti`s (default: in memory, 100 000 entries). */
    replayStore?: DpopReplayStore;
  };
}

/**
 * Per-request options of {@link Verifier.verify}.
 *
 * @example
 * ```ts
 * import type { VerifyOptions } from '@meridian/verifier';
 *
 * const opts: VerifyOptions = {
 *   requiredScopes: ['orders:write'],
 *   region: 'eu',
 *   dpop: { proof: req.headers.dpop as string, method: 'POST', url: 'https://orders.example.com/orders' },
 * };
 * ```
 */
export interface VerifyOptions {
  /** Every one of these must be in the token's `scope` (else `ERR_INSUFFICIENT_SCOPE`, 403). */
  requiredScopes?: readonly string[];
  /** This service's region: must be in `residency.processing` (else `ERR_RESIDENCY_PROCESSING`, 403). */
  region?: string;
  /** The client certificate of the TLS connection, for `cnf.x5t#S256` (RFC 8705 §3). */
  clientCertificate?: X509Certificate | Buffer;
  /** The DPoP proof of this request (RFC 9449 §4.3); its presence means the DPoP scheme was used. */
  dpop?: { proof: string; method: string; url: string };
  /** Also ask the broker whether the token is still active (RFC 7662), cached briefly. */
  introspect?: boolean;
}

/**
 * What {@link Verifier.bundleStatus} reports; `loaded: false` means every verify fails closed.
 *
 * @example
 * ```ts
 * app.get('/readyz', (_req, res) => {
 *   const s = verifier.bundleStatus();
 *   res.status(s.loaded ? 200 : 503).json(s);
 * });
 * ```
 */
export interface BundleStatus {
  source: 'bundle' | 'static';
  /** A set of issuers and keys is in use. */
  loaded: boolean;
  /** When the set in use was fetched (ms since epoch). */
  loadedAt?: number;
  /** The set in use is older than `bundleMaxAgeMs`, or the last refresh failed. */
  stale: boolean;
  lastAttemptAt?: number;
  /** Why the last attempt failed (cleared by a successful one). */
  lastError?: string;
  /** Bundle fetches attempted so far. */
  fetches: number;
  issuers: { issuer: string; region?: string; kids: string[] }[];
}
