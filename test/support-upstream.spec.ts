/**
 * The test upstream IdP and the test browser, proven against each other and against a relying
 * party written here with openid-client (the library the broker uses upstream): discovery,
 * PKCE + state + nonce, the login form, SSO, cancellation, and every injected fault as the RP
 * sees it.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair } from 'jose';
import * as client from 'openid-client';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { TestBrowser, type Page } from './support/browser';
import { freePort } from './support/ports';
import { startUpstreamIdp, type UpstreamIdp, type UpstreamUser } from './support/upstream-idp';

const ALICE: UpstreamUser = {
  username: 'alice',
  password: 'alice-password-1',
  claims: {
    email: 'alice@example.de',
    email_verified: true,
    name: 'Alice Example',
    given_name: 'Alice',
    family_name: 'Example',
    country: 'DE',
    address: { country: 'DE' },
  },
};
const BOB: UpstreamUser = {
  username: 'bob',
  password: 'bob-password-1',
  claims: { email: 'bob@example.com', name: 'Bob Example', country: 'US', address: { country: 'US' } },
};

let idp: UpstreamIdp;
let rpOrigin: string;
let redirectUri: string;
const RP = { clientId: 'rp-one', secret: 'rp-one-secret-0123456789abcdefghijklmnop' };
const RP2 = { clientId: 'rp-two', secret: 'rp-two-secret-0123456789abcdefghijklmnop' };

beforeAll(async () => {
  // Nothing listens here: the browser stops before fetching the RP's callback.
  rpOrigin = `http://127.0.0.1:${await freePort()}`;
  redirectUri = `${rpOrigin}/cb`;
  idp = await startUpstreamIdp({ users: [ALICE, BOB] });
  for (const rp of [RP, RP2]) {
    await idp.addClient({
      client_id: rp.clientId,
      client_secret: rp.secret,
      redirect_uris: [redirectUri],
      post_logout_redirect_uris: [`${rpOrigin}/signed-out`],
      token_endpoint_auth_method: 'client_secret_basic',
      scope: 'openid email profile address',
    });
  }
});

afterAll(async () => {
  await idp?.stop();
});

afterEach(() => {
  idp.setFault('none');
});

const atCallback = (url: URL) => url.origin === rpOrigin;

async function relyingParty(rp = RP, target: UpstreamIdp = idp): Promise<client.Configuration> {
  return client.discovery(
    new URL(target.issuer),
    rp.clientId,
    rp.secret,
    client.ClientSecretBasic(rp.secret),
    {
      execute: [client.allowInsecureRequests],
    },
  );
}

interface Flow {
  url: URL;
  verifier: string;
  state: string;
  nonce: string;
}

async function authorizationRequest(
  config: client.Configuration,
  extra: Record<string, string> = {},
): Promise<Flow> {
  const verifier = client.randomPKCECodeVerifier();
  const state = client.randomState();
  const nonce = client.randomNonce();
  const url = client.buildAuthorizationUrl(config, {
    redirect_uri: redirectUri,
    scope: 'openid email profile address',
    code_challenge: await client.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    state,
    nonce,
    ...extra,
  });
  return { url, verifier, state, nonce };
}

async function codeGrant(config: client.Configuration, callback: URL | Request, flow: Flow) {
  return client.authorizationCodeGrant(config, callback, {
    pkceCodeVerifier: flow.verifier,
    expectedState: flow.state,
    expectedNonce: flow.nonce,
    idTokenExpected: true,
  });
}

async function signIn(browser: TestBrowser, loginPage: Page, user = ALICE): Promise<Page> {
  return browser.submit(
    loginPage,
    { action: /\/interaction\/[^/]+\/login$/ },
    { username: user.username, password: user.password },
    'Sign in',
    { stopAt: atCallback },
  );
}

/** A full login in `browser` up to the callback (the form is filled only if shown). */
async function loginAtCallback(browser: TestBrowser, flow: Flow, user = ALICE) {
  const first = await browser.follow(flow.url, { stopAt: atCallback });
  return first.status === 0 ? first : signIn(browser, first, user);
}

/** The error openid-client raised, with what names the problem (the cause's message for a ClientError). */
async function rejection(
  promise: Promise<unknown>,
): Promise<{ error: unknown; code?: string; detail: string }> {
  try {
    await promise;
  } catch (error) {
    const e = error as { code?: string; message: string; cause?: { message?: string } };
    return { error, code: e.code, detail: e.cause?.message ?? e.message };
  }
  throw new Error('expected a rejection');
}

describe('login through the upstream IdP', () => {
  it('shows a login form, then a code the RP redeems for an ID token carrying the profile claims', async () => {
    const config = await relyingParty();
    const browser = new TestBrowser();
    const flow = await authorizationRequest(config);
    const before = idp.loginCount();

    const form = await browser.follow(flow.url, { stopAt: atCallback });
    expect(form.status).toBe(200);
    expect(form.url.pathname).toMatch(/^\/interaction\//);
    expect(form.html).toContain('name="password"');
    expect(form.html).toContain('>Sign in</button>');
    expect(form.html).toContain('>Cancel</button>');

    const callback = await signIn(browser, form);
    expect(callback.status).toBe(0);
    expect(callback.url.origin + callback.url.pathname).toBe(redirectUri);
    expect(callback.url.searchParams.get('iss')).toBe(idp.issuer);
    expect(callback.history.at(-1)).toEqual(callback.url);

    const tokens = await codeGrant(config, callback.url, flow);
    expect(tokens.claims()).toMatchObject({
      iss: idp.issuer,
      aud: RP.clientId,
      sub: 'u-alice',
      nonce: flow.nonce,
      email: 'alice@example.de',
      email_verified: true,
      name: 'Alice Example',
      country: 'DE',
      address: { country: 'DE' },
    });
    expect(idp.loginCount()).toBe(before + 1);

    // Every cookie the IdP set is named after its port: other loopback servers share the jar.
    const port = new URL(idp.issuer).port;
    const names = browser.cookies.list('127.0.0.1').map((c) => c.name);
    expect(names.length).toBeGreaterThan(0);
    expect(names.every((n) => n.startsWith(`_up${port}_`))).toBe(true);
  });

  it('is silent on a second login in the same browser, for the same and for another client (SSO)', async () => {
    const browser = new TestBrowser();
    const config = await relyingParty();
    await loginAtCallback(browser, await authorizationRequest(config));
    const count = idp.loginCount();

    const again = await authorizationRequest(config);
    const silent = await browser.follow(again.url, { stopAt: atCallback });
    expect(silent.status).toBe(0);
    expect((await codeGrant(config, silent.url, again)).claims()?.sub).toBe('u-alice');

    const other = await relyingParty(RP2);
    const otherFlow = await authorizationRequest(other);
    const otherSilent = await browser.follow(otherFlow.url, { stopAt: atCallback });
    expect(otherSilent.status).toBe(0);
    expect((await codeGrant(other, otherSilent.url, otherFlow)).claims()).toMatchObject({
      sub: 'u-alice',
      aud: RP2.clientId,
      email: 'alice@example.de',
    });
    expect(idp.loginCount()).toBe(count);
  });

  it('asks again with prompt=login despite the session', async () => {
    const browser = new TestBrowser();
    const config = await relyingParty();
    await loginAtCallback(browser, await authorizationRequest(config));
    const flow = await authorizationRequest(config, { prompt: 'login' });
    const form = await browser.follow(flow.url, { stopAt: atCallback });
    expect(form.status).toBe(200);
    expect(form.html).toContain('name="password"');
    const count = idp.loginCount();
    const callback = await signIn(browser, form);
    expect((await codeGrant(config, callback.url, flow)).claims()?.sub).toBe('u-alice');
    expect(idp.loginCount()).toBe(count + 1);
  });

  it('asks a fresh browser for the password again', async () => {
    const config = await relyingParty();
    await loginAtCallback(new TestBrowser(), await authorizationRequest(config));
    const flow = await authorizationRequest(config);
    const form = await new TestBrowser().follow(flow.url, { stopAt: atCallback });
    expect(form.status).toBe(200);
    expect(form.html).toContain('name="password"');
  });

  it('re-renders the form with an error on a wrong password, then accepts the right one', async () => {
    const config = await relyingParty();
    const browser = new TestBrowser();
    const flow = await authorizationRequest(config);
    const form = await browser.follow(flow.url, { stopAt: atCallback });
    const count = idp.loginCount();

    const wrong = await browser.submit(
      form,
      { index: 0 },
      { username: 'bob', password: 'not-bobs-password' },
      'Sign in',
      { stopAt: atCallback },
    );
    expect(wrong.status).toBe(200);
    expect(wrong.html).toContain('Invalid username or password.');
    expect(wrong.html).toContain('value="bob"');
    expect(idp.loginCount()).toBe(count);

    const callback = await signIn(browser, wrong, BOB);
    expect((await codeGrant(config, callback.url, flow)).claims()).toMatchObject({
      sub: 'u-bob',
      country: 'US',
    });
  });

  it('returns access_denied to the RP when the user presses Cancel', async () => {
    const config = await relyingParty();
    const browser = new TestBrowser();
    const flow = await authorizationRequest(config);
    const form = await browser.follow(flow.url, { stopAt: atCallback });
    const callback = await browser.submit(form, {}, {}, 'Cancel', { stopAt: atCallback });
    expect(callback.status).toBe(0);
    expect(callback.url.searchParams.get('error')).toBe('access_denied');
    expect(callback.url.searchParams.get('state')).toBe(flow.state);

    const { error } = await rejection(codeGrant(config, callback.url, flow));
    expect(error).toBeInstanceOf(client.AuthorizationResponseError);
    expect(error).toMatchObject({
      error: 'access_denied',
      error_description: 'The user cancelled the sign-in.',
    });
  });

  it('authenticates a private_key_jwt client whose jwks_uri is on loopback', async () => {
    const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
    const kid = 'rp-key-1';
    const jwks = { keys: [{ ...(await exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' }] };
    const jwksServer = createServer((_req, res) => {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify(jwks));
    });
    await new Promise<void>((resolve) => jwksServer.listen(0, '127.0.0.1', resolve));
    try {
      const clientId = 'rp-jwt';
      await idp.addClient({
        client_id: clientId,
        redirect_uris: [redirectUri],
        token_endpoint_auth_method: 'private_key_jwt',
        token_endpoint_auth_signing_alg: 'ES256',
        jwks_uri: `http://127.0.0.1:${(jwksServer.address() as AddressInfo).port}/jwks`,
      });
      const config = await client.discovery(
        new URL(idp.issuer),
        clientId,
        undefined,
        client.PrivateKeyJwt({ key: privateKey, kid }),
        { execute: [client.allowInsecureRequests] },
      );
      const flow = await authorizationRequest(config);
      const callback = await loginAtCallback(new TestBrowser(), flow);
      expect((await codeGrant(config, callback.url, flow)).claims()?.sub).toBe('u-alice');
    } finally {
      jwksServer.close();
    }
  });
});

describe('RP-initiated logout at the upstream IdP', () => {
  it('ends the upstream session through its self-submitting confirmation page', async () => {
    const config = await relyingParty();
    const browser = new TestBrowser();
    const flow = await authorizationRequest(config);
    const tokens = await codeGrant(config, (await loginAtCallback(browser, flow)).url, flow);
    const logouts = idp.logoutCount();

    const endSession = client.buildEndSessionUrl(config, {
      id_token_hint: tokens.id_token!,
      post_logout_redirect_uri: `${rpOrigin}/signed-out`,
      state: 'bye',
    });
    const out = await browser.follow(endSession, { stopAt: atCallback, autoSubmitForms: true });
    expect(out.status).toBe(0);
    expect(out.url.pathname).toBe('/signed-out');
    expect(out.url.searchParams.get('state')).toBe('bye');
    expect(idp.logoutCount()).toBe(logouts + 1);

    const next = await authorizationRequest(config);
    const form = await browser.follow(next.url, { stopAt: atCallback });
    expect(form.status).toBe(200);
    expect(form.html).toContain('name="password"');
  });
});

describe('response_mode=form_post', () => {
  it('stops at the RP with the posted authorization response, which openid-client accepts', async () => {
    const config = await relyingParty();
    const browser = new TestBrowser();
    await loginAtCallback(browser, await authorizationRequest(config));
    const flow = await authorizationRequest(config, { response_mode: 'form_post' });

    const shown = await browser.follow(flow.url, { stopAt: atCallback });
    expect(shown.status).toBe(200);
    expect(shown.html).toContain('document.forms[0].submit()');

    const posted = await browser.follow(flow.url, { stopAt: atCallback, autoSubmitForms: true });
    expect(posted.status).toBe(0);
    expect(posted.url.href).toBe(redirectUri);
    expect(posted.postedForm?.get('state')).toBe(flow.state);
    expect(posted.postedForm?.get('iss')).toBe(idp.issuer);
    const request = new Request(posted.url, { method: 'POST', body: posted.postedForm });
    expect((await codeGrant(config, request, flow)).claims()?.sub).toBe('u-alice');
  });
});

describe('injected upstream faults, as the relying party sees them', () => {
  it('error: the authorization response is error=server_error with a readable description', async () => {
    idp.setFault('error');
    const config = await relyingParty();
    const flow = await authorizationRequest(config);
    const callback = await new TestBrowser().follow(flow.url, { stopAt: atCallback });
    expect(callback.status).toBe(0);
    const { error } = await rejection(codeGrant(config, callback.url, flow));
    expect(error).toBeInstanceOf(client.AuthorizationResponseError);
    expect(error).toMatchObject({
      error: 'server_error',
      error_description: 'The identity provider is temporarily unavailable. Try again later.',
    });
  });

  it('error: also when the browser already has a session there (no silent success)', async () => {
    const config = await relyingParty();
    const browser = new TestBrowser();
    await loginAtCallback(browser, await authorizationRequest(config));
    idp.setFault('error');
    const flow = await authorizationRequest(config);
    const callback = await browser.follow(flow.url, { stopAt: atCallback });
    expect(callback.url.searchParams.get('error')).toBe('server_error');
  });

  it('access_denied: the RP gets error=access_denied without any form shown', async () => {
    idp.setFault('access_denied');
    const config = await relyingParty();
    const flow = await authorizationRequest(config);
    const count = idp.loginCount();
    const callback = await new TestBrowser().follow(flow.url, { stopAt: atCallback });
    expect(callback.status).toBe(0);
    const { error } = await rejection(codeGrant(config, callback.url, flow));
    expect(error).toMatchObject({
      error: 'access_denied',
      error_description: 'The user cancelled the sign-in.',
    });
    expect(idp.loginCount()).toBe(count);
  });

  describe('OIDC Core §3.1.3.7 — ID token validation', () => {
    it('bad-signature: refused once the RP verifies the signature (enableNonRepudiationChecks)', async () => {
      idp.setFault('bad-signature');
      const config = await relyingParty();
      client.enableNonRepudiationChecks(config);
      const flow = await authorizationRequest(config);
      const callback = await loginAtCallback(new TestBrowser(), flow);
      const { error, code, detail } = await rejection(codeGrant(config, callback.url, flow));
      expect(error).toBeInstanceOf(client.ClientError);
      expect(code).toBe('OAUTH_INVALID_RESPONSE');
      expect(detail).toBe('JWT signature verification failed');
    });

    it('bad-signature: NOT noticed by a default openid-client configuration (TLS trust only)', async () => {
      idp.setFault('bad-signature');
      const config = await relyingParty();
      const flow = await authorizationRequest(config);
      const callback = await loginAtCallback(new TestBrowser(), flow);
      const tokens = await codeGrant(config, callback.url, flow);
      expect(tokens.claims()?.sub).toBe('u-alice');
    });

    it('wrong-aud: refused, naming "aud"', async () => {
      idp.setFault('wrong-aud');
      const config = await relyingParty();
      const flow = await authorizationRequest(config);
      const callback = await loginAtCallback(new TestBrowser(), flow);
      const { code, detail } = await rejection(codeGrant(config, callback.url, flow));
      expect(code).toBe('OAUTH_JWT_CLAIM_COMPARISON_FAILED');
      expect(detail).toBe('unexpected JWT "aud" (audience) claim value');
    });

    it('wrong-iss: refused, naming "iss"', async () => {
      idp.setFault('wrong-iss', { foreignIssuer: 'http://127.0.0.1:1/other' });
      const config = await relyingParty();
      const flow = await authorizationRequest(config);
      const callback = await loginAtCallback(new TestBrowser(), flow);
      const { code, detail } = await rejection(codeGrant(config, callback.url, flow));
      expect(code).toBe('OAUTH_JWT_CLAIM_COMPARISON_FAILED');
      expect(detail).toBe('unexpected JWT "iss" (issuer) claim value');
    });
  });

  describe('RFC 9207 — authorization server issuer identification (mix-up)', () => {
    it('mixup-iss: the authorization response names another IdP and the RP refuses it', async () => {
      const otherIssuer = 'http://127.0.0.1:2/national-idp';
      idp.setFault('mixup-iss', { foreignIssuer: otherIssuer });
      const config = await relyingParty();
      const flow = await authorizationRequest(config);
      const callback = await loginAtCallback(new TestBrowser(), flow);
      expect(callback.url.searchParams.get('iss')).toBe(otherIssuer);
      expect(callback.url.searchParams.get('code')).toBeTruthy();
      const { code, detail } = await rejection(codeGrant(config, callback.url, flow));
      expect(code).toBe('OAUTH_INVALID_RESPONSE');
      expect(detail).toBe('unexpected "iss" (issuer) response parameter value');
    });
  });

  it('mixup-iss: also on a silent (SSO) authorization response', async () => {
    const config = await relyingParty();
    const browser = new TestBrowser();
    await loginAtCallback(browser, await authorizationRequest(config));
    idp.setFault('mixup-iss');
    const flow = await authorizationRequest(config);
    const callback = await browser.follow(flow.url, { stopAt: atCallback });
    expect(callback.history).toHaveLength(2);
    expect(callback.url.searchParams.get('iss')).toBe('https://other-idp.invalid');
    const { detail } = await rejection(codeGrant(config, callback.url, flow));
    expect(detail).toBe('unexpected "iss" (issuer) response parameter value');
  });

  it('slow-token: a token request with a 1 s timeout fails instead of hanging', async () => {
    idp.setFault('slow-token');
    const config = await relyingParty();
    config.timeout = 1;
    const flow = await authorizationRequest(config);
    const callback = await loginAtCallback(new TestBrowser(), flow);
    const started = Date.now();
    const { code, detail } = await rejection(codeGrant(config, callback.url, flow));
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(code).toBe('OAUTH_TIMEOUT');
    expect(detail).toBe('The operation was aborted due to timeout');
  });
});

describe('TestBrowser', () => {
  let loop: Server;
  let loopUrl: string;

  beforeAll(async () => {
    loop = createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://127.0.0.1');
      if (url.pathname === '/set') {
        res.setHeader('set-cookie', [
          'root=1; Path=/',
          'deep=2; Path=/a/b',
          'gone=3; Path=/; Max-Age=0',
          'old=4; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT',
        ]);
        res.end('ok');
        return;
      }
      if (url.pathname.startsWith('/echo') || url.pathname.startsWith('/a/')) {
        res.end(req.headers.cookie ?? '');
        return;
      }
      res.statusCode = 302;
      res.setHeader('location', '/loop');
      res.end();
    });
    await new Promise<void>((resolve) => loop.listen(0, '127.0.0.1', resolve));
    loopUrl = `http://127.0.0.1:${(loop.address() as AddressInfo).port}`;
  });

  afterAll(() => {
    loop.close();
  });

  it('keeps cookies per host name across ports, honouring Path, Max-Age and Expires', async () => {
    const browser = new TestBrowser();
    await browser.get(`${loopUrl}/set`);
    expect((await browser.get(`${loopUrl}/echo`)).html).toBe('root=1');
    expect((await browser.get(`${loopUrl}/a/b/c`)).html).toBe('deep=2; root=1');
    expect((await browser.get(`${loopUrl}/a/bc`)).html).toBe('root=1');
    expect(browser.cookies.header(new URL('http://127.0.0.1:1/x'))).toBe('root=1');
    expect(browser.cookies.header(new URL('http://localhost:1/x'))).toBeUndefined();
  });

  it('gives up on a redirect loop after maxHops, listing the hops', async () => {
    const browser = new TestBrowser({ maxHops: 5 });
    await expect(browser.follow(`${loopUrl}/loop`)).rejects.toThrow(
      /more than 5 hops[\s\S]*GET http:\/\/127\.0\.0\.1:\d+\/loop → 302 \/loop/,
    );
  });
});
