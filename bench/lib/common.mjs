// Shared pieces of the benchmark suite: errors that name the step, child processes that are
// always stopped (their whole process group), databases that are always dropped, /proc readers,
// statistics and the load generator (autocannon with our own sub-millisecond latency record).
import { spawn, execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

export const require = createRequire(import.meta.url);
export const BENCH_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const ROOT = path.resolve(BENCH_DIR, '..');
export const DEFAULT_PG_ADMIN_URL = 'postgres://postgres@127.0.0.1:5432/postgres';

// ------------------------------------------------------------------ errors, logging

/** A failure of one named step; the suite prints the step, the message and the detail. */
export class BenchError extends Error {
  constructor(step, message, detail) {
    super(message);
    this.step = step;
    this.detail = detail;
  }
}

let currentScenario = '';
export function setScenario(name) {
  currentScenario = name;
}
export const log = (...args) =>
  console.error(`[bench${currentScenario ? `:${currentScenario}` : ''}]`, ...args);
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export const rand = (bytes = 32) => crypto.randomBytes(bytes).toString('base64url');

/** Runs `fn` as step `step`: any error it throws is reported as a failure of that step. */
export async function step(name, fn) {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof BenchError) throw err;
    throw new BenchError(name, err?.message ?? String(err), err?.detail);
  }
}

// ------------------------------------------------------------------ statistics

export function quantile(sorted, q) {
  if (!sorted.length) return null;
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

export function median(values) {
  const v = values.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b);
  return v.length ? quantile(v, 0.5) : null;
}

/** Median and spread of per-round values: { median, min, max, q1, q3, n }. */
export function spread(values) {
  const v = values.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b);
  if (!v.length) return { median: null, min: null, max: null, q1: null, q3: null, n: 0 };
  return {
    median: quantile(v, 0.5),
    min: v[0],
    max: v[v.length - 1],
    q1: quantile(v, 0.25),
    q3: quantile(v, 0.75),
    n: v.length,
  };
}

/** Latency percentiles (ms) of raw samples, nearest-rank. */
export function percentiles(samples) {
  const s = Float64Array.from(samples).sort();
  const at = (p) =>
    s.length ? s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] : null;
  const mean = s.length ? s.reduce((a, b) => a + b, 0) / s.length : null;
  return { n: s.length, p50: at(50), p90: at(90), p99: at(99), max: s.length ? s[s.length - 1] : null, mean };
}

export const round = (x, d = 2) => (typeof x === 'number' && Number.isFinite(x) ? +x.toFixed(d) : x);

// ------------------------------------------------------------------ machine

let clkTck = 100;
try {
  clkTck = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
} catch {
  /* keep 100 */
}

/** CPU time (user+sys, all threads) of a process in ms, or null. */
export function cpuMs(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(f[11]) + Number(f[12])) * 1000) / clkTck;
  } catch {
    return null;
  }
}

/** { rssKiB, hwmKiB } of a process. */
export function memKiB(pid) {
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

/** Busy CPU time of the whole machine (ms, all cores). */
export function machineBusyMs() {
  try {
    const cols = fs
      .readFileSync('/proc/stat', 'utf8')
      .split('\n')[0]
      .trim()
      .split(/\s+/)
      .slice(1, 9)
      .map(Number);
    const [user, nice, system, , , irq, softirq, steal] = cols;
    return ((user + nice + system + irq + softirq + steal) * 1000) / clkTck;
  } catch {
    return null;
  }
}

export const loadavg = () => os.loadavg().map((x) => +x.toFixed(2));

export function machine() {
  const cpus = os.cpus();
  let pkg = {};
  try {
    pkg = {
      oidcProvider: require('oidc-provider/package.json').version,
      jose: require('jose/package.json').version,
      autocannon: require('autocannon/package.json').version,
      nest: require('@nestjs/core/package.json').version,
    };
  } catch {
    /* versions are informative only */
  }
  let commit = null;
  let dirty = null;
  try {
    commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim();
    dirty =
      execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], {
        cwd: ROOT,
        encoding: 'utf8',
      }).trim() !== '';
  } catch {
    /* not a checkout */
  }
  return {
    cores: cpus.length,
    cpuModel: cpus[0]?.model?.trim() ?? 'unknown',
    node: process.version,
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    totalMemMiB: Math.round(os.totalmem() / 2 ** 20),
    loadavgAtStart: loadavg(),
    commit,
    dirtyTree: dirty,
    versions: pkg,
  };
}

// ------------------------------------------------------------------ child processes

const children = new Set();
const cleanups = [];
let stopping = false;

/** After Ctrl-C: no new process may start while the run is being torn down. */
export function markStopping() {
  stopping = true;
}
export const isStopping = () => stopping;
let logDir;

export function getLogDir() {
  logDir ??= fs.mkdtempSync(path.join(os.tmpdir(), 'meridian-bench-'));
  return logDir;
}

export function tail(file, lines = 40) {
  try {
    return fs.readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

export function describeExit(exit) {
  if (!exit) return 'still running';
  if (exit.error) return `failed to start: ${exit.error}`;
  return exit.signal ? `killed by ${exit.signal}` : `exited with code ${exit.code}`;
}

/**
 * Starts a child in its own process group (so Ctrl-C reaches only the suite, which then stops
 * the group: the child and anything it started). Output goes to a log file in the log directory.
 */
export function startProcess(name, command, args, { env = process.env, cwd = ROOT, ipc = false, echo } = {}) {
  if (stopping) throw new BenchError(name, 'interrupted');
  const logPath = path.join(getLogDir(), `${name.replace(/[^a-z0-9_.-]+/gi, '_')}.log`);
  const fd = fs.openSync(logPath, 'a');
  const out = echo ? 'pipe' : fd;
  const child = spawn(command, args, {
    cwd,
    env,
    detached: true,
    stdio: ['ignore', out, out, ...(ipc ? ['ipc'] : [])],
  });
  if (echo) {
    // Everything to the log file; lines matching `echo` also to our stderr (progress).
    let buf = '';
    const onData = (d) => {
      fs.appendFileSync(logPath, d);
      buf += d.toString();
      let i;
      while ((i = buf.indexOf('\n')) !== -1) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        if (echo.test(line)) log(line.trim());
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
  }
  fs.closeSync(fd);
  const proc = { name, child, pid: child.pid, logPath, exit: null };
  children.add(proc);
  proc.exited = new Promise((resolve) => {
    child.once('exit', (code, signal) => {
      proc.exit = { code, signal };
      children.delete(proc);
      resolve(proc.exit);
    });
    child.once('error', (err) => {
      proc.exit = { error: err.message };
      children.delete(proc);
      resolve(proc.exit);
    });
  });
  proc.stop = async (graceMs = 8000) => {
    if (proc.exit) return proc.exit;
    killGroup(proc, 'SIGTERM');
    const done = await Promise.race([proc.exited, sleep(graceMs).then(() => null)]);
    if (!done) {
      log(`${name} (pid ${child.pid}) ignored SIGTERM for ${graceMs / 1000} s; SIGKILL`);
      killGroup(proc, 'SIGKILL');
      await Promise.race([proc.exited, sleep(2000)]);
    }
    // Whatever the child started in its group goes too.
    killGroup(proc, 'SIGKILL');
    return proc.exit;
  };
  return proc;
}

export const startNode = (name, args, opts) => startProcess(name, process.execPath, args, opts);

function killGroup(proc, signal) {
  try {
    process.kill(-proc.pid, signal);
  } catch {
    try {
      proc.child.kill(signal);
    } catch {
      /* gone */
    }
  }
}

/** Registers an async clean-up step (run in reverse order at the end, on failure and on Ctrl-C). */
export function onCleanup(fn) {
  cleanups.push(fn);
  return fn;
}

let cleaning = null;
export function cleanup() {
  cleaning ??= (async () => {
    for (const proc of [...children].reverse()) await proc.stop(5000).catch(() => {});
    for (const fn of cleanups.reverse()) {
      try {
        await fn();
      } catch (err) {
        log(`clean-up: ${err.message}`);
      }
    }
  })();
  return cleaning;
}

/** Last resort when the process exits without the async clean-up: kill every group we started. */
export function killAllNow() {
  for (const proc of children) killGroup(proc, 'SIGKILL');
}

export function keepLogs() {
  return logDir;
}

export function removeLogs() {
  if (logDir) fs.rmSync(logDir, { recursive: true, force: true });
  logDir = undefined;
}

export async function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** Waits until GET url answers 200; fails at once if `proc` exits. */
export async function waitHttp(stepName, url, proc, timeoutMs = 90_000) {
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer yet';
  while (Date.now() < deadline) {
    if (proc?.exit)
      throw new BenchError(
        stepName,
        `${proc.name} ${describeExit(proc.exit)} before ${url} answered 200`,
        `log ${proc.logPath}:\n${tail(proc.logPath)}`,
      );
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(3000) });
      const text = await res.text();
      if (res.status === 200) return;
      last = `HTTP ${res.status} ${text.slice(0, 200)}`;
    } catch (err) {
      last = err.cause?.code || err.message;
    }
    await sleep(200);
  }
  throw new BenchError(
    stepName,
    `${url} not 200 after ${timeoutMs / 1000} s (last: ${last})`,
    proc ? `log ${proc.logPath}:\n${tail(proc.logPath)}` : undefined,
  );
}

// ------------------------------------------------------------------ PostgreSQL

export const RUN_ID = `r${crypto.randomBytes(4).toString('hex')}`;
export const pgAdminUrl = () => process.env.BENCH_PG_ADMIN_URL || DEFAULT_PG_ADMIN_URL;
export const DB_PREFIX = `bench_${RUN_ID}`;

let pgModule;
export function pg() {
  pgModule ??= require('pg');
  return pgModule;
}

export async function withPg(url, fn) {
  const c = new (pg().Client)({ connectionString: url, connectionTimeoutMillis: 5000 });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end().catch(() => {});
  }
}

const createdDbs = new Set();
let dropRegistered = false;

/** Registers the drop of every `bench_<run>_…` database (also those the login driver creates). */
export function dropDatabasesAtEnd() {
  if (dropRegistered) return;
  dropRegistered = true;
  onCleanup(dropRunDatabases);
}

export function dbUrl(name) {
  const u = new URL(pgAdminUrl());
  u.pathname = `/${name}`;
  return u.toString();
}

/** Creates `bench_<run>_<label>`; every database of this run is dropped at the end. */
export async function createDatabase(label) {
  const name = `${DB_PREFIX}_${label}`
    .toLowerCase()
    .replace(/[^a-z0-9_]/g, '_')
    .slice(0, 63);
  dropDatabasesAtEnd();
  if (stopping) throw new BenchError('create database', 'interrupted');
  await withPg(pgAdminUrl(), async (c) => {
    await c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
    await c.query(`CREATE DATABASE "${name}"`);
  }).catch((err) => {
    throw new BenchError(
      'create database',
      `CREATE DATABASE ${name} on ${pgAdminUrl()} failed: ${err.message}`,
      'start PostgreSQL (pg_ctlcluster --skip-systemctl-redirect 15 main start) or set BENCH_PG_ADMIN_URL to a role that may create databases',
    );
  });
  createdDbs.add(name);
  return { name, url: dbUrl(name), drop: () => dropDatabase(name) };
}

export async function dropDatabase(name) {
  await withPg(pgAdminUrl(), (c) => c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`));
  createdDbs.delete(name);
}

/** Drops every database of this run: ours, and those the login driver created with our prefix. */
export async function dropRunDatabases() {
  await withPg(pgAdminUrl(), async (c) => {
    const { rows } = await c.query(`select datname from pg_database where datname like $1`, [
      `${DB_PREFIX}%`,
    ]);
    for (const { datname } of rows) {
      await c.query(`DROP DATABASE IF EXISTS "${datname}" WITH (FORCE)`);
      createdDbs.delete(datname);
    }
    if (rows.length) log(`dropped ${rows.length} database(s) of run ${RUN_ID}`);
  });
}

// ------------------------------------------------------------------ HTTP

export async function http(stepName, url, { method = 'GET', headers = {}, body, timeoutMs = 30_000 } = {}) {
  let res;
  try {
    res = await fetch(url, {
      method,
      headers,
      body,
      redirect: 'manual',
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (err) {
    throw new BenchError(
      stepName,
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

export function basicAuth(id, secret) {
  // RFC 6749 §2.3.1: form-urlencode id and secret before base64.
  const enc = (s) => encodeURIComponent(s).replace(/%20/g, '+');
  return `Basic ${Buffer.from(`${enc(id)}:${enc(secret)}`).toString('base64')}`;
}

export function formRequest(clientId, clientSecret, params) {
  return {
    method: 'POST',
    headers: {
      authorization: basicAuth(clientId, clientSecret),
      'content-type': 'application/x-www-form-urlencoded',
      accept: 'application/json',
    },
    body: new URLSearchParams(params).toString(),
  };
}

// ------------------------------------------------------------------ load

const autocannon = require('autocannon');

/**
 * One autocannon run. Latencies are recorded by us from autocannon's float `responseTime`
 * (its own histogram has 1 ms resolution). `request` is { url, method, headers, body } or
 * { url, requests: [...] } for per-request set-up.
 */
export function cannon(request, { connections, duration, amount, recordLatency = true }) {
  return new Promise((resolve, reject) => {
    const lat = [];
    const inst = autocannon(
      {
        url: request.url,
        method: request.method ?? 'GET',
        headers: request.headers,
        body: request.body,
        requests: request.requests,
        connections,
        pipelining: 1,
        ...(amount ? { amount } : { duration }),
        timeout: 10,
      },
      (err, result) => (err ? reject(err) : resolve({ result, lat })),
    );
    if (recordLatency)
      inst.on('response', (_client, status, _bytes, responseTime) => {
        if (status >= 200 && status < 300) lat.push(responseTime);
      });
  });
}

/**
 * Measures one target once: optional warm-up, then `duration` seconds; CPU of the given pids,
 * the load generator and the machine; latencies of 2xx answers.
 */
export async function measureOnce(target, o, roundNo) {
  if (o.warmup > 0) {
    const w = await cannon(target.request, {
      connections: o.connections,
      duration: o.warmup,
      recordLatency: false,
    });
    const bad = w.result.non2xx + w.result.errors + w.result.timeouts;
    if (bad)
      log(
        `WARNING: ${target.name} warm-up: ${w.result.non2xx} non-2xx, ${w.result.errors} errors, ${w.result.timeouts} timeouts`,
      );
  }
  const pids = target.pids ?? [];
  const cpu0 = pids.map((p) => cpuMs(p.pid));
  const self0 = process.cpuUsage();
  const m0 = machineBusyMs();
  const t0 = performance.now();
  const w0 = Number(process.hrtime.bigint() / 1000n);
  const { result: r, lat } = await cannon(target.request, {
    connections: o.connections,
    duration: o.duration,
  });
  const w1 = Number(process.hrtime.bigint() / 1000n);
  const elapsed = (performance.now() - t0) / 1000;
  const m1 = machineBusyMs();
  const self = process.cpuUsage(self0);
  const cpu = {};
  pids.forEach((p, i) => {
    const after = cpuMs(p.pid);
    const ms = after !== null && cpu0[i] !== null ? after - cpu0[i] : null;
    cpu[p.name] = {
      cpuPercent: ms === null ? null : ms / 10 / elapsed,
      cpuUsPerReq: ms === null || !r.requests.total ? null : (ms * 1000) / r.requests.total,
      rssMiB: memKiB(p.pid).rssKiB / 1024,
    };
  });
  const pct = percentiles(lat);
  const loadgenCpuPercent = (self.user + self.system) / 1e4 / elapsed;
  const machinePercent = m0 !== null && m1 !== null ? (m1 - m0) / 10 / elapsed : null;
  const ownPercent = Object.values(cpu).reduce((a, c) => a + (c.cpuPercent ?? 0), 0) + loadgenCpuPercent;
  const out = {
    round: roundNo,
    rps: r['2xx'] / elapsed,
    rpsAll: r.requests.total / elapsed,
    p50: pct.p50,
    p90: pct.p90,
    p99: pct.p99,
    max: pct.max,
    mean: pct.mean,
    requests: r.requests.total,
    non2xx: r.non2xx,
    errors: r.errors + r.timeouts,
    statusCodes: Object.fromEntries(Object.entries(r.statusCodeStats ?? {}).map(([k, v]) => [k, v.count])),
    seconds: +elapsed.toFixed(2),
    cpu,
    loadgenCpuPercent,
    otherProcessesCpuPercent: machinePercent === null ? null : Math.max(0, machinePercent - ownPercent),
    loadavg: loadavg(),
    // CLOCK_MONOTONIC µs, the clock V8's profiler stamps samples with (see profile.mjs).
    windowUs: [w0, w1],
  };
  const main = pids[0] ? cpu[pids[0].name] : null;
  log(
    `round ${roundNo}: ${target.name}: ${out.rps.toFixed(0)} req/s, p50 ${fmt(out.p50, 2)} ms, p99 ${fmt(out.p99, 2)} ms` +
      (main ? `, ${pids[0].name} CPU ${fmt(main.cpuPercent, 0)}% ${fmt(main.cpuUsPerReq, 0)} µs/req` : '') +
      `, others ${fmt(out.otherProcessesCpuPercent, 0)}%` +
      (out.non2xx || out.errors
        ? `, non-2xx ${out.non2xx} errors ${out.errors} ${JSON.stringify(out.statusCodes)}`
        : ''),
  );
  if (out.otherProcessesCpuPercent > 25)
    log(`  (other processes took ${out.otherProcessesCpuPercent.toFixed(0)}% of a core: noisy round)`);
  return out;
}

/** Per-target summary of rounds: medians with min/max/IQR of the headline metrics. */
export function summarizeRounds(rounds, mainPid) {
  const s = (f) => spread(rounds.map(f));
  return {
    rps: s((r) => r.rps),
    p50: s((r) => r.p50),
    p99: s((r) => r.p99),
    cpuUsPerReq: mainPid ? s((r) => r.cpu[mainPid]?.cpuUsPerReq) : undefined,
    cpuPercent: mainPid ? s((r) => r.cpu[mainPid]?.cpuPercent) : undefined,
    rssMiB: mainPid ? s((r) => r.cpu[mainPid]?.rssMiB) : undefined,
    non2xx: rounds.reduce((a, r) => a + r.non2xx, 0),
    errors: rounds.reduce((a, r) => a + r.errors, 0),
    otherProcessesCpuPercent: s((r) => r.otherProcessesCpuPercent),
  };
}

/**
 * Several rounds over `targets`, the order alternating round by round (ABBA…), so neither side
 * always runs first (or while the machine is in the same state).
 */
export async function compareTargets(targets, o) {
  const rounds = Object.fromEntries(targets.map((t) => [t.name, []]));
  for (let i = 1; i <= o.rounds; i++) {
    const order = i % 2 ? targets : [...targets].reverse();
    for (const t of order) rounds[t.name].push(await measureOnce(t, o, i));
  }
  const out = {};
  for (const t of targets) {
    out[t.name] = {
      label: t.label,
      rounds: rounds[t.name],
      summary: summarizeRounds(rounds[t.name], t.pids?.[0]?.name),
    };
  }
  return out;
}

export const fmt = (v, d = 0) => (typeof v === 'number' && Number.isFinite(v) ? v.toFixed(d) : 'n/a');

/** Runs a worker script (node, own process) with a JSON config; resolves with its IPC result. */
export async function runWorker(name, script, cfg, timeoutMs = 600_000) {
  const cfgPath = path.join(getLogDir(), `${name}.json`);
  fs.writeFileSync(cfgPath, JSON.stringify(cfg));
  const proc = startNode(name, [script, cfgPath], { ipc: true });
  const result = await Promise.race([
    new Promise((resolve) => proc.child.on('message', (m) => m?.type === 'result' && resolve(m))),
    proc.exited.then(() => null),
    sleep(timeoutMs).then(() => 'timeout'),
  ]);
  if (result === null || result === 'timeout') {
    await proc.stop();
    throw new BenchError(
      name,
      result === 'timeout' ? `no result after ${timeoutMs / 1000} s` : `worker ${describeExit(proc.exit)}`,
      `log ${proc.logPath}:\n${tail(proc.logPath)}`,
    );
  }
  await Promise.race([proc.exited, sleep(5000)]);
  await proc.stop();
  return result;
}
