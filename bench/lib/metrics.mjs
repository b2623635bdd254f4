// What a results file says in numbers: the headline metrics (for the summary and --compare) and
// the targets of issue 7, each met or missed.
import { fmtNum } from './svg.mjs';

const ok = (sc) => sc && !sc.failed;
const one = (v) => (v === null || v === undefined ? null : { median: v, min: v, max: v });

/** Headline metrics: { key, scenario, label, unit, better: 'higher'|'lower', value: {median,min,max} }. */
export function headline(results) {
  const S = results.scenarios ?? {};
  const out = [];
  const add = (scenario, key, label, unit, better, value) => {
    if (value && Number.isFinite(value.median))
      out.push({ scenario, key: `${scenario}.${key}`, label, unit, better, value });
  };
  if (ok(S.signing_floor))
    add('signing_floor', 'sign', 'crypto.sign ES256 per core', '/s', 'higher', S.signing_floor.sign);
  for (const name of ['client_credentials', 'introspection']) {
    const sc = S[name];
    if (!ok(sc)) continue;
    add(name, 'broker.rps', 'broker req/s', 'req/s', 'higher', sc.targets.broker.summary.rps);
    add(name, 'bare.rps', 'bare oidc-provider req/s', 'req/s', 'higher', sc.targets.bare.summary.rps);
    add(name, 'ratio', 'broker / bare', '×', 'higher', sc.ratio);
    add(name, 'broker.cpu', 'broker CPU per request', 'µs', 'lower', sc.targets.broker.summary.cpuUsPerReq);
    add(name, 'broker.p99', 'broker p99', 'ms', 'lower', sc.targets.broker.summary.p99);
  }
  if (ok(S.jwks)) {
    for (const [k, label] of [
      ['broker_jwks', 'broker /jwks req/s'],
      ['broker_bundle', 'trust bundle req/s'],
      ['bare_jwks', 'bare /jwks req/s'],
    ])
      add('jwks', `${k}.rps`, label, 'req/s', 'higher', S.jwks.targets[k].summary.rps);
  }
  if (ok(S.verifier)) {
    for (const [mode, m] of Object.entries(S.verifier.modes)) {
      add('verifier', `${mode}.raw`, `${mode}: raw jose verifications/s`, '/s', 'higher', m.raw);
      add('verifier', `${mode}.cold`, `${mode}: cold verifications/s`, '/s', 'higher', m.cold);
      add('verifier', `${mode}.warm`, `${mode}: warm verifications/s`, '/s', 'higher', m.warm);
      add('verifier', `${mode}.coldVsRaw`, `${mode}: cold / raw`, '×', 'higher', m.coldVsRaw);
      add('verifier', `${mode}.warmVsRaw`, `${mode}: warm / raw`, '×', 'higher', m.warmVsRaw);
    }
  }
  if (ok(S.sidecar)) {
    add(
      'sidecar',
      'sidecar.rps',
      'through the sidecar req/s',
      'req/s',
      'higher',
      S.sidecar.targets.sidecar.summary.rps,
    );
    add(
      'sidecar',
      'direct.rps',
      'service directly req/s',
      'req/s',
      'higher',
      S.sidecar.targets.direct.summary.rps,
    );
    add('sidecar', 'ratio', 'sidecar / direct', '×', 'higher', S.sidecar.ratio);
    add('sidecar', 'addedP99', 'added p99', 'ms', 'lower', one(S.sidecar.addedMs.p99));
  }
  if (ok(S.login)) {
    for (const [name, f] of Object.entries(S.login.flows)) {
      add('login', `${name}.p50`, `${f.label}: p50`, 'ms', 'lower', { ...f.p50, median: f.pooled.p50 });
      add('login', `${name}.p99`, `${f.label}: p99`, 'ms', 'lower', { ...f.p99, median: f.pooled.p99 });
    }
  }
  if (ok(S.refresh)) {
    add('refresh', 'rps', 'refresh_token grants/s', '/s', 'higher', S.refresh.rps);
    add('refresh', 'cpu', 'broker CPU per refresh', 'µs', 'lower', S.refresh.cpuUsPerReq);
  }
  if (ok(S.growth_clients)) {
    for (const p of S.growth_clients.curve) {
      add(
        'growth_clients',
        `${p.clients}.spread.rps`,
        `${p.clients} clients, spread: req/s`,
        'req/s',
        'higher',
        p.targets.spread.summary.rps,
      );
      add(
        'growth_clients',
        `${p.clients}.hot.rps`,
        `${p.clients} clients, one hot: req/s`,
        'req/s',
        'higher',
        p.targets.hot.summary.rps,
      );
      add(
        'growth_clients',
        `${p.clients}.spread.p99`,
        `${p.clients} clients, spread: p99`,
        'ms',
        'lower',
        p.targets.spread.summary.p99,
      );
    }
  }
  if (ok(S.growth_regions)) {
    for (const p of S.growth_regions.curve) {
      add(
        'growth_regions',
        `${p.regions}.token.rps`,
        `${p.regions} regions: token req/s`,
        'req/s',
        'higher',
        p.targets.token.summary.rps,
      );
      add(
        'growth_regions',
        `${p.regions}.bundle.rps`,
        `${p.regions} regions: trust bundle req/s`,
        'req/s',
        'higher',
        p.targets.bundle.summary.rps,
      );
    }
  }
  if (ok(S.growth_federations)) {
    for (const p of S.growth_federations.curve) {
      const r = p.rounds ?? [];
      add(
        'growth_federations',
        `${p.federations}.p50`,
        `${p.federations} federations: login p50`,
        'ms',
        'lower',
        {
          median: p.login.p50,
          min: Math.min(...r.map((x) => x.login.p50)),
          max: Math.max(...r.map((x) => x.login.p50)),
        },
      );
      add(
        'growth_federations',
        `${p.federations}.p99`,
        `${p.federations} federations: login p99`,
        'ms',
        'lower',
        {
          median: p.login.p99,
          min: Math.min(...r.map((x) => x.login.p99)),
          max: Math.max(...r.map((x) => x.login.p99)),
        },
      );
    }
  }
  if (ok(S.growth_sessions))
    add(
      'growth_sessions',
      'rssPer10k',
      'RSS per 10,000 sessions',
      'MiB',
      'lower',
      one(S.growth_sessions.per10k.rssMiB),
    );
  if (ok(S.growth_subjects))
    add(
      'growth_subjects',
      'regionPer100k',
      'region database per 100,000 subjects',
      'MiB',
      'lower',
      one(S.growth_subjects.per100k.regionDatabaseMiB),
    );
  return out;
}

const x = (v, d = 2) => `${fmtNum(v, d)}×`;
const range = (r, d = 2, unit = '×') =>
  r && Number.isFinite(r.min) && Number.isFinite(r.max) && fmtNum(r.min, d) !== fmtNum(r.max, d)
    ? ` (rounds ${fmtNum(r.min, d)}–${fmtNum(r.max, d)}${unit})`
    : '';

/** The targets of issue 7: { id, scenario, target, measured, met (true/false/null) }. */
export function targets(results) {
  const S = results.scenarios ?? {};
  const rows = [];
  const add = (id, scenario, target, measured, met, note) =>
    rows.push({ id, scenario, target, measured, met, note });
  const cc = S.client_credentials;
  if (ok(cc) && cc.ratio)
    add(
      'cc-ratio',
      'client_credentials',
      'client_credentials ≥ 0.8× bare oidc-provider (req/s)',
      `${x(cc.ratio.median)}${range(cc.ratio)}`,
      cc.ratio.median >= 0.8,
    );
  const v = S.verifier;
  if (ok(v)) {
    for (const [mode, m] of Object.entries(v.modes)) {
      add(
        `verifier-cold-${mode}`,
        'verifier',
        `verifier cold ≥ 0.9× raw jose (${mode})`,
        `${x(m.coldVsRaw.median)}${range(m.coldVsRaw)}`,
        m.coldVsRaw.median >= 0.9,
      );
      add(
        `verifier-warm-${mode}`,
        'verifier',
        `verifier warm ≥ 20× raw jose (${mode})`,
        `${x(m.warmVsRaw.median, 1)}${range(m.warmVsRaw, 1)}`,
        m.warmVsRaw.median >= 20,
      );
    }
  }
  const sc = S.sidecar;
  if (ok(sc)) {
    add(
      'sidecar-ratio',
      'sidecar',
      'sidecar ≥ 0.5× direct throughput (trivial service)',
      `${x(sc.ratio.median)}${range(sc.ratio)}`,
      sc.ratio.median >= 0.5,
    );
    add(
      'sidecar-p99',
      'sidecar',
      `sidecar adds < 5 ms p99 at concurrency ${sc.connections}`,
      `${fmtNum(sc.addedMs.p99, 2)} ms (p50 ${fmtNum(sc.addedMs.p50, 2)} ms)`,
      sc.addedMs.p99 < 5,
    );
  }
  const l = S.login;
  if (ok(l)) {
    const same = l.flows.same_region;
    const hand = l.flows.handoff;
    if (same)
      add(
        'login-same',
        'login',
        'federated login p99 < 150 ms, same region',
        `${fmtNum(same.pooled.p99, 1)} ms over ${same.pooled.n} logins (p50 ${fmtNum(same.pooled.p50, 1)} ms)`,
        same.pooled.p99 < 150,
      );
    if (hand)
      add(
        'login-handoff',
        'login',
        'federated login p99 < 300 ms, with hand-off',
        `${fmtNum(hand.pooled.p99, 1)} ms over ${hand.pooled.n} logins (p50 ${fmtNum(hand.pooled.p50, 1)} ms)`,
        hand.pooled.p99 < 300,
      );
  }
  const gc = S.growth_clients;
  if (ok(gc) && gc.curve.length > 1) {
    const first = gc.curve[0];
    const last = gc.curve.at(-1);
    for (const [k, label] of [
      ['spread', 'requests spread over all clients'],
      ['hot', 'one client among them'],
    ]) {
      const r = last.targets[k].summary.rps.median / first.targets[k].summary.rps.median;
      add(
        `growth-clients-${k}`,
        'growth_clients',
        `token req/s at ${fmtNum(last.clients, 0)} clients ≥ 0.9× at ${fmtNum(first.clients, 0)} (${label})`,
        x(r),
        r >= 0.9,
      );
    }
  }
  const gs = S.growth_sessions;
  if (ok(gs) && gs.fits?.rss)
    add(
      'sessions-linear',
      'growth_sessions',
      'memory linear in sessions',
      `${fmtNum(gs.per10k.rssMiB, 1)} MiB RSS per 10,000 sessions (heap ${fmtNum(gs.per10k.heapMiB, 1)} MiB); largest deviation from the line ${fmtNum(gs.fits.rss.maxAbsResidual / 2 ** 20, 1)} MiB`,
      gs.linear,
    );
  return rows;
}
