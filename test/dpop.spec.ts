/**
 * RFC 9449 DPoP at the broker's token endpoint: access tokens bound to the client's key
 * (`cnf.jkt`), proofs required for clients registered for it, replayed or misdirected proofs
 * refused.
 */
import { SignJWT, calculateJwkThumbprint, decodeJwt, exportJWK, generateKeyPair } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminCall, freshDatabases, spawnBroker, type SpawnedBroker } from './support/broker';

const API = 'https://api.dpop.example';
let broker: SpawnedBroker;
let dbs: Awaited<ReturnType<typeof freshDatabases>>;
const client = { clientId: 'dpop-client', clientSecret: 'dpop-client-secret-0123456789abcdefghij' };
let keys: Awaited<ReturnType<typeof generateKeyPair>>;
let publicJwk: Awaited<ReturnType<typeof exportJWK>>;

async function proof(o: { htm?: string; htu?: string; jti?: string; iat?: number } = {}) {
  return new SignJWT({ htm: o.htm ?? 'POST', htu: o.htu ?? `${broker.issuer}/token` })
    .setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk: publicJwk })
    .setJti(o.jti ?? crypto.randomUUID())
    .setIssuedAt(o.iat ?? Math.floor(Date.now() / 1000))
    .sign(keys.privateKey);
}

async function dpopTokenRequest(dpop: string | undefined) {
  const res = await fetch(`${broker.url}/token`, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      authorization: `Basic ${Buffer.from(`${client.clientId}:${client.clientSecret}`).toString('base64')}`,
      ...(dpop ? { dpop } : {}),
    },
    body: new URLSearchParams({ grant_type: 'client_credentials', resource: API, scope: 'api:read' }),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

beforeAll(async () => {
  dbs = await freshDatabases('dpop');
  broker = await spawnBroker({ controlUrl: dbs.control.url, regionUrl: dbs.region.eu!.url });
  expect(
    (
      await adminCall(broker, 'PUT', '/admin/resources/api', {
        audience: API,
        scopes: ['api:read'],
        region: 'eu',
      })
    ).status,
  ).toBe(201);
  const put = await adminCall(broker, 'PUT', `/admin/clients/${client.clientId}`, {
    client_secret: client.clientSecret,
    redirect_uris: [],
    grant_types: ['client_credentials'],
    response_types: [],
    token_endpoint_auth_method: 'client_secret_basic',
    scope: 'api:read',
    resources: [API],
    dpop_bound_access_tokens: true,
  });
  expect(put.status).toBe(201);
  keys = await generateKeyPair('ES256');
  publicJwk = await exportJWK(keys.publicKey);
});

afterAll(async () => {
  await broker?.stop();
  await dbs?.drop();
});

describe('RFC 9449 — DPoP at the token endpoint', () => {
  it('§5 binds the access token to the proof key: token_type DPoP and cnf.jkt', async () => {
    const r = await dpopTokenRequest(await proof());
    expect(r.status).toBe(200);
    expect(r.body.token_type).toBe('DPoP');
    const claims = decodeJwt(r.body.access_token as string) as { cnf?: { jkt?: string } };
    expect(claims.cnf?.jkt).toBe(await calculateJwkThumbprint(publicJwk));
  });

  it('§5.2 refuses a request without a proof from a client registered for DPoP', async () => {
    const r = await dpopTokenRequest(undefined);
    expect(r.status).toBe(400);
    // oidc-provider answers invalid_grant ("DPoP proof JWT not provided").
    expect(r.body.error).toBe('invalid_grant');
    expect(r.body.access_token).toBeUndefined();
  });

  it('§11.1 refuses a replayed proof', async () => {
    const p = await proof();
    expect((await dpopTokenRequest(p)).status).toBe(200);
    const again = await dpopTokenRequest(p);
    expect(again.status).toBe(400);
    // oidc-provider answers invalid_grant ("DPoP proof JWT Replay detected").
    expect(again.body.error).toBe('invalid_grant');
    expect(again.body.access_token).toBeUndefined();
  });

  it('§4.3 refuses a proof for another method or URL', async () => {
    for (const bad of [
      await proof({ htm: 'GET' }),
      await proof({ htu: 'https://elsewhere.example/token' }),
    ]) {
      const r = await dpopTokenRequest(bad);
      expect(r.status).toBe(400);
      expect(r.body.error).toBe('invalid_dpop_proof');
    }
  });

  it('§4.3 refuses a stale proof', async () => {
    const r = await dpopTokenRequest(await proof({ iat: Math.floor(Date.now() / 1000) - 3600 }));
    expect(r.status).toBe(400);
    expect(r.body.error).toBe('invalid_dpop_proof');
  });
});
