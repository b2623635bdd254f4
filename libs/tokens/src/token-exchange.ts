/**
 * RFC 8693 token exchange, registered as a grant of oidc-provider (it has none of its own): a
 * service that received a token about a person exchanges it for a token for one downstream
 * audience. The new token keeps the subject and its `residency`, narrows scope to what the
 * service may ask for that resource, records the chain in `act` (§4.1), lives no longer than
 * the subject token, and stays tied to the person's grant (revoking it revokes both).
 */
import type Provider from 'oidc-provider';
import { errors, type KoaContextWithOIDC } from 'oidc-provider';
import type { RegionDatabase } from '@meridian/persistence';
import type { AccessTokenStatus } from './access-token-status';
import { accessTokenTtl } from './claims';
import type { ResourceCatalog } from './resource-catalog';
import { ADMIN_AUDIENCE } from './admin-audience';

/** Where an exchanged token carries its `act` chain until the JWT customizer writes it. */
export const ACT = Symbol('meridian.act');
export interface ExchangedToken {
  [ACT]?: Record<string, unknown>;
}

export const TOKEN_EXCHANGE_GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange';
export const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';

interface ExchangeDeps {
  tokenStatus: AccessTokenStatus;
  /** The provider's findAccount (oidc-provider does not expose it on the instance). */
  findAccount: (ctx: KoaContextWithOIDC, sub: string) => Promise<unknown>;
  resources: ResourceCatalog;
  regionDb: RegionDatabase;
  signingAlg: string;
  currentKid: () => string;
}

function invalidRequest(description: string): Error {
  return new errors.InvalidRequest(description);
}

export function registerTokenExchange(provider: Provider, deps: ExchangeDeps): void {
  provider.registerGrantType(
    TOKEN_EXCHANGE_GRANT,
    async (ctx: KoaContextWithOIDC) => {
      const { client, params } = ctx.oidc as unknown as {
        client: {
          clientId: string;
          grantTypeAllowed(t: string): boolean;
          resources?: string[];
          allowedScopes?: string;
          allowed_scopes?: string;
        };
        params: Record<string, string | undefined>;
      };
      if (!client.grantTypeAllowed(TOKEN_EXCHANGE_GRANT))
        throw new errors.UnauthorizedClient('token exchange is not allowed for this client');
      if (params.subject_token_type !== ACCESS_TOKEN_TYPE)
        throw invalidRequest(`subject_token_type must be ${ACCESS_TOKEN_TYPE}`);
      if (params.requested_token_type && params.requested_token_type !== ACCESS_TOKEN_TYPE)
        throw invalidRequest(`requested_token_type must be ${ACCESS_TOKEN_TYPE}`);
      if (params.actor_token || params.actor_token_type)
        throw invalidRequest('actor tokens are not supported; the client is the actor');
      if (!params.subject_token) throw invalidRequest('missing required parameter subject_token');

      const subject = await deps.tokenStatus.verify(params.subject_token);
      if (!subject) throw new errors.InvalidGrant('subject_token is invalid, expired or revoked');
      if (subject.sub === subject.client_id)
        throw invalidRequest(
          'only tokens about a person can be exchanged; a service acting for itself uses client_credentials',
        );
      // Only the service a token was issued to may exchange it (a stolen token cannot be
      // converted by anyone else).
      const sourceAudience = Array.isArray(subject.aud) ? subject.aud[0] : subject.aud;
      const source = sourceAudience ? await deps.resources.byAudience(sourceAudience) : undefined;
      if (!source || source.clientId !== client.clientId)
        throw new errors.InvalidGrant('the subject_token was not issued to this client’s service');

      const target = params.resource ?? params.audience;
      if (!target)
        throw new errors.InvalidTarget(
          'resource (or audience) is required: the one downstream service the token is for',
        );
      // A person's admin scopes come only from the role mapping at sign-in, never by exchange.
      if (target === ADMIN_AUDIENCE)
        throw new errors.InvalidTarget(`${ADMIN_AUDIENCE} cannot be the target of a token exchange`);
      if (!(client.resources ?? []).includes(target))
        throw new errors.InvalidTarget(`client is not permitted to request resource ${target}`);
      const resource = await deps.resources.byAudience(target);
      if (!resource) throw new errors.InvalidTarget(`unknown resource ${target}`);

      const allowed = new Set(
        String(client.allowedScopes ?? client.allowed_scopes ?? '')
          .split(' ')
          .filter(Boolean),
      );
      const requested = params.scope ? new Set(params.scope.split(' ')) : undefined;
      const scopes = resource.scopes.filter((s) => allowed.has(s) && (!requested || requested.has(s)));

      const account = await deps.findAccount(ctx, subject.sub!);
      if (!account) throw new errors.InvalidGrant('the subject of the subject_token is unknown here');
      ctx.oidc.entity('Account', account as never);

      const [link] = await deps.regionDb.query<{ grant_id: string }>(
        'select grant_id from access_token_grant where jti = $1',
        [subject.jti],
      );
      const now = Math.floor(Date.now() / 1000);
      const lifetime = Math.min(accessTokenTtl(resource.accessTokenTtlSeconds), (subject.exp ?? now) - now);
      if (lifetime < 1) throw new errors.InvalidGrant('subject_token is about to expire');

      const at = new provider.AccessToken({
        accountId: subject.sub!,
        client: client as never,
        grantId: link?.grant_id,
        scope: scopes.join(' ') || undefined,
        gty: TOKEN_EXCHANGE_GRANT,
      } as never);
      at.resourceServer = {
        scope: resource.scopes.join(' '),
        audience: resource.audience,
        accessTokenTTL: lifetime,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: deps.signingAlg, kid: deps.currentKid() } },
      } as never;
      (at as unknown as { expiresIn: number }).expiresIn = lifetime;
      // RFC 8693 §4.1: the current actor, with the previous chain nested inside it.
      const previous = (subject as { act?: unknown }).act;
      (at as unknown as ExchangedToken)[ACT] = {
        sub: client.clientId,
        ...(previous ? { act: previous } : {}),
      };
      ctx.oidc.entity('AccessToken', at);
      const value = await at.save();
      ctx.body = {
        access_token: value,
        issued_token_type: ACCESS_TOKEN_TYPE,
        token_type: 'Bearer',
        expires_in: lifetime,
        scope: scopes.join(' ') || undefined,
      };
    },
    [
      'subject_token',
      'subject_token_type',
      'requested_token_type',
      'actor_token',
      'actor_token_type',
      'audience',
      'scope',
      'resource',
    ],
  );
}
