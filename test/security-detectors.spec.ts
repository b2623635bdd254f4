/**
 * Anomaly detection and containment (issue 6), driven over HTTP until each detector fires: the
 * detection is an audit entry `security.<detector>`, a Prometheus counter and a webhook whose
 * HMAC-SHA256 signature a local receiver verifies; the containment is checked on the wire.
 *
 * The broker runs in this process (the test issues the authorization codes a federated login
 * would, as code-flow.spec.ts does); the sidecar is the built `dist/apps/sidecar/main.js`.
 * Requests come from 127.0.0.1, a trusted proxy here, so X-Forwarded-For picks their source.
 */
import { spawn } from 'node:child_process';
import { createHash, generateKeyPairSync, randomBytes } from 'node:crypto';
import http from 'node:http';
import { join } from 'node:path';
import { SignJWT, decodeProtectedHeader } from 'jose';
import { Client } from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  REPO_ROOT,
  adminCall,
  adminToken,
  clientCredentials,
  freshDatabases,
  introspect,
  startInProcessBroker,
  tokenRequest,
  type InProcessBroker,
} from './support/broker';
import { createVerifier } from '@meridian/verifier';
import { Controller, Get, UseGuards } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import request from 'supertest';
import { MeridianAuthGuard, MeridianVerifierModule, RequireProcessingRegion } from '@meridian/verifier/nest';
import { freePort } from './support/ports';
import { ccRequest, raw, someAddress, startWebhookReceiver } from './support/security';

const API = 'https://api.detectors.example';
const REDIRECT = 'https://app.detectors.example/cb';
const SUB = 'sub-detect-0001';
const RESIDENCY = { region: 'eu', jurisdiction: 'DE', policy: 'eu-gdpr@1', processing: ['eu'] };
const WEBHOOK_SECRET = `hook-${randomBytes(24).toString('base64url')}`;
const app = { clientId: 'detect-app', clientSecret: `detect-app-${randomBytes(16).toString('hex')}` };

let dbs: Awaited<ReturnType<typeof freshDatabases>>;
let broker: InProcessBroker;
let hooks: Awaited<ReturnType<typeof startWebhookReceiver>>;
let admin: string;

async function registerClient(
  id: string,
  body: Record<string, unknown>,
): Promise<{ clientId: string; clientSecret: string }> {
  const clientSecret = `${id}-${randomBytes(16).toString('hex')}`;
  const r = await adminCall(
    broker,
    'PUT',
    `/admin/clients/${id}`,
    { client_secret: clientSecret, ...body },
    admin,
  );
  if (r.status >= 300) throw new Error(`client ${id}: ${r.status} ${JSON.stringify(r.body)}`);
  return { clientId: id, clientSecret };
}

const machine = (resources: string[], scope: string) => ({
  redirect_uris: [],
  grant_types: ['client_credentials'],
  response_types: [],
  token_endpoint_auth_method: 'client_secret_basic',
  scope,
  resources,
});

async function auditOf(type: string): Promise<any[]> {
  const r = await adminCall(
    broker,
    'GET',
    `/audit/events?type=${encodeURIComponent(type)}`,
    undefined,
    admin,
  );
  expect(r.status).toBe(200);
  return r.body.events;
}

async function metricValue(name: string, label: string): Promise<number> {
  const text = (await raw(broker.url, '/metrics')).text;
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && l.includes(label));
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0;
}

beforeAll(async () => {
  hooks = await startWebhookReceiver(WEBHOOK_SECRET);
  dbs = await freshDatabases('detectors');
  broker = await startInProcessBroker({
    controlUrl: dbs.control.url,
    regionUrl: dbs.region.eu!.url,
    extra: {
      MERIDIAN_TRUSTED_PROXIES: '127.0.0.1',
      MERIDIAN_LOCKOUT_CLIENT_FAILURES: '4/60',
      MERIDIAN_LOCKOUT_SOURCE_FAILURES: '6/60',
      MERIDIAN_LOCKOUT_SECONDS: '2',
      MERIDIAN_LOCKOUT_MAX_SECONDS: '60',
      MERIDIAN_DETECT_SIDECAR_TOKEN_FAILURES: '5/60',
      MERIDIAN_SECURITY_WEBHOOK_URL: hooks.url,
      MERIDIAN_SECURITY_WEBHOOK_SECRET: WEBHOOK_SECRET,
    },
  });
  admin = await adminToken(broker);
  expect(
    (
      await adminCall(
        broker,
        'PUT',
        '/admin/resources/api',
        { audience: API, scopes: ['api:read'], region: 'eu' },
        admin,
      )
    ).status,
  ).toBe(201);
  await registerClient(app.clientId, {
    redirect_uris: [REDIRECT],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
    scope: 'openid offline_access api:read',
    resources: [API],
  }).then((c) => (app.clientSecret = c.clientSecret));
  const pg = new Client({ connectionString: dbs.region.eu!.url });
  await pg.connect();
  await pg.query('insert into subject (sub, residency, claims) values ($1, $2, $3)', [SUB, RESIDENCY, {}]);
  await pg.end();
});

afterAll(async () => {
  await broker?.stop();
  await hooks?.stop();
  await dbs?.drop();
});

// ------------------------------------------------------------------ failed client authentication

describe('failed client authentication bursts → temporary lockout with back-off', () => {
  it('locks a client out after 4 failures: the right secret gets 429 invalid_client until the lockout ends', async () => {
    const worker = await registerClient('burst-worker', machine([API], 'api:read'));
    const wrong = { ...worker, clientSecret: `${worker.clientSecret}-wrong` };
    // Each attempt from another address: this is the client's burst, not a source's.
    expect((await ccRequest(broker.url, worker, API, { xff: someAddress() })).status).toBe(200);
    for (let i = 0; i < 4; i++) {
      const r = await ccRequest(broker.url, wrong, API, { xff: someAddress() });
      expect(r.status).toBe(401);
      expect(r.json.error).toBe('invalid_client');
    }
    const locked = await ccRequest(broker.url, worker, API, { xff: someAddress() });
    expect(locked.status).toBe(429);
    expect(locked.json.error).toBe('invalid_client');
    expect(locked.json.error_description).toMatch(/locked after repeated failures for this client/);
    const wait = Number(locked.headers['retry-after']);
    expect(wait).toBeGreaterThanOrEqual(1);
    expect(wait).toBeLessThanOrEqual(2);
    // Every client-authenticated endpoint: introspection too.
    const intro = await introspect(broker.url, 'x', worker);
    expect(intro.status).toBe(429);

    const alert = await hooks.waitFor(
      (a) => a.detector === 'client_auth_burst' && a.target.id === 'burst-worker',
    );
    expect(alert.verified).toBe(true);
    expect(alert.detail).toMatchObject({ failures: 4, lockedSeconds: 2, strikes: 1 });
    const [entry] = await auditOf('security.client_auth_burst');
    expect(entry).toMatchObject({ target_type: 'client', target_id: 'burst-worker', outcome: 'refused' });
    expect(
      await metricValue('meridian_security_detections_total', 'detector="client_auth_burst"'),
    ).toBeGreaterThanOrEqual(1);

    // The lockout ends: the right secret works again.
    await new Promise((r) => setTimeout(r, wait * 1000 + 200));
    expect((await ccRequest(broker.url, worker, API, { xff: someAddress() })).status).toBe(200);

    // Failing again within the window locks again, twice as long.
    expect((await ccRequest(broker.url, wrong, API, { xff: someAddress() })).status).toBe(401);
    const again = await ccRequest(broker.url, worker, API, { xff: someAddress() });
    expect(again.status).toBe(429);
    expect(Number(again.headers['retry-after'])).toBeGreaterThanOrEqual(3);
    const second = await hooks.waitFor(
      (a) => a.detector === 'client_auth_burst' && a.target.id === 'burst-worker' && a.detail.strikes === 2,
    );
    expect(second.detail).toMatchObject({ lockedSeconds: 4, strikes: 2 });
  });

  it('locks a source address out after 6 failures across clients; other sources are not affected', async () => {
    const worker = await registerClient('source-victim', machine([API], 'api:read'));
    const attacker = someAddress();
    for (let i = 0; i < 6; i++) {
      const r = await ccRequest(broker.url, { clientId: `guess-${i}`, clientSecret: 'guess' }, API, {
        xff: attacker,
      });
      expect(r.status).toBe(401);
    }
    const fromAttacker = await ccRequest(broker.url, worker, API, { xff: attacker });
    expect(fromAttacker.status).toBe(429);
    expect(fromAttacker.json).toMatchObject({ error: 'invalid_client' });
    expect(fromAttacker.json.error_description).toMatch(/from this address/);
    expect((await ccRequest(broker.url, worker, API, { xff: someAddress() })).status).toBe(200);
    const alert = await hooks.waitFor((a) => a.detector === 'source_auth_burst' && a.target.id === attacker);
    expect(alert.verified).toBe(true);
    expect(alert.target.type).toBe('source');
  });
});

// ------------------------------------------------------------------ single-use grants used twice

function pkce() {
  const verifier = randomBytes(32).toString('base64url');
  return { verifier, challenge: createHash('sha256').update(verifier).digest('base64url') };
}

async function issueCode(challenge: string) {
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
    scope: 'openid offline_access api:read',
    redirectUri: REDIRECT,
    codeChallenge: challenge,
    codeChallengeMethod: 'S256',
    resource: API,
    authTime: Math.floor(Date.now() / 1000),
  } as never);
  return { code: await code.save(), grantId };
}

const redeem = (code: string, verifier: string) =>
  tokenRequest(
    broker.url,
    {
      grant_type: 'authorization_code',
      code,
      redirect_uri: REDIRECT,
      code_verifier: verifier,
      resource: API,
    },
    app,
  );
const refresh = (token: string) =>
  tokenRequest(broker.url, { grant_type: 'refresh_token', refresh_token: token, resource: API }, app);

describe('RFC 6749 §4.1.2 — authorization-code replay', () => {
  it('alerts, and the tokens issued from the code are revoked', async () => {
    const { verifier, challenge } = pkce();
    const { code, grantId } = await issueCode(challenge);
    const first = await redeem(code, verifier);
    expect(first.status).toBe(200);
    expect((await introspect(broker.url, first.body.access_token as string, app)).body.active).toBe(true);
    const replay = await redeem(code, verifier);
    expect(replay.status).toBe(400);
    expect(replay.body.error).toBe('invalid_grant');
    // Containment: what the code issued is dead.
    expect((await introspect(broker.url, first.body.access_token as string, app)).body).toEqual({
      active: false,
    });
    expect((await refresh(first.body.refresh_token as string)).body.error).toBe('invalid_grant');
    // Detection.
    const alert = await hooks.waitFor((a) => a.detector === 'code_replay');
    expect(alert.verified).toBe(true);
    expect(alert.target).toEqual({ type: 'subject', id: SUB });
    expect(alert.detail).toMatchObject({ client: app.clientId, grant: grantId });
    expect(alert.containment).toMatch(/revoked/);
    const [entry] = await auditOf('security.code_replay');
    expect(entry).toMatchObject({ target_type: 'subject', target_id: SUB });
    expect(entry.detail).toMatchObject({ client: app.clientId, grant: grantId });
    expect(await metricValue('meridian_security_detections_total', 'detector="code_replay"')).toBe(1);
  });
});

describe('RFC 9700 §4.14.2 — refresh-token reuse', () => {
  it('alerts, and the whole family is revoked (the newer refresh token and its access token too)', async () => {
    const { verifier, challenge } = pkce();
    const { code, grantId } = await issueCode(challenge);
    const t0 = await redeem(code, verifier);
    const t1 = await refresh(t0.body.refresh_token as string);
    expect(t1.status).toBe(200);
    const reuse = await refresh(t0.body.refresh_token as string);
    expect(reuse.status).toBe(400);
    expect(reuse.body.error).toBe('invalid_grant');
    expect((await refresh(t1.body.refresh_token as string)).body.error).toBe('invalid_grant');
    expect((await introspect(broker.url, t1.body.access_token as string, app)).body).toEqual({
      active: false,
    });
    const alert = await hooks.waitFor((a) => a.detector === 'refresh_token_reuse');
    expect(alert.verified).toBe(true);
    expect(alert.target).toEqual({ type: 'subject', id: SUB });
    expect(alert.detail).toMatchObject({ client: app.clientId, grant: grantId });
    const [entry] = await auditOf('security.refresh_token_reuse');
    expect(entry).toMatchObject({ target_type: 'subject', target_id: SUB });
  });
});

describe('every refused token request is audited (issue 6: token issuance failures)', () => {
  it('RFC 6749 §5.2 — a bad grant, a bad secret and an unknown client each leave one token.refused entry, no credential in it', async () => {
    const m2m = await registerClient('refused-m2m', machine([API], 'api:read'));
    const before = (await auditOf('token.refused')).length;
    const badSecret = 'not-the-secret-' + 'x'.repeat(20);
    // An authenticated client with a grant it may not use (unauthorized_client) …
    const wrongGrant = await tokenRequest(
      broker.url,
      { grant_type: 'authorization_code', code: 'made-up-code', redirect_uri: 'https://x.example/cb' },
      { clientId: m2m.clientId, clientSecret: m2m.clientSecret },
    );
    expect(wrongGrant.status).toBe(400);
    // … a replayed/unknown code from the app (invalid_grant) …
    const { verifier } = pkce();
    const unknownCode = await redeem('made-up-code', verifier);
    expect(unknownCode.body.error).toBe('invalid_grant');
    // … and a secret that is wrong (invalid_client, not authenticated).
    const wrongSecret = await tokenRequest(
      broker.url,
      { grant_type: 'client_credentials' },
      { clientId: m2m.clientId, clientSecret: badSecret },
    );
    expect(wrongSecret.status).toBe(401);
    const all = await auditOf('token.refused');
    // Newest first.
    const entries = all.slice(0, all.length - before);
    expect(entries).toHaveLength(3);
    const byError = Object.fromEntries(entries.map((e) => [e.detail.error, e]));
    expect(byError.unauthorized_client ?? byError.invalid_grant).toBeDefined();
    expect(byError.invalid_client).toMatchObject({
      actor: 'unauthenticated',
      target_id: m2m.clientId,
      outcome: 'refused',
      detail: { grant_type: 'client_credentials', authenticated: false, source: '127.0.0.1' },
    });
    const appEntry = entries.find((e) => e.target_id === app.clientId);
    expect(appEntry).toMatchObject({
      actor: app.clientId,
      detail: { grant_type: 'authorization_code', error: 'invalid_grant', authenticated: true },
    });
    const text = JSON.stringify(entries);
    for (const secret of [badSecret, m2m.clientSecret, app.clientSecret, 'made-up-code'])
      expect(text).not.toContain(secret);
  });
});

// ------------------------------------------------------------------------- sidecar reports

const SIDECAR_MAIN = join(REPO_ROOT, 'dist', 'apps', 'sidecar', 'main.js');

describe('events reported by a sidecar (POST /security/events)', () => {
  let sidecar: ReturnType<typeof spawn> | undefined;
  let sidecarUrl = '';
  let upstreamHits = 0;
  let upstream: http.Server;
  let worker: { clientId: string; clientSecret: string };
  let output = '';

  beforeAll(async () => {
    upstream = http.createServer((_req, res) => {
      upstreamHits++;
      res.end('ok');
    });
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
    const reporter = await registerClient(
      'orders-sidecar',
      machine(['urn:meridian:security-events'], 'meridian:security:report'),
    );
    worker = await registerClient('us-bound-worker', machine([API], 'api:read'));
    const port = await freePort();
    sidecar = spawn(process.execPath, [SIDECAR_MAIN], {
      env: {
        PATH: process.env.PATH,
        HOST: '127.0.0.1',
        PORT: String(port),
        SIDECAR_UPSTREAM: `http://127.0.0.1:${(upstream.address() as { port: number }).port}`,
        SIDECAR_AUDIENCE: API,
        SIDECAR_TRUST_BUNDLE_URL: `${broker.url}/.well-known/meridian/trust-bundle`,
        // This service runs in us: tokens about eu people (and eu clients) may not be processed here.
        SIDECAR_REGION: 'us',
        SIDECAR_REPORT_URL: `${broker.url}/security/events`,
        SIDECAR_REPORT_CLIENT_ID: reporter.clientId,
        SIDECAR_REPORT_CLIENT_SECRET: reporter.clientSecret,
        SIDECAR_REPORT_INTERVAL_MS: '200',
        LOG_LEVEL: 'info',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    sidecar.stdout!.on('data', (d: Buffer) => (output += d.toString()));
    sidecar.stderr!.on('data', (d: Buffer) => (output += d.toString()));
    sidecarUrl = `http://127.0.0.1:${port}`;
    const deadline = Date.now() + 20_000;
    for (;;) {
      const ready = await raw(sidecarUrl, '/readyz').catch(() => undefined);
      if (ready?.status === 200) break;
      if (Date.now() > deadline) throw new Error(`sidecar not ready:\n${output}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  });

  afterAll(async () => {
    sidecar?.kill('SIGTERM');
    await new Promise<void>((r) => upstream?.close(() => r()));
  });

  it('a token presented at a service outside its residency.processing: refused there, alerted here', async () => {
    const token = await clientCredentials(broker.url, worker, API);
    expect(token.status).toBe(200);
    const r = await raw(sidecarUrl, '/orders', {
      headers: { authorization: `Bearer ${token.body.access_token}` },
    });
    expect(r.status).toBe(403);
    expect(r.json.code).toBe('ERR_RESIDENCY_PROCESSING');
    expect(upstreamHits).toBe(0);
    const alert = await hooks.waitFor((a) => a.detector === 'residency_violation');
    expect(alert.verified).toBe(true);
    expect(alert.target).toEqual({ type: 'client', id: worker.clientId });
    expect(alert.detail).toMatchObject({
      client: worker.clientId,
      service: API,
      serviceRegion: 'us',
      tokenRegion: 'eu',
      processing: ['eu'],
      reporter: 'orders-sidecar',
    });
    const [entry] = await auditOf('security.residency_violation');
    expect(entry).toMatchObject({ target_type: 'client', target_id: worker.clientId, actor: 'system' });
  });

  it('a spike of invalid-signature and unknown-issuer tokens at the sidecar raises one alert', async () => {
    const real = (await clientCredentials(broker.url, worker, API)).body.access_token as string;
    const { kid } = decodeProtectedHeader(real);
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const forge = (iss: string) =>
      new SignJWT({ client_id: worker.clientId, scope: 'api:read', residency: RESIDENCY })
        .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid })
        .setIssuer(iss)
        .setSubject(worker.clientId)
        .setAudience(API)
        .setIssuedAt()
        .setJti(randomBytes(8).toString('hex'))
        .setExpirationTime('5m')
        .sign(privateKey);
    const codes: string[] = [];
    for (let i = 0; i < 3; i++) {
      for (const iss of [broker.issuer, 'https://unknown-issuer.example']) {
        const r = await raw(sidecarUrl, '/orders', {
          headers: { authorization: `Bearer ${await forge(iss)}` },
        });
        expect(r.status).toBe(401);
        codes.push(r.json.code);
      }
    }
    expect(new Set(codes)).toEqual(new Set(['ERR_TOKEN_SIGNATURE', 'ERR_TOKEN_ISSUER']));
    const alert = await hooks.waitFor((a) => a.detector === 'sidecar_token_failures');
    expect(alert.verified).toBe(true);
    expect(alert.target).toEqual({ type: 'client', id: 'orders-sidecar' });
    expect(alert.detail.rejected).toBeGreaterThanOrEqual(5);
    expect(Object.keys(alert.detail.codes as object).sort()).toEqual([
      'ERR_TOKEN_ISSUER',
      'ERR_TOKEN_SIGNATURE',
    ]);
    expect(upstreamHits).toBe(0);
  });

  it('takes reports only from clients registered for them', async () => {
    const body = JSON.stringify({
      audience: API,
      events: [{ type: 'token_rejected', count: 100, code: 'ERR_TOKEN_SIGNATURE' }],
    });
    const anonymous = await raw(broker.url, '/security/events', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body,
    });
    expect(anonymous.status).toBe(401);
    const apiToken = (await clientCredentials(broker.url, worker, API)).body.access_token as string;
    const wrongAudience = await raw(broker.url, '/security/events', {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${apiToken}` },
      body,
    });
    expect(wrongAudience.status).toBe(401);
    expect(wrongAudience.headers['www-authenticate']).toMatch(/^Bearer error="invalid_token"/);
  });
});

// ----------------------------------------------------------------- verifier SDK reports

describe('events reported by the verifier SDK (createVerifier report option)', () => {
  it('a token presented at an SDK service outside its residency.processing: refused there, alerted here', async () => {
    const reporter = await registerClient(
      'orders-sdk',
      machine(['urn:meridian:security-events'], 'meridian:security:report'),
    );
    const worker = await registerClient('sdk-bound-worker', machine([API], 'api:read'));
    const verifier = createVerifier({
      trustBundleUrl: `${broker.url}/.well-known/meridian/trust-bundle`,
      audience: API,
      report: {
        url: `${broker.url}/security/events`,
        clientId: reporter.clientId,
        clientSecret: reporter.clientSecret,
        intervalMs: 200,
        region: 'us',
      },
    });
    try {
      const token = await clientCredentials(broker.url, worker, API);
      expect(token.status).toBe(200);
      await expect(
        verifier.verify(token.body.access_token as string, { region: 'us' }),
      ).rejects.toMatchObject({ code: 'ERR_RESIDENCY_PROCESSING', status: 403 });
      const alert = await hooks.waitFor(
        (a) => a.detector === 'residency_violation' && a.target?.id === worker.clientId,
      );
      expect(alert.verified).toBe(true);
      expect(alert.detail).toMatchObject({
        client: worker.clientId,
        service: API,
        serviceRegion: 'us',
        tokenRegion: 'eu',
        reporter: reporter.clientId,
      });
    } finally {
      await verifier.close();
    }
  });

  it('refuses report options that would send credentials in clear text or to the wrong place', () => {
    const base = { trustBundleUrl: `${broker.url}/.well-known/meridian/trust-bundle`, audience: API };
    const report = { url: `${broker.url}/security/events`, clientId: 'c', clientSecret: 's' };
    expect(() =>
      createVerifier({ ...base, report: { ...report, url: 'http://broker.example/security/events' } }),
    ).toThrow(/report.url must be https/);
    expect(() => createVerifier({ ...base, report: { ...report, url: `${broker.url}/token` } })).toThrow(
      /report.url must be the broker's security events endpoint/,
    );
    expect(() => createVerifier({ ...base, report: { ...report, clientSecret: '' } })).toThrow(
      /report.clientSecret is required/,
    );
  });
});

describe('events reported through the NestJS module (MeridianVerifierModule report option)', () => {
  @Controller('customers')
  @UseGuards(MeridianAuthGuard)
  class CustomersController {
    @Get()
    @RequireProcessingRegion()
    list() {
      return { ok: true };
    }
  }

  it("names the module's region in its reports and sends what is pending when the application closes", async () => {
    const reporter = await registerClient(
      'orders-nest',
      machine(['urn:meridian:security-events'], 'meridian:security:report'),
    );
    const worker = await registerClient('nest-bound-worker', machine([API], 'api:read'));
    const moduleRef = await Test.createTestingModule({
      imports: [
        MeridianVerifierModule.forRoot({
          trustBundleUrl: `${broker.url}/.well-known/meridian/trust-bundle`,
          audience: API,
          region: 'us',
          // Far longer than the test: only the flush at shutdown sends the report.
          report: {
            url: `${broker.url}/security/events`,
            clientId: reporter.clientId,
            clientSecret: reporter.clientSecret,
            intervalMs: 600_000,
          },
        }),
      ],
      controllers: [CustomersController],
    }).compile();
    const nest = moduleRef.createNestApplication({ logger: false });
    await nest.init();
    const token = await clientCredentials(broker.url, worker, API);
    const res = await request(nest.getHttpServer())
      .get('/customers')
      .set('authorization', `Bearer ${token.body.access_token as string}`);
    expect(res.status).toBe(403);
    expect(res.body.code).toBe('ERR_RESIDENCY_PROCESSING');
    await nest.close();
    const alert = await hooks.waitFor(
      (a) => a.detector === 'residency_violation' && a.target?.id === worker.clientId,
    );
    expect(alert.detail).toMatchObject({
      client: worker.clientId,
      serviceRegion: 'us',
      reporter: reporter.clientId,
    });
  });
});
