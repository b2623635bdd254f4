#!/usr/bin/env node
// Auth sidecar benchmark: a trivial node:http upstream called directly vs. through the sidecar
// (dist/apps/sidecar/main.js) with a valid broker-issued token (warm verifier cache), autocannon
// on loopback, one target after the other. Target: sidecar >= 0.5x direct requests/s.
//
// stdout: a markdown table. stderr: progress. JSON: bench/results/sidecar-<timestamp>.json.
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
const autocannon = require('autocannon');
const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..');
const AUDIENCE = 'https://orders.bench.local';
const TARGET_RATIO = 0.5;
const DEFAULT_PG_ADMIN_URL = 'postgres://postgres@127.0.0.1:5432/postgres';

const USAGE = `\
Usage: node bench/sidecar.mjs [options]     (build first: npm run build)

  --connections <n>   autocannon connections (default 50)
  --duration <s>      measured seconds per run (default 10)
  --warmup <s>        warm-up seconds before each run (default 3)
  --rounds <n>        rounds, order alternating; the table shows medians (default 1)
  --path <p>          request path (default /orders/42)
  --upstream-work-us <n>  CPU the upstream burns per request, in µs (default 0: trivial upstream);
                      e.g. 200 for a service that does some work
  --no-bare           skip the third target, a bare node:http reverse proxy without any auth
                      (the ceiling for any node:http proxy on this machine)
  --results-dir <d>   where the JSON goes (default bench/results)
  --check             exit 2 if sidecar/direct < ${TARGET_RATIO} or any non-2xx/errors
  -h, --help

Databases for the broker: two fresh ones on $BENCH_PG_ADMIN_URL (default ${DEFAULT_PG_ADMIN_URL}),
dropped at the end. The broker only issues the token and serves the trust bundle; it is stopped
before the load starts (the sidecar keeps its cached bundle).
`;

const log = (...a) => console.error('[bench]', ...a);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const rand = (n = 32) => crypto.randomBytes(n).toString('base64url');
const median = (xs) => {
  const v = xs.filter(Number.isFinite).sort((a, b) => a - b);
  if (!v.length) return null;
  const m = v.length >> 1;
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
};

let clkTck = 100;
try {
  clkTck = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
} catch {
  /* keep 100 */
}
function cpuMs(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(f[11]) + Number(f[12])) * 1000) / clkTck;
  } catch {
    return null;
  }
}
function rssMiB(pid) {
  try {
    const m = fs.readFileSync(`/proc/${pid}/status`, 'utf8').match(/^VmRSS:\s+(\d+) kB/m);
    return m ? Number(m[1]) / 1024 : null;
  } catch {
    return null;
  }
}

// ------------------------------------------------------------------ processes

const cleanups = [];
const logDir = fs.mkdtempSync(path.join(os.tmpdir(), 'meridian-bench-sidecar-'));

function startChild(name, args, env) {
  const logPath = path.join(logDir, `${name}.log`);
  const fd = fs.openSync(logPath, 'a');
  const child = spawn(process.execPath, args, { cwd: ROOT, env, stdio: ['ignore', fd, fd] });
  fs.closeSync(fd);
  const state = { name, child, logPath, exit: null };
  state.exited = new Promise((resolve) =>
    child.once('exit', (code, signal) => resolve((state.exit = { code, signal }))),
  );
  state.stop = async () => {
    if (state.exit) return;
    child.kill('SIGTERM');
    if (!(await Promise.race([state.exited, sleep(5000).then(() => null)]))) child.kill('SIGKILL');
  };
  cleanups.push(state.stop);
  return state;
}

const tail = (file) => {
  try {
    return fs.readFileSync(file, 'utf8').split('\n').slice(-30).join('\n');
  } catch {
    return '(no log)';
  }
};

async function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function waitFor(proc, url, what, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (proc.exit)
      throw new Error(`${proc.name} exited (${JSON.stringify(proc.exit)}):\n${tail(proc.logPath)}`);
    try {
      if ((await fetch(url, { signal: AbortSignal.timeout(2000) })).status === 200) return;
    } catch {
      /* not yet */
    }
    await sleep(100);
  }
  throw new Error(`${what}: ${url} not 200 after ${timeoutMs} ms:\n${tail(proc.logPath)}`);
}

// The trivial upstream: node:http, a small JSON answer (optionally after burning WORK_US of CPU).
// /check echoes the identity it received.
const UPSTREAM_SOURCE = `
const http = require('node:http');
const body = Buffer.from('{"ok":true}');
const work = BigInt(Number(process.env.WORK_US || 0) * 1000);
http.createServer((req, res) => {
  if (work) {
    const end = process.hrtime.bigint() + work;
    while (process.hrtime.bigint() < end);
  }
  if (req.url === '/check') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ sub: req.headers['x-meridian-sub'] ?? null, scope: req.headers['x-meridian-scope'] ?? null }));
    return;
  }
  req.resume();
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length });
  res.end(body);
}).listen(Number(process.env.PORT), '127.0.0.1');
`;

// The reference point: the least a node:http reverse proxy does (keep-alive agent, headers
// copied, response piped), with no authentication at all.
const BARE_PROXY_SOURCE = `
const http = require('node:http');
const agent = new http.Agent({ keepAlive: true, scheduling: 'lifo' });
const up = new URL(process.env.UPSTREAM);
http.createServer((req, res) => {
  const headers = { ...req.headers, host: up.host };
  delete headers.connection;
  const r = http.request({ hostname: up.hostname, port: up.port, method: req.method, path: req.url, headers, agent }, (ur) => {
    res.writeHead(ur.statusCode, ur.headers);
    ur.pipe(res);
  });
  r.on('error', () => { res.statusCode = 502; res.end(); });
  req.pipe(r);
}).listen(Number(process.env.PORT), '127.0.0.1');
`;

async function createDatabases() {
  const pg = (await import('pg')).default;
  const adminUrl = process.env.BENCH_PG_ADMIN_URL || DEFAULT_PG_ADMIN_URL;
  const suffix = crypto.randomBytes(4).toString('hex');
  const names = [`bench_sc_control_${suffix}`, `bench_sc_eu_${suffix}`];
  const admin = new pg.Client({ connectionString: adminUrl, connectionTimeoutMillis: 5000 });
  await admin.connect().catch((err) => {
    throw new Error(`cannot connect to PostgreSQL at ${adminUrl}: ${err.message}`);
  });
  const created = [];
  cleanups.push(async () => {
    const c = new pg.Client({ connectionString: adminUrl });
    await c.connect();
    for (const n of created) await c.query(`DROP DATABASE IF EXISTS "${n}" WITH (FORCE)`);
    await c.end();
    log(`dropped databases ${created.join(', ')}`);
  });
  try {
    for (const n of names) {
      await admin.query(`CREATE DATABASE "${n}"`);
      created.push(n);
    }
  } finally {
    await admin.end();
  }
  const urlFor = (n) => Object.assign(new URL(adminUrl), { pathname: `/${n}` }).toString();
  return { control: urlFor(names[0]), region: urlFor(names[1]) };
}

const basic = (id, secret) =>
  `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64')}`;

async function post(url, headers, body) {
  const res = await fetch(url, { method: 'POST', headers, body });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`POST ${url} → ${res.status}: ${text.slice(0, 500)}`);
  return JSON.parse(text);
}

async function put(url, token, body) {
  const res = await fetch(url, {
    method: 'PUT',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  if (res.status >= 300) throw new Error(`PUT ${url} → ${res.status}: ${(await res.text()).slice(0, 500)}`);
}

async function brokerToken() {
  const dbs = await createDatabases();
  const port = await freePort();
  const issuer = `http://127.0.0.1:${port}`;
  const admin = { id: 'bench-admin', secret: rand(32) };
  const broker = startChild('broker', [path.join(ROOT, 'dist/apps/broker/main.js')], {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    MERIDIAN_REGION: 'eu',
    MERIDIAN_ISSUER: issuer,
    PORT: String(port),
    HOST: '127.0.0.1',
    CONTROL_DATABASE_URL: dbs.control,
    REGION_DATABASE_URL: dbs.region,
    MERIDIAN_KEK: crypto.randomBytes(32).toString('base64'),
    MERIDIAN_ADMIN_CLIENT_ID: admin.id,
    MERIDIAN_ADMIN_CLIENT_SECRET: admin.secret,
    MERIDIAN_JURISDICTION: 'EU',
    LOG_LEVEL: 'warn',
    // The broker's abuse limits out of reach (every request comes from 127.0.0.1); see bench/lib/broker.mjs.
    ...BENCH_BROKER_ENV,
  });
  log(`start broker at ${issuer}`);
  await waitFor(broker, `${issuer}/readyz`, 'broker');
  const form = (p) => new URLSearchParams(p).toString();
  const ct = { 'content-type': 'application/x-www-form-urlencoded' };
  const adminToken = (
    await post(
      `${issuer}/token`,
      { ...ct, authorization: basic(admin.id, admin.secret) },
      form({
        grant_type: 'client_credentials',
        resource: 'urn:meridian:admin',
        scope: 'meridian:admin',
      }),
    )
  ).access_token;
  await put(`${issuer}/admin/resources/bench-orders`, adminToken, {
    audience: AUDIENCE,
    scopes: ['orders:read', 'orders:write'],
    region: 'eu',
    accessTokenTtlSeconds: 3600,
  });
  const secret = rand(32);
  await put(`${issuer}/admin/clients/bench-client`, adminToken, {
    client_secret: secret,
    redirect_uris: [],
    grant_types: ['client_credentials'],
    response_types: [],
    token_endpoint_auth_method: 'client_secret_basic',
    scope: 'orders:read orders:write',
    resources: [AUDIENCE],
  });
  const token = (
    await post(
      `${issuer}/token`,
      { ...ct, authorization: basic('bench-client', secret) },
      form({
        grant_type: 'client_credentials',
        resource: AUDIENCE,
        scope: 'orders:read',
      }),
    )
  ).access_token;
  log(`token obtained (${token.length} chars)`);
  return { broker, issuer, token };
}

// ---------------------------------------------------------------------- runs

function cannon(url, headers, connections, duration) {
  return autocannon({ url, headers, connections, pipelining: 1, duration, timeout: 10 });
}

async function measure(target, headers, o, round) {
  if (o.warmup > 0) {
    const w = await cannon(target.url, headers, o.connections, o.warmup);
    if (w.non2xx || w.errors) log(`WARNING: ${target.name} warm-up: ${w.non2xx} non-2xx, ${w.errors} errors`);
  }
  log(`round ${round}: ${target.name} ${o.duration} s, ${o.connections} connections`);
  const cpu0 = Object.fromEntries(target.pids.map((p) => [p.name, cpuMs(p.pid)]));
  const r = await cannon(target.url, headers, o.connections, o.duration);
  const total = r.requests.total;
  const cpu = Object.fromEntries(
    target.pids.map((p) => {
      const after = cpuMs(p.pid);
      const ms = after !== null && cpu0[p.name] !== null ? after - cpu0[p.name] : null;
      return [
        p.name,
        {
          cpuPercent: ms === null ? null : (ms / (o.duration * 1000)) * 100,
          cpuUsPerReq: ms === null ? null : (ms * 1000) / total,
          rssMiB: rssMiB(p.pid),
        },
      ];
    }),
  );
  return {
    reqPerSec: r.requests.average,
    p50: r.latency.p50,
    p90: r.latency.p90,
    p99: r.latency.p99,
    mean: r.latency.average,
    total,
    non2xx: r.non2xx,
    errors: r.errors + r.timeouts,
    cpu,
  };
}

async function main() {
  const { values } = parseArgs({
    options: {
      connections: { type: 'string', default: '50' },
      duration: { type: 'string', default: '10' },
      warmup: { type: 'string', default: '3' },
      rounds: { type: 'string', default: '1' },
      path: { type: 'string', default: '/orders/42' },
      'upstream-work-us': { type: 'string', default: '0' },
      'no-bare': { type: 'boolean', default: false },
      'results-dir': { type: 'string', default: path.join(ROOT, 'bench', 'results') },
      check: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const o = {
    connections: Number(values.connections),
    duration: Number(values.duration),
    warmup: Number(values.warmup),
    rounds: Number(values.rounds),
  };
  const sidecarMain = path.join(ROOT, 'dist/apps/sidecar/main.js');
  if (!fs.existsSync(sidecarMain)) throw new Error('dist/apps/sidecar/main.js not found: npm run build');

  const upstreamPort = await freePort();
  const upstream = startChild('upstream', ['-e', UPSTREAM_SOURCE], {
    PATH: process.env.PATH,
    PORT: String(upstreamPort),
    WORK_US: values['upstream-work-us'],
  });
  const upstreamUrl = `http://127.0.0.1:${upstreamPort}`;
  await waitFor(upstream, upstreamUrl, 'upstream', 10_000);
  let bare;
  if (!values['no-bare']) {
    const barePort = await freePort();
    bare = startChild('bare-proxy', ['-e', BARE_PROXY_SOURCE], {
      PATH: process.env.PATH,
      PORT: String(barePort),
      UPSTREAM: upstreamUrl,
    });
    bare.url = `http://127.0.0.1:${barePort}`;
    await waitFor(bare, bare.url, 'bare proxy', 10_000);
  }

  const { broker, issuer, token } = await brokerToken();
  const sidecarPort = await freePort();
  const sidecar = startChild('sidecar', [sidecarMain], {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    PORT: String(sidecarPort),
    HOST: '127.0.0.1',
    SIDECAR_UPSTREAM: upstreamUrl,
    SIDECAR_AUDIENCE: AUDIENCE,
    SIDECAR_TRUST_BUNDLE_URL: `${issuer}/.well-known/meridian/trust-bundle`,
    SIDECAR_REQUIRED_SCOPES: 'orders:read',
    LOG_LEVEL: 'warn',
  });
  const sidecarUrl = `http://127.0.0.1:${sidecarPort}`;
  await waitFor(sidecar, `${sidecarUrl}/readyz`, 'sidecar', 20_000);

  // One checked request before any load: the token passes and the identity reaches the upstream.
  const headers = { authorization: `Bearer ${token}` };
  const check = await fetch(`${sidecarUrl}/check`, { headers });
  const seen = await check.json();
  if (check.status !== 200 || seen.sub !== 'bench-client') {
    throw new Error(`sidecar check failed: ${check.status} ${JSON.stringify(seen)}`);
  }
  const refused = await fetch(`${sidecarUrl}/check`);
  if (refused.status !== 401)
    throw new Error(`sidecar let a request without token through (${refused.status})`);
  log(
    `sidecar forwards x-meridian-sub=${seen.sub}, refuses without token; stopping the broker (cached bundle)`,
  );
  await broker.stop();

  const targets = [
    {
      name: 'direct',
      label: 'upstream directly',
      url: `${upstreamUrl}${values.path}`,
      pids: [{ name: 'upstream', pid: upstream.child.pid }],
    },
    {
      name: 'sidecar',
      label: 'through the sidecar',
      url: `${sidecarUrl}${values.path}`,
      pids: [
        { name: 'proxy', pid: sidecar.child.pid },
        { name: 'upstream', pid: upstream.child.pid },
      ],
    },
  ];
  if (bare) {
    targets.splice(1, 0, {
      name: 'bare',
      label: 'bare node:http proxy, no auth',
      url: `${bare.url}${values.path}`,
      pids: [
        { name: 'proxy', pid: bare.child.pid },
        { name: 'upstream', pid: upstream.child.pid },
      ],
    });
  }
  const rounds = Object.fromEntries(targets.map((t) => [t.name, []]));
  for (let i = 1; i <= o.rounds; i++) {
    const order = i % 2 ? targets : [...targets].reverse();
    for (const t of order) rounds[t.name].push(await measure(t, headers, o, i));
  }
  const summary = Object.fromEntries(
    Object.entries(rounds).map(([name, rs]) => [
      name,
      {
        reqPerSec: median(rs.map((r) => r.reqPerSec)),
        p50: median(rs.map((r) => r.p50)),
        p90: median(rs.map((r) => r.p90)),
        p99: median(rs.map((r) => r.p99)),
        mean: median(rs.map((r) => r.mean)),
        non2xx: rs.reduce((a, r) => a + r.non2xx, 0),
        errors: rs.reduce((a, r) => a + r.errors, 0),
        proxyCpuUsPerReq: median(rs.map((r) => r.cpu.proxy?.cpuUsPerReq ?? NaN)),
        proxyCpuPercent: median(rs.map((r) => r.cpu.proxy?.cpuPercent ?? NaN)),
        upstreamCpuUsPerReq: median(rs.map((r) => r.cpu.upstream?.cpuUsPerReq ?? NaN)),
        proxyRssMiB: median(rs.map((r) => r.cpu.proxy?.rssMiB ?? NaN)),
      },
    ]),
  );
  const ratio = summary.sidecar.reqPerSec / summary.direct.reqPerSec;
  const ofBare = summary.bare ? summary.sidecar.reqPerSec / summary.bare.reqPerSec : null;
  const report = {
    date: new Date().toISOString(),
    params: { ...o, path: values.path, upstreamWorkUs: Number(values['upstream-work-us']) },
    environment: {
      node: process.version,
      cpus: os.cpus().length,
      cpu: os.cpus()[0]?.model,
      loadavg: os.loadavg(),
    },
    summary,
    ratio,
    sidecarOfBareProxy: ofBare,
    authCpuUsPerReq: summary.bare ? summary.sidecar.proxyCpuUsPerReq - summary.bare.proxyCpuUsPerReq : null,
    addedLatencyMs: {
      p50: summary.sidecar.p50 - summary.direct.p50,
      p99: summary.sidecar.p99 - summary.direct.p99,
      mean: summary.sidecar.mean - summary.direct.mean,
    },
    target: TARGET_RATIO,
    pass: ratio >= TARGET_RATIO,
    rounds,
  };
  fs.mkdirSync(values['results-dir'], { recursive: true });
  const file = path.join(
    values['results-dir'],
    `sidecar-${report.date.replace(/:/g, '-').replace(/\.\d+Z$/, 'Z')}.json`,
  );
  fs.writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);

  const f = (x, d = 0) => (x === null || !Number.isFinite(x) ? 'n/a' : x.toFixed(d));
  const row = (name, s) =>
    `| ${name} | ${f(s.reqPerSec)} | ${f(s.p50, 2)} | ${f(s.p99, 2)} | ${f(s.mean, 2)} | ${s.non2xx} / ${s.errors} | ${f(s.proxyCpuUsPerReq)} | ${f(s.upstreamCpuUsPerReq)} |`;
  process.stdout.write(
    [
      `Sidecar benchmark, ${o.connections} connections, ${o.duration} s x ${o.rounds} round(s), GET ${values.path}, ` +
        `upstream work ${values['upstream-work-us']} µs/request, node ${process.version}, ${os.cpus().length} CPUs`,
      '',
      '| target | req/s | p50 ms | p99 ms | mean ms | non-2xx / errors | proxy CPU µs/req | upstream CPU µs/req |',
      '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
      ...targets.map((t) => row(t.label, summary[t.name])),
      '',
      `ratio sidecar/direct: **${ratio.toFixed(2)}x** (target >= ${TARGET_RATIO}x: ${report.pass ? 'met' : 'MISSED'}); ` +
        `added latency p50 ${f(report.addedLatencyMs.p50, 2)} ms, p99 ${f(report.addedLatencyMs.p99, 2)} ms, mean ${f(report.addedLatencyMs.mean, 2)} ms`,
      ...(ofBare === null
        ? []
        : [
            `sidecar / bare node:http proxy: ${ofBare.toFixed(2)}x; CPU the checks add: ${f(report.authCpuUsPerReq, 1)} µs/request`,
          ]),
      `JSON: ${path.relative(process.cwd(), file)}`,
      '',
    ].join('\n'),
  );
  if (
    values.check &&
    (!report.pass || summary.sidecar.non2xx || summary.sidecar.errors || summary.direct.errors)
  )
    return 2;
  return 0;
}

async function cleanup() {
  for (const fn of cleanups.reverse()) {
    try {
      await fn();
    } catch (err) {
      log(`cleanup: ${err.message}`);
    }
  }
}

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.once(sig, async () => {
    await cleanup();
    process.exit(130);
  });
}

let code = 1;
try {
  code = await main();
} catch (err) {
  console.error(`\n[bench] FAILED: ${err.message}`);
  console.error(`[bench] logs kept in ${logDir}`);
} finally {
  await cleanup();
  if (code !== 1) fs.rmSync(logDir, { recursive: true, force: true });
}
process.exit(code);
