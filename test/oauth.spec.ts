/**
 * The OP engine as services and apps see it: discovery, client_credentials with resource
 * indicators, RFC 9068 access tokens, introspection and revocation, and the authorization
 * endpoint's refusals. One spawned broker on real PostgreSQL.
 */
import { SignJWT, createRemoteJWKSet, decodeJwt, exportJWK, generateKeyPair, jwtVerify } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  adminCall,
  clientCredentials,
  introspect,
  adminToken,
  freshDatabases,
  registerService,
  spawnBroker,
  tokenRequest,
  type SpawnedBroker,
} from './support/broker';
import { TestBrowser } from './support/browser';

let broker: SpawnedBroker;
let dbs: Awaited<ReturnType<typeof freshDatabases>>;
let orders: { clientId: string; clientSecret: string };
const ORDERS = 'https://orders.test.example';
const BILLING = 'https://billing.test.example';
const SHORT = 'https://short.test.example';

function introspectAs(token: string, auth = orders) {
  return introspect(broker.url, token, auth);
}

beforeAll(async () => {
  dbs = await freshDatabases('oauth');
  broker = await spawnBroker({ controlUrl: dbs.control.url, regionUrl: dbs.region.eu!.url });
  orders = await registerService(broker, {
    resourceId: 'orders',
    audience: ORDERS,
    scopes: ['orders:read', 'orders:write'],
    clientId: 'orders-client',
    clientScope: 'orders:read',
    ttl: 120,
  });
  await registerService(broker, {
    resourceId: 'billing',
    audience: BILLING,
    scopes: ['billing:read'],
    clientId: 'billing-client',
    clientScope: 'billing:read',
  });
  await registerService(broker, {
    resourceId: 'short',
    audience: SHORT,
    scopes: ['s'],
    clientId: 'short-client',
    clientScope: 's',
    ttl: 1,
  });
});

afterAll(async () => {
  await broker?.stop();
  await dbs?.drop();
});

describe('OpenID Connect Discovery 1.0 §3 — provider metadata', () => {
  it('names MERIDIAN_ISSUER as issuer and serves every endpoint on its origin, whatever Host the request carried', async () => {
    const res = await fetch(`${broker.url}/.well-known/openid-configuration`, {
      headers: { 'x-forwarded-host': 'evil.example', 'x-forwarded-proto': 'https' },
    });
    const meta = (await res.json()) as Record<string, unknown>;
    expect(meta.issuer).toBe(broker.issuer);
    for (const key of [
      'authorization_endpoint',
      'token_endpoint',
      'jwks_uri',
      'introspection_endpoint',
      'revocation_endpoint',
      'userinfo_endpoint',
      'end_session_endpoint',
    ]) {
      expect(String(meta[key]).startsWith(`${broker.issuer}/`), key).toBe(true);
    }
  });

  it('offers only the code response type and only S256 PKCE (RFC 9700 §2.1.1)', async () => {
    const meta = (await (await fetch(`${broker.url}/.well-known/openid-configuration`)).json()) as Record<
      string,
      unknown
    >;
    expect(meta.response_types_supported).toEqual(['code']);
    expect(meta.code_challenge_methods_supported).toEqual(['S256']);
  });

  it('announces RFC 9207 iss in authorization responses', async () => {
    const meta = (await (await fetch(`${broker.url}/.well-known/openid-configuration`)).json()) as Record<
      string,
      unknown
    >;
    expect(meta.authorization_response_iss_parameter_supported).toBe(true);
  });

  it('offers no "none" and no HMAC algorithm anywhere (RFC 8725 §3.1)', async () => {
    const meta = (await (await fetch(`${broker.url}/.well-known/openid-configuration`)).json()) as Record<
      string,
      unknown
    >;
    for (const [key, value] of Object.entries(meta)) {
      if (!key.endsWith('alg_values_supported')) continue;
      expect(value, key).not.toContain('none');
      expect(
        (value as string[]).some((a) => a.startsWith('HS')),
        key,
      ).toBe(false);
    }
  });
});

describe('RFC 6749 §4.4 client_credentials with RFC 8707 resource indicators', () => {
  it('issues a token whose aud is exactly the requested resource', async () => {
    const { status, body } = await clientCredentials(broker.url, orders, ORDERS, 'orders:read');
    expect(status).toBe(200);
    const claims = decodeJwt(body.access_token as string);
    expect(claims.aud).toBe(ORDERS);
    expect(claims.scope).toBe('orders:read');
  });

  it('RFC 8707 §2 — refuses a resource the client is not permitted with invalid_target', async () => {
    const { status, body } = await clientCredentials(broker.url, orders, BILLING, 'billing:read');
    expect(status).toBe(400);
    expect(body.error).toBe('invalid_target');
  });

  it('RFC 8707 §2 — refuses an unknown resource with invalid_target', async () => {
    const { status, body } = await clientCredentials(broker.url, orders, 'https://nobody.example');
    expect(status).toBe(400);
    expect(body.error).toBe('invalid_target');
  });

  it('RFC 6749 §3.3 — does not grant a scope the client was not registered for', async () => {
    const { status, body } = await clientCredentials(broker.url, orders, ORDERS, 'orders:read orders:write');
    expect(status).toBe(200);
    expect(decodeJwt(body.access_token as string).scope).toBe('orders:read');
  });

  it('RFC 6749 §5.2 — answers a wrong secret with 401 invalid_client', async () => {
    const { status, body } = await tokenRequest(
      broker.url,
      { grant_type: 'client_credentials', resource: ORDERS },
      { ...orders, clientSecret: `${orders.clientSecret}x` },
    );
    expect(status).toBe(401);
    expect(body.error).toBe('invalid_client');
  });

  it('RFC 6749 §2.3.1 — accepts client_secret_post for a client registered for it', async () => {
    const token = await adminToken(broker);
    const secret = 'post-secret-0123456789abcdefghijklmnop';
    const put = await adminCall(
      broker,
      'PUT',
      '/admin/clients/post-client',
      {
        client_secret: secret,
        redirect_uris: [],
        grant_types: ['client_credentials'],
        response_types: [],
        token_endpoint_auth_method: 'client_secret_post',
        scope: 'orders:read',
        resources: [ORDERS],
      },
      token,
    );
    expect(put.status).toBe(201);
    const { status, body } = await tokenRequest(broker.url, {
      grant_type: 'client_credentials',
      resource: ORDERS,
      client_id: 'post-client',
      client_secret: secret,
    });
    expect(status).toBe(200);
    expect(decodeJwt(body.access_token as string).client_id).toBe('post-client');
  });

  it('RFC 7523 §2.2 — accepts private_key_jwt client authentication and refuses an assertion signed by another key', async () => {
    const { privateKey, publicKey } = await generateKeyPair('ES256');
    const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' };
    const put = await adminCall(broker, 'PUT', '/admin/clients/pkjwt-client', {
      redirect_uris: [],
      grant_types: ['client_credentials'],
      response_types: [],
      token_endpoint_auth_method: 'private_key_jwt',
      jwks: { keys: [jwk] },
      scope: 'orders:read',
      resources: [ORDERS],
    });
    expect(put.status).toBe(201);
    expect(put.body.client_secret).toBeUndefined();
    const assertion = (key: Parameters<SignJWT['sign']>[0]) =>
      new SignJWT({})
        .setProtectedHeader({ alg: 'ES256', kid: 'k1' })
        .setIssuer('pkjwt-client')
        .setSubject('pkjwt-client')
        .setAudience(broker.issuer)
        .setJti(crypto.randomUUID())
        .setIssuedAt()
        .setExpirationTime('1m')
        .sign(key);
    const params = {
      grant_type: 'client_credentials',
      resource: ORDERS,
      scope: 'orders:read',
      client_id: 'pkjwt-client',
      client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
    };
    const ok = await tokenRequest(broker.url, { ...params, client_assertion: await assertion(privateKey) });
    expect(ok.status).toBe(200);
    const other = await generateKeyPair('ES256');
    const bad = await tokenRequest(broker.url, {
      ...params,
      client_assertion: await assertion(other.privateKey),
    });
    expect(bad.status).toBe(401);
    expect(bad.body.error).toBe('invalid_client');
  });
});

describe('RFC 9068 — JWT access tokens', () => {
  it('verify against the JWKS with typ at+jwt and carry the CONTRACT claims, residency included', async () => {
    const { body } = await clientCredentials(broker.url, orders, ORDERS, 'orders:read');
    const jwks = createRemoteJWKSet(new URL(`${broker.url}/jwks`));
    const { payload, protectedHeader } = await jwtVerify(body.access_token as string, jwks, {
      issuer: broker.issuer,
      audience: ORDERS,
      typ: 'at+jwt',
    });
    expect(protectedHeader.alg).toBe('ES256');
    expect(Object.keys(payload).sort()).toEqual(
      ['aud', 'client_id', 'exp', 'iat', 'iss', 'jti', 'residency', 'scope', 'sub'].sort(),
    );
    expect(payload.sub).toBe('orders-client');
    expect(payload.residency).toEqual({
      region: 'eu',
      jurisdiction: 'EU',
      policy: 'none',
      processing: ['eu'],
    });
  });

  it('live no longer than the resource TTL', async () => {
    const { body } = await clientCredentials(broker.url, orders, ORDERS, 'orders:read');
    const { exp, iat } = decodeJwt(body.access_token as string);
    expect(exp! - iat!).toBe(120);
    expect(body.expires_in).toBeLessThanOrEqual(120);
  });
});

describe('RFC 7662 — introspection of the broker’s own JWT access tokens', () => {
  it('answers active with the token’s claims for a live token', async () => {
    const { body } = await clientCredentials(broker.url, orders, ORDERS, 'orders:read');
    const r = await introspectAs(body.access_token as string);
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({
      active: true,
      aud: ORDERS,
      client_id: 'orders-client',
      iss: broker.issuer,
      scope: 'orders:read',
    });
    expect(r.body.residency).toMatchObject({ region: 'eu' });
  });

  it('§2.2 — answers only {active:false} for a forged token (right claims, foreign key)', async () => {
    const { privateKey } = await generateKeyPair('ES256');
    const forged = await new SignJWT({ client_id: 'orders-client', scope: 'orders:read', residency: {} })
      .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid: 'forged' })
      .setIssuer(broker.issuer)
      .setSubject('orders-client')
      .setAudience(ORDERS)
      .setJti('forged-jti')
      .setIssuedAt()
      .setExpirationTime('5m')
      .sign(privateKey);
    expect((await introspectAs(forged)).body).toEqual({ active: false });
  });

  it('§2.2 — answers only {active:false} for an alg:none token', async () => {
    const enc = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const now = Math.floor(Date.now() / 1000);
    const none = `${enc({ alg: 'none', typ: 'at+jwt' })}.${enc({ iss: broker.issuer, sub: 'x', aud: ORDERS, client_id: 'x', jti: 'n', iat: now, exp: now + 60 })}.`;
    expect((await introspectAs(none)).body).toEqual({ active: false });
  });

  it('§2.2 — answers only {active:false} for an expired token', async () => {
    const short = await tokenRequest(
      broker.url,
      { grant_type: 'client_credentials', resource: SHORT, scope: 's' },
      {
        clientId: 'short-client',
        clientSecret: (
          await registerService(broker, {
            resourceId: 'short',
            audience: SHORT,
            scopes: ['s'],
            clientId: 'short-client',
            clientScope: 's',
            ttl: 1,
          })
        ).clientSecret,
      },
    );
    expect(short.status).toBe(200);
    await new Promise((r) => setTimeout(r, 2_100));
    expect((await introspectAs(short.body.access_token as string)).body).toEqual({ active: false });
  });

  it('RFC 7009 §2.1 — a revoked token introspects as {active:false}', async () => {
    const { body } = await clientCredentials(broker.url, orders, ORDERS, 'orders:read');
    const token = body.access_token as string;
    expect((await introspectAs(token)).body.active).toBe(true);
    const rev = await fetch(`${broker.url}/token/revocation`, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        authorization: `Basic ${Buffer.from(`${orders.clientId}:${orders.clientSecret}`).toString('base64')}`,
      },
      body: new URLSearchParams({ token, token_type_hint: 'access_token' }),
    });
    expect(rev.status).toBe(200);
    expect((await introspectAs(token)).body).toEqual({ active: false });
  });

  it('RFC 7009 §2.1 — a client cannot revoke another client’s token', async () => {
    const { body } = await clientCredentials(broker.url, orders, ORDERS, 'orders:read');
    const admin = { clientId: broker.adminClientId, clientSecret: broker.adminClientSecret };
    const rev = await fetch(`${broker.url}/token/revocation`, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        authorization: `Basic ${Buffer.from(`${admin.clientId}:${admin.clientSecret}`).toString('base64')}`,
      },
      body: new URLSearchParams({ token: body.access_token as string }),
    });
    expect(rev.status).toBe(400);
    expect((await introspectAs(body.access_token as string)).body.active).toBe(true);
  });

  it('§4 — tells a client that is neither the token’s client nor its service only {active:false}', async () => {
    const { body } = await clientCredentials(broker.url, orders, ORDERS, 'orders:read');
    const billing = await registerService(broker, {
      resourceId: 'billing',
      audience: BILLING,
      scopes: ['billing:read'],
      clientId: 'billing-client',
      clientScope: 'billing:read',
    });
    expect((await introspectAs(body.access_token as string, billing)).body).toEqual({ active: false });
    expect((await introspectAs(body.access_token as string)).body.active).toBe(true);
  });

  it('§2.1 — requires client authentication', async () => {
    const { body } = await clientCredentials(broker.url, orders, ORDERS, 'orders:read');
    const res = await fetch(`${broker.url}/token/introspection`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ token: body.access_token as string }),
    });
    // oidc-provider answers a request with no client authentication at all as a malformed
    // request (400 invalid_request) and failed authentication as 401 invalid_client.
    expect([400, 401]).toContain(res.status);
    const answer = (await res.json()) as Record<string, unknown>;
    expect(['invalid_request', 'invalid_client']).toContain(answer.error);
    expect(answer.active).toBeUndefined();
  });
});

describe('authorization endpoint — RFC 9700 refusals and the pending login', () => {
  const redirectUri = 'https://app.test.example/callback';
  const challenge = 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM';

  beforeAll(async () => {
    const put = await adminCall(broker, 'PUT', '/admin/clients/web-app', {
      client_secret: 'web-app-secret-0123456789abcdefghijklmn',
      redirect_uris: [redirectUri],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
      scope: 'openid offline_access orders:read',
      resources: [ORDERS],
    });
    expect(put.status).toBe(201);
  });

  const authorize = (params: Record<string, string>) =>
    fetch(
      `${broker.url}/auth?${new URLSearchParams({ client_id: 'web-app', redirect_uri: redirectUri, response_type: 'code', scope: 'openid', state: 's1', ...params })}`,
      {
        redirect: 'manual',
      },
    );

  function redirectParams(res: Response): URLSearchParams {
    const location = res.headers.get('location') ?? '';
    expect(location.startsWith(redirectUri)).toBe(true);
    return new URL(location).searchParams;
  }

  it('RFC 9700 §2.1.1 — refuses a request without PKCE, with an error redirect carrying iss (RFC 9207)', async () => {
    const res = await authorize({});
    expect(res.status).toBe(303);
    const p = redirectParams(res);
    expect(p.get('error')).toBe('invalid_request');
    expect(p.get('iss')).toBe(broker.issuer);
    expect(p.get('state')).toBe('s1');
  });

  it('RFC 7636 §4.2 — refuses code_challenge_method=plain', async () => {
    const res = await authorize({ code_challenge: challenge, code_challenge_method: 'plain' });
    expect(redirectParams(res).get('error')).toBe('invalid_request');
  });

  it('RFC 9700 §2.1.2 — refuses the implicit response type', async () => {
    const res = await authorize({
      response_type: 'token',
      code_challenge: challenge,
      code_challenge_method: 'S256',
    });
    const location = res.headers.get('location') ?? '';
    expect(location).toContain('error=unsupported_response_type');
  });

  it('RFC 6749 §4.1.2.1 — never redirects to an unregistered redirect_uri', async () => {
    const res = await authorize({
      redirect_uri: 'https://evil.example/cb',
      code_challenge: challenge,
      code_challenge_method: 'S256',
    });
    expect(res.status).toBe(400);
    expect(res.headers.get('location')).toBeNull();
    const html = await res.text();
    expect(html).toContain('redirect_uri');
    expect(html).not.toMatch(/\n\s+at /);
  });

  it('shows the login page for a valid request, and Cancel ends in an access_denied redirect with iss (RFC 9207)', async () => {
    const browser = new TestBrowser();
    const start = new URL(`${broker.url}/auth`);
    for (const [k, v] of Object.entries({
      client_id: 'web-app',
      redirect_uri: redirectUri,
      response_type: 'code',
      scope: 'openid',
      state: 's1',
      code_challenge: challenge,
      code_challenge_method: 'S256',
    }))
      start.searchParams.set(k, v);
    const page = await browser.follow(start.href, { stopAt: (u) => u.href.startsWith(redirectUri) });
    expect(page.status).toBe(200);
    expect(page.url.pathname).toMatch(/^\/interaction\//);
    expect(page.headers.get('content-security-policy')).toContain("default-src 'none'");
    expect(page.html).toContain('Sign in');
    expect(page.html).not.toMatch(/<script/i);
    const back = await browser.submit(page, { action: /\/cancel$/ }, {}, undefined, {
      stopAt: (u) => u.href.startsWith(redirectUri),
    });
    const p = back.url.searchParams;
    expect(p.get('error')).toBe('access_denied');
    expect(p.get('error_description')).toMatch(/cancelled/);
    expect(p.get('iss')).toBe(broker.issuer);
    expect(p.get('state')).toBe('s1');
  });

  it('answers idp_hint naming no federation with an access_denied redirect a person can read', async () => {
    const browser = new TestBrowser();
    const start = new URL(`${broker.url}/auth`);
    for (const [k, v] of Object.entries({
      client_id: 'web-app',
      redirect_uri: redirectUri,
      response_type: 'code',
      scope: 'openid',
      state: 's2',
      code_challenge: challenge,
      code_challenge_method: 'S256',
      idp_hint: 'nobody',
    }))
      start.searchParams.set(k, v);
    const back = await browser.follow(start.href, { stopAt: (u) => u.href.startsWith(redirectUri) });
    expect(back.url.searchParams.get('error')).toBe('access_denied');
    expect(back.url.searchParams.get('error_description')).toMatch(/no identity provider "nobody"/);
  });
});
