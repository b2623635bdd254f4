/**
 * OpenID Connect RP-Initiated Logout 1.0: signing out at the broker ends the broker session and
 * the session at the identity provider the person came through — directly for people homed
 * here, through the home broker for people handed off — then returns to the app.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminCall } from './support/broker';
import { TestBrowser } from './support/browser';
import { ANNA, API, FederationFixture, type App } from './support/federation-fixture';
import { freePort } from './support/ports';

const f = new FederationFixture();
let app: App;
let bye: string;

beforeAll(async () => {
  await f.start('logout');
  const port = await freePort();
  app = {
    clientId: 'logout-app',
    clientSecret: `logout-${'s'.repeat(40)}`,
    redirectUri: `http://127.0.0.1:${port}/cb`,
  };
  bye = `http://127.0.0.1:${port}/bye`;
  const put = await adminCall(f.eu, 'PUT', `/admin/clients/${app.clientId}`, {
    client_secret: app.clientSecret,
    redirect_uris: [app.redirectUri],
    post_logout_redirect_uris: [bye],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
    scope: 'openid email profile api:read',
    resources: [API],
  });
  expect(put.status).toBe(201);
});

afterAll(async () => {
  await f.stop();
});

async function signOut(browser: TestBrowser, region: 'eu' | 'us') {
  const url = new URL(`${f.broker(region).url}/session/end`);
  url.searchParams.set('client_id', app.clientId);
  url.searchParams.set('post_logout_redirect_uri', bye);
  url.searchParams.set('state', 'bye-state');
  let page = await browser.follow(url.href, { stopAt: (u) => u.href.startsWith(bye) });
  // Each broker on the way asks once (no id_token_hint): "Yes, sign me out".
  for (let i = 0; i < 3 && !page.url.href.startsWith(bye); i++) {
    expect(page.status, page.html.slice(0, 300)).toBe(200);
    page = await browser.submit(page, { index: 0 }, {}, 'Yes, sign me out', {
      stopAt: (u) => u.href.startsWith(bye),
      autoSubmitForms: true,
    });
  }
  return page;
}

describe('RP-Initiated Logout 1.0 — chained to the upstream identity provider', () => {
  it('signs a person homed here out of the broker and of the IdP, then returns to the app with its state', async () => {
    const browser = new TestBrowser();
    const login = await f.login('eu', 'de-eid', ANNA, browser, app);
    expect('error' in login).toBe(false);
    const logoutsBefore = f.de.logoutCount();
    const page = await signOut(browser, 'eu');
    expect(page.url.href.startsWith(bye)).toBe(true);
    expect(page.url.searchParams.get('state')).toBe('bye-state');
    expect(f.de.logoutCount()).toBe(logoutsBefore + 1);
    // The upstream session is gone: the next login needs the form again.
    const formsBefore = f.de.loginCount();
    const again = await f.login('eu', 'de-eid', ANNA, browser, app);
    expect('error' in again).toBe(false);
    expect(f.de.loginCount()).toBe(formsBefore + 1);
  });

  it('signs a handed-off person out at this region, at the home broker and at the IdP', async () => {
    const browser = new TestBrowser();
    const login = await f.login('us', 'de-eid', ANNA, browser, app);
    expect('error' in login).toBe(false);
    const logoutsBefore = f.de.logoutCount();
    const page = await signOut(browser, 'us');
    expect(page.url.href.startsWith(bye)).toBe(true);
    expect(page.url.searchParams.get('state')).toBe('bye-state');
    expect(f.de.logoutCount()).toBe(logoutsBefore + 1);
  });

  it('refuses a forged return address on the way back (signed state)', async () => {
    const res = await fetch(
      `${f.eu.url}/federation/logged-out?state=${encodeURIComponent('eyJ0byI6Imh0dHBzOi8vZXZpbC5leGFtcGxlIiwiZXhwIjo5OTk5OTk5OTk5fQ.AAAA')}`,
      { redirect: 'manual' },
    );
    expect(res.status).toBe(400);
    expect(res.headers.get('location')).toBeNull();
  });
});
