/**
 * Two regional brokers (eu, us) on their own region databases and one control database, two
 * real upstream IdPs (a German national eID and a global IdP whose users carry a country),
 * residency policies, federations and apps — all through the public admin API.
 */
import { createHash, randomBytes } from 'node:crypto';
import { decodeJwt } from 'jose';
import {
  adminCall,
  adminToken,
  freshDatabases,
  newKek,
  spawnBroker,
  tokenRequest,
  type SpawnedBroker,
} from './broker';
import { TestBrowser, type Page } from './browser';
import { dumpDatabase } from './dump';
import { freePort } from './ports';
import { startUpstreamIdp, type UpstreamIdp, type UpstreamUser } from './upstream-idp';

export const ANNA: UpstreamUser = {
  username: 'anna',
  password: 'anna-password-1',
  claims: {
    email: 'anna.canary@example.de',
    email_verified: true,
    name: 'Anna Kanarienvogel',
    given_name: 'Anna',
    country: 'DE',
  },
};
export const BOB: UpstreamUser = {
  username: 'bob',
  password: 'bob-password-1',
  claims: { email: 'bob.canary@example.com', name: 'Bob Canaryman', country: 'US' },
};
export const CARLA: UpstreamUser = {
  username: 'carla',
  password: 'carla-password-1',
  claims: { email: 'carla.canary@example.fr', name: 'Carla Canari', address: { country: 'FR' } },
};
/** A global-IdP user whose IdP sends no country at all. */
export const DORA: UpstreamUser = {
  username: 'dora',
  password: 'dora-password-1',
  claims: { email: 'dora.canary@example.org', name: 'Dora Canary' },
};
export const KENJI: UpstreamUser = {
  username: 'kenji',
  password: 'kenji-password-1',
  claims: { email: 'kenji.canary@example.jp', name: 'Kenji Kanaria', country: 'JP' },
};

export const API = 'https://api.canary.example';

export const EU_POLICY = {
  appliesTo: { jurisdictions: ['DE', 'FR', 'EU'] },
  homeRegion: 'eu',
  storageRegions: ['eu'],
  processingRegions: ['eu'],
  release: { default: ['sub', 'residency'], byRegion: { eu: ['email', 'name'] } },
  retention: { auditDays: 365, inactiveProfileDays: 730 },
  pseudonymiseForeignLogs: true,
};
export const US_POLICY = {
  appliesTo: { jurisdictions: ['US'] },
  homeRegion: 'us',
  storageRegions: ['us'],
  release: { default: ['sub', 'residency'], byRegion: { us: ['email', 'name'] } },
};

export interface App {
  clientId: string;
  clientSecret: string;
  redirectUri: string;
}

export class FederationFixture {
  eu!: SpawnedBroker;
  us!: SpawnedBroker;
  de!: UpstreamIdp;
  global!: UpstreamIdp;
  dbs!: Awaited<ReturnType<typeof freshDatabases>>;
  /** The databases the brokers use (the fresh ones unless `start` was given others). */
  urls!: { control: string; eu: string; us: string };
  readonly pepper = randomBytes(32).toString('base64');
  readonly apps: Record<string, App> = {};
  readonly upstreamSecrets: Record<string, string> = {};
  /** The body each federation was PUT with, by `<region>:<federation id>` (see {@link putFederation}). */
  readonly federationBodies: Record<string, Record<string, unknown>> = {};

  async start(
    prefix: string,
    o: {
      deStoreProfile?: boolean;
      /** LOG_LEVEL of both brokers (default: spawnBroker's `info`). */
      logLevel?: string;
      /** More environment for both brokers. */
      env?: Record<string, string>;
      /**
       * Databases to use instead of fresh ones on the run's server, e.g. on a PostgreSQL server
       * the test starts and stops itself (test/fault-*.spec.ts).
       */
      databaseUrls?: { control?: string; eu?: string; us?: string };
    } = {},
  ): Promise<this> {
    this.dbs = await freshDatabases(prefix, ['eu', 'us']);
    this.urls = {
      control: o.databaseUrls?.control ?? this.dbs.control.url,
      eu: o.databaseUrls?.eu ?? this.dbs.region.eu!.url,
      us: o.databaseUrls?.us ?? this.dbs.region.us!.url,
    };
    this.de = await startUpstreamIdp({ users: [ANNA] });
    this.global = await startUpstreamIdp({
      users: [BOB, CARLA, KENJI, DORA, { ...ANNA, username: 'anna-g' }],
    });
    const extra: Record<string, string> = {
      MERIDIAN_LOCATOR_PEPPER: this.pepper,
      MERIDIAN_UPSTREAM_TIMEOUT_MS: '3000',
      ...(o.logLevel ? { LOG_LEVEL: o.logLevel } : {}),
      ...o.env,
    };
    [this.eu, this.us] = await Promise.all([
      spawnBroker({
        region: 'eu',
        controlUrl: this.urls.control,
        regionUrl: this.urls.eu,
        kek: newKek(),
        extra,
      }),
      spawnBroker({
        region: 'us',
        controlUrl: this.urls.control,
        regionUrl: this.urls.us,
        kek: newKek(),
        extra,
      }),
    ]);
    const token = await adminToken(this.eu);
    for (const [id, doc] of Object.entries({ 'eu-gdpr': EU_POLICY, 'us-default': US_POLICY })) {
      const r = await adminCall(this.eu, 'PUT', `/compliance/policies/${id}`, doc, token);
      if (r.status !== 201) throw new Error(`policy ${id}: ${r.status} ${JSON.stringify(r.body)}`);
    }
    for (const broker of [this.eu, this.us]) {
      const region = broker.env.MERIDIAN_REGION!;
      for (const [fedId, idp, kind] of [
        ['de-eid', this.de, 'national'],
        ['global-id', this.global, 'global'],
      ] as const) {
        const clientId = `meridian-${region}`;
        const secret = `upstream-${region}-${randomBytes(16).toString('hex')}`;
        await idp.addClient({
          client_id: clientId,
          client_secret: secret,
          redirect_uris: [`${broker.issuer}/federation/callback`],
          post_logout_redirect_uris: [`${broker.issuer}/federation/logged-out`],
          token_endpoint_auth_method: 'client_secret_basic',
          scope: 'openid email profile address',
        });
        this.upstreamSecrets[`${region}:${fedId}`] = secret;
        const body = {
          displayName: kind === 'national' ? 'German eID' : 'Global ID',
          issuer: idp.issuer,
          clientId,
          clientSecret: secret,
          scopes: ['openid', 'email', 'profile', 'address'],
          kind,
          ...(kind === 'national' ? { jurisdiction: 'DE', homeRealm: { emailDomains: ['example.de'] } } : {}),
          ...(kind === 'national' && o.deStoreProfile === false ? { storeProfile: false } : {}),
        };
        this.federationBodies[`${region}:${fedId}`] = body;
        const r = await adminCall(broker, 'PUT', `/admin/federations/${fedId}`, body);
        if (r.status !== 201 && r.status !== 200)
          throw new Error(`federation ${fedId} at ${region}: ${r.status} ${JSON.stringify(r.body)}`);
      }
    }
    const api = await adminCall(
      this.eu,
      'PUT',
      '/admin/resources/canary-api',
      { audience: API, scopes: ['api:read'], region: 'eu' },
      token,
    );
    if (api.status !== 201) throw new Error(`resource: ${api.status} ${JSON.stringify(api.body)}`);
    for (const region of ['eu', 'us']) {
      const app: App = {
        clientId: `${region}-app`,
        clientSecret: `${region}-app-secret-${randomBytes(16).toString('hex')}`,
        redirectUri: `http://127.0.0.1:${await freePort()}/cb`,
      };
      const r = await adminCall(this.eu, 'PUT', `/admin/clients/${app.clientId}`, {
        client_secret: app.clientSecret,
        redirect_uris: [app.redirectUri],
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_basic',
        scope: 'openid email profile offline_access api:read',
        resources: [API],
      });
      if (r.status !== 201) throw new Error(`app ${region}: ${r.status} ${JSON.stringify(r.body)}`);
      this.apps[region] = app;
    }
    return this;
  }

  broker(region: 'eu' | 'us'): SpawnedBroker {
    return region === 'eu' ? this.eu : this.us;
  }

  /** Starts an authorization request at `region` for its app and follows it to the first page. */
  async authorize(
    browser: TestBrowser,
    region: 'eu' | 'us',
    extra: Record<string, string> = {},
    app = this.apps[region]!,
  ) {
    const { challenge, verifier } = pkce();
    const url = new URL(`${this.broker(region).url}/auth`);
    const params = {
      client_id: app.clientId,
      redirect_uri: app.redirectUri,
      response_type: 'code',
      scope: 'openid email profile offline_access api:read',
      resource: API,
      prompt: 'consent',
      state: randomBytes(8).toString('hex'),
      nonce: randomBytes(8).toString('hex'),
      code_challenge: challenge,
      code_challenge_method: 'S256',
      ...extra,
    };
    for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v);
    const page = await browser.follow(url.href, { stopAt: (u) => u.href.startsWith(app.redirectUri) });
    return { page, verifier, state: params.state, nonce: params.nonce, app };
  }

  /** On an upstream login form: sign in, then follow everything back to the app. */
  async signIn(browser: TestBrowser, page: Page, user: UpstreamUser, app: App): Promise<Page> {
    return browser.submit(
      page,
      { index: 0 },
      { username: user.username, password: user.password },
      'Sign in',
      {
        stopAt: (u) => u.href.startsWith(app.redirectUri),
        autoSubmitForms: true,
      },
    );
  }

  /** A complete login of `user` through `idpHint` starting at `region`; returns the app's tokens. */
  async login(
    region: 'eu' | 'us',
    idpHint: string,
    user: UpstreamUser,
    browser = new TestBrowser(),
    withApp?: App,
  ) {
    const { page, verifier, app, state } = await this.authorize(
      browser,
      region,
      { idp_hint: idpHint },
      withApp ?? this.apps[region]!,
    );
    const back = page.url.href.startsWith(app.redirectUri)
      ? page
      : await this.signIn(browser, page, user, app);
    const params = back.url.searchParams;
    if (params.get('error'))
      return {
        error: params.get('error')!,
        description: params.get('error_description') ?? '',
        params,
        browser,
      };
    if (params.get('state') !== state) throw new Error('state mismatch at the app');
    const tokens = await tokenRequest(
      this.broker(region).url,
      {
        grant_type: 'authorization_code',
        code: params.get('code')!,
        redirect_uri: app.redirectUri,
        code_verifier: verifier,
        resource: API,
      },
      app,
    );
    if (tokens.status !== 200)
      throw new Error(`code exchange: ${tokens.status} ${JSON.stringify(tokens.body)}`);
    return {
      tokens: tokens.body as { access_token: string; id_token: string; refresh_token?: string },
      idToken: decodeJwt(tokens.body.id_token as string),
      accessToken: decodeJwt(tokens.body.access_token as string),
      params,
      browser,
    };
  }

  /**
   * PUTs federation `fedId` at `region` again: the body the fixture used, with `overrides`
   * (a key set to `undefined` is left out). Returns the admin API's answer.
   */
  async putFederation(
    region: 'eu' | 'us',
    fedId: string,
    overrides: Record<string, unknown> = {},
  ): Promise<{ status: number; body: any }> {
    const base = this.federationBodies[`${region}:${fedId}`];
    if (!base) throw new Error(`no federation ${fedId} at ${region} in this fixture`);
    const body: Record<string, unknown> = { ...base, ...overrides };
    for (const [k, v] of Object.entries(body)) if (v === undefined) delete body[k];
    return adminCall(this.broker(region), 'PUT', `/admin/federations/${fedId}`, body);
  }

  /** {@link putFederation} at both brokers, so that neither keeps a cached older configuration. */
  async putFederationEverywhere(fedId: string, overrides: Record<string, unknown> = {}): Promise<void> {
    for (const region of ['eu', 'us'] as const) {
      const r = await this.putFederation(region, fedId, overrides);
      if (r.status !== 200 && r.status !== 201)
        throw new Error(`federation ${fedId} at ${region}: ${r.status} ${JSON.stringify(r.body)}`);
    }
  }

  /**
   * Registers a first-party app at the control plane (through `eu`'s admin API). `resources: []`
   * gives an app whose access tokens are opaque and for userinfo only.
   */
  async registerApp(clientId: string, o: { resources?: string[]; scope?: string } = {}): Promise<App> {
    const app: App = {
      clientId,
      clientSecret: `${clientId}-secret-${randomBytes(16).toString('hex')}`,
      redirectUri: `http://127.0.0.1:${await freePort()}/cb`,
    };
    const r = await adminCall(this.eu, 'PUT', `/admin/clients/${clientId}`, {
      client_secret: app.clientSecret,
      redirect_uris: [app.redirectUri],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
      scope: o.scope ?? 'openid email profile offline_access',
      resources: o.resources ?? [],
    });
    if (r.status !== 201 && r.status !== 200)
      throw new Error(`app ${clientId}: ${r.status} ${JSON.stringify(r.body)}`);
    return app;
  }

  /**
   * The front channel of a login only: authorization request (with `params` overriding the
   * defaults; a `null` value removes a parameter), upstream sign-in, back at the app. Returns the
   * authorization response's parameters and the PKCE verifier; the code is not redeemed.
   */
  async authorizationResponse(
    region: 'eu' | 'us',
    idpHint: string,
    user: UpstreamUser,
    o: { app?: App; params?: Record<string, string | null>; browser?: TestBrowser } = {},
  ) {
    const browser = o.browser ?? new TestBrowser();
    const app = o.app ?? this.apps[region]!;
    const { challenge, verifier } = pkce();
    const state = randomBytes(8).toString('hex');
    const params: Record<string, string | null> = {
      client_id: app.clientId,
      redirect_uri: app.redirectUri,
      response_type: 'code',
      scope: 'openid email profile offline_access api:read',
      resource: API,
      prompt: 'consent',
      state,
      nonce: randomBytes(8).toString('hex'),
      code_challenge: challenge,
      code_challenge_method: 'S256',
      idp_hint: idpHint,
      ...o.params,
    };
    const url = new URL(`${this.broker(region).url}/auth`);
    for (const [k, v] of Object.entries(params)) if (v !== null) url.searchParams.set(k, v);
    const first = await browser.follow(url.href, { stopAt: (u) => u.href.startsWith(app.redirectUri) });
    const back = first.url.href.startsWith(app.redirectUri)
      ? first
      : await this.signIn(browser, first, user, app);
    if (!back.url.href.startsWith(app.redirectUri))
      throw new Error(`login did not come back to the app: ${back.status} ${back.url.href}`);
    return { params: back.url.searchParams, verifier, state, app, browser, page: back };
  }

  /** The app redeems an authorization code at `region` (RFC 6749 §4.1.3). */
  redeem(
    region: 'eu' | 'us',
    code: string,
    verifier: string,
    app: App,
    resource: string | null = API,
  ): ReturnType<typeof tokenRequest> {
    return tokenRequest(
      this.broker(region).url,
      {
        grant_type: 'authorization_code',
        code,
        redirect_uri: app.redirectUri,
        code_verifier: verifier,
        ...(resource ? { resource } : {}),
      },
      app,
    );
  }

  /** The region database URL of `region`. */
  regionUrl(region: 'eu' | 'us'): string {
    return this.urls[region];
  }

  /** What `pg_dump` (or every row) of the control database and each region database holds now. */
  async dumps(): Promise<{ control: string; eu: string; us: string }> {
    const [control, eu, us] = await Promise.all([
      dumpDatabase(this.urls.control),
      dumpDatabase(this.regionUrl('eu')),
      dumpDatabase(this.regionUrl('us')),
    ]);
    return { control, eu, us };
  }

  async stop(): Promise<void> {
    await Promise.allSettled([this.eu?.stop(), this.us?.stop(), this.de?.stop(), this.global?.stop()]);
    await this.dbs?.drop();
  }
}

function pkce() {
  const verifier = randomBytes(32).toString('base64url');
  return { verifier, challenge: createHash('sha256').update(verifier).digest('base64url') };
}

/**
 * The strings that identify `user` and nothing else: the fixture's emails and names are unique
 * canary values, and the upstream `sub` is the IdP's identifier of the person. `given_name` is
 * matched with its JSON quotes (it is a common word).
 */
export function canariesOf(user: UpstreamUser, idp: Pick<UpstreamIdp, 'subOf'>): string[] {
  const c = user.claims as { email?: string; name?: string; given_name?: string };
  const out = [idp.subOf(user.username)];
  if (c.email) out.push(c.email);
  if (c.name) out.push(c.name, c.name.split(' ').at(-1)!);
  if (c.given_name) out.push(`"${c.given_name}"`);
  return out;
}

/** Which of `canaries` occur in `text`, each with a little context (for a readable failure). */
export function leaks(text: string, canaries: string[]): string[] {
  const found: string[] = [];
  for (const canary of canaries) {
    const i = text.indexOf(canary);
    if (i !== -1) found.push(`${canary} … ${text.slice(Math.max(0, i - 120), i + canary.length + 60)}`);
  }
  return found;
}
