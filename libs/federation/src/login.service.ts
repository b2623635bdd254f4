/**
 * Meridian's login: oidc-provider's interaction, federated to upstream IdPs with openid-client,
 * and handed to the subject's home broker (OIDC between brokers) when the home is elsewhere.
 * Every failure ends as an OAuth error redirect to the client with a description a person can
 * act on; the upstream's own error text goes to the logs only.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type Provider from 'oidc-provider';
import type { Logger } from 'pino';
import type { AuditLog } from '@meridian/audit';
import type { JwtSigningKey } from '@meridian/keys';
import { isDatabaseUnavailable } from '@meridian/persistence';
import {
  decide,
  decisionFor,
  filterClaims,
  jurisdictionFromClaims,
  mapClaims,
  type ResidencyDecision,
} from '@meridian/residency';
import { FederationError, type FederationConfig } from './federation.types';
import type { FederationRepository } from './federation.repository';
import { federationForEmail } from './home-realm';
import { LoginTransactionStore } from './login-transaction.store';
import type { ChooserNotice } from './i18n';
import type { ChooserFederation, PageView } from './pages';
import type { PolicyRepository } from './policy.repository';
import type { ResidencyClaim, SubjectStore } from './subject.store';
import { secretTag, type UpstreamClient, type UpstreamTarget } from './upstream.client';

export const FEDERATION_CALLBACK_PATH = '/federation/callback';
export const FEDERATION_LOGGED_OUT_PATH = '/federation/logged-out';
/** Errors a home broker may answer a hand-off with, relayed to the app as they are. */
const RELAYABLE_ERRORS = new Set([
  'access_denied',
  'temporarily_unavailable',
  'login_required',
  'server_error',
  'interaction_required',
]);
/** The home broker of a hand-off cannot take it now; `problem` goes to logs and audit only. */
function handOffUnavailable(home: string, problem: string): FederationError {
  return new FederationError(
    'ERR_HANDOFF_UNAVAILABLE',
    `the sign-in must continue at your home region ${home}, which is unavailable right now; try again in a few minutes`,
    problem,
  );
}

/** The client id a broker uses at its peers: one per region, provisioned in the control plane. */
export const peerClientId = (region: string) => `meridian-region-${region}`;

export interface LoginDeps {
  region: string;
  issuer: string;
  provider: () => Provider;
  federations: FederationRepository;
  policies: PolicyRepository;
  upstream: UpstreamClient;
  subjects: SubjectStore;
  transactions: LoginTransactionStore;
  peerIssuer: (region: string) => Promise<string | undefined>;
  /** This region's current signing key: private_key_jwt at peers (and upstreams that want it). */
  signingKey: () => JwtSigningKey;
  /** Keys the state that carries the final logout destination through the upstream. */
  logoutStateKey: Buffer;
  audit: AuditLog;
  logger: Logger;
  /**
   * The admin API's audience, and which of its scopes (`meridian:admin`, `meridian:compliance`)
   * a person holds, from what their sign-in showed (MERIDIAN_CONSOLE_ROLES). A person gets that
   * audience's scopes only through this.
   */
  adminRoles: { audience: string; of: (principal: AdminRolePrincipal) => readonly string[] };
  /**
   * Anomaly detectors (libs/security): upstream ID tokens that fail validation, and each home
   * login with the region it was requested at (impossible travel). Never throw.
   */
  security?: {
    upstreamRejected(e: { federationId: string; code: string; detail?: string }): Promise<void>;
    homeLogin(e: { sub: string; region: string; federationId: string }): Promise<void>;
  };
}

export interface AdminRolePrincipal {
  sub: string;
  federationId?: string;
  claims?: Record<string, unknown>;
}

/** What a login hands to the consent step of the same authorization request. */
interface MeridianLoginResult {
  login?: { accountId?: string };
  meridian?: { adminRoles?: unknown };
}

/** `view`: a page of the login, rendered by the controller in the person's language. */
export type LoginAnswer =
  | { kind: 'redirect'; location: string }
  | { kind: 'page'; status: number; html: string }
  | { kind: 'view'; status: number; view: PageView };

type Req = IncomingMessage;
type Res = ServerResponse;

interface Details {
  uid: string;
  prompt: { name: string; details: Record<string, unknown> };
  params: Record<string, unknown>;
  session?: { accountId?: string };
}

/** The client's region: a peer broker's client names its region; every other client is ours. */
function clientRegion(client: unknown, own: string): string {
  const c = client as { meridianRegion?: string; meridian_region?: string } | undefined;
  return c?.meridianRegion ?? c?.meridian_region ?? own;
}

export class LoginService {
  constructor(private readonly deps: LoginDeps) {}

  private get provider() {
    return this.deps.provider();
  }

  private get callbackUrl() {
    return `${this.deps.issuer}${FEDERATION_CALLBACK_PATH}`;
  }

  /** GET /interaction/:uid — the login prompt (chooser or idp_hint) or first-party consent. */
  async start(req: Req, res: Res): Promise<LoginAnswer> {
    const details = await this.details(req, res);
    if (!details) return this.expired();
    if (details.prompt.name === 'consent') return this.consent(details, req, res);
    const hint = typeof details.params.idp_hint === 'string' ? details.params.idp_hint : undefined;
    const peer = await this.peerRegionOf(details);
    if (hint) return this.startFederation(details.uid, hint, peer);
    if (peer)
      return this.fail(
        details.uid,
        'invalid_request',
        'a hand-off from another region must name the identity provider',
      );
    return this.chooser(details.uid);
  }

  /** GET /interaction/:uid/federation/:id — the person picked an identity provider. */
  async choose(req: Req, res: Res, federationId: string): Promise<LoginAnswer> {
    const details = await this.details(req, res);
    if (!details) return this.expired();
    return this.startFederation(details.uid, federationId, await this.peerRegionOf(details));
  }

  /** POST /interaction/:uid/home-realm — email home-realm discovery by domain. */
  async homeRealm(req: Req, res: Res, email: unknown): Promise<LoginAnswer> {
    const details = await this.details(req, res);
    if (!details) return this.expired();
    const fed =
      typeof email === 'string' && email.length <= 320
        ? federationForEmail(email, await this.deps.federations.list())
        : undefined;
    // The same answer whether or not anyone with this address ever signed in: nothing is looked up.
    if (!fed) {
      return this.chooser(details.uid, 'unknown-email-domain', String(email ?? ''));
    }
    return this.startFederation(details.uid, fed.id, await this.peerRegionOf(details));
  }

  /** POST /interaction/:uid/cancel */
  async cancel(req: Req, res: Res): Promise<LoginAnswer> {
    const details = await this.details(req, res);
    if (!details) return this.expired();
    return this.fail(details.uid, 'access_denied', 'the sign-in was cancelled');
  }

  /** GET /federation/callback — an upstream IdP or the home broker answers. */
  async callback(query: URLSearchParams): Promise<LoginAnswer> {
    const state = query.get('state');
    const tx = state ? await this.deps.transactions.consume(state) : undefined;
    if (!tx) return this.expired();
    const callbackUrl = new URL(`${this.callbackUrl}?${query.toString()}`);
    try {
      if (tx.kind === 'upstream') {
        const fed = await this.enabledFederation(tx.federationId);
        const result = await this.deps.upstream.finish(await this.upstreamTarget(fed), callbackUrl, {
          state: tx.state,
          nonce: tx.nonce,
          codeVerifier: tx.codeVerifier,
          useUserinfo: fed.useUserinfo,
        });
        if (result.secretUsed) await this.noteSecretAccepted(fed.id, result.secretUsed);
        return await this.afterUpstream(tx.interactionUid, fed, result.sub, result.claims);
      }
      const home = tx.target;
      const result = await this.deps.upstream.finish(await this.peerTarget(home), callbackUrl, {
        state: tx.state,
        nonce: tx.nonce,
        codeVerifier: tx.codeVerifier,
        useUserinfo: false,
      });
      return await this.afterHandOff(tx.interactionUid, tx.federationId, home, result.sub, result.claims);
    } catch (err) {
      if (err instanceof FederationError && err.code === 'ERR_UPSTREAM_INVALID_RESPONSE')
        await this.deps.security?.upstreamRejected({
          federationId: tx.kind === 'upstream' ? tx.federationId : `region:${tx.target}`,
          code: err.code,
          detail: err.detail,
        });
      // The home broker is Meridian too: its error and description were written for people,
      // so they pass through unchanged (an upstream IdP's text never does).
      const relayed =
        tx.kind === 'peer' && err instanceof FederationError ? err.authorizationError : undefined;
      if (tx.kind === 'peer' && err instanceof FederationError && err.code === 'ERR_UPSTREAM_TIMEOUT')
        return this.failWith(tx.interactionUid, handOffUnavailable(tx.target, err.detail ?? err.message));
      if (relayed && RELAYABLE_ERRORS.has(relayed.error)) {
        return this.fail(
          tx.interactionUid,
          relayed.error,
          (relayed.description ?? 'the sign-in failed at the home region').slice(0, 500),
        );
      }
      return this.failWith(tx.interactionUid, err);
    }
  }

  // ---------------------------------------------------------------------------------------

  private async startFederation(
    uid: string,
    federationId: string,
    fromPeer: string | undefined,
  ): Promise<LoginAnswer> {
    try {
      const fed = await this.enabledFederation(federationId);
      if (fed.kind !== 'global') {
        const decision = await this.decideOrFail(
          { id: fed.id, kind: fed.kind, jurisdiction: fed.jurisdiction },
          {},
        );
        if (decision.homeRegion !== this.deps.region) {
          if (fromPeer)
            throw new FederationError(
              'ERR_HANDOFF_MISROUTED',
              'this sign-in was sent to the wrong region',
              `home ${decision.homeRegion}`,
            );
          return await this.handOff(uid, decision.homeRegion, fed.id, decision);
        }
      }
      const start = await this.deps.upstream.start(await this.upstreamTarget(fed), {
        redirectUri: this.callbackUrl,
        scope: [...new Set(['openid', ...fed.scopes])].join(' '),
      });
      await this.deps.transactions.save({
        state: start.state,
        interactionUid: uid,
        federationId: fed.id,
        kind: 'upstream',
        target: fed.id,
        codeVerifier: start.codeVerifier,
        nonce: start.nonce,
      });
      return { kind: 'redirect', location: start.url.href };
    } catch (err) {
      return this.failWith(uid, err);
    }
  }

  /** Sends the browser to the home broker, which runs the upstream login and keeps the profile. */
  private async handOff(
    uid: string,
    home: string,
    federationId: string,
    decision?: ResidencyDecision,
  ): Promise<LoginAnswer> {
    const target = await this.peerTarget(home);
    // Only to a home broker that can take the login now (its databases answer): otherwise the
    // person would meet a connection error or a 503 at the other region instead of a clear
    // answer here. Never a fallback to another region: the login stops.
    const problem = await this.deps.upstream.probe(`${target.issuer.replace(/\/+$/, '')}/readyz`);
    if (problem) throw handOffUnavailable(home, problem);
    const start = await this.deps.upstream.start(
      target,
      { redirectUri: this.callbackUrl, scope: 'openid', extra: { idp_hint: federationId } },
      { probed: true },
    );
    await this.deps.transactions.save({
      state: start.state,
      interactionUid: uid,
      federationId,
      kind: 'peer',
      target: home,
      codeVerifier: start.codeVerifier,
      nonce: start.nonce,
    });
    await this.deps.audit.record({
      actor: 'system',
      action: 'login.handoff',
      targetType: 'region',
      targetId: home,
      detail: {
        federation: federationId,
        // Why this person's login goes elsewhere (the policy decision), or that the home region
        // was already known from an earlier login.
        ...(decision
          ? { policy: decision.policyRef, rule: decision.basis.rule, reason: decision.basis.reason }
          : { reason: 'home region known from an earlier login' }),
      },
    });
    return { kind: 'redirect', location: start.url.href };
  }

  private async afterUpstream(
    uid: string,
    fed: FederationConfig,
    upstreamSub: string,
    claims: Record<string, unknown>,
  ): Promise<LoginAnswer> {
    const profile = mapClaims(claims, fed.claimMapping);
    const merged = { ...claims, ...profile };
    let remembered: ResidencyDecision | undefined;
    if (fed.kind === 'global' && !jurisdictionFromClaims(merged)) {
      // A global IdP sends the country only sometimes: the locator remembers the home region of
      // a person seen before, and the home region its stored decision. Claims that name a
      // country always win.
      const linkKey = this.deps.subjects.linkKey(fed.id, upstreamSub);
      const home = await this.deps.subjects.homeOf(linkKey);
      if (home && home !== this.deps.region) {
        if (await this.peerRegionOfUid(uid))
          throw new FederationError(
            'ERR_HANDOFF_MISROUTED',
            'this sign-in was sent to the wrong region',
            `home ${home}`,
          );
        return this.handOff(uid, home, fed.id);
      }
      const stored = home ? await this.deps.subjects.findByLink(linkKey) : undefined;
      const policy = stored ? await this.deps.policies.byRef(stored.residency.policy) : undefined;
      if (stored && policy)
        remembered = decisionFor(policy, stored.residency.jurisdiction, {
          rule: `${stored.residency.policy} covers ${stored.residency.jurisdiction}`,
          reason: 'decided at an earlier login (stored residency)',
        });
    }
    const decision =
      remembered ??
      (await this.decideOrFail({ id: fed.id, kind: fed.kind, jurisdiction: fed.jurisdiction }, merged));
    if (decision.homeRegion !== this.deps.region) {
      // A global IdP's person whose home is elsewhere: nothing seen here is kept; the home
      // broker runs its own upstream login (silent, by the upstream's single sign-on).
      const peer = await this.peerRegionOfUid(uid);
      if (peer)
        throw new FederationError(
          'ERR_HANDOFF_MISROUTED',
          'this sign-in was sent to the wrong region',
          `home ${decision.homeRegion}`,
        );
      return this.handOff(uid, decision.homeRegion, fed.id, decision);
    }
    const sub = await this.deps.subjects.recordHomeLogin({
      decision,
      federationId: fed.id,
      upstreamSub,
      profile,
      storeProfile: fed.storeProfile,
    });
    await this.deps.security?.homeLogin({
      sub,
      region: (await this.peerRegionOfUid(uid)) ?? this.deps.region,
      federationId: fed.id,
    });
    return this.finish(uid, {
      login: { accountId: sub, amr: ['fed'], acr: `urn:meridian:federation:${fed.kind}` },
      meridian: { adminRoles: this.adminRolesOf({ sub, federationId: fed.id, claims: merged }) },
    });
  }

  private async afterHandOff(
    uid: string,
    federationId: string,
    home: string,
    sub: string,
    claims: Record<string, unknown>,
  ): Promise<LoginAnswer> {
    const residency = claims.residency as ResidencyClaim | undefined;
    if (
      !residency ||
      typeof residency !== 'object' ||
      residency.region !== home ||
      typeof residency.policy !== 'string'
    ) {
      throw new FederationError(
        'ERR_UPSTREAM_INVALID_RESPONSE',
        'the home region answered without a valid residency decision',
        JSON.stringify(residency ?? null).slice(0, 200),
      );
    }
    const policy = await this.deps.policies.byRef(residency.policy);
    if (!policy)
      throw new FederationError(
        'ERR_UPSTREAM_INVALID_RESPONSE',
        'the home region named an unknown residency policy',
        residency.policy,
      );
    const decision = decisionFor(policy, residency.jurisdiction, {
      rule: `${residency.policy} covers ${residency.jurisdiction}`,
      reason: `decided by the home region ${residency.region} (residency claim of its ID token)`,
    });
    const released = filterClaims(
      claims,
      decision.releaseFor(this.deps.region).filter((c) => c !== 'sub' && c !== 'residency'),
    );
    await this.deps.subjects.recordForeignLogin({
      sub,
      residency,
      decision,
      releasedClaims: released,
      federationId,
    });
    return this.finish(uid, {
      login: { accountId: sub, amr: ['fed'] },
      meridian: { adminRoles: this.adminRolesOf({ sub, federationId, claims }) },
    });
  }

  /** All clients registered through the admin API are first-party: no consent page. */
  private async consent(details: Details, req: Req, res: Res): Promise<LoginAnswer> {
    const provider = this.provider;
    const accountId = details.session?.accountId;
    if (!accountId) return this.fail(details.uid, 'login_required', 'the sign-in session ended');
    const grant = new provider.Grant({ accountId, clientId: String(details.params.client_id) });
    const missing = details.prompt.details as {
      missingOIDCScope?: string[];
      missingOIDCClaims?: string[];
      missingResourceScopes?: Record<string, string[]>;
    };
    if (missing.missingOIDCScope?.length) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    if (missing.missingOIDCClaims?.length) grant.addOIDCClaims(missing.missingOIDCClaims);
    for (const [resource, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
      if (resource !== this.deps.adminRoles.audience) {
        grant.addResourceScope(resource, scopes.join(' '));
        continue;
      }
      // The admin API's scopes go to a person only by the role mapping; the rest is rejected
      // (recorded as decided, so the request does not ask again) and the token lacks them.
      const roles = this.adminRolesAtConsent(details, accountId);
      const held = scopes.filter((s) => roles.includes(s));
      const refused = scopes.filter((s) => !roles.includes(s));
      if (held.length) grant.addResourceScope(resource, held.join(' '));
      if (refused.length) grant.rejectResourceScope(resource, refused.join(' '));
      await this.deps.audit.record({
        actor: 'system',
        action: held.length ? 'admin.scope.granted' : 'admin.scope.refused',
        targetType: 'subject',
        targetId: accountId,
        outcome: held.length ? 'success' : 'refused',
        detail: { client: String(details.params.client_id), granted: held, refused },
      });
    }
    const grantId = await grant.save();
    const location = await provider.interactionResult(
      req,
      res,
      { consent: { grantId } },
      { mergeWithLastSubmission: true },
    );
    return { kind: 'redirect', location };
  }

  private adminRolesOf(principal: AdminRolePrincipal): string[] {
    return [...this.deps.adminRoles.of(principal)];
  }

  /**
   * Roles from the login of this same authorization request (it saw the identity provider's
   * claims); without one (an existing session), only what the `sub` alone earns.
   */
  private adminRolesAtConsent(details: Details, accountId: string): string[] {
    const last = (details as Details & { lastSubmission?: MeridianLoginResult }).lastSubmission;
    const roles = last?.meridian?.adminRoles;
    if (last?.login?.accountId === accountId && Array.isArray(roles))
      return roles.filter((r): r is string => typeof r === 'string');
    return this.adminRolesOf({ sub: accountId });
  }

  private async chooser(uid: string, notice?: ChooserNotice, email?: string): Promise<LoginAnswer> {
    const policies = await this.deps.policies.current();
    const federations = (await this.deps.federations.list())
      .filter((f) => f.enabled)
      .map((f): ChooserFederation => {
        // A national or regional provider's people live in one region, known before the login:
        // the chooser says when picking it continues at another region's broker (the hand-off).
        const d = f.kind === 'global' ? undefined : decide(f, {}, policies);
        const home = d?.ok ? d.decision.homeRegion : undefined;
        return {
          id: f.id,
          displayName: f.displayName,
          ...(home && home !== this.deps.region ? { continuesAt: home } : {}),
        };
      });
    return {
      kind: 'view',
      status: 200,
      view: { page: 'chooser', uid, region: this.deps.region, federations, notice, email },
    };
  }

  private async decideOrFail(
    fed: { id: string; kind: FederationConfig['kind']; jurisdiction?: string },
    claims: Record<string, unknown>,
  ): Promise<ResidencyDecision> {
    const result = decide(fed, claims, await this.deps.policies.current());
    if (!result.ok) {
      await this.deps.audit.record({
        actor: 'system',
        action: 'login.refused',
        targetType: 'federation',
        targetId: fed.id,
        outcome: 'refused',
        // The policy decision's reason: what was established before it refused.
        detail: {
          code: result.code,
          reason: result.basis.reason,
          ...(result.basis.jurisdiction ? { jurisdiction: result.basis.jurisdiction } : {}),
        },
      });
      throw new FederationError('ERR_RESIDENCY_REFUSED', result.message, result.code);
    }
    return result.decision;
  }

  private async enabledFederation(id: string): Promise<FederationConfig & { version: string }> {
    const fed = await this.deps.federations.get(id);
    if (!fed)
      throw new FederationError(
        'ERR_FEDERATION_UNKNOWN',
        `there is no identity provider "${id.slice(0, 64)}"`,
      );
    if (!fed.enabled)
      throw new FederationError(
        'ERR_FEDERATION_DISABLED',
        `the identity provider ${fed.displayName} is currently disabled`,
      );
    return fed;
  }

  /**
   * Which client secret the upstream accepted, for the operator deciding when to promote a
   * rotated one; bookkeeping never fails a login.
   */
  private async noteSecretAccepted(federationId: string, which: 'current' | 'previous'): Promise<void> {
    if (which === 'previous')
      this.deps.logger.warn(
        { federation: federationId },
        'the upstream refused the current client secret and accepted the previous one (rotation not yet done upstream)',
      );
    try {
      await this.deps.federations.markSecretAccepted(federationId, which);
    } catch (err) {
      this.deps.logger.warn(
        { err: { message: (err as Error).message } },
        'could not record the accepted secret',
      );
    }
  }

  private async upstreamTarget(fed: FederationConfig & { version: string }): Promise<UpstreamTarget> {
    const method = fed.tokenEndpointAuthMethod;
    const signingKey = method === 'private_key_jwt' ? this.deps.signingKey() : undefined;
    // Each region is its own client at the upstream; an older row without one falls back to the
    // shared configuration's client id.
    const clientId = (await this.deps.federations.clientId(fed.id)) ?? fed.clientId;
    const secrets = method === 'private_key_jwt' ? {} : await this.deps.federations.secrets(fed.id);
    return {
      // The secret's tag is part of the key: a rotation takes effect at once.
      key: `fed:${fed.id}:${fed.version}:${clientId}:${signingKey?.kid ?? ''}:${secrets.current ? secretTag(secrets.current) : ''}`,
      issuer: fed.issuer,
      clientId,
      auth: { method, secret: secrets.current, previousSecret: secrets.previous, signingKey },
    };
  }

  private async peerTarget(home: string): Promise<UpstreamTarget> {
    const issuer = await this.deps.peerIssuer(home);
    if (!issuer)
      throw new FederationError('ERR_HANDOFF_MISROUTED', `the home region ${home} is not registered`, home);
    const signingKey = this.deps.signingKey();
    return {
      key: `peer:${home}:${issuer}:${signingKey.kid}`,
      issuer,
      clientId: peerClientId(this.deps.region),
      auth: { method: 'private_key_jwt', signingKey },
    };
  }

  private async details(req: Req, res: Res): Promise<Details | undefined> {
    try {
      return (await this.provider.interactionDetails(req, res)) as unknown as Details;
    } catch {
      return undefined;
    }
  }

  private async peerRegionOf(details: Details): Promise<string | undefined> {
    const client = await this.provider.Client.find(String(details.params.client_id));
    const region = clientRegion(client, this.deps.region);
    return region === this.deps.region ? undefined : region;
  }

  private async peerRegionOfUid(uid: string): Promise<string | undefined> {
    const interaction = await this.provider.Interaction.find(uid);
    if (!interaction) return undefined;
    return this.peerRegionOf({
      uid,
      prompt: { name: 'login', details: {} },
      params: interaction.params as Record<string, unknown>,
    });
  }

  /** Finishes an interaction from a request that may not carry its cookie (the callback). */
  private async finish(uid: string, result: Record<string, unknown>): Promise<LoginAnswer> {
    const interaction = await this.provider.Interaction.find(uid);
    if (!interaction) return this.expired();
    interaction.result = result as never;
    await interaction.save(Math.max(1, interaction.exp - Math.floor(Date.now() / 1000)));
    return { kind: 'redirect', location: interaction.returnTo };
  }

  private fail(uid: string, error: string, description: string): Promise<LoginAnswer> {
    return this.finish(uid, { error, error_description: description });
  }

  private async failWith(uid: string, err: unknown): Promise<LoginAnswer> {
    if (isDatabaseUnavailable(err)) {
      // Fail closed, and say so: the login cannot be completed without this region's databases.
      this.deps.logger.warn(
        { err: { message: (err as Error).message } },
        'login stopped: database unavailable',
      );
      return this.fail(
        uid,
        'temporarily_unavailable',
        `the sign-in is temporarily unavailable at region ${this.deps.region} (a database does not answer); try again in a few seconds`,
      );
    }
    if (!(err instanceof FederationError)) {
      this.deps.logger.error(
        { err: { message: (err as Error)?.message, stack: (err as Error)?.stack } },
        'login failed',
      );
      return this.fail(uid, 'server_error', 'the sign-in failed; try again later');
    }
    this.deps.logger.info({ code: err.code, detail: err.detail }, 'login refused');
    await this.deps.audit.record({
      actor: 'system',
      action: 'login.failed',
      targetType: 'interaction',
      outcome: 'failure',
      detail: { code: err.code },
    });
    switch (err.code) {
      case 'ERR_UPSTREAM_TIMEOUT':
      case 'ERR_HANDOFF_UNAVAILABLE':
        return this.fail(uid, 'temporarily_unavailable', err.message);
      case 'ERR_FEDERATION_NO_SECRET':
      case 'ERR_FEDERATION_DISCOVERY':
        return this.fail(
          uid,
          'temporarily_unavailable',
          `the identity provider is not configured correctly at this region: ${err.message}`,
        );
      case 'ERR_FEDERATION_UNKNOWN':
      case 'ERR_FEDERATION_DISABLED':
      case 'ERR_FEDERATION_UNCOVERED':
      case 'ERR_UPSTREAM_ERROR':
      case 'ERR_UPSTREAM_CANCELLED':
      case 'ERR_UPSTREAM_INVALID_RESPONSE':
      case 'ERR_LOGIN_EXPIRED':
      case 'ERR_RESIDENCY_REFUSED':
      case 'ERR_RESIDENCY_STORAGE_REFUSED':
      case 'ERR_HANDOFF_MISROUTED':
        return this.fail(uid, 'access_denied', err.message);
      default: {
        const exhaustive: never = err.code;
        throw new Error(`unmapped federation error ${String(exhaustive)}`);
      }
    }
  }

  private expired(): LoginAnswer {
    return { kind: 'view', status: 400, view: { page: 'error', kind: 'expired', region: this.deps.region } };
  }

  /**
   * After the broker ended a person's session (RP-Initiated Logout), their session at the
   * identity provider they came through ends too: the upstream IdP for people homed here, the
   * home broker (which then ends the upstream one) for people handed off. Returns where to
   * send the browser, or undefined when there is nothing further to end.
   */
  async upstreamLogout(sub: string, finalLocation: string): Promise<string | undefined> {
    const subject = await this.deps.subjects.find(sub);
    if (!subject?.federationId) return undefined;
    const state = this.signLogoutState(finalLocation);
    const postLogoutRedirectUri = `${this.deps.issuer}${FEDERATION_LOGGED_OUT_PATH}`;
    try {
      if (subject.home) {
        const fed = await this.deps.federations.get(subject.federationId);
        if (!fed) return undefined;
        return (
          await this.deps.upstream.endSessionUrl(await this.upstreamTarget(fed), {
            postLogoutRedirectUri,
            state,
          })
        )?.href;
      }
      return (
        await this.deps.upstream.endSessionUrl(await this.peerTarget(subject.residency.region), {
          postLogoutRedirectUri,
          state,
        })
      )?.href;
    } catch (err) {
      // The broker session is over either way; an unreachable IdP must not strand the person.
      this.deps.logger.warn({ err: { message: (err as Error).message } }, 'upstream logout skipped');
      return undefined;
    }
  }

  /** GET /federation/logged-out — back from the upstream's logout: on to where the app asked. */
  loggedOut(query: URLSearchParams): LoginAnswer {
    const to = this.openLogoutState(query.get('state'));
    if (!to) {
      return {
        kind: 'view',
        status: 400,
        view: { page: 'error', kind: 'signed-out-link-invalid', region: this.deps.region },
      };
    }
    return { kind: 'redirect', location: to };
  }

  private signLogoutState(to: string): string {
    const body = Buffer.from(JSON.stringify({ to, exp: Math.floor(Date.now() / 1000) + 600 })).toString(
      'base64url',
    );
    return `${body}.${createHmac('sha256', this.deps.logoutStateKey).update(body).digest('base64url')}`;
  }

  private openLogoutState(state: string | null): string | undefined {
    if (!state || state.length > 4096) return undefined;
    const [body, mac] = state.split('.');
    if (!body || !mac) return undefined;
    const expected = createHmac('sha256', this.deps.logoutStateKey).update(body).digest();
    const given = Buffer.from(mac, 'base64url');
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return undefined;
    try {
      const { to, exp } = JSON.parse(Buffer.from(body, 'base64url').toString('utf8')) as {
        to: string;
        exp: number;
      };
      return typeof to === 'string' && exp > Date.now() / 1000 ? to : undefined;
    } catch {
      return undefined;
    }
  }

  /** Account claims for ID tokens and userinfo: only what the policy releases to the client's region. */
  async account(ctxClient: unknown, sub: string) {
    const subject = await this.deps.subjects.find(sub);
    if (!subject) return undefined;
    if (!subject.home && (await this.deps.subjects.erasedAtHome(sub))) {
      // Erased at home while this region's copy lived on: no token about them, ever again.
      await this.deps.subjects.eraseCopy(sub, 'erasure-sweep');
      return undefined;
    }
    const ref = subject.residency?.policy;
    const policy = typeof ref === 'string' ? await this.deps.policies.byRef(ref) : undefined;
    const region = clientRegion(ctxClient, this.deps.region);
    const allowed = policy
      ? decisionFor(policy, subject.residency.jurisdiction).releaseFor(region)
      : ['sub', 'residency'];
    return {
      residency: subject.residency,
      claims: { ...filterClaims(subject.claims, allowed), sub, residency: subject.residency },
    };
  }
}
