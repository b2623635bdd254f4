/**
 * RFC 7523 §2.2 towards the upstream: a federation whose broker client authenticates with
 * private_key_jwt, signed with the region's own signing key (the upstream fetches the broker's
 * JWKS), with no client secret anywhere.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminCall } from './support/broker';
import { ANNA, FederationFixture } from './support/federation-fixture';

const f = new FederationFixture();

beforeAll(async () => {
  await f.start('fedpkjwt');
  await f.de.addClient({
    client_id: 'meridian-eu-pkjwt',
    redirect_uris: [`${f.eu.issuer}/federation/callback`],
    token_endpoint_auth_method: 'private_key_jwt',
    token_endpoint_auth_signing_alg: 'ES256',
    jwks_uri: `${f.eu.url}/jwks`,
    scope: 'openid email profile',
  });
  const put = await adminCall(f.eu, 'PUT', '/admin/federations/de-pkjwt', {
    displayName: 'German eID (private_key_jwt)',
    issuer: f.de.issuer,
    clientId: 'meridian-eu-pkjwt',
    tokenEndpointAuthMethod: 'private_key_jwt',
    kind: 'national',
    jurisdiction: 'DE',
  });
  expect(put.status).toBe(201);
  expect(put.body.hasClientSecret).toBe(false);
});

afterAll(async () => {
  await f.stop();
});

describe('RFC 7523 §2.2 — private_key_jwt to the upstream IdP', () => {
  it('logs a person in without any client secret', async () => {
    const r = await f.login('eu', 'de-pkjwt', ANNA);
    expect('error' in r ? `${r.error}: ${r.description}` : 'ok').toBe('ok');
    if ('error' in r) return;
    expect(r.idToken.email).toBe(ANNA.claims.email);
    expect(r.accessToken.residency).toMatchObject({ region: 'eu', jurisdiction: 'DE' });
  });
});
