#!/usr/bin/env node
// `npm start`: the local multi-region stack on one embedded PostgreSQL (one database per role:
// control, eu, us): two regional brokers, three demo upstream IdPs (real OpenID Providers with a
// login form), a demo app registered at the us broker, and two demo services behind auth
// sidecars. Everything is configured through the admin API, as a real admin would. Data and the
// generated development secrets stay under .meridian/ between runs; `npm run reset` wipes them.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { isDeepStrictEqual } from 'node:util';

const started = Date.now();
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const { startEmbeddedPostgres } = require(join(root, 'dist/libs/persistence/src/embedded-postgres.js'));

const dataDir = process.env.MERIDIAN_DATA_DIR ?? join(root, '.meridian');
const demoBase = Number(process.env.MERIDIAN_DEMO_PORT_BASE ?? 4100);
const REGIONS = [
  { region: 'eu', port: Number(process.env.MERIDIAN_EU_PORT ?? 4000), jurisdiction: 'EU' },
  { region: 'us', port: Number(process.env.MERIDIAN_US_PORT ?? 4001), jurisdiction: 'US' },
];
for (const r of REGIONS) r.issuer = `http://127.0.0.1:${r.port}`;
const EU = REGIONS[0];
const US = REGIONS[1];

// ------------------------------------------------------------------------------ demo world

const DEMO_IDPS = [
  {
    id: 'de-eid',
    displayName: 'German eID (demo)',
    port: demoBase,
    kind: 'national',
    jurisdiction: 'DE',
    homeRealm: { emailDomains: ['example.de'] },
    users: [
      {
        username: 'anna',
        password: 'anna-demo',
        claims: { email: 'anna@example.de', email_verified: true, name: 'Anna Schmidt', country: 'DE' },
      },
    ],
  },
  {
    id: 'us-login',
    displayName: 'US Login (demo)',
    port: demoBase + 1,
    kind: 'national',
    jurisdiction: 'US',
    homeRealm: { emailDomains: ['example.us'] },
    users: [
      {
        username: 'bob',
        password: 'bob-demo',
        claims: { email: 'bob@example.us', email_verified: true, name: 'Bob Miller', country: 'US' },
      },
    ],
  },
  {
    id: 'global-id',
    displayName: 'Global ID (demo)',
    port: demoBase + 2,
    kind: 'global',
    users: [
      {
        username: 'carla',
        password: 'carla-demo',
        claims: { email: 'carla@example.fr', name: 'Carla Dubois', address: { country: 'FR' } },
      },
      {
        username: 'dave',
        password: 'dave-demo',
        claims: { email: 'dave@example.com', name: 'Dave Jones', country: 'US' },
      },
      {
        username: 'kenji',
        password: 'kenji-demo',
        claims: { email: 'kenji@example.jp', name: 'Kenji Sato', country: 'JP' },
      },
      {
        username: 'admin',
        password: 'admin-demo',
        claims: {
          email: 'admin@example.de',
          name: 'Ada Admin',
          country: 'DE',
          groups: ['meridian-admins', 'meridian-compliance'],
        },
      },
    ],
  },
];
const SERVICES = [
  {
    name: 'orders-eu',
    region: 'eu',
    audience: 'https://orders.eu.demo.meridian.local',
    sidecarPort: demoBase + 201,
    port: demoBase + 211,
  },
  {
    name: 'orders-us',
    region: 'us',
    audience: 'https://orders.us.demo.meridian.local',
    sidecarPort: demoBase + 202,
    port: demoBase + 212,
  },
];
const APP_PORT = demoBase + 100;
const APP_URL = `http://127.0.0.1:${APP_PORT}`;

const POLICIES = {
  'eu-gdpr': {
    appliesTo: { jurisdictions: ['DE', 'FR', 'EU'] },
    homeRegion: 'eu',
    storageRegions: ['eu'],
    processingRegions: ['eu'],
    release: { default: ['sub', 'residency'], byRegion: { eu: ['email', 'name'] } },
    retention: { auditDays: 365, inactiveProfileDays: 730 },
    pseudonymiseForeignLogs: true,
  },
  'us-default': {
    appliesTo: { jurisdictions: ['US'] },
    homeRegion: 'us',
    storageRegions: ['us'],
    processingRegions: ['us', 'eu'],
    release: { default: ['sub', 'residency'], byRegion: { us: ['email', 'name'], eu: ['name'] } },
    retention: { auditDays: 365, inactiveProfileDays: 730 },
  },
};

// ---------------------------------------------------------------------------------- helpers

const log = (msg) => console.log(`[${((Date.now() - started) / 1000).toFixed(1).padStart(5)}s] ${msg}`);

function portFree(port) {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

function devSecrets() {
  const file = join(dataDir, 'dev-secrets.json');
  const secrets = existsSync(file) ? JSON.parse(readFileSync(file, 'utf8')) : {};
  const fill = (key, make) => {
    if (secrets[key] === undefined) secrets[key] = make();
  };
  fill('kek', () => randomBytes(32).toString('base64'));
  fill('locatorPepper', () => randomBytes(32).toString('base64'));
  fill('adminClientId', () => 'meridian-admin');
  fill('adminClientSecret', () => randomBytes(32).toString('base64url'));
  fill('demoAppSecret', () => randomBytes(32).toString('base64url'));
  fill('upstream', () => ({}));
  for (const idp of DEMO_IDPS)
    for (const r of REGIONS) {
      const key = `${idp.id}:${r.region}`;
      secrets.upstream[key] ??= randomBytes(32).toString('base64url');
    }
  mkdirSync(dataDir, { recursive: true });
  writeFileSync(file, JSON.stringify(secrets, null, 2), { mode: 0o600 });
  return secrets;
}

async function waitFor(what, url, deadlineMs = 60_000) {
  const deadline = Date.now() + deadlineMs;
  for (;;) {
    try {
      if ((await fetch(url, { signal: AbortSignal.timeout(2000) })).ok) return;
    } catch {
      // not yet listening
    }
    if (Date.now() > deadline) throw new Error(`${what} did not become ready (${url})`);
    await new Promise((res) => setTimeout(res, 200));
  }
}

/** The bootstrap admin's client_credentials token at one broker (the same client everywhere). */
async function adminToken(broker, secrets) {
  const res = await fetch(`${broker.issuer}/token`, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      authorization: `Basic ${Buffer.from(`${secrets.adminClientId}:${secrets.adminClientSecret}`).toString('base64')}`,
    },
    body: new URLSearchParams({
      grant_type: 'client_credentials',
      resource: 'urn:meridian:admin',
      scope: 'meridian:admin meridian:compliance',
    }),
  });
  const body = await res.json();
  if (!res.ok) throw new Error(`admin token at ${broker.region}: ${res.status} ${JSON.stringify(body)}`);
  return body.access_token;
}

async function api(broker, token, method, path, body) {
  const res = await fetch(`${broker.issuer}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}

async function put(broker, token, path, body) {
  const r = await api(broker, token, 'PUT', path, body);
  if (r.status !== 200 && r.status !== 201)
    throw new Error(`PUT ${path} at ${broker.region}: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}

/** The demo configuration, through the admin API only (idempotent: safe on every start). */
async function provision(secrets) {
  const tokens = {};
  for (const r of REGIONS) tokens[r.region] = await adminToken(r, secrets);
  // Policies and resources live in the control plane: once, through eu.
  for (const [id, doc] of Object.entries(POLICIES)) {
    const current = await api(EU, tokens.eu, 'GET', `/compliance/policies/${id}`);
    const same = current.status === 200 && isDeepStrictEqual(current.body?.history?.[0]?.document, doc);
    if (!same) await put(EU, tokens.eu, `/compliance/policies/${id}`, doc);
  }
  for (const s of SERVICES)
    await put(EU, tokens.eu, `/admin/resources/${s.name}`, {
      audience: s.audience,
      scopes: ['orders:read'],
      region: s.region,
    });
  await put(EU, tokens.eu, '/admin/clients/demo-app', {
    client_secret: secrets.demoAppSecret,
    redirect_uris: [`${APP_URL}/callback`],
    post_logout_redirect_uris: [`${APP_URL}/`],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
    scope: 'openid email profile offline_access orders:read',
    resources: SERVICES.map((s) => s.audience),
  });
  // Federations are per broker: each region is its own client at the upstream IdP.
  for (const r of REGIONS)
    for (const idp of DEMO_IDPS)
      await put(r, tokens[r.region], `/admin/federations/${idp.id}`, {
        displayName: idp.displayName,
        issuer: `http://127.0.0.1:${idp.port}`,
        clientId: `meridian-${r.region}`,
        clientSecret: secrets.upstream[`${idp.id}:${r.region}`],
        scopes: ['openid', 'email', 'profile', 'address'],
        kind: idp.kind,
        ...(idp.jurisdiction ? { jurisdiction: idp.jurisdiction } : {}),
        ...(idp.homeRealm ? { homeRealm: idp.homeRealm } : {}),
      });
}

// ------------------------------------------------------------------------------------- main

async function main() {
  const wanted = [
    ...REGIONS.map((r) => [r.port, `broker ${r.region}`, `MERIDIAN_${r.region.toUpperCase()}_PORT`]),
    ...DEMO_IDPS.map((i) => [i.port, `demo IdP ${i.id}`, 'MERIDIAN_DEMO_PORT_BASE']),
    [APP_PORT, 'demo app', 'MERIDIAN_DEMO_PORT_BASE'],
    ...SERVICES.flatMap((s) => [
      [s.port, `demo service ${s.name}`, 'MERIDIAN_DEMO_PORT_BASE'],
      [s.sidecarPort, `sidecar of ${s.name}`, 'MERIDIAN_DEMO_PORT_BASE'],
    ]),
  ];
  for (const [port, what, variable] of wanted) {
    if (!(await portFree(port))) {
      console.error(`port ${port} (${what}) is already in use: stop what uses it or set ${variable}`);
      process.exit(1);
    }
  }
  const secrets = devSecrets();
  log('starting the embedded PostgreSQL under .meridian/pg …');
  const pg = await startEmbeddedPostgres({ dataDir: join(dataDir, 'pg') });
  const controlUrl = await pg.ensureDatabase('meridian_control');
  const children = [];
  let stopping = false;

  const stop = async (code = 0) => {
    if (stopping) return;
    stopping = true;
    console.log('\nstopping …');
    await Promise.all(
      children.map(
        (c) =>
          new Promise((resolve) => {
            if (c.exitCode !== null) return resolve();
            c.once('exit', resolve);
            c.kill('SIGTERM');
          }),
      ),
    );
    await pg.stop();
    process.exit(code);
  };
  process.on('SIGINT', () => void stop(0));
  process.on('SIGTERM', () => void stop(0));

  const run = (name, file, env) => {
    const child = spawn(process.execPath, [join(root, file)], {
      env: { ...process.env, LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn', ...env },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    child.stdout.on('data', (d) => {
      const text = d.toString();
      if (text.trim() !== 'demo ready') process.stdout.write(text);
    });
    child.on('exit', (code) => {
      if (!stopping) {
        console.error(`${name} exited (${code}); stopping the stack`);
        void stop(1);
      }
    });
    children.push(child);
    return child;
  };

  // The console's roles: the demo admin (a Global ID user) by upstream group.
  const consoleRoles = JSON.stringify({
    'meridian:admin': { groups: ['global-id:meridian-admins'] },
    'meridian:compliance': { groups: ['global-id:meridian-compliance'] },
  });
  for (const r of REGIONS) {
    const regionUrl = await pg.ensureDatabase(`meridian_${r.region}`);
    run(`broker ${r.region}`, 'dist/apps/broker/main.js', {
      MERIDIAN_REGION: r.region,
      MERIDIAN_ISSUER: r.issuer,
      MERIDIAN_JURISDICTION: r.jurisdiction,
      PORT: String(r.port),
      HOST: '127.0.0.1',
      CONTROL_DATABASE_URL: controlUrl,
      REGION_DATABASE_URL: regionUrl,
      MERIDIAN_KEK: secrets.kek,
      MERIDIAN_LOCATOR_PEPPER: secrets.locatorPepper,
      MERIDIAN_ADMIN_CLIENT_ID: secrets.adminClientId,
      MERIDIAN_ADMIN_CLIENT_SECRET: secrets.adminClientSecret,
      MERIDIAN_CONSOLE_ROLES: process.env.MERIDIAN_CONSOLE_ROLES ?? consoleRoles,
    });
  }

  const demoConfig = {
    idps: DEMO_IDPS.map((i) => ({
      id: i.id,
      displayName: i.displayName,
      port: i.port,
      users: i.users,
      clients: REGIONS.map((r) => ({
        client_id: `meridian-${r.region}`,
        client_secret: secrets.upstream[`${i.id}:${r.region}`],
        redirect_uris: [`${r.issuer}/federation/callback`],
        post_logout_redirect_uris: [`${r.issuer}/federation/logged-out`],
        token_endpoint_auth_method: 'client_secret_basic',
      })),
    })),
    services: SERVICES.map((s) => ({ name: s.name, region: s.region, port: s.port })),
    app: {
      port: APP_PORT,
      issuer: US.issuer,
      clientId: 'demo-app',
      clientSecret: secrets.demoAppSecret,
      scope: 'openid email profile offline_access orders:read',
      // The first is the audience of the authorization request: the app's own region's service.
      services: [SERVICES[1], SERVICES[0]].map((s) => ({
        name: s.name,
        region: s.region,
        audience: s.audience,
        url: `http://127.0.0.1:${s.sidecarPort}`,
      })),
    },
  };
  run('demo', 'dist/apps/demo/main.js', { DEMO_CONFIG: JSON.stringify(demoConfig) });

  try {
    await Promise.all([
      ...REGIONS.map((r) => waitFor(`broker ${r.region}`, `${r.issuer}/readyz`)),
      ...DEMO_IDPS.map((i) =>
        waitFor(`demo IdP ${i.id}`, `http://127.0.0.1:${i.port}/.well-known/openid-configuration`),
      ),
    ]);
    log('brokers and demo IdPs ready; configuring through the admin API …');
    await provision(secrets);
    for (const s of SERVICES) {
      run(`sidecar ${s.name}`, 'dist/apps/sidecar/main.js', {
        PORT: String(s.sidecarPort),
        HOST: '127.0.0.1',
        SIDECAR_UPSTREAM: `http://127.0.0.1:${s.port}`,
        SIDECAR_AUDIENCE: s.audience,
        SIDECAR_TRUST_BUNDLE_URL: `${EU.issuer}/.well-known/meridian/trust-bundle`,
        SIDECAR_REQUIRED_SCOPES: 'orders:read',
        SIDECAR_REGION: s.region,
        SIDECAR_BUNDLE_REFRESH_COOLDOWN_MS: '1000',
      });
    }
    await Promise.all([
      ...SERVICES.map((s) => waitFor(`sidecar ${s.name}`, `http://127.0.0.1:${s.sidecarPort}/readyz`)),
      waitFor('demo app', `${APP_URL}/`),
    ]);
  } catch (err) {
    console.error(`npm start failed: ${err.message}`);
    return stop(1);
  }

  const users = DEMO_IDPS.flatMap((i) =>
    i.users.map(
      (u) =>
        `    ${i.displayName.padEnd(20)} ${u.username.padEnd(7)} ${u.password.padEnd(11)} ${String(
          u.claims.country ?? u.claims.address?.country,
        )}`,
    ),
  );
  console.log(`
Meridian is running (development mode, embedded PostgreSQL under .meridian/), ready in ${((Date.now() - started) / 1000).toFixed(1)} s.

  Open first:  ${APP_URL}/   (the demo app, registered at the us broker)

  console:     ${EU.issuer}/console   (sign in with Global ID as admin / admin-demo)

  region  broker (issuer)          console
${REGIONS.map((r) => `  ${r.region.padEnd(6)}  ${r.issuer.padEnd(23)}  ${r.issuer}/console`).join('\n')}

  demo IdPs:     ${DEMO_IDPS.map((i) => `${i.id} http://127.0.0.1:${i.port}`).join(', ')}
  demo services: ${SERVICES.map((s) => `${s.name} (region ${s.region}) behind its sidecar http://127.0.0.1:${s.sidecarPort}`).join('\n                 ')}
  trust bundle:  ${EU.issuer}/.well-known/meridian/trust-bundle
  admin API:     ${EU.issuer}/admin/openapi.json

  demo users     IdP                  user    password    country
${users.join('\n')}
  (anna, carla: data kept in eu — the us app gets sub + residency only; kenji: no policy for JP,
   refused; admin: console roles meridian:admin + meridian:compliance by upstream group)

  admin client (both regions, client_credentials, resource urn:meridian:admin)
    client_id:     ${secrets.adminClientId}
    client_secret: ${secrets.adminClientSecret}

Ctrl-C stops everything.`);
}

main().catch((err) => {
  console.error(`npm start failed: ${err.message}`);
  process.exit(1);
});
