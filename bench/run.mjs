#!/usr/bin/env node
// The Meridian benchmark suite: every scenario next to its peer, in one run on one machine.
//
//   npm run bench                          all scenarios, then bench/results/<date>.json and bench/REPORT.md
//   npm run bench -- client_credentials    a subset (names or groups: core, growth)
//   npm run bench -- --compare             … and the change against the last committed results
//   npm run bench -- --help
//
// See bench/README.md.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { parseArgs } from 'node:util';
import {
  BENCH_DIR,
  BenchError,
  ROOT,
  RUN_ID,
  cleanup,
  dropDatabasesAtEnd,
  keepLogs,
  markStopping,
  killAllNow,
  loadavg,
  log,
  machine,
  pgAdminUrl,
  removeLogs,
  setScenario,
  withPg,
} from './lib/common.mjs';
import { staleBuildWarning } from './lib/broker.mjs';
import { clientCredentials, introspection, jwks, signingFloor, verifier } from './lib/scenarios/tokens.mjs';
import { sidecar } from './lib/scenarios/sidecar.mjs';
import { stopSharedStack } from './lib/scenarios/shared.mjs';
import { growthClients, growthRegions, growthSubjects } from './lib/scenarios/growth.mjs';
import { growthFederations, growthSessions, login, refresh } from './lib/scenarios/login.mjs';
import { summaryLines, writeReport } from './lib/report.mjs';
import { compareResults, lastCommittedResults, printComparison } from './lib/compare.mjs';

export const SCENARIOS = [
  signingFloor,
  clientCredentials,
  introspection,
  jwks,
  verifier,
  sidecar,
  login,
  refresh,
  growthClients,
  growthRegions,
  growthFederations,
  growthSessions,
  growthSubjects,
];
const GROUPS = {
  all: SCENARIOS.map((s) => s.name),
  core: [
    'signing_floor',
    'client_credentials',
    'introspection',
    'jwks',
    'verifier',
    'sidecar',
    'login',
    'refresh',
  ],
  growth: SCENARIOS.filter((s) => s.name.startsWith('growth_')).map((s) => s.name),
  token: ['client_credentials'],
};

const USAGE = `\
Usage: npm run bench -- [scenario|group ...] [options]

Scenarios: ${SCENARIOS.map((s) => s.name).join(', ')}
Groups:    all (default), core, growth

Load (throughput scenarios: autocannon on 127.0.0.1, targets one after the other, order alternating)
  --rounds <n>          timed rounds per target (default 5)
  --duration <s>        seconds per timed round (default 10)
  --warmup <s>          warm-up seconds before each round (default 3)
  --connections <n>     autocannon connections (default 50)
  --growth-rounds <n>   rounds per point of a growth curve (default 3)
  --scale <f>           multiply the growth curves' sizes (default 1: up to 100,000 clients and
                        subjects, 1,000 federations, 10,000 sessions)
  --quick               development run: 1 round of 2 s, 1 s warm-up, scale 0.02, fewer logins
  --login-rounds <n>    rounds of the login scenario (default 5) …
  --logins <n>          … of this many logins per flow (default 40)

Options
  --profile             also profile the token endpoint (node --cpu-prof of a separate broker and
                        bare provider during one run) and summarise self time by module
  --keep-profiles       copy the .cpuprofile files to bench/results/profiles/
  --compare             after the run, print the change against the last committed results
  --compare-only [file] no run: compare <file> (default: the newest results) with the last committed
  --report              write bench/REPORT.md even for a subset run (default: only when all ran)
  --report-only <file>  no run: regenerate bench/REPORT.md and its charts from a results file
  --no-save             write the results JSON to the log directory, not bench/results/
  --results-dir <dir>   where the results JSON goes (default bench/results)
  --build               npm run build first
  --fail-fast           stop at the first failing scenario (default: record it and go on)
  -h, --help

Exit: 0 done (targets may be missed: see the report), 1 a step failed (named), 130 interrupted.
PostgreSQL: $BENCH_PG_ADMIN_URL (default postgres://postgres@127.0.0.1:5432/postgres), a role that
may create databases; every database of the run (bench_<run id>_…) is dropped at the end.
`;

function parse() {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      rounds: { type: 'string', default: '5' },
      duration: { type: 'string', default: '10' },
      warmup: { type: 'string', default: '3' },
      connections: { type: 'string', default: '50' },
      'growth-rounds': { type: 'string', default: '3' },
      scale: { type: 'string', default: '1' },
      quick: { type: 'boolean', default: false },
      'login-rounds': { type: 'string' },
      logins: { type: 'string' },
      profile: { type: 'boolean', default: false },
      'keep-profiles': { type: 'boolean', default: false },
      compare: { type: 'boolean', default: false },
      'compare-only': { type: 'boolean', default: false },
      report: { type: 'boolean', default: false },
      'report-only': { type: 'string' },
      'no-save': { type: 'boolean', default: false },
      'results-dir': { type: 'string', default: path.join(BENCH_DIR, 'results') },
      build: { type: 'boolean', default: false },
      'fail-fast': { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  const num = (k, min = 1) => {
    const v = Number(values[k]);
    if (!Number.isFinite(v) || v < min) throw new BenchError('arguments', `--${k} must be a number ≥ ${min}`);
    return v;
  };
  const quick = values.quick;
  const opts = {
    help: values.help,
    quick,
    profile: values.profile,
    keepProfiles: values['keep-profiles'],
    compare: values.compare,
    compareOnly: values['compare-only'],
    report: values.report,
    reportOnly: values['report-only'],
    noSave: values['no-save'],
    resultsDir: path.resolve(values['results-dir']),
    build: values.build,
    failFast: values['fail-fast'],
    scale: quick && values.scale === '1' ? 0.02 : num('scale', 0.0001),
    growthRounds: quick ? 1 : num('growth-rounds'),
    loginRounds: values['login-rounds'] ? num('login-rounds') : quick ? 2 : 5,
    logins: values.logins ? num('logins') : quick ? 10 : 40,
    positionals,
  };
  opts.load = {
    rounds: quick && values.rounds === '5' ? 1 : num('rounds'),
    duration: quick && values.duration === '10' ? 2 : num('duration'),
    warmup: quick && values.warmup === '3' ? 1 : num('warmup', 0),
    connections: num('connections'),
  };
  if (opts.load.duration > 600 || opts.load.rounds > 50)
    throw new BenchError('arguments', 'bounded: --duration ≤ 600, --rounds ≤ 50');
  const wanted = new Set();
  for (const p of opts.compareOnly ? [] : positionals.length ? positionals : ['all']) {
    const names = GROUPS[p] ?? (SCENARIOS.some((s) => s.name === p) ? [p] : null);
    if (!names)
      throw new BenchError(
        'arguments',
        `unknown scenario "${p}" (known: ${SCENARIOS.map((s) => s.name).join(', ')}; groups: ${Object.keys(GROUPS).join(', ')})`,
      );
    for (const n of names) wanted.add(n);
  }
  opts.scenarios = SCENARIOS.filter((s) => wanted.has(s.name));
  opts.all = opts.scenarios.length === SCENARIOS.length;
  if (opts.compareOnly && positionals.length > 1)
    throw new BenchError('arguments', '--compare-only takes at most one results file');
  return opts;
}

function stampOf(date) {
  return date
    .toISOString()
    .replace(/:/g, '-')
    .replace(/\.\d+Z$/, 'Z');
}

async function checkPostgres() {
  try {
    await withPg(pgAdminUrl(), (c) => c.query('select 1'));
  } catch (err) {
    throw new BenchError(
      'PostgreSQL',
      `cannot connect to ${pgAdminUrl()}: ${err.message}`,
      'start it (pg_ctlcluster --skip-systemctl-redirect 15 main start) or set BENCH_PG_ADMIN_URL',
    );
  }
}

async function main() {
  const opts = parse();
  if (opts.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (opts.reportOnly) {
    const file = path.resolve(opts.reportOnly);
    const results = JSON.parse(fs.readFileSync(file, 'utf8'));
    const written = await writeReport(results, { resultsFile: file });
    process.stdout.write(`wrote ${written.map((f) => path.relative(process.cwd(), f)).join(', ')}\n`);
    return 0;
  }
  if (opts.compareOnly) {
    const file = opts.positionals[0] ? path.resolve(opts.positionals[0]) : newestResults(opts.resultsDir);
    if (!file) throw new BenchError('compare', `no results in ${opts.resultsDir}`);
    const base = lastCommittedResults(file);
    if (!base)
      throw new BenchError(
        'compare',
        'no committed results to compare with (bench/results/<date>.json in git)',
      );
    printComparison(compareResults(base.results, JSON.parse(fs.readFileSync(file, 'utf8'))), base.path, file);
    return 0;
  }
  if (opts.build) {
    log('npm run build');
    const r = spawnSync('npm', ['run', 'build'], { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit'] });
    if (r.status !== 0) throw new BenchError('build', `npm run build exited with ${r.status}`);
  }
  const stale = staleBuildWarning();
  if (stale) log(`WARNING: ${stale}`);
  await checkPostgres();
  dropDatabasesAtEnd();

  const started = new Date();
  const runStamp = stampOf(started);
  const results = {
    format: 'meridian-bench/1',
    date: started.toISOString(),
    runId: RUN_ID,
    command: `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`,
    machine: machine(),
    params: {
      load: opts.load,
      growthRounds: opts.growthRounds,
      scale: opts.scale,
      loginRounds: opts.loginRounds,
      logins: opts.logins,
      quick: opts.quick,
      profile: opts.profile,
    },
    staleBuild: stale,
    scenarios: {},
  };
  log(
    `run ${RUN_ID}: ${opts.scenarios.map((s) => s.name).join(', ')}; ${results.machine.cores} cores (${results.machine.cpuModel}), Node ${results.machine.node}, load average ${results.machine.loadavgAtStart.join(' ')}`,
  );
  if (results.machine.loadavgAtStart[0] > results.machine.cores * 0.5)
    log(
      `WARNING: load average ${results.machine.loadavgAtStart[0]} on ${results.machine.cores} cores: other work is running, ratios will be noisy`,
    );
  const ctx = { opts, load: opts.load, runStamp };
  let failed = 0;
  for (const sc of opts.scenarios) {
    if (interrupted) break;
    setScenario(sc.name);
    const rec = { title: sc.title, loadavgBefore: loadavg() };
    const t0 = Date.now();
    log(`— ${sc.title}`);
    try {
      Object.assign(rec, await sc.run(ctx));
    } catch (err) {
      if (interrupted) break;
      failed++;
      rec.failed = { step: err.step ?? sc.name, message: err.message, detail: err.detail?.slice?.(0, 4000) };
      console.error(`\n[bench:${sc.name}] FAILED at step "${rec.failed.step}": ${err.message}`);
      if (err.detail) console.error(String(err.detail).replace(/^/gm, '    '));
      if (!(err instanceof BenchError)) console.error(err.stack);
    }
    rec.seconds = Math.round((Date.now() - t0) / 1000);
    rec.loadavgAfter = loadavg();
    results.scenarios[sc.name] = rec;
    log(`done in ${rec.seconds} s (load average ${rec.loadavgAfter.join(' ')})`);
    if (rec.failed && opts.failFast) break;
  }
  if (interrupted) return 130;
  setScenario('');
  await stopSharedStack();
  results.seconds = Math.round((Date.now() - started.getTime()) / 1000);
  results.machine.loadavgAtEnd = loadavg();

  const dir = opts.noSave ? path.join(os.tmpdir(), 'meridian-bench-results') : opts.resultsDir;
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `${runStamp}.json`);
  fs.writeFileSync(file, `${JSON.stringify(results, null, 2)}\n`);
  log(`results: ${path.relative(process.cwd(), file)} (${results.seconds} s)`);
  if ((opts.all && !opts.noSave) || opts.report) {
    const written = await writeReport(results, { resultsFile: file });
    log(`report: ${written.map((f) => path.relative(process.cwd(), f)).join(', ')}`);
  }
  printSummary(results);
  if (opts.compare) {
    const base = lastCommittedResults(file);
    if (!base) log('compare: no committed results yet (bench/results/<date>.json in git)');
    else printComparison(compareResults(base.results, results), base.path, file);
  }
  return failed ? 1 : 0;
}

function newestResults(dir) {
  const files = fs.existsSync(dir)
    ? fs
        .readdirSync(dir)
        .filter((f) => /^\d{4}-\d\d-\d\dT[\d-]+Z\.json$/.test(f))
        .sort()
    : [];
  return files.length ? path.join(dir, files.at(-1)) : null;
}

function printSummary(results) {
  process.stdout.write(`${summaryLines(results).join('\n')}\n`);
}

// ---------------------------------------------------------------- lifecycle

let interrupted = false;
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(sig, async () => {
    interrupted = true;
    markStopping();
    console.error(`\n[bench] ${sig}: stopping every process of the run and dropping its databases`);
    await cleanup();
    if (keepLogs()) console.error(`[bench] logs kept in ${keepLogs()}`);
    process.exit(130);
  });
}
process.on('exit', killAllNow);

let code;
try {
  code = await main();
} catch (err) {
  if (!interrupted) {
    if (err instanceof BenchError) {
      console.error(`\n[bench] FAILED at step "${err.step}": ${err.message}`);
      if (err.detail) console.error(String(err.detail).replace(/^/gm, '    '));
    } else console.error('\n[bench] FAILED:', err);
  }
  code = 1;
}
// After Ctrl-C the signal handler owns the clean-up (and the exit): wait for it, never exit under it.
if (interrupted) await new Promise(() => {});
await cleanup();
if (code !== 0 && keepLogs()) console.error(`[bench] logs kept in ${keepLogs()}`);
else removeLogs();
process.exit(code);
