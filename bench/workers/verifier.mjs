// Token verification, in a process of its own (a clean heap, nothing else running in it):
// `libs/verifier` cold (cache off: every check, every time) and warm (cache hits) against raw
// `jose.jwtVerify` with the same checks (issuer, audience, typ, algorithm), on distinct real
// broker tokens. Raw and cold alternate round by round; warm runs each round after them.
// Sequential (one verify awaited after the other, as one request path sees it) and concurrent
// (batches in flight: WebCrypto runs on the libuv pool, as a busy service sees it).
//
// Input: a JSON file (argv[2]) { bundleUrl, issuer, audience, tokens[], rounds, warmPasses, batch }.
// Output: one JSON message over IPC.
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { createLocalJWKSet, jwtVerify } from 'jose';

const require = createRequire(import.meta.url);
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const { createVerifier } = require(path.join(ROOT, 'dist/libs/verifier/src/index.js'));

const cfg = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const { tokens, audience, issuer, bundleUrl } = cfg;
const rounds = cfg.rounds ?? 7;
const warmPasses = cfg.warmPasses ?? 20;
const batch = cfg.batch ?? 64;

const bundle = await (await fetch(bundleUrl)).json();
const jwks = bundle.regions.find((r) => r.issuer === issuer)?.jwks;
if (!jwks) throw new Error(`issuer ${issuer} not in the trust bundle`);
const localSet = createLocalJWKSet(jwks);
const raw = (t) => jwtVerify(t, localSet, { issuer, audience, typ: 'at+jwt', algorithms: ['ES256'] });
const coldV = createVerifier({ trustBundleUrl: bundleUrl, audience, cache: false });
const warmV = createVerifier({
  trustBundleUrl: bundleUrl,
  audience,
  cache: { maxEntries: tokens.length * 2 },
});
await coldV.ready();
await warmV.ready();
const cold = (t) => coldV.verify(t);
const warm = (t) => warmV.verify(t);

async function sequential(verify, passes = 1) {
  const t0 = performance.now();
  for (let p = 0; p < passes; p++) for (const t of tokens) await verify(t);
  return (passes * tokens.length) / ((performance.now() - t0) / 1000);
}
async function concurrent(verify, passes = 1) {
  const t0 = performance.now();
  for (let p = 0; p < passes; p++)
    for (let i = 0; i < tokens.length; i += batch) await Promise.all(tokens.slice(i, i + batch).map(verify));
  return (passes * tokens.length) / ((performance.now() - t0) / 1000);
}

// Every token verifies with all three before anything is timed.
for (const t of tokens) {
  await raw(t);
  const v = await cold(t);
  if (v.audience !== audience) throw new Error(`verifier returned audience ${v.audience}`);
  await warm(t);
}
// Warm-up (JIT, key import, the cache filled), discarded.
for (const mode of [sequential, concurrent]) for (const f of [raw, cold, warm]) await mode(f);

const out = {};
for (const [name, mode] of [
  ['sequential', sequential],
  ['concurrent', concurrent],
]) {
  const r = [];
  const c = [];
  const w = [];
  for (let i = 0; i < rounds; i++) {
    if (i % 2 === 0) {
      r.push(await mode(raw));
      c.push(await mode(cold));
    } else {
      c.push(await mode(cold));
      r.push(await mode(raw));
    }
    w.push(await mode(warm, warmPasses));
  }
  out[name] = { raw: r, cold: c, warm: w };
}
process.send({ type: 'result', result: out, tokens: tokens.length, rounds, warmPasses, batch });
process.disconnect();
