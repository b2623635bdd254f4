// The signing floor: how many ES256 signatures one core makes, in one process, with nothing
// around them. `crypto.sign` (synchronous, on the main thread: exactly one core) over the
// signing input of a real broker access token; for context also WebCrypto `subtle.sign`
// (what jose, and so oidc-provider, uses; it runs on libuv's thread pool) one at a time, and
// `crypto.verify`.
//
// Input: JSON file (argv[2]) { signingInput, seconds, rounds }. Output: one JSON message over IPC.
import crypto from 'node:crypto';
import fs from 'node:fs';

const cfg = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const seconds = cfg.seconds ?? 3;
const rounds = cfg.rounds ?? 5;
const data = Buffer.from(cfg.signingInput ?? 'x'.repeat(600));
const { privateKey, publicKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
const opts = { key: privateKey, dsaEncoding: 'ieee-p1363' };
const sig = crypto.sign('sha256', data, opts);
const webKey = await crypto.subtle.importKey(
  'jwk',
  privateKey.export({ format: 'jwk' }),
  { name: 'ECDSA', namedCurve: 'P-256' },
  false,
  ['sign'],
);

function timed(fn) {
  const end = performance.now() + seconds * 1000;
  let n = 0;
  const t0 = performance.now();
  while (performance.now() < end) {
    for (let i = 0; i < 50; i++) fn();
    n += 50;
  }
  return n / ((performance.now() - t0) / 1000);
}
async function timedAsync(fn) {
  const end = performance.now() + seconds * 1000;
  let n = 0;
  const t0 = performance.now();
  while (performance.now() < end) {
    await fn();
    n++;
  }
  return n / ((performance.now() - t0) / 1000);
}

const cpu0 = process.cpuUsage();
const t0 = performance.now();
// Warm-up.
timed(() => crypto.sign('sha256', data, opts));
const sign = [];
const verify = [];
const subtle = [];
for (let r = 0; r < rounds; r++) {
  sign.push(timed(() => crypto.sign('sha256', data, opts)));
  verify.push(timed(() => crypto.verify('sha256', data, { key: publicKey, dsaEncoding: 'ieee-p1363' }, sig)));
  subtle.push(await timedAsync(() => crypto.subtle.sign({ name: 'ECDSA', hash: 'SHA-256' }, webKey, data)));
}
const cpu = process.cpuUsage(cpu0);
process.send({
  type: 'result',
  bytes: data.length,
  seconds,
  rounds,
  sign,
  verify,
  subtleSequential: subtle,
  cpuPercent: ((cpu.user + cpu.system) / 1000 / (performance.now() - t0)) * 100,
});
process.disconnect();
