/**
 * `createVerifier` — everything a service checks before it trusts a Meridian access token, in
 * the order RFC 8725 asks for: size, structure, header (no key-bearing or critical members,
 * algorithm allow-list, explicit type), issuer and key from the trust set only, signature,
 * claims; then what depends on the request (binding, liveness, scope, residency).
 */
import { createPrivateKey, hash, type KeyObject } from 'node:crypto';
import { compactDecrypt, compactVerify, decodeProtectedHeader, type JWK } from 'jose';
import { BoundedCache, MemoryReplayStore } from './caches';
import { certificateMatches } from './certificate-binding';
import { verifyDpopProof } from './dpop';
import { quoted, VerifierError, type VerifierErrorCode } from './errors';
import { Introspector } from './introspection';
import { SecurityReporter } from './security-report';
import { TrustStore, algorithmsForJwk, type IssuerEntry, type TrustedKey } from './trust-store';
import type {
  AccessTokenClaims,
  BundleStatus,
  DpopReplayStore,
  Residency,
  VerifiedToken,
  VerifierOptions,
  VerifyOptions,
} from './types';

/**
 * A configured verifier. One per audience; share it across requests (it holds the caches).
 *
 * @example
 * ```ts
 * import { createVerifier, VerifierError } from '@meridian/verifier';
 *
 * const verifier = createVerifier({
 *   trustBundleUrl: 'https://eu.id.example.com/.well-known/meridian/trust-bundle',
 *   audience: 'https://orders.example.com',
 * });
 * const token = await verifier.verify(bearerToken, { requiredScopes: ['orders:read'], region: 'eu' });
 * console.log(token.sub, token.clientId, token.scope);
 * ```
 */
export interface Verifier {
  /** The audience tokens must carry. */
  readonly audience: string;
  /**
   * Verifies `token` and the request it came with; resolves to the verified token or rejects
   * with a {@link VerifierError}.
   */
  verify(token: string | null | undefined, opts?: VerifyOptions): Promise<VerifiedToken>;
  /** Waits for the first trust bundle (one attempt); resolves to the status either way. */
  ready(): Promise<BundleStatus>;
  /** Fetches the trust bundle now, ignoring the cooldown (an operator action, not per request). */
  refresh(): Promise<BundleStatus>;
  /** Whether a bundle is loaded, how old it is, and why the last refresh failed. */
  bundleStatus(): BundleStatus;
  /** Stops background work and sends any pending security report (the `report` option). */
  close(): Promise<void>;
}

/** Algorithms an access token may be signed with at all; the key then narrows it to one. */
const ACCESS_TOKEN_ALGS = new Set([
  'ES256',
  'ES384',
  'ES512',
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'EdDSA',
  'Ed25519',
]);
/** RFC 8725 §3.10: header members that name a key or where to fetch one. */
const KEY_BEARING_HEADERS = ['jku', 'jwk', 'x5u', 'x5c'] as const;
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;
const COMPACT_JWE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;
/** RFC 8725 §3.2: key management we accept for tokens encrypted to a service. */
export const DECRYPTION_KEY_ALGORITHMS: readonly string[] = Object.freeze([
  'ECDH-ES',
  'ECDH-ES+A128KW',
  'ECDH-ES+A256KW',
  'RSA-OAEP-256',
]);
export const DECRYPTION_CONTENT_ALGORITHMS: readonly string[] = Object.freeze(['A128GCM', 'A256GCM']);

interface CacheEntry {
  readonly token: VerifiedToken;
  /** exp in ms: the entry never outlives the token. */
  readonly expiresAtMs: number;
  readonly notBeforeMs: number;
  readonly key: TrustedKey;
}

function fail(code: VerifierErrorCode, description: string, detail?: string): never {
  throw new VerifierError(code, description, detail === undefined ? {} : { detail });
}

function decodeJson(segment: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(Buffer.from(segment, 'base64url').toString('utf8'));
    return typeof value === 'object' && value !== null && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

/** RFC 9068 §4 (and RFC 7515 §4.1.9): `at+jwt`, optionally `application/`, case-insensitive. */
function isAccessTokenType(typ: unknown): boolean {
  if (typeof typ !== 'string') return false;
  const t = typ.toLowerCase();
  return t === 'at+jwt' || t === 'application/at+jwt';
}

function isStringArray(v: unknown): v is string[] {
  return Array.isArray(v) && v.every((x) => typeof x === 'string');
}

function isResidency(v: unknown): v is Residency {
  if (typeof v !== 'object' || v === null) return false;
  const r = v as Record<string, unknown>;
  return typeof r.region === 'string' && isStringArray(r.processing);
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

function hashToken(token: string): string {
  return hash('sha256', token, 'base64url');
}

function isLoopback(hostname: string): boolean {
  return hostname === 'localhost' || hostname === '[::1]' || /^127(?:\.\d{1,3}){3}$/.test(hostname);
}

function validateOptions(o: VerifierOptions): void {
  const errors: string[] = [];
  const nonNegative = (name: string, v: unknown) => {
    if (v !== undefined && (typeof v !== 'number' || !Number.isFinite(v) || v < 0)) {
      errors.push(
        `${name} must be a non-negative number of ${name.endsWith('Ms') ? 'milliseconds' : 'units'}`,
      );
    }
  };
  if (typeof o?.audience !== 'string' || o.audience === '') {
    errors.push(
      'audience is required: the resource identifier this service is registered with, e.g. "https://orders.example.com"',
    );
  }
  if ((o?.trustBundleUrl === undefined) === (o?.issuers === undefined)) {
    errors.push(
      "give exactly one of trustBundleUrl (a broker's /.well-known/meridian/trust-bundle) and issuers",
    );
  }
  if (o?.trustBundleUrl !== undefined) {
    let url: URL | undefined;
    try {
      url = new URL(o.trustBundleUrl);
    } catch {
      errors.push(`trustBundleUrl is not a URL: ${quoted(o.trustBundleUrl)}`);
    }
    if (url && url.protocol !== 'https:' && !(url.protocol === 'http:' && isLoopback(url.hostname))) {
      errors.push(
        'trustBundleUrl must be https (http only on loopback): keys fetched in clear text can be swapped',
      );
    }
  }
  if (o?.issuers !== undefined) {
    if (!Array.isArray(o.issuers) || o.issuers.length === 0) errors.push('issuers must be a non-empty array');
    else
      o.issuers.forEach((i, n) => {
        if (typeof i?.issuer !== 'string' || i.issuer === '')
          errors.push(`issuers[${n}].issuer must be a non-empty string`);
        if (!Array.isArray(i?.jwks?.keys))
          errors.push(`issuers[${n}].jwks must be a JWK set ({ keys: [...] })`);
        else if (!i.jwks.keys.some((k) => algorithmsForJwk(k).length > 0)) {
          errors.push(`issuers[${n}].jwks has no public signature key (EC P-256/384/521, RSA, Ed25519)`);
        }
      });
  }
  nonNegative('clockToleranceSeconds', o?.clockToleranceSeconds);
  nonNegative('maxTokenBytes', o?.maxTokenBytes);
  nonNegative('bundleRefreshCooldownMs', o?.bundleRefreshCooldownMs);
  nonNegative('bundleMaxAgeMs', o?.bundleMaxAgeMs);
  nonNegative('httpTimeoutMs', o?.httpTimeoutMs);
  if (o?.cache) nonNegative('cache.maxEntries', o.cache.maxEntries);
  if (o?.dpop) nonNegative('dpop.proofWindowSeconds', o.dpop.proofWindowSeconds);
  if (o?.introspection) {
    const i = o.introspection;
    try {
      new URL(i.url);
    } catch {
      errors.push(
        "introspection.url must be the broker's introspection endpoint URL (see its discovery document)",
      );
    }
    if (typeof i.clientId !== 'string' || !i.clientId) errors.push('introspection.clientId is required');
    if (typeof i.clientSecret !== 'string' || !i.clientSecret)
      errors.push('introspection.clientSecret is required');
    nonNegative('introspection.cacheTtlMs', i.cacheTtlMs);
  }
  if (o?.report) {
    const r = o.report;
    let url: URL | undefined;
    try {
      url = new URL(r.url);
    } catch {
      // reported below
    }
    if (!url || !url.pathname.endsWith('/security/events'))
      errors.push("report.url must be the broker's security events endpoint, <issuer>/security/events");
    else if (url.protocol !== 'https:' && !(url.protocol === 'http:' && isLoopback(url.hostname)))
      errors.push('report.url must be https (http only on loopback)');
    if (typeof r.clientId !== 'string' || !r.clientId) errors.push('report.clientId is required');
    if (typeof r.clientSecret !== 'string' || !r.clientSecret) errors.push('report.clientSecret is required');
    if (r.intervalMs !== undefined && !(typeof r.intervalMs === 'number' && r.intervalMs >= 100))
      errors.push('report.intervalMs must be at least 100 milliseconds');
  }
  if (errors.length) throw new TypeError(`invalid verifier options:\n- ${errors.join('\n- ')}`);
}

class MeridianVerifier implements Verifier {
  readonly audience: string;
  private readonly leewaySeconds: number;
  private readonly maxTokenBytes: number;
  private readonly now: () => number;
  private readonly trust: TrustStore;
  private readonly cache: BoundedCache<CacheEntry> | undefined;
  private readonly introspector: Introspector | undefined;
  private readonly dpopWindowSeconds: number;
  private readonly replay: DpopReplayStore;
  private readonly decryptionKeys: VerifierOptions['decryptionKeys'];
  private readonly keyObjects = new Map<string, KeyObject>();
  private readonly reporter: SecurityReporter | undefined;

  constructor(o: VerifierOptions) {
    validateOptions(o);
    this.audience = o.audience;
    this.leewaySeconds = o.clockToleranceSeconds ?? 30;
    this.maxTokenBytes = o.maxTokenBytes ?? 8192;
    this.now = o.now ?? Date.now;
    const fetchFn = o.fetch ?? globalThis.fetch;
    const timeoutMs = o.httpTimeoutMs ?? 5000;
    this.trust = new TrustStore({
      url: o.trustBundleUrl,
      issuers: o.issuers,
      fetch: fetchFn,
      now: this.now,
      cooldownMs: o.bundleRefreshCooldownMs ?? 30_000,
      maxAgeMs: o.bundleMaxAgeMs ?? 300_000,
      timeoutMs,
    });
    this.cache = o.cache === false ? undefined : new BoundedCache(o.cache?.maxEntries ?? 10_000);
    this.introspector = o.introspection
      ? new Introspector({
          url: o.introspection.url,
          clientId: o.introspection.clientId,
          clientSecret: o.introspection.clientSecret,
          cacheTtlMs: o.introspection.cacheTtlMs ?? 5000,
          fetch: fetchFn,
          now: this.now,
          timeoutMs,
        })
      : undefined;
    this.dpopWindowSeconds = o.dpop?.proofWindowSeconds ?? 60;
    this.replay = o.dpop?.replayStore ?? new MemoryReplayStore(this.now);
    this.decryptionKeys = o.decryptionKeys;
    if (o.report) {
      this.reporter = new SecurityReporter(
        {
          url: o.report.url,
          clientId: o.report.clientId,
          clientSecret: o.report.clientSecret,
          intervalMs: o.report.intervalMs ?? 10_000,
        },
        { audience: o.audience, region: o.report.region },
        o.report.logger ?? {
          warn: (obj, msg) => console.warn(`[meridian verifier] ${msg}`, JSON.stringify(obj)),
        },
      );
      this.reporter.start();
    }
  }

  async close(): Promise<void> {
    await this.reporter?.close();
  }

  /** Opens a token encrypted to this service and returns the signed token inside it. */
  private async decrypt(token: string): Promise<string> {
    if (!this.decryptionKeys) fail('ERR_TOKEN_MALFORMED', 'encrypted access tokens are not accepted here');
    let header: ReturnType<typeof decodeProtectedHeader>;
    try {
      header = decodeProtectedHeader(token);
    } catch {
      fail('ERR_TOKEN_MALFORMED', 'the encrypted access token header is not a JSON object');
    }
    if (typeof header.alg !== 'string' || !DECRYPTION_KEY_ALGORITHMS.includes(header.alg))
      fail('ERR_TOKEN_ALG', `key management algorithm ${quoted(header.alg)} is not accepted`);
    if (typeof header.enc !== 'string' || !DECRYPTION_CONTENT_ALGORITHMS.includes(header.enc))
      fail('ERR_TOKEN_ALG', `content encryption ${quoted(header.enc)} is not accepted`);
    const jwks =
      typeof this.decryptionKeys === 'function' ? await this.decryptionKeys() : this.decryptionKeys;
    const candidates = jwks.filter(
      (k) =>
        (header.kid === undefined || k.kid === undefined || k.kid === header.kid) &&
        (k.alg === undefined || k.alg === header.alg),
    );
    for (const jwk of candidates) {
      try {
        const { plaintext, protectedHeader } = await compactDecrypt(token, this.keyObject(jwk), {
          keyManagementAlgorithms: [...DECRYPTION_KEY_ALGORITHMS],
          contentEncryptionAlgorithms: [...DECRYPTION_CONTENT_ALGORITHMS],
        });
        const inner = new TextDecoder().decode(plaintext);
        // RFC 9068 §4 + RFC 7519 §5.2: the content must be the signed access token itself.
        if (String(protectedHeader.cty ?? '').toLowerCase() !== 'at+jwt' || !COMPACT_JWS.test(inner))
          fail('ERR_TOKEN_TYPE', 'the encrypted token does not contain a signed access token');
        return inner;
      } catch (err) {
        if (err instanceof VerifierError) throw err;
      }
    }
    fail('ERR_TOKEN_MALFORMED', 'the access token cannot be decrypted with this service’s keys');
  }

  private keyObject(jwk: JWK): KeyObject {
    const id = JSON.stringify(jwk);
    let key = this.keyObjects.get(id);
    if (!key) {
      const { alg: _a, use: _u, key_ops: _k, ...material } = jwk as JWK & { enc?: string };
      delete (material as { enc?: string }).enc;
      key = createPrivateKey({ key: material as never, format: 'jwk' });
      if (this.keyObjects.size > 100) this.keyObjects.clear();
      this.keyObjects.set(id, key);
    }
    return key;
  }

  async verify(token: string | null | undefined, opts: VerifyOptions = {}): Promise<VerifiedToken> {
    try {
      if (typeof token !== 'string' || token.length === 0)
        fail('ERR_TOKEN_MISSING', 'no access token was presented');
      // Before any parsing: nothing large is base64-decoded or JSON-parsed.
      if (token.length > this.maxTokenBytes) {
        fail(
          'ERR_TOKEN_TOO_LARGE',
          'the access token is too large',
          `${token.length} > ${this.maxTokenBytes} bytes`,
        );
      }
      const now = this.now();
      const tokenHash = this.cache || opts.introspect ? hashToken(token) : '';
      let entry = this.cache?.get(tokenHash, now);
      if (entry && (!entry.key.active || entry.notBeforeMs > now)) {
        // Its key left the trust bundle, or the clock went back: verify from scratch.
        this.cache!.delete(tokenHash);
        entry = undefined;
      }
      if (entry) {
        this.trust.maybeBackgroundRefresh();
      } else {
        entry = await this.verifyToken(token, now);
        this.cache?.set(tokenHash, entry);
      }
      const pending = this.checkRequest(entry, token, tokenHash, opts);
      if (pending) await pending;
      return entry.token;
    } catch (err) {
      if (err instanceof VerifierError) this.reporter?.refused(err.code, () => token ?? undefined);
      // RFC 9449 §7.1: a request that used DPoP is answered with a DPoP challenge.
      if (err instanceof VerifierError && err.scheme === 'Bearer' && opts.dpop) {
        throw new VerifierError(err.code, err.description, {
          detail: err.detail,
          cause: err.cause,
          scheme: 'DPoP',
          requiredScopes: err.requiredScopes,
          retryAfterSeconds: err.retryAfterSeconds,
        });
      }
      throw err;
    }
  }

  ready(): Promise<BundleStatus> {
    return this.trust.ensureLoaded().then(() => this.trust.status());
  }

  async refresh(): Promise<BundleStatus> {
    await this.trust.refresh(true);
    return this.trust.status();
  }

  bundleStatus(): BundleStatus {
    return this.trust.status();
  }

  /** Everything that depends on the token alone; the result is cacheable until `exp`. */
  private async verifyToken(token: string, now: number): Promise<CacheEntry> {
    if (COMPACT_JWE.test(token)) token = await this.decrypt(token);
    if (!COMPACT_JWS.test(token)) {
      fail(
        'ERR_TOKEN_MALFORMED',
        token.split('.').length === 5
          ? 'encrypted access tokens are not accepted here'
          : 'the access token is not a compact JWS',
      );
    }
    const dot1 = token.indexOf('.');
    const dot2 = token.indexOf('.', dot1 + 1);
    const header = decodeJson(token.slice(0, dot1));
    if (!header) fail('ERR_TOKEN_MALFORMED', 'the access token header is not a JSON object');

    // RFC 8725 §3.10: keys come only from the trust set. A token that names its own key, or a
    // place to fetch one, is refused before anything is looked up (let alone fetched).
    for (const member of KEY_BEARING_HEADERS) {
      if (member in header) {
        fail(
          'ERR_TOKEN_HEADER',
          `the access token header must not carry "${member}"`,
          quoted(header[member]),
        );
      }
    }
    // RFC 7515 §4.1.11: no extension is understood, so any critical one means refusal.
    if ('crit' in header)
      fail('ERR_TOKEN_HEADER', 'the access token has critical header parameters', quoted(header.crit));
    // RFC 8725 §3.1/§3.2: never "none" (in any spelling), never a MAC.
    const alg = header.alg;
    if (typeof alg !== 'string' || !ACCESS_TOKEN_ALGS.has(alg)) {
      fail('ERR_TOKEN_ALG', 'the access token algorithm is not allowed', `alg=${quoted(alg)}`);
    }
    // RFC 9068 §4, RFC 8725 §3.11: explicit typing, so an ID token is not an access token.
    if (!isAccessTokenType(header.typ)) {
      fail(
        'ERR_TOKEN_TYPE',
        'the token is not an access token (typ must be "at+jwt")',
        `typ=${quoted(header.typ)}`,
      );
    }
    const kid = header.kid;
    if (kid !== undefined && (typeof kid !== 'string' || kid.length === 0 || kid.length > 256)) {
      fail('ERR_TOKEN_HEADER', 'the access token "kid" is invalid', quoted(kid));
    }

    const claims = decodeJson(token.slice(dot1 + 1, dot2));
    if (!claims) fail('ERR_TOKEN_MALFORMED', 'the access token payload is not a JSON object');

    // RFC 8725 §3.8 / RFC 9068 §4: the issuer must be one of the trusted ones, and the key one
    // of *its* keys.
    const iss = claims.iss;
    if (typeof iss !== 'string') fail('ERR_TOKEN_ISSUER', 'the access token names no issuer');
    // Awaited only until a first trust set is in use (the hot path stays free of extra ticks).
    if (this.trust.loaded) this.trust.maybeBackgroundRefresh();
    else if (!(await this.trust.ensureLoaded())) {
      const status = this.trust.status();
      throw new VerifierError('ERR_TRUST_UNAVAILABLE', 'the trusted issuers are not known yet; retry later', {
        detail: status.lastError,
        retryAfterSeconds: 5,
      });
    }
    let issuer = this.trust.issuer(iss);
    if (!issuer) {
      // A region added since the last fetch: one refresh, cooldown permitting.
      await this.trust.refresh(false);
      issuer = this.trust.issuer(iss);
      if (!issuer) fail('ERR_TOKEN_ISSUER', 'the access token issuer is not trusted', `iss=${quoted(iss)}`);
    }
    const lookup = this.trust.find(issuer, kid as string | undefined, alg as string);
    const key =
      'found' in lookup ? lookup.found : await this.keyFor(issuer, kid as string | undefined, alg as string);

    try {
      await compactVerify(token, key.keys.get(alg as string)!, { algorithms: [alg as string] });
    } catch (err) {
      throw new VerifierError('ERR_TOKEN_SIGNATURE', 'the access token signature is invalid', { cause: err });
    }
    // The claims parsed above are the bytes just verified.
    return this.checkClaims(claims, issuer, key, now);
  }

  /** The slow path of the key lookup: refresh for an unknown kid, or say why there is no key. */
  private async keyFor(issuer: IssuerEntry, kid: string | undefined, alg: string): Promise<TrustedKey> {
    let lookup = this.trust.find(issuer, kid, alg);
    if ('missing' in lookup && lookup.missing === 'unknown-kid') {
      if (this.trust.issuerPublishing(kid!, issuer.issuer)) {
        fail(
          'ERR_TOKEN_ISSUER',
          'the signing key does not belong to the issuer the token names',
          `kid=${quoted(kid)}`,
        );
      }
      // A key published since the last fetch (rotation): one refresh per cooldown, so a stream
      // of made-up kids costs the broker at most one request per cooldown.
      await this.trust.refresh(false);
      const fresh = this.trust.issuer(issuer.issuer);
      if (!fresh) fail('ERR_TOKEN_ISSUER', 'the access token issuer is no longer trusted');
      issuer = fresh;
      lookup = this.trust.find(issuer, kid, alg);
      if (
        'missing' in lookup &&
        lookup.missing === 'unknown-kid' &&
        this.trust.issuerPublishing(kid!, issuer.issuer)
      ) {
        fail(
          'ERR_TOKEN_ISSUER',
          'the signing key does not belong to the issuer the token names',
          `kid=${quoted(kid)}`,
        );
      }
    }
    if ('found' in lookup) return lookup.found;
    switch (lookup.missing) {
      case 'unknown-kid':
        return fail(
          'ERR_TOKEN_SIGNATURE',
          'no trusted key matches the access token "kid"',
          `kid=${quoted(kid)}`,
        );
      case 'alg-not-allowed':
        return fail(
          'ERR_TOKEN_ALG',
          'the access token algorithm does not match its key',
          `alg=${quoted(alg)}`,
        );
      case 'kid-required':
        return fail('ERR_TOKEN_HEADER', 'the access token needs a "kid": its issuer has several keys');
    }
  }

  private checkClaims(
    c: Record<string, unknown>,
    issuer: IssuerEntry,
    key: TrustedKey,
    now: number,
  ): CacheEntry {
    const leewayMs = this.leewaySeconds * 1000;
    // RFC 8725 §3.9, RFC 9068 §4: this service must be an intended audience.
    const aud = c.aud;
    if (!(aud === this.audience || (isStringArray(aud) && aud.includes(this.audience)))) {
      fail('ERR_TOKEN_AUDIENCE', 'the access token is not meant for this service', `aud=${quoted(aud)}`);
    }
    const { exp, nbf, iat } = c;
    if (typeof exp !== 'number' || !Number.isFinite(exp))
      fail('ERR_TOKEN_MALFORMED', 'the access token has no "exp"');
    if (exp * 1000 <= now - leewayMs) fail('ERR_TOKEN_EXPIRED', 'the access token has expired');
    if (nbf !== undefined && (typeof nbf !== 'number' || !Number.isFinite(nbf))) {
      fail('ERR_TOKEN_MALFORMED', 'the access token "nbf" is not a number');
    }
    if (typeof nbf === 'number' && nbf * 1000 > now + leewayMs) {
      fail('ERR_TOKEN_NOT_YET_VALID', 'the access token is not valid yet');
    }
    if (typeof iat !== 'number' || !Number.isFinite(iat))
      fail('ERR_TOKEN_MALFORMED', 'the access token has no "iat"');
    if (iat * 1000 > now + leewayMs)
      fail('ERR_TOKEN_NOT_YET_VALID', 'the access token was issued in the future');
    // RFC 9068 §2.2: the other required claims.
    for (const name of ['sub', 'client_id', 'jti'] as const) {
      if (typeof c[name] !== 'string' || c[name] === '')
        fail('ERR_TOKEN_MALFORMED', `the access token has no "${name}"`);
    }
    if (c.scope !== undefined && typeof c.scope !== 'string')
      fail('ERR_TOKEN_MALFORMED', 'the access token "scope" is not a string');
    if (c.residency !== undefined && !isResidency(c.residency)) {
      fail('ERR_TOKEN_MALFORMED', 'the access token "residency" claim is malformed');
    }
    if (c.cnf !== undefined) {
      const cnf = c.cnf as Record<string, unknown> | null;
      if (typeof cnf !== 'object' || cnf === null)
        fail('ERR_TOKEN_MALFORMED', 'the access token "cnf" is not an object');
      for (const m of ['jkt', 'x5t#S256']) {
        if (cnf[m] !== undefined && typeof cnf[m] !== 'string')
          fail('ERR_TOKEN_MALFORMED', `the access token "cnf.${m}" is invalid`);
      }
    }
    const claims = deepFreeze(c) as AccessTokenClaims;
    const token: VerifiedToken = Object.freeze({
      sub: claims.sub,
      clientId: claims.client_id,
      scope: Object.freeze(claims.scope ? claims.scope.split(' ').filter(Boolean) : []),
      audience: this.audience,
      issuer: issuer.issuer,
      region: issuer.region,
      residency: claims.residency,
      claims,
      expiresAt: new Date(exp * 1000),
    });
    return {
      token,
      expiresAtMs: exp * 1000,
      notBeforeMs: Math.max(typeof nbf === 'number' ? nbf * 1000 : -Infinity, iat * 1000) - leewayMs,
      key,
    };
  }

  /**
   * Per request, cache hit or not: binding, liveness, scope, residency. Synchronous unless a
   * DPoP proof or introspection is involved.
   */
  private checkRequest(
    entry: CacheEntry,
    token: string,
    tokenHash: string,
    opts: VerifyOptions,
  ): Promise<void> | undefined {
    const cnf = entry.token.claims.cnf;
    const jkt = cnf?.jkt;
    const scheme = jkt !== undefined || opts.dpop ? 'DPoP' : 'Bearer';
    const x5t = cnf?.['x5t#S256'];
    // RFC 8705 §3: a certificate-bound token only over a TLS connection with that certificate.
    if (x5t !== undefined) {
      if (!opts.clientCertificate) {
        throw new VerifierError(
          'ERR_TOKEN_BINDING',
          'the certificate-bound access token was presented without its client certificate',
          { scheme },
        );
      }
      if (!certificateMatches(x5t, opts.clientCertificate)) {
        throw new VerifierError(
          'ERR_TOKEN_BINDING',
          'the access token is bound to another client certificate',
          {
            scheme,
          },
        );
      }
    }
    if (jkt === undefined && opts.dpop) {
      // RFC 9449 §7.1: the DPoP scheme is for DPoP-bound tokens only.
      throw new VerifierError(
        'ERR_TOKEN_BINDING',
        'a DPoP proof was presented with an access token that is not DPoP-bound',
        { scheme },
      );
    }
    if (jkt !== undefined || opts.introspect)
      return this.checkLive(entry, token, tokenHash, opts, jkt, scheme);
    this.checkGrants(entry, opts, scheme);
    return undefined;
  }

  private async checkLive(
    entry: CacheEntry,
    token: string,
    tokenHash: string,
    opts: VerifyOptions,
    jkt: string | undefined,
    scheme: 'Bearer' | 'DPoP',
  ): Promise<void> {
    if (jkt !== undefined) {
      // RFC 9449 §7.1: a DPoP-bound token needs a proof on every request (never cached).
      if (!opts.dpop) {
        throw new VerifierError(
          'ERR_TOKEN_BINDING',
          'the DPoP-bound access token was presented without a DPoP proof',
          { scheme },
        );
      }
      await verifyDpopProof({
        proof: opts.dpop.proof,
        method: opts.dpop.method,
        url: opts.dpop.url,
        accessToken: token,
        jkt,
        now: this.now(),
        windowSeconds: this.dpopWindowSeconds,
        leewaySeconds: this.leewaySeconds,
        replay: this.replay,
      });
    }
    if (opts.introspect) {
      if (!this.introspector) {
        throw new TypeError('verify({ introspect: true }) needs the introspection option of createVerifier');
      }
      await this.introspector.assertActive(token, tokenHash, entry.expiresAtMs, scheme);
    }
    this.checkGrants(entry, opts, scheme);
  }

  /** What the request needs beyond a valid token: scopes (RFC 6750 §3.1) and residency. */
  private checkGrants(entry: CacheEntry, opts: VerifyOptions, scheme: 'Bearer' | 'DPoP'): void {
    const required = opts.requiredScopes;
    if (required && required.length) {
      const granted = entry.token.scope;
      const missing = required.filter((s) => !granted.includes(s));
      if (missing.length) {
        throw new VerifierError(
          'ERR_INSUFFICIENT_SCOPE',
          `the access token lacks the scope ${missing.join(' ')}`,
          {
            scheme,
            requiredScopes: required,
          },
        );
      }
    }
    if (opts.region !== undefined) {
      const processing = entry.token.residency?.processing;
      if (!processing || !processing.includes(opts.region)) {
        throw new VerifierError(
          'ERR_RESIDENCY_PROCESSING',
          `residency: the subject's personal data may not be processed in region ${opts.region}`,
          { scheme, detail: `processing=${quoted(processing)}` },
        );
      }
    }
  }
}

/**
 * Creates a verifier for one audience. Throws a `TypeError` listing every invalid option.
 * Nothing is fetched until the first `verify` (or `ready()`).
 *
 * @example
 * ```ts
 * import { createVerifier } from '@meridian/verifier';
 *
 * const verifier = createVerifier({
 *   trustBundleUrl: process.env.MERIDIAN_TRUST_BUNDLE_URL!,
 *   audience: 'https://orders.example.com',
 *   clockToleranceSeconds: 30,
 * });
 * await verifier.ready(); // optional: load the trust bundle before taking traffic
 *
 * const token = await verifier.verify(req.headers.authorization?.slice('Bearer '.length));
 * ```
 */
export function createVerifier(options: VerifierOptions): Verifier {
  return new MeridianVerifier(options);
}
