// The Meridian broker and the bare oidc-provider as benchmark targets: started from the build
// (dist/) on fresh databases, configured through the admin API exactly as an operator would.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import {
  BENCH_DIR,
  BenchError,
  ROOT,
  createDatabase,
  describeExit,
  formRequest,
  freePort,
  http,
  log,
  rand,
  sleep,
  startNode,
  tail,
  waitHttp,
} from './common.mjs';

export const AUDIENCE = 'https://api.bench.local';
export const OPAQUE_AUDIENCE = 'https://opaque.bench.local';
export const BENCH_CLIENT_ID = 'bench-client';
export const BROKER_MAIN = path.join(ROOT, 'dist/apps/broker/main.js');
export const SIDECAR_MAIN = path.join(ROOT, 'dist/apps/sidecar/main.js');

/**
 * The broker's abuse limits (per client and per source address: every benchmark request comes
 * from 127.0.0.1) raised out of reach: the limiter still does its bookkeeping on every request,
 * it just never refuses one. Load shedding keeps its defaults (it is part of what is measured).
 */
export const BENCH_BROKER_ENV = Object.fromEntries(
  [
    'TOKEN_CLIENT',
    'TOKEN_SOURCE',
    'AUTHORIZATION_CLIENT',
    'AUTHORIZATION_SOURCE',
    'LOGIN_SOURCE',
    'ADMIN_CLIENT',
    'ADMIN_SOURCE',
  ].map((k) => [`MERIDIAN_RATE_LIMIT_${k}`, '100000000/1']),
);
// Every client of growth_clients' largest point fits in the client cache (about 6 KB of memory
// each; the default, 20,000, suits the chart's 512 Mi limit).
BENCH_BROKER_ENV.MERIDIAN_CLIENT_CACHE_SIZE = '100000';

export function assertBuilt(what = BROKER_MAIN) {
  if (!fs.existsSync(what))
    throw new BenchError('build', `${path.relative(ROOT, what)} not found`, 'build first: npm run build');
}

/** Warns when a source file is newer than the build: the figures would be of older code. */
export function staleBuildWarning() {
  try {
    const built = fs.statSync(BROKER_MAIN).mtimeMs;
    let newest = 0;
    let newestFile = '';
    const walk = (dir) => {
      for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
        const p = path.join(dir, e.name);
        if (e.isDirectory()) walk(p);
        else if (e.name.endsWith('.ts') && !e.name.endsWith('.spec.ts')) {
          const m = fs.statSync(p).mtimeMs;
          if (m > newest) [newest, newestFile] = [m, p];
        }
      }
    };
    walk(path.join(ROOT, 'apps'));
    walk(path.join(ROOT, 'libs'));
    if (newest > built)
      return `${path.relative(ROOT, newestFile)} is newer than dist/ (run npm run build, or pass --build)`;
  } catch {
    /* informative only */
  }
  return null;
}

/**
 * Starts `node dist/apps/broker/main.js` for `region` on two fresh databases (or the given ones).
 * `nodeArgs` go before the entry point (e.g. --cpu-prof).
 */
export async function startBroker(label, o = {}) {
  const region = o.region ?? 'eu';
  const stepName = `${label}: start broker`;
  assertBuilt();
  const control = o.controlDb ?? (await createDatabase(`${label}_control`));
  const regionDb = o.regionDb ?? (await createDatabase(`${label}_${region}`));
  const port = await freePort();
  const issuer = `http://127.0.0.1:${port}`;
  const admin = { clientId: 'bench-admin', clientSecret: rand(32) };
  const env = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    NODE_ENV: 'development',
    MERIDIAN_REGION: region,
    MERIDIAN_ISSUER: issuer,
    PORT: String(port),
    HOST: '127.0.0.1',
    CONTROL_DATABASE_URL: control.url,
    REGION_DATABASE_URL: regionDb.url,
    MERIDIAN_KEK: crypto.randomBytes(32).toString('base64'),
    MERIDIAN_ADMIN_CLIENT_ID: admin.clientId,
    MERIDIAN_ADMIN_CLIENT_SECRET: admin.clientSecret,
    MERIDIAN_JURISDICTION: region === 'us' ? 'US' : 'EU',
    LOG_LEVEL: 'info',
    ...BENCH_BROKER_ENV,
    ...o.env,
  };
  const t0 = Date.now();
  const proc = startNode(`${label}-broker`, [...(o.nodeArgs ?? []), BROKER_MAIN], { env });
  await waitHttp(stepName, `${issuer}/readyz`, proc);
  log(
    `${label}: broker ${region} ready at ${issuer} after ${((Date.now() - t0) / 1000).toFixed(1)} s (pid ${proc.pid})`,
  );
  const broker = { label, region, issuer, url: issuer, pid: proc.pid, proc, admin, env, control, regionDb };
  broker.tokenEndpoint = `${issuer}/token`;
  return broker;
}

/** An admin token (client_credentials for urn:meridian:admin). */
export async function adminToken(broker, scope = 'meridian:admin meridian:compliance') {
  const stepName = `${broker.label}: admin token`;
  const res = await http(
    stepName,
    broker.tokenEndpoint,
    formRequest(broker.admin.clientId, broker.admin.clientSecret, {
      grant_type: 'client_credentials',
      resource: 'urn:meridian:admin',
      scope,
    }),
  );
  if (res.status !== 200 || typeof res.json?.access_token !== 'string')
    throw new BenchError(
      stepName,
      `POST ${broker.tokenEndpoint} (admin client) → HTTP ${res.status}`,
      res.text.slice(0, 2000),
    );
  return res.json.access_token;
}

/** PUT on the admin API; any non-2xx stops the run naming the call. */
export async function adminPut(broker, token, pathname, body) {
  const stepName = `${broker.label}: PUT ${pathname}`;
  const res = await http(stepName, `${broker.issuer}${pathname}`, {
    method: 'PUT',
    headers: {
      authorization: `Bearer ${token}`,
      'content-type': 'application/json',
      accept: 'application/json',
    },
    body: JSON.stringify(body),
  });
  if (res.status < 200 || res.status > 299) {
    const shown = body?.client_secret ? { ...body, client_secret: '<redacted>' } : body;
    throw new BenchError(
      stepName,
      `HTTP ${res.status}`,
      `request: ${JSON.stringify(shown).slice(0, 1000)}\nresponse: ${res.text.slice(0, 2000)}`,
    );
  }
  return res.json;
}

/** The bench resource and a client_credentials client for it (client_secret_basic), as in CONTRACT.md. */
export async function registerBenchClient(broker, o = {}) {
  const token = o.token ?? (await adminToken(broker));
  await adminPut(broker, token, '/admin/resources/bench-api', {
    audience: AUDIENCE,
    scopes: ['read', 'write'],
    region: broker.region,
    accessTokenTtlSeconds: 3600,
  });
  const secret = o.secret ?? rand(32);
  await adminPut(broker, token, `/admin/clients/${o.clientId ?? BENCH_CLIENT_ID}`, clientBody(secret));
  return { clientId: o.clientId ?? BENCH_CLIENT_ID, clientSecret: secret, token };
}

export function clientBody(secret) {
  return {
    client_secret: secret,
    redirect_uris: [],
    grant_types: ['client_credentials'],
    response_types: [],
    token_endpoint_auth_method: 'client_secret_basic',
    scope: 'read write',
    resources: [AUDIENCE],
  };
}

/** The client_credentials request every token scenario sends (byte-identical to both targets). */
export function tokenRequest(client, resource = AUDIENCE) {
  return formRequest(client.clientId, client.clientSecret, {
    grant_type: 'client_credentials',
    resource,
    scope: 'read',
  });
}

/** Fetches one token and checks it is what the benchmark claims to measure. */
export async function checkedToken(target, client, { resource = AUDIENCE, format = 'jwt' } = {}) {
  const stepName = `${target.label}: verify token response`;
  const { decodeProtectedHeader, decodeJwt, createRemoteJWKSet, jwtVerify } = await import('jose');
  const res = await http(stepName, target.tokenEndpoint, tokenRequest(client, resource));
  const fail = (msg) => {
    throw new BenchError(stepName, msg, `HTTP ${res.status}: ${res.text.slice(0, 2000)}`);
  };
  if (res.status !== 200)
    fail(`token request → HTTP ${res.status} (a benchmark of error responses is worthless)`);
  const at = res.json?.access_token;
  if (typeof at !== 'string') fail('no access_token in the response');
  if (format === 'opaque') {
    if (at.split('.').length === 3) fail('expected an opaque access token, got a JWT');
    return { token: at, format: 'opaque', length: at.length };
  }
  if (at.split('.').length !== 3) fail('access_token is not a JWS compact JWT');
  const header = decodeProtectedHeader(at);
  const claims = decodeJwt(at);
  if (header.alg !== 'ES256') fail(`access_token alg is ${JSON.stringify(header.alg)}, expected ES256`);
  if (!['at+jwt', 'application/at+jwt'].includes(String(header.typ).toLowerCase()))
    fail(`access_token typ is ${JSON.stringify(header.typ)}, expected at+jwt (RFC 9068)`);
  try {
    await jwtVerify(at, createRemoteJWKSet(new URL(`${target.issuer}/jwks`)), {
      algorithms: ['ES256'],
      typ: 'at+jwt',
      issuer: target.issuer,
      audience: resource,
    });
  } catch (err) {
    fail(`access_token does not verify against ${target.issuer}/jwks: ${err.code ?? ''} ${err.message}`);
  }
  return {
    token: at,
    format: 'jwt',
    header,
    claimNames: Object.keys(claims).sort(),
    residency: claims.residency ?? null,
    length: at.length,
  };
}

/** bench/bare-provider.mjs in its own process: the peer every token scenario is compared with. */
export async function startBare(label, client, nodeArgs = []) {
  const stepName = `${label}: start bare oidc-provider`;
  const proc = startNode(`${label}-bare-provider`, [...nodeArgs, path.join(BENCH_DIR, 'bare-provider.mjs')], {
    ipc: true,
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      BENCH_CLIENT_ID: client.clientId,
      BENCH_CLIENT_SECRET: client.clientSecret,
      BENCH_AUDIENCE: AUDIENCE,
      BENCH_OPAQUE_AUDIENCE: OPAQUE_AUDIENCE,
      BENCH_PORT: '0',
    },
  });
  const ready = await Promise.race([
    new Promise((resolve) => proc.child.on('message', (m) => m?.type === 'ready' && resolve(m))),
    proc.exited.then(() => null),
    sleep(30_000).then(() => 'timeout'),
  ]);
  if (ready === 'timeout' || ready === null)
    throw new BenchError(
      stepName,
      ready === 'timeout' ? 'not ready after 30 s' : `bare provider ${describeExit(proc.exit)}`,
      `log ${proc.logPath}:\n${tail(proc.logPath)}`,
    );
  log(`${label}: bare oidc-provider ready at ${ready.issuer} (pid ${proc.pid})`);
  return {
    label: `${label} bare`,
    issuer: ready.issuer,
    url: ready.issuer,
    tokenEndpoint: `${ready.issuer}/token`,
    pid: proc.pid,
    proc,
  };
}
