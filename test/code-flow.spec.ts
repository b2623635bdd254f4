/**
 * Authorization code + PKCE and refresh-token rotation, on a broker running in this process.
 * Federated login arrives later, so the test plays the login's part: it records a subject in
 * the region and asks oidc-provider (the OP engine, not a mock) for the code a finished
 * login would produce. Everything after that is real HTTP.
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

const API = 'https://api.flow.example';
const REDIRECT = 'https://app.flow.example/cb';
const app = { clientId: 'flow-app', clientSecret: 'flow-app-secret-0123456789abcdefghijkl' };
const SUB = 'sub-7f3a9c';
const RESIDENCY = { region: 'eu', jurisdiction: 'DE', policy: 'eu-gdpr@1', processing: ['eu'] };

let broker: InProcessBroker;
let dbs: Awaited<ReturnType<typeof freshDatabases>>;

function pkce() {
  const verifier = randomBytes(32).toString('base64url');
  return { verifier, challenge: createHash('sha256').update(verifier).digest('base64url') };
}

/** What the login interaction will do once federation lands: a grant and a code for it. */
async function issueCode(challenge: string, scope = 'openid offline_access api:read') {
  const provider = broker.running.state.runtime.provider;
  const client = await provider.Client.find(app.clientId);
  const grant = new provider.Grant({ accountId: SUB, clientId: app.clientId });
  grant.addOIDCScope('openid offline_access');
  grant.addResourceScope(API, 'api:read');
  const grantId = await grant.save();
  const code = new provider.AuthorizationCode({
    accountId: SUB,
    client,
    grantId,
    scope,
    redirectUri: REDIRECT,
    codeChallenge: challenge,
    codeChallengeMethod: 'S256',
    resource: API,
    authTime: Math.floor(Date.now() / 1000),
  } as never);
  return { code: await code.save(), grantId };
}

async function redeem(code: string, verifier?: string, redirectUri = REDIRECT) {
  return tokenRequest(
    broker.url,
    {
      grant_type: 'authorization_code',
      code,
      redirect_uri: redirectUri,
      resource: API,
      ...(verifier ? { code_verifier: verifier } : {}),
    },
    app,
  );
}

async function refresh(refreshToken: string) {
  return tokenRequest(
    broker.url,
    { grant_type: 'refresh_token', refresh_token: refreshToken, resource: API },
    app,
  );
}

async function introspectAs(token: string) {
  return (await introspect(broker.url, token, app)).body;
}

beforeAll(async () => {
  dbs = await freshDatabases('flow');
  broker = await startInProcessBroker({ controlUrl: dbs.control.url, regionUrl: dbs.region.eu!.url });
  expect(
    (
      await adminCall(broker, 'PUT', '/admin/resources/api', {
        audience: API,
        scopes: ['api:read'],
        region: 'eu',
      })
    ).status,
  ).toBe(201);
  const put = await adminCall(broker, 'PUT', `/admin/clients/${app.clientId}`, {
    client_secret: app.clientSecret,
    redirect_uris: [REDIRECT],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
    scope: 'openid offline_access api:read',
    resources: [API],
  });
  expect(put.status).toBe(201);
  const pg = new Client({ connectionString: dbs.region.eu!.url });
  await pg.connect();
  await pg.query('insert into subject (sub, residency, claims) values ($1, $2, $3)', [SUB, RESIDENCY, {}]);
  await pg.end();
});

afterAll(async () => {
  await broker?.stop();
  await dbs?.drop();
});

describe('RFC 6749 §4.1 + RFC 7636 — authorization code with PKCE', () => {
  it('exchanges a code and its verifier for an RFC 9068 token about the subject, with the subject’s residency', async () => {
    const { verifier, challenge } = pkce();
    const { code } = await issueCode(challenge);
    const { status, body } = await redeem(code, verifier);
    expect(status).toBe(200);
    expect(body.refresh_token).toBeTruthy();
    expect(body.id_token).toBeTruthy();
    const { payload } = await jwtVerify(
      body.access_token as string,
      createRemoteJWKSet(new URL(`${broker.url}/jwks`)),
      {
        issuer: broker.issuer,
        audience: API,
        typ: 'at+jwt',
      },
    );
    expect(payload.sub).toBe(SUB);
    expect(payload.client_id).toBe(app.clientId);
    expect(payload.residency).toEqual(RESIDENCY);
    expect(await introspectAs(body.access_token as string)).toMatchObject({ active: true, sub: SUB });
  });

  it('RFC 7636 §4.6 — refuses a code redeemed without its verifier', async () => {
    const { challenge } = pkce();
    const { code } = await issueCode(challenge);
    const { status, body } = await redeem(code);
    expect(status).toBe(400);
    expect(body.error).toBe('invalid_grant');
  });

  it('RFC 7636 §4.6 — refuses a code redeemed with another verifier', async () => {
    const { challenge } = pkce();
    const { code } = await issueCode(challenge);
    const { status, body } = await redeem(code, pkce().verifier);
    expect(status).toBe(400);
    expect(body.error).toBe('invalid_grant');
  });

  it('RFC 6749 §4.1.3 — refuses a code redeemed with another redirect_uri', async () => {
    const { verifier, challenge } = pkce();
    const { code } = await issueCode(challenge);
    const { status, body } = await redeem(code, verifier, 'https://app.flow.example/other');
    expect(status).toBe(400);
    expect(body.error).toBe('invalid_grant');
  });

  it('RFC 6749 §4.1.2 — a replayed code fails and revokes the tokens issued from it', async () => {
    const { verifier, challenge } = pkce();
    const { code } = await issueCode(challenge);
    const first = await redeem(code, verifier);
    expect(first.status).toBe(200);
    const replay = await redeem(code, verifier);
    expect(replay.status).toBe(400);
    expect(replay.body.error).toBe('invalid_grant');
    expect(await introspectAs(first.body.access_token as string)).toEqual({ active: false });
    expect((await refresh(first.body.refresh_token as string)).body.error).toBe('invalid_grant');
  });

  it('RFC 6749 §4.1.2 — of two parallel redemptions of one code exactly one succeeds', async () => {
    const { verifier, challenge } = pkce();
    const { code } = await issueCode(challenge);
    const results = await Promise.all([
      redeem(code, verifier),
      redeem(code, verifier),
      redeem(code, verifier),
    ]);
    expect(results.filter((r) => r.status === 200).length).toBe(1);
    expect(results.filter((r) => r.status === 400).length).toBe(2);
    expect(results.filter((r) => r.status === 400).every((r) => r.body.error === 'invalid_grant')).toBe(true);
  });
});

describe('RFC 9700 §4.14.2 — refresh token rotation and reuse detection', () => {
  it('rotates the refresh token on every use', async () => {
    const { verifier, challenge } = pkce();
    const { code } = await issueCode(challenge);
    const t0 = await redeem(code, verifier);
    const t1 = await refresh(t0.body.refresh_token as string);
    expect(t1.status).toBe(200);
    expect(t1.body.refresh_token).toBeTruthy();
    expect(t1.body.refresh_token).not.toBe(t0.body.refresh_token);
    expect(decodeJwt(t1.body.access_token as string).aud).toBe(API);
  });

  it('revokes the whole family when an old refresh token is reused', async () => {
    const { verifier, challenge } = pkce();
    const { code } = await issueCode(challenge);
    const t0 = await redeem(code, verifier);
    const t1 = await refresh(t0.body.refresh_token as string);
    expect(t1.status).toBe(200);
    const reuse = await refresh(t0.body.refresh_token as string);
    expect(reuse.status).toBe(400);
    expect(reuse.body.error).toBe('invalid_grant');
    // The attacker's or the victim's newer token: both dead now.
    const after = await refresh(t1.body.refresh_token as string);
    expect(after.body.error).toBe('invalid_grant');
    expect(await introspectAs(t1.body.access_token as string)).toEqual({ active: false });
  });

  it('lets only one of two parallel uses of one refresh token succeed, and revokes the family', async () => {
    const { verifier, challenge } = pkce();
    const { code } = await issueCode(challenge);
    const t0 = await redeem(code, verifier);
    const results = await Promise.all([
      refresh(t0.body.refresh_token as string),
      refresh(t0.body.refresh_token as string),
    ]);
    const ok = results.filter((r) => r.status === 200);
    expect(ok.length).toBe(1);
    for (const r of ok)
      expect((await refresh(r.body.refresh_token as string)).body.error).toBe('invalid_grant');
  });

  it('refuses to issue a token about a subject with no residency decision (fail closed)', async () => {
    const pg = new Client({ connectionString: dbs.region.eu!.url });
    await pg.connect();
    await pg.query(`insert into subject (sub, residency) values ('sub-no-residency', '{}')`);
    await pg.end();
    const provider = broker.running.state.runtime.provider;
    const grant = new provider.Grant({ accountId: 'sub-no-residency', clientId: app.clientId });
    grant.addOIDCScope('openid');
    grant.addResourceScope(API, 'api:read');
    const grantId = await grant.save();
    const { verifier, challenge } = pkce();
    const code = await new provider.AuthorizationCode({
      accountId: 'sub-no-residency',
      client: await provider.Client.find(app.clientId),
      grantId,
      scope: 'openid api:read',
      redirectUri: REDIRECT,
      codeChallenge: challenge,
      codeChallengeMethod: 'S256',
      resource: API,
    } as never).save();
    const { status, body } = await redeem(code, verifier);
    expect(status).toBe(400);
    expect(body.error).toBe('invalid_grant');
    expect(body.error_description).toMatch(/residency/);
  });
});

describe('OpenID Connect Core §5.3 userinfo and RP-Initiated Logout 1.0', () => {
  it('answers userinfo for an access token issued for the OP itself (no resource requested)', async () => {
    const ui = { clientId: 'flow-ui', clientSecret: 'flow-ui-secret-0123456789abcdefghijklmn' };
    const put = await adminCall(broker, 'PUT', `/admin/clients/${ui.clientId}`, {
      client_secret: ui.clientSecret,
      redirect_uris: [REDIRECT],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
      scope: 'openid',
    });
    expect(put.status).toBe(201);
    const provider = broker.running.state.runtime.provider;
    const grant = new provider.Grant({ accountId: SUB, clientId: ui.clientId });
    grant.addOIDCScope('openid');
    const grantId = await grant.save();
    const { verifier, challenge } = pkce();
    const code = await new provider.AuthorizationCode({
      accountId: SUB,
      client: await provider.Client.find(ui.clientId),
      grantId,
      scope: 'openid',
      redirectUri: REDIRECT,
      codeChallenge: challenge,
      codeChallengeMethod: 'S256',
    } as never).save();
    const t = await tokenRequest(
      broker.url,
      { grant_type: 'authorization_code', code, redirect_uri: REDIRECT, code_verifier: verifier },
      ui,
    );
    expect(t.status).toBe(200);
    const me = await fetch(`${broker.url}/me`, {
      headers: { authorization: `Bearer ${t.body.access_token}` },
    });
    expect(me.status).toBe(200);
    expect(await me.json()).toMatchObject({ sub: SUB });
    const bad = await fetch(`${broker.url}/me`, { headers: { authorization: 'Bearer not-a-token' } });
    expect(bad.status).toBe(401);
    expect(bad.headers.get('www-authenticate')).toContain('invalid_token');
  });

  it('serves the end-session endpoint (a logout confirmation, no error)', async () => {
    const res = await fetch(`${broker.url}/session/end?client_id=${app.clientId}`);
    expect(res.status).toBe(200);
    expect(await res.text()).toMatch(/<form/);
  });
});
