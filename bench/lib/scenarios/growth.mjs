// How cost grows: token endpoint with more registered clients and more regions in the control
// plane; database size with more subjects. Each as a curve of several points.
import crypto from 'node:crypto';
import path from 'node:path';
import {
  BenchError,
  ROOT,
  basicAuth,
  cannon,
  compareTargets,
  createDatabase,
  fmt,
  http,
  log,
  percentiles,
  rand,
  require,
  sleep,
  step,
  withPg,
} from '../common.mjs';
import {
  adminPut,
  adminToken,
  checkedToken,
  clientBody,
  registerBenchClient,
  startBroker,
  tokenRequest,
} from '../broker.mjs';

const dist = (p) => require(path.join(ROOT, 'dist', p));

/** The growth sizes: `base` scaled, at least `min`, without duplicates, ascending. */
export function points(base, scale, min = 1) {
  return [...new Set(base.map((n, i) => (i === 0 ? n : Math.max(min, Math.round(n * scale)))))].sort(
    (a, b) => a - b,
  );
}

/** Runs `fn(i)` for i in [from, to) with `concurrency` in flight. */
async function pool(from, to, concurrency, fn, label) {
  let next = from;
  let done = 0;
  let lastLog = Date.now();
  const worker = async () => {
    while (next < to) {
      const i = next++;
      await fn(i);
      done++;
      if (Date.now() - lastLog > 10_000) {
        lastLog = Date.now();
        log(`  ${label}: ${from + done} / ${to}`);
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
}

/** Least-squares line through (x, y): { slope, intercept, r2 } and the largest residual. */
export function linearFit(xs, ys) {
  const n = xs.length;
  if (n < 2) return null;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let sxy = 0;
  let sxx = 0;
  let syy = 0;
  for (let i = 0; i < n; i++) {
    sxy += (xs[i] - mx) * (ys[i] - my);
    sxx += (xs[i] - mx) ** 2;
    syy += (ys[i] - my) ** 2;
  }
  const slope = sxx ? sxy / sxx : 0;
  const intercept = my - slope * mx;
  const residuals = ys.map((y, i) => y - (intercept + slope * xs[i]));
  return {
    slope,
    intercept,
    r2: syy ? (sxy * sxy) / (sxx * syy) : 1,
    maxAbsResidual: Math.max(...residuals.map(Math.abs)),
  };
}

// ------------------------------------------------------------------ clients

const ADMIN_API_LIMIT = 1000;
const clientId = (i) => `bench-c-${String(i).padStart(6, '0')}`;

export const growthClients = {
  name: 'growth_clients',
  title: 'token endpoint throughput and p99 vs registered clients',
  async run(ctx) {
    const sizes = points([10, 1000, 10_000, 100_000], ctx.opts.scale, 10);
    const broker = await step('growth_clients: start broker', () => startBroker('clients'));
    try {
      const hot = await registerBenchClient(broker);
      const secrets = [];
      const auths = [];
      let registered = 0;
      let token = hot.token;
      let template;
      const curve = [];
      let touched = 0;
      for (const n of sizes) {
        // Up to ADMIN_API_LIMIT through the admin API (as an admin would), beyond in bulk.
        const viaApi = Math.min(n, ADMIN_API_LIMIT);
        if (registered < viaApi) {
          await step(
            `growth_clients: register clients ${registered + 1}–${viaApi} through the admin API`,
            async () => {
              token = await adminToken(broker);
              let tokenAt = Date.now();
              await pool(
                registered,
                viaApi,
                4,
                async (i) => {
                  if (Date.now() - tokenAt > 120_000) {
                    tokenAt = Date.now();
                    token = await adminToken(broker);
                  }
                  const secret = rand(32);
                  secrets[i] = secret;
                  auths[i] = basicAuth(clientId(i + 1), secret);
                  await adminPut(broker, token, `/admin/clients/${clientId(i + 1)}`, clientBody(secret));
                },
                'admin API',
              );
            },
          );
          registered = viaApi;
        }
        if (registered < n) {
          template ??= await clientTemplate(broker);
          await step(`growth_clients: bulk-insert clients ${registered + 1}–${n}`, () =>
            bulkClients(broker, template, registered, n, secrets, auths),
          );
          registered = n;
          // A bulk row must be accepted exactly like an admin API row.
          const probe = Math.floor(n - 1);
          await checkedToken(broker, { clientId: clientId(probe + 1), clientSecret: secrets[probe] });
        }
        const count = await withPg(broker.control.url, async (c) =>
          Number((await c.query('select count(*) from oidc_client')).rows[0].count),
        );
        const req = tokenRequest(hot);
        const spreadReq = perClient(broker, req, () => auths[Math.floor(Math.random() * n)]);
        // Each client's first request finds it in no cache: measured once per new client, then
        // the timed rounds show the steady state (every client cached, as in production).
        const cold = await step(`growth_clients: first request of clients ${touched + 1}–${n} (cold)`, () =>
          firstRequests(broker, req, auths.slice(touched, n), ctx.load.connections),
        );
        touched = n;
        log(
          `${n} clients registered (oidc_client rows: ${count}); load: one hot client, and all ${n} spread uniformly`,
        );
        const res = await compareTargets(
          [
            {
              name: 'hot',
              label: 'one client',
              request: { url: broker.tokenEndpoint, ...req },
              pids: [{ name: 'server', pid: broker.pid }],
            },
            {
              name: 'spread',
              label: `uniform over all ${n} clients`,
              request: spreadReq,
              pids: [{ name: 'server', pid: broker.pid }],
            },
          ],
          { ...ctx.load, rounds: ctx.opts.growthRounds },
        );
        curve.push({ clients: n, oidcClientRows: count, cold, targets: res });
      }
      return { sizes, adminApiUpTo: ADMIN_API_LIMIT, curve };
    } finally {
      await broker.proc.stop();
    }
  },
};

/** The token request `req` with each request's client credentials from `authorization()`. */
function perClient(broker, req, authorization) {
  return {
    url: broker.tokenEndpoint,
    requests: [
      {
        method: 'POST',
        path: '/token',
        headers: req.headers,
        body: req.body,
        setupRequest: (r) => ({ ...r, headers: { ...r.headers, authorization: authorization() } }),
      },
    ],
  };
}

/**
 * One token request per client in `auths`, each client once, at the run's concurrency: the cost
 * of a client the broker has not seen yet (a control-plane read and a new oidc-provider Client).
 */
async function firstRequests(broker, req, auths, connections) {
  if (auths.length === 0) return null;
  let next = 0;
  const t0 = performance.now();
  const { result, lat } = await cannon(
    perClient(broker, req, () => auths[next++ % auths.length]),
    { connections: Math.min(connections, auths.length), amount: auths.length },
  );
  const seconds = (performance.now() - t0) / 1000;
  const pct = percentiles(lat);
  const out = {
    requests: result.requests.total,
    ok: result['2xx'],
    bad: result.non2xx + result.errors + result.timeouts,
    rps: result['2xx'] / seconds,
    p50: pct.p50,
    p99: pct.p99,
  };
  log(
    `  first request of ${auths.length} clients: ${out.rps.toFixed(0)} req/s, p50 ${fmt(out.p50, 2)} ms, p99 ${fmt(out.p99, 2)} ms${out.bad ? `, ${out.bad} failed` : ''}`,
  );
  if (out.bad) throw new BenchError('growth_clients: first requests', `${out.bad} of ${out.requests} failed`);
  return out;
}

/** The metadata row the admin API stored for a client: what every bulk row is made from. */
async function clientTemplate(broker) {
  return withPg(broker.control.url, async (c) => {
    const { rows } = await c.query('select metadata from oidc_client where client_id = $1', [clientId(1)]);
    if (!rows[0]) throw new BenchError('growth_clients: template', `${clientId(1)} not found in oidc_client`);
    return rows[0].metadata;
  });
}

/**
 * Rows exactly as AdminService.putClient writes them (libs/admin): the same metadata document,
 * with the client's own id and its own salted HMAC of its own secret (libs/tokens client-secret).
 * The admin API's audit entries are not written (they are not part of the client's row).
 */
async function bulkClients(broker, template, from, to, secrets, auths) {
  const { hashClientSecret } = dist('libs/tokens/src/client-secret.js');
  const t0 = Date.now();
  await withPg(broker.control.url, async (c) => {
    for (let start = from; start < to; start += 5000) {
      const ids = [];
      const docs = [];
      for (let i = start; i < Math.min(to, start + 5000); i++) {
        const id = clientId(i + 1);
        const secret = rand(32);
        secrets[i] = secret;
        auths[i] = basicAuth(id, secret);
        ids.push(id);
        docs.push(JSON.stringify({ ...template, client_id: id, client_secret: hashClientSecret(secret) }));
      }
      await c.query(
        'insert into oidc_client (client_id, metadata) select * from unnest($1::text[], $2::jsonb[])',
        [ids, docs],
      );
    }
  });
  log(`  bulk-inserted ${to - from} clients in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
}

// ------------------------------------------------------------------ regions

export const growthRegions = {
  name: 'growth_regions',
  title: 'token endpoint and trust bundle vs regions in the control plane',
  async run(ctx) {
    const sizes = [3, 10, 30];
    const broker = await step('growth_regions: start broker', () => startBroker('regions'));
    try {
      const hot = await registerBenchClient(broker);
      const { exportJWK, generateKeyPair, calculateJwkThumbprint } = await import('jose');
      // What a broker publishes for its region (rows of region_key): copied in shape for the others.
      const published = await withPg(
        broker.control.url,
        async (c) =>
          (
            await c.query('select alg, state, publish_until from region_key where region = $1', [
              broker.region,
            ])
          ).rows,
      );
      if (!published.length)
        throw new BenchError('growth_regions: region keys', `no region_key rows for ${broker.region}`);
      let regions = await withPg(broker.control.url, async (c) =>
        Number((await c.query('select count(*) from region')).rows[0].count),
      );
      const curve = [];
      for (const n of sizes) {
        if (regions < n) {
          await step(
            `growth_regions: add regions ${regions + 1}–${n} (admin API + their published keys)`,
            async () => {
              const token = await adminToken(broker);
              for (let i = regions + 1; i <= n; i++) {
                const id = `bench-r${String(i).padStart(2, '0')}`;
                await adminPut(broker, token, `/admin/regions/${id}`, {
                  issuer: `https://${id}.id.bench.example`,
                  jurisdiction: 'DE',
                });
                // As SigningKeys.publishToControlPlane writes them for a region's broker.
                await withPg(broker.control.url, async (c) => {
                  for (const row of published) {
                    const { publicKey } = await generateKeyPair('ES256', { extractable: true });
                    const jwk = await exportJWK(publicKey);
                    jwk.kid = await calculateJwkThumbprint(jwk);
                    Object.assign(jwk, { alg: row.alg, use: 'sig' });
                    await c.query(
                      'insert into region_key (kid, region, alg, public_jwk, state, publish_until) values ($1, $2, $3, $4, $5, $6)',
                      [jwk.kid, id, row.alg, jwk, row.state, row.publish_until],
                    );
                  }
                });
              }
            },
          );
          regions = n;
        }
        // The broker builds its bundle at most once a second: a region just added shows within one.
        let bundle;
        for (let tries = 0; ; tries++) {
          bundle = await http(
            'growth_regions: trust bundle',
            `${broker.issuer}/.well-known/meridian/trust-bundle`,
          );
          if ((bundle.status === 200 && bundle.json?.regions?.length === n) || tries >= 30) break;
          await sleep(100);
        }
        if (bundle.status !== 200 || bundle.json?.regions?.length !== n)
          throw new BenchError(
            'growth_regions: trust bundle',
            `expected ${n} regions, got ${bundle.json?.regions?.length} (HTTP ${bundle.status})`,
          );
        const res = await compareTargets(
          [
            {
              name: 'token',
              label: 'token endpoint',
              request: { url: broker.tokenEndpoint, ...tokenRequest(hot) },
              pids: [{ name: 'server', pid: broker.pid }],
            },
            {
              name: 'bundle',
              label: 'trust bundle',
              request: { url: `${broker.issuer}/.well-known/meridian/trust-bundle` },
              pids: [{ name: 'server', pid: broker.pid }],
            },
          ],
          { ...ctx.load, rounds: ctx.opts.growthRounds },
        );
        curve.push({ regions: n, bundleBytes: Buffer.byteLength(bundle.text), targets: res });
      }
      return { sizes, curve };
    } finally {
      await broker.proc.stop();
    }
  },
};

// ------------------------------------------------------------------ subjects

const EU_POLICY = {
  appliesTo: { jurisdictions: ['DE', 'FR', 'EU'] },
  homeRegion: 'eu',
  storageRegions: ['eu'],
  processingRegions: ['eu'],
  release: { default: ['sub', 'residency'], byRegion: { eu: ['email', 'name'] } },
  retention: { auditDays: 365, inactiveProfileDays: 730 },
  pseudonymiseForeignLogs: true,
};
const GIVEN = ['Anna', 'Lukas', 'Mia', 'Jonas', 'Lea', 'Felix', 'Emilia', 'Paul', 'Sofia', 'Maximilian'];
const FAMILY = [
  'Müller',
  'Schmidt',
  'Schneider',
  'Fischer',
  'Weber',
  'Meyer',
  'Wagner',
  'Becker',
  'Hoffmann',
  'Schäfer',
];

export const growthSubjects = {
  name: 'growth_subjects',
  title: 'database size vs subjects (written by SubjectStore.recordHomeLogin)',
  async run(ctx) {
    const sizes = points([0, 10_000, 25_000, 50_000, 100_000], ctx.opts.scale, 1);
    const control = await createDatabase('subjects_control');
    const region = await createDatabase('subjects_eu');
    const p = dist('libs/persistence/src/index.js');
    const { AuditLog } = dist('libs/audit/src/index.js');
    const { SubjectStore, SubjectLocator } = dist('libs/federation/src/index.js');
    const { parsePolicy, decisionFor } = dist('libs/residency/src/index.js');
    const controlDs = p.createControlDataSource({ url: control.url, poolSize: 10, applicationName: 'bench' });
    const regionDs = p.createRegionDataSource({ url: region.url, poolSize: 10, applicationName: 'bench' });
    try {
      await step('growth_subjects: migrate the control and region databases', async () => {
        await controlDs.initialize();
        await regionDs.initialize();
        await p.migrate(controlDs);
        await p.migrate(regionDs);
        await p.claimRegionDatabase(regionDs, 'eu');
      });
      const regionDb = new p.RegionDatabase('eu', regionDs);
      const controlDb = new p.ControlDatabase(controlDs);
      const pepper = crypto.randomBytes(32);
      const store = new SubjectStore(
        regionDb,
        new AuditLog(regionDb),
        new SubjectLocator(controlDb, pepper),
        pepper,
      );
      const policy = parsePolicy('eu-gdpr', 1, EU_POLICY, { knownRegions: ['eu'], otherPolicies: [] });
      const decision = decisionFor(policy, 'DE');
      const concurrency = 8;
      let have = 0;
      const curve = [];
      for (const n of sizes) {
        if (have < n) {
          const t0 = Date.now();
          await step(`growth_subjects: record home logins ${have + 1}–${n}`, () =>
            pool(
              have,
              n,
              concurrency,
              async (i) => {
                const g = GIVEN[i % GIVEN.length];
                const f = FAMILY[Math.floor(i / GIVEN.length) % FAMILY.length];
                await store.recordHomeLogin({
                  decision,
                  federationId: 'de-eid',
                  upstreamSub: `u-${rand(16)}`,
                  profile: {
                    email: `${g.toLowerCase()}.${f.toLowerCase()}.${i}@example.de`,
                    email_verified: true,
                    name: `${g} ${f}`,
                    given_name: g,
                    family_name: f,
                    country: 'DE',
                  },
                  storeProfile: true,
                });
              },
              'subjects',
            ),
          );
          const secs = (Date.now() - t0) / 1000;
          log(`  ${n - have} subjects in ${secs.toFixed(1)} s (${((n - have) / secs).toFixed(0)}/s)`);
          have = n;
        }
        curve.push({ subjects: n, ...(await sizesOf(region.url, control.url)) });
        const last = curve.at(-1);
        log(
          `${n} subjects: region database ${fmt(last.regionDatabaseBytes / 2 ** 20, 1)} MiB, control ${fmt(last.controlDatabaseBytes / 2 ** 20, 1)} MiB`,
        );
      }
      const xs = curve.map((c) => c.subjects);
      const fitRegion = linearFit(
        xs,
        curve.map((c) => c.regionDatabaseBytes),
      );
      const fitTables = linearFit(
        xs,
        curve.map((c) => c.subjectTablesBytes),
      );
      const fitControl = linearFit(
        xs,
        curve.map((c) => c.controlDatabaseBytes),
      );
      return {
        sizes,
        concurrency,
        curve,
        perSubject: {
          regionDatabaseBytes: fitRegion?.slope,
          subjectTablesBytes: fitTables?.slope,
          controlDatabaseBytes: fitControl?.slope,
        },
        per100k: {
          regionDatabaseMiB: (fitRegion?.slope * 100_000) / 2 ** 20,
          controlDatabaseMiB: (fitControl?.slope * 100_000) / 2 ** 20,
        },
        fits: { region: fitRegion, tables: fitTables, control: fitControl },
      };
    } finally {
      await Promise.allSettled([controlDs.destroy(), regionDs.destroy()]);
    }
  },
};

async function sizesOf(regionUrl, controlUrl) {
  const tables = ['subject', 'federated_identity', 'audit_event', 'audit_chain_head'];
  const region = await withPg(regionUrl, async (c) => {
    await c.query('vacuum analyze');
    const t = {};
    for (const name of tables)
      t[name] = Number((await c.query('select pg_total_relation_size($1) as b', [name])).rows[0].b);
    const db = Number((await c.query('select pg_database_size(current_database()) as b')).rows[0].b);
    const rows = Object.fromEntries(
      await Promise.all(
        ['subject', 'federated_identity', 'audit_event'].map(async (name) => [
          name,
          Number((await c.query(`select count(*) from ${name}`)).rows[0].count),
        ]),
      ),
    );
    return { tables: t, db, rows };
  });
  const control = await withPg(controlUrl, async (c) => {
    await c.query('vacuum analyze subject_locator');
    return {
      locator: Number((await c.query(`select pg_total_relation_size('subject_locator') as b`)).rows[0].b),
      db: Number((await c.query('select pg_database_size(current_database()) as b')).rows[0].b),
      rows: Number((await c.query('select count(*) from subject_locator')).rows[0].count),
    };
  });
  return {
    regionDatabaseBytes: region.db,
    controlDatabaseBytes: control.db,
    subjectTablesBytes: Object.values(region.tables).reduce((a, b) => a + b, 0),
    tableBytes: { ...region.tables, subject_locator: control.locator },
    rows: { ...region.rows, subject_locator: control.rows },
  };
}
