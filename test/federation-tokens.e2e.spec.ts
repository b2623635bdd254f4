/**
 * What apps receive after a federated login, per region: the claims the residency policy
 * releases to the app's region (eu-gdpr releases email and name to eu only), the same pseudonymous
 * `sub` everywhere, `residency` on every access token, and refresh tokens that rotate with reuse
 * detection — also for a login handed off to another region.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeJwt } from 'jose';
import { introspect, tokenRequest } from './support/broker';
import { ANNA, API, FederationFixture, type App } from './support/federation-fixture';

const f = new FederationFixture();
/** Apps without a resource: their access tokens are opaque and for userinfo. */
const profileApps: Partial<Record<'eu' | 'us', App>> = {};

const ANNA_RESIDENCY = { region: 'eu', jurisdiction: 'DE', policy: 'eu-gdpr@1', processing: ['eu'] };
/** OIDC Core §5.1 profile claims, plus `country` (what global IdPs carry). */
const PROFILE_CLAIMS = [
  'name',
  'given_name',
  'family_name',
  'middle_name',
  'nickname',
  'preferred_username',
  'profile',
  'picture',
  'website',
  'email',
  'email_verified',
  'gender',
  'birthdate',
  'zoneinfo',
  'locale',
  'phone_number',
  'phone_number_verified',
  'address',
  'updated_at',
  'country',
];
const profileClaimsOf = (claims: Record<string, unknown>) =>
  Object.keys(claims)
    .filter((k) => PROFILE_CLAIMS.includes(k))
    .sort();

beforeAll(async () => {
  await f.start('fedtokens');
  profileApps.eu = await f.registerApp('eu-profile-app');
  profileApps.us = await f.registerApp('us-profile-app');
});

afterAll(async () => {
  await f.stop();
});

async function login(region: 'eu' | 'us') {
  const r = await f.login(region, 'de-eid', ANNA);
  if ('error' in r) throw new Error(`login at ${region}: ${r.error}: ${r.description}`);
  return r;
}

/** A login for an app without a resource, and userinfo with its opaque access token. */
async function userinfo(region: 'eu' | 'us') {
  const app = profileApps[region]!;
  const { params, verifier } = await f.authorizationResponse(region, 'de-eid', ANNA, {
    app,
    params: { resource: null, scope: 'openid email profile' },
  });
  const tokens = await f.redeem(region, params.get('code')!, verifier, app, null);
  expect(tokens.status).toBe(200);
  const accessToken = tokens.body.access_token as string;
  expect(accessToken.split('.')).toHaveLength(1); // opaque: for userinfo
  const res = await fetch(`${f.broker(region).url}/me`, {
    headers: { authorization: `Bearer ${accessToken}` },
  });
  expect(res.status).toBe(200);
  return {
    idToken: decodeJwt(tokens.body.id_token as string),
    userinfo: (await res.json()) as Record<string, unknown>,
  };
}

describe('claims released per region (residency policy eu-gdpr: email and name to eu only)', () => {
  it('at us, the non-home region: no profile claim in the ID token, the access token or userinfo', async () => {
    const r = await login('us');
    expect(r.idToken.iss).toBe(f.us.issuer);
    expect(profileClaimsOf(r.idToken)).toEqual([]);
    expect(profileClaimsOf(r.accessToken)).toEqual([]);
    const u = await userinfo('us');
    expect(profileClaimsOf(u.idToken)).toEqual([]);
    expect(u.userinfo).toEqual({ sub: r.idToken.sub, residency: ANNA_RESIDENCY });
  });

  it('at us, the access token carries residency {region: eu, jurisdiction: DE, policy: eu-gdpr@1, processing: [eu]}', async () => {
    const r = await login('us');
    expect(r.accessToken.residency).toEqual(ANNA_RESIDENCY);
    expect(r.accessToken.aud).toBe(API);
    expect(r.idToken.residency).toEqual(ANNA_RESIDENCY);
  });

  it('at eu, the home region: exactly the released email and name, and the same sub as at us', async () => {
    const atUs = await login('us');
    const atEu = await login('eu');
    expect(atEu.idToken.iss).toBe(f.eu.issuer);
    expect(atEu.idToken.sub).toBe(atUs.idToken.sub);
    expect(atEu.accessToken.sub).toBe(atUs.accessToken.sub);
    expect(profileClaimsOf(atEu.idToken)).toEqual(['email', 'name']);
    expect(atEu.idToken.email).toBe(ANNA.claims.email);
    expect(atEu.idToken.name).toBe(ANNA.claims.name);
    expect(atEu.accessToken.residency).toEqual(ANNA_RESIDENCY);
    const u = await userinfo('eu');
    expect(u.userinfo).toEqual({
      sub: atUs.idToken.sub,
      residency: ANNA_RESIDENCY,
      email: ANNA.claims.email,
      name: ANNA.claims.name,
    });
  });

  it('the sub is Meridian’s pseudonym, not the upstream sub', async () => {
    const r = await login('eu');
    expect(r.idToken.sub).not.toBe(f.de.subOf(ANNA.username));
    expect(r.idToken.sub).not.toContain(ANNA.username);
  });
});

describe('RFC 9700 §4.14.2 — refresh token rotation with reuse detection, after a hand-off login', () => {
  it('rotates the refresh token of a login at us handed off to eu; reusing the old one revokes the family', async () => {
    const r = await login('us');
    const app = f.apps.us!;
    const first = r.tokens.refresh_token!;
    expect(first).toBeTruthy();

    const rotated = await tokenRequest(
      f.us.url,
      { grant_type: 'refresh_token', refresh_token: first, resource: API },
      app,
    );
    expect(rotated.status).toBe(200);
    const second = rotated.body.refresh_token as string;
    expect(second).toBeTruthy();
    expect(second).not.toBe(first);
    const refreshed = decodeJwt(rotated.body.access_token as string);
    expect(refreshed.residency).toEqual(ANNA_RESIDENCY);
    expect(refreshed.sub).toBe(r.idToken.sub);
    expect(profileClaimsOf(refreshed)).toEqual([]);
    expect((await introspect(f.us.url, rotated.body.access_token as string, app)).body.active).toBe(true);

    const reuse = await tokenRequest(
      f.us.url,
      { grant_type: 'refresh_token', refresh_token: first, resource: API },
      app,
    );
    expect(reuse.status).toBe(400);
    expect(reuse.body.error).toBe('invalid_grant');

    // The whole family is revoked: the rotated token, and the access token it gave.
    const afterReuse = await tokenRequest(
      f.us.url,
      { grant_type: 'refresh_token', refresh_token: second, resource: API },
      app,
    );
    expect(afterReuse.status).toBe(400);
    expect(afterReuse.body.error).toBe('invalid_grant');
    expect((await introspect(f.us.url, rotated.body.access_token as string, app)).body).toEqual({
      active: false,
    });
  });
});
