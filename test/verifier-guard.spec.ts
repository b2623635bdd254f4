/**
 * The NestJS adapter of `libs/verifier`: `MeridianAuthGuard` in a real Nest application over
 * HTTP (supertest) — RFC 6750 §3 challenges, scope and residency refusals, DPoP (RFC 9449 §7.1)
 * and failing closed while no trust bundle was ever loaded.
 */
import { randomUUID } from 'node:crypto';
import { Controller, Get, Post, Req, UseGuards, type INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import {
  SignJWT,
  calculateJwkThumbprint,
  exportJWK,
  generateKeyPair,
  type CryptoKey,
  type JWK,
  type JWTPayload,
} from 'jose';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { VerifiedToken } from '../libs/verifier/src';
import { accessTokenHash } from '../libs/verifier/src/dpop';
import {
  MeridianAuthGuard,
  MeridianToken,
  MeridianVerifierModule,
  RequireProcessingRegion,
  RequireScopes,
  type MeridianRequest,
} from '../libs/verifier/src/nest';
import { freePort } from './support/ports';

const ISS = 'https://eu.guard.test.example';
const AUD = 'https://orders.guard.test.example';
const PUBLIC_URL = 'https://orders.guard.test.example';

@Controller('orders')
@UseGuards(MeridianAuthGuard)
@RequireScopes('orders:read')
class OrdersController {
  @Get()
  list(@Req() req: MeridianRequest) {
    return { sub: req.meridian!.sub, scope: req.meridian!.scope, region: req.meridian!.region };
  }

  @Post()
  @RequireScopes('orders:write')
  create(@MeridianToken() token: VerifiedToken) {
    return { created: true, by: token.clientId };
  }

  @Get('customers')
  @RequireProcessingRegion()
  customers(@MeridianToken() token: VerifiedToken) {
    return { residency: token.residency };
  }
}

let app: INestApplication;
let down: INestApplication;
let signer: { privateKey: CryptoKey; jwk: JWK };
let client: { privateKey: CryptoKey; jwk: JWK; jkt: string };

const now = () => Math.floor(Date.now() / 1000);

function mint(claims: JWTPayload & Record<string, unknown> = {}, header: Record<string, unknown> = {}) {
  return new SignJWT({
    iss: ISS,
    sub: 'user-1',
    aud: AUD,
    client_id: 'orders-app',
    jti: randomUUID(),
    scope: 'orders:read',
    iat: now(),
    exp: now() + 300,
    residency: { region: 'eu', jurisdiction: 'DE', policy: 'eu-default@1', processing: ['eu'] },
    ...claims,
  })
    .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid: 'eu-1', ...header } as never)
    .sign(signer.privateKey);
}

function proof(token: string, htm: string, path: string) {
  return new SignJWT({
    htm,
    htu: `${PUBLIC_URL}${path}`,
    iat: now(),
    jti: randomUUID(),
    ath: accessTokenHash(token),
  })
    .setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk: client.jwk })
    .sign(client.privateKey);
}

async function start(options: Parameters<typeof MeridianVerifierModule.forRoot>[0]) {
  const moduleRef = await Test.createTestingModule({
    imports: [MeridianVerifierModule.forRoot(options)],
    controllers: [OrdersController],
  }).compile();
  const nest = moduleRef.createNestApplication({ logger: false });
  await nest.init();
  return nest;
}

beforeAll(async () => {
  const s = await generateKeyPair('ES256', { extractable: true });
  signer = {
    privateKey: s.privateKey,
    jwk: { ...(await exportJWK(s.publicKey)), kid: 'eu-1', alg: 'ES256', use: 'sig' },
  };
  const c = await generateKeyPair('ES256', { extractable: true });
  const cjwk = await exportJWK(c.publicKey);
  client = { privateKey: c.privateKey, jwk: cjwk, jkt: await calculateJwkThumbprint(cjwk, 'sha256') };
  app = await start({
    issuers: [{ issuer: ISS, region: 'eu', jwks: { keys: [signer.jwk] } }],
    audience: AUD,
    region: 'eu',
    publicUrl: PUBLIC_URL,
  });
  down = await start({
    trustBundleUrl: `http://127.0.0.1:${await freePort()}/.well-known/meridian/trust-bundle`,
    audience: AUD,
  });
});

afterAll(async () => {
  await app?.close();
  await down?.close();
});

describe('RFC 6750 §3 — MeridianAuthGuard challenges', () => {
  it('answers a request without a token with 401 and a bare Bearer challenge', async () => {
    const res = await request(app.getHttpServer()).get('/orders');
    expect(res.status).toBe(401);
    expect(res.headers['www-authenticate']).toBe('Bearer');
    expect(res.body).toMatchObject({ statusCode: 401, code: 'ERR_TOKEN_MISSING' });
  });

  it('answers an invalid token with 401 and Bearer error="invalid_token"', async () => {
    const enc = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const none = `${enc({ alg: 'none', typ: 'at+jwt' })}.${enc({ iss: ISS, aud: AUD, sub: 'x', exp: now() + 60 })}.`;
    for (const [token, code] of [
      ['garbage', 'ERR_TOKEN_MALFORMED'],
      [none, 'ERR_TOKEN_ALG'],
      [await mint({ aud: 'https://other.example' }), 'ERR_TOKEN_AUDIENCE'],
      [await mint({ exp: now() - 120 }), 'ERR_TOKEN_EXPIRED'],
    ] as const) {
      const res = await request(app.getHttpServer()).get('/orders').set('authorization', `Bearer ${token}`);
      expect(res.status, code).toBe(401);
      expect(res.headers['www-authenticate']).toMatch(
        /^Bearer error="invalid_token", error_description="[^"]+"$/,
      );
      expect(res.body).toMatchObject({ error: 'invalid_token', code });
    }
  });

  it('answers a missing scope with 403 and error="insufficient_scope" naming the scopes', async () => {
    const res = await request(app.getHttpServer())
      .post('/orders')
      .set('authorization', `Bearer ${await mint()}`);
    expect(res.status).toBe(403);
    expect(res.headers['www-authenticate']).toMatch(
      /^Bearer error="insufficient_scope", .*scope="orders:read orders:write"$/,
    );
    expect(res.body).toMatchObject({ error: 'insufficient_scope', code: 'ERR_INSUFFICIENT_SCOPE' });
  });

  it('lets a valid token through with req.meridian set', async () => {
    const res = await request(app.getHttpServer())
      .get('/orders')
      .set('authorization', `Bearer ${await mint()}`);
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ sub: 'user-1', scope: ['orders:read'], region: 'eu' });
    const write = await request(app.getHttpServer())
      .post('/orders')
      .set('authorization', `Bearer ${await mint({ scope: 'orders:read orders:write' })}`);
    expect(write.status).toBe(201);
    expect(write.body).toEqual({ created: true, by: 'orders-app' });
  });
});

describe('@RequireProcessingRegion() — residency.processing', () => {
  it("passes when the service's region is in residency.processing", async () => {
    const res = await request(app.getHttpServer())
      .get('/orders/customers')
      .set('authorization', `Bearer ${await mint()}`);
    expect(res.status).toBe(200);
    expect(res.body.residency.processing).toEqual(['eu']);
  });

  it('refuses with 403 and the distinct ERR_RESIDENCY_PROCESSING code otherwise', async () => {
    const token = await mint({
      residency: { region: 'us', jurisdiction: 'US', policy: 'us@1', processing: ['us'] },
    });
    const res = await request(app.getHttpServer())
      .get('/orders/customers')
      .set('authorization', `Bearer ${token}`);
    expect(res.status).toBe(403);
    expect(res.body).toMatchObject({ code: 'ERR_RESIDENCY_PROCESSING', error: 'insufficient_scope' });
    expect(res.headers['www-authenticate']).toContain('error_description="residency: ');
    // The same token is fine on a route that handles no personal data.
    expect(
      (await request(app.getHttpServer()).get('/orders').set('authorization', `Bearer ${token}`)).status,
    ).toBe(200);
  });
});

describe('RFC 9449 §7.1 — DPoP through the guard', () => {
  it('accepts a DPoP-bound token with the DPoP scheme and a proof for this method and URL', async () => {
    const token = await mint({ cnf: { jkt: client.jkt } });
    const res = await request(app.getHttpServer())
      .get('/orders?page=1')
      .set('authorization', `DPoP ${token}`)
      .set('dpop', await proof(token, 'GET', '/orders'));
    expect(res.status).toBe(200);
  });

  it('refuses the bound token as a Bearer token, a replayed proof, and a proof for another route', async () => {
    const token = await mint({ cnf: { jkt: client.jkt } });
    const asBearer = await request(app.getHttpServer())
      .get('/orders')
      .set('authorization', `Bearer ${token}`);
    expect(asBearer.status).toBe(401);
    expect(asBearer.headers['www-authenticate']).toMatch(/^DPoP error="invalid_token", .*algs="/);

    const p = await proof(token, 'GET', '/orders');
    const ok = await request(app.getHttpServer())
      .get('/orders')
      .set('authorization', `DPoP ${token}`)
      .set('dpop', p);
    expect(ok.status).toBe(200);
    const replay = await request(app.getHttpServer())
      .get('/orders')
      .set('authorization', `DPoP ${token}`)
      .set('dpop', p);
    expect(replay.status).toBe(401);
    expect(replay.headers['www-authenticate']).toMatch(/^DPoP error="invalid_dpop_proof"/);
    expect(replay.body.code).toBe('ERR_DPOP_REPLAY');

    const elsewhere = await request(app.getHttpServer())
      .get('/orders/customers')
      .set('authorization', `DPoP ${token}`)
      .set('dpop', await proof(token, 'GET', '/orders'));
    expect(elsewhere.status).toBe(401);
    expect(elsewhere.body.code).toBe('ERR_DPOP_INVALID');
  });
});

describe('no trust bundle ever loaded', () => {
  it('fails closed with 503 and Retry-After, never letting the request through', async () => {
    const res = await request(down.getHttpServer())
      .get('/orders')
      .set('authorization', `Bearer ${await mint()}`);
    expect(res.status).toBe(503);
    expect(res.headers['retry-after']).toMatch(/^\d+$/);
    expect(res.body).toMatchObject({ code: 'ERR_TRUST_UNAVAILABLE' });
  });
});
