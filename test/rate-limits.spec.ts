/**
 * Abuse limits (issue 6) on real broker processes: two replicas of region eu on one region
 * database share every limit (a per-process counter would let each replica admit the full limit
 * again); the source address comes from the socket unless the peer is a configured trusted proxy
 * (127.0.0.1 here), so a forged X-Forwarded-For from anyone else (127.0.0.2) cannot reset a
 * limit; refusals are 429 with Retry-After and an OAuth-style error. A third broker reaches its
 * region database through a proxy the test can partition: the token endpoint then fails closed.
 *
 * Needs the build: `npx nest build broker sidecar`.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  adminCall,
  adminToken,
  clientCredentials,
  freshDatabases,
  newKek,
  spawnBroker,
  type SpawnedBroker,
} from './support/broker';
import { freePort } from './support/ports';
import { ccRequest, raw, someAddress, startPgProxy } from './support/security';

const API = 'https://api.limits.example';
let dbs: Awaited<ReturnType<typeof freshDatabases>>;
let a: SpawnedBroker;
let b: SpawnedBroker;
let adminBearer: string;

const LIMITS = {
  MERIDIAN_TRUSTED_PROXIES: '127.0.0.1',
  MERIDIAN_RATE_LIMIT_TOKEN_CLIENT: '12/60',
  MERIDIAN_RATE_LIMIT_TOKEN_SOURCE: '6/60',
  MERIDIAN_RATE_LIMIT_AUTHORIZATION_SOURCE: '5/60',
  MERIDIAN_RATE_LIMIT_AUTHORIZATION_CLIENT: '7/60',
  MERIDIAN_RATE_LIMIT_LOGIN_SOURCE: '5/60',
  MERIDIAN_RATE_LIMIT_ADMIN_CLIENT: '20/60',
  MERIDIAN_RATE_LIMIT_ADMIN_SOURCE: '1000/60',
};

const clients: Record<string, { clientId: string; clientSecret: string }> = {};

/** A resource and a client_credentials client for it, registered with one admin token. */
async function register(id: string, o: { resources?: string[]; scope?: string } = {}) {
  if (!o.resources) {
    const r = await adminCall(
      a,
      'PUT',
      `/admin/resources/res-${id}`,
      { audience: `${API}/${id}`, scopes: ['read'], region: 'eu' },
      adminBearer,
    );
    if (r.status >= 300) throw new Error(`resource ${id}: ${r.status} ${JSON.stringify(r.body)}`);
  }
  const clientSecret = `secret-${randomBytes(24).toString('base64url')}`;
  const c = await adminCall(
    a,
    'PUT',
    `/admin/clients/${id}`,
    {
      client_secret: clientSecret,
      redirect_uris: [],
      grant_types: ['client_credentials'],
      response_types: [],
      token_endpoint_auth_method: 'client_secret_basic',
      scope: o.scope ?? 'read',
      resources: o.resources ?? [`${API}/${id}`],
    },
    adminBearer,
  );
  if (c.status >= 300) throw new Error(`client ${id}: ${c.status} ${JSON.stringify(c.body)}`);
  clients[id] = { clientId: id, clientSecret };
}

const service = async (id: string) => clients[id]!;

beforeAll(async () => {
  dbs = await freshDatabases('ratelimit', ['eu']);
  const kek = newKek();
  const portA = await freePort();
  const common = {
    region: 'eu',
    controlUrl: dbs.control.url,
    regionUrl: dbs.region.eu!.url,
    kek,
    issuer: `http://127.0.0.1:${portA}`,
    extra: LIMITS,
  };
  a = await spawnBroker({ ...common, port: portA });
  b = await spawnBroker(common);
  adminBearer = await adminToken(a);
  for (const id of ['shared-worker', 'forger', 'proxied', 'closed-store']) await register(id);
  await register('ops-admin', { resources: ['urn:meridian:admin'], scope: 'meridian:admin' });
});

afterAll(async () => {
  await Promise.allSettled([a?.stop(), b?.stop()]);
  await dbs?.drop();
});

describe('token endpoint: one limit for all replicas of a region', () => {
  it('two broker processes on one region database admit a client’s limit once, not once each', async () => {
    const client = await service('shared-worker');
    const answers = [];
    for (let i = 0; i < 16; i++)
      answers.push(
        await ccRequest(i % 2 ? b.url : a.url, client, `${API}/shared-worker`, { xff: someAddress() }),
      );
    const statuses = answers.map((r) => r.status);
    expect(statuses.filter((s) => s === 200)).toHaveLength(12);
    expect(statuses.slice(12)).toEqual([429, 429, 429, 429]);
    const refused = answers[12]!;
    expect(refused.json).toMatchObject({ error: 'rate_limited' });
    expect(refused.json.error_description).toMatch(/for this client; retry in \d+ s/);
    const retryAfter = Number(refused.headers['retry-after']);
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(5); // one unit is 5 s of the 60 s period
    expect(refused.headers['cache-control']).toBe('no-store');
    // Audited once per key and minute on each replica that refused (issue 6: refusals), not
    // once per refused request: two replicas, four refusals, two entries.
    let entries: { target_id: string; target_type: string; outcome: string; detail: { route: string } }[] =
      [];
    for (let i = 0; i < 50 && entries.length < 2; i++) {
      const r = await adminCall(a, 'GET', '/audit/events?type=security.rate_limited', undefined, adminBearer);
      entries = r.body.events.filter((e: { target_id: string }) => e.target_id === 'shared-worker');
      if (entries.length < 2) await new Promise((res) => setTimeout(res, 100));
    }
    expect(entries).toHaveLength(2);
    for (const e of entries)
      expect(e).toMatchObject({ target_type: 'client', outcome: 'refused', detail: { route: 'token' } });
  });

  it('a forged X-Forwarded-For from an untrusted peer does not reset the source limit', async () => {
    const client = await service('forger');
    const statuses: number[] = [];
    // 127.0.0.2 is not a trusted proxy: every request claims another address, all count as 127.0.0.2.
    for (let i = 0; i < 8; i++)
      statuses.push(
        (
          await ccRequest(i % 2 ? b.url : a.url, client, `${API}/forger`, {
            xff: someAddress(),
            localAddress: '127.0.0.2',
          })
        ).status,
      );
    expect(statuses).toEqual([200, 200, 200, 200, 200, 200, 429, 429]);
    const again = await ccRequest(a.url, client, `${API}/forger`, {
      localAddress: '127.0.0.2',
      xff: '127.0.0.1',
    });
    expect(again.status).toBe(429);
    expect(again.json.error_description).toMatch(/from this address/);
  });

  it('behind a trusted proxy the forwarded address is the source: one address is limited, another is not', async () => {
    const client = await service('proxied');
    const one = someAddress();
    const statuses: number[] = [];
    for (let i = 0; i < 7; i++)
      statuses.push((await ccRequest(a.url, client, `${API}/proxied`, { xff: one })).status);
    expect(statuses).toEqual([200, 200, 200, 200, 200, 200, 429]);
    // A hop the client wrote left of the proxy's own entry changes nothing.
    expect(
      (await ccRequest(b.url, client, `${API}/proxied`, { xff: `${someAddress()}, ${one}` })).status,
    ).toBe(429);
    expect((await ccRequest(b.url, client, `${API}/proxied`, { xff: someAddress() })).status).toBe(200);
  });
});

describe('authorization endpoint and login pages', () => {
  it('limits authorization requests per source, with a page for browsers', async () => {
    const xff = someAddress();
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++)
      statuses.push(
        (
          await raw(i % 2 ? b.url : a.url, `/auth?client_id=nobody-${i}&response_type=code`, {
            headers: { 'x-forwarded-for': xff },
          })
        ).status,
      );
    expect(statuses.slice(0, 5).every((s) => s !== 429)).toBe(true);
    expect(statuses[5]).toBe(429);
    const page = await raw(a.url, '/auth?client_id=x', {
      headers: { 'x-forwarded-for': xff, accept: 'text/html' },
    });
    expect(page.status).toBe(429);
    expect(page.headers['content-type']).toMatch(/^text\/html/);
    expect(page.headers['content-security-policy']).toBe("default-src 'none'");
    expect(page.text).toContain('try again in');
    expect(Number(page.headers['retry-after'])).toBeGreaterThan(0);
  });

  it('limits authorization requests per client_id across sources', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 8; i++)
      statuses.push(
        (
          await raw(i % 2 ? b.url : a.url, '/auth?client_id=popular-app&response_type=code', {
            headers: { 'x-forwarded-for': someAddress(), accept: 'application/json' },
          })
        ).status,
      );
    expect(statuses.slice(0, 7).every((s) => s !== 429)).toBe(true);
    expect(statuses[7]).toBe(429);
  });

  it('limits the login pages and federation callback per source', async () => {
    const xff = someAddress();
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++)
      statuses.push(
        (
          await raw(
            i % 2 ? b.url : a.url,
            i % 3 ? '/interaction/unknown-uid' : '/federation/callback?state=x',
            {
              headers: { 'x-forwarded-for': xff, accept: 'application/json' },
            },
          )
        ).status,
      );
    expect(statuses.slice(0, 5).every((s) => s !== 429)).toBe(true);
    expect(statuses[5]).toBe(429);
  });
});

describe('admin API', () => {
  it('limits one principal across replicas and sources; other principals are not affected', async () => {
    const token = async (url: string) => {
      const r = await clientCredentials(url, clients['ops-admin']!, 'urn:meridian:admin', 'meridian:admin');
      if (r.status !== 200) throw new Error(`ops-admin token: ${r.status} ${JSON.stringify(r.body)}`);
      return r.body.access_token as string;
    };
    const bearer = await token(a.url);
    const statuses: number[] = [];
    for (let i = 0; i < 21; i++)
      statuses.push(
        (
          await raw(i % 2 ? b.url : a.url, '/admin/federations', {
            headers: { authorization: `Bearer ${bearer}`, 'x-forwarded-for': someAddress() },
          })
        ).status,
      );
    expect(statuses.slice(0, 20).every((s) => s === 200)).toBe(true);
    expect(statuses[20]).toBe(429);
    // The bootstrap admin is another principal: not affected.
    expect(
      (await raw(b.url, '/admin/federations', { headers: { authorization: `Bearer ${adminBearer}` } }))
        .status,
    ).toBe(200);
    // A fresh token of the same client is the same principal.
    const fresh = await token(b.url);
    const again = await raw(a.url, '/admin/federations', {
      headers: { authorization: `Bearer ${fresh}`, 'x-forwarded-for': someAddress() },
    });
    expect(again.status).toBe(429);
    expect(again.json).toMatchObject({ error: 'rate_limited' });
    // A token that is not this broker's counts against its source only, and the guard refuses it.
    const forged = await raw(a.url, '/admin/federations', {
      headers: { authorization: `Bearer ${adminBearer.slice(0, -4)}AAAA`, 'x-forwarded-for': someAddress() },
    });
    expect(forged.status).toBe(401);
  });
});

describe('when the limit store (the region database) does not answer', () => {
  let c: SpawnedBroker;
  let proxy: Awaited<ReturnType<typeof startPgProxy>>;
  let client: { clientId: string; clientSecret: string };

  beforeAll(async () => {
    const pg = new URL(dbs.region.eu!.url);
    proxy = await startPgProxy({ host: pg.hostname, port: Number(pg.port || 5432) });
    const viaProxy = new URL(dbs.region.eu!.url);
    viaProxy.hostname = '127.0.0.1';
    viaProxy.port = String(proxy.port);
    c = await spawnBroker({
      region: 'eu',
      controlUrl: dbs.control.url,
      regionUrl: viaProxy.toString(),
      kek: a.env.MERIDIAN_KEK,
      issuer: a.issuer,
      extra: LIMITS,
    });
    client = await service('closed-store');
  });

  afterAll(async () => {
    proxy?.heal();
    await c?.stop();
    await proxy?.stop();
  });

  it('fails closed: a client_credentials request (which needs no region data) gets 503 with Retry-After, quickly', async () => {
    const resource = `${API}/${client.clientId}`;
    expect((await ccRequest(c.url, client, resource, { xff: someAddress() })).status).toBe(200);
    proxy.partition();
    const started = Date.now();
    const refused = await ccRequest(c.url, client, resource, { xff: someAddress() });
    const ms = Date.now() - started;
    expect(refused.status).toBe(503);
    expect(refused.json).toEqual({
      error: 'temporarily_unavailable',
      error_description: expect.stringMatching(
        /^request limits cannot be checked: the database of region [a-z-]+ is unavailable; retry later$/,
      ),
    });
    expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(ms).toBeLessThan(2500);
    // Alive, and honest about it.
    expect((await raw(c.url, '/healthz')).status).toBe(200);
    const metrics = await raw(c.url, '/metrics');
    expect(metrics.text).toMatch(/meridian_rate_limit_store_errors_total\{[^}]*\} [1-9]/);
  });

  it('serves again without a restart once the store answers', async () => {
    proxy.heal();
    const resource = `${API}/${client.clientId}`;
    const deadline = Date.now() + 15_000;
    let status = 0;
    while (Date.now() < deadline) {
      status = (await ccRequest(c.url, client, resource, { xff: someAddress() })).status;
      if (status === 200) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    expect(status).toBe(200);
  });
});
