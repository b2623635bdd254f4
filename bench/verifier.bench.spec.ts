/**
 * `libs/verifier` throughput on 1,000 distinct real broker tokens (ES256, RFC 9068):
 *
 * - raw:  `jose.jwtVerify` with `createLocalJWKSet` over the bundle's keys (issuer, audience,
 *         typ, algorithms checked) — the floor any verifier pays;
 * - cold: `verifier.verify` with the cache off (every check of the SDK, every time);
 * - warm: `verifier.verify` on cache hits.
 *
 * Raw and cold alternate round by round in one process; each figure is the median of the
 * rounds. Targets: cold ≥ 0.9× raw, warm ≥ 20× raw. Sequential (one verify awaited after the
 * other: latency-bound, as one request path sees it) and concurrent (batches of 64 in flight:
 * WebCrypto runs on the libuv pool, as a busy service sees it).
 *
 *   TEST_DATABASE_URL=postgres://… npx vitest run --config vitest.bench.config.mts bench/verifier.bench.spec.ts
 *   (VERIFIER_BENCH_ROUNDS=9 to change the round count; VERIFIER_BENCH_RESULTS_DIR=bench/results
 *   to keep the JSON report)
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { createLocalJWKSet, jwtVerify, type JSONWebKeySet } from 'jose';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createVerifier } from '../libs/verifier/src';
import {
  clientCredentials,
  freshDatabases,
  registerService,
  spawnBroker,
  type SpawnedBroker,
} from '../test/support/broker';

const TOKENS = 1000;
const ROUNDS = Number(process.env.VERIFIER_BENCH_ROUNDS ?? 11);
const WARM_PASSES = 20;
const BATCH = 64;
const AUDIENCE = 'https://orders.bench.local';

let broker: SpawnedBroker;
let dbs: Awaited<ReturnType<typeof freshDatabases>>;
let tokens: string[];
let bundleUrl: string;
let jwks: JSONWebKeySet;

beforeAll(async () => {
  dbs = await freshDatabases('verifierbench');
  broker = await spawnBroker({ controlUrl: dbs.control.url, regionUrl: dbs.region.eu!.url });
  const client = await registerService(broker, {
    resourceId: 'orders',
    audience: AUDIENCE,
    scopes: ['orders:read'],
    clientId: 'bench-client',
    clientScope: 'orders:read',
    ttl: 3600,
  });
  tokens = [];
  while (tokens.length < TOKENS) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(20, TOKENS - tokens.length) }, () =>
        clientCredentials(broker.url, client, AUDIENCE, 'orders:read'),
      ),
    );
    for (const r of batch) tokens.push(r.body.access_token as string);
  }
  expect(new Set(tokens).size).toBe(TOKENS);
  bundleUrl = `${broker.url}/.well-known/meridian/trust-bundle`;
  const bundle = (await (await fetch(bundleUrl)).json()) as { regions: { jwks: JSONWebKeySet }[] };
  jwks = bundle.regions[0]!.jwks;
}, 300_000);

afterAll(async () => {
  await broker?.stop();
  await dbs?.drop();
});

type Verify = (token: string) => Promise<unknown>;

async function sequential(verify: Verify, passes = 1): Promise<number> {
  const t0 = performance.now();
  for (let p = 0; p < passes; p++) for (const t of tokens) await verify(t);
  return (passes * tokens.length) / ((performance.now() - t0) / 1000);
}

async function concurrent(verify: Verify, passes = 1): Promise<number> {
  const t0 = performance.now();
  for (let p = 0; p < passes; p++) {
    for (let i = 0; i < tokens.length; i += BATCH) await Promise.all(tokens.slice(i, i + BATCH).map(verify));
  }
  return (passes * tokens.length) / ((performance.now() - t0) / 1000);
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

it('measures cold and warm verifications per second against raw jose.jwtVerify', async () => {
  const localSet = createLocalJWKSet(jwks);
  const raw: Verify = (t) =>
    jwtVerify(t, localSet, {
      issuer: broker.issuer,
      audience: AUDIENCE,
      typ: 'at+jwt',
      algorithms: ['ES256'],
    });
  const cold = createVerifier({ trustBundleUrl: bundleUrl, audience: AUDIENCE, cache: false });
  const warm = createVerifier({
    trustBundleUrl: bundleUrl,
    audience: AUDIENCE,
    cache: { maxEntries: 10_000 },
  });
  const coldVerify: Verify = (t) => cold.verify(t);
  const warmVerify: Verify = (t) => warm.verify(t);
  await cold.ready();
  await warm.ready();
  // Warm-up (JIT, key import, the cache filled) — discarded.
  for (const mode of [sequential, concurrent]) {
    await mode(raw);
    await mode(coldVerify);
    await mode(warmVerify);
  }

  const results: Record<string, Record<string, number>> = {};
  for (const [name, mode] of [
    ['sequential', sequential],
    ['concurrent', concurrent],
  ] as const) {
    const r: number[] = [];
    const c: number[] = [];
    const w: number[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      // Alternate which goes first so drift (thermal, GC) does not favour one side.
      if (round % 2 === 0) {
        r.push(await mode(raw));
        c.push(await mode(coldVerify));
      } else {
        c.push(await mode(coldVerify));
        r.push(await mode(raw));
      }
      w.push(await mode(warmVerify, WARM_PASSES));
    }
    results[name] = {
      rawPerSecond: Math.round(median(r)),
      coldPerSecond: Math.round(median(c)),
      warmPerSecond: Math.round(median(w)),
      coldVsRaw: +(median(c) / median(r)).toFixed(2),
      warmVsRaw: +(median(w) / median(r)).toFixed(1),
    };
  }

  const report = {
    bench: 'verifier',
    at: new Date().toISOString(),
    node: process.version,
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model,
    loadavg: loadavg().map((l) => +l.toFixed(2)),
    tokens: TOKENS,
    rounds: ROUNDS,
    alg: 'ES256',
    targets: { coldVsRaw: 0.9, warmVsRaw: 20 },
    results,
  };
  console.log(JSON.stringify(report, null, 2));
  const dir = process.env.VERIFIER_BENCH_RESULTS_DIR;
  if (dir) {
    mkdirSync(dir, { recursive: true });
    writeFileSync(
      join(dir, `verifier-${report.at.replace(/[:.]/g, '-')}.json`),
      `${JSON.stringify(report, null, 2)}\n`,
    );
  }
  // Every token verified by all three (the figures are of successful verifications).
  expect((await cold.verify(tokens[0]!)).audience).toBe(AUDIENCE);
});
