/**
 * Logins that must not complete, end to end: each comes back to the app as an OAuth error
 * redirect (`access_denied`, or `temporarily_unavailable` for an upstream that does not answer)
 * with an `error_description` a person can act on — never a stack trace, never a hang — and a
 * refused person is stored nowhere. Upstream faults are injected by the real upstream IdPs on
 * the wire (test/support/upstream-idp.ts).
 */
import { randomBytes } from 'node:crypto';
import { Client } from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { KoaContextWithOIDC } from 'oidc-provider';
import { pseudonym } from '../libs/federation/src/pseudonym';
import { introspect, tokenRequest } from './support/broker';
import { TestBrowser, type Page } from './support/browser';
import { ANNA, API, FederationFixture, KENJI, canariesOf, leaks } from './support/federation-fixture';
import type { UpstreamUser } from './support/upstream-idp';

const f = new FederationFixture();
/** When set, the DE IdP puts this nonce in its codes instead of the one the broker sent. */
let forgedNonce: string | undefined;

beforeAll(async () => {
  await f.start('fedrefusals');
  // A nonce mismatch on the wire: the IdP answers with an ID token for another nonce, as if the
  // code had been issued for another authorization request (OIDC Core §3.1.2.1, §3.1.3.7 #11).
  f.de.provider.on('authorization.accepted', (ctx: KoaContextWithOIDC) => {
    if (forgedNonce) (ctx.oidc.params as Record<string, unknown>).nonce = forgedNonce;
  });
});

afterEach(() => {
  f.de.setFault(undefined);
  f.global.setFault(undefined);
  forgedNonce = undefined;
});

afterAll(async () => {
  await f.stop();
});

/** A login that must come back to the app with an OAuth error; returns the error and description. */
async function refused(region: 'eu' | 'us', idpHint: string, user: UpstreamUser) {
  const r = await f.login(region, idpHint, user);
  if (!('error' in r)) throw new Error(`the login of ${user.username} at ${region} was not refused`);
  // RFC 9207 §2: error responses carry the issuer too.
  expect(r.params.get('iss')).toBe(f.broker(region).issuer);
  const description = r.description ?? '';
  expectReadable(description);
  return { error: r.error!, description };
}

function expectReadable(description: string): void {
  expect(description.length).toBeGreaterThan(10);
  expect(description).not.toMatch(/\n|\bat .*\.js:\d+|Error:|undefined|\[object/);
}

async function regionQuery<T extends Record<string, unknown>>(
  url: string,
  sql: string,
  params: unknown[] = [],
) {
  const db = new Client({ connectionString: url });
  await db.connect();
  try {
    return (await db.query<T>(sql, params)).rows;
  } finally {
    await db.end();
  }
}

/** The upstream login form of the DE IdP, reached through the broker at `region` with idp_hint. */
async function upstreamForm(region: 'eu' | 'us', browser = new TestBrowser()) {
  const a = await f.authorize(browser, region, { idp_hint: 'de-eid' });
  expect(a.page.url.origin).toBe(f.de.url);
  expect(a.page.status).toBe(200);
  return { ...a, browser };
}

const isCallback = (region: 'eu' | 'us') => (u: URL) =>
  u.origin === f.broker(region).url && u.pathname === '/federation/callback';

/** Signs in at the upstream form and stops just before the browser loads the broker's callback. */
async function stopAtCallback(region: 'eu' | 'us', browser: TestBrowser, page: Page, user = ANNA) {
  const at = await browser.submit(
    page,
    { index: 0 },
    { username: user.username, password: user.password },
    'Sign in',
    { stopAt: isCallback(region), autoSubmitForms: true },
  );
  expect(at.status).toBe(0);
  expect(isCallback(region)(at.url)).toBe(true);
  return at.url;
}

describe('a person no residency policy covers', () => {
  // First in this file: no one has signed in yet, so "no subject anywhere" is exact.
  it('is refused with access_denied (KENJI, country JP, via global-id) and stored nowhere', async () => {
    for (const region of ['eu', 'us'] as const) {
      const { error, description } = await refused(region, 'global-id', KENJI);
      expect(error).toBe('access_denied');
      expect(description).toContain('"JP"');
      expect(description).toMatch(/no residency policy covers/i);
    }
    const dumps = await f.dumps();
    for (const [name, dump] of Object.entries(dumps))
      expect(leaks(dump, canariesOf(KENJI, f.global)), `${name} database`).toEqual([]);
    for (const region of ['eu', 'us'] as const) {
      expect(await regionQuery(f.regionUrl(region), 'select sub from subject')).toEqual([]);
      expect(await regionQuery(f.regionUrl(region), 'select link_key from federated_identity')).toEqual([]);
    }
    const linkKey = pseudonym(Buffer.from(f.pepper, 'base64'), 'link', 'global-id', f.global.subOf('kenji'));
    expect(
      await regionQuery(f.dbs.control.url, 'select key from subject_locator where key = $1', [linkKey]),
    ).toEqual([]);
    expect(await regionQuery(f.dbs.control.url, 'select key from subject_locator')).toEqual([]);
    // The policy decision is audited with its reason (issue 6): which federation and claim gave
    // the jurisdiction, and which one it was — the person's identity is not in the entry.
    for (const region of ['eu', 'us'] as const) {
      const rows = await regionQuery<{ detail: Record<string, unknown>; target_id: string }>(
        f.regionUrl(region),
        "select detail, target_id from audit_event where action = 'login.refused' order by id desc limit 1",
      );
      expect(rows[0]).toMatchObject({
        target_id: 'global-id',
        detail: {
          code: 'ERR_RESIDENCY_NO_POLICY',
          jurisdiction: 'JP',
          reason: 'global federation "global-id", claim country',
        },
      });
      expect(JSON.stringify(rows[0])).not.toContain(f.global.subOf('kenji'));
    }
  });
});

describe('a disabled federation', () => {
  it('refuses a login with idp_hint naming it (access_denied) and is not offered on the chooser', async () => {
    const put = await f.putFederation('us', 'de-eid', { enabled: false });
    expect(put.status).toBe(200);
    expect(put.body.enabled).toBe(false);
    try {
      const { error, description } = await refused('us', 'de-eid', ANNA);
      expect(error).toBe('access_denied');
      expect(description).toMatch(/German eID.*disabled/);

      const chooser = await f.authorize(new TestBrowser(), 'us');
      expect(chooser.page.status).toBe(200);
      expect(chooser.page.html).toContain('Global ID');
      expect(chooser.page.html).not.toContain('German eID');
    } finally {
      await f.putFederationEverywhere('de-eid', { enabled: true });
    }
    const again = await f.login('us', 'de-eid', ANNA);
    expect('error' in again ? again : undefined).toBeUndefined();
  });
});

describe('upstream errors and a person cancelling', () => {
  it('an upstream error answer becomes access_denied, without echoing the upstream’s text', async () => {
    f.de.setFault('error');
    const { error, description } = await refused('eu', 'de-eid', ANNA);
    expect(error).toBe('access_denied');
    expect(description).toMatch(/identity provider/);
    expect(description).not.toContain('Try again later.'); // the upstream's own description
  });

  it('an upstream error during a hand-off (login at us, home eu) becomes access_denied at the us app, not “cancelled”', async () => {
    f.de.setFault('error');
    const { error, description } = await refused('us', 'de-eid', ANNA);
    expect(error).toBe('access_denied');
    // The person did not cancel anything: the home broker's reason must survive the hand-off.
    expect(description).not.toMatch(/cancel/i);
  });

  it('the upstream answering access_denied (the person refused there) becomes access_denied', async () => {
    f.de.setFault('access_denied');
    const { error, description } = await refused('eu', 'de-eid', ANNA);
    expect(error).toBe('access_denied');
    expect(description).toMatch(/cancelled|refused/);
  });

  it('the person pressing Cancel on the upstream login form becomes access_denied', async () => {
    const { browser, page, app } = await upstreamForm('eu');
    const back = await browser.submit(page, { index: 0 }, {}, 'Cancel', {
      stopAt: (u) => u.href.startsWith(app.redirectUri),
      autoSubmitForms: true,
    });
    expect(back.url.href.startsWith(app.redirectUri)).toBe(true);
    expect(back.url.searchParams.get('error')).toBe('access_denied');
    expectReadable(back.url.searchParams.get('error_description') ?? '');
  });

  it('the person pressing Cancel on Meridian’s own chooser becomes access_denied', async () => {
    const browser = new TestBrowser();
    const { page, app } = await f.authorize(browser, 'eu');
    expect(page.status).toBe(200);
    const back = await browser.submit(page, { action: /\/cancel$/ }, {}, 'Cancel', {
      stopAt: (u) => u.href.startsWith(app.redirectUri),
    });
    expect(back.url.searchParams.get('error')).toBe('access_denied');
    expect(back.url.searchParams.get('error_description')).toBe('the sign-in was cancelled');
  });
});

describe('OAuth 2.0 §10.12 / RFC 9700 §4.7 — state binds the callback to the browser’s login', () => {
  it('a callback with a tampered state shows the expired sign-in page (400), never a 5xx; the genuine one still completes', async () => {
    const { browser, page, app } = await upstreamForm('eu');
    const callback = await stopAtCallback('eu', browser, page);
    const tampered = new URL(callback);
    tampered.searchParams.set('state', randomBytes(32).toString('base64url'));
    const shown = await browser.follow(tampered, { stopAt: (u) => u.href.startsWith(app.redirectUri) });
    expect(shown.status).toBe(400);
    expect(shown.url.href).toBe(tampered.href);
    expect(shown.html).toContain('Sign-in expired');

    const missing = new URL(callback);
    missing.searchParams.delete('state');
    expect((await browser.follow(missing)).status).toBe(400);

    const genuine = await browser.follow(callback, { stopAt: (u) => u.href.startsWith(app.redirectUri) });
    expect(genuine.url.searchParams.get('error')).toBeNull();
    expect(genuine.url.searchParams.get('code')).toBeTruthy();
  });

  it('a replayed upstream callback URL shows the expired sign-in page (400)', async () => {
    const { browser, page, app } = await upstreamForm('eu');
    const callback = await stopAtCallback('eu', browser, page);
    const first = await browser.follow(callback, { stopAt: (u) => u.href.startsWith(app.redirectUri) });
    expect(first.url.searchParams.get('code')).toBeTruthy();
    const replay = await browser.follow(callback, { stopAt: (u) => u.href.startsWith(app.redirectUri) });
    expect(replay.status).toBe(400);
    expect(replay.html).toContain('Sign-in expired');
  });
});

describe('OIDC Core §3.1.3.7 — upstream ID token validation', () => {
  it('refuses an ID token whose nonce is not the one sent (access_denied)', async () => {
    forgedNonce = randomBytes(16).toString('base64url');
    const { error, description } = await refused('eu', 'de-eid', ANNA);
    expect(error).toBe('access_denied');
    expect(description).toMatch(/could not be verified/);
  });

  for (const fault of ['bad-signature', 'wrong-aud', 'wrong-iss'] as const) {
    it(`refuses an ID token with a ${fault.replace('-', ' ')} (access_denied)`, async () => {
      f.de.setFault(fault);
      const { error, description } = await refused('eu', 'de-eid', ANNA);
      expect(error).toBe('access_denied');
      expect(description).toMatch(/could not be verified/);
    });
  }

  it('refuses a bad signature at the home broker of a hand-off too (login at us → access_denied)', async () => {
    f.de.setFault('bad-signature');
    const { error } = await refused('us', 'de-eid', ANNA);
    expect(error).toBe('access_denied');
  });
});

describe('RFC 9207 §2.4 — mix-up: an authorization response with the iss of another IdP', () => {
  it('is refused (access_denied)', async () => {
    f.de.setFault('mixup-iss', { foreignIssuer: f.global.issuer });
    const { error, description } = await refused('eu', 'de-eid', ANNA);
    expect(error).toBe('access_denied');
    expect(description).toMatch(/could not be verified/);
  });
});

describe('an upstream token endpoint that does not answer (MERIDIAN_UPSTREAM_TIMEOUT_MS=3000)', () => {
  it('ends with temporarily_unavailable within about 5 s', async () => {
    f.de.setFault('slow-token');
    const started = Date.now();
    const { error, description } = await refused('eu', 'de-eid', ANNA);
    const elapsed = Date.now() - started;
    expect(error).toBe('temporarily_unavailable');
    expect(description).toMatch(/did not answer in time/);
    expect(elapsed).toBeLessThan(5_000);
    expect(elapsed).toBeGreaterThanOrEqual(2_900);
  });

  it('ends with temporarily_unavailable at the us app when the home broker’s upstream times out (hand-off)', async () => {
    f.de.setFault('slow-token');
    const started = Date.now();
    const { error, description } = await refused('us', 'de-eid', ANNA);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(error).toBe('temporarily_unavailable');
    expect(description).toMatch(/did not answer in time/);
  });
});

describe('RFC 6749 §4.1.2 — an authorization code is single use at the broker', () => {
  it('a second redemption is invalid_grant and revokes what the first one issued', async () => {
    const { params, verifier, app } = await f.authorizationResponse('eu', 'de-eid', ANNA);
    const code = params.get('code')!;
    const first = await f.redeem('eu', code, verifier, app);
    expect(first.status).toBe(200);
    const accessToken = first.body.access_token as string;
    const refreshToken = first.body.refresh_token as string;
    expect((await introspect(f.eu.url, accessToken, app)).body.active).toBe(true);

    const second = await f.redeem('eu', code, verifier, app);
    expect(second.status).toBe(400);
    expect(second.body.error).toBe('invalid_grant');

    expect((await introspect(f.eu.url, accessToken, app)).body).toEqual({ active: false });
    const refresh = await tokenRequest(
      f.eu.url,
      { grant_type: 'refresh_token', refresh_token: refreshToken, resource: API },
      app,
    );
    expect(refresh.body.error).toBe('invalid_grant');
  });
});
