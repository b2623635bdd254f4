/**
 * Latency of a full federated login, scripted over HTTP: authorize at the broker → upstream
 * login form → callback → (hand-off to the home broker and back) → code → tokens. Same region
 * (an eu app, a German eID person homed in eu) and with hand-off (a us app, the same person),
 * next to a login straight against the upstream IdP. Each login uses a fresh browser, so the
 * upstream form is filled every time (no single sign-on).
 *
 *   npm run bench:login                 (LOGIN_BENCH_ROUNDS=100 to change the count)
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { TestBrowser } from '../test/support/browser';
import { ANNA, FederationFixture } from '../test/support/federation-fixture';

const ROUNDS = Number(process.env.LOGIN_BENCH_ROUNDS ?? 60);
const WARMUP = 5;
const f = new FederationFixture();

beforeAll(async () => {
  await f.start('benchlogin');
});

afterAll(async () => {
  await f.stop();
});

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

async function measure(label: string, once: () => Promise<void>) {
  for (let i = 0; i < WARMUP; i++) await once();
  const samples: number[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    const t0 = performance.now();
    await once();
    samples.push(performance.now() - t0);
  }
  samples.sort((a, b) => a - b);
  const row = {
    scenario: label,
    rounds: ROUNDS,
    p50Ms: +percentile(samples, 50).toFixed(1),
    p90Ms: +percentile(samples, 90).toFixed(1),
    p99Ms: +percentile(samples, 99).toFixed(1),
    maxMs: +samples[samples.length - 1]!.toFixed(1),
  };
  console.log(JSON.stringify(row));
  return row;
}

it('measures federated login latency', async () => {
  const rows = [];
  rows.push(
    await measure('upstream IdP alone (the same browser steps against the IdP)', async () => {
      const browser = new TestBrowser();
      const app = f.apps.eu!;
      const url = new URL(`${f.de.issuer}/auth`);
      // The broker's own client at the IdP stands in for an app: same form, same token call.
      url.searchParams.set('client_id', 'meridian-eu');
      url.searchParams.set('redirect_uri', `${f.eu.issuer}/federation/callback`);
      url.searchParams.set('response_type', 'code');
      url.searchParams.set('scope', 'openid email profile');
      url.searchParams.set('code_challenge', 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM');
      url.searchParams.set('code_challenge_method', 'S256');
      const page = await browser.follow(url.href);
      const back = await browser.submit(
        page,
        { index: 0 },
        { username: ANNA.username, password: ANNA.password },
        'Sign in',
        {
          stopAt: (u) => u.pathname === '/federation/callback',
        },
      );
      const code = back.url.searchParams.get('code');
      expect(code).toBeTruthy();
      const res = await fetch(`${f.de.issuer}/token`, {
        method: 'POST',
        headers: {
          'content-type': 'application/x-www-form-urlencoded',
          authorization: `Basic ${Buffer.from(`meridian-eu:${f.upstreamSecrets['eu:de-eid']}`).toString('base64')}`,
        },
        body: new URLSearchParams({
          grant_type: 'authorization_code',
          code: code!,
          redirect_uri: `${f.eu.issuer}/federation/callback`,
          code_verifier: 'dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk',
        }),
      });
      expect(res.status).toBe(200);
      void app;
    }),
  );
  rows.push(
    await measure('broker, same region (eu app, person homed in eu)', async () => {
      const r = await f.login('eu', 'de-eid', ANNA);
      expect('error' in r).toBe(false);
    }),
  );
  rows.push(
    await measure('broker pair, with hand-off (us app, person homed in eu)', async () => {
      const r = await f.login('us', 'de-eid', ANNA);
      expect('error' in r).toBe(false);
    }),
  );
  const report = {
    date: new Date().toISOString(),
    node: process.version,
    cores: cpus().length,
    loadavg: loadavg(),
    rows,
  };
  const dir = join(__dirname, 'results');
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    join(dir, `federated-login-${report.date.replace(/[:.]/g, '-')}.json`),
    `${JSON.stringify(report, null, 2)}\n`,
  );
});
