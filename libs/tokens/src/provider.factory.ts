/**
 * oidc-provider, configured as Meridian's OP. Everything here is configuration of the engine;
 * the OAuth endpoints themselves are oidc-provider's (OpenID Certified), not ours.
 */
import { createHmac, createPublicKey, hkdfSync, timingSafeEqual, type KeyObject } from 'node:crypto';
import Provider, {
  ExternalSigningKey,
  errors,
  type Configuration,
  type JWK,
  type KoaContextWithOIDC,
} from 'oidc-provider';
import type { ControlDatabase, RegionDatabase } from '@meridian/persistence';
import type { SigningAlg } from '@meridian/config';
import type { KeySet, SigningKey } from '@meridian/keys';
import { ControlClientAdapter, RegionPayloadAdapter } from './oidc-adapter';
import { isHashedClientSecret, matchClientSecret } from './client-secret';
import { accessTokenTtl, clientResidency, isResidency, type Residency } from './claims';
import type { JsonWebKeyForEncryption, ResourceCatalog } from './resource-catalog';
import { ACT, type ExchangedToken } from './token-exchange';
import { presentedCertificate, subjectDnMatches } from './mtls';
import {
  handOffFrom,
  loggedOutPage,
  logoutPage,
  negotiateLanguage,
  pageHeaders,
  providerErrorPage,
  type Lang,
} from '@meridian/federation';
import { ADMIN_AUDIENCE } from './admin-audience';

const ASYMMETRIC_ALGS = ['ES256', 'RS256', 'PS256', 'EdDSA'];

/** Scopes oidc-provider itself knows (OIDC); resource scopes come from the resource catalog. */
export const OIDC_SCOPES = ['openid', 'offline_access', 'email', 'profile', 'address', 'phone'];

/**
 * Client metadata as stored: oidc-provider's `scope` may only name OIDC scopes, so the full
 * list the admin registered is kept in `allowed_scopes`, and resource scopes are granted from it.
 */
export function splitClientScope(scope: string | undefined): { scope?: string; allowed_scopes: string } {
  const all = [...new Set((scope ?? '').split(' ').filter(Boolean))];
  const oidc = all.filter((s) => OIDC_SCOPES.includes(s));
  return { ...(oidc.length ? { scope: oidc.join(' ') } : {}), allowed_scopes: all.join(' ') };
}

export interface ProviderDeps {
  issuer: string;
  region: string;
  jurisdiction: string;
  signingAlg: SigningAlg;
  kek: Buffer;
  /** During a KEK change: cookies signed under the old KEK's key still verify (not renewed). */
  kekPrevious?: Buffer;
  keys: KeySet;
  regionDb: RegionDatabase;
  controlDb: ControlDatabase;
  clients: ControlClientAdapter;
  resources: ResourceCatalog;
  /** Where oidc-provider sends the browser to log in (Meridian's interaction routes). */
  interactionPath: (uid: string) => string;
  /**
   * The subject as the client may see it: its residency and the claims its policy releases to
   * the client's region.
   */
  account: (
    client: unknown,
    sub: string,
  ) => Promise<{ residency: unknown; claims: Record<string, unknown> } | undefined>;
  /** Keys pairwise subject identifiers (OIDC Core §8.1); shared by all regions. */
  pairwiseSecret: Buffer;
}

/**
 * All published keys go to oidc-provider (it verifies what any of them signed, e.g. an
 * id_token_hint); the current key comes first, which is the one oidc-provider signs with, and
 * access tokens name its kid explicitly.
 */
export function providerJwks(keys: KeySet): { keys: (JWK | ExternalSigningKey)[] } {
  const ordered = [keys.current, ...keys.published.filter((k) => k.kid !== keys.current.kid)];
  return { keys: ordered.map((k) => (k.external ? new TokenHeldKey(k) : (k.privateJwk as JWK))) };
}

/**
 * A key whose private half stays in a PKCS#11 token: oidc-provider hands it the JWS signing
 * input and publishes its public half (oidc-provider's external signing support).
 */
class TokenHeldKey extends ExternalSigningKey {
  readonly #key: SigningKey;
  #public?: KeyObject;

  constructor(key: SigningKey) {
    super();
    this.#key = key;
  }

  override get kid(): string {
    return this.#key.kid;
  }

  override get alg(): string {
    return this.#key.alg;
  }

  override keyObject(): KeyObject {
    this.#public ??= createPublicKey({ key: this.#key.publicJwk as never, format: 'jwk' });
    return this.#public;
  }

  override sign(data: Uint8Array): Promise<Uint8Array> {
    return this.#key.external!.sign(data);
  }
}

/** Extra client metadata, as oidc-provider exposes it (camelCase) on the client instance. */
interface ClientExtras {
  resources?: string[];
  allowedScopes?: string;
  allowed_scopes?: string;
}

// Read straight from the instance: client.metadata() rebuilds a snake_case copy of every
// property and costs more than the token's signature on this hot path.
function clientResources(client: unknown): string[] {
  return (client as ClientExtras).resources ?? [];
}

const scopeSets = new WeakMap<object, Set<string>>();
function allowedScopes(client: object): Set<string> {
  let set = scopeSets.get(client);
  if (!set) {
    const extras = client as ClientExtras;
    scopeSets.set(
      client,
      (set = new Set(String(extras.allowedScopes ?? extras.allowed_scopes ?? '').split(' '))),
    );
  }
  return set;
}

/** oidc-provider's findAccount over Meridian's subject lookup (also used by token exchange). */
export function accountFinder(account: ProviderDeps['account']) {
  return async (ctx: KoaContextWithOIDC, sub: string) => {
    const found = await account(ctx.oidc?.client, sub);
    if (!found) return undefined;
    return {
      accountId: sub,
      residency: found.residency,
      async claims() {
        return found.claims as { sub: string } & Record<string, unknown>;
      },
    };
  };
}

const encryptionKeys = new Map<string, KeyObject>();

/** JWE parameters for a service's registered key (validated at registration). */
function encryptionFor(jwk: JsonWebKeyForEncryption): {
  alg: string;
  enc: string;
  key: KeyObject;
  kid?: string;
} {
  const cacheKey = JSON.stringify(jwk);
  let key = encryptionKeys.get(cacheKey);
  if (!key) {
    const { alg: _a, enc: _e, use: _u, key_ops: _k, ...material } = jwk;
    key = createPublicKey({ key: material as never, format: 'jwk' });
    if (encryptionKeys.size > 1000) encryptionKeys.clear();
    encryptionKeys.set(cacheKey, key);
  }
  return { alg: jwk.alg, enc: jwk.enc ?? 'A256GCM', key, kid: jwk.kid };
}

/** The language of a page oidc-provider renders, and the headers every page sends. */
function pageLanguage(ctx: KoaContextWithOIDC): Lang {
  const lang = negotiateLanguage(ctx.get('accept-language'));
  ctx.set(pageHeaders(lang));
  ctx.vary('Accept-Language');
  return lang;
}

export function buildProvider(deps: ProviderDeps): Provider {
  const adapterCache = new Map<string, RegionPayloadAdapter>();
  // The same for every token about no person; frozen so no customizer can change it for others.
  const regionResidency = Object.freeze(clientResidency(deps.region, deps.jurisdiction));
  // The first key signs, the others verify (keygrip): a KEK change logs nobody out.
  const cookieKeys = [deps.kek, ...(deps.kekPrevious ? [deps.kekPrevious] : [])].map((kek) =>
    Buffer.from(hkdfSync('sha256', kek, 'meridian', `cookies:${deps.region}`, 32)).toString('base64url'),
  );

  const configuration: Configuration = {
    adapter: (name: string) => {
      if (name === 'Client') return deps.clients;
      let a = adapterCache.get(name);
      if (!a) adapterCache.set(name, (a = new RegionPayloadAdapter(name, deps.regionDb)));
      return a;
    },
    jwks: providerJwks(deps.keys),
    cookies: {
      keys: cookieKeys,
      // Browsers share cookies across ports of one host: brokers on one host must not collide.
      names: {
        session: `_meridian_${deps.region}_session`,
        interaction: `_meridian_${deps.region}_interaction`,
        resume: `_meridian_${deps.region}_resume`,
      },
      long: { signed: true, httpOnly: true, sameSite: 'lax' },
      short: { signed: true, httpOnly: true, sameSite: 'lax' },
    },
    clientAuthMethods: [
      'client_secret_basic',
      'client_secret_post',
      'private_key_jwt',
      'tls_client_auth',
      'self_signed_tls_client_auth',
    ],
    clientDefaults: {
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: deps.signingAlg,
    },
    // No `none`, no HMAC: every signature Meridian makes or accepts is asymmetric.
    enabledJWA: {
      clientAuthSigningAlgValues: ASYMMETRIC_ALGS,
      idTokenSigningAlgValues: ASYMMETRIC_ALGS,
      requestObjectSigningAlgValues: ASYMMETRIC_ALGS,
      userinfoSigningAlgValues: ASYMMETRIC_ALGS,
      introspectionSigningAlgValues: ASYMMETRIC_ALGS,
      authorizationSigningAlgValues: ASYMMETRIC_ALGS,
      dPoPSigningAlgValues: ['ES256', 'EdDSA', 'PS256', 'RS256'],
    } as Configuration['enabledJWA'],
    responseTypes: ['code'],
    // RFC 9700 §2.1.1: PKCE for every authorization code flow, and only S256 (oidc-provider
    // implements no `plain`).
    pkce: { required: () => true },
    scopes: OIDC_SCOPES,
    claims: {
      // `residency` travels with every identity: the requesting region of a hand-off needs it.
      openid: ['sub', 'residency'],
      email: ['email', 'email_verified'],
      profile: [
        'name',
        'given_name',
        'family_name',
        'middle_name',
        'nickname',
        'preferred_username',
        'locale',
        'zoneinfo',
        'birthdate',
        'gender',
        'picture',
        'website',
        'profile',
        'updated_at',
        'country',
      ],
      address: ['address'],
      phone: ['phone_number', 'phone_number_verified'],
    },
    // Scope claims in the ID token too: a broker receiving a hand-off reads them from there.
    conformIdTokenClaims: false,
    rotateRefreshToken: true,
    extraParams: ['idp_hint'],
    extraClientMetadata: {
      properties: [
        'resources',
        'allowed_scopes',
        'meridian_region',
        'previous_client_secret',
        'previous_client_secret_expires_at',
      ],
      validator(_ctx, key, value) {
        // A rotated secret's predecessor (hashed), accepted until its expiry (seconds since epoch).
        if (key === 'previous_client_secret' && value !== undefined && !isHashedClientSecret(value)) {
          throw new errors.InvalidClientMetadata('previous_client_secret must be a stored secret hash');
        }
        if (
          key === 'previous_client_secret_expires_at' &&
          value !== undefined &&
          (typeof value !== 'number' || !Number.isInteger(value) || value < 0)
        ) {
          throw new errors.InvalidClientMetadata(
            'previous_client_secret_expires_at must be seconds since the epoch',
          );
        }
        if (
          key === 'meridian_region' &&
          value !== undefined &&
          (typeof value !== 'string' || !/^[a-z][a-z0-9-]{0,31}$/.test(value))
        ) {
          throw new errors.InvalidClientMetadata('meridian_region must be a region id');
        }
        if (key === 'allowed_scopes' && value !== undefined && typeof value !== 'string') {
          throw new errors.InvalidClientMetadata('allowed_scopes must be a space-separated string');
        }
        if (key === 'resources' && value !== undefined) {
          if (!Array.isArray(value) || !value.every((v) => typeof v === 'string')) {
            throw new errors.InvalidClientMetadata('resources must be an array of audience strings');
          }
        }
      },
    },
    features: {
      devInteractions: { enabled: false },
      // Keys held by a PKCS#11 token sign through ExternalSigningKey (keys/pkcs11.ts).
      externalSigningSupport: {
        enabled: deps.keys.published.some((k) => k.external),
        ack: 'experimental-01',
      },
      clientCredentials: { enabled: true },
      // RFC 8705: tls_client_auth (subject DN, CA-verified), self_signed_tls_client_auth
      // (registered JWK) and certificate-bound access tokens (cnf.x5t#S256).
      mTLS: {
        enabled: true,
        certificateBoundAccessTokens: true,
        tlsClientAuth: true,
        selfSignedTlsClientAuth: true,
        getCertificate: (ctx) => presentedCertificate(ctx.req)?.pem,
        certificateAuthorized: (ctx) => presentedCertificate(ctx.req)?.authorized === true,
        certificateSubjectMatches: (ctx, property, expected) => {
          const cert = presentedCertificate(ctx.req);
          return !!cert && property === 'tls_client_auth_subject_dn' && subjectDnMatches(cert.pem, expected);
        },
      },
      // RFC 7662 §4: a client learns only about its own (opaque) tokens; JWT access tokens are
      // answered by access-token-status.ts with the resource's client allowed too.
      introspection: {
        enabled: true,
        allowedPolicy: (_ctx, client, token) => client.clientId === token.clientId,
      },
      revocation: { enabled: true },
      userinfo: { enabled: true },
      rpInitiatedLogout: {
        enabled: true,
        // No external fonts, no script: the same pages, headers and languages as the login's.
        // At a home broker, a peer's logout request says the person was handed off to it.
        logoutSource(ctx, form) {
          const lang = pageLanguage(ctx);
          ctx.type = 'html';
          ctx.body = logoutPage({
            lang,
            region: deps.region,
            form,
            handOff: handOffFrom(ctx.oidc?.client, deps.region),
          });
        },
        postLogoutSuccessSource(ctx) {
          const lang = pageLanguage(ctx);
          ctx.type = 'html';
          ctx.body = loggedOutPage({ lang, region: deps.region });
        },
      },
      resourceIndicators: {
        enabled: true,
        // One audience per access token (RFC 8707 §2): the client names it, or has only one.
        defaultResource(_ctx, client) {
          const allowed = clientResources(client);
          return allowed.length === 1 ? allowed[0] : undefined;
        },
        useGrantedResource: () => true,
        async getResourceServerInfo(_ctx, resourceIndicator, client) {
          const allowed = clientResources(client);
          if (!allowed.includes(resourceIndicator)) {
            throw new errors.InvalidTarget(
              `client is not permitted to request resource ${resourceIndicator}`,
            );
          }
          const resource = await deps.resources.byAudience(resourceIndicator);
          if (!resource) throw new errors.InvalidTarget(`unknown resource ${resourceIndicator}`);
          // A scope the client was not registered for is not granted (dropped, not an error:
          // RFC 6749 §3.3 lets the server grant less than asked).
          const clientScopes = allowedScopes(client);
          return {
            scope: resource.scopes.filter((s) => clientScopes.has(s)).join(' '),
            audience: resource.audience,
            accessTokenTTL: accessTokenTtl(resource.accessTokenTtlSeconds),
            accessTokenFormat: 'jwt',
            jwt: {
              sign: { alg: deps.signingAlg, kid: deps.keys.current.kid },
              // Nested JWT (RFC 7519 §11.2, RFC 9068 §7): signed, then encrypted to the service.
              // oidc-provider's typings list the JWE algorithms as literals; these were validated at registration.
              ...(resource.encryptionJwk ? { encrypt: encryptionFor(resource.encryptionJwk) as never } : {}),
            },
          };
        },
      },
    },
    ttl: {
      AuthorizationCode: 60,
      IdToken: 300,
      Interaction: 600,
      Session: 8 * 3600,
      Grant: 14 * 86400,
      RefreshToken: 14 * 86400,
      // The resource's own lifetime (default 300 s, capped at 3600 s); opaque userinfo-only
      // tokens get the default.
      AccessToken: (_ctx, token) => accessTokenTtl(token.resourceServer?.accessTokenTTL),
      ClientCredentials: (_ctx, token) => accessTokenTtl(token.resourceServer?.accessTokenTTL),
    },
    findAccount: accountFinder(deps.account),
    // A person's admin-audience scopes are decided by the role mapping at consent, every time: a
    // grant from an earlier sign-in is not reused for a client that may ask for the admin
    // audience, so a role taken away (or a group left upstream) counts at the next sign-in.
    async loadExistingGrant(ctx) {
      const client = ctx.oidc.client!;
      const grantId =
        ctx.oidc.result?.consent?.grantId ??
        (clientResources(client).includes(ADMIN_AUDIENCE)
          ? undefined
          : ctx.oidc.session?.grantIdFor(client.clientId));
      return grantId ? ctx.oidc.provider.Grant.find(grantId) : undefined;
    },
    subjectTypes: ['public', 'pairwise'],
    // OIDC Core §8.1: the same person, a different stable `sub` per sector (client host).
    async pairwiseIdentifier(_ctx, accountId, client) {
      return createHmac('sha256', deps.pairwiseSecret)
        .update(`pairwise\0${client.sectorIdentifier ?? ''}\0${accountId}`)
        .digest('base64url');
    },
    formats: {
      customizers: {
        // RFC 9068 access tokens with Meridian's `residency` claim on every one of them.
        async jwt(ctx, token, jwt) {
          let residency: Residency;
          if ((token as { accountId?: string }).accountId) {
            const account = (ctx as KoaContextWithOIDC).oidc?.account as { residency?: unknown } | undefined;
            const stored = account?.residency;
            // Fail closed: a subject without a residency decision gets no token.
            if (!isResidency(stored)) {
              const err = new errors.InvalidGrant('no residency decision is recorded for this subject');
              err.error_description = 'no residency decision is recorded for this subject: sign in again';
              throw err;
            }
            residency = stored;
          } else {
            residency = regionResidency;
          }
          jwt.payload.residency = residency;
          const act = (token as unknown as ExchangedToken)[ACT];
          if (act) jwt.payload.act = act;
          const grantId = (token as { grantId?: string }).grantId;
          if (grantId && typeof jwt.payload.jti === 'string' && typeof jwt.payload.exp === 'number') {
            // Lets introspection tell whether the grant behind a JWT still exists.
            await deps.regionDb.query(
              'insert into access_token_grant (jti, grant_id, expires_at) values ($1, $2, to_timestamp($3)) on conflict do nothing',
              [jwt.payload.jti, grantId, jwt.payload.exp],
            );
          }
        },
      },
    },
    interactions: {
      url: (_ctx, interaction) => deps.interactionPath(interaction.uid),
    },
    // Errors rendered for a person (bad redirect_uri etc.): no stack, no upstream text. A peer
    // broker's request that fails here is a hand-off, and the page says so.
    async renderError(ctx, out) {
      const lang = pageLanguage(ctx);
      ctx.type = 'html';
      ctx.body = providerErrorPage({
        lang,
        region: deps.region,
        error: String(out.error ?? 'server_error'),
        description: typeof out.error_description === 'string' ? out.error_description : undefined,
        handOff: handOffFrom((ctx as Partial<KoaContextWithOIDC>).oidc?.client, deps.region),
      });
    },
  };

  const provider = new Provider(deps.issuer, configuration);
  provider.proxy = true;

  const findClient = provider.Client.find.bind(provider.Client);
  provider.Client.find = (id: string) => deps.clients.clientInstance(provider, id, findClient);

  // Secrets are stored as salted HMACs (see client-secret.ts); oidc-provider compares the
  // presented secret through this one method. During a rotation's overlap the previous secret is
  // accepted too, until its expiry (never more than two at once).
  // The last secret that verified is remembered per Client instance (instances live as long as
  // the client cache entry, seconds), so a busy client costs one constant-time comparison per
  // request instead of an HMAC; a previous secret is remembered only until it expires.
  const verified = new WeakMap<object, { secret: Buffer; untilMs: number }>();
  provider.Client.prototype.compareClientSecret = function compareClientSecret(
    this: {
      clientSecret?: string;
      previous_client_secret?: unknown;
      previous_client_secret_expires_at?: unknown;
    },
    actual: string,
  ) {
    if (typeof actual !== 'string') return false;
    const now = Date.now();
    const presented = Buffer.from(actual, 'utf8');
    const known = verified.get(this);
    if (
      known &&
      now < known.untilMs &&
      known.secret.length === presented.length &&
      timingSafeEqual(known.secret, presented)
    )
      return true;
    const which = matchClientSecret(
      {
        current: this.clientSecret,
        previous: this.previous_client_secret,
        previousExpiresAt: this.previous_client_secret_expires_at,
      },
      actual,
      Math.floor(now / 1000),
    );
    if (which) {
      // A copy of its own: a small Buffer is a slice of a shared 8 KB pool slab, and keeping the
      // slice (one per cached client) would keep whole slabs alive.
      const kept = Buffer.allocUnsafeSlow(presented.length);
      presented.copy(kept);
      verified.set(this, {
        secret: kept,
        untilMs: which === 'current' ? Infinity : (this.previous_client_secret_expires_at as number) * 1000,
      });
    }
    return which !== undefined;
  };

  return provider;
}
