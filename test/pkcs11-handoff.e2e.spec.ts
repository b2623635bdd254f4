/**
 * Two regions whose signing keys live in a PKCS#11 token (SoftHSM2), end to end (issue 6): a
 * hand-off from us to eu authenticates the us broker at eu by private_key_jwt signed in the
 * token, the tokens both brokers issue verify against their JWKS, and an erasure at eu reaches
 * us by a notice signed in the token. No private key of either region exists outside the token.
 */
import { Client } from 'pg';
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify, type JSONWebKeySet } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminToken } from './support/broker';
import { ANNA, FederationFixture } from './support/federation-fixture';
import { createSoftHsmToken, softHsmAvailable, type SoftHsmToken } from './support/softhsm';

// CI installs the packages: there a missing SoftHSM2 is a failure, not a skip.
const RUN = softHsmAvailable() || !!process.env.CI;
const f = new FederationFixture();
let token: SoftHsmToken;

async function regionRows<T extends Record<string, unknown>>(
  region: 'eu' | 'us',
  sql: string,
  params: unknown[] = [],
) {
  const c = new Client({ connectionString: f.regionUrl(region) });
  await c.connect();
  try {
    return (await c.query<T>(sql, params)).rows;
  } finally {
    await c.end();
  }
}

describe.runIf(RUN)('regions with their keys in a PKCS#11 token', () => {
  beforeAll(async () => {
    token = createSoftHsmToken('meridian-e2e');
    await f.start('pkcs11_handoff', {
      env: {
        MERIDIAN_SIGNING_KEY_PROVIDER: 'pkcs11',
        MERIDIAN_PKCS11_MODULE: token.module,
        MERIDIAN_PKCS11_TOKEN_LABEL: token.label,
        MERIDIAN_PKCS11_PIN: token.pin,
        ...token.env,
      },
    });
  }, 120_000);

  afterAll(async () => {
    await f.stop();
    token?.remove();
  });

  it('every signing key of both regions is held by the token (no sealed private key in either database)', async () => {
    for (const region of ['eu', 'us'] as const) {
      // In PKCS#11 mode the row holds the label of the key's objects in the token, nothing sealed.
      const rows = await regionRows<{ kid: string; kek_id: string; label: string }>(
        region,
        "select kid, kek_id, convert_from(sealed_private_jwk, 'UTF8') as label from signing_key",
      );
      expect(rows.length).toBeGreaterThan(0);
      for (const row of rows)
        expect(row).toEqual({ kid: row.kid, kek_id: 'pkcs11', label: `meridian:${region}:${row.kid}` });
    }
  });

  it('RFC 7523 §2.2: a hand-off (us app, person homed in eu) works, the us broker authenticating at eu with an assertion signed in the token', async () => {
    const r = await f.login('us', 'de-eid', ANNA);
    if ('error' in r) throw new Error(`${r.error}: ${r.description}`);
    expect(r.idToken).toMatchObject({ residency: { region: 'eu' } });
    // Both the token us issued and the one eu issued to us (inside the hand-off) verify.
    const jwks = (await (await fetch(`${f.us.url}/jwks`)).json()) as JSONWebKeySet;
    const { protectedHeader } = await jwtVerify(r.tokens.access_token, createLocalJWKSet(jwks), {
      issuer: f.us.issuer,
    });
    expect(jwks.keys.map((k) => k.kid)).toContain(protectedHeader.kid);
    expect(decodeProtectedHeader(r.tokens.id_token).alg).toBe('ES256');
    // eu saw the us broker authenticate by private_key_jwt with a key us published.
    const grants = await regionRows<{ payload: { clientId: string } }>(
      'eu',
      "select payload from oidc_payload where model = 'Grant'",
    );
    expect(grants.map((g) => g.payload.clientId)).toContain('meridian-region-us');
  });

  it('an erasure at eu reaches the us copy by a notice signed in the token', async () => {
    const r = await f.login('us', 'de-eid', ANNA);
    if ('error' in r) throw new Error(`${r.error}: ${r.description}`);
    const sub = r.idToken.sub!;
    expect(await regionRows('us', 'select 1 from subject where sub = $1', [sub])).toHaveLength(1);
    const compliance = await adminToken(f.eu, 'meridian:compliance');
    const res = await fetch(`${f.eu.url}/privacy/subjects/${sub}`, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${compliance}` },
    });
    expect(res.status).toBe(200);
    expect(await regionRows('us', 'select 1 from subject where sub = $1', [sub])).toHaveLength(0);
  });
});
