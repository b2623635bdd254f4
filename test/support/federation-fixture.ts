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
  readonly pepper = randomBytes(32).toString('base64');
  readonly apps: Record<string, App> = {};
  readonly upstreamSecrets: Record<string, string> = {};

  async start(prefix: string, o: { deStoreProfile?: boolean } = {}): Promise<this> {
    this.dbs = await freshDatabases(prefix, ['eu', 'us']);
    this.de = await startUpstreamIdp({ users: [ANNA] });
    this.global = await startUpstreamIdp({ users: [BOB, CARLA, KENJI, { ...ANNA, username: 'anna-g' }] });
    const extra = { MERIDIAN_LOCATOR_PEPPER: this.pepper, MERIDIAN_UPSTREAM_TIMEOUT_MS: '3000' };
    [this.eu, this.us] = await Promise.all([
      spawnBroker({
        region: 'eu',
        controlUrl: this.dbs.control.url,
        regionUrl: this.dbs.region.eu!.url,
        kek: newKek(),
        extra,
      }),
      spawnBroker({
        region: 'us',
        controlUrl: this.dbs.control.url,
        regionUrl: this.dbs.region.us!.url,
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
  async login(region: 'eu' | 'us', idpHint: string, user: UpstreamUser, browser = new TestBrowser()) {
    const { page, verifier, app, state } = await this.authorize(browser, region, { idp_hint: idpHint });
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

  async stop(): Promise<void> {
    await Promise.allSettled([this.eu?.stop(), this.us?.stop(), this.de?.stop(), this.global?.stop()]);
    await this.dbs?.drop();
  }
}

function pkce() {
  const verifier = randomBytes(32).toString('base64url');
  return { verifier, challenge: createHash('sha256').update(verifier).digest('base64url') };
}
