/**
 * `libs/verifier` against a real broker: real RFC 9068 access tokens, the real trust bundle,
 * and the attack catalogue of RFC 8725 / RFC 9068 / RFC 7515 — every forgery refused with a
 * 401 and a stable code, nothing fetched from anything a token names.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  SignJWT,
  decodeJwt,
  decodeProtectedHeader,
  exportJWK,
  exportSPKI,
  generateKeyPair,
  importJWK,
  type CryptoKey,
  type JWK,
  type JWTPayload,
} from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createVerifier,
  type Verifier,
  type VerifierError,
  type VerifierErrorCode,
  type VerifierOptions,
} from '../libs/verifier/src';
import {
  adminCall,
  clientCredentials,
  freshDatabases,
  registerService,
  spawnBroker,
  type SpawnedBroker,
} from './support/broker';
import { freePort } from './support/ports';

const ORDERS = 'https://orders.verifier.test.example';
const BILLING = 'https://billing.verifier.test.example';

let broker: SpawnedBroker;
let outsider: SpawnedBroker;
let dbs: Awaited<ReturnType<typeof freshDatabases>>;
let outsiderDbs: Awaited<ReturnType<typeof freshDatabases>>;
let orders: { clientId: string; clientSecret: string };
let billing: { clientId: string; clientSecret: string };
let outsiderOrders: { clientId: string; clientSecret: string };
let bundleUrl: string;
let brokerJwk: JWK;
let token: string;
let claims: JWTPayload & Record<string, unknown>;

/** A loopback server that must never be called: where `jku` / `x5u` point. */
let bait: Server;
let baitUrl: string;
const baitRequests: string[] = [];
let attacker: { privateKey: CryptoKey; publicJwk: JWK };

const enc = (o: unknown) => Buffer.from(typeof o === 'string' ? o : JSON.stringify(o)).toString('base64url');
const forge = (header: object, payload: object, signature = '') =>
  `${enc(header)}.${enc(payload)}.${signature}`;

async function getToken(
  client: { clientId: string; clientSecret: string },
  audience: string,
  scope?: string,
  on = broker,
) {
  const { status, body } = await clientCredentials(on.url, client, audience, scope);
  expect(status).toBe(200);
  return body.access_token as string;
}

function verifierFor(o: Partial<VerifierOptions> = {}): Verifier {
  return createVerifier({
    trustBundleUrl: bundleUrl,
    audience: ORDERS,
    cache: false,
    ...o,
  } as VerifierOptions);
}

/** A fetch that records every URL the verifier asked for (a real fetch underneath). */
function recordingFetch() {
  const urls: string[] = [];
  const fn: typeof fetch = (input, init) => {
    urls.push(typeof input === 'string' ? input : input instanceof URL ? input.href : input.url);
    return fetch(input, init);
  };
  return { urls, fn };
}

async function refused(p: Promise<unknown>, code: VerifierErrorCode, status = 401) {
  const err = await p.then(
    () => {
      throw new Error(`expected ${code}, but the token was accepted`);
    },
    (e: unknown) => e,
  );
  expect(err).toMatchObject({ name: 'VerifierError', code, status });
  return err as VerifierError;
}

function signAsAttacker(header: Record<string, unknown>, payload: JWTPayload) {
  return new SignJWT(payload)
    .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', ...header } as never)
    .sign(attacker.privateKey);
}

beforeAll(async () => {
  [dbs, outsiderDbs] = await Promise.all([freshDatabases('verifier'), freshDatabases('verifier_outside')]);
  [broker, outsider] = await Promise.all([
    spawnBroker({ controlUrl: dbs.control.url, regionUrl: dbs.region.eu!.url }),
    spawnBroker({ controlUrl: outsiderDbs.control.url, regionUrl: outsiderDbs.region.eu!.url }),
  ]);
  [orders, billing, outsiderOrders] = await Promise.all([
    registerService(broker, {
      resourceId: 'orders',
      audience: ORDERS,
      scopes: ['orders:read', 'orders:write'],
      clientId: 'orders-client',
      clientScope: 'orders:read',
    }),
    registerService(broker, {
      resourceId: 'billing',
      audience: BILLING,
      scopes: ['billing:read'],
      clientId: 'billing-client',
      clientScope: 'billing:read',
    }),
    registerService(outsider, {
      resourceId: 'orders',
      audience: ORDERS,
      scopes: ['orders:read'],
      clientId: 'orders-client',
      clientScope: 'orders:read',
    }),
  ]);
  bundleUrl = `${broker.url}/.well-known/meridian/trust-bundle`;
  const bundle = (await (await fetch(bundleUrl)).json()) as { regions: { jwks: { keys: JWK[] } }[] };
  token = await getToken(orders, ORDERS, 'orders:read');
  claims = decodeJwt(token) as typeof claims;
  const kid = decodeProtectedHeader(token).kid;
  brokerJwk = bundle.regions[0]!.jwks.keys.find((k) => k.kid === kid)!;

  const pair = await generateKeyPair('ES256', { extractable: true });
  attacker = {
    privateKey: pair.privateKey,
    publicJwk: { ...(await exportJWK(pair.publicKey)), kid: 'attacker' },
  };
  bait = createServer((req, res) => {
    baitRequests.push(req.url ?? '');
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ keys: [attacker.publicJwk] }));
  });
  await new Promise<void>((r) => bait.listen(0, '127.0.0.1', r));
  baitUrl = `http://127.0.0.1:${(bait.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await Promise.allSettled([broker?.stop(), outsider?.stop()]);
  await new Promise((r) => bait?.close(r));
  await Promise.allSettled([dbs?.drop(), outsiderDbs?.drop()]);
});

describe('a real broker token', () => {
  it('is accepted, with the identity, scope, issuer region and residency of the token', async () => {
    const v = verifierFor();
    const t = await v.verify(token);
    expect(t).toMatchObject({
      sub: 'orders-client',
      clientId: 'orders-client',
      scope: ['orders:read'],
      audience: ORDERS,
      issuer: broker.issuer,
      region: 'eu',
      residency: { region: 'eu', processing: ['eu'] },
    });
    expect(t.expiresAt.getTime()).toBe((claims.exp as number) * 1000);
    expect(t.claims.jti).toBe(claims.jti);
    expect(Object.isFrozen(t) && Object.isFrozen(t.claims)).toBe(true);
    expect(v.bundleStatus()).toMatchObject({ source: 'bundle', loaded: true, stale: false, fetches: 1 });
  });

  it('RFC 6750 §3.1 — a missing token is ERR_TOKEN_MISSING with a bare Bearer challenge', async () => {
    const err = await refused(verifierFor().verify(undefined), 'ERR_TOKEN_MISSING');
    expect(err.wwwAuthenticate()).toBe('Bearer');
  });
});

describe('RFC 8725 §3.1 — algorithm verification', () => {
  for (const alg of ['none', 'None', 'NONE', 'nOnE']) {
    it(`refuses alg "${alg}" (unsigned token with the broker's kid and real claims)`, async () => {
      const unsigned = forge({ alg, typ: 'at+jwt', kid: brokerJwk.kid }, claims);
      const err = await refused(verifierFor().verify(unsigned), 'ERR_TOKEN_ALG');
      expect(err.wwwAuthenticate()).toMatch(/^Bearer error="invalid_token", error_description="/);
    });
  }

  it('refuses HS256 signed with the broker public key as JWK JSON bytes (key confusion)', async () => {
    const secret = new TextEncoder().encode(JSON.stringify(brokerJwk));
    const confused = await new SignJWT(claims)
      .setProtectedHeader({ alg: 'HS256', typ: 'at+jwt', kid: brokerJwk.kid })
      .sign(secret);
    await refused(verifierFor().verify(confused), 'ERR_TOKEN_ALG');
  });

  it('refuses HS256 signed with the broker public key as PEM (key confusion)', async () => {
    const pem = await exportSPKI((await importJWK(brokerJwk, 'ES256', { extractable: true })) as CryptoKey);
    for (const secret of [pem, pem.trim()]) {
      const confused = await new SignJWT(claims)
        .setProtectedHeader({ alg: 'HS256', typ: 'at+jwt', kid: brokerJwk.kid })
        .sign(new TextEncoder().encode(secret));
      await refused(verifierFor().verify(confused), 'ERR_TOKEN_ALG');
    }
  });

  it('refuses an allowed algorithm the key does not have (RS256 header on the EC P-256 key)', async () => {
    const [h, p, s] = token.split('.');
    const header = { ...JSON.parse(Buffer.from(h!, 'base64url').toString()), alg: 'RS256' };
    await refused(verifierFor().verify(`${enc(header)}.${p}.${s}`), 'ERR_TOKEN_ALG');
  });
});

describe('RFC 7515 §5.2 / RFC 8725 §3.3 — signature validation', () => {
  it('refuses the token with its signature stripped', async () => {
    const [h, p] = token.split('.');
    await refused(verifierFor().verify(`${h}.${p}.`), 'ERR_TOKEN_SIGNATURE');
    await refused(verifierFor().verify(`${h}.${p}`), 'ERR_TOKEN_MALFORMED');
  });

  it('refuses the token with its payload altered (scope widened, signature kept)', async () => {
    const [h, , s] = token.split('.');
    const widened = `${h}.${enc({ ...claims, scope: 'orders:read orders:write' })}.${s}`;
    await refused(verifierFor().verify(widened), 'ERR_TOKEN_SIGNATURE');
  });

  it("refuses a token signed by an attacker key under the broker's kid", async () => {
    const forged = await signAsAttacker({ kid: brokerJwk.kid }, claims);
    await refused(verifierFor().verify(forged), 'ERR_TOKEN_SIGNATURE');
  });

  it('refuses a token signed by a key swapped into the signature of another token (cut and paste)', async () => {
    const other = await getToken(billing, BILLING, 'billing:read');
    const [h, p] = token.split('.');
    await refused(verifierFor().verify(`${h}.${p}.${other.split('.')[2]}`), 'ERR_TOKEN_SIGNATURE');
  });
});

describe('RFC 8725 §3.10 — keys only from the trust bundle, never from the token', () => {
  it('refuses an embedded "jwk" header carrying the attacker key', async () => {
    const forged = await signAsAttacker({ jwk: attacker.publicJwk }, claims);
    await refused(verifierFor().verify(forged), 'ERR_TOKEN_HEADER');
  });

  for (const member of ['jku', 'x5u'] as const) {
    it(`refuses "${member}" pointing at a local listener, which receives no request`, async () => {
      const before = baitRequests.length;
      const rec = recordingFetch();
      const v = verifierFor({ fetch: rec.fn });
      for (const kid of ['attacker', brokerJwk.kid, undefined]) {
        const forged = await signAsAttacker({ [member]: `${baitUrl}/keys.json`, kid }, claims);
        await refused(v.verify(forged), 'ERR_TOKEN_HEADER');
      }
      await new Promise((r) => setTimeout(r, 200));
      expect(baitRequests.length).toBe(before);
      expect(rec.urls.every((u) => u === bundleUrl)).toBe(true);
    });
  }

  it('refuses an "x5c" header carrying a certificate chain', async () => {
    const forged = await signAsAttacker({ x5c: ['MIIBszCCAVmgAwIBAgIU'] }, claims);
    await refused(verifierFor().verify(forged), 'ERR_TOKEN_HEADER');
  });

  it('refuses a "kid" with path traversal without touching anything but the bundle URL', async () => {
    const rec = recordingFetch();
    const v = verifierFor({ fetch: rec.fn });
    for (const kid of ['../../etc/passwd', '/etc/passwd', `${baitUrl}/keys.json`, "' OR 1=1 --"]) {
      const forged = await signAsAttacker({ kid }, claims);
      await refused(v.verify(forged), 'ERR_TOKEN_SIGNATURE');
    }
    expect(rec.urls.length).toBeGreaterThan(0);
    expect(rec.urls.every((u) => u === bundleUrl)).toBe(true);
    expect(baitRequests).toEqual([]);
  });
});

describe('RFC 7515 §4.1.11 — critical header parameters', () => {
  it('refuses a token with an unknown "crit" extension', async () => {
    const forged = await new SignJWT(claims)
      .setProtectedHeader({
        alg: 'ES256',
        typ: 'at+jwt',
        kid: brokerJwk.kid,
        crit: ['urn:example:ext'],
        'urn:example:ext': 1,
      } as never)
      .sign(attacker.privateKey, { crit: { 'urn:example:ext': true } });
    await refused(verifierFor().verify(forged), 'ERR_TOKEN_HEADER');
  });

  it('refuses "crit" naming a registered parameter (b64) too', async () => {
    const [h, p, s] = token.split('.');
    const header = { ...JSON.parse(Buffer.from(h!, 'base64url').toString()), crit: ['b64'], b64: true };
    await refused(verifierFor().verify(`${enc(header)}.${p}.${s}`), 'ERR_TOKEN_HEADER');
  });
});

describe('RFC 8725 §3.9 / RFC 9068 §4 — audience', () => {
  it('refuses a token for another audience of the same broker', async () => {
    const forBilling = await getToken(billing, BILLING, 'billing:read');
    const err = await refused(verifierFor().verify(forBilling), 'ERR_TOKEN_AUDIENCE');
    expect(err.wwwAuthenticate()).toContain('error="invalid_token"');
  });

  it('refuses the orders token at a service with another audience (wrong aud)', async () => {
    await refused(
      verifierFor({ audience: 'https://inventory.verifier.test.example' }).verify(token),
      'ERR_TOKEN_AUDIENCE',
    );
  });
});

describe('RFC 8725 §3.8 / RFC 9068 §4 — issuer', () => {
  it('refuses a token whose iss was changed to an untrusted issuer', async () => {
    const [h, , s] = token.split('.');
    const renamed = `${h}.${enc({ ...claims, iss: 'https://evil.example' })}.${s}`;
    await refused(verifierFor().verify(renamed), 'ERR_TOKEN_ISSUER');
  });

  it('refuses a validly signed token of a broker outside the bundle', async () => {
    const foreign = await getToken(outsiderOrders, ORDERS, 'orders:read', outsider);
    expect(decodeJwt(foreign).aud).toBe(ORDERS);
    await refused(verifierFor().verify(foreign), 'ERR_TOKEN_ISSUER');
  });

  it("refuses an outside broker's token relabelled with the trusted issuer (its key is not the issuer's)", async () => {
    const foreign = await getToken(outsiderOrders, ORDERS, 'orders:read', outsider);
    const [h, p, s] = foreign.split('.');
    const relabelled = `${h}.${enc({ ...JSON.parse(Buffer.from(p!, 'base64url').toString()), iss: broker.issuer })}.${s}`;
    await refused(verifierFor().verify(relabelled), 'ERR_TOKEN_SIGNATURE');
  });

  it('refuses a self-made issuer (its own key, its own iss) the bundle does not list', async () => {
    const selfMade = await signAsAttacker({ kid: 'attacker' }, { ...claims, iss: baitUrl });
    await refused(verifierFor().verify(selfMade), 'ERR_TOKEN_ISSUER');
    expect(baitRequests).toEqual([]);
  });
});

describe('RFC 9068 §4 / RFC 7519 §4.1.4–4.1.6 — time', () => {
  it('refuses an expired token (clock past exp + leeway)', async () => {
    const v = verifierFor({ now: () => ((claims.exp as number) + 31) * 1000 });
    await refused(v.verify(token), 'ERR_TOKEN_EXPIRED');
  });

  it('accepts within the leeway after exp, refuses beyond a smaller leeway', async () => {
    const at = ((claims.exp as number) + 10) * 1000;
    await expect(verifierFor({ now: () => at }).verify(token)).resolves.toBeDefined();
    await refused(
      verifierFor({ now: () => at, clockToleranceSeconds: 5 }).verify(token),
      'ERR_TOKEN_EXPIRED',
    );
  });

  it('refuses a token issued in the future (iat beyond the leeway)', async () => {
    const v = verifierFor({ now: () => ((claims.iat as number) - 120) * 1000 });
    await refused(v.verify(token), 'ERR_TOKEN_NOT_YET_VALID');
  });

  it('refuses a token whose nbf is in the future', async () => {
    // The broker sets no nbf; a self-made trusted issuer shows the check on a signed token.
    const now = Math.floor(Date.now() / 1000);
    const v = createVerifier({
      issuers: [{ issuer: 'https://self.verifier.test.example', jwks: { keys: [attacker.publicJwk] } }],
      audience: ORDERS,
      cache: false,
    });
    const early = await signAsAttacker(
      { kid: 'attacker' },
      { ...claims, iss: 'https://self.verifier.test.example', iat: now, nbf: now + 600, exp: now + 900 },
    );
    await refused(v.verify(early), 'ERR_TOKEN_NOT_YET_VALID');
  });
});

describe('RFC 9068 §4 / RFC 8725 §3.11 — explicit typing', () => {
  it('refuses an ID token (typ "JWT", aud = client_id, nonce) as an access token', async () => {
    // The broker's key cannot be borrowed; a trusted self-made issuer signs an ID-token-shaped JWT.
    const iss = 'https://self.verifier.test.example';
    const v = createVerifier({
      issuers: [{ issuer: iss, jwks: { keys: [attacker.publicJwk] } }],
      audience: ORDERS,
      cache: false,
    });
    const now = Math.floor(Date.now() / 1000);
    const idToken = await new SignJWT({
      nonce: 'n-0S6_WzA2Mj',
      auth_time: now,
      client_id: 'orders-client',
      jti: 'id-1',
    })
      .setProtectedHeader({ alg: 'ES256', typ: 'JWT', kid: 'attacker' })
      .setIssuer(iss)
      .setSubject('u-123')
      .setAudience(ORDERS)
      .setIssuedAt(now)
      .setExpirationTime(now + 300)
      .sign(attacker.privateKey);
    await refused(v.verify(idToken), 'ERR_TOKEN_TYPE');
    const untyped = await new SignJWT({ client_id: 'orders-client', jti: 'id-2' })
      .setProtectedHeader({ alg: 'ES256', kid: 'attacker' })
      .setIssuer(iss)
      .setSubject('u-123')
      .setAudience(ORDERS)
      .setIssuedAt(now)
      .setExpirationTime(now + 300)
      .sign(attacker.privateKey);
    await refused(v.verify(untyped), 'ERR_TOKEN_TYPE');
  });

  it('refuses the broker token with its typ changed to JWT', async () => {
    const [h, p, s] = token.split('.');
    const header = { ...JSON.parse(Buffer.from(h!, 'base64url').toString()), typ: 'JWT' };
    await refused(verifierFor().verify(`${enc(header)}.${p}.${s}`), 'ERR_TOKEN_TYPE');
  });
});

describe('size limits', () => {
  it('refuses an oversized token before parsing it', async () => {
    const huge = forge(
      { alg: 'ES256', typ: 'at+jwt', kid: brokerJwk.kid },
      { ...claims, pad: 'x'.repeat(9000) },
      'sig',
    );
    const err = await refused(verifierFor().verify(huge), 'ERR_TOKEN_TOO_LARGE');
    expect(err.wwwAuthenticate()).toContain('error="invalid_token"');
    await refused(verifierFor().verify('x'.repeat(100_000)), 'ERR_TOKEN_TOO_LARGE');
    await refused(verifierFor({ maxTokenBytes: 100 }).verify(token), 'ERR_TOKEN_TOO_LARGE');
  });

  it('refuses garbage and encrypted tokens as malformed', async () => {
    for (const junk of [
      'abc',
      'a.b.c.d',
      '....',
      '{"alg":"none"}.e30.',
      `${enc('not json')}.${enc(claims)}.x`,
    ]) {
      await refused(verifierFor().verify(junk), 'ERR_TOKEN_MALFORMED');
    }
    await refused(verifierFor().verify('a.b.c.d.e'), 'ERR_TOKEN_MALFORMED');
  });
});

describe('scope and residency (RFC 6750 §3.1)', () => {
  it('answers a missing scope with ERR_INSUFFICIENT_SCOPE, 403, and the scope in the challenge', async () => {
    const err = await refused(
      verifierFor().verify(token, { requiredScopes: ['orders:read', 'orders:write'] }),
      'ERR_INSUFFICIENT_SCOPE',
      403,
    );
    expect(err.wwwAuthenticate()).toBe(
      'Bearer error="insufficient_scope", error_description="the access token lacks the scope orders:write", scope="orders:read orders:write"',
    );
    await expect(verifierFor().verify(token, { requiredScopes: ['orders:read'] })).resolves.toBeDefined();
  });

  it('refuses a service region outside residency.processing with ERR_RESIDENCY_PROCESSING (403)', async () => {
    const err = await refused(verifierFor().verify(token, { region: 'us' }), 'ERR_RESIDENCY_PROCESSING', 403);
    expect(err.wwwAuthenticate()).toMatch(
      /^Bearer error="insufficient_scope", error_description="residency: /,
    );
    await expect(verifierFor().verify(token, { region: 'eu' })).resolves.toMatchObject({ region: 'eu' });
  });
});

describe('trust bundle: refresh, cooldown, outage', () => {
  it('an unknown kid triggers exactly one bundle fetch within the cooldown, one more after it', async () => {
    let clock = Date.now();
    const rec = recordingFetch();
    const v = verifierFor({ fetch: rec.fn, now: () => clock, bundleRefreshCooldownMs: 30_000 });
    await v.verify(token);
    expect(rec.urls.length).toBe(1);
    const unknown = await Promise.all(
      Array.from({ length: 5 }, (_, i) => signAsAttacker({ kid: `rotated-${i}` }, claims)),
    );
    // The cooldown is the minimum time between two fetches: right after the first load, none.
    await refused(v.verify(unknown[0]!), 'ERR_TOKEN_SIGNATURE');
    expect(rec.urls.length).toBe(1);
    clock += 30_000;
    // Concurrent and then sequential unknown kids: one fetch between them.
    await Promise.all(unknown.map((t) => refused(v.verify(t), 'ERR_TOKEN_SIGNATURE')));
    for (const t of unknown) await refused(v.verify(t), 'ERR_TOKEN_SIGNATURE');
    clock += 29_999;
    for (const t of unknown) await refused(v.verify(t), 'ERR_TOKEN_SIGNATURE');
    expect(rec.urls.length).toBe(2);
    clock += 1;
    await refused(v.verify(unknown[0]!), 'ERR_TOKEN_SIGNATURE');
    expect(rec.urls.length).toBe(3);
    expect(rec.urls.every((u) => u === bundleUrl)).toBe(true);
    // The real token still verifies throughout.
    await expect(v.verify(token)).resolves.toBeDefined();
  });

  it('refreshes a bundle older than bundleMaxAgeMs in the background, without holding the request', async () => {
    let clock = Date.now();
    const rec = recordingFetch();
    const v = verifierFor({ fetch: rec.fn, now: () => clock, bundleMaxAgeMs: 60_000 });
    await v.verify(token);
    clock += 61_000;
    expect(v.bundleStatus().stale).toBe(true);
    await v.verify(token);
    expect(rec.urls.length).toBe(2);
    await expect.poll(() => v.bundleStatus().stale).toBe(false);
  });

  it('fails closed with ERR_TRUST_UNAVAILABLE (503) when no bundle was ever loaded', async () => {
    const port = await freePort();
    const rec = recordingFetch();
    const v = createVerifier({
      trustBundleUrl: `http://127.0.0.1:${port}/.well-known/meridian/trust-bundle`,
      audience: ORDERS,
      fetch: rec.fn,
    });
    const err = await refused(v.verify(token), 'ERR_TRUST_UNAVAILABLE', 503);
    expect(err.wwwAuthenticate()).not.toContain('invalid_token');
    expect(v.bundleStatus()).toMatchObject({ loaded: false, stale: true, fetches: 1 });
    expect(v.bundleStatus().lastError).toBeTruthy();
    // Within the cooldown the dead broker is not asked again on every request.
    await refused(v.verify(token), 'ERR_TRUST_UNAVAILABLE', 503);
    expect(rec.urls.length).toBe(1);
    // Header and format checks still answer 401 first.
    await refused(v.verify(forge({ alg: 'none', typ: 'at+jwt' }, claims)), 'ERR_TOKEN_ALG');
  });
});

describe('trust bundle: conditional refresh (RFC 9110 §13.1.2 If-None-Match, §15.4.5 304)', () => {
  it('the broker answers 304 to the ETag of the bundle it serves, 200 to any other', async () => {
    const first = await fetch(bundleUrl);
    const etag = first.headers.get('etag');
    expect(etag).toMatch(/^"[\w-]+"$/);
    expect(first.headers.get('cache-control')).toBe('public, max-age=60');
    const body = await first.text();
    const again = await fetch(bundleUrl, { headers: { 'if-none-match': etag! } });
    expect(again.status).toBe(304);
    expect(await again.text()).toBe('');
    const other = await fetch(bundleUrl, { headers: { 'if-none-match': '"not-this-one"' } });
    expect(other.status).toBe(200);
    expect(await other.text()).toBe(body);
  });

  it('a verifier sends back the ETag it installed; the 304 keeps its keys and counts as fresh', async () => {
    let clock = Date.now();
    const seen: { ifNoneMatch: string | null; status: number }[] = [];
    const fn: typeof fetch = async (input, init) => {
      const res = await fetch(input, init);
      seen.push({ ifNoneMatch: new Headers(init?.headers).get('if-none-match'), status: res.status });
      return res;
    };
    const v = verifierFor({ fetch: fn, now: () => clock, bundleMaxAgeMs: 60_000 });
    await v.verify(token);
    clock += 61_000;
    expect(v.bundleStatus().stale).toBe(true);
    await v.verify(token);
    await expect.poll(() => v.bundleStatus().stale).toBe(false);
    expect(seen).toHaveLength(2);
    expect(seen[0]).toEqual({ ifNoneMatch: null, status: 200 });
    expect(seen[1]!.ifNoneMatch).toMatch(/^"[\w-]+"$/);
    expect(seen[1]!.status).toBe(304);
    expect(v.bundleStatus().lastError).toBeUndefined();
    await expect(v.verify(token)).resolves.toBeDefined();
  });

  it('a 304 to a verifier that never loaded a bundle is an error, not an empty trust store', async () => {
    const lying = createServer((_req, res) => {
      res.statusCode = 304;
      res.setHeader('etag', '"x"');
      res.end();
    });
    await new Promise<void>((r) => lying.listen(0, '127.0.0.1', r));
    try {
      const v = createVerifier({
        trustBundleUrl: `http://127.0.0.1:${(lying.address() as AddressInfo).port}/.well-known/meridian/trust-bundle`,
        audience: ORDERS,
      });
      await refused(v.verify(token), 'ERR_TRUST_UNAVAILABLE', 503);
      expect(v.bundleStatus().lastError).toMatch(/HTTP 304/);
    } finally {
      await new Promise((r) => lying.close(r));
    }
  });
});

describe('verified-token cache', () => {
  it('a hit returns the same result; it is refused once the token expired (injected clock)', async () => {
    let clock = Date.now();
    const v = verifierFor({ cache: { maxEntries: 100 }, now: () => clock });
    const first = await v.verify(token);
    const second = await v.verify(token);
    expect(second).toBe(first);
    clock = (claims.exp as number) * 1000 + 31_000;
    await refused(v.verify(token), 'ERR_TOKEN_EXPIRED');
  });

  it('a hit still checks scope and residency for this request', async () => {
    const v = verifierFor({ cache: {} });
    await v.verify(token);
    await refused(v.verify(token, { requiredScopes: ['orders:write'] }), 'ERR_INSUFFICIENT_SCOPE', 403);
    await refused(v.verify(token, { region: 'us' }), 'ERR_RESIDENCY_PROCESSING', 403);
  });

  it('never keeps more entries than maxEntries', async () => {
    const v = verifierFor({ cache: { maxEntries: 2 } });
    const tokens = await Promise.all([1, 2, 3].map(() => getToken(orders, ORDERS, 'orders:read')));
    const results = [];
    for (const t of tokens) results.push(await v.verify(t));
    expect(await v.verify(tokens[2]!)).toBe(results[2]);
    expect(await v.verify(tokens[0]!)).not.toBe(results[0]);
  });
});

describe('RFC 7662 — live introspection for revocation-sensitive calls', () => {
  it('a revoked token stays accepted from the cache, but not with introspect: true', async () => {
    const fresh = await getToken(orders, ORDERS, 'orders:read');
    const v = verifierFor({
      cache: {},
      introspection: { url: `${broker.url}/token/introspection`, ...orders, cacheTtlMs: 0 },
    });
    await expect(v.verify(fresh, { introspect: true })).resolves.toMatchObject({ sub: 'orders-client' });
    const rev = await fetch(`${broker.url}/token/revocation`, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        authorization: `Basic ${Buffer.from(`${orders.clientId}:${orders.clientSecret}`).toString('base64')}`,
      },
      body: new URLSearchParams({ token: fresh, token_type_hint: 'access_token' }),
    });
    expect(rev.status).toBe(200);
    // The documented trade-off: signature and exp still hold, so the plain check passes.
    await expect(v.verify(fresh)).resolves.toBeDefined();
    await refused(v.verify(fresh, { introspect: true }), 'ERR_TOKEN_INACTIVE');
  });

  it('fails closed (503) when the introspection endpoint cannot be asked', async () => {
    const v = verifierFor({
      introspection: {
        url: `${broker.url}/token/introspection`,
        clientId: 'orders-client',
        clientSecret: 'wrong',
      },
    });
    await refused(v.verify(token, { introspect: true }), 'ERR_TRUST_UNAVAILABLE', 503);
  });
});

describe('key rotation at the broker', () => {
  it('accepts tokens of a rotated key: the pre-published next key needs no fetch, an unseen one exactly one', async () => {
    let clock = Date.now();
    const rec = recordingFetch();
    const v = verifierFor({ fetch: rec.fn, now: () => clock });
    await v.verify(token);
    expect(rec.urls.length).toBe(1);

    // `next` was in the bundle before it signed anything.
    expect((await adminCall(broker, 'POST', '/admin/keys/rotate')).status).toBeLessThan(300);
    const afterFirst = await getToken(orders, ORDERS, 'orders:read');
    expect(decodeProtectedHeader(afterFirst).kid).not.toBe(brokerJwk.kid);
    await expect(v.verify(afterFirst)).resolves.toMatchObject({ region: 'eu' });
    expect(rec.urls.length).toBe(1);

    // Rotating again promotes a key this verifier never saw: one refresh once the cooldown allows.
    expect((await adminCall(broker, 'POST', '/admin/keys/rotate')).status).toBeLessThan(300);
    const afterSecond = await getToken(orders, ORDERS, 'orders:read');
    clock += 30_000;
    await expect(v.verify(afterSecond)).resolves.toMatchObject({ region: 'eu' });
    expect(rec.urls.length).toBe(2);
    // The retiring key stays published, so the first token still verifies.
    await expect(v.verify(token)).resolves.toBeDefined();
  });
});

// Last: stops the broker.
describe('broker unreachable after the bundle was loaded', () => {
  it('keeps verifying with the last good bundle and reports the failed refresh', async () => {
    const v = verifierFor({ bundleRefreshCooldownMs: 0 });
    await v.verify(token);
    await broker.stop();
    await expect(v.verify(token)).resolves.toMatchObject({ sub: 'orders-client' });
    // An unknown kid makes it try the broker, which is gone: refused, and the bundle is kept.
    await refused(v.verify(await signAsAttacker({ kid: 'after-outage' }, claims)), 'ERR_TOKEN_SIGNATURE');
    const status = v.bundleStatus();
    expect(status).toMatchObject({ loaded: true, stale: true, fetches: 2 });
    expect(status.lastError).toBeTruthy();
    await expect(v.verify(token)).resolves.toMatchObject({ sub: 'orders-client' });
  });
});
