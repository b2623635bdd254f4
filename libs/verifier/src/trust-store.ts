/**
 * The issuers and keys a verifier trusts: a broker's trust bundle (refreshed with a cooldown,
 * last good copy kept when the broker is unreachable) or an explicit list. Keys come from here
 * and nowhere else — never from anything a token names (RFC 8725 §3.10).
 */
import { importJWK, type CryptoKey, type JWK } from 'jose';
import type { BundleStatus, TrustedIssuer } from './types';

/**
 * One verification key of one issuer, imported once for every algorithm it allows.
 *
 * @internal
 * @example
 * ```ts
 * const key: TrustedKey = lookup.found; key.keys.get('ES256'); // the CryptoKey
 * ```
 */
export interface TrustedKey {
  readonly issuer: IssuerEntry;
  readonly kid: string | undefined;
  /** Algorithm → imported key; the allow-list for this key (RFC 8725 §3.1). */
  readonly keys: ReadonlyMap<string, CryptoKey>;
  /** False once the key has left the trust set: cached tokens it signed stop being accepted. */
  active: boolean;
}

/**
 * One trusted issuer and its keys, by `kid`.
 *
 * @internal
 * @example
 * ```ts
 * const eu: IssuerEntry | undefined = store.issuer('https://eu.id.example.com');
 * ```
 */
export interface IssuerEntry {
  readonly issuer: string;
  readonly region: string | undefined;
  readonly jurisdiction: string | null | undefined;
  readonly byKid: ReadonlyMap<string, readonly TrustedKey[]>;
  readonly all: readonly TrustedKey[];
}

/**
 * The key for a token, or why there is none.
 *
 * @internal
 * @example
 * ```ts
 * const lookup: KeyLookup = store.find(issuer, kid, 'ES256');
 * if ('missing' in lookup) console.log(lookup.missing);
 * ```
 */
export type KeyLookup =
  { found: TrustedKey } | { missing: 'unknown-kid' | 'alg-not-allowed' | 'kid-required' };

const EC_ALG: Readonly<Record<string, string>> = { 'P-256': 'ES256', 'P-384': 'ES384', 'P-521': 'ES512' };
const RSA_ALGS = new Set(['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512']);
const MAX_BUNDLE_BYTES = 1024 * 1024;

/**
 * The algorithms a JWK may verify, derived from its key type (RFC 8725 §3.1): EC by curve,
 * RSA as its `alg` says (RS256/PS256 when it says nothing), OKP Ed25519 → EdDSA. Symmetric and
 * encryption keys verify nothing: an `oct` key in a bundle can never turn into an HMAC secret.
 *
 * @internal
 * @example
 * ```ts
 * algorithmsForJwk({ kty: 'EC', crv: 'P-256', x, y }); // ['ES256']
 * algorithmsForJwk({ kty: 'oct', k }); // []
 * ```
 */
export function algorithmsForJwk(jwk: JWK): string[] {
  if (jwk.use !== undefined && jwk.use !== 'sig') return [];
  if (Array.isArray(jwk.key_ops) && !jwk.key_ops.includes('verify')) return [];
  switch (jwk.kty) {
    case 'EC': {
      const alg = typeof jwk.crv === 'string' ? EC_ALG[jwk.crv] : undefined;
      if (!alg || (jwk.alg !== undefined && jwk.alg !== alg)) return [];
      return [alg];
    }
    case 'RSA':
      if (jwk.alg !== undefined) return RSA_ALGS.has(jwk.alg) ? [jwk.alg] : [];
      return ['RS256', 'PS256'];
    case 'OKP':
      if (jwk.crv !== 'Ed25519') return [];
      if (jwk.alg !== undefined) return jwk.alg === 'EdDSA' || jwk.alg === 'Ed25519' ? [jwk.alg] : [];
      return ['EdDSA', 'Ed25519'];
    default:
      return [];
  }
}

/** Only the public members: a bundle that (wrongly) carried a private part is not used as one. */
function publicPart(jwk: JWK): JWK {
  switch (jwk.kty) {
    case 'EC':
      return { kty: 'EC', crv: jwk.crv, x: jwk.x, y: jwk.y };
    case 'RSA':
      return { kty: 'RSA', n: jwk.n, e: jwk.e };
    default:
      return { kty: jwk.kty, crv: jwk.crv, x: jwk.x };
  }
}

function rsaBits(jwk: JWK): number {
  return typeof jwk.n === 'string' ? Buffer.from(jwk.n, 'base64url').length * 8 : 0;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Where the trust set comes from and how often it may be fetched.
 *
 * @internal
 * @example
 * ```ts
 * const cfg: TrustStoreConfig = { url, fetch, now: Date.now, cooldownMs: 30_000, maxAgeMs: 300_000, timeoutMs: 5000 };
 * ```
 */
export interface TrustStoreConfig {
  url?: string;
  issuers?: TrustedIssuer[];
  fetch: typeof fetch;
  now: () => number;
  cooldownMs: number;
  maxAgeMs: number;
  timeoutMs: number;
}

/**
 * The issuers and keys in use; refreshes with a cooldown, keeps the last good bundle.
 *
 * @internal
 * @example
 * ```ts
 * const store = new TrustStore(cfg);
 * if (await store.ensureLoaded()) store.issuer(iss);
 * ```
 */
export class TrustStore {
  private issuers = new Map<string, IssuerEntry>();
  /** fingerprint → key, so keys that survive a refresh keep their identity (and cache entries). */
  private keyIndex = new Map<string, TrustedKey>();
  private loadedAt: number | undefined;
  private lastAttemptAt: number | undefined;
  private lastError: string | undefined;
  /** The installed bundle's ETag, sent back as If-None-Match. */
  private etag: string | undefined;
  /** Failed attempts before any bundle was ever loaded (drives the start-up backoff). */
  private failuresBeforeLoad = 0;
  private fetches = 0;
  private inflight: Promise<void> | undefined;
  private staticLoad: Promise<void> | undefined;

  constructor(private readonly cfg: TrustStoreConfig) {
    if (cfg.issuers) {
      this.staticLoad = this.installStatic(cfg.issuers);
      // Failures are recorded in lastError; nobody awaits this before the first verify.
      this.staticLoad.catch(() => undefined);
    }
  }

  get loaded(): boolean {
    return this.loadedAt !== undefined;
  }

  issuer(iss: string): IssuerEntry | undefined {
    return this.issuers.get(iss);
  }

  /** The issuer (other than `except`) that publishes `kid`, if any. */
  issuerPublishing(kid: string, except: string): IssuerEntry | undefined {
    for (const entry of this.issuers.values()) {
      if (entry.issuer !== except && entry.byKid.has(kid)) return entry;
    }
    return undefined;
  }

  find(issuer: IssuerEntry, kid: string | undefined, alg: string): KeyLookup {
    if (kid !== undefined) {
      const candidates = issuer.byKid.get(kid);
      if (!candidates) return { missing: 'unknown-kid' };
      const match = candidates.find((k) => k.keys.has(alg));
      return match ? { found: match } : { missing: 'alg-not-allowed' };
    }
    // RFC 7515 §4.1.4: kid is optional; without it the key must still be unambiguous.
    const matches = issuer.all.filter((k) => k.keys.has(alg));
    if (matches.length === 1) return { found: matches[0]! };
    return { missing: matches.length === 0 ? 'alg-not-allowed' : 'kid-required' };
  }

  /** Waits for a first set of keys (one fetch attempt, cooldown permitting); true when one is in use. */
  async ensureLoaded(): Promise<boolean> {
    if (this.staticLoad) {
      await this.staticLoad;
      return this.loaded;
    }
    if (this.loaded) {
      this.maybeBackgroundRefresh();
      return true;
    }
    await this.refresh(false);
    return this.loaded;
  }

  /** Starts a refresh (not awaited) when the bundle is older than its maximum age. */
  maybeBackgroundRefresh(): void {
    if (!this.cfg.url || this.loadedAt === undefined || this.inflight) return;
    if (this.cfg.now() - this.loadedAt < this.cfg.maxAgeMs || !this.mayFetch()) return;
    void this.refresh(false);
  }

  /**
   * Fetches the bundle unless one was fetched within the cooldown (`force` skips the cooldown);
   * concurrent callers share one fetch. Never throws: a failure keeps the last good bundle.
   */
  refresh(force: boolean): Promise<void> {
    if (!this.cfg.url) return this.staticLoad ?? Promise.resolve();
    if (this.inflight) return this.inflight;
    if (!force && !this.mayFetch()) return Promise.resolve();
    this.lastAttemptAt = this.cfg.now();
    this.fetches++;
    this.inflight = this.fetchAndInstall(this.cfg.url).finally(() => {
      this.inflight = undefined;
    });
    return this.inflight;
  }

  status(): BundleStatus {
    const now = this.cfg.now();
    const status: BundleStatus = {
      source: this.cfg.url ? 'bundle' : 'static',
      loaded: this.loaded,
      stale:
        !this.loaded ||
        (!!this.cfg.url && (this.lastError !== undefined || now - (this.loadedAt ?? 0) >= this.cfg.maxAgeMs)),
      fetches: this.fetches,
      issuers: [...this.issuers.values()].map((i) => ({
        issuer: i.issuer,
        ...(i.region !== undefined ? { region: i.region } : {}),
        kids: [...i.byKid.keys()],
      })),
    };
    if (this.loadedAt !== undefined) status.loadedAt = this.loadedAt;
    if (this.lastAttemptAt !== undefined) status.lastAttemptAt = this.lastAttemptAt;
    if (this.lastError !== undefined) status.lastError = this.lastError;
    return status;
  }

  /**
   * Once a bundle is in use, at most one fetch per cooldown. Before the first one, a service
   * that started before its broker retries sooner — 1 s, 2 s, 4 s … up to the cooldown — so it
   * becomes ready soon after the broker does (it refuses every token until then).
   */
  private mayFetch(): boolean {
    if (this.lastAttemptAt === undefined) return true;
    const wait = this.loaded
      ? this.cfg.cooldownMs
      : Math.min(this.cfg.cooldownMs, 1000 * 2 ** Math.max(0, this.failuresBeforeLoad - 1));
    return this.cfg.now() - this.lastAttemptAt >= wait;
  }

  private async fetchAndInstall(url: string): Promise<void> {
    try {
      const res = await this.cfg.fetch(url, {
        // The broker answers 304 when the bundle has not changed since the one installed.
        headers: {
          accept: 'application/json',
          ...(this.etag && this.loaded ? { 'if-none-match': this.etag } : {}),
        },
        // The bundle is where the bundle URL says it is; a redirect elsewhere is not followed.
        redirect: 'error',
        signal: AbortSignal.timeout(this.cfg.timeoutMs),
      });
      if (res.status === 304 && this.etag && this.loaded) {
        this.loadedAt = this.cfg.now();
        this.lastError = undefined;
        return;
      }
      if (res.status !== 200) {
        await res.body?.cancel().catch(() => undefined);
        throw new Error(`trust bundle answered HTTP ${res.status}`);
      }
      const length = Number(res.headers.get('content-length') ?? 0);
      if (length > MAX_BUNDLE_BYTES) throw new Error('trust bundle is larger than 1 MiB');
      const bytes = await res.arrayBuffer();
      if (bytes.byteLength > MAX_BUNDLE_BYTES) throw new Error('trust bundle is larger than 1 MiB');
      let body: unknown;
      try {
        body = JSON.parse(Buffer.from(bytes).toString('utf8'));
      } catch {
        throw new Error('trust bundle is not JSON');
      }
      await this.install(parseBundle(body));
      this.etag = res.headers.get('etag') ?? undefined;
      this.loadedAt = this.cfg.now();
      this.lastError = undefined;
    } catch (err) {
      if (!this.loaded) this.failuresBeforeLoad++;
      this.lastError = `${(err as Error).message ?? err}`.slice(0, 300);
    }
  }

  private async installStatic(issuers: TrustedIssuer[]): Promise<void> {
    this.lastAttemptAt = this.cfg.now();
    try {
      await this.install(issuers);
      this.loadedAt = this.cfg.now();
    } catch (err) {
      this.lastError = `${(err as Error).message ?? err}`.slice(0, 300);
    }
  }

  private async install(issuers: TrustedIssuer[]): Promise<void> {
    const next = new Map<string, IssuerEntry>();
    const nextIndex = new Map<string, TrustedKey>();
    for (const source of issuers) {
      // Two entries for one issuer would make "which keys are its keys" ambiguous: first wins.
      if (next.has(source.issuer)) continue;
      const byKid = new Map<string, TrustedKey[]>();
      const all: TrustedKey[] = [];
      const entry: IssuerEntry = {
        issuer: source.issuer,
        region: source.region,
        jurisdiction: source.jurisdiction,
        byKid,
        all,
      };
      for (const jwk of source.jwks.keys) {
        if (!isObject(jwk)) continue;
        const key = await this.importKey(entry, jwk as JWK, nextIndex);
        if (!key) continue;
        all.push(key);
        if (key.kid !== undefined) byKid.set(key.kid, [...(byKid.get(key.kid) ?? []), key]);
      }
      next.set(source.issuer, entry);
    }
    for (const [fingerprint, key] of this.keyIndex) if (!nextIndex.has(fingerprint)) key.active = false;
    this.issuers = next;
    this.keyIndex = nextIndex;
  }

  private async importKey(
    issuer: IssuerEntry,
    jwk: JWK,
    nextIndex: Map<string, TrustedKey>,
  ): Promise<TrustedKey | undefined> {
    const algs = algorithmsForJwk(jwk);
    if (algs.length === 0) return undefined;
    if (jwk.kty === 'RSA' && rsaBits(jwk) < 2048) return undefined; // RFC 7518 §3.3
    const kid = typeof jwk.kid === 'string' ? jwk.kid : undefined;
    const pub = publicPart(jwk);
    const fingerprint = JSON.stringify([issuer.issuer, kid, pub, algs]);
    const previous = this.keyIndex.get(fingerprint) ?? nextIndex.get(fingerprint);
    // The issuer entry is rebuilt on every refresh; a surviving key keeps its object (so cache
    // entries stay valid) and is pointed at the fresh issuer entry.
    if (previous) {
      const kept: TrustedKey = previous;
      (kept as { issuer: IssuerEntry }).issuer = issuer;
      nextIndex.set(fingerprint, kept);
      return kept;
    }
    const keys = new Map<string, CryptoKey>();
    for (const alg of algs) {
      try {
        keys.set(alg, (await importJWK(pub, alg)) as CryptoKey);
      } catch {
        // An unusable key (bad point, unsupported curve) verifies nothing.
      }
    }
    if (keys.size === 0) return undefined;
    const key: TrustedKey = { issuer, kid, keys, active: true };
    nextIndex.set(fingerprint, key);
    return key;
  }
}

/**
 * Validates `{ regions: [{ region, issuer, jurisdiction, jwks: { keys } }] }`.
 *
 * @internal
 * @example
 * ```ts
 * const issuers = parseBundle(await (await fetch(bundleUrl)).json());
 * ```
 */
export function parseBundle(body: unknown): TrustedIssuer[] {
  if (!isObject(body) || !Array.isArray(body.regions)) throw new Error('trust bundle has no "regions" array');
  const issuers: TrustedIssuer[] = [];
  for (const r of body.regions) {
    if (!isObject(r) || typeof r.issuer !== 'string' || r.issuer === '') continue;
    if (!isObject(r.jwks) || !Array.isArray(r.jwks.keys)) continue;
    issuers.push({
      issuer: r.issuer,
      region: typeof r.region === 'string' ? r.region : undefined,
      jurisdiction: typeof r.jurisdiction === 'string' ? r.jurisdiction : null,
      jwks: { keys: r.jwks.keys as JWK[] },
    });
  }
  // An empty bundle would refuse every token; more likely a broken broker than a real change.
  if (issuers.length === 0) throw new Error('trust bundle names no usable issuer');
  return issuers;
}
