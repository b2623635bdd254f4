// Scenarios on one broker and one bare oidc-provider, started once per run and shared:
// client_credentials, introspection, jwks, verifier; and the signing floor.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  BENCH_DIR,
  BenchError,
  basicAuth,
  compareTargets,
  fmt,
  getLogDir,
  http,
  log,
  runWorker,
  spread,
  step,
} from '../common.mjs';
import {
  AUDIENCE,
  OPAQUE_AUDIENCE,
  checkedToken,
  registerBenchClient,
  startBare,
  startBroker,
  tokenRequest,
} from '../broker.mjs';
import { hasSharedStack, ratio, sharedStack } from './shared.mjs';
import { summarizeProfile } from '../profile.mjs';

const tokenStack = sharedStack;

const target = (name, label, proc, request) => ({
  name,
  label,
  request,
  pids: [{ name: 'server', pid: proc.pid }],
});

export const clientCredentials = {
  name: 'client_credentials',
  title: 'client_credentials token (ES256 JWT access token, client_secret_basic)',
  async run(ctx) {
    const { client, bare, broker } = await tokenStack();
    const req = tokenRequest(client);
    const targets = [
      target('broker', 'Meridian broker', broker, { url: broker.tokenEndpoint, ...req }),
      target('bare', 'bare oidc-provider', bare, { url: bare.tokenEndpoint, ...req }),
    ];
    const res = await compareTargets(targets, ctx.load);
    const out = {
      request: { body: req.body, auth: 'client_secret_basic', audience: AUDIENCE },
      tokens: { broker: strip(broker.verification), bare: strip(bare.verification) },
      targets: res,
      ratio: ratio(res.broker.summary.rps, res.bare.summary.rps),
      cpuRatio: ratio(res.broker.summary.cpuUsPerReq, res.bare.summary.cpuUsPerReq),
    };
    if (ctx.opts.profile) out.profile = await profileTokenEndpoint(ctx, client);
    return out;
  },
};

function strip(v) {
  const { token: _t, ...rest } = v;
  return rest;
}

/**
 * `--profile`: a separate broker (and bare provider) under `node --cpu-prof`, one warm-up and one
 * measured run of the same load, then the profile summarised by module and function.
 */
async function profileTokenEndpoint(ctx, client) {
  const dir = fs.mkdtempSync(path.join(getLogDir(), 'cpuprof-'));
  const out = {};
  for (const which of ['broker', 'bare']) {
    const pdir = path.join(dir, which);
    fs.mkdirSync(pdir);
    const args = ['--cpu-prof', `--cpu-prof-dir=${pdir}`, '--cpu-prof-interval=200'];
    const srv = await step(`profile: start ${which} under --cpu-prof`, async () => {
      if (which === 'bare') return startBare('prof', client, args);
      const b = await startBroker('prof', { nodeArgs: args });
      await registerBenchClient(b, { secret: client.clientSecret });
      return b;
    });
    await checkedToken(srv, client);
    const t = target(which, which, srv, { url: srv.tokenEndpoint, ...tokenRequest(client) });
    const r = await compareTargets([t], { ...ctx.load, rounds: 1 });
    await srv.proc.stop(15_000);
    const files = fs.readdirSync(pdir).filter((f) => f.endsWith('.cpuprofile'));
    if (!files.length)
      throw new BenchError(
        `profile: ${which}`,
        `no .cpuprofile written in ${pdir} (did the process exit cleanly on SIGTERM?)`,
      );
    const summary = summarizeProfile(path.join(pdir, files[0]), {
      top: 25,
      window: r[which].rounds[0].windowUs,
    });
    const keep = path.join(BENCH_DIR, 'results', 'profiles');
    summary.file = undefined;
    summary.rps = r[which].summary.rps.median;
    summary.cpuUsPerReq = r[which].summary.cpuUsPerReq?.median;
    out[which] = summary;
    if (ctx.opts.keepProfiles) {
      fs.mkdirSync(keep, { recursive: true });
      const dest = path.join(keep, `${ctx.runStamp}-${which}.cpuprofile`);
      fs.copyFileSync(path.join(pdir, files[0]), dest);
      summary.file = path.relative(BENCH_DIR, dest);
    }
    log(
      `profile ${which}: busy ${summary.busyMs} ms; ${summary.groups
        .slice(0, 4)
        .map((g) => `${g.name} ${g.percent}%`)
        .join(', ')}`,
    );
  }
  return out;
}

export const introspection = {
  name: 'introspection',
  title:
    'introspection (RFC 7662): broker with its JWT access token, bare oidc-provider with an opaque token',
  async run(ctx) {
    const { client, bare, broker } = await tokenStack();
    const jwt = (await checkedToken(broker, client)).token;
    const opaque = (await checkedToken(bare, client, { resource: OPAQUE_AUDIENCE, format: 'opaque' })).token;
    const mk = (srv, token) => ({
      url: `${srv.issuer}/token/introspection`,
      method: 'POST',
      headers: {
        authorization: basicAuth(client.clientId, client.clientSecret),
        'content-type': 'application/x-www-form-urlencoded',
        accept: 'application/json',
      },
      body: new URLSearchParams({ token }).toString(),
    });
    const reqs = { broker: mk(broker, jwt), bare: mk(bare, opaque) };
    for (const [name, r] of Object.entries(reqs)) {
      const res = await http(`introspection: check ${name}`, r.url, r);
      if (res.status !== 200 || res.json?.active !== true)
        throw new BenchError(
          `introspection: check ${name}`,
          `expected 200 {active:true}, got ${res.status}`,
          res.text.slice(0, 1000),
        );
      reqs[name].answerKeys = Object.keys(res.json).sort();
    }
    const res = await compareTargets(
      [
        target('broker', 'Meridian broker (JWT)', broker, reqs.broker),
        target('bare', 'bare oidc-provider (opaque)', bare, reqs.bare),
      ],
      ctx.load,
    );
    return {
      answers: { broker: reqs.broker.answerKeys, bare: reqs.bare.answerKeys },
      targets: res,
      ratio: ratio(res.broker.summary.rps, res.bare.summary.rps),
      cpuRatio: ratio(res.broker.summary.cpuUsPerReq, res.bare.summary.cpuUsPerReq),
    };
  },
};

export const jwks = {
  name: 'jwks',
  title: 'JWKS and trust bundle',
  async run(ctx) {
    const { bare, broker } = await tokenStack();
    const urls = {
      broker_jwks: `${broker.issuer}/jwks`,
      broker_bundle: `${broker.issuer}/.well-known/meridian/trust-bundle`,
      bare_jwks: `${bare.issuer}/jwks`,
    };
    const sizes = {};
    for (const [name, url] of Object.entries(urls)) {
      const res = await http(`jwks: check ${name}`, url);
      const keys = res.json?.keys ?? res.json?.regions?.flatMap((r) => r.jwks.keys);
      if (res.status !== 200 || !keys?.length)
        throw new BenchError(
          `jwks: check ${name}`,
          `GET ${url} → ${res.status}, no keys`,
          res.text.slice(0, 500),
        );
      sizes[name] = {
        bytes: Buffer.byteLength(res.text),
        keys: keys.length,
        cacheControl: res.headers.get('cache-control'),
      };
    }
    const res = await compareTargets(
      [
        target('broker_jwks', 'Meridian broker /jwks', broker, { url: urls.broker_jwks }),
        target('broker_bundle', 'Meridian trust bundle', broker, { url: urls.broker_bundle }),
        target('bare_jwks', 'bare oidc-provider /jwks', bare, { url: urls.bare_jwks }),
      ],
      ctx.load,
    );
    return {
      sizes,
      targets: res,
      ratio: ratio(res.broker_jwks.summary.rps, res.bare_jwks.summary.rps),
      bundleRatio: ratio(res.broker_bundle.summary.rps, res.bare_jwks.summary.rps),
    };
  },
};

export const verifier = {
  name: 'verifier',
  title: 'token verification: libs/verifier cold and warm vs raw jose.jwtVerify',
  async run(ctx) {
    const { client, broker } = await tokenStack();
    const n = ctx.opts.quick ? 200 : 1000;
    const tokens = [];
    await step('verifier: fetch distinct broker tokens', async () => {
      while (tokens.length < n) {
        const batch = await Promise.all(
          Array.from({ length: Math.min(20, n - tokens.length) }, () =>
            http('verifier: token', broker.tokenEndpoint, tokenRequest(client)),
          ),
        );
        for (const r of batch) {
          if (r.status !== 200) throw new Error(`token request → ${r.status} ${r.text.slice(0, 300)}`);
          tokens.push(r.json.access_token);
        }
      }
    });
    const r = await runWorker('verifier-worker', path.join(BENCH_DIR, 'workers', 'verifier.mjs'), {
      bundleUrl: `${broker.issuer}/.well-known/meridian/trust-bundle`,
      issuer: broker.issuer,
      audience: AUDIENCE,
      tokens,
      rounds: ctx.opts.quick ? 3 : Math.max(ctx.load.rounds, 5),
      warmPasses: ctx.opts.quick ? 5 : 20,
    });
    const out = { tokens: r.tokens, rounds: r.rounds, warmPasses: r.warmPasses, batch: r.batch, modes: {} };
    for (const [mode, v] of Object.entries(r.result)) {
      const raw = spread(v.raw);
      const cold = spread(v.cold);
      const warm = spread(v.warm);
      out.modes[mode] = {
        raw,
        cold,
        warm,
        coldVsRaw: ratio(cold, raw),
        warmVsRaw: ratio(warm, raw),
        rounds: v,
      };
      log(
        `${mode}: raw ${fmt(raw.median)}/s, cold ${fmt(cold.median)}/s (${fmt(cold.median / raw.median, 2)}×), warm ${fmt(warm.median)}/s (${fmt(warm.median / raw.median, 1)}×)`,
      );
    }
    return out;
  },
};

export const signingFloor = {
  name: 'signing_floor',
  title: 'signing floor: raw crypto.sign ES256, one core, one process',
  async run(ctx) {
    // The signing input of a real broker token, when the stack is up; else one of the same size.
    let signingInput = 'x'.repeat(620);
    if (hasSharedStack()) {
      const { broker, client } = await sharedStack();
      const t = (await checkedToken(broker, client)).token;
      signingInput = t.split('.').slice(0, 2).join('.');
    }
    const r = await runWorker('sign-worker', path.join(BENCH_DIR, 'workers', 'sign.mjs'), {
      signingInput,
      seconds: ctx.opts.quick ? 1 : 3,
      rounds: ctx.opts.quick ? 2 : Math.max(ctx.load.rounds, 5),
    });
    const sign = spread(r.sign);
    log(
      `crypto.sign ES256: ${fmt(sign.median)}/s per core (${fmt(1e6 / sign.median, 1)} µs each); subtle.sign sequential ${fmt(spread(r.subtleSequential).median)}/s`,
    );
    return {
      signingInputBytes: r.bytes,
      sign,
      usPerSign: 1e6 / sign.median,
      verify: spread(r.verify),
      subtleSequential: spread(r.subtleSequential),
      rounds: { sign: r.sign, verify: r.verify, subtleSequential: r.subtleSequential },
      cores: os.cpus().length,
    };
  },
};
