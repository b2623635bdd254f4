/**
 * The console's rules over real HTTP, against spawned brokers and real upstream IdPs: admin
 * scopes reach a person only by the role mapping (for any client), the admin API refuses a
 * person without them and names the person in the audit trail, console pages need a sign-in,
 * every POST needs the session's CSRF token from the console's origin, a tampered session
 * cookie is worth nothing, and sign-out ends the session.
 */
import { createHash, randomBytes } from 'node:crypto';
import { decodeJwt } from 'jose';
import { Client } from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminCall, adminToken, clientCredentials, tokenRequest } from './support/broker';
import { TestBrowser, type Page } from './support/browser';
import { open } from '../libs/keys/src/envelope';
import { deriveConsoleKeys, type ConsoleSession } from '../libs/console/src/session';
import {
  ANNA,
  API,
  CARLA,
  EU_POLICY,
  FederationFixture,
  US_POLICY,
  type App,
} from './support/federation-fixture';

const ADMIN = 'urn:meridian:admin';
const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ANNA_EMAIL = (ANNA.claims as { email: string }).email;
const CARLA_EMAIL = (CARLA.claims as { email: string }).email;

const f = new FederationFixture();
let adminApp: App;

beforeAll(async () => {
  await f.start('console', {
    env: {
      // Carla's email is listed but her identity provider does not verify it: no role for her.
      MERIDIAN_CONSOLE_ROLES: JSON.stringify({
        'meridian:admin': { emails: [ANNA_EMAIL] },
        'meridian:compliance': { emails: [ANNA_EMAIL, CARLA_EMAIL] },
      }),
    },
  });
  adminApp = await f.registerApp('ops-tool', {
    resources: [ADMIN],
    scope: 'openid meridian:admin meridian:compliance',
  });
});

afterAll(async () => {
  await f.stop();
});

/** An authorization code flow of `ops-tool` for the admin audience; the redeemed token. */
async function adminAudienceToken(user: typeof ANNA, fed: string, browser = new TestBrowser()) {
  const r = await f.authorizationResponse('eu', fed, user, {
    app: adminApp,
    browser,
    params: { scope: 'openid meridian:admin meridian:compliance', resource: ADMIN },
  });
  expect(r.params.get('error'), r.params.get('error_description') ?? '').toBeNull();
  const t = await f.redeem('eu', r.params.get('code')!, r.verifier, adminApp, ADMIN);
  expect(t.status, JSON.stringify(t.body)).toBe(200);
  const token = t.body.access_token as string;
  return { token, claims: decodeJwt(token), browser };
}

describe('admin scopes for people: only by the role mapping, for any client', () => {
  it('a person with the roles gets both scopes; the API accepts the token and audits the person’s sub', async () => {
    const { token, claims } = await adminAudienceToken(ANNA, 'de-eid');
    expect(claims.aud).toBe(ADMIN);
    expect(String(claims.scope).split(' ')).toEqual(
      expect.arrayContaining(['meridian:admin', 'meridian:compliance']),
    );
    const put = await adminCall(
      f.eu,
      'PUT',
      '/admin/resources/console-probe',
      { audience: 'https://probe.console.example', scopes: ['probe:read'], region: 'eu' },
      token,
    );
    expect(put.status).toBe(201);
    const audit = await adminCall(f.eu, 'GET', '/audit/events?type=resource.put&subject=console-probe');
    expect(audit.body.events[0].actor).toBe(claims.sub);
  });

  it('a person without a role (unverified email) gets no admin scope, and the API answers 403', async () => {
    const { token, claims } = await adminAudienceToken(CARLA, 'global-id');
    const scopes = String(claims.scope ?? '').split(' ');
    expect(scopes).not.toContain('meridian:admin');
    expect(scopes).not.toContain('meridian:compliance');
    for (const [method, path] of [
      ['GET', '/admin/federations'],
      ['GET', '/compliance/policies'],
      ['GET', '/audit/events'],
      ['POST', '/admin/keys/rotate'],
    ] as const) {
      const r = await adminCall(f.eu, method, path, undefined, token);
      expect(r.status, `${method} ${path}`).toBe(403);
      expect(r.body.error).toBe('insufficient_scope');
    }
    const refused = await adminCall(
      f.eu,
      'GET',
      `/audit/events?type=admin.scope.refused&subject=${claims.sub}`,
    );
    expect(refused.body.events.length).toBeGreaterThanOrEqual(1);
  });

  it('an earlier grant of admin scopes is not reused: the next authorization must decide again', async () => {
    const { browser } = await adminAudienceToken(ANNA, 'de-eid');
    // Same browser, broker session alive: without a consent step there is nothing to issue.
    const again = await f.authorizationResponse('eu', 'de-eid', ANNA, {
      app: adminApp,
      browser,
      params: { scope: 'openid meridian:admin', resource: ADMIN, prompt: 'none' },
    });
    expect(again.params.get('code')).toBeNull();
    expect(again.params.get('error')).toBe('consent_required');
  });

  it('token exchange never turns a person’s token into an admin-audience token', async () => {
    const token = await adminToken(f.eu);
    expect(
      (
        await adminCall(
          f.eu,
          'PUT',
          '/admin/resources/canary-api',
          { audience: API, scopes: ['api:read'], region: 'eu', clientId: 'canary-svc' },
          token,
        )
      ).status,
    ).toBe(200);
    const secret = `svc-${randomBytes(24).toString('base64url')}`;
    const client = await adminCall(
      f.eu,
      'PUT',
      '/admin/clients/canary-svc',
      {
        client_secret: secret,
        redirect_uris: [],
        grant_types: [TOKEN_EXCHANGE],
        response_types: [],
        token_endpoint_auth_method: 'client_secret_basic',
        scope: 'meridian:admin meridian:compliance',
        resources: [ADMIN],
      },
      token,
    );
    expect(client.status).toBe(201);
    const login = await f.login('eu', 'de-eid', ANNA);
    if ('error' in login) throw new Error(`${login.error}: ${login.description}`);
    const r = await tokenRequest(
      f.eu.url,
      {
        grant_type: TOKEN_EXCHANGE,
        subject_token: login.tokens.access_token,
        subject_token_type: 'urn:ietf:params:oauth:token-type:access_token',
        resource: ADMIN,
        scope: 'meridian:admin',
      },
      { clientId: 'canary-svc', clientSecret: secret },
    );
    expect(r.status).toBe(400);
    expect(r.body.error).toBe('invalid_target');
  });

  it('the console clients are built in: the admin API neither replaces nor deletes them', async () => {
    const put = await adminCall(f.eu, 'PUT', '/admin/clients/meridian-console-eu', {
      redirect_uris: ['https://evil.example/cb'],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
      resources: [ADMIN],
      scope: 'meridian:admin',
    });
    expect(put.status).toBe(409);
    expect((await adminCall(f.eu, 'DELETE', '/admin/clients/meridian-console-us')).status).toBe(409);
    const stored = await adminCall(f.eu, 'GET', '/admin/clients/meridian-console-eu');
    expect(stored.body.redirect_uris).toEqual([`${f.eu.issuer}/console/callback`]);
  });
});

describe('POST /compliance/policies/{id}/dry-run and GET /audit/events?until=', () => {
  it('answers validity, field changes against the current version and the jurisdictions whose decision changes', async () => {
    const token = await adminToken(f.eu, 'meridian:compliance');
    const r = await adminCall(
      f.eu,
      'POST',
      '/compliance/policies/eu-gdpr/dry-run',
      {
        ...EU_POLICY,
        appliesTo: { jurisdictions: ['DE', 'FR', 'EU', 'CH'] },
        release: { default: ['sub', 'residency'], byRegion: { eu: ['name'] } },
      },
      token,
    );
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ valid: true, policy: 'eu-gdpr', currentVersion: 1, candidateVersion: 2 });
    const paths = r.body.changes.map((c: { path: string }) => c.path);
    expect(paths).toEqual(expect.arrayContaining(['appliesTo.jurisdictions', 'release.byRegion.eu']));
    const byCode = Object.fromEntries(r.body.jurisdictions.map((j: any) => [j.jurisdiction, j]));
    expect(byCode.CH).toMatchObject({ before: null, changed: ['coverage'] });
    expect(byCode.CH.after.policy).toBe('eu-gdpr');
    expect(byCode.DE.changed).toEqual(['release']);
    expect(byCode.US).toBeUndefined();
  });

  it('until: only events before the given time', async () => {
    const token = await adminToken(f.eu, 'meridian:compliance');
    const all = await adminCall(f.eu, 'GET', '/audit/events', undefined, token);
    const oldest = all.body.events.at(-1);
    const r = await adminCall(
      f.eu,
      'GET',
      `/audit/events?until=${encodeURIComponent(new Date(new Date(oldest.at).getTime() + 1).toISOString())}`,
      undefined,
      token,
    );
    expect(r.status).toBe(200);
    expect(r.body.events.length).toBeGreaterThanOrEqual(1);
    expect(r.body.events.length).toBeLessThan(all.body.events.length);
    for (const e of r.body.events)
      expect(new Date(e.at).getTime()).toBeLessThanOrEqual(new Date(oldest.at).getTime());
    expect((await adminCall(f.eu, 'GET', '/audit/events?until=yesterday', undefined, token)).status).toBe(
      400,
    );
  });
});

// ---- the console

const SECTIONS = [
  '',
  '/regions',
  '/federations',
  '/federations/new',
  '/clients',
  '/resources',
  '/keys',
  '/policies',
  '/subjects',
  '/audit',
];

function csrfOf(page: Page): string {
  const m = /name="_csrf" value="([^"]+)"/.exec(page.html);
  if (!m) throw new Error(`no CSRF token on ${page.url.href}`);
  return m[1]!;
}

/** Signs `user` in to the eu console through `fed`; the browser then holds the session cookie. */
async function consoleSignIn(user: typeof ANNA, fed: string): Promise<{ browser: TestBrowser; home: Page }> {
  const browser = new TestBrowser();
  const upstream = await browser.follow(`${f.eu.url}/console/login?idp_hint=${fed}`);
  expect(upstream.html).toContain('name="password"');
  const home = await browser.submit(
    upstream,
    { index: 0 },
    { username: user.username, password: user.password },
    'Sign in',
    {
      autoSubmitForms: true,
    },
  );
  return { browser, home };
}

function sessionCookie(browser: TestBrowser): { name: string; value: string } {
  const c = browser.cookies
    .forUrl(new URL(`${f.eu.url}/console`))
    .find((x) => x.name === 'meridian_console_eu');
  if (!c) throw new Error('no console session cookie');
  return c;
}

async function currentKid(): Promise<string> {
  const keys = await adminCall(f.eu, 'GET', '/admin/keys');
  return keys.body.find((k: { state: string }) => k.state === 'current').kid;
}

describe('the console: sign-in', () => {
  it('every page needs a sign-in: GET goes to /console/login, POST is refused', async () => {
    for (const path of SECTIONS) {
      const r = await fetch(`${f.eu.url}/console${path}`, { redirect: 'manual' });
      expect(r.status, path).toBe(303);
      const location = new URL(r.headers.get('location')!, f.eu.url);
      expect(location.pathname).toBe('/console/login');
      expect(location.searchParams.get('return')).toBe(path || '/');
    }
    const kid = await currentKid();
    const post = await fetch(`${f.eu.url}/console/keys/rotate`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'x=1',
      redirect: 'manual',
    });
    expect(post.status).toBe(403);
    expect(await currentKid()).toBe(kid);
  });

  it('/console/login is an authorization code request with PKCE S256 for meridian-console-eu, asking for a fresh sign-in', async () => {
    const r = await fetch(`${f.eu.url}/console/login`, { redirect: 'manual' });
    expect(r.status).toBe(303);
    const auth = new URL(r.headers.get('location')!);
    expect(`${auth.origin}${auth.pathname}`).toBe(`${f.eu.issuer}/auth`);
    expect(auth.searchParams.get('client_id')).toBe('meridian-console-eu');
    expect(auth.searchParams.get('response_type')).toBe('code');
    expect(auth.searchParams.get('code_challenge_method')).toBe('S256');
    expect(auth.searchParams.get('prompt')?.split(' ')).toContain('login');
    expect(auth.searchParams.get('resource')).toBe(ADMIN);
    expect(auth.searchParams.get('redirect_uri')).toBe(`${f.eu.issuer}/console/callback`);
    const cookie = r.headers.getSetCookie().find((c) => c.startsWith('meridian_console_eu_login='));
    expect(cookie).toMatch(/HttpOnly/);
    expect(cookie).toMatch(/SameSite=Lax/);
    expect(cookie).toMatch(/Path=\/console/);
  });

  it('a callback without the sign-in’s own cookie starts no session', async () => {
    const r = await fetch(
      `${f.eu.url}/console/callback?code=x&state=y&iss=${encodeURIComponent(f.eu.issuer)}`,
      {
        redirect: 'manual',
      },
    );
    expect(r.status).toBe(400);
    expect(r.headers.getSetCookie().some((c) => /^meridian_console_eu=[^;]/.test(c))).toBe(false);
  });

  it('signs a person with roles in through the upstream IdP: session cookie HttpOnly, SameSite=Lax, path /console', async () => {
    const browser = new TestBrowser();
    const upstream = await browser.follow(`${f.eu.url}/console/login?idp_hint=de-eid`);
    const setCookies: string[] = [];
    // Submit by hand up to the console to read the Set-Cookie of the callback.
    const back = await browser.submit(
      upstream,
      { index: 0 },
      { username: ANNA.username, password: ANNA.password },
      'Sign in',
      { stopAt: (u) => u.pathname === '/console/callback', autoSubmitForms: true },
    );
    const cb = await fetch(back.url, {
      headers: { cookie: browser.cookies.header(back.url)! },
      redirect: 'manual',
    });
    setCookies.push(...cb.headers.getSetCookie());
    expect(cb.status).toBe(303);
    const session = setCookies.find((c) => /^meridian_console_eu=[^;]/.test(c));
    expect(session).toMatch(/HttpOnly/);
    expect(session).toMatch(/SameSite=Lax/);
    expect(session).toMatch(/Path=\/console/);
    expect(session).not.toMatch(/Domain=/);
  });

  it('a person without a role gets a clear 403 page, and every section is refused by the API', async () => {
    const { browser, home } = await consoleSignIn(CARLA, 'global-id');
    expect(home.url.pathname).toBe('/console');
    expect(home.status).toBe(403);
    expect(home.html).toContain('No console role');
    for (const path of ['/federations', '/keys', '/policies', '/subjects?sub=x', '/audit']) {
      const page = await browser.follow(`${f.eu.url}/console${path}`);
      expect(page.status, path).toBe(403);
      expect(page.html).toContain('Not allowed');
    }
  });
});

describe('the console: CSRF, tampering, sign-out', () => {
  let browser: TestBrowser;
  let keysPage: Page;

  beforeAll(async () => {
    ({ browser } = await consoleSignIn(ANNA, 'de-eid'));
    keysPage = await browser.follow(`${f.eu.url}/console/keys`);
    expect(keysPage.status).toBe(200);
  });

  const rotate = (fields: Record<string, string>, headers: Record<string, string> = {}) =>
    fetch(`${f.eu.url}/console/keys/rotate`, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        cookie: browser.cookies.header(new URL(`${f.eu.url}/console/keys/rotate`))!,
        ...headers,
      },
      body: new URLSearchParams(fields).toString(),
      redirect: 'manual',
    });

  it('refuses a POST without the CSRF token, with a wrong one, or from another origin — and changes nothing', async () => {
    const kid = await currentKid();
    const csrf = csrfOf(keysPage);
    expect((await rotate({})).status).toBe(403);
    expect((await rotate({ _csrf: randomBytes(32).toString('base64url') })).status).toBe(403);
    expect((await rotate({ _csrf: csrf.slice(0, -2) + (csrf.endsWith('AA') ? 'BB' : 'AA') })).status).toBe(
      403,
    );
    expect((await rotate({ _csrf: csrf }, { origin: 'https://evil.example' })).status).toBe(403);
    expect((await rotate({ _csrf: csrf }, { 'sec-fetch-site': 'cross-site' })).status).toBe(403);
    expect(await currentKid()).toBe(kid);
    // The same request with the page's token goes through.
    const ok = await rotate({ _csrf: csrf }, { origin: new URL(f.eu.url).origin });
    expect(ok.status).toBe(303);
    expect(await currentKid()).not.toBe(kid);
  });

  it('refuses a tampered session cookie (signature or id changed): sign in again, POST refused', async () => {
    const url = `${f.eu.url}/console/keys`;
    const { name, value } = sessionCookie(browser);
    const [sid, mac] = value.split('.') as [string, string];
    const flip = (s: string) => (s[0] === 'A' ? 'B' : 'A') + s.slice(1);
    const get = (cookie: string) =>
      fetch(url, { headers: { cookie: `${name}=${cookie}` }, redirect: 'manual' });
    expect((await get(value)).status).toBe(200);
    for (const tampered of [`${sid}.${flip(mac)}`, `${flip(sid)}.${mac}`, sid, `${value}.x`]) {
      const r = await get(tampered);
      expect(r.status, tampered).toBe(303);
      expect(new URL(r.headers.get('location')!, f.eu.url).pathname).toBe('/console/login');
      expect(r.headers.getSetCookie().some((c) => c.startsWith(`${name}=;`))).toBe(true);
    }
    const post = await fetch(`${f.eu.url}/console/keys/rotate`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: `${name}=${sid}.${flip(mac)}` },
      body: new URLSearchParams({ _csrf: csrfOf(keysPage) }).toString(),
      redirect: 'manual',
    });
    expect(post.status).toBe(403);
  });

  /** The session as stored at eu (sealed), read with the broker's KEK as the broker would. */
  async function storedSession(): Promise<ConsoleSession> {
    const keys = deriveConsoleKeys(Buffer.from(f.eu.env.MERIDIAN_KEK!, 'base64'), 'eu');
    const sid = sessionCookie(browser).value.split('.')[0]!;
    const id = createHash('sha256').update(`console-session\0${sid}`).digest('base64url');
    const db = new Client({ connectionString: f.regionUrl('eu') });
    await db.connect();
    try {
      const { rows } = await db.query(
        `select payload from oidc_payload where model = 'ConsoleSession' and id = $1`,
        [id],
      );
      const sealed = Buffer.from(rows[0].payload.sealed, 'base64');
      return JSON.parse(open(keys.seal, sealed, `console-session:${id}`).toString('utf8'));
    } finally {
      await db.end();
    }
  }

  it('keeps tokens sealed at rest, and refreshes a revoked access token once for concurrent pages', async () => {
    const before = await storedSession();
    expect(before.scopes).toEqual(['meridian:admin', 'meridian:compliance']);
    const { rows } = await (async () => {
      const db = new Client({ connectionString: f.regionUrl('eu') });
      await db.connect();
      try {
        return await db.query(`select payload::text as p from oidc_payload where model = 'ConsoleSession'`);
      } finally {
        await db.end();
      }
    })();
    for (const row of rows) expect(row.p).not.toContain(before.accessToken.slice(-20));
    // The access token stops working (as after a revocation): the API answers 401.
    const db = new Client({ connectionString: f.regionUrl('eu') });
    await db.connect();
    await db.query(`insert into revoked_token (jti, expires_at) values ($1, to_timestamp($2))`, [
      decodeJwt(before.accessToken).jti,
      before.accessTokenExpiresAt,
    ]);
    await db.end();
    // Three pages at once: one refresh (the refresh token rotates; a second use would revoke
    // the whole grant), all three served.
    const pages = await Promise.all(
      ['/keys', '/regions', '/federations'].map((p) => browser.follow(`${f.eu.url}/console${p}`)),
    );
    expect(pages.map((p) => p.status)).toEqual([200, 200, 200]);
    const after = await storedSession();
    expect(after.accessToken).not.toBe(before.accessToken);
    expect(after.refreshToken).not.toBe(before.refreshToken);
    expect((await browser.follow(`${f.eu.url}/console/keys`)).status).toBe(200);
  });

  it('saves a policy only after a dry run of that exact document, in this session', async () => {
    const policyPage = await browser.follow(`${f.eu.url}/console/policies/us-default`);
    expect(policyPage.status).toBe(200);
    const csrf = csrfOf(policyPage);
    const document = JSON.stringify({ ...US_POLICY, retention: { auditDays: 100 } }, null, 2);
    const post = (path: string, fields: Record<string, string>) =>
      fetch(`${f.eu.url}/console/policies/${path}`, {
        method: 'POST',
        headers: {
          'content-type': 'application/x-www-form-urlencoded',
          cookie: browser.cookies.header(new URL(`${f.eu.url}/console/policies`))!,
          origin: new URL(f.eu.url).origin,
        },
        body: new URLSearchParams({ _csrf: csrf, id: 'us-default', ...fields }).toString(),
        redirect: 'manual',
      });
    const version = async () =>
      (await adminCall(f.eu, 'GET', '/compliance/policies/us-default')).body.current.version as number;
    const before = await version();
    expect((await post('save', { document })).status).toBe(409);
    const dry = await post('dry-run', { document });
    expect(dry.status).toBe(200);
    const reviewed = /name="reviewed" value="([^"]+)"/.exec(await dry.text())![1]!;
    const edited = document.replace('100', '101');
    expect((await post('save', { document: edited, reviewed })).status).toBe(409);
    expect(await version()).toBe(before);
    const saved = await post('save', { document, reviewed });
    expect(saved.status).toBe(303);
    expect(await version()).toBe(before + 1);
  });

  it('sign-out ends the session: the old cookie is worth nothing afterwards', async () => {
    const { name, value } = sessionCookie(browser);
    const home = await browser.follow(`${f.eu.url}/console`);
    const out = await fetch(`${f.eu.url}/console/logout`, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        cookie: `${name}=${value}`,
        origin: new URL(f.eu.url).origin,
      },
      body: new URLSearchParams({ _csrf: csrfOf(home) }).toString(),
      redirect: 'manual',
    });
    expect(out.status).toBe(303);
    expect(new URL(out.headers.get('location')!).pathname).toBe('/session/end');
    // A page that calls no API (its tokens are revoked too) and one that does.
    for (const path of ['/federations/new', '/keys']) {
      const after = await fetch(`${f.eu.url}/console${path}`, {
        headers: { cookie: `${name}=${value}` },
        redirect: 'manual',
      });
      expect(after.status, path).toBe(303);
      expect(new URL(after.headers.get('location')!, f.eu.url).pathname).toBe('/console/login');
    }
  });
});

describe('the console: secret rotation with an overlap (issue 6)', () => {
  let browser: TestBrowser;
  const m2m = { clientId: 'rotating-m2m', clientSecret: `rotating-m2m-${randomBytes(16).toString('hex')}` };

  beforeAll(async () => {
    ({ browser } = await consoleSignIn(ANNA, 'de-eid'));
    const r = await adminCall(f.eu, 'PUT', `/admin/clients/${m2m.clientId}`, {
      client_secret: m2m.clientSecret,
      redirect_uris: [],
      grant_types: ['client_credentials'],
      response_types: [],
      token_endpoint_auth_method: 'client_secret_basic',
      scope: 'api:read',
      resources: [API],
    });
    expect(r.status).toBe(201);
  });

  /** A console form POST from the console's origin with the page's CSRF token. */
  async function consolePost(path: string, page: Page, fields: Record<string, string>) {
    const url = new URL(`${f.eu.url}/console${path}`);
    const res = await fetch(url, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        cookie: browser.cookies.header(url)!,
        origin: url.origin,
      },
      body: new URLSearchParams({ _csrf: csrfOf(page), ...fields }).toString(),
      redirect: 'manual',
    });
    return { status: res.status, location: res.headers.get('location'), html: await res.text() };
  }

  const token = (secret: string) =>
    clientCredentials(f.eu.url, { clientId: m2m.clientId, clientSecret: secret }, API, 'api:read');

  it('a client secret: rotated with an overlap (both work), then the previous one refused at once (RFC 6749 §2.3.1)', async () => {
    let page = await browser.follow(`${f.eu.url}/console/clients/${m2m.clientId}`);
    expect(page.html).toContain('Rotate the secret');
    // A bad overlap changes nothing.
    const bad = await consolePost(`/clients/${m2m.clientId}/secret`, page, { overlapSeconds: '-5' });
    expect(bad.status).toBe(400);
    expect(bad.html).toContain('the overlap must be a whole number of seconds');
    expect((await token(m2m.clientSecret)).status).toBe(200);

    const rotated = await consolePost(`/clients/${m2m.clientId}/secret`, page, { overlapSeconds: '3600' });
    expect(rotated.status).toBe(200);
    const fresh = /<code class="copy" id="client-secret">([^<]+)<\/code>/.exec(rotated.html)?.[1];
    expect(fresh).toBeTruthy();
    expect(fresh).not.toBe(m2m.clientSecret);
    expect(rotated.html).toMatch(/previous secret is accepted until/);
    // The overlap: both secrets get tokens.
    expect((await token(fresh!)).status).toBe(200);
    expect((await token(m2m.clientSecret)).status).toBe(200);

    page = await browser.follow(`${f.eu.url}/console/clients/${m2m.clientId}`);
    expect(page.html).toMatch(/still accepted until/);
    const ended = await consolePost(`/clients/${m2m.clientId}/secret/previous`, page, {});
    expect(ended.status).toBe(303);
    const old = await token(m2m.clientSecret);
    expect(old.status).toBe(401);
    expect(old.body.error).toBe('invalid_client');
    expect((await token(fresh!)).status).toBe(200);

    const audit = await adminCall(f.eu, 'GET', `/audit/events?type=client.secret.rotate`);
    // The person who did it, by sub, in the trail; the secret nowhere in it.
    expect(audit.body.events.some((e: { target_id: string }) => e.target_id === m2m.clientId)).toBe(true);
    expect(JSON.stringify(audit.body)).not.toContain(fresh!);
  });

  it('an upstream secret: the new one stored sealed, the previous one still tried while the IdP refuses the new, then dropped', async () => {
    let page = await browser.follow(`${f.eu.url}/console/federations/de-eid`);
    expect(page.html).toContain('Store the new secret');
    // The identity provider does not know this secret yet: logins go on with the previous one.
    const unknownToIdp = `not-yet-at-the-idp-${randomBytes(8).toString('hex')}`;
    const stored = await consolePost('/federations/de-eid/secret', page, {
      clientSecret: unknownToIdp,
      overlapSeconds: '600',
    });
    expect(stored.status).toBe(303);
    const state = await adminCall(f.eu, 'GET', '/admin/federations/de-eid/secret');
    expect(state.body.previous).not.toBeNull();
    expect(JSON.stringify(state.body)).not.toContain(unknownToIdp);
    const login = await f.login('eu', 'de-eid', ANNA);
    expect('error' in login ? login.description : 'ok').toBe('ok');

    // Put the real secret back (no overlap), then promote: only it remains, and logins work.
    page = await browser.follow(`${f.eu.url}/console/federations/de-eid`);
    expect(page.html).toContain('Use only the new secret');
    const promoted = await consolePost('/federations/de-eid/secret/promote', page, {});
    expect(promoted.status).toBe(303);
    expect((await adminCall(f.eu, 'GET', '/admin/federations/de-eid/secret')).body.previous).toBeNull();
    page = await browser.follow(`${f.eu.url}/console/federations/de-eid`);
    const restored = await consolePost('/federations/de-eid/secret', page, {
      clientSecret: f.upstreamSecrets['eu:de-eid']!,
      overlapSeconds: '0',
    });
    expect(restored.status).toBe(303);
    const again = await f.login('eu', 'de-eid', ANNA);
    expect('error' in again ? again.description : 'ok').toBe('ok');
  });
});
