// Login-shaped scenarios: run by bench/login.bench.spec.ts (vitest, on the test fixtures: two
// brokers, real upstream IdPs) in a child process with a plan; summarised here.
import fs from 'node:fs';
import path from 'node:path';
import {
  BenchError,
  DB_PREFIX,
  ROOT,
  describeExit,
  fmt,
  getLogDir,
  log,
  percentiles,
  pgAdminUrl,
  sleep,
  spread,
  startProcess,
  tail,
} from '../common.mjs';
import { BENCH_BROKER_ENV, assertBuilt } from '../broker.mjs';
import { linearFit, points } from './growth.mjs';
import { summarizeProfile } from '../profile.mjs';

let planNo = 0;

/** Runs the vitest driver with `plan`; resolves with what it wrote. */
async function drive(mode, plan, timeoutMs = 3 * 3600_000) {
  assertBuilt();
  const n = ++planNo;
  const planPath = path.join(getLogDir(), `login-plan-${n}.json`);
  const out = path.join(getLogDir(), `login-result-${n}.json`);
  // Databases named bench_<run>_…: dropped with the run's others even if the driver is killed.
  fs.writeFileSync(
    planPath,
    JSON.stringify({ ...plan, mode, out, prefix: `${DB_PREFIX}_${mode}`, brokerEnv: BENCH_BROKER_ENV }),
  );
  const vitest = path.join(ROOT, 'node_modules', 'vitest', 'vitest.mjs');
  const proc = startProcess(
    `login-driver-${mode}`,
    process.execPath,
    [vitest, 'run', '--config', 'vitest.bench.config.mts', 'bench/login.bench.spec.ts'],
    {
      env: {
        ...process.env,
        BENCH_LOGIN_PLAN: planPath,
        TEST_DATABASE_URL: pgAdminUrl(),
        FORCE_COLOR: '0',
        NO_COLOR: '1',
      },
      echo: /^\[(login|refresh|federations|sessions)\]/,
    },
  );
  const exit = await Promise.race([proc.exited, sleep(timeoutMs).then(() => null)]);
  if (!exit) {
    await proc.stop();
    throw new BenchError(
      `${mode}: login driver`,
      `no result after ${timeoutMs / 1000} s`,
      `log ${proc.logPath}:\n${tail(proc.logPath, 60)}`,
    );
  }
  if (exit.code !== 0 || !fs.existsSync(out))
    throw new BenchError(
      `${mode}: login driver (vitest bench/login.bench.spec.ts)`,
      `${describeExit(exit)}`,
      `log ${proc.logPath}:\n${tail(proc.logPath, 80)}`,
    );
  return JSON.parse(fs.readFileSync(out, 'utf8'));
}

export const login = {
  name: 'login',
  title: 'full federated login: broker (same region, hand-off) vs straight against the upstream IdP',
  async run(ctx) {
    const profileDir = ctx.opts.profile ? fs.mkdtempSync(path.join(getLogDir(), 'login-prof-')) : undefined;
    const r = await drive('login', {
      rounds: ctx.opts.loginRounds,
      perRound: ctx.opts.logins,
      warmup: ctx.opts.quick ? 2 : 5,
      profileDir,
    });
    const flows = {};
    for (const [name, v] of Object.entries(r.flows)) {
      flows[name] = {
        label: v.label,
        pooled: percentiles(v.samples),
        p50: spread(v.rounds.map((x) => x.p50)),
        p99: spread(v.rounds.map((x) => x.p99)),
        cpuMsPerLogin: {
          eu: spread(v.rounds.map((x) => x.cpuMsPerLogin.eu)),
          us: spread(v.rounds.map((x) => x.cpuMsPerLogin.us)),
          driver: spread(v.rounds.map((x) => x.cpuMsPerLogin.driver)),
        },
        rounds: v.rounds,
        samples: v.samples,
      };
      log(
        `${name}: p50 ${fmt(flows[name].pooled.p50, 1)} ms, p99 ${fmt(flows[name].pooled.p99, 1)} ms over ${flows[name].pooled.n} logins`,
      );
    }
    const out = { rounds: ctx.opts.loginRounds, perRound: ctx.opts.logins, flows };
    if (profileDir) {
      // The eu broker during the same-region logins: every round's window.
      out.profile = profileOf(
        profileDir,
        r.pids?.eu,
        r.flows.same_region.rounds.map((x) => x.windowUs),
      );
      if (out.profile)
        log(
          `profile eu broker (same-region logins): ${out.profile.groups
            .slice(0, 5)
            .map((g) => `${g.name} ${g.percent}%`)
            .join(', ')}`,
        );
    }
    return out;
  },
};

/** The summarised CPU profile of the broker with `pid` in `dir`, over the given windows. */
function profileOf(dir, pid, windows) {
  const file = fs.readdirSync(dir).find((f) => f.includes(`.${pid}.`) && f.endsWith('.cpuprofile'));
  if (!file) {
    log(`WARNING: no CPU profile of the broker (pid ${pid}) in ${dir}`);
    return undefined;
  }
  const profile = summarizeProfile(path.join(dir, file), { top: 25, windows });
  profile.file = undefined;
  return profile;
}

export const refresh = {
  name: 'refresh',
  title: 'refresh_token grants (rotation, reuse detection) at the broker',
  async run(ctx) {
    const profileDir = ctx.opts.profile ? fs.mkdtempSync(path.join(getLogDir(), 'refresh-prof-')) : undefined;
    const r = await drive('refresh', {
      rounds: ctx.load.rounds,
      seconds: ctx.load.duration,
      warmupSeconds: ctx.load.warmup,
      concurrency: 8,
      perRound: 0,
      warmup: 0,
      profileDir,
    });
    const s = (k) => spread(r.rounds.map((x) => x[k]));
    const out = {
      concurrency: r.concurrency,
      rps: s('rps'),
      p50: s('p50'),
      p99: s('p99'),
      cpuUsPerReq: s('cpuUsPerReq'),
      cpuPercent: s('cpuPercent'),
      rounds: r.rounds,
    };
    if (profileDir) {
      // The eu broker's profile (file names carry the pid), the last measured round's samples.
      const file = fs
        .readdirSync(profileDir)
        .find((f) => f.includes(`.${r.pids.eu}.`) && f.endsWith('.cpuprofile'));
      if (!file) log(`WARNING: no CPU profile of the eu broker (pid ${r.pids.eu}) in ${profileDir}`);
      else {
        out.profile = summarizeProfile(path.join(profileDir, file), {
          top: 25,
          window: r.rounds.at(-1).windowUs,
        });
        out.profile.file = undefined;
        log(
          `profile eu broker: ${out.profile.groups
            .slice(0, 4)
            .map((g) => `${g.name} ${g.percent}%`)
            .join(', ')}`,
        );
      }
    }
    return out;
  },
};

export const growthFederations = {
  name: 'growth_federations',
  title: 'login latency vs federations configured',
  async run(ctx) {
    const counts = points([10, 100, 1000], ctx.opts.scale, 10);
    const r = await drive('federations', {
      counts,
      rounds: ctx.opts.growthRounds,
      perRound: Math.max(5, Math.round(ctx.opts.logins / 2)),
      warmup: ctx.opts.quick ? 1 : 3,
    });
    return { counts, curve: r.curve };
  },
};

export const growthSessions = {
  name: 'growth_sessions',
  title: 'broker memory (RSS) vs active sessions',
  async run(ctx) {
    const counts = points([0, 2500, 5000, 7500, 10_000], ctx.opts.scale, 1);
    const r = await drive('sessions', { counts, concurrency: 4, rounds: 1, perRound: 0, warmup: 0 });
    // The first logins also warm the broker up (code compiled, caches and pools filled): the
    // slope is fitted from the first point with sessions on; the point before any login is the
    // baseline.
    const fitted = r.curve.filter((c) => c.sessions > 0);
    const xs = fitted.map((c) => c.sessions);
    const rss = linearFit(
      xs,
      fitted.map((c) => c.rssKiB * 1024),
    );
    const heap = linearFit(
      xs,
      fitted.map((c) => c.heapUsedBytes),
    );
    const db = linearFit(
      xs,
      fitted.map((c) => c.regionDatabaseBytes),
    );
    const meanRss = fitted.reduce((a, c) => a + c.rssKiB * 1024, 0) / fitted.length;
    return {
      counts,
      concurrency: r.concurrency,
      curve: r.curve,
      fittedFrom: xs[0],
      baseline: r.curve.find((c) => c.sessions === 0) ?? null,
      per10k: {
        rssMiB: rss ? (rss.slope * 10_000) / 2 ** 20 : null,
        heapMiB: heap ? (heap.slope * 10_000) / 2 ** 20 : null,
        regionDatabaseMiB: db ? (db.slope * 10_000) / 2 ** 20 : null,
      },
      fits: { rss, heap, db },
      // Linear: no point further from the fitted line than 10 % of the mean RSS (or 8 MiB).
      linear: rss ? rss.maxAbsResidual <= Math.max(8 * 2 ** 20, 0.1 * meanRss) : null,
    };
  },
};
