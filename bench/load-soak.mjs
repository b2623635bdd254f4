#!/usr/bin/env node
// Issue 6's load test and soak, outside the test run: `npm run bench:soak`.
//   load: 10,000 client_credentials token requests at concurrency 100 — every answer must be 200
//         (no non-2xx, no socket error, no timeout);
//   soak: --soak-minutes (default 10) of steady token traffic while the broker's RSS is sampled
//         every 10 s — stable when the RSS of the second half grows less than --max-growth-mib-per-min.
// The broker runs with its abuse limits raised out of reach (as in every benchmark: all requests
// come from 127.0.0.1) and with its default load shedding. Figures: stdout and
// bench/results/load-soak-<date>.json. Exit 0 when both hold, 2 when one does not, 1 on a failed step.
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import {
  BENCH_DIR,
  BenchError,
  cannon,
  cleanup,
  dropDatabasesAtEnd,
  killAllNow,
  loadavg,
  log,
  machine,
  memKiB,
  percentiles,
  require,
  round,
  sleep,
} from './lib/common.mjs';
import { checkedToken, registerBenchClient, startBroker, tokenRequest } from './lib/broker.mjs';

const { values: opts } = parseArgs({
  options: {
    requests: { type: 'string', default: '10000' },
    connections: { type: 'string', default: '100' },
    'soak-minutes': { type: 'string', default: '10' },
    'soak-connections': { type: 'string', default: '20' },
    'max-growth-mib-per-min': { type: 'string', default: '1' },
    'no-save': { type: 'boolean', default: false },
  },
});

/** Least-squares slope of y over x. */
function slope(points) {
  const n = points.length;
  if (n < 2) return 0;
  const mx = points.reduce((s, p) => s + p.x, 0) / n;
  const my = points.reduce((s, p) => s + p.y, 0) / n;
  const num = points.reduce((s, p) => s + (p.x - mx) * (p.y - my), 0);
  const den = points.reduce((s, p) => s + (p.x - mx) ** 2, 0);
  return den === 0 ? 0 : num / den;
}

/** autocannon for a fixed number of requests (cannon() runs for a duration). */
function fixedAmount(request, amount, connections) {
  const autocannon = require('autocannon');
  return new Promise((resolve, reject) => {
    const lat = [];
    const inst = autocannon({ ...request, amount, connections, pipelining: 1, timeout: 30 }, (err, result) =>
      err ? reject(err) : resolve({ result, lat }),
    );
    inst.on('response', (_c, status, _b, ms) => {
      if (status >= 200 && status < 300) lat.push(ms);
    });
  });
}

async function main() {
  dropDatabasesAtEnd();
  const started = new Date();
  const broker = await startBroker('soak');
  const client = await registerBenchClient(broker);
  await checkedToken(broker, client);
  const request = { url: broker.tokenEndpoint, ...tokenRequest(client) };

  // ---- load: N requests at concurrency C, zero errors
  const requests = Number(opts.requests);
  const connections = Number(opts.connections);
  log(`load: ${requests} token requests at concurrency ${connections}`);
  const t0 = Date.now();
  const { result, lat } = await fixedAmount(request, requests, connections);
  const seconds = (Date.now() - t0) / 1000;
  const load = {
    requests: result.requests.total,
    ok2xx: result['2xx'],
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
    seconds: round(seconds, 1),
    requestsPerSecond: round(result.requests.total / seconds, 0),
    latencyMs: percentiles(lat.sort((a, b) => a - b)),
    loadavg: loadavg(),
  };
  load.pass = load.ok2xx === requests && load.non2xx === 0 && load.errors === 0 && load.timeouts === 0;
  log(`load: ${JSON.stringify(load)}`);

  // ---- soak: steady traffic, RSS sampled every 10 s
  const minutes = Number(opts['soak-minutes']);
  const samples = [];
  let stop = false;
  const sampler = (async () => {
    const s0 = Date.now();
    while (!stop) {
      const { rssKiB } = memKiB(broker.pid);
      samples.push({ t: round((Date.now() - s0) / 1000, 0), rssMiB: round(rssKiB / 1024, 1) });
      await sleep(10_000);
    }
  })();
  log(`soak: ${minutes} min at concurrency ${opts['soak-connections']}, RSS every 10 s`);
  const soakRun = await cannon(request, {
    connections: Number(opts['soak-connections']),
    duration: Math.round(minutes * 60),
    recordLatency: true,
  });
  stop = true;
  await sampler;
  const half = samples.slice(Math.floor(samples.length / 2));
  const growth = slope(half.map((s) => ({ x: s.t / 60, y: s.rssMiB })));
  const soak = {
    minutes,
    requests: soakRun.result.requests.total,
    non2xx: soakRun.result.non2xx,
    errors: soakRun.result.errors,
    timeouts: soakRun.result.timeouts,
    requestsPerSecond: round(soakRun.result.requests.average, 0),
    latencyMs: percentiles(soakRun.lat.sort((a, b) => a - b)),
    rssMiB: {
      first: samples[0]?.rssMiB,
      afterOneMinute: samples.find((s) => s.t >= 60)?.rssMiB,
      max: Math.max(...samples.map((s) => s.rssMiB)),
      last: samples.at(-1)?.rssMiB,
    },
    secondHalfGrowthMiBPerMin: round(growth, 3),
    samples,
    loadavg: loadavg(),
  };
  soak.pass =
    soak.non2xx === 0 &&
    soak.errors === 0 &&
    soak.timeouts === 0 &&
    growth < Number(opts['max-growth-mib-per-min']);
  log(`soak: ${JSON.stringify({ ...soak, samples: `${samples.length} samples` })}`);

  const out = { format: 'meridian-load-soak/1', date: started.toISOString(), machine: machine(), load, soak };
  if (!opts['no-save']) {
    const file = path.join(
      BENCH_DIR,
      'results',
      `load-soak-${started.toISOString().replace(/[:.]/g, '-')}.json`,
    );
    fs.writeFileSync(file, `${JSON.stringify(out, null, 2)}\n`);
    log(`results: ${path.relative(process.cwd(), file)}`);
  }
  console.log(`| test | result |
| --- | --- |
| load: ${requests} token requests, concurrency ${connections} | ${load.ok2xx} × 200, ${load.non2xx} non-2xx, ${load.errors} errors, ${load.timeouts} timeouts; ${load.requestsPerSecond} req/s, p50 ${round(load.latencyMs.p50, 1)} ms, p99 ${round(load.latencyMs.p99, 1)} ms — ${load.pass ? 'PASS' : 'FAIL'} |
| soak: ${minutes} min, concurrency ${opts['soak-connections']} | ${soak.requests} requests, ${soak.non2xx} non-2xx, ${soak.errors} errors; RSS ${soak.rssMiB.first} → ${soak.rssMiB.last} MiB (max ${soak.rssMiB.max}), second half ${soak.secondHalfGrowthMiBPerMin} MiB/min — ${soak.pass ? 'PASS' : 'FAIL'} |`);
  return load.pass && soak.pass ? 0 : 2;
}

process.on('SIGINT', () => {
  void cleanup().then(() => process.exit(130));
});
process.on('exit', killAllNow);
main()
  .then(async (code) => {
    await cleanup();
    process.exit(code);
  })
  .catch(async (err) => {
    const step = err instanceof BenchError ? err.step : 'load-soak';
    console.error(`[bench] FAILED at ${step}: ${err.message}${err.detail ? `\n${err.detail}` : ''}`);
    await cleanup();
    process.exit(1);
  });
