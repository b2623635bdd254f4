/**
 * Failing safe when the control plane fails (issue 6): the control-plane database lives on a
 * PostgreSQL server this test starts and stops itself. Services keep verifying tokens that were
 * already issued — the verifier SDK and the auth sidecar hold the last trust bundle they
 * fetched — while the broker refuses what needs configuration (client registry, identity
 * providers, policies) with a 503 that says so, and serves again without a restart.
 */
import { spawn } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { SignJWT, generateKeyPair } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createVerifier, type Verifier } from '@meridian/verifier';
import {
  REPO_ROOT,
  adminCall,
  adminToken,
  clientCredentials,
  freshDatabases,
  newKek,
  registerService,
  spawnBroker,
  type SpawnedBroker,
} from './support/broker';
import { freePort } from './support/ports';
import { startOwnPostgres, type OwnPostgres } from './support/own-postgres';

const SERVICE = 'https://api.fault-control.example';
let pg: OwnPostgres;
let dbs: Awaited<ReturnType<typeof freshDatabases>>;
let broker: SpawnedBroker;
let service: { clientId: string; clientSecret: string };
let verifier: Verifier;
let upstream: http.Server;
let sidecar: { url: string; child: ReturnType<typeof spawn>; output: () => string };
/** Issued before the outage; the verifier and the sidecar see them only during it. */
const unseen: string[] = [];
const app = { clientId: 'fault-control-app', redirectUri: 'http://127.0.0.1:9/cb' };
const measured: Record<string, number> = {};

async function json(url: string, init?: RequestInit) {
  const res = await fetch(url, init);
  const text = await res.text();
  let body: any = text;
  try {
    body = JSON.parse(text);
  } catch {
    // a page
  }
  return { status: res.status, headers: res.headers, body, text };
}

async function startSidecar(env: Record<string, string>) {
  const port = await freePort();
  const child = spawn(process.execPath, [join(REPO_ROOT, 'dist', 'apps', 'sidecar', 'main.js')], {
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      HOST: '127.0.0.1',
      PORT: String(port),
      LOG_LEVEL: 'info',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
    cwd: REPO_ROOT,
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  process.once('exit', () => child.kill('SIGKILL'));
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    const r = await fetch(`${url}/readyz`).catch(() => undefined);
    if (r?.status === 200) break;
    if (i > 200 || child.exitCode !== null) throw new Error(`sidecar not ready:\n${out}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return { url, child, output: () => out };
}

beforeAll(async () => {
  pg = await startOwnPostgres('fault-control');
  dbs = await freshDatabases('faultcontrol');
  broker = await spawnBroker({
    controlUrl: await pg.ensureDatabase('meridian_control'),
    regionUrl: dbs.region.eu!.url,
    kek: newKek(),
  });
  service = await registerService(broker, {
    resourceId: 'fault-control-api',
    audience: SERVICE,
    scopes: ['fault:read'],
    clientId: 'fault-control-service',
    clientScope: 'fault:read',
  });
  const c = await adminCall(broker, 'PUT', `/admin/clients/${app.clientId}`, {
    client_secret: 'fault-control-app-secret-0123456789abcdef',
    redirect_uris: [app.redirectUri],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
    scope: 'openid',
    resources: [],
  });
  expect(c.status).toBe(201);
  const seen = (await clientCredentials(broker.url, service, SERVICE, 'fault:read')).body
    .access_token as string;
  for (let i = 0; i < 2; i++)
    unseen.push(
      (await clientCredentials(broker.url, service, SERVICE, 'fault:read')).body.access_token as string,
    );

  const bundleUrl = `${broker.url}/.well-known/meridian/trust-bundle`;
  verifier = createVerifier({ trustBundleUrl: bundleUrl, audience: SERVICE, bundleRefreshCooldownMs: 100 });
  expect((await verifier.verify(seen)).claims.client_id).toBe(service.clientId);

  upstream = http.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ sub: req.headers['x-meridian-sub'] ?? null }));
  });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  sidecar = await startSidecar({
    SIDECAR_UPSTREAM: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`,
    SIDECAR_AUDIENCE: SERVICE,
    SIDECAR_TRUST_BUNDLE_URL: bundleUrl,
    SIDECAR_BUNDLE_REFRESH_COOLDOWN_MS: '100',
  });
  const through = await json(`${sidecar.url}/orders`, { headers: { authorization: `Bearer ${seen}` } });
  expect(through.status).toBe(200);
});

afterAll(async () => {
  console.info(`[fault-control-plane] measured: ${JSON.stringify(measured)}`);
  sidecar?.child.kill('SIGTERM');
  await broker?.stop();
  await new Promise((r) => upstream?.close(r));
  await dbs?.drop();
  await pg?.destroy();
});

describe('control plane down (the test stops its own PostgreSQL server)', () => {
  it('the trust bundle endpoint answers 503 with Retry-After naming the control plane (within about a second)', async () => {
    await pg.stop();
    const started = Date.now();
    let r = await json(`${broker.url}/.well-known/meridian/trust-bundle`);
    while (r.status === 200 && Date.now() - started < 5_000) {
      await new Promise((res) => setTimeout(res, 20));
      r = await json(`${broker.url}/.well-known/meridian/trust-bundle`);
    }
    measured.msTo503AfterStop = Date.now() - started;
    expect(r.status).toBe(503);
    expect(Number(r.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(r.body).toMatchObject({
      error: 'temporarily_unavailable',
      error_description: expect.stringMatching(/control-plane database/),
    });
  });

  it('already-issued tokens still verify in a service with the verifier SDK: its refresh fails, the cached trust bundle stays in use', async () => {
    const refreshed = await verifier.refresh();
    expect(refreshed).toMatchObject({ loaded: true, stale: true, lastError: expect.stringMatching(/503/) });
    const v = await verifier.verify(unseen[0]!);
    expect(v.claims).toMatchObject({ client_id: service.clientId, aud: SERVICE });
    // Still closed for everything else: a token signed by a key outside the cached bundle.
    const { privateKey } = await generateKeyPair('ES256');
    const forged = await new SignJWT({ client_id: service.clientId, scope: 'fault:read' })
      .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid: 'not-in-the-bundle' })
      .setIssuer(broker.issuer)
      .setAudience(SERVICE)
      .setSubject(service.clientId)
      .setJti('forged')
      .setIssuedAt()
      .setExpirationTime('5m')
      .sign(privateKey);
    await expect(verifier.verify(forged)).rejects.toMatchObject({ status: 401 });
  });

  it('already-issued tokens still pass the auth sidecar: a token it never saw is forwarded with its cached bundle, /readyz stays 200', async () => {
    const r = await json(`${sidecar.url}/orders`, { headers: { authorization: `Bearer ${unseen[1]}` } });
    expect(r.status).toBe(200);
    expect(r.body).toEqual({ sub: service.clientId });
    const ready = await json(`${sidecar.url}/readyz`);
    expect(ready.status).toBe(200);
    expect(ready.body.bundle).toMatchObject({ loaded: true });
  });

  it('logins needing configuration fail with a clear error page: the authorization endpoint answers 503 naming the control-plane database, with Retry-After', async () => {
    const auth = new URL(`${broker.url}/auth`);
    for (const [k, v] of Object.entries({
      client_id: app.clientId,
      redirect_uri: app.redirectUri,
      response_type: 'code',
      scope: 'openid',
      code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM',
      code_challenge_method: 'S256',
    }))
      auth.searchParams.set(k, v);
    for (const url of [auth.href, `${broker.url}/interaction/any/federation/de-eid`]) {
      const res = await fetch(url, { redirect: 'manual', headers: { accept: 'text/html' } });
      const html = await res.text();
      expect(res.status, url).toBe(503);
      expect(res.headers.get('location')).toBeNull();
      expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(0);
      expect(html).toContain('temporarily_unavailable');
      expect(html).toContain(
        'the control-plane database (configuration of clients and identity providers) is unavailable',
      );
      expect(html).not.toMatch(/\bat .*\.js:\d+|ECONNREFUSED/);
    }
  });

  it('RFC 6749 §5.2 / RFC 9110 §15.6.4 — the token endpoint and the admin API answer 503 JSON naming the control plane', async () => {
    const t = await clientCredentials(broker.url, service, SERVICE);
    expect(t.status).toBe(503);
    expect(t.headers.get('retry-after')).toBeTruthy();
    expect(t.body).toMatchObject({ error: 'temporarily_unavailable' });
    const a = await json(`${broker.url}/admin/federations`, { headers: { authorization: 'Bearer x' } });
    expect(a.status).toBe(503);
    expect(a.body.error_description).toMatch(/control-plane database/);
  });

  it('/readyz fails naming control_database, /healthz stays 200, JWKS and discovery keep answering', async () => {
    const ready = await json(`${broker.url}/readyz`);
    expect(ready.status).toBe(503);
    expect(ready.body).toMatchObject({ error: { control_database: { status: 'down' } } });
    expect((await fetch(`${broker.url}/healthz`)).status).toBe(200);
    expect((await fetch(`${broker.url}/jwks`)).status).toBe(200);
    expect((await fetch(`${broker.url}/.well-known/openid-configuration`)).status).toBe(200);
  });
});

describe('the control plane returns', () => {
  it('the same process serves tokens, the bundle and the admin API again, and the verifier refreshes', async () => {
    const pid = broker.child.pid;
    await pg.start();
    const started = Date.now();
    let t = await clientCredentials(broker.url, service, SERVICE);
    while (t.status !== 200 && Date.now() - started < 5_000) {
      await new Promise((r) => setTimeout(r, 20));
      t = await clientCredentials(broker.url, service, SERVICE);
    }
    measured.msToFirst200AfterRestart = Date.now() - started;
    expect(t.status).toBe(200);
    expect(broker.child.pid).toBe(pid);
    expect((await fetch(`${broker.url}/.well-known/meridian/trust-bundle`)).status).toBe(200);
    expect(
      (await adminCall(broker, 'GET', '/admin/federations', undefined, await adminToken(broker))).status,
    ).toBe(200);
    expect(await verifier.refresh()).toMatchObject({ loaded: true, stale: false });
  });
});
