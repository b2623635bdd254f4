/**
 * Signing keys: rotation without breaking tokens, keys that survive restarts, replicas that
 * agree, and a trust bundle that lists every region.
 */
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify, type JSONWebKeySet } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  adminCall,
  freshDatabases,
  newKek,
  registerService,
  spawnBroker,
  tokenRequest,
  type SpawnedBroker,
} from './support/broker';

const API = 'https://api.keys.example';
let dbs: Awaited<ReturnType<typeof freshDatabases>>;
const kek = newKek();
let eu: SpawnedBroker;
let client: { clientId: string; clientSecret: string };

async function jwks(url: string): Promise<JSONWebKeySet> {
  return (await (await fetch(`${url}/jwks`)).json()) as JSONWebKeySet;
}

async function token(url: string) {
  const { status, body } = await tokenRequest(
    url,
    { grant_type: 'client_credentials', resource: API, scope: 'api:read' },
    client,
  );
  expect(status).toBe(200);
  return body.access_token as string;
}

async function verifyWith(set: JSONWebKeySet, jwt: string, issuer: string) {
  return jwtVerify(jwt, createLocalJWKSet(set), { issuer, audience: API, typ: 'at+jwt' });
}

beforeAll(async () => {
  dbs = await freshDatabases('keys', ['eu', 'us']);
  eu = await spawnBroker({ controlUrl: dbs.control.url, regionUrl: dbs.region.eu!.url, kek });
  client = await registerService(eu, {
    resourceId: 'api',
    audience: API,
    scopes: ['api:read'],
    clientId: 'keys-client',
    clientScope: 'api:read',
  });
});

afterAll(async () => {
  await eu?.stop();
  await dbs?.drop();
});

describe('key rotation', () => {
  it('publishes the next key before it signs: a fresh broker already lists two keys', async () => {
    const set = await jwks(eu.url);
    expect(set.keys.length).toBeGreaterThanOrEqual(2);
    const signing = decodeProtectedHeader(await token(eu.url)).kid;
    expect(set.keys.map((k) => k.kid)).toContain(signing);
  });

  it('keeps a token signed before POST /admin/keys/rotate verifiable after it, and signs with the key that was next', async () => {
    const before = await token(eu.url);
    const setBefore = await jwks(eu.url);
    const oldKid = decodeProtectedHeader(before).kid;
    const nextKid = setBefore.keys.map((k) => k.kid).find((k) => k !== oldKid);

    const rotated = await adminCall(eu, 'POST', '/admin/keys/rotate');
    expect(rotated.status).toBe(200);
    expect(rotated.body).toMatchObject({ current: nextKid, retiring: oldKid });

    const setAfter = await jwks(eu.url);
    expect(setAfter.keys.length).toBeGreaterThanOrEqual(3); // current, retiring, new next
    await expect(verifyWith(setAfter, before, eu.issuer)).resolves.toBeTruthy();
    const after = await token(eu.url);
    expect(decodeProtectedHeader(after).kid).toBe(nextKid);
    await expect(verifyWith(setAfter, after, eu.issuer)).resolves.toBeTruthy();
  });

  it('keeps the same keys across a restart with the same KEK', async () => {
    const before = (await jwks(eu.url)).keys.map((k) => k.kid).sort();
    const signedBefore = decodeProtectedHeader(await token(eu.url)).kid;
    await eu.stop();
    eu = await spawnBroker({ controlUrl: dbs.control.url, regionUrl: dbs.region.eu!.url, kek });
    expect((await jwks(eu.url)).keys.map((k) => k.kid).sort()).toEqual(before);
    expect(decodeProtectedHeader(await token(eu.url)).kid).toBe(signedBefore);
  });

  it('lets two broker processes of one region sign with keys that both publish', async () => {
    // Replicas share the region's issuer (one public URL behind a load balancer).
    const replica = await spawnBroker({
      controlUrl: dbs.control.url,
      regionUrl: dbs.region.eu!.url,
      kek,
      adminClientSecret: eu.adminClientSecret,
      issuer: eu.issuer,
    });
    try {
      const fromA = await token(eu.url);
      const fromB = await token(replica.url);
      const setA = await jwks(eu.url);
      const setB = await jwks(replica.url);
      await expect(verifyWith(setB, fromA, eu.issuer)).resolves.toBeTruthy();
      await expect(verifyWith(setA, fromB, eu.issuer)).resolves.toBeTruthy();
      expect(setA.keys.map((k) => k.kid).sort()).toEqual(setB.keys.map((k) => k.kid).sort());
    } finally {
      await replica.stop();
    }
  });
});

describe('trust bundle', () => {
  it('lists every region of the control plane with its issuer and public JWKS only', async () => {
    const us = await spawnBroker({
      region: 'us',
      controlUrl: dbs.control.url,
      regionUrl: dbs.region.us!.url,
    });
    try {
      const bundle = (await (await fetch(`${eu.url}/.well-known/meridian/trust-bundle`)).json()) as {
        regions: { region: string; issuer: string; jwks: JSONWebKeySet }[];
      };
      const byRegion = Object.fromEntries(bundle.regions.map((r) => [r.region, r]));
      expect(byRegion.eu?.issuer).toBe(eu.issuer);
      expect(byRegion.us?.issuer).toBe(us.issuer);
      expect(byRegion.us!.jwks.keys.map((k) => k.kid).sort()).toEqual(
        (await jwks(us.url)).keys.map((k) => k.kid).sort(),
      );
      for (const r of bundle.regions) for (const k of r.jwks.keys) expect(k).not.toHaveProperty('d');
      // A token from us verifies with the bundle fetched from eu.
      const usToken = await tokenRequest(
        us.url,
        { grant_type: 'client_credentials', resource: API, scope: 'api:read' },
        client,
      );
      expect(usToken.status).toBe(200);
      await expect(
        verifyWith(byRegion.us!.jwks, usToken.body.access_token as string, us.issuer),
      ).resolves.toBeTruthy();
      expect(
        (await verifyWith(byRegion.us!.jwks, usToken.body.access_token as string, us.issuer)).payload
          .residency,
      ).toMatchObject({ region: 'us', jurisdiction: 'US' });
    } finally {
      await us.stop();
    }
  });
});

describe('signing algorithm selection', () => {
  it.each(['PS256', 'EdDSA', 'RS256'])(
    'signs access tokens with %s when MERIDIAN_SIGNING_ALG says so',
    async (alg) => {
      const fresh = await freshDatabases(`alg_${alg.toLowerCase()}`);
      const b = await spawnBroker({
        controlUrl: fresh.control.url,
        regionUrl: fresh.region.eu!.url,
        extra: { MERIDIAN_SIGNING_ALG: alg },
      });
      try {
        const c = await registerService(b, {
          resourceId: 'api',
          audience: API,
          scopes: ['api:read'],
          clientId: 'alg-client',
          clientScope: 'api:read',
        });
        const { status, body } = await tokenRequest(
          b.url,
          { grant_type: 'client_credentials', resource: API, scope: 'api:read' },
          c,
        );
        expect(status).toBe(200);
        expect(decodeProtectedHeader(body.access_token as string).alg).toBe(alg);
        await expect(
          verifyWith(await jwks(b.url), body.access_token as string, b.issuer),
        ).resolves.toBeTruthy();
      } finally {
        await b.stop();
        await fresh.drop();
      }
    },
  );
});
