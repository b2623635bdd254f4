/**
 * Failing safe when a region's database fails (issue 6), with the fault injected for real: the
 * eu broker's region database lives on a PostgreSQL server this test starts itself, and the
 * test stops, restarts and freezes that server while real brokers (eu, us), real upstream IdPs
 * and the shared control plane keep running. The broker must fail closed — 503 with
 * Retry-After, never a 500, a stack trace, a hang or an `active: true` it cannot vouch for —
 * write nothing anywhere else, and serve again from the same process when the database returns.
 */
import { decodeJwt } from 'jose';
import { Client } from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  adminCall,
  adminToken,
  clientCredentials,
  introspect,
  registerService,
  tokenRequest,
} from './support/broker';
import { TestBrowser } from './support/browser';
import { dumpDatabase } from './support/dump';
import { ANNA, API, FederationFixture, canariesOf, leaks } from './support/federation-fixture';
import { startOwnPostgres, type OwnPostgres } from './support/own-postgres';

const SERVICE = 'https://api.fault-region.example';
const f = new FederationFixture();
let pg: OwnPostgres;
let service: { clientId: string; clientSecret: string };
let person: { access_token: string; refresh_token: string };
let serviceToken: string;
let admin: string;
let pid: number;
const measured: Record<string, number> = {};

/** RFC 9110 §15.6.4 / §10.2.3 and RFC 6749 §5.2's shape: what every refused API call looks like. */
function expectRefusedJson(
  r: { status: number; headers: Headers; body: unknown },
  what: RegExp = /database of region eu is unavailable/,
) {
  expect(r.status).toBe(503);
  expect(Number(r.headers.get('retry-after'))).toBeGreaterThan(0);
  expect(r.body).toMatchObject({
    error: 'temporarily_unavailable',
    error_description: expect.stringMatching(what),
  });
  expect(JSON.stringify(r.body)).not.toMatch(/\bat .*\.js:\d+|stack|QueryFailedError|ECONNREFUSED/);
}

async function fetchJson(url: string, init?: RequestInit) {
  const res = await fetch(url, init);
  const text = await res.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // a page
  }
  return { status: res.status, headers: res.headers, body, text };
}

/** The databases that stay up: the control plane and the other region's. */
async function othersDumps() {
  // pg_dump ≥ 15.14 brackets its output with a random \restrict key: not data.
  const stable = (dump: string) => dump.replace(/^\\(un)?restrict .*$/gm, '');
  const [control, us] = await Promise.all([dumpDatabase(f.urls.control), dumpDatabase(f.urls.us)]);
  return { control: stable(control), us: stable(us) };
}

async function until<T>(fn: () => Promise<T>, done: (v: T) => boolean, timeoutMs: number, stepMs = 20) {
  const started = Date.now();
  for (;;) {
    const v = await fn();
    if (done(v)) return { value: v, ms: Date.now() - started };
    if (Date.now() - started > timeoutMs)
      throw new Error(`not reached in ${timeoutMs} ms: ${JSON.stringify(v)}`);
    await new Promise((r) => setTimeout(r, stepMs));
  }
}

beforeAll(async () => {
  pg = await startOwnPostgres('fault-region');
  const euUrl = await pg.ensureDatabase('meridian_eu');
  await f.start('faultregion', { databaseUrls: { eu: euUrl } });
  pid = f.eu.child.pid!;
  service = await registerService(f.eu, {
    resourceId: 'fault-api',
    audience: SERVICE,
    scopes: ['fault:read'],
    clientId: 'fault-service',
    clientScope: 'fault:read',
  });
  const login = await f.login('eu', 'de-eid', ANNA);
  if (!('tokens' in login)) throw new Error(`login failed: ${JSON.stringify(login)}`);
  person = login.tokens as { access_token: string; refresh_token: string };
  const cc = await clientCredentials(f.eu.url, service, SERVICE);
  serviceToken = cc.body.access_token as string;
  admin = await adminToken(f.eu);
});

afterAll(async () => {
  console.info(`[fault-region-database] measured: ${JSON.stringify(measured)}`);
  await f.stop();
  await pg?.destroy();
});

describe('region database down (the test stops its own PostgreSQL server)', () => {
  let before: { control: string; us: string };

  it('RFC 9110 §15.6.4 — the token endpoint answers 503 with Retry-After and temporarily_unavailable within about a second, never a 500', async () => {
    before = await othersDumps();
    await pg.stop();
    const statuses = new Set<number>();
    // client_credentials touches no region table: only the broker's own probe can notice.
    const { value, ms } = await until(
      async () => {
        const r = await clientCredentials(f.eu.url, service, SERVICE);
        statuses.add(r.status);
        return r;
      },
      (r) => r.status === 503,
      5_000,
    );
    measured.msTo503AfterStop = ms;
    expect([...statuses].filter((s) => s !== 200 && s !== 503)).toEqual([]);
    expectRefusedJson(value);
    expect(ms).toBeLessThan(2_000);

    // RFC 6749 §6: a refresh needs the region database (rotation, reuse detection): refused, and
    // the refresh token is not consumed by the refusal (it works again after the recovery).
    const refresh = await tokenRequest(
      f.eu.url,
      { grant_type: 'refresh_token', refresh_token: person.refresh_token },
      f.apps.eu!,
    );
    expectRefusedJson(refresh);
  });

  it('RFC 7662 §2.2 — introspection never answers active: true for a token whose revocation it cannot check: 503, not a guess', async () => {
    // §2.2 reserves active: false for tokens that are not active; this one's state is unknown.
    // 503 keeps the resource server closed (no active: true) and tells it the truth: retry.
    for (const token of [person.access_token, serviceToken]) {
      const res = await fetch(`${f.eu.url}/token/introspection`, {
        method: 'POST',
        headers: {
          'content-type': 'application/x-www-form-urlencoded',
          authorization: `Basic ${Buffer.from(`${f.apps.eu!.clientId}:${f.apps.eu!.clientSecret}`).toString('base64')}`,
        },
        body: new URLSearchParams({ token }),
      });
      const body = (await res.json()) as Record<string, unknown>;
      expect(body.active).not.toBe(true);
      expectRefusedJson({ status: res.status, headers: res.headers, body });
    }
    const byService = await introspect(f.eu.url, serviceToken, service);
    expect(byService.body.active).not.toBe(true);
    expect(byService.status).toBe(503);
  });

  it('RFC 7009 §2.2.1 — revocation answers 503 (the client must assume the token still exists and retry)', async () => {
    const r = await fetchJson(`${f.eu.url}/token/revocation`, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        authorization: `Basic ${Buffer.from(`${f.apps.eu!.clientId}:${f.apps.eu!.clientSecret}`).toString('base64')}`,
      },
      body: new URLSearchParams({ token: person.refresh_token }),
    });
    expectRefusedJson(r);
  });

  it('the authorization endpoint and the login pages answer a 503 page with Retry-After naming the region database (no redirect, no stack trace)', async () => {
    const app = f.apps.eu!;
    const auth = new URL(`${f.eu.url}/auth`);
    for (const [k, v] of Object.entries({
      client_id: app.clientId,
      redirect_uri: app.redirectUri,
      response_type: 'code',
      scope: 'openid',
      code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM',
      code_challenge_method: 'S256',
      idp_hint: 'de-eid',
    }))
      auth.searchParams.set(k, v);
    const browser = new TestBrowser();
    for (const url of [
      auth.href,
      `${f.eu.url}/interaction/some-interaction`,
      `${f.eu.url}/federation/callback?state=abc&code=def`,
    ]) {
      const page = await browser.get(url);
      expect(page.status, url).toBe(503);
      expect(page.headers.get('location')).toBeNull();
      expect(Number(page.headers.get('retry-after'))).toBeGreaterThan(0);
      expect(page.headers.get('content-type')).toMatch(/^text\/html/);
      expect(page.html).toContain('temporarily_unavailable');
      expect(page.html).toContain('the database of region eu is unavailable');
      expect(page.html).not.toMatch(/\bat .*\.js:\d+|QueryFailedError|ECONNREFUSED/);
    }
    const de = await fetch(`${f.eu.url}/interaction/x`, { headers: { 'accept-language': 'de' } });
    expect(de.status).toBe(503);
    expect(de.headers.get('content-language')).toBe('de');
  });

  it('the admin and compliance APIs answer 503 JSON with Retry-After naming the region database', async () => {
    const headers = { authorization: `Bearer ${admin}`, 'content-type': 'application/json' };
    for (const [method, path, body] of [
      ['GET', '/admin/federations', undefined],
      ['PUT', '/admin/resources/fault-api', { audience: SERVICE, scopes: ['fault:read'], region: 'eu' }],
      ['GET', '/compliance/policies', undefined],
      ['GET', '/audit/events', undefined],
    ] as const) {
      const r = await fetchJson(`${f.eu.url}${path}`, {
        method,
        headers,
        body: body && JSON.stringify(body),
      });
      expectRefusedJson(r);
    }
  });

  it('/readyz fails naming region_database, /healthz stays 200; discovery, JWKS and the trust bundle (no region data) keep answering', async () => {
    const ready = await fetchJson(`${f.eu.url}/readyz`);
    expect(ready.status).toBe(503);
    expect(ready.body).toMatchObject({ error: { region_database: { status: 'down' } } });
    expect(ready.body).not.toMatchObject({ error: { control_database: expect.anything() } });
    expect((await fetch(`${f.eu.url}/healthz`)).status).toBe(200);
    expect((await fetch(`${f.eu.url}/.well-known/openid-configuration`)).status).toBe(200);
    expect((await fetch(`${f.eu.url}/jwks`)).status).toBe(200);
    expect((await fetch(`${f.eu.url}/.well-known/meridian/trust-bundle`)).status).toBe(200);
  });

  it('no request hangs: 60 concurrent requests across endpoints all answer 503 (or 200 where no database is needed) within a second', async () => {
    const started = Date.now();
    const calls = Array.from({ length: 60 }, (_, i) => {
      switch (i % 6) {
        case 0:
          return clientCredentials(f.eu.url, service, SERVICE).then((r) => r.status);
        case 1:
          return introspect(f.eu.url, serviceToken, service).then((r) => r.status);
        case 2:
          return fetch(`${f.eu.url}/admin/federations`, {
            headers: { authorization: `Bearer ${admin}` },
          }).then((r) => r.status);
        case 3:
          return fetch(`${f.eu.url}/auth?client_id=eu-app`).then((r) => r.status);
        case 4:
          return fetch(`${f.eu.url}/me`, {
            headers: { authorization: `Bearer ${person.access_token}` },
          }).then((r) => r.status);
        default:
          return fetch(`${f.eu.url}/healthz`).then((r) => r.status);
      }
    });
    const statuses = await Promise.all(calls);
    const elapsed = Date.now() - started;
    measured.ms60ConcurrentDuringOutage = elapsed;
    expect(statuses.filter((s, i) => (i % 6 === 5 ? s !== 200 : s !== 503))).toEqual([]);
    expect(elapsed).toBeLessThan(1_000);
  });

  it('nothing is written to another region: the us database and the control plane are unchanged by the outage', async () => {
    const after = await othersDumps();
    expect(after.us).toBe(before.us);
    expect(after.control).toBe(before.control);
  });

  it('no fallback: a login at us whose home is eu stops at us with temporarily_unavailable naming home region eu, and nothing about the person is stored at us', async () => {
    const r = await f.login('us', 'de-eid', ANNA);
    expect('error' in r && r.error).toBe('temporarily_unavailable');
    if (!('error' in r)) return;
    // RFC 9207 §2: the error response carries the issuer too.
    expect(r.params.get('iss')).toBe(f.us.issuer);
    expect(r.description).toMatch(/home region eu, which is unavailable/);
    // The person never reached the upstream IdP: nothing to store, and nothing stored.
    const dumps = await othersDumps();
    expect(leaks(dumps.us, canariesOf(ANNA, f.de))).toEqual([]);
    expect(dumps.control).toBe(before.control);
  });
});

describe('the region database returns', () => {
  it('recovers without a restart: the same process serves tokens again within a second of the database answering', async () => {
    const restartAt = Date.now();
    await pg.start();
    const restartMs = Date.now() - restartAt;
    const { value, ms } = await until(
      () => clientCredentials(f.eu.url, service, SERVICE),
      (r) => r.status === 200,
      5_000,
    );
    measured.msPostgresRestart = restartMs;
    measured.msToFirst200AfterRestart = ms;
    expect(ms).toBeLessThan(1_500);
    expect(decodeJwt(value.body.access_token as string).aud).toBe(SERVICE);
    expect(f.eu.child.pid).toBe(pid);
    expect(f.eu.child.exitCode).toBeNull();
    expect(f.eu.output()).toContain('database answers again: serving');
  });

  it('after the recovery: the refresh token refused during the outage still works, introspection says active: true again, the admin API and /readyz answer 200', async () => {
    const refresh = await tokenRequest(
      f.eu.url,
      { grant_type: 'refresh_token', refresh_token: person.refresh_token, resource: API },
      f.apps.eu!,
    );
    expect(refresh.status).toBe(200);
    person.refresh_token = refresh.body.refresh_token as string;
    const active = await introspect(f.eu.url, refresh.body.access_token as string, f.apps.eu!);
    expect(active.body).toMatchObject({ active: true, aud: API });
    expect((await adminCall(f.eu, 'GET', '/admin/federations', undefined, admin)).status).toBe(200);
    expect((await fetch(`${f.eu.url}/readyz`)).status).toBe(200);
  });

  it('after the recovery: a full login at eu and a hand-off from us to eu complete', async () => {
    const atEu = await f.login('eu', 'de-eid', ANNA);
    expect('tokens' in atEu).toBe(true);
    const fromUs = await f.login('us', 'de-eid', ANNA);
    if (!('tokens' in fromUs)) throw new Error(`hand-off after recovery: ${JSON.stringify(fromUs)}`);
    expect(decodeJwt(fromUs.tokens!.access_token).residency).toMatchObject({ region: 'eu' });
  });
});

describe('a region database that stops answering (frozen: TCP accepted, no answer)', () => {
  it('is noticed within the probe timeout (503 instead of waiting), and a request already waiting on it ends with 503 instead of hanging', async () => {
    await pg.freeze();
    const frozenAt = Date.now();
    try {
      // Reaches the database (refresh-token lookup) before the broker knows: it waits, then fails.
      const inFlight = tokenRequest(
        f.eu.url,
        { grant_type: 'refresh_token', refresh_token: person.refresh_token, resource: API },
        f.apps.eu!,
      ).then((r) => ({ r, ms: Date.now() - frozenAt }));
      const { value, ms } = await until(
        () => clientCredentials(f.eu.url, service, SERVICE),
        (r) => r.status === 503,
        8_000,
        100,
      );
      measured.msTo503AfterFreeze = ms;
      // Whichever notices first refuses: the availability probe, or the rate limiter (libs/security),
      // whose counters live in the same database.
      expectRefusedJson(value, /database of region eu is unavailable|cannot be checked right now/);
      expect(ms).toBeLessThan(4_500);
      const waited = await inFlight;
      measured.msInFlightRequestDuringFreeze = waited.ms;
      expect(waited.r.status).toBe(503);
      expect(waited.r.headers.get('retry-after')).toBeTruthy();
      // statement_timeout never comes from a frozen server; the client's query_timeout (12 s) does.
      expect(waited.ms).toBeLessThan(14_000);
    } finally {
      await pg.thaw();
    }
    const back = await until(
      () => clientCredentials(f.eu.url, service, SERVICE),
      (r) => r.status === 200,
      15_000,
      100,
    );
    measured.msToFirst200AfterThaw = back.ms;
    expect(f.eu.child.pid).toBe(pid);
  }, 40_000);
});

describe('a region database that refuses new connections (ALTER DATABASE … allow_connections false, sessions terminated)', () => {
  async function asAdmin(sql: string) {
    const c = new Client({ connectionString: pg.urlFor('postgres') });
    await c.connect();
    try {
      await c.query(sql);
    } finally {
      await c.end();
    }
  }

  it('requests that meet the failure before the probe does are answered 503 too (OP error path, Nest filter or rate limiter — whichever sees it first), never 500', async () => {
    await asAdmin('alter database meridian_eu allow_connections false');
    await asAdmin(`select pg_terminate_backend(pid) from pg_stat_activity where datname = 'meridian_eu'`);
    try {
      // Sent at once: most reach a handler before the broker's probe has seen the failure.
      const basic = `Basic ${Buffer.from(`${f.apps.eu!.clientId}:${f.apps.eu!.clientSecret}`).toString('base64')}`;
      const answers = await Promise.all([
        fetchJson(`${f.eu.url}/admin/federations`, { headers: { authorization: `Bearer ${admin}` } }),
        fetchJson(`${f.eu.url}/token`, {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basic },
          body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: person.refresh_token }),
        }),
        fetchJson(`${f.eu.url}/token/introspection`, {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basic },
          body: new URLSearchParams({ token: person.access_token }),
        }),
        fetchJson(`${f.eu.url}/federation/callback?state=abc&code=def`),
      ]);
      for (const a of answers) {
        expect(a.status, a.text.slice(0, 300)).toBe(503);
        expect(a.headers.get('retry-after')).toBeTruthy();
        expect(a.text).toMatch(/temporarily_unavailable/);
        expect(a.text).not.toMatch(/\bat .*\.js:\d+|server_error/);
      }
      expect((answers[2]!.body as { active?: boolean }).active).toBeUndefined();
    } finally {
      await asAdmin('alter database meridian_eu allow_connections true');
    }
    await until(
      () => clientCredentials(f.eu.url, service, SERVICE),
      (r) => r.status === 200,
      5_000,
      50,
    );
  });
});
