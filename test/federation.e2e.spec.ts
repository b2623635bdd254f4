/**
 * Federated login across regions, end to end: two brokers, two real upstream IdPs, a real
 * browser-like client following every redirect.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminCall } from './support/broker';
import { ANNA, API, BOB, DORA, FederationFixture } from './support/federation-fixture';

const f = new FederationFixture();

beforeAll(async () => {
  await f.start('fede2e');
});

afterAll(async () => {
  await f.stop();
});

describe('a national IdP homed in eu, used from an app at us (hand-off)', () => {
  it('issues tokens from the us issuer with residency.region = eu and no eu-only claim', async () => {
    const r = await f.login('us', 'de-eid', ANNA);
    if ('error' in r) throw new Error(`${r.error}: ${r.description}`);
    expect(r.accessToken.iss).toBe(f.us.issuer);
    expect(r.accessToken.residency).toMatchObject({
      region: 'eu',
      jurisdiction: 'DE',
      policy: 'eu-gdpr@1',
      processing: ['eu'],
    });
    expect(r.idToken.iss).toBe(f.us.issuer);
    expect(r.idToken.email).toBeUndefined();
    expect(r.idToken.name).toBeUndefined();
  });
});

describe('the same person at an eu app', () => {
  it('gets the released profile claims and the same sub', async () => {
    const atUs = await f.login('us', 'de-eid', ANNA);
    const atEu = await f.login('eu', 'de-eid', ANNA);
    if ('error' in atUs || 'error' in atEu) throw new Error('login failed');
    expect(atEu.idToken.sub).toBe(atUs.idToken.sub);
    expect(atEu.idToken.email).toBe(ANNA.claims.email);
    expect(atEu.idToken.name).toBe(ANNA.claims.name);
    expect(atEu.accessToken.residency).toMatchObject({ region: 'eu' });
  });
});

describe('a global IdP', () => {
  it('homes a US person in us when they start at eu, keeping nothing at eu beyond sub and residency', async () => {
    const r = await f.login('eu', 'global-id', BOB);
    if ('error' in r) throw new Error(`${r.error}: ${r.description}`);
    expect(r.accessToken.iss).toBe(f.eu.issuer);
    expect(r.accessToken.residency).toMatchObject({ region: 'us', jurisdiction: 'US' });
    expect(r.idToken.email).toBeUndefined();
  });
});

describe('federation credentials per region', () => {
  it('keeps each region’s own upstream client id (each region registers its own redirect URI)', async () => {
    const atEu = await adminCall(f.eu, 'GET', '/admin/federations/de-eid');
    const atUs = await adminCall(f.us, 'GET', '/admin/federations/de-eid');
    expect(atEu.body).toMatchObject({
      clientId: 'meridian-eu',
      redirectUri: `${f.eu.issuer}/federation/callback`,
      hasClientSecret: true,
    });
    expect(atUs.body).toMatchObject({
      clientId: 'meridian-us',
      redirectUri: `${f.us.issuer}/federation/callback`,
      hasClientSecret: true,
    });
    expect(JSON.stringify(atEu.body)).not.toContain(f.upstreamSecrets['eu:de-eid']);
  });

  it('logs in at both regions after the federation caches expired', async () => {
    await new Promise((r) => setTimeout(r, 5_500));
    for (const region of ['eu', 'us'] as const) {
      const r = await f.login(region, 'de-eid', ANNA);
      expect('error' in r ? `${r.error}: ${r.description}` : 'ok').toBe('ok');
    }
  });
});

describe('the pseudonymous locator', () => {
  it('routes a known global-IdP person home even when the IdP leaves out their country', async () => {
    const first = await f.login('us', 'global-id', BOB);
    expect('error' in first ? first.description : first.accessToken.residency).toMatchObject({
      region: 'us',
    });
    const country = BOB.claims.country;
    delete BOB.claims.country;
    try {
      const again = await f.login('eu', 'global-id', BOB);
      if ('error' in again) throw new Error(`${again.error}: ${again.description}`);
      expect(again.accessToken.residency).toMatchObject({ region: 'us', jurisdiction: 'US' });
      if (!('error' in first)) expect(again.idToken.sub).toBe(first.idToken.sub);
    } finally {
      BOB.claims.country = country;
    }
  });

  it('refuses a global-IdP person it has never seen whose IdP names no country (fail closed)', async () => {
    const r = await f.login('eu', 'global-id', DORA);
    expect('error' in r && r.error).toBe('access_denied');
    if ('error' in r) expect(r.description).toMatch(/did not state a single country/);
  });
});

describe('OIDC Core §8.1 — pairwise subject identifiers', () => {
  it('gives a pairwise client its own stable sub for the person, different from the public one', async () => {
    const pairwise = {
      clientId: 'eu-pairwise-app',
      clientSecret: `pw-${'x'.repeat(40)}`,
      redirectUri: f.apps.eu!.redirectUri.replace('/cb', '/pw'),
    };
    const put = await adminCall(f.eu, 'PUT', `/admin/clients/${pairwise.clientId}`, {
      client_secret: pairwise.clientSecret,
      redirect_uris: [pairwise.redirectUri],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
      scope: 'openid email profile api:read',
      resources: [API],
      subject_type: 'pairwise',
    });
    expect(put.status).toBe(201);
    const publicLogin = await f.login('eu', 'de-eid', ANNA);
    const first = await f.login('eu', 'de-eid', ANNA, undefined, pairwise);
    const second = await f.login('eu', 'de-eid', ANNA, undefined, pairwise);
    if ('error' in publicLogin || 'error' in first || 'error' in second) throw new Error('login failed');
    expect(first.idToken.sub).toBe(second.idToken.sub);
    expect(first.idToken.sub).not.toBe(publicLogin.idToken.sub);
    expect(first.accessToken.sub).toBe(first.idToken.sub);
  });
});
