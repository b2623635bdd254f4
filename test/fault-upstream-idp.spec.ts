/**
 * Failing safe when an upstream identity provider is slow or down (issue 6). The fault is a
 * real socket: the IdP's port taken over by a listener that accepts TCP and never answers, or
 * left with nothing listening. Every login ends back at the app with `temporarily_unavailable`
 * and a description a person can act on (RFC 6749 §4.1.2.1), within the configured
 * MERIDIAN_UPSTREAM_TIMEOUT_MS — at the start of a login (discovery fetched or cached) and after
 * the person signed in (the code exchange) — and the broker keeps serving meanwhile. The admin
 * API refuses a federation whose issuer does not answer, in bounded time too.
 */
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminCall } from './support/broker';
import { TestBrowser } from './support/browser';
import { ANNA, BOB, FederationFixture } from './support/federation-fixture';
import { freePort } from './support/ports';

const TIMEOUT_MS = 2_000;
const f = new FederationFixture();
const measured: Record<string, number> = {};

interface Blackhole {
  accepted(): number;
  close(): Promise<void>;
}

/** Accepts TCP connections on `port` and never sends a byte. */
function blackhole(port: number): Promise<Blackhole> {
  const sockets = new Set<net.Socket>();
  let accepted = 0;
  const server = net.createServer((s) => {
    accepted++;
    sockets.add(s);
    s.on('error', () => undefined);
    s.on('close', () => sockets.delete(s));
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () =>
      resolve({
        accepted: () => accepted,
        close: () =>
          new Promise<void>((r) => {
            for (const s of sockets) s.destroy();
            server.close(() => r());
          }),
      }),
    );
  });
}

/** A login that must come back to the app refused as temporarily unavailable; returns how long it took. */
async function refusedLogin(idpHint: string, user: typeof ANNA, description: RegExp) {
  const started = Date.now();
  const r = await f.login('eu', idpHint, user);
  const ms = Date.now() - started;
  if (!('error' in r)) throw new Error('the login was not refused');
  expect(r.error).toBe('temporarily_unavailable');
  expect(r.params.get('iss')).toBe(f.eu.issuer);
  expect(r.description).toMatch(description);
  expect(r.description).not.toMatch(/ECONNREFUSED|fetch failed|AbortError|\bat .*\.js:\d+/);
  return ms;
}

/** Meanwhile the broker answers other requests at once: nothing waits behind the upstream. */
async function servesMeanwhile(): Promise<void> {
  await new Promise((r) => setTimeout(r, 300));
  const started = Date.now();
  const [discovery, ready] = await Promise.all([
    fetch(`${f.eu.url}/.well-known/openid-configuration`),
    fetch(`${f.eu.url}/readyz`),
  ]);
  expect([discovery.status, ready.status]).toEqual([200, 200]);
  expect(Date.now() - started).toBeLessThan(500);
}

beforeAll(async () => {
  await f.start('faultupstream', { env: { MERIDIAN_UPSTREAM_TIMEOUT_MS: String(TIMEOUT_MS) } });
});

afterAll(async () => {
  console.info(`[fault-upstream-idp] measured: ${JSON.stringify(measured)}`);
  await f.stop();
});

describe('the admin API and an issuer that does not answer', () => {
  it('PUT /admin/federations for an issuer that accepts TCP and never answers: 422 naming the problem within the timeout', async () => {
    const port = await freePort();
    const hole = await blackhole(port);
    try {
      const started = Date.now();
      const r = await adminCall(f.eu, 'PUT', '/admin/federations/silent-idp', {
        displayName: 'Silent IdP',
        issuer: `http://127.0.0.1:${port}`,
        clientId: 'meridian-eu',
        clientSecret: 'silent-secret-0123456789abcdef',
        kind: 'global',
      });
      const ms = Date.now() - started;
      measured.msAdminPutSilentIssuer = ms;
      expect(r.status).toBe(422);
      expect(JSON.stringify(r.body)).toMatch(/no answer in time/);
      expect(hole.accepted()).toBeGreaterThan(0);
      expect(ms).toBeLessThan(TIMEOUT_MS + 1_500);
    } finally {
      await hole.close();
    }
  });

  it('PUT /admin/federations for an issuer with nothing listening: 422 (connection refused) at once', async () => {
    const port = await freePort();
    const started = Date.now();
    const r = await adminCall(f.eu, 'PUT', '/admin/federations/absent-idp', {
      displayName: 'Absent IdP',
      issuer: `http://127.0.0.1:${port}`,
      clientId: 'meridian-eu',
      clientSecret: 'absent-secret-0123456789abcdef',
      kind: 'global',
    });
    expect(r.status).toBe(422);
    expect(JSON.stringify(r.body)).toMatch(/connection refused/);
    expect(Date.now() - started).toBeLessThan(1_000);
    expect((await adminCall(f.eu, 'GET', '/admin/federations/absent-idp')).status).toBe(404);
  });
});

describe('an identity provider that is down when the login starts (discovery not fetched yet)', () => {
  let port: number;
  beforeAll(async () => {
    port = Number(new URL(f.global.url).port);
    await f.global.stop();
  });

  it('accepts TCP and never answers: temporarily_unavailable within MERIDIAN_UPSTREAM_TIMEOUT_MS, the broker serving other requests meanwhile', async () => {
    const hole = await blackhole(port);
    try {
      const [ms] = await Promise.all([
        refusedLogin('global-id', BOB, /the identity provider \(127\.0\.0\.1:\d+\) did not answer in time/),
        servesMeanwhile(),
      ]);
      measured.msLoginSilentIdpUncached = ms;
      expect(hole.accepted()).toBeGreaterThan(0);
      expect(ms).toBeGreaterThanOrEqual(TIMEOUT_MS - 100);
      expect(ms).toBeLessThan(TIMEOUT_MS + 2_000);
    } finally {
      await hole.close();
    }
  });

  it('nothing listening: temporarily_unavailable (cannot be reached) at once', async () => {
    const ms = await refusedLogin(
      'global-id',
      BOB,
      /the identity provider \(127\.0\.0\.1:\d+\) cannot be reached/,
    );
    measured.msLoginAbsentIdpUncached = ms;
    expect(ms).toBeLessThan(1_500);
  });
});

describe('an identity provider that fails after the broker has used it (discovery cached)', () => {
  let port: number;
  beforeAll(async () => {
    port = Number(new URL(f.de.url).port);
    const ok = await f.login('eu', 'de-eid', ANNA);
    expect('tokens' in ok).toBe(true);
  });

  it('stops answering after the person signed in: the code exchange ends with temporarily_unavailable within the timeout, not a hang', async () => {
    const browser = new TestBrowser();
    const { page, app } = await f.authorize(browser, 'eu', { idp_hint: 'de-eid' });
    expect(page.url.origin).toBe(f.de.url);
    const callback = (u: URL) => u.origin === f.eu.url && u.pathname === '/federation/callback';
    const at = await browser.submit(
      page,
      { index: 0 },
      { username: ANNA.username, password: ANNA.password },
      'Sign in',
      { stopAt: callback, autoSubmitForms: true },
    );
    expect(callback(at.url)).toBe(true);
    await f.de.stop();
    const hole = await blackhole(port);
    try {
      const started = Date.now();
      const back = await browser.follow(at.url, { stopAt: (u) => u.href.startsWith(app.redirectUri) });
      const ms = Date.now() - started;
      measured.msCodeExchangeSilentIdp = ms;
      expect(back.url.searchParams.get('error')).toBe('temporarily_unavailable');
      expect(back.url.searchParams.get('error_description')).toMatch(/did not answer in time/);
      expect(hole.accepted()).toBeGreaterThan(0);
      expect(ms).toBeLessThan(TIMEOUT_MS + 2_000);
    } finally {
      await hole.close();
    }
  });

  it('accepts TCP and never answers when the next login starts: the broker checks before sending the person there (temporarily_unavailable within the timeout)', async () => {
    const hole = await blackhole(port);
    try {
      const [ms] = await Promise.all([
        refusedLogin('de-eid', ANNA, /did not answer in time/),
        servesMeanwhile(),
      ]);
      measured.msLoginSilentIdpCached = ms;
      expect(ms).toBeLessThan(TIMEOUT_MS + 2_000);
    } finally {
      await hole.close();
    }
  });

  it('nothing listening when the next login starts: temporarily_unavailable (cannot be reached) at once', async () => {
    const ms = await refusedLogin('de-eid', ANNA, /cannot be reached/);
    measured.msLoginAbsentIdpCached = ms;
    expect(ms).toBeLessThan(1_500);
  });
});
