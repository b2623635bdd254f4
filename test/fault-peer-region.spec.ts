/**
 * Failing safe when the home region's broker is down during a hand-off (issue 6). A person who
 * starts at us and whose home is eu (German eID) is sent to eu's broker; here that broker is
 * killed (SIGKILL) or replaced by a listener that accepts and never answers. The person comes
 * back to the app with `temporarily_unavailable` and a description naming the problem — the
 * home region is unavailable — in bounded time; no other region steps in and nothing about the
 * person is stored at us. When eu returns, hand-offs work again without touching us.
 */
import net from 'node:net';
import { Client } from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runBrokerProcess, waitReady } from './support/broker';
import { TestBrowser } from './support/browser';
import { dumpDatabase } from './support/dump';
import { ANNA, FederationFixture, canariesOf, leaks } from './support/federation-fixture';

const TIMEOUT_MS = 3_000; // the fixture's MERIDIAN_UPSTREAM_TIMEOUT_MS
const f = new FederationFixture();
let euPort: number;
const measured: Record<string, number> = {};

/** What the us region and the control plane hold about people (and anything that binds them). */
async function storedAtUs() {
  const q = async (url: string, sql: string) => {
    const c = new Client({ connectionString: url });
    await c.connect();
    try {
      return (await c.query<{ n: number }>(sql)).rows[0]!.n;
    } finally {
      await c.end();
    }
  };
  return {
    subjects: await q(f.urls.us, 'select count(*)::int as n from subject'),
    identities: await q(f.urls.us, 'select count(*)::int as n from federated_identity'),
    grantsAndTokens: await q(
      f.urls.us,
      `select count(*)::int as n from oidc_payload
        where model in ('Grant', 'AuthorizationCode', 'AccessToken', 'RefreshToken')
           or (model = 'Session' and payload ? 'accountId')`,
    ),
    locator: await q(f.urls.control, 'select count(*)::int as n from subject_locator'),
  };
}

/** Redirected back to the app with an error: what a person's app shows them. */
function expectHomeUnavailable(params: URLSearchParams) {
  expect(params.get('error')).toBe('temporarily_unavailable');
  // RFC 9207 §2: the error response names the issuer that answered (us, not eu).
  expect(params.get('iss')).toBe(f.us.issuer);
  const description = params.get('error_description') ?? '';
  expect(description).toMatch(/home region eu, which is unavailable right now/);
  expect(description).not.toMatch(/ECONNREFUSED|fetch failed|127\.0\.0\.1|\bat .*\.js:\d+/);
}

function blackhole(port: number): Promise<{ close(): Promise<void>; accepted: () => number }> {
  const sockets = new Set<net.Socket>();
  let accepted = 0;
  const server = net.createServer((s) => {
    accepted++;
    sockets.add(s);
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

beforeAll(async () => {
  await f.start('faultpeer');
  euPort = Number(new URL(f.eu.url).port);
});

afterAll(async () => {
  console.info(`[fault-peer-region] measured: ${JSON.stringify(measured)}`);
  await f.stop();
});

describe('the home region’s broker is down during a hand-off (login at us, home eu)', () => {
  it('dies after the person signed in at the home region, before us redeems the code: temporarily_unavailable naming home region eu; nothing about the person is stored at us', async () => {
    const before = await storedAtUs();
    const browser = new TestBrowser();
    const { page, app } = await f.authorize(browser, 'us', { idp_hint: 'de-eid' });
    expect(page.url.origin).toBe(f.de.url);
    const usCallback = (u: URL) => u.origin === f.us.url && u.pathname === '/federation/callback';
    const atCallback = await browser.submit(
      page,
      { index: 0 },
      { username: ANNA.username, password: ANNA.password },
      'Sign in',
      { stopAt: usCallback, autoSubmitForms: true },
    );
    expect(usCallback(atCallback.url)).toBe(true);
    f.eu.child.kill('SIGKILL');
    await f.eu.exited;
    const started = Date.now();
    const back = await browser.follow(atCallback.url, { stopAt: (u) => u.href.startsWith(app.redirectUri) });
    measured.msCallbackWithHomeDead = Date.now() - started;
    expect(back.url.href.startsWith(app.redirectUri)).toBe(true);
    expectHomeUnavailable(back.url.searchParams);
    expect(Date.now() - started).toBeLessThan(TIMEOUT_MS);
    // The login did complete at the home region, which records the person there (and their
    // pseudonymous locator in the control plane); us keeps nothing.
    const { locator: _locator, ...atUs } = await storedAtUs();
    const { locator: _before, ...atUsBefore } = before;
    expect(atUs).toEqual(atUsBefore);
    expect(
      leaks((await dumpDatabase(f.urls.us)) + (await dumpDatabase(f.urls.control)), canariesOf(ANNA, f.de)),
    ).toEqual([]);
  });

  it('is down (nothing listening) before the hand-off: the person is not sent to a dead address but gets temporarily_unavailable at once', async () => {
    const before = await storedAtUs();
    const started = Date.now();
    const r = await f.login('us', 'de-eid', ANNA);
    measured.msHandOffRefusedWithHomeDown = Date.now() - started;
    expect('error' in r).toBe(true);
    expectHomeUnavailable(r.params);
    expect(Date.now() - started).toBeLessThan(1_500);
    expect(await storedAtUs()).toEqual(before);
  });

  it('accepts TCP and never answers: the hand-off stops within MERIDIAN_UPSTREAM_TIMEOUT_MS, and us keeps serving meanwhile', async () => {
    const hole = await blackhole(euPort);
    try {
      const before = await storedAtUs();
      const started = Date.now();
      const login = f.login('us', 'de-eid', ANNA);
      // The broker is not stuck behind the waiting hand-off.
      await new Promise((r) => setTimeout(r, 200));
      const probe = Date.now();
      expect((await fetch(`${f.us.url}/.well-known/openid-configuration`)).status).toBe(200);
      expect(Date.now() - probe).toBeLessThan(500);
      const r = await login;
      const elapsed = Date.now() - started;
      measured.msHandOffRefusedWithHomeSilent = elapsed;
      expect(hole.accepted()).toBeGreaterThan(0);
      expectHomeUnavailable(r.params);
      expect(elapsed).toBeGreaterThanOrEqual(TIMEOUT_MS - 100);
      expect(elapsed).toBeLessThan(TIMEOUT_MS + 2_000);
      expect(await storedAtUs()).toEqual(before);
    } finally {
      await hole.close();
    }
  });

  it('comes back: the next hand-off completes, us was not restarted', async () => {
    const usPid = f.us.child.pid;
    const proc = runBrokerProcess(f.eu.env);
    await waitReady(f.eu.url, proc.exited);
    f.eu = {
      ...f.eu,
      child: proc.child,
      exited: proc.exited,
      output: proc.output,
      stop: async () => {
        if (proc.child.exitCode !== null) return;
        proc.child.kill('SIGTERM');
        await proc.exited;
      },
    };
    const r = await f.login('us', 'de-eid', ANNA);
    if (!('tokens' in r)) throw new Error(`hand-off after eu came back: ${JSON.stringify(r)}`);
    expect(r.idToken!.residency).toMatchObject({ region: 'eu' });
    expect(f.us.child.pid).toBe(usPid);
  });
});
