/**
 * The login-shaped scenarios of the benchmark suite, on the test fixtures: two real brokers (eu,
 * us), real upstream IdPs (oidc-provider), real PostgreSQL, logins scripted over HTTP by the
 * test browser (authorize → upstream login form → callback → [hand-off] → code → tokens). Each
 * login uses a fresh browser, so the upstream form is filled every time (no single sign-on).
 *
 * Started by `npm run bench -- login|refresh|growth_federations|growth_sessions` (bench/run.mjs),
 * which passes a plan in BENCH_LOGIN_PLAN (a JSON file) and reads the result file it names.
 *
 *   mode login        latency of the three flows (upstream alone, same region, hand-off), rounds
 *                     rotating the order; broker CPU per login
 *   mode refresh      refresh_token grants per second and broker CPU per grant (closed loop)
 *   mode federations  login latency (and the chooser page) with N federations configured
 *   mode sessions     broker RSS / heap and database size with N sessions created by logins
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { Client } from 'pg';
import { adminCall, adminToken, tokenRequest } from '../test/support/broker';
import { TestBrowser } from '../test/support/browser';
import { ANNA, FederationFixture } from '../test/support/federation-fixture';

interface Plan {
  mode: 'login' | 'refresh' | 'federations' | 'sessions';
  out: string;
  prefix: string;
  rounds: number;
  perRound: number;
  warmup: number;
  /** refresh: virtual users and seconds per round. */
  concurrency?: number;
  seconds?: number;
  warmupSeconds?: number;
  /** federations / sessions: the curve's points. */
  counts?: number[];
  /** More environment for both brokers (bench/lib/broker.mjs BENCH_BROKER_ENV: limits out of reach). */
  brokerEnv?: Record<string, string>;
  /** login / refresh with --profile: the brokers are profiled (workers/cpu-profile.mjs), profiles written here at exit. */
  profileDir?: string;
}

const plan: Plan | undefined = process.env.BENCH_LOGIN_PLAN
  ? (JSON.parse(readFileSync(process.env.BENCH_LOGIN_PLAN, 'utf8')) as Plan)
  : undefined;
const f = new FederationFixture();

beforeAll(async () => {
  if (!plan) return;
  await f.start(plan.prefix, {
    // Thousands of logins: keep the brokers' output (held in memory by the fixture) small.
    logLevel: plan.mode === 'sessions' || plan.mode === 'federations' ? 'warn' : undefined,
    // Sessions: a full GC on SIGUSR2 before each measurement (bench/workers/gc-on-signal.mjs).
    env: {
      ...plan.brokerEnv,
      ...(plan.mode === 'sessions'
        ? { NODE_OPTIONS: `--import ${pathToFileURL(join(__dirname, 'workers', 'gc-on-signal.mjs')).href}` }
        : {}),
      // --profile (refresh): --cpu-prof is not allowed in NODE_OPTIONS; the same profile through the inspector.
      ...(plan.profileDir
        ? {
            NODE_OPTIONS: `--import ${pathToFileURL(join(__dirname, 'workers', 'cpu-profile.mjs')).href}`,
            BENCH_CPU_PROFILE_DIR: plan.profileDir,
          }
        : {}),
    },
  });
}, 300_000);

afterAll(async () => {
  if (plan) await f.stop();
}, 120_000);

// ---------------------------------------------------------------- helpers

function cpuMs(pid: number | undefined): number {
  if (!pid) return NaN;
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
}

function rssKiB(pid: number | undefined): number {
  if (!pid) return NaN;
  const m = readFileSync(`/proc/${pid}/status`, 'utf8').match(/^VmRSS:\s+(\d+) kB/m);
  return m ? Number(m[1]) : NaN;
}

function pct(samples: number[]) {
  const s = [...samples].sort((a, b) => a - b);
  const at = (p: number) => s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
  return { n: s.length, p50: at(50), p90: at(90), p99: at(99), max: s[s.length - 1]! };
}

const r1 = (x: number) => Math.round(x * 10) / 10;

function pids() {
  return { eu: f.eu.child.pid, us: f.us.child.pid };
}

function basic(id: string, secret: string) {
  return `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64')}`;
}

/** The same browser steps straight against the upstream IdP (its client meridian-eu stands in for an app). */
async function upstreamLogin(): Promise<void> {
  const browser = new TestBrowser();
  const verifier = randomBytes(32).toString('base64url');
  const { createHash } = await import('node:crypto');
  const url = new URL(`${f.de.issuer}/auth`);
  url.searchParams.set('client_id', 'meridian-eu');
  url.searchParams.set('redirect_uri', `${f.eu.issuer}/federation/callback`);
  url.searchParams.set('response_type', 'code');
  url.searchParams.set('scope', 'openid email profile');
  url.searchParams.set('state', randomBytes(8).toString('hex'));
  url.searchParams.set('code_challenge', createHash('sha256').update(verifier).digest('base64url'));
  url.searchParams.set('code_challenge_method', 'S256');
  const page = await browser.follow(url.href);
  const back = await browser.submit(
    page,
    { index: 0 },
    { username: ANNA.username, password: ANNA.password },
    'Sign in',
    { stopAt: (u) => u.pathname === '/federation/callback' },
  );
  const code = back.url.searchParams.get('code');
  if (!code) throw new Error(`upstream login: no code (${back.url.href})`);
  const res = await fetch(`${f.de.issuer}/token`, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      authorization: basic('meridian-eu', f.upstreamSecrets['eu:de-eid']!),
    },
    body: new URLSearchParams({
      grant_type: 'authorization_code',
      code,
      redirect_uri: `${f.eu.issuer}/federation/callback`,
      code_verifier: verifier,
    }),
  });
  if (res.status !== 200) throw new Error(`upstream token: ${res.status} ${await res.text()}`);
  await res.arrayBuffer().catch(() => undefined);
}

/** Logins and grants retried after a 503 (load shedding, Retry-After: 1), as a browser user would. */
const retried = { count: 0, last: '' };

function isShed(err: unknown): boolean {
  return /\b503\b|temporarily_unavailable/.test((err as Error).message);
}

async function withRetry<T>(once: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await once();
    } catch (err) {
      if (attempt >= 5 || !isShed(err)) throw err;
      retried.count++;
      retried.last = (err as Error).message.slice(0, 300);
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
}

const brokerLogin = (region: 'eu' | 'us') => withRetry(() => brokerLoginOnce(region));

/** FederationFixture.login, with what came back named when it is not the app's redirect. */
async function brokerLoginOnce(region: 'eu' | 'us'): Promise<{ refresh_token?: string }> {
  const browser = new TestBrowser();
  const { page, verifier, app, state } = await f.authorize(browser, region, { idp_hint: 'de-eid' });
  const back = page.url.href.startsWith(app.redirectUri) ? page : await f.signIn(browser, page, ANNA, app);
  const params = back.url.searchParams;
  if (!back.url.href.startsWith(app.redirectUri) || params.get('error') || params.get('state') !== state) {
    const text = back.html
      .replace(/<[^>]+>/g, ' ')
      .replace(/\s+/g, ' ')
      .slice(0, 300);
    throw new Error(
      `login at ${region} did not come back with a code: ${back.status} ${back.url.href.slice(0, 200)} ${text}`,
    );
  }
  const tokens = await tokenRequest(
    f.broker(region).url,
    {
      grant_type: 'authorization_code',
      code: params.get('code')!,
      redirect_uri: app.redirectUri,
      code_verifier: verifier,
      resource: 'https://api.canary.example',
    },
    app,
  );
  if (tokens.status !== 200)
    throw new Error(`code exchange at ${region}: ${tokens.status} ${JSON.stringify(tokens.body)}`);
  return tokens.body as { refresh_token?: string };
}

const FLOWS = {
  upstream: { label: 'upstream IdP alone (same browser steps)', run: upstreamLogin },
  same_region: { label: 'broker, same region (eu app, person homed in eu)', run: () => brokerLogin('eu') },
  handoff: { label: 'broker pair, hand-off (us app, person homed in eu)', run: () => brokerLogin('us') },
} as const;
type FlowName = keyof typeof FLOWS;

async function timedLogins(n: number, once: () => Promise<unknown>) {
  const samples: number[] = [];
  const p = pids();
  const cpu0 = { eu: cpuMs(p.eu), us: cpuMs(p.us), driver: process.cpuUsage() };
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await once();
    samples.push(performance.now() - t0);
  }
  const driver = process.cpuUsage(cpu0.driver);
  return {
    samples,
    cpuMsPerLogin: {
      eu: (cpuMs(p.eu) - cpu0.eu) / n,
      us: (cpuMs(p.us) - cpu0.us) / n,
      driver: (driver.user + driver.system) / 1000 / n,
    },
  };
}

// ---------------------------------------------------------------- modes

async function loginMode(p: Plan) {
  const names = Object.keys(FLOWS) as FlowName[];
  for (const name of names) for (let i = 0; i < p.warmup; i++) await FLOWS[name].run();
  const out: Record<string, { label: string; rounds: unknown[]; samples: number[] }> = {};
  for (const name of names) out[name] = { label: FLOWS[name].label, rounds: [], samples: [] };
  for (let round = 0; round < p.rounds; round++) {
    // Rotate the order round by round: each flow runs first, second and third in turn.
    const order = names.map((_, i) => names[(i + round) % names.length]!);
    for (const name of order) {
      const w0 = Number(process.hrtime.bigint() / 1000n);
      const r = await timedLogins(p.perRound, FLOWS[name].run);
      // CLOCK_MONOTONIC µs, as V8 stamps profile samples (bench/lib/profile.mjs).
      const windowUs = [w0, Number(process.hrtime.bigint() / 1000n)];
      out[name]!.samples.push(...r.samples.map(r1));
      out[name]!.rounds.push({
        ...pct(r.samples),
        cpuMsPerLogin: r.cpuMsPerLogin,
        loadavg: loadavg(),
        windowUs,
      });
      const s = pct(r.samples);
      console.log(
        `[login] round ${round + 1} ${name}: p50 ${s.p50.toFixed(1)} ms, p99 ${s.p99.toFixed(1)} ms`,
      );
    }
  }
  return { flows: out, pids: pids() };
}

async function refreshMode(p: Plan) {
  const app = f.apps.eu!;
  const concurrency = p.concurrency ?? 8;
  const tokens: string[] = [];
  for (let i = 0; i < concurrency; i++) {
    const t = await brokerLogin('eu');
    if (!t.refresh_token) throw new Error('login returned no refresh_token (offline_access)');
    tokens.push(t.refresh_token);
  }
  const auth = basic(app.clientId, app.clientSecret);
  const refreshOnce = async (vu: number) => {
    const res = await fetch(`${f.eu.url}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: auth },
      body: new URLSearchParams({
        grant_type: 'refresh_token',
        refresh_token: tokens[vu]!,
        resource: 'https://api.canary.example',
      }),
    });
    const body = (await res.json()) as { refresh_token?: string; error?: string };
    if (res.status !== 200 || !body.refresh_token)
      throw new Error(`refresh: ${res.status} ${JSON.stringify(body)}`);
    tokens[vu] = body.refresh_token;
  };
  const closedLoop = async (seconds: number) => {
    const end = performance.now() + seconds * 1000;
    const lat: number[] = [];
    const eu = f.eu.child.pid;
    const c0 = cpuMs(eu);
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: concurrency }, async (_, vu) => {
        while (performance.now() < end) {
          const s = performance.now();
          await withRetry(() => refreshOnce(vu));
          lat.push(performance.now() - s);
        }
      }),
    );
    const secs = (performance.now() - t0) / 1000;
    const cpu = cpuMs(eu) - c0;
    return {
      // CLOCK_MONOTONIC µs, as V8 stamps profile samples (bench/lib/profile.mjs).
      windowUs: [
        Number(process.hrtime.bigint() / 1000n) - Math.round(secs * 1e6),
        Number(process.hrtime.bigint() / 1000n),
      ],
      rps: lat.length / secs,
      ...pct(lat),
      cpuUsPerReq: (cpu * 1000) / lat.length,
      cpuPercent: cpu / 10 / secs,
      loadavg: loadavg(),
    };
  };
  const rounds = [];
  for (let i = 0; i < p.rounds; i++) {
    if (p.warmupSeconds) await closedLoop(p.warmupSeconds);
    const r = await closedLoop(p.seconds ?? 10);
    console.log(
      `[refresh] round ${i + 1}: ${r.rps.toFixed(0)}/s, p50 ${r.p50.toFixed(1)} ms, p99 ${r.p99.toFixed(1)} ms, ${r.cpuUsPerReq.toFixed(0)} µs CPU each`,
    );
    rounds.push(r);
  }
  return { concurrency, rounds, pids: pids() };
}

async function addFederations(total: number): Promise<number> {
  const token = await adminToken(f.eu);
  const body = f.federationBodies['eu:de-eid']!;
  const existing = (await adminCall(f.eu, 'GET', '/admin/federations', undefined, token)).body as unknown[];
  let have = Array.isArray(existing) ? existing.length : 2;
  const t0 = performance.now();
  let next = have;
  const worker = async () => {
    while (next < total) {
      const i = next++;
      const id = `bench-fed-${String(i).padStart(5, '0')}`;
      const r = await adminCall(
        f.eu,
        'PUT',
        `/admin/federations/${id}`,
        { ...body, displayName: `Bench IdP ${i}`, homeRealm: { emailDomains: [`fed-${i}.example`] } },
        token,
      );
      if (r.status !== 201 && r.status !== 200)
        throw new Error(`PUT federation ${id}: ${r.status} ${JSON.stringify(r.body)}`);
      have++;
    }
  };
  await Promise.all(Array.from({ length: 4 }, worker));
  return (performance.now() - t0) / 1000;
}

async function chooserPage(): Promise<number> {
  const browser = new TestBrowser();
  const t0 = performance.now();
  const { page } = await f.authorize(browser, 'eu');
  const ms = performance.now() - t0;
  if (page.status !== 200 || !page.html.includes('de-eid'))
    throw new Error(`chooser page: ${page.status} ${page.url.href}`);
  return ms;
}

async function federationsMode(p: Plan) {
  const curve = [];
  for (const count of p.counts ?? [10, 100, 1000]) {
    const secs = await addFederations(count);
    const list = (await adminCall(f.eu, 'GET', '/admin/federations')).body as unknown[];
    console.log(`[federations] ${list.length} federations (added in ${secs.toFixed(1)} s)`);
    for (let i = 0; i < p.warmup; i++) {
      await brokerLogin('eu');
      await chooserPage();
    }
    const rounds = [];
    const samples: number[] = [];
    const chooser: number[] = [];
    for (let r = 0; r < p.rounds; r++) {
      const t = await timedLogins(p.perRound, () => brokerLogin('eu'));
      const c: number[] = [];
      for (let i = 0; i < p.perRound; i++) c.push(await chooserPage());
      samples.push(...t.samples.map(r1));
      chooser.push(...c.map(r1));
      rounds.push({
        login: pct(t.samples),
        chooser: pct(c),
        cpuMsPerLogin: t.cpuMsPerLogin,
        loadavg: loadavg(),
      });
    }
    const s = pct(samples);
    console.log(
      `[federations] ${list.length}: login p50 ${s.p50} ms p99 ${s.p99} ms; chooser p50 ${pct(chooser).p50} ms`,
    );
    curve.push({
      federations: list.length,
      addSeconds: secs,
      rounds,
      login: pct(samples),
      chooser: pct(chooser),
      samples,
      chooserSamples: chooser,
    });
  }
  return { curve };
}

async function heapUsed(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const m = text.match(/^nodejs_heap_size_used_bytes(?:\{[^}]*\})? ([\d.e+]+)/m);
  return m ? Number(m[1]) : NaN;
}

async function sessionsMode(p: Plan) {
  const db = new Client({ connectionString: f.regionUrl('eu') });
  await db.connect();
  const curve = [];
  let done = 0;
  const concurrency = p.concurrency ?? 4;
  try {
    for (const count of p.counts ?? [0, 2500, 5000, 7500, 10000]) {
      const t0 = performance.now();
      let next = done;
      await Promise.all(
        Array.from({ length: concurrency }, async () => {
          while (next < count) {
            next++;
            await brokerLogin('eu');
          }
        }),
      );
      const secs = (performance.now() - t0) / 1000;
      const logins = count - done;
      done = count;
      await new Promise((r) => setTimeout(r, 1000));
      process.kill(f.eu.child.pid!, 'SIGUSR2');
      await new Promise((r) => setTimeout(r, 2000));
      const rows = await db.query(
        `select model, count(*)::int as n from oidc_payload where expires_at is null or expires_at > now() group by model`,
      );
      const sizes = await db.query(
        `select pg_total_relation_size('oidc_payload') as payload, pg_database_size(current_database()) as db`,
      );
      const point = {
        sessions: count,
        loginsPerSecond: logins ? logins / secs : null,
        rssKiB: rssKiB(f.eu.child.pid),
        heapUsedBytes: await heapUsed(f.eu.url),
        rows: Object.fromEntries(rows.rows.map((r: { model: string; n: number }) => [r.model, r.n])),
        oidcPayloadBytes: Number(sizes.rows[0].payload),
        regionDatabaseBytes: Number(sizes.rows[0].db),
        loadavg: loadavg(),
      };
      console.log(
        `[sessions] ${count}: RSS ${(point.rssKiB / 1024).toFixed(1)} MiB, heap ${(point.heapUsedBytes / 2 ** 20).toFixed(1)} MiB, Session rows ${point.rows.Session ?? 0}, ${logins ? (logins / secs).toFixed(1) : '-'} logins/s`,
      );
      curve.push(point);
    }
  } finally {
    await db.end();
  }
  return { concurrency, curve };
}

it('runs the plan given by bench/run.mjs', async () => {
  if (!plan) {
    console.log('BENCH_LOGIN_PLAN not set: run this through npm run bench -- login (bench/run.mjs)');
    return;
  }
  const t0 = Date.now();
  const result =
    plan.mode === 'login'
      ? await loginMode(plan)
      : plan.mode === 'refresh'
        ? await refreshMode(plan)
        : plan.mode === 'federations'
          ? await federationsMode(plan)
          : await sessionsMode(plan);
  writeFileSync(
    plan.out,
    JSON.stringify({
      mode: plan.mode,
      seconds: (Date.now() - t0) / 1000,
      loadavg: loadavg(),
      retriedAfter503: retried,
      ...result,
    }),
  );
  expect(result).toBeTruthy();
});
