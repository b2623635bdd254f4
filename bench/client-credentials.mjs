#!/usr/bin/env node
// client_credentials token issuance benchmark: the Meridian broker vs. a bare
// oidc-provider configured the same way (ES256-signed RFC 9068 JWT access
// tokens, client_secret_basic), measured with autocannon on loopback, one
// target after the other. See bench/README.md.
//
// stdout: a markdown table. stderr: progress and errors.
// Also writes bench/results/client-credentials-<ISO timestamp>.json.
import { spawn, execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createRequire } from 'node:module';
import { BENCH_BROKER_ENV } from './lib/broker.mjs';

const require = createRequire(import.meta.url);
const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..');

const AUDIENCE = 'https://api.bench.local';
const BENCH_CLIENT_ID = 'bench-client';
const BENCH_RESOURCE_ID = 'bench-api';
const TARGET_RATIO = 0.8;
const DEFAULT_PG_ADMIN_URL = 'postgres://postgres@127.0.0.1:5432/postgres';

const USAGE = `\
Usage: node bench/client-credentials.mjs [options]

Targets (default: both, one after the other)
  --only bare|broker         run only one target
  --broker-url <url>         use an already running broker (its issuer URL, on 127.0.0.1)
                             instead of starting one; admin credentials from
                             --admin-client-id/--admin-client-secret or env
                             MERIDIAN_ADMIN_CLIENT_ID/MERIDIAN_ADMIN_CLIENT_SECRET
  --broker-pid <pid>         pid whose RSS/CPU to report for --broker-url
                             (default: the process listening on its port, if visible)
  --broker-entry <file>      broker entry point to start (default dist/apps/broker/main.js)
  --broker-port <port>       port for the started broker (default: a free one)
  --region <id>              MERIDIAN_REGION and the resource's region (default eu)
  --control-db <url>         CONTROL_DATABASE_URL for the started broker
  --region-db <url>          REGION_DATABASE_URL for the started broker
                             (default env BENCH_CONTROL_DATABASE_URL/BENCH_REGION_DATABASE_URL;
                             otherwise two fresh databases are created on
                             $BENCH_PG_ADMIN_URL or ${DEFAULT_PG_ADMIN_URL}
                             and dropped at the end)
  --keep-dbs                 do not drop the databases this script created

Load
  --connections <n>          autocannon connections (default 50)
  --duration <s>             measured seconds per run (default 10)
  --warmup <s>               warm-up seconds before each measured run (default 3, 0 = none)
  --rounds <n>               rounds; the table shows the median per metric (default 1)

Output
  --results-dir <dir>        where the JSON goes (default bench/results)
  --check                    exit 2 if broker/bare < ${TARGET_RATIO} or any non-2xx/errors
  -h, --help
`;

// ---------------------------------------------------------------- utilities

class BenchError extends Error {
  constructor(step, message, detail) {
    super(message);
    this.step = step;
    this.detail = detail;
  }
}

const log = (...args) => console.error('[bench]', ...args);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const rand = (bytes = 32) => crypto.randomBytes(bytes).toString('base64url');

function median(values) {
  const v = values.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return null;
  const mid = v.length >> 1;
  return v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
}

function assertLoopback(step, urlString) {
  let url;
  try {
    url = new URL(urlString);
  } catch {
    throw new BenchError(step, `not a URL: ${urlString}`);
  }
  if (url.hostname !== '127.0.0.1') {
    throw new BenchError(
      step,
      `refusing non-loopback target ${urlString}: benchmark targets must be on 127.0.0.1`,
    );
  }
  return url;
}

async function httpRequest(step, url, { method = 'GET', headers = {}, body, timeoutMs = 10_000 } = {}) {
  let res;
  try {
    res = await fetch(url, {
      method,
      headers,
      body,
      signal: AbortSignal.timeout(timeoutMs),
      redirect: 'manual',
    });
  } catch (err) {
    throw new BenchError(
      step,
      `${method} ${url} failed: ${err.cause?.code || err.cause?.message || err.message}`,
    );
  }
  const text = await res.text();
  let json;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json };
}

function basicAuth(id, secret) {
  // RFC 6749 §2.3.1: form-urlencode id and secret before base64.
  const enc = (s) => encodeURIComponent(s).replace(/%20/g, '+');
  return `Basic ${Buffer.from(`${enc(id)}:${enc(secret)}`).toString('base64')}`;
}

function tokenRequest(clientId, clientSecret, params) {
  return {
    headers: {
      authorization: basicAuth(clientId, clientSecret),
      'content-type': 'application/x-www-form-urlencoded',
      accept: 'application/json',
    },
    body: new URLSearchParams(params).toString(),
  };
}

// ------------------------------------------------------------ /proc readers

let clkTck = 100;
try {
  clkTck = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
} catch {
  /* keep 100 */
}

function readMemKiB(pid) {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const get = (k) => {
      const m = status.match(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm'));
      return m ? Number(m[1]) : null;
    };
    return { rssKiB: get('VmRSS'), hwmKiB: get('VmHWM') };
  } catch {
    return { rssKiB: null, hwmKiB: null };
  }
}

function readCpuMs(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // fields[0] is field 3 (state); utime = field 14, stime = field 15.
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / clkTck;
  } catch {
    return null;
  }
}

// Machine-wide CPU time (ms, all cores) from /proc/stat.
function readMachineCpuMs() {
  try {
    const cols = fs
      .readFileSync('/proc/stat', 'utf8')
      .split('\n')[0]
      .trim()
      .split(/\s+/)
      .slice(1, 9)
      .map(Number);
    const [user, nice, system, , , irq, softirq, steal] = cols;
    return { busyMs: ((user + nice + system + irq + softirq + steal) * 1000) / clkTck };
  } catch {
    return null;
  }
}

async function machineBusyPercent(ms) {
  const a = readMachineCpuMs();
  await sleep(ms);
  const b = readMachineCpuMs();
  return a && b ? ((b.busyMs - a.busyMs) / ms) * 100 : null;
}

// The pid listening on 127.0.0.1:<port>, via /proc/net/tcp{,6} and /proc/*/fd.
function findListenerPid(port) {
  const inodes = new Set();
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols.length < 10) continue;
      const localPort = parseInt(cols[1].split(':')[1], 16);
      if (localPort === port && cols[3] === '0A') inodes.add(cols[9]);
    }
  }
  if (inodes.size === 0) return null;
  for (const pid of fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    let fds;
    try {
      fds = fs.readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        const m = fs.readlinkSync(`/proc/${pid}/fd/${fd}`).match(/^socket:\[(\d+)\]$/);
        if (m && inodes.has(m[1])) return Number(pid);
      } catch {
        /* fd closed meanwhile */
      }
    }
  }
  return null;
}

// ------------------------------------------------------- child processes

const cleanups = [];
let logDir;

function getLogDir() {
  logDir ??= fs.mkdtempSync(path.join(os.tmpdir(), 'meridian-bench-'));
  return logDir;
}

function tail(file, lines = 40) {
  try {
    return fs.readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

function startChild(name, args, { env, cwd = ROOT, ipc = false } = {}) {
  const logPath = path.join(getLogDir(), `${name}.log`);
  const fd = fs.openSync(logPath, 'a');
  const child = spawn(process.execPath, args, {
    cwd,
    env,
    stdio: ['ignore', fd, fd, ...(ipc ? ['ipc'] : [])],
  });
  fs.closeSync(fd);
  const state = { child, logPath, exit: null };
  state.exited = new Promise((resolve) => {
    child.once('exit', (code, signal) => {
      state.exit = { code, signal };
      resolve(state.exit);
    });
    child.once('error', (err) => {
      state.exit = { error: err.message };
      resolve(state.exit);
    });
  });
  cleanups.push(async () => {
    if (state.exit) return;
    child.kill('SIGTERM');
    const done = await Promise.race([state.exited, sleep(5000).then(() => null)]);
    if (!done) {
      log(`${name} (pid ${child.pid}) ignored SIGTERM for 5 s; sending SIGKILL`);
      child.kill('SIGKILL');
      await Promise.race([state.exited, sleep(2000)]);
    }
  });
  return state;
}

function describeExit(exit) {
  if (!exit) return 'still running';
  if (exit.error) return `failed to start: ${exit.error}`;
  return exit.signal ? `killed by ${exit.signal}` : `exited with code ${exit.code}`;
}

// ------------------------------------------------------------ bare provider

async function startBare(clientSecret) {
  const step = 'start bare oidc-provider';
  log(`${step} (child process: bench/bare-provider.mjs)`);
  const proc = startChild('bare-provider', [path.join(HERE, 'bare-provider.mjs')], {
    ipc: true,
    env: {
      ...process.env,
      BENCH_CLIENT_ID: BENCH_CLIENT_ID,
      BENCH_CLIENT_SECRET: clientSecret,
      BENCH_AUDIENCE: AUDIENCE,
      BENCH_PORT: '0',
    },
  });
  const ready = await Promise.race([
    new Promise((resolve) => proc.child.on('message', (m) => m?.type === 'ready' && resolve(m))),
    proc.exited.then(() => null),
    sleep(30_000).then(() => 'timeout'),
  ]);
  if (ready === 'timeout' || ready === null) {
    throw new BenchError(
      step,
      ready === 'timeout' ? 'not ready after 30 s' : `bare provider ${describeExit(proc.exit)}`,
      `log ${proc.logPath}:\n${tail(proc.logPath)}`,
    );
  }
  log(`bare oidc-provider ready at ${ready.issuer} (pid ${proc.child.pid})`);
  return { name: 'bare', label: 'bare oidc-provider', issuer: ready.issuer, pid: proc.child.pid, proc };
}

// ------------------------------------------------------------------- broker

async function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

async function prepareDatabases(opts) {
  const control = opts['control-db'] || process.env.BENCH_CONTROL_DATABASE_URL;
  const region = opts['region-db'] || process.env.BENCH_REGION_DATABASE_URL;
  if (control && region) {
    log('using the given control/region databases');
    return { control, region, created: [] };
  }
  if (control || region) {
    throw new BenchError(
      'databases',
      'give both --control-db and --region-db (or BENCH_CONTROL_DATABASE_URL and BENCH_REGION_DATABASE_URL), or neither',
    );
  }
  const step = 'create benchmark databases';
  const adminUrl = process.env.BENCH_PG_ADMIN_URL || DEFAULT_PG_ADMIN_URL;
  let pg;
  try {
    pg = (await import('pg')).default;
  } catch (err) {
    throw new BenchError(step, `cannot load the pg package: ${err.message}`);
  }
  const suffix = crypto.randomBytes(4).toString('hex');
  const names = [`bench_control_${suffix}`, `bench_${opts.region.replace(/-/g, '_')}_${suffix}`];
  const admin = new pg.Client({ connectionString: adminUrl, connectionTimeoutMillis: 5000 });
  try {
    await admin.connect();
  } catch (err) {
    throw new BenchError(
      step,
      `cannot connect to PostgreSQL at ${adminUrl}: ${err.message}`,
      'start it (pg_ctlcluster --skip-systemctl-redirect 15 main start) or pass --control-db/--region-db',
    );
  }
  const created = [];
  const drop = async () => {
    if (opts['keep-dbs']) {
      log(`keeping databases ${created.join(', ')} (--keep-dbs)`);
      return;
    }
    const c = new pg.Client({ connectionString: adminUrl, connectionTimeoutMillis: 5000 });
    try {
      await c.connect();
      for (const name of created) {
        await c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
        log(`dropped database ${name}`);
      }
    } catch (err) {
      log(`WARNING: could not drop databases ${created.join(', ')}: ${err.message}`);
    } finally {
      await c.end().catch(() => {});
    }
  };
  // Registered before the broker starts, so it runs after the broker is stopped.
  cleanups.push(drop);
  try {
    for (const name of names) {
      await admin.query(`CREATE DATABASE "${name}"`);
      created.push(name);
      log(`created database ${name}`);
    }
  } catch (err) {
    throw new BenchError(step, `CREATE DATABASE failed: ${err.message}`);
  } finally {
    await admin.end().catch(() => {});
  }
  const urlFor = (name) => {
    const u = new URL(adminUrl);
    u.pathname = `/${name}`;
    return u.toString();
  };
  return { control: urlFor(names[0]), region: urlFor(names[1]), created };
}

async function waitReady(step, baseUrl, proc, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer yet';
  while (Date.now() < deadline) {
    if (proc?.exit) {
      throw new BenchError(
        step,
        `broker ${describeExit(proc.exit)} before GET /readyz answered 200`,
        `log ${proc.logPath}:\n${tail(proc.logPath)}`,
      );
    }
    try {
      const res = await fetch(new URL('/readyz', baseUrl), { signal: AbortSignal.timeout(2000) });
      const text = await res.text();
      if (res.status === 200) return;
      last = `HTTP ${res.status} ${text.slice(0, 300)}`;
    } catch (err) {
      last = err.cause?.code || err.message;
    }
    await sleep(250);
  }
  throw new BenchError(
    step,
    `GET ${new URL('/readyz', baseUrl)} not 200 after ${timeoutMs / 1000} s (last: ${last})`,
    proc ? `log ${proc.logPath}:\n${tail(proc.logPath)}` : undefined,
  );
}

async function startBroker(opts) {
  const entry = path.resolve(ROOT, opts['broker-entry']);
  if (!fs.existsSync(entry)) {
    throw new BenchError(
      'start broker',
      `${path.relative(ROOT, entry)} not found`,
      'build it first: npm run build',
    );
  }
  const dbs = await prepareDatabases(opts);
  const port = opts['broker-port'] ? Number(opts['broker-port']) : await freePort();
  const issuer = `http://127.0.0.1:${port}`;
  const admin = { clientId: 'bench-admin', clientSecret: rand(32) };
  const env = {
    ...process.env,
    MERIDIAN_REGION: opts.region,
    MERIDIAN_ISSUER: issuer,
    PORT: String(port),
    CONTROL_DATABASE_URL: dbs.control,
    REGION_DATABASE_URL: dbs.region,
    MERIDIAN_KEK: crypto.randomBytes(32).toString('base64'),
    MERIDIAN_ADMIN_CLIENT_ID: admin.clientId,
    MERIDIAN_ADMIN_CLIENT_SECRET: admin.clientSecret,
    // The broker's abuse limits out of reach (every request comes from 127.0.0.1); see bench/lib/broker.mjs.
    ...BENCH_BROKER_ENV,
  };
  log(
    `start broker: node ${entry.startsWith(`${ROOT}/`) ? path.relative(ROOT, entry) : entry} (MERIDIAN_ISSUER=${issuer})`,
  );
  const proc = startChild('broker', [entry], { env });
  const t0 = Date.now();
  await waitReady('start broker', issuer, proc);
  log(`broker ready after ${((Date.now() - t0) / 1000).toFixed(1)} s (pid ${proc.child.pid})`);
  return { name: 'broker', label: 'Meridian broker', issuer, pid: proc.child.pid, proc, admin };
}

async function attachBroker(opts) {
  const step = 'use running broker';
  const url = assertLoopback(step, opts['broker-url']);
  const issuer = opts['broker-url'].replace(/\/+$/, '');
  const clientId = opts['admin-client-id'] || process.env.MERIDIAN_ADMIN_CLIENT_ID;
  const clientSecret = opts['admin-client-secret'] || process.env.MERIDIAN_ADMIN_CLIENT_SECRET;
  if (!clientId || !clientSecret) {
    throw new BenchError(
      step,
      'admin credentials missing: pass --admin-client-id/--admin-client-secret or set MERIDIAN_ADMIN_CLIENT_ID/MERIDIAN_ADMIN_CLIENT_SECRET',
    );
  }
  await waitReady(step, issuer, null, 10_000);
  const port = Number(url.port || 80);
  const pid = opts['broker-pid'] ? Number(opts['broker-pid']) : findListenerPid(port);
  if (!pid)
    log(
      `WARNING: no pid found listening on port ${port}; RSS/CPU of the broker will not be reported (use --broker-pid)`,
    );
  else log(`broker at ${issuer} is pid ${pid}`);
  return {
    name: 'broker',
    label: 'Meridian broker',
    issuer,
    pid,
    proc: null,
    admin: { clientId, clientSecret },
  };
}

async function discover(target) {
  const step = `${target.name}: discovery`;
  const url = `${target.issuer}/.well-known/openid-configuration`;
  const res = await httpRequest(step, url);
  if (res.status !== 200 || !res.json) {
    throw new BenchError(step, `GET ${url} → HTTP ${res.status}`, res.text.slice(0, 1000));
  }
  const { issuer, token_endpoint: tokenEndpoint, jwks_uri: jwksUri } = res.json;
  if (issuer !== target.issuer) {
    log(`WARNING: ${target.name} discovery issuer ${issuer} differs from ${target.issuer}`);
  }
  if (!tokenEndpoint || !jwksUri) {
    throw new BenchError(step, 'discovery lacks token_endpoint or jwks_uri', res.text.slice(0, 1000));
  }
  assertLoopback(step, tokenEndpoint);
  assertLoopback(step, jwksUri);
  Object.assign(target, { discoveredIssuer: issuer, tokenEndpoint, jwksUri });
}

async function adminSetup(target, benchSecret, region) {
  const { clientId, clientSecret } = target.admin;
  let step = 'broker: admin token';
  const req = tokenRequest(clientId, clientSecret, {
    grant_type: 'client_credentials',
    resource: 'urn:meridian:admin',
    scope: 'meridian:admin',
  });
  let res = await httpRequest(step, target.tokenEndpoint, { method: 'POST', ...req });
  if (res.status !== 200 || typeof res.json?.access_token !== 'string') {
    throw new BenchError(
      step,
      `POST ${target.tokenEndpoint} as ${clientId} (resource=urn:meridian:admin, scope=meridian:admin) → HTTP ${res.status}`,
      res.text.slice(0, 2000),
    );
  }
  if (res.json.scope !== undefined && !String(res.json.scope).split(' ').includes('meridian:admin')) {
    log(`WARNING: admin token granted scope "${res.json.scope}" (asked meridian:admin)`);
  }
  const bearer = `Bearer ${res.json.access_token}`;
  log(`admin token obtained (${clientId})`);

  const put = async (pathname, body) => {
    step = `broker: PUT ${pathname}`;
    const url = new URL(pathname, `${target.issuer}/`).toString();
    const r = await httpRequest(step, url, {
      method: 'PUT',
      headers: { authorization: bearer, 'content-type': 'application/json', accept: 'application/json' },
      body: JSON.stringify(body),
    });
    if (r.status < 200 || r.status > 299) {
      const hint =
        r.status === 401
          ? ' (admin token not accepted)'
          : r.status === 403
            ? ' (admin token lacks meridian:admin?)'
            : r.status === 400
              ? ' (body rejected)'
              : '';
      throw new BenchError(
        step,
        `PUT ${url} → HTTP ${r.status}${hint}`,
        `request: ${JSON.stringify(redact(body))}\nresponse: ${r.text.slice(0, 2000)}`,
      );
    }
    log(`PUT ${pathname} → ${r.status}`);
    return r;
  };

  await put(`/admin/resources/${BENCH_RESOURCE_ID}`, {
    audience: AUDIENCE,
    scopes: ['read', 'write'],
    region,
  });
  await put(`/admin/clients/${BENCH_CLIENT_ID}`, {
    client_secret: benchSecret,
    redirect_uris: [],
    grant_types: ['client_credentials'],
    response_types: [],
    token_endpoint_auth_method: 'client_secret_basic',
    scope: 'read write',
    resources: [AUDIENCE],
  });
}

function redact(body) {
  return body.client_secret ? { ...body, client_secret: '<redacted>' } : body;
}

// ---------------------------------------------------- token verification

async function verifyToken(target, req) {
  const step = `${target.name}: verify token response`;
  const { decodeProtectedHeader, decodeJwt, createRemoteJWKSet, jwtVerify } = await import('jose');
  const res = await httpRequest(step, target.tokenEndpoint, {
    method: 'POST',
    headers: req.headers,
    body: req.body,
  });
  const fail = (msg) => {
    throw new BenchError(step, msg, `HTTP ${res.status}: ${res.text.slice(0, 2000)}`);
  };
  if (res.status !== 200)
    fail(`token request → HTTP ${res.status} (a benchmark of error responses is worthless)`);
  const at = res.json?.access_token;
  if (typeof at !== 'string') fail('no access_token in the response');
  if (at.split('.').length !== 3) fail('access_token is not a JWS compact JWT');
  let header;
  let claims;
  try {
    header = decodeProtectedHeader(at);
    claims = decodeJwt(at);
  } catch (err) {
    fail(`access_token does not decode as a JWT: ${err.message}`);
  }
  if (header.alg !== 'ES256')
    fail(`access_token header alg is ${JSON.stringify(header.alg)}, expected "ES256"`);
  const typ = String(header.typ ?? '').toLowerCase();
  if (typ !== 'at+jwt' && typ !== 'application/at+jwt') {
    fail(`access_token header typ is ${JSON.stringify(header.typ)}, expected "at+jwt" (RFC 9068)`);
  }
  if (String(res.json.token_type).toLowerCase() !== 'bearer') {
    fail(`token_type is ${JSON.stringify(res.json.token_type)}, expected Bearer`);
  }
  // Signature, issuer, audience against the target's own jwks_uri.
  try {
    await jwtVerify(at, createRemoteJWKSet(new URL(target.jwksUri)), {
      algorithms: ['ES256'],
      typ: 'at+jwt',
      issuer: target.discoveredIssuer,
      audience: AUDIENCE,
    });
  } catch (err) {
    fail(`access_token does not verify against ${target.jwksUri}: ${err.code || ''} ${err.message}`);
  }
  const warnings = [];
  for (const c of ['iss', 'sub', 'aud', 'exp', 'iat', 'jti', 'client_id', 'scope']) {
    if (claims[c] === undefined) warnings.push(`claim ${c} missing`);
  }
  if (claims.client_id !== undefined && claims.client_id !== BENCH_CLIENT_ID) {
    warnings.push(`client_id is ${JSON.stringify(claims.client_id)}`);
  }
  if (typeof claims.scope === 'string' && !claims.scope.split(' ').includes('read')) {
    warnings.push(`scope is ${JSON.stringify(claims.scope)}, asked "read"`);
  }
  if (target.name === 'broker' && !claims.residency)
    warnings.push('claim residency missing (CONTRACT.md: always present)');
  for (const w of warnings) log(`WARNING: ${target.name} token: ${w}`);
  log(
    `${target.name}: token OK (typ ${header.typ}, alg ${header.alg}, kid ${header.kid}, ` +
      `aud ${JSON.stringify(claims.aud)}, scope ${JSON.stringify(claims.scope)}, ${at.length} chars)`,
  );
  return {
    header,
    claims: Object.fromEntries(Object.entries(claims).filter(([k]) => k !== 'jti')),
    tokenLength: at.length,
    responseKeys: Object.keys(res.json),
    warnings,
  };
}

// --------------------------------------------------------------- load runs

const autocannon = require('autocannon');

function cannon(url, req, connections, duration) {
  return autocannon({
    url,
    method: 'POST',
    headers: req.headers,
    body: req.body,
    connections,
    pipelining: 1,
    duration,
    timeout: 10,
  });
}

async function measure(target, req, opts, round) {
  const connections = Number(opts.connections);
  const duration = Number(opts.duration);
  const warmup = Number(opts.warmup);
  let warmupNon2xx = 0;
  if (warmup > 0) {
    log(`round ${round}: ${target.name} warm-up ${warmup} s`);
    const w = await cannon(target.tokenEndpoint, req, connections, warmup);
    warmupNon2xx = w.non2xx + w.errors + w.timeouts;
    if (warmupNon2xx)
      log(
        `WARNING: ${target.name} warm-up had ${w.non2xx} non-2xx, ${w.errors} errors, ${w.timeouts} timeouts`,
      );
  }
  log(`round ${round}: ${target.name} measured ${duration} s, ${connections} connections`);
  const cpu0 = target.pid ? readCpuMs(target.pid) : null;
  const self0 = process.cpuUsage();
  const machine0 = readMachineCpuMs();
  const r = await cannon(target.tokenEndpoint, req, connections, duration);
  const selfCpu = process.cpuUsage(self0);
  const machine1 = readMachineCpuMs();
  const cpu1 = target.pid ? readCpuMs(target.pid) : null;
  const mem = target.pid ? readMemKiB(target.pid) : { rssKiB: null, hwmKiB: null };
  const elapsed = r.duration; // seconds
  const serverCpuMs = cpu0 !== null && cpu1 !== null ? cpu1 - cpu0 : null;
  const completed = r.requests.total;
  const out = {
    round,
    requestsPerSecMean: r.requests.mean,
    requestsPerSecStddev: r.requests.stddev,
    ok2xxPerSec: r['2xx'] / elapsed,
    latencyMs: {
      p50: r.latency.p50,
      p90: r.latency.p90,
      p99: r.latency.p99,
      mean: r.latency.mean,
      max: r.latency.max,
    },
    requests: completed,
    non2xx: r.non2xx,
    errors: r.errors,
    timeouts: r.timeouts,
    statusCodes: Object.fromEntries(Object.entries(r.statusCodeStats).map(([k, v]) => [k, v.count])),
    durationSec: elapsed,
    warmupNon2xxOrErrors: warmupNon2xx,
    serverRssKiB: mem.rssKiB,
    serverPeakRssKiB: mem.hwmKiB,
    serverCpuMs,
    serverCpuPercent: serverCpuMs !== null ? serverCpuMs / 10 / elapsed : null,
    serverCpuUsPerRequest: serverCpuMs !== null && completed ? (serverCpuMs * 1000) / completed : null,
    loadgenCpuPercent: (selfCpu.user + selfCpu.system) / 1e4 / elapsed,
    machineBusyPercent: machine0 && machine1 ? (machine1.busyMs - machine0.busyMs) / 10 / elapsed : null,
  };
  // CPU used by everything else on the machine (other builds, tests...), in % of one core.
  out.otherProcessesCpuPercent =
    out.machineBusyPercent !== null && out.serverCpuPercent !== null
      ? Math.max(0, out.machineBusyPercent - out.serverCpuPercent - out.loadgenCpuPercent)
      : null;
  log(
    `  ${target.name}: ${out.requestsPerSecMean.toFixed(0)} req/s, p50 ${out.latencyMs.p50} ms, p99 ${out.latencyMs.p99} ms, ` +
      `non-2xx ${out.non2xx}, errors ${out.errors}, RSS ${fmtMiB(out.serverRssKiB)} MiB, ` +
      `server CPU ${fmt(out.serverCpuPercent, 0)}%, load generator CPU ${fmt(out.loadgenCpuPercent, 0)}%, ` +
      `other processes ${fmt(out.otherProcessesCpuPercent, 0)}%`,
  );
  if (out.otherProcessesCpuPercent > 15) {
    log(
      `WARNING: other processes used ${out.otherProcessesCpuPercent.toFixed(0)}% of a core during this run: ` +
        'the machine was not quiet, the figures are noisy',
    );
  }
  if (out.non2xx)
    log(`WARNING: ${target.name}: ${out.non2xx} non-2xx responses: ${JSON.stringify(out.statusCodes)}`);
  return out;
}

function summarize(rounds) {
  const m = (f) => median(rounds.map(f));
  return {
    requestsPerSecMean: m((r) => r.requestsPerSecMean),
    ok2xxPerSec: m((r) => r.ok2xxPerSec),
    latencyP50Ms: m((r) => r.latencyMs.p50),
    latencyP99Ms: m((r) => r.latencyMs.p99),
    non2xxTotal: rounds.reduce((a, r) => a + r.non2xx, 0),
    errorsTotal: rounds.reduce((a, r) => a + r.errors + r.timeouts, 0),
    serverRssKiB: m((r) => r.serverRssKiB),
    serverPeakRssKiB:
      Math.max(...rounds.map((r) => r.serverPeakRssKiB ?? -1)) >= 0
        ? Math.max(...rounds.map((r) => r.serverPeakRssKiB ?? -1))
        : null,
    serverCpuUsPerRequest: m((r) => r.serverCpuUsPerRequest),
    serverCpuPercent: m((r) => r.serverCpuPercent),
    loadgenCpuPercent: m((r) => r.loadgenCpuPercent),
    otherProcessesCpuPercent: m((r) => r.otherProcessesCpuPercent),
  };
}

// ------------------------------------------------------------------ output

const fmt = (v, digits = 0) => (typeof v === 'number' && Number.isFinite(v) ? v.toFixed(digits) : 'n/a');
const fmtMiB = (kib) => (typeof kib === 'number' ? (kib / 1024).toFixed(1) : 'n/a');

function markdown(report) {
  const lines = [];
  const p = report.params;
  lines.push(`## client_credentials token issuance (ES256 JWT access tokens, client_secret_basic)`);
  lines.push('');
  lines.push(
    `${report.date} · Node ${report.environment.node} · ${report.environment.cpus}× ${report.environment.cpuModel} · ` +
      `autocannon ${p.connections} connections, pipelining 1, warm-up ${p.warmupSec} s, ${p.durationSec} s measured` +
      `${p.rounds > 1 ? `, median of ${p.rounds} rounds` : ''}`,
  );
  lines.push('');
  lines.push(
    '| target | req/s (mean) | p50 ms | p99 ms | non-2xx | errors | server RSS MiB | server CPU µs/req | server CPU % | load gen CPU % | other procs CPU % |',
  );
  lines.push('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const t of Object.values(report.targets)) {
    const s = t.summary;
    lines.push(
      `| ${t.label} | ${fmt(s.requestsPerSecMean)} | ${fmt(s.latencyP50Ms)} | ${fmt(s.latencyP99Ms)} | ${s.non2xxTotal} | ${s.errorsTotal} | ` +
        `${fmtMiB(s.serverRssKiB)} | ${fmt(s.serverCpuUsPerRequest)} | ${fmt(s.serverCpuPercent)} | ${fmt(s.loadgenCpuPercent)} | ${fmt(s.otherProcessesCpuPercent)} |`,
    );
  }
  lines.push('');
  if (report.ratio !== null) {
    lines.push(
      `**broker / bare = ${report.ratio.toFixed(2)}×** (target ≥ ${TARGET_RATIO}×: ${report.pass ? 'met' : 'NOT met'})` +
        (report.cpuRatio !== null
          ? ` · server CPU per request broker / bare = ${report.cpuRatio.toFixed(2)}×`
          : ''),
    );
    lines.push('');
  }
  const invalid = Object.values(report.targets).filter((t) => t.summary.non2xxTotal || t.summary.errorsTotal);
  if (invalid.length) {
    lines.push(
      `⚠ ${invalid.map((t) => t.label).join(', ')}: non-2xx or socket errors during the measured run — req/s counts them too; see the JSON.`,
    );
    lines.push('');
  }
  lines.push(`JSON: ${report.jsonPath}`);
  return lines.join('\n');
}

// -------------------------------------------------------------------- main

async function main() {
  const { values: opts } = parseArgs({
    options: {
      only: { type: 'string' },
      'broker-url': { type: 'string' },
      'broker-pid': { type: 'string' },
      'broker-entry': { type: 'string', default: 'dist/apps/broker/main.js' },
      'broker-port': { type: 'string' },
      'admin-client-id': { type: 'string' },
      'admin-client-secret': { type: 'string' },
      region: { type: 'string', default: 'eu' },
      'control-db': { type: 'string' },
      'region-db': { type: 'string' },
      'keep-dbs': { type: 'boolean', default: false },
      connections: { type: 'string', default: '50' },
      duration: { type: 'string', default: '10' },
      warmup: { type: 'string', default: '3' },
      rounds: { type: 'string', default: '1' },
      'results-dir': { type: 'string', default: path.join(HERE, 'results') },
      check: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  });
  if (opts.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (opts.only && !['bare', 'broker'].includes(opts.only))
    throw new BenchError('arguments', '--only must be bare or broker');
  for (const k of ['connections', 'duration', 'rounds']) {
    if (!(Number.isInteger(Number(opts[k])) && Number(opts[k]) > 0))
      throw new BenchError('arguments', `--${k} must be a positive integer`);
  }
  if (!(Number.isInteger(Number(opts.warmup)) && Number(opts.warmup) >= 0))
    throw new BenchError('arguments', '--warmup must be an integer ≥ 0');
  if (Number(opts.duration) > 600 || Number(opts.warmup) > 600 || Number(opts.rounds) > 50) {
    throw new BenchError('arguments', 'bounded loops: --duration/--warmup ≤ 600 s, --rounds ≤ 50');
  }
  if (!/^[a-z0-9][a-z0-9-]*$/.test(opts.region))
    throw new BenchError('arguments', '--region must match [a-z0-9-]+');
  if (opts['broker-url'] && opts['broker-port'])
    throw new BenchError('arguments', '--broker-url and --broker-port exclude each other');

  const runBare = opts.only !== 'broker';
  const runBroker = opts.only !== 'bare';
  const rounds = Number(opts.rounds);

  // One secret and one request for both targets: byte-identical headers and body.
  const benchSecret = rand(32); // 43 chars
  const req = tokenRequest(BENCH_CLIENT_ID, benchSecret, {
    grant_type: 'client_credentials',
    resource: AUDIENCE,
    scope: 'read',
  });

  const quiet = await machineBusyPercent(1000);
  if (quiet !== null) {
    log(`machine CPU in use before start: ${quiet.toFixed(0)}% of one core (${os.cpus().length} cores)`);
    if (quiet > 20)
      log('WARNING: the machine is busy with other work; results will be noisy (compare CPU µs/req too)');
  }

  const targets = [];
  if (runBare) {
    const bare = await startBare(benchSecret);
    await discover(bare);
    targets.push(bare);
  }
  if (runBroker) {
    const broker = opts['broker-url'] ? await attachBroker(opts) : await startBroker(opts);
    await discover(broker);
    await adminSetup(broker, benchSecret, opts.region);
    targets.push(broker);
  }
  for (const t of targets) t.verification = await verifyToken(t, req);
  for (const t of targets) {
    t.idleMem = t.pid ? readMemKiB(t.pid) : null;
    t.rounds = [];
  }

  for (let round = 1; round <= rounds; round++) {
    // Alternate the order between rounds so neither target always goes first.
    const order = round % 2 ? targets : [...targets].reverse();
    for (const t of order) t.rounds.push(await measure(t, req, opts, round));
  }

  const date = new Date().toISOString();
  const report = {
    date,
    benchmark: 'client-credentials',
    params: {
      connections: Number(opts.connections),
      durationSec: Number(opts.duration),
      warmupSec: Number(opts.warmup),
      rounds,
      pipelining: 1,
      requestBody: req.body,
      audience: AUDIENCE,
      clientId: BENCH_CLIENT_ID,
      tokenEndpointAuthMethod: 'client_secret_basic',
    },
    environment: {
      node: process.version,
      platform: `${os.platform()} ${os.release()}`,
      cpus: os.cpus().length,
      cpuModel: os.cpus()[0]?.model?.trim() ?? 'unknown',
      totalMemMiB: Math.round(os.totalmem() / 2 ** 20),
      loadavgAtEnd: os.loadavg(),
      busyPercentBeforeStart: quiet,
      oidcProvider: require('oidc-provider/package.json').version,
      jose: require('jose/package.json').version,
      autocannon: require('autocannon/package.json').version,
    },
    targets: {},
    targetRatio: TARGET_RATIO,
    ratio: null,
    cpuRatio: null,
    pass: null,
  };
  for (const t of targets) {
    report.targets[t.name] = {
      label: t.label,
      issuer: t.discoveredIssuer,
      tokenEndpoint: t.tokenEndpoint,
      pid: t.pid,
      startedByBenchmark: Boolean(t.proc),
      idleRssKiB: t.idleMem?.rssKiB ?? null,
      verification: t.verification,
      summary: summarize(t.rounds),
      rounds: t.rounds,
    };
  }
  const b = report.targets.broker?.summary;
  const a = report.targets.bare?.summary;
  if (a && b && a.requestsPerSecMean) {
    report.ratio = b.requestsPerSecMean / a.requestsPerSecMean;
    report.pass = report.ratio >= TARGET_RATIO;
    if (a.serverCpuUsPerRequest && b.serverCpuUsPerRequest)
      report.cpuRatio = b.serverCpuUsPerRequest / a.serverCpuUsPerRequest;
  }

  fs.mkdirSync(opts['results-dir'], { recursive: true });
  const jsonPath = path.join(
    opts['results-dir'],
    `client-credentials-${date.replace(/:/g, '-').replace(/\.\d+Z$/, 'Z')}.json`,
  );
  report.jsonPath = path.relative(process.cwd(), jsonPath) || jsonPath;
  fs.writeFileSync(jsonPath, `${JSON.stringify(report, null, 2)}\n`);
  process.stdout.write(`${markdown(report)}\n`);

  if (opts.check) {
    const dirty = Object.values(report.targets).some((t) => t.summary.non2xxTotal || t.summary.errorsTotal);
    if (dirty || report.pass === false) return 2;
  }
  return 0;
}

let cleaningUp = null;
async function cleanup() {
  cleaningUp ??= (async () => {
    for (const fn of cleanups.reverse()) {
      try {
        await fn();
      } catch (err) {
        log(`cleanup: ${err.message}`);
      }
    }
  })();
  return cleaningUp;
}

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.once(sig, async () => {
    log(`${sig}: stopping servers and cleaning up`);
    await cleanup();
    if (logDir) console.error(`[bench] server logs kept in ${logDir}`);
    process.exit(130);
  });
}

let code = 1;
try {
  code = await main();
} catch (err) {
  if (err instanceof BenchError) {
    console.error(`\n[bench] FAILED at step "${err.step}": ${err.message}`);
    if (err.detail) console.error(err.detail.replace(/^/gm, '    '));
  } else {
    console.error('\n[bench] FAILED:', err);
  }
  code = 1;
} finally {
  await cleanup();
  if (code === 1 && logDir) console.error(`[bench] server logs kept in ${logDir}`);
  else if (logDir) fs.rmSync(logDir, { recursive: true, force: true });
}
process.exit(code);
