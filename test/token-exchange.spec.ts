/**
 * RFC 8693 token exchange: a service holding a token about a person gets a token for one
 * downstream service — narrowed audience and scope, `act` recording the chain, `residency`
 * preserved, never outliving the subject token, refused for unpermitted audiences.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createRemoteJWKSet, decodeJwt, jwtVerify } from 'jose';
import { Client } from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  adminCall,
  freshDatabases,
  introspect,
  startInProcessBroker,
  tokenRequest,
  type InProcessBroker,
} from './support/broker';

const ORDERS = 'https://orders.tx.example';
const STOCK = 'https://stock.tx.example';
const BILLING = 'https://billing.tx.example';
const REDIRECT = 'https://app.tx.example/cb';
const EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const AT_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
const SUB = 'm-tx-person';
const RESIDENCY = { region: 'eu', jurisdiction: 'DE', policy: 'eu-gdpr@1', processing: ['eu'] };
const app = { clientId: 'tx-app', clientSecret: 'tx-app-secret-0123456789abcdefghijklmn' };
const orders = { clientId: 'orders-svc', clientSecret: 'orders-svc-secret-0123456789abcdefghij' };
const other = { clientId: 'other-svc', clientSecret: 'other-svc-secret-0123456789abcdefghijk' };

let broker: InProcessBroker;
let dbs: Awaited<ReturnType<typeof freshDatabases>>;
let userToken: string;
let refreshToken: string;

async function exchange(client: { clientId: string; clientSecret: string }, params: Record<string, string>) {
  return tokenRequest(broker.url, { grant_type: EXCHANGE, subject_token_type: AT_TYPE, ...params }, client);
}

beforeAll(async () => {
  dbs = await freshDatabases('tx');
  broker = await startInProcessBroker({ controlUrl: dbs.control.url, regionUrl: dbs.region.eu!.url });
  const put = async (path: string, body: unknown) => {
    const r = await adminCall(broker, 'PUT', path, body);
    expect(r.status, JSON.stringify(r.body)).toBe(201);
  };
  await put('/admin/resources/orders', {
    audience: ORDERS,
    scopes: ['orders:read'],
    region: 'eu',
    clientId: orders.clientId,
  });
  await put('/admin/resources/stock', {
    audience: STOCK,
    scopes: ['stock:read', 'stock:write'],
    region: 'eu',
    accessTokenTtlSeconds: 3600,
  });
  await put('/admin/resources/billing', { audience: BILLING, scopes: ['billing:read'], region: 'eu' });
  const base = { redirect_uris: [], response_types: [], token_endpoint_auth_method: 'client_secret_basic' };
  await put(`/admin/clients/${app.clientId}`, {
    ...base,
    client_secret: app.clientSecret,
    redirect_uris: [REDIRECT],
    response_types: ['code'],
    grant_types: ['authorization_code', 'refresh_token'],
    scope: 'openid offline_access orders:read',
    resources: [ORDERS],
  });
  await put(`/admin/clients/${orders.clientId}`, {
    ...base,
    client_secret: orders.clientSecret,
    grant_types: [EXCHANGE, 'client_credentials'],
    scope: 'stock:read',
    resources: [STOCK],
  });
  await put(`/admin/clients/${other.clientId}`, {
    ...base,
    client_secret: other.clientSecret,
    grant_types: [EXCHANGE],
    scope: 'stock:read',
    resources: [STOCK],
  });

  const pg = new Client({ connectionString: dbs.region.eu!.url });
  await pg.connect();
  await pg.query('insert into subject (sub, residency, claims) values ($1, $2, $3)', [SUB, RESIDENCY, {}]);
  await pg.end();

  // What a finished login produces (federated login is covered by the e2e suites).
  const provider = broker.running.state.runtime.provider;
  const grant = new provider.Grant({ accountId: SUB, clientId: app.clientId });
  grant.addOIDCScope('openid offline_access');
  grant.addResourceScope(ORDERS, 'orders:read');
  const grantId = await grant.save();
  const verifier = randomBytes(32).toString('base64url');
  const code = await new provider.AuthorizationCode({
    accountId: SUB,
    client: await provider.Client.find(app.clientId),
    grantId,
    scope: 'openid offline_access orders:read',
    redirectUri: REDIRECT,
    codeChallenge: createHash('sha256').update(verifier).digest('base64url'),
    codeChallengeMethod: 'S256',
    resource: ORDERS,
  } as never).save();
  const t = await tokenRequest(
    broker.url,
    {
      grant_type: 'authorization_code',
      code,
      redirect_uri: REDIRECT,
      code_verifier: verifier,
      resource: ORDERS,
    },
    app,
  );
  expect(t.status).toBe(200);
  userToken = t.body.access_token as string;
  refreshToken = t.body.refresh_token as string;
});

afterAll(async () => {
  await broker?.stop();
  await dbs?.drop();
});

describe('RFC 8693 — token exchange', () => {
  it('§2.2 issues a token for the one downstream audience, with act, the subject and its residency', async () => {
    const r = await exchange(orders, {
      subject_token: userToken,
      resource: STOCK,
      scope: 'stock:read stock:write',
    });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body.issued_token_type).toBe(AT_TYPE);
    const { payload } = await jwtVerify(
      r.body.access_token as string,
      createRemoteJWKSet(new URL(`${broker.url}/jwks`)),
      {
        issuer: broker.issuer,
        audience: STOCK,
        typ: 'at+jwt',
      },
    );
    expect(payload.sub).toBe(SUB);
    expect(payload.act).toEqual({ sub: orders.clientId });
    expect(payload.residency).toEqual(RESIDENCY);
    expect(payload.scope).toBe('stock:read'); // stock:write: not a scope the service may ask for
    expect(payload.client_id).toBe(orders.clientId);
  });

  it('never outlives the subject token', async () => {
    const r = await exchange(orders, { subject_token: userToken, resource: STOCK });
    const exchanged = decodeJwt(r.body.access_token as string);
    expect(exchanged.exp!).toBeLessThanOrEqual(decodeJwt(userToken).exp!);
  });

  it('gives a token that is not usable at the original audience (RFC 8707 §2)', async () => {
    const r = await exchange(orders, { subject_token: userToken, resource: STOCK });
    await expect(
      jwtVerify(r.body.access_token as string, createRemoteJWKSet(new URL(`${broker.url}/jwks`)), {
        issuer: broker.issuer,
        audience: ORDERS,
      }),
    ).rejects.toThrow(/aud/);
  });

  it('refuses an audience the service is not registered for with invalid_target', async () => {
    const r = await exchange(orders, { subject_token: userToken, resource: BILLING });
    expect(r.status).toBe(400);
    expect(r.body.error).toBe('invalid_target');
  });

  it('refuses a service exchanging a token that was not issued to it', async () => {
    const r = await exchange(other, { subject_token: userToken, resource: STOCK });
    expect(r.status).toBe(400);
    expect(r.body.error).toBe('invalid_grant');
  });

  it('refuses a forged or garbage subject token', async () => {
    const r = await exchange(orders, { subject_token: `${userToken.slice(0, -4)}AAAA`, resource: STOCK });
    expect(r.status).toBe(400);
    expect(r.body.error).toBe('invalid_grant');
  });

  it('refuses tokens about no person (a service uses client_credentials for itself)', async () => {
    const cc = await tokenRequest(
      broker.url,
      { grant_type: 'client_credentials', resource: STOCK, scope: 'stock:read' },
      orders,
    );
    const r = await exchange(orders, { subject_token: cc.body.access_token as string, resource: STOCK });
    expect(r.status).toBe(400);
    expect(r.body.error).toBe('invalid_request');
  });

  it('refuses a wrong subject_token_type and actor tokens', async () => {
    const a = await tokenRequest(
      broker.url,
      {
        grant_type: EXCHANGE,
        subject_token_type: 'urn:ietf:params:oauth:token-type:id_token',
        subject_token: userToken,
        resource: STOCK,
      },
      orders,
    );
    expect(a.body.error).toBe('invalid_request');
    const b = await exchange(orders, {
      subject_token: userToken,
      resource: STOCK,
      actor_token: userToken,
      actor_token_type: AT_TYPE,
    });
    expect(b.body.error).toBe('invalid_request');
  });

  it('dies with the person’s grant: after refresh-token reuse revokes it, the exchanged token is inactive', async () => {
    const r = await exchange(orders, { subject_token: userToken, resource: STOCK });
    const exchanged = r.body.access_token as string;
    expect((await introspect(broker.url, exchanged, orders)).body.active).toBe(true);
    const first = await tokenRequest(
      broker.url,
      { grant_type: 'refresh_token', refresh_token: refreshToken, resource: ORDERS },
      app,
    );
    expect(first.status).toBe(200);
    const reuse = await tokenRequest(
      broker.url,
      { grant_type: 'refresh_token', refresh_token: refreshToken, resource: ORDERS },
      app,
    );
    expect(reuse.body.error).toBe('invalid_grant');
    expect((await introspect(broker.url, exchanged, orders)).body).toEqual({ active: false });
  });
});
