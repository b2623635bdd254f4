/**
 * The auth sidecar as operators run it: the built `dist/apps/sidecar/main.js` in its own
 * process, in front of a trivial upstream on loopback that echoes what it received, trusting a
 * real broker's trust bundle. The attack catalogue of RFC 8725 / RFC 9068 / RFC 9449 is played
 * at the sidecar: every forgery is a 401, the upstream never sees it, nothing answers 5xx.
 *
 * Needs the build: `npm run build` (or `npx nest build broker sidecar`).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http, {
  type IncomingHttpHeaders,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  SignJWT,
  calculateJwkThumbprint,
  decodeJwt,
  decodeProtectedHeader,
  exportJWK,
  exportSPKI,
  generateKeyPair,
  importJWK,
  type CryptoKey,
  type JWK,
  type JWTPayload,
} from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  REPO_ROOT,
  adminCall,
  clientCredentials,
  freshDatabases,
  registerService,
  spawnBroker,
  type SpawnedBroker,
} from './support/broker';
import { freePort } from './support/ports';

const SIDECAR_MAIN = join(REPO_ROOT, 'dist', 'apps', 'sidecar', 'main.js');
const ORDERS = 'https://orders.sidecar.test.example';
const BILLING = 'https://billing.sidecar.test.example';
const SHORT = 'https://short-lived.sidecar.test.example';
const FAKE_ISS = 'https://eu.fake-issuer.sidecar.test.example';
const FAKE_AUD = 'https://dpop.sidecar.test.example';
const SEALED = 'https://sealed.sidecar.test.example';

// ------------------------------------------------------------------------ processes

interface Sidecar {
  url: string;
  port: number;
  child: ChildProcess;
  exited: Promise<number | null>;
  output(): string;
  stop(): Promise<number | null>;
}

const sidecars: Sidecar[] = [];

function runSidecar(env: Record<string, string>) {
  const child = spawn(process.execPath, [SIDECAR_MAIN], {
    env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env } as NodeJS.ProcessEnv,
    stdio: ['ignore', 'pipe', 'pipe'],
    cwd: REPO_ROOT,
  });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  const reap = () => child.kill('SIGKILL');
  process.once('exit', reap);
  void exited.then(() => process.off('exit', reap));
  return { child, exited, stdout: () => out, stderr: () => err };
}

async function spawnSidecar(
  env: Record<string, string>,
  wait: 'healthz' | 'readyz' = 'readyz',
): Promise<Sidecar> {
  const port = await freePort();
  const proc = runSidecar({ HOST: '127.0.0.1', PORT: String(port), LOG_LEVEL: 'info', ...env });
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 20_000;
  let exitedEarly = false;
  void proc.exited.then(() => (exitedEarly = true));
  for (;;) {
    if (exitedEarly) throw new Error(`sidecar exited at start:\n${proc.stdout()}${proc.stderr()}`);
    if (Date.now() > deadline) {
      proc.child.kill('SIGKILL');
      throw new Error(`sidecar not ${wait} after 20 s:\n${proc.stdout()}${proc.stderr()}`);
    }
    const r = await call(url, `/${wait}`, { timeoutMs: 2000 }).catch(() => undefined);
    if (r?.status === 200) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  const sidecar: Sidecar = {
    url,
    port,
    child: proc.child,
    exited: proc.exited,
    output: () => proc.stdout() + proc.stderr(),
    async stop() {
      if (proc.child.exitCode === null) proc.child.kill('SIGTERM');
      return proc.exited;
    },
  };
  sidecars.push(sidecar);
  return sidecar;
}

// ---------------------------------------------------------------------- raw HTTP

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
  json: any;
}

/** node:http, not fetch: the path goes out byte for byte (no dot-segment normalisation). */
function call(
  base: string,
  path: string,
  o: {
    method?: string;
    headers?: Record<string, string | string[]>;
    body?: Buffer | string;
    timeoutMs?: number;
  } = {},
): Promise<Answer> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    const req = http.request(
      { hostname, port, path, method: o.method ?? 'GET', headers: o.headers, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json: unknown;
          try {
            json = text ? JSON.parse(text) : undefined;
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode!, headers: res.headers, text, json });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    // Nothing here should take long; a hung answer fails the test instead of the whole file.
    req.setTimeout(o.timeoutMs ?? 15_000, () =>
      req.destroy(new Error(`no answer to ${path} within the timeout`)),
    );
    req.end(o.body);
  });
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

// ---------------------------------------------------------------------- upstream

interface Seen {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  length: number;
  sha256: string;
}

/** The protected service: echoes what reached it and counts requests. */
const seen: Seen[] = [];
let upstream: Server;
let upstreamUrl: string;
const hanging: ServerResponse[] = [];

let upstreamAborted = 0;

async function upstreamHandler(req: IncomingMessage, res: ServerResponse) {
  const hash = createHash('sha256');
  let length = 0;
  try {
    for await (const chunk of req) {
      hash.update(chunk as Buffer);
      length += (chunk as Buffer).length;
    }
  } catch {
    upstreamAborted++; // the sidecar gave up on this request (its client went away)
    return;
  }
  const record: Seen = {
    method: req.method!,
    url: req.url!,
    headers: req.headers,
    length,
    sha256: hash.digest('hex'),
  };
  seen.push(record);
  const url = new URL(req.url!, 'http://upstream');
  if (url.pathname === '/stream') {
    // Chunked (no content-length), with pauses: the sidecar must pass chunks on as they come.
    res.writeHead(200, { 'content-type': 'text/plain', 'x-upstream': 'yes' });
    for (let i = 0; i < 4; i++) {
      res.write(`chunk-${i}@${Date.now()}\n`);
      await new Promise((r) => setTimeout(r, 300));
    }
    res.end();
    return;
  }
  if (url.pathname === '/cut') {
    // Announces 1 MB, sends a little, then drops the connection.
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(1 << 20) });
    res.write(Buffer.alloc(1024));
    setTimeout(() => res.socket?.destroy(), 50);
    return;
  }
  if (url.pathname === '/hang') {
    hanging.push(res);
    return;
  }
  if (url.pathname === '/slow') {
    await new Promise((r) => setTimeout(r, Number(url.searchParams.get('ms') ?? 500)));
  }
  res.writeHead(200, {
    'content-type': 'application/json',
    'set-cookie': ['a=1; Path=/', 'b=2; Path=/'],
    'x-upstream': 'yes',
  });
  res.end(JSON.stringify(record));
}

// ------------------------------------------------------------------- fixtures

let dbs: Awaited<ReturnType<typeof freshDatabases>>;
let broker: SpawnedBroker;
let bundleUrl: string;
let reader: { clientId: string; clientSecret: string };
let writer: { clientId: string; clientSecret: string };
let billing: { clientId: string; clientSecret: string };
let shortLived: { clientId: string; clientSecret: string };
let sealedClient: { clientId: string; clientSecret: string };
let sealedPrivate: JWK;
let sealedPublic: JWK;
let readToken: string;
let writeToken: string;
let claims: JWTPayload & Record<string, unknown>;
let brokerJwk: JWK;
let tmp: string;

let main: Sidecar; // ORDERS, orders:read for everything, routes file, SIDECAR_REGION=eu
let usRegion: Sidecar; // ORDERS, SIDECAR_REGION=us
let short: Sidecar; // SHORT, no clock leeway
let dpop: Sidecar; // FAKE_AUD, trusting the test's own issuer
let sealed: Sidecar; // SEALED, opens tokens encrypted to it with the key in a (reloadable) file
let sealedKeysFile: string;

/** A loopback server that must never be called: where `jku` / `x5u` point. */
let bait: Server;
let baitUrl: string;
const baitRequests: string[] = [];

let attacker: { privateKey: CryptoKey; publicJwk: JWK };
/** A trust bundle served by the test, for tokens only a key the test holds can make (DPoP, nbf). */
let fakeBundle: Server;
let fakeIssuer: { privateKey: CryptoKey; publicJwk: JWK };
let client: { privateKey: CryptoKey; publicJwk: JWK; jkt: string };

const enc = (o: unknown) => Buffer.from(typeof o === 'string' ? o : JSON.stringify(o)).toString('base64url');
const forge = (header: object, payload: object, signature = '') =>
  `${enc(header)}.${enc(payload)}.${signature}`;
const nowS = () => Math.floor(Date.now() / 1000);

async function token(c: { clientId: string; clientSecret: string }, audience: string, scope?: string) {
  const { status, body } = await clientCredentials(broker.url, c, audience, scope);
  expect(status, JSON.stringify(body)).toBe(200);
  return body.access_token as string;
}

function signAs(
  key: { privateKey: CryptoKey },
  header: Record<string, unknown>,
  payload: JWTPayload & Record<string, unknown>,
) {
  return new SignJWT(payload)
    .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', ...header } as never)
    .sign(key.privateKey);
}

function fakeToken(extra: Record<string, unknown> = {}, header: Record<string, unknown> = {}) {
  const iat = nowS();
  return signAs(
    fakeIssuer,
    { kid: 'fake-1', ...header },
    {
      iss: FAKE_ISS,
      sub: 'person-1',
      aud: FAKE_AUD,
      client_id: 'mobile-app',
      jti: randomUUID(),
      scope: 'orders:read',
      iat,
      exp: iat + 300,
      residency: { region: 'eu', jurisdiction: 'DE', policy: 'de@1', processing: ['eu'] },
      ...extra,
    },
  );
}

async function dpopProof(accessToken: string, o: { htm?: string; htu: string; jti?: string }) {
  return new SignJWT({
    htm: o.htm ?? 'GET',
    htu: o.htu,
    iat: nowS(),
    jti: o.jti ?? randomUUID(),
    ath: createHash('sha256').update(accessToken, 'ascii').digest('base64url'),
  })
    .setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk: client.publicJwk })
    .sign(client.privateKey);
}

/** Asserts a refusal by the sidecar that the upstream never saw. */
async function refusedAt(
  sidecar: Sidecar,
  path: string,
  o: Parameters<typeof call>[2],
  expected: { status: number; code: string; error?: string; scheme?: string },
) {
  const before = seen.length;
  const r = await call(sidecar.url, path, o);
  expect(r.status, r.text).toBe(expected.status);
  expect(r.json).toMatchObject({ code: expected.code });
  if (expected.error) {
    expect(r.json.error).toBe(expected.error);
    expect(r.headers['www-authenticate']).toContain(`error="${expected.error}"`);
  }
  expect(r.headers['www-authenticate']).toMatch(new RegExp(`^${expected.scheme ?? 'Bearer'}\\b`));
  expect(r.headers['content-type']).toBe('application/json');
  expect(r.text).not.toMatch(/at \w+ \(|node:internal|Error:/); // never a stack trace
  expect(seen.length).toBe(before);
  return r;
}

const invalidToken = (sidecar: Sidecar, t: string, code: string) =>
  refusedAt(sidecar, '/orders/1', { headers: bearer(t) }, { status: 401, code, error: 'invalid_token' });

async function listen(server: Server): Promise<string> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

beforeAll(async () => {
  if (!existsSync(SIDECAR_MAIN)) throw new Error(`${SIDECAR_MAIN} missing: run npm run build first`);
  tmp = mkdtempSync(join(tmpdir(), 'sidecar-spec-'));
  upstream = http.createServer((req, res) => void upstreamHandler(req, res));
  upstreamUrl = await listen(upstream);
  bait = http.createServer((req, res) => {
    baitRequests.push(req.url ?? '');
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ keys: [attacker.publicJwk] }));
  });
  baitUrl = await listen(bait);

  const a = await generateKeyPair('ES256', { extractable: true });
  attacker = { privateKey: a.privateKey, publicJwk: { ...(await exportJWK(a.publicKey)), kid: 'attacker' } };
  const f = await generateKeyPair('ES256', { extractable: true });
  fakeIssuer = { privateKey: f.privateKey, publicJwk: { ...(await exportJWK(f.publicKey)), kid: 'fake-1' } };
  const c = await generateKeyPair('ES256', { extractable: true });
  const clientJwk = await exportJWK(c.publicKey);
  client = { privateKey: c.privateKey, publicJwk: clientJwk, jkt: await calculateJwkThumbprint(clientJwk) };
  fakeBundle = http.createServer((_req, res) => {
    res.setHeader('content-type', 'application/json');
    res.end(
      JSON.stringify({
        regions: [
          { region: 'eu', issuer: FAKE_ISS, jurisdiction: 'DE', jwks: { keys: [fakeIssuer.publicJwk] } },
        ],
      }),
    );
  });
  const fakeBundleUrl = `${await listen(fakeBundle)}/.well-known/meridian/trust-bundle`;

  dbs = await freshDatabases('sidecar');
  broker = await spawnBroker({ controlUrl: dbs.control.url, regionUrl: dbs.region.eu!.url });
  bundleUrl = `${broker.url}/.well-known/meridian/trust-bundle`;
  [reader, billing, shortLived] = await Promise.all([
    registerService(broker, {
      resourceId: 'orders',
      audience: ORDERS,
      scopes: ['orders:read', 'orders:write', 'orders:admin'],
      clientId: 'orders-reader',
      clientScope: 'orders:read',
    }),
    registerService(broker, {
      resourceId: 'billing',
      audience: BILLING,
      scopes: ['billing:read'],
      clientId: 'billing-client',
      clientScope: 'billing:read',
    }),
    registerService(broker, {
      resourceId: 'short',
      audience: SHORT,
      scopes: ['orders:read'],
      clientId: 'short-client',
      clientScope: 'orders:read',
      ttl: 1,
    }),
  ]);
  // RFC 9068 §7: a service that registered a public encryption key gets encrypted tokens.
  const encPair = await generateKeyPair('ECDH-ES+A256KW', { extractable: true });
  sealedPrivate = { ...(await exportJWK(encPair.privateKey)), kid: 'sealed-1', alg: 'ECDH-ES+A256KW' };
  sealedPublic = {
    ...(await exportJWK(encPair.publicKey)),
    kid: 'sealed-1',
    alg: 'ECDH-ES+A256KW',
    enc: 'A256GCM',
  } as JWK;
  sealedClient = await registerService(broker, {
    resourceId: 'sealed',
    audience: SEALED,
    scopes: ['orders:read'],
    clientId: 'sealed-client',
    clientScope: 'orders:read',
  });
  const sealedPut = await adminCall(broker, 'PUT', '/admin/resources/sealed', {
    audience: SEALED,
    scopes: ['orders:read'],
    region: 'eu',
    encryptionJwk: sealedPublic,
  });
  expect(sealedPut.status, JSON.stringify(sealedPut.body)).toBe(200);
  // A second client of the same resource (after the first: both PUT the resource).
  writer = await registerService(broker, {
    resourceId: 'orders',
    audience: ORDERS,
    scopes: ['orders:read', 'orders:write', 'orders:admin'],
    clientId: 'orders-writer',
    clientScope: 'orders:read orders:write',
  });
  readToken = await token(reader, ORDERS, 'orders:read');
  writeToken = await token(writer, ORDERS, 'orders:read orders:write');
  claims = decodeJwt(readToken) as typeof claims;
  const bundle = (await (await fetch(bundleUrl)).json()) as { regions: { jwks: { keys: JWK[] } }[] };
  brokerJwk = bundle.regions[0]!.jwks.keys.find((k) => k.kid === decodeProtectedHeader(readToken).kid)!;

  const routesFile = join(tmp, 'routes.json');
  writeFileSync(
    routesFile,
    JSON.stringify([
      { method: 'POST', path: '/orders', scopes: ['orders:write'] },
      { method: ['PUT', 'DELETE'], path: '/orders/*', scopes: ['orders:write'] },
      { path: '/admin/*', scopes: ['orders:admin'] },
    ]),
  );
  // Starts with an unrelated key: the reload test puts the right one in place.
  sealedKeysFile = join(tmp, 'decryption-keys.json');
  const unrelated = await generateKeyPair('ECDH-ES+A256KW', { extractable: true });
  writeFileSync(
    sealedKeysFile,
    JSON.stringify({ keys: [{ ...(await exportJWK(unrelated.privateKey)), kid: 'old-1' }] }),
  );
  const common = { SIDECAR_UPSTREAM: upstreamUrl, SIDECAR_TRUST_BUNDLE_URL: bundleUrl };
  [main, usRegion, short, dpop, sealed] = await Promise.all([
    spawnSidecar({
      ...common,
      SIDECAR_AUDIENCE: ORDERS,
      SIDECAR_REQUIRED_SCOPES: 'orders:read',
      SIDECAR_ROUTES_FILE: routesFile,
      SIDECAR_REGION: 'eu',
      SIDECAR_UPSTREAM_TIMEOUT_MS: '1500',
    }),
    spawnSidecar({ ...common, SIDECAR_AUDIENCE: ORDERS, SIDECAR_REGION: 'us' }),
    spawnSidecar({ ...common, SIDECAR_AUDIENCE: SHORT, SIDECAR_CLOCK_TOLERANCE_SECONDS: '0' }),
    spawnSidecar({ ...common, SIDECAR_AUDIENCE: FAKE_AUD, SIDECAR_TRUST_BUNDLE_URL: fakeBundleUrl }),
    spawnSidecar({ ...common, SIDECAR_AUDIENCE: SEALED, SIDECAR_DECRYPTION_KEYS_FILE: sealedKeysFile }),
  ]);
});

afterAll(async () => {
  for (const res of hanging) res.destroy();
  await Promise.allSettled(sidecars.map((s) => s.stop()));
  await broker?.stop();
  await Promise.allSettled([upstream, bait, fakeBundle].map((s) => new Promise((r) => s?.close(r))));
  await dbs?.drop();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

// ------------------------------------------------------------------------- tests

describe('a valid token', () => {
  it('is forwarded with x-meridian-* identity headers taken from the token', async () => {
    const before = seen.length;
    const r = await call(main.url, '/orders/42?expand=lines', { headers: bearer(readToken) });
    expect(r.status).toBe(200);
    expect(seen.length).toBe(before + 1);
    const got = r.json as Seen;
    expect(got.url).toBe('/orders/42?expand=lines');
    expect(got.headers).toMatchObject({
      'x-meridian-sub': 'orders-reader',
      'x-meridian-client-id': 'orders-reader',
      'x-meridian-scope': 'orders:read',
      'x-meridian-issuer': broker.issuer,
      'x-meridian-region': 'eu',
    });
    expect(JSON.parse(got.headers['x-meridian-residency'] as string)).toEqual(claims.residency);
    // Forwarded unchanged so the service may verify again; Host is the upstream's.
    expect(got.headers.authorization).toBe(`Bearer ${readToken}`);
    expect(got.headers.host).toBe(new URL(upstreamUrl).host);
    expect(got.headers['x-forwarded-host']).toBe(`127.0.0.1:${main.port}`);
    expect(got.headers['x-forwarded-proto']).toBe('http');
    expect(got.headers['x-forwarded-for']).toBe('127.0.0.1');
    // The upstream's answer comes back whole, repeated headers included.
    expect(r.headers['x-upstream']).toBe('yes');
    expect(r.headers['set-cookie']).toEqual(['a=1; Path=/', 'b=2; Path=/']);
  });

  it('RFC 9110 §7.6.1 — hop-by-hop fields and those named in Connection are not forwarded', async () => {
    const r = await call(main.url, '/orders/1', {
      headers: {
        ...bearer(readToken),
        connection: 'keep-alive, x-hop-secret',
        'keep-alive': 'timeout=5',
        'x-hop-secret': 'for the sidecar only',
        'proxy-authorization': 'Basic Zm9vOmJhcg==',
        te: 'trailers',
        'x-end-to-end': 'kept',
        'x-forwarded-for': '203.0.113.7',
      },
    });
    expect(r.status).toBe(200);
    const h = (r.json as Seen).headers;
    for (const name of ['keep-alive', 'x-hop-secret', 'proxy-authorization', 'te'])
      expect(h[name]).toBeUndefined();
    expect(h['x-end-to-end']).toBe('kept');
    expect(h['x-forwarded-for']).toBe('203.0.113.7, 127.0.0.1');
  });
});

describe('header spoofing: x-meridian-* from the caller never reaches the service', () => {
  it('drops X-Meridian-Sub: admin (any case) and every other x-meridian-* the caller sent', async () => {
    const r = await call(main.url, '/orders/1', {
      headers: {
        ...bearer(readToken),
        'X-Meridian-Sub': 'admin',
        'x-MERIDIAN-client-id': 'root',
        'X-MERIDIAN-SCOPE': 'orders:admin',
        'X-Meridian-Residency': '{"region":"us","processing":["us"]}',
        'x-meridian-role': 'superuser',
        'X-Meridian-Act': 'admin',
      },
    });
    expect(r.status).toBe(200);
    const h = (r.json as Seen).headers;
    expect(h['x-meridian-sub']).toBe('orders-reader');
    expect(h['x-meridian-client-id']).toBe('orders-reader');
    expect(h['x-meridian-scope']).toBe('orders:read');
    expect(JSON.parse(h['x-meridian-residency'] as string)).toEqual(claims.residency);
    expect(h['x-meridian-role']).toBeUndefined();
    expect(h['x-meridian-act']).toBeUndefined();
    expect(JSON.stringify(h)).not.toContain('admin');
  });

  it('refuses a request without a token that carries X-Meridian-Sub (401, upstream not reached)', async () => {
    const r = await refusedAt(
      main,
      '/orders/1',
      { headers: { 'X-Meridian-Sub': 'admin', 'X-Meridian-Scope': 'orders:read' } },
      { status: 401, code: 'ERR_TOKEN_MISSING' },
    );
    // RFC 6750 §3.1: no credentials, no error code.
    expect(r.headers['www-authenticate']).toBe('Bearer');
  });
});

describe('RFC 6750 §3.1 — missing or unreadable credentials', () => {
  it('no Authorization: 401 with WWW-Authenticate: Bearer', async () => {
    const r = await refusedAt(main, '/orders', {}, { status: 401, code: 'ERR_TOKEN_MISSING' });
    expect(r.headers['www-authenticate']).toBe('Bearer');
  });

  it('another scheme (Basic) carries no access token: 401', async () => {
    await refusedAt(
      main,
      '/orders',
      { headers: { authorization: 'Basic YTpi' } },
      { status: 401, code: 'ERR_TOKEN_MISSING' },
    );
  });

  it('a garbled Bearer credential: 401 invalid_token', async () => {
    await refusedAt(
      main,
      '/orders',
      { headers: { authorization: 'Bearer a b c' } },
      { status: 401, code: 'ERR_TOKEN_MALFORMED', error: 'invalid_token' },
    );
  });
});

describe('RFC 6750 §3.1 — scopes (SIDECAR_REQUIRED_SCOPES and SIDECAR_ROUTES_FILE)', () => {
  it('a token without a scope every request needs: 403 insufficient_scope, upstream count unchanged', async () => {
    const writeOnly = await token(writer, ORDERS, 'orders:write'); // lacks orders:read
    const r = await refusedAt(
      main,
      '/orders/1',
      { headers: bearer(writeOnly) },
      { status: 403, code: 'ERR_INSUFFICIENT_SCOPE', error: 'insufficient_scope' },
    );
    expect(r.headers['www-authenticate']).toContain('scope="orders:read"');
  });

  it('POST /orders needs orders:write (route rule): 403 for a read-only token, 200 for a writer', async () => {
    const r = await refusedAt(
      main,
      '/orders',
      { method: 'POST', headers: { ...bearer(readToken), 'content-type': 'application/json' }, body: '{}' },
      { status: 403, code: 'ERR_INSUFFICIENT_SCOPE', error: 'insufficient_scope' },
    );
    expect(r.headers['www-authenticate']).toContain('scope="orders:read orders:write"');
    const ok = await call(main.url, '/orders', { method: 'POST', headers: bearer(writeToken), body: '{}' });
    expect(ok.status).toBe(200);
    expect((ok.json as Seen).headers['x-meridian-scope']).toBe('orders:read orders:write');
    // GET is not covered by the POST rule.
    expect((await call(main.url, '/orders', { headers: bearer(readToken) })).status).toBe(200);
  });

  it('prefix rules cover the path and everything below it (PUT /orders/*, any method on /admin/*)', async () => {
    for (const [method, path, t] of [
      ['PUT', '/orders/7', readToken],
      ['DELETE', '/orders/7/lines/1', readToken],
      ['GET', '/admin', writeToken],
      ['GET', '/admin/users', writeToken],
      ['HEAD', '/admin/users', writeToken],
    ] as const) {
      const r = await call(main.url, path, { method, headers: bearer(t) });
      expect(r.status, `${method} ${path}`).toBe(403);
    }
    expect(
      (await call(main.url, '/orders/7/lines/1', { method: 'DELETE', headers: bearer(writeToken) })).status,
    ).toBe(200);
    const put = await call(main.url, '/orders/7', { method: 'PUT', headers: bearer(readToken) });
    expect(put.headers['www-authenticate']).toContain('scope="orders:read orders:write"');
    expect((await call(main.url, '/administrator', { headers: bearer(readToken) })).status).toBe(200);
  });

  it('other spellings of a protected route are held to the same rule (case, trailing slash, ;params, //)', async () => {
    for (const path of ['/ORDERS', '/orders/', '/Orders;jsessionid=1', '//orders', '/%6Frders']) {
      const r = await call(main.url, path, { method: 'POST', headers: bearer(readToken), body: '{}' });
      expect(r.status, path).toBe(403);
    }
  });

  it('refuses paths an upstream could resolve to an unchecked route (dot segments, encoded slash): 400', async () => {
    const before = seen.length;
    for (const path of [
      '/orders/../admin/x',
      '/orders/%2e%2e/admin',
      '/admin%2fusers',
      '/orders/.',
      '/a\\..\\admin',
    ]) {
      const r = await call(main.url, path, { headers: bearer(writeToken) });
      expect(r.status, path).toBe(400);
      expect(r.json).toMatchObject({ error: 'invalid_request', code: 'ERR_REQUEST_PATH' });
    }
    expect(seen.length).toBe(before);
  });
});

describe('residency (SIDECAR_REGION)', () => {
  it('a region outside residency.processing: 403 with the distinct ERR_RESIDENCY_PROCESSING', async () => {
    const r = await refusedAt(
      usRegion,
      '/orders/1',
      { headers: bearer(readToken) },
      { status: 403, code: 'ERR_RESIDENCY_PROCESSING', error: 'insufficient_scope' },
    );
    expect(r.json.error_description).toMatch(/^residency: /);
    expect(r.headers['www-authenticate']).toContain('error_description="residency: ');
  });

  it('the region in residency.processing passes', async () => {
    expect((await call(main.url, '/orders/1', { headers: bearer(readToken) })).status).toBe(200);
  });
});

describe('attack catalogue at the sidecar: all 401, upstream never reached, no 5xx', () => {
  for (const alg of ['none', 'None', 'NONE', 'nOnE']) {
    it(`RFC 8725 §3.1 — alg "${alg}" (unsigned, broker kid, real claims)`, async () => {
      await invalidToken(main, forge({ alg, typ: 'at+jwt', kid: brokerJwk.kid }, claims), 'ERR_TOKEN_ALG');
    });
  }

  it('RFC 8725 §3.1/§2.1 — HS256 signed with the broker public key as JWK bytes (key confusion)', async () => {
    const forged = await new SignJWT(claims)
      .setProtectedHeader({ alg: 'HS256', typ: 'at+jwt', kid: brokerJwk.kid })
      .sign(new TextEncoder().encode(JSON.stringify(brokerJwk)));
    await invalidToken(main, forged, 'ERR_TOKEN_ALG');
  });

  it('RFC 8725 §3.1/§2.1 — HS256 signed with the broker public key as PEM (key confusion)', async () => {
    const pem = await exportSPKI((await importJWK(brokerJwk, 'ES256', { extractable: true })) as CryptoKey);
    const forged = await new SignJWT(claims)
      .setProtectedHeader({ alg: 'HS256', typ: 'at+jwt', kid: brokerJwk.kid })
      .sign(new TextEncoder().encode(pem));
    await invalidToken(main, forged, 'ERR_TOKEN_ALG');
  });

  it('RFC 7515 §5.2 / RFC 8725 §3.3 — signature stripped', async () => {
    const [h, p] = readToken.split('.');
    await invalidToken(main, `${h}.${p}.`, 'ERR_TOKEN_SIGNATURE');
  });

  it('RFC 7515 §5.2 — payload altered (scope widened, signature kept)', async () => {
    const [h, , s] = readToken.split('.');
    await invalidToken(
      main,
      `${h}.${enc({ ...claims, scope: 'orders:read orders:admin' })}.${s}`,
      'ERR_TOKEN_SIGNATURE',
    );
  });

  it("RFC 8725 §3.10 — attacker key under the broker's kid", async () => {
    await invalidToken(main, await signAs(attacker, { kid: brokerJwk.kid }, claims), 'ERR_TOKEN_SIGNATURE');
  });

  it('RFC 8725 §3.10 — embedded "jwk" header carrying the attacker key', async () => {
    await invalidToken(main, await signAs(attacker, { jwk: attacker.publicJwk }, claims), 'ERR_TOKEN_HEADER');
  });

  for (const member of ['jku', 'x5u'] as const) {
    it(`RFC 8725 §3.10 — "${member}" to a local listener, which receives no request`, async () => {
      for (const kid of ['attacker', brokerJwk.kid]) {
        const forged = await signAs(attacker, { [member]: `${baitUrl}/keys.json`, kid }, claims);
        await invalidToken(main, forged, 'ERR_TOKEN_HEADER');
      }
      await new Promise((r) => setTimeout(r, 200));
      expect(baitRequests).toEqual([]);
    });
  }

  it('RFC 8725 §3.10 — "kid" path traversal finds no key and fetches nothing it names', async () => {
    for (const kid of ['../../etc/passwd', `${baitUrl}/keys.json`]) {
      await invalidToken(main, await signAs(attacker, { kid }, claims), 'ERR_TOKEN_SIGNATURE');
    }
    expect(baitRequests).toEqual([]);
  });

  it('RFC 7515 §4.1.11 — unknown "crit" header parameter', async () => {
    const forged = await new SignJWT(claims)
      .setProtectedHeader({
        alg: 'ES256',
        typ: 'at+jwt',
        kid: brokerJwk.kid,
        crit: ['urn:x'],
        'urn:x': 1,
      } as never)
      .sign(attacker.privateKey, { crit: { 'urn:x': true } });
    await invalidToken(main, forged, 'ERR_TOKEN_HEADER');
  });

  it('RFC 9068 §4 / RFC 8725 §3.9 — a token for another audience of the same broker', async () => {
    await invalidToken(main, await token(billing, BILLING, 'billing:read'), 'ERR_TOKEN_AUDIENCE');
  });

  it('RFC 9068 §4 / RFC 8725 §3.9 — wrong aud: a valid orders token at a sidecar for another audience', async () => {
    await invalidToken(short, readToken, 'ERR_TOKEN_AUDIENCE');
  });

  it('RFC 9068 §4 / RFC 8725 §3.8 — wrong iss (iss rewritten, signature kept)', async () => {
    const [h, , s] = readToken.split('.');
    await invalidToken(
      main,
      `${h}.${enc({ ...claims, iss: 'https://evil.example' })}.${s}`,
      'ERR_TOKEN_ISSUER',
    );
  });

  it('RFC 8725 §3.8 — a validly signed token of an issuer outside the trust bundle', async () => {
    await invalidToken(main, await fakeToken({ aud: ORDERS }), 'ERR_TOKEN_ISSUER');
  });

  it('RFC 9068 §4 — expired (resource with accessTokenTtlSeconds 1, no leeway)', async () => {
    const t = await token(shortLived, SHORT, 'orders:read');
    expect((await call(short.url, '/x', { headers: bearer(t) })).status).toBe(200);
    await new Promise((r) => setTimeout(r, 2100));
    await invalidToken(short, t, 'ERR_TOKEN_EXPIRED');
  });

  it('RFC 7519 §4.1.5 — nbf in the future', async () => {
    const t = await fakeToken({ nbf: nowS() + 600 });
    await invalidToken(dpop, t, 'ERR_TOKEN_NOT_YET_VALID');
  });

  it('RFC 9068 §4 / RFC 8725 §3.11 — an ID token (typ JWT) used as an access token', async () => {
    await invalidToken(
      dpop,
      await fakeToken({ nonce: 'n-0S6', auth_time: nowS() }, { typ: 'JWT' }),
      'ERR_TOKEN_TYPE',
    );
  });

  it('RFC 8725 §3.x size limits — an oversized token (10 kB) is refused before parsing', async () => {
    const huge = forge(
      { alg: 'ES256', typ: 'at+jwt', kid: brokerJwk.kid },
      { ...claims, pad: 'x'.repeat(10_000) },
      'sig',
    );
    await invalidToken(main, huge, 'ERR_TOKEN_TOO_LARGE');
    // Beyond node's header limit (16 kB) the HTTP layer answers 431: still no 5xx, still not forwarded.
    const before = seen.length;
    const r = await call(main.url, '/orders', { headers: bearer('x'.repeat(20_000)) }).catch(() => ({
      status: 0,
    }));
    expect([0, 431]).toContain(r.status);
    expect(seen.length).toBe(before);
  });
});

describe('RFC 9449 — DPoP-bound tokens at the sidecar', () => {
  const htu = (path: string) => `${dpop.url}${path}`;

  it('§7.1 — a DPoP-bound token with a proof for this request is forwarded', async () => {
    const t = await fakeToken({ cnf: { jkt: client.jkt } });
    const proof = await dpopProof(t, { htu: htu('/orders/9') });
    const r = await call(dpop.url, '/orders/9?x=1', { headers: { authorization: `DPoP ${t}`, dpop: proof } });
    expect(r.status, r.text).toBe(200);
    expect((r.json as Seen).headers).toMatchObject({ 'x-meridian-sub': 'person-1', dpop: proof });
  });

  it('§11.1 — a replayed proof is refused (invalid_dpop_proof, DPoP challenge)', async () => {
    const t = await fakeToken({ cnf: { jkt: client.jkt } });
    const proof = await dpopProof(t, { htu: htu('/orders/9') });
    const headers = { authorization: `DPoP ${t}`, dpop: proof };
    expect((await call(dpop.url, '/orders/9', { headers })).status).toBe(200);
    await refusedAt(
      dpop,
      '/orders/9',
      { headers },
      { status: 401, code: 'ERR_DPOP_REPLAY', error: 'invalid_dpop_proof', scheme: 'DPoP' },
    );
  });

  it('§4.3 — a proof for another method (htm) or another URL (htu) is refused', async () => {
    const t = await fakeToken({ cnf: { jkt: client.jkt } });
    const wrongMethod = await dpopProof(t, { htm: 'POST', htu: htu('/orders/9') });
    await refusedAt(
      dpop,
      '/orders/9',
      { headers: { authorization: `DPoP ${t}`, dpop: wrongMethod } },
      { status: 401, code: 'ERR_DPOP_INVALID', error: 'invalid_dpop_proof', scheme: 'DPoP' },
    );
    const wrongUrl = await dpopProof(t, { htu: htu('/orders/10') });
    await refusedAt(
      dpop,
      '/orders/9',
      { headers: { authorization: `DPoP ${t}`, dpop: wrongUrl } },
      { status: 401, code: 'ERR_DPOP_INVALID', error: 'invalid_dpop_proof', scheme: 'DPoP' },
    );
  });

  it('§7.1 — a DPoP-bound token without a proof, or sent as Bearer, is refused', async () => {
    const t = await fakeToken({ cnf: { jkt: client.jkt } });
    await refusedAt(
      dpop,
      '/orders/9',
      { headers: { authorization: `DPoP ${t}` } },
      { status: 401, code: 'ERR_TOKEN_BINDING', scheme: 'DPoP' },
    );
    await refusedAt(
      dpop,
      '/orders/9',
      { headers: bearer(t) },
      { status: 401, code: 'ERR_TOKEN_BINDING', scheme: 'DPoP' },
    );
  });
});

describe('RFC 9068 §7 — access tokens encrypted to the service (nested JWT)', () => {
  let jwe: string;

  beforeAll(async () => {
    // The broker's resource catalog caches for a few seconds: wait until the key is in force.
    for (let i = 0; i < 100 && jwe?.split('.').length !== 5; i++) {
      jwe = await token(sealedClient, SEALED, 'orders:read');
      if (jwe.split('.').length !== 5) await new Promise((r) => setTimeout(r, 100));
    }
    expect(decodeProtectedHeader(jwe)).toMatchObject({
      alg: 'ECDH-ES+A256KW',
      cty: 'at+jwt',
      kid: 'sealed-1',
    });
  });

  it('a service without the key cannot open it: 401, upstream not reached', async () => {
    await invalidToken(main, jwe, 'ERR_TOKEN_MALFORMED');
    await invalidToken(sealed, jwe, 'ERR_TOKEN_MALFORMED'); // only an unrelated key so far
  });

  it('the key file is reloaded without a restart; the token then opens and is forwarded', async () => {
    writeFileSync(sealedKeysFile, JSON.stringify({ keys: [sealedPrivate] }));
    await expect
      .poll(async () => (await call(sealed.url, '/orders/1', { headers: bearer(jwe) })).status, {
        timeout: 10_000,
        interval: 250,
      })
      .toBe(200);
    const r = await call(sealed.url, '/orders/1', { headers: bearer(jwe) });
    expect((r.json as Seen).headers).toMatchObject({
      'x-meridian-sub': 'sealed-client',
      'x-meridian-scope': 'orders:read',
    });
    expect(sealed.output()).toContain('decryption keys reloaded');
    expect(sealed.output()).not.toContain(sealedPrivate.d!);
  });

  it('a broken key file is reported and the keys in use are kept', async () => {
    const fresh = await token(sealedClient, SEALED, 'orders:read');
    writeFileSync(sealedKeysFile, '{ not json');
    await expect
      .poll(() => sealed.output().includes('decryption keys invalid'), { timeout: 10_000 })
      .toBe(true);
    expect((await call(sealed.url, '/orders/1', { headers: bearer(fresh) })).status).toBe(200);
  });
});

describe('Envoy ext_authz (HTTP service) check endpoint', () => {
  it('allows with 200 and the x-meridian-* headers; spoofed ones are listed for removal; nothing proxied', async () => {
    const before = seen.length;
    const r = await call(main.url, '/ext-authz/orders/1?x=1', {
      headers: {
        ...bearer(readToken),
        'X-Meridian-Sub': 'admin',
        'X-Meridian-Role': 'root',
        'content-length': '0',
      },
    });
    expect(r.status).toBe(200);
    expect(r.text).toBe('');
    expect(r.headers).toMatchObject({
      'x-meridian-sub': 'orders-reader',
      'x-meridian-client-id': 'orders-reader',
      'x-meridian-scope': 'orders:read',
      'x-envoy-auth-headers-to-remove': 'x-meridian-role',
    });
    expect(JSON.parse(r.headers['x-meridian-residency'] as string)).toEqual(claims.residency);
    expect(seen.length).toBe(before);
  });

  it('denies with 401 / 403 and WWW-Authenticate, route rules applied to the original path', async () => {
    await refusedAt(main, '/ext-authz/orders/1', {}, { status: 401, code: 'ERR_TOKEN_MISSING' });
    await refusedAt(
      main,
      '/ext-authz/orders/1',
      { headers: bearer(forge({ alg: 'none', typ: 'at+jwt' }, claims)) },
      { status: 401, code: 'ERR_TOKEN_ALG', error: 'invalid_token' },
    );
    await refusedAt(
      main,
      '/ext-authz/orders',
      { method: 'POST', headers: bearer(readToken) },
      { status: 403, code: 'ERR_INSUFFICIENT_SCOPE', error: 'insufficient_scope' },
    );
    expect(
      (await call(main.url, '/ext-authz/orders', { method: 'POST', headers: bearer(writeToken) })).status,
    ).toBe(200);
  });
});

describe('streaming', () => {
  it('a 5 MB request body arrives intact at the upstream (content-length)', async () => {
    const body = randomBytes(5 * 1024 * 1024);
    const r = await call(main.url, '/upload', {
      method: 'PUT',
      headers: { ...bearer(readToken), 'content-type': 'application/octet-stream' },
      body,
    });
    expect(r.status).toBe(200);
    expect(r.json).toMatchObject({
      length: body.length,
      sha256: createHash('sha256').update(body).digest('hex'),
    });
  });

  it('a chunked request body (no content-length) arrives intact', async () => {
    const parts = Array.from({ length: 20 }, () => randomBytes(64 * 1024));
    const whole = Buffer.concat(parts);
    const answer = await new Promise<Answer>((resolve, reject) => {
      const req = http.request(
        {
          hostname: '127.0.0.1',
          port: main.port,
          path: '/upload',
          method: 'PATCH',
          headers: bearer(readToken),
          agent: false,
        },
        (res) => {
          let text = '';
          res.on('data', (c: Buffer) => (text += c.toString()));
          res.on('end', () =>
            resolve({ status: res.statusCode!, headers: res.headers, text, json: JSON.parse(text) }),
          );
        },
      );
      req.on('error', reject);
      void (async () => {
        for (const p of parts) {
          req.write(p);
          await new Promise((r) => setTimeout(r, 5));
        }
        req.end();
      })();
    });
    expect(answer.status).toBe(200);
    expect(answer.json.headers['transfer-encoding']).toBe('chunked');
    expect(answer.json).toMatchObject({
      length: whole.length,
      sha256: createHash('sha256').update(whole).digest('hex'),
    });
  });

  it('a chunked upstream response streams back chunk by chunk', async () => {
    const arrivals: number[] = [];
    const text = await new Promise<string>((resolve, reject) => {
      const req = http.request(
        { hostname: '127.0.0.1', port: main.port, path: '/stream', headers: bearer(readToken), agent: false },
        (res) => {
          expect(res.headers['transfer-encoding']).toBe('chunked');
          let all = '';
          res.on('data', (c: Buffer) => {
            arrivals.push(Date.now());
            all += c.toString();
          });
          res.on('end', () => resolve(all));
        },
      );
      req.on('error', reject);
      req.end();
    });
    expect(text.trim().split('\n')).toHaveLength(4);
    // The first chunk was delivered long before the upstream finished (4 × 300 ms).
    expect(arrivals.length).toBeGreaterThanOrEqual(3);
    expect(arrivals.at(-1)! - arrivals[0]!).toBeGreaterThan(600);
  });

  it('Expect: 100-continue — a refused client is answered before it uploads; an accepted one uploads', async () => {
    const attempt = (authorization: string) =>
      new Promise<{ status: number; continued: boolean }>((resolve, reject) => {
        let continued = false;
        const req = http.request({
          hostname: '127.0.0.1',
          port: main.port,
          path: '/upload',
          method: 'POST',
          headers: { authorization, expect: '100-continue', 'content-length': '5' },
          agent: false,
        });
        req.on('continue', () => {
          continued = true;
          req.end('hello');
        });
        req.on('response', (res) => {
          res.resume();
          res.on('end', () => resolve({ status: res.statusCode!, continued }));
        });
        req.on('error', reject);
        req.flushHeaders();
      });
    const before = seen.length;
    expect(await attempt('Bearer not.a.token')).toEqual({ status: 401, continued: false });
    expect(seen.length).toBe(before);
    expect(await attempt(`Bearer ${writeToken}`)).toEqual({ status: 200, continued: true });
    expect(seen.at(-1)).toMatchObject({ length: 5 });
  });
});

describe('upstream failures', () => {
  it('an upstream that stays silent: 504 JSON after SIDECAR_UPSTREAM_TIMEOUT_MS, no stack trace', async () => {
    const started = Date.now();
    const r = await call(main.url, '/hang', { headers: bearer(readToken) });
    expect(r.status).toBe(504);
    expect(r.json).toEqual({
      error: 'upstream_timeout',
      error_description: 'the protected service did not answer in time',
    });
    expect(Date.now() - started).toBeGreaterThanOrEqual(1400);
  });

  it('an upstream that cuts its response short: the client sees it cut too; the sidecar carries on', async () => {
    const outcome = await new Promise<string>((resolve) => {
      const req = http.request(
        { hostname: '127.0.0.1', port: main.port, path: '/cut', headers: bearer(readToken), agent: false },
        (res) => {
          expect(res.statusCode).toBe(200);
          res.on('data', () => undefined);
          res.on('end', () => resolve('complete'));
          res.on('error', () => resolve('cut'));
          res.on('aborted', () => resolve('cut'));
        },
      );
      req.on('error', () => resolve('cut'));
      req.end();
    });
    expect(outcome).toBe('cut');
    expect((await call(main.url, '/orders/1', { headers: bearer(readToken) })).status).toBe(200);
  });

  it('a client that disconnects mid-upload: the upstream request is aborted, the sidecar carries on', async () => {
    const before = upstreamAborted;
    await new Promise<void>((resolve) => {
      const req = http.request({
        hostname: '127.0.0.1',
        port: main.port,
        path: '/upload',
        method: 'POST',
        headers: { ...bearer(readToken), 'content-length': String(10 << 20) },
        agent: false,
      });
      req.on('error', () => resolve());
      req.write(randomBytes(256 * 1024));
      setTimeout(() => {
        req.destroy();
        resolve();
      }, 200);
    });
    await expect.poll(() => upstreamAborted, { timeout: 5000 }).toBe(before + 1);
    expect((await call(main.url, '/healthz')).status).toBe(200);
    expect((await call(main.url, '/orders/1', { headers: bearer(readToken) })).status).toBe(200);
  });

  it('an upstream that is not listening: 502 JSON', async () => {
    const port = await freePort();
    const s = await spawnSidecar({
      SIDECAR_UPSTREAM: `http://127.0.0.1:${port}`,
      SIDECAR_AUDIENCE: ORDERS,
      SIDECAR_TRUST_BUNDLE_URL: bundleUrl,
    });
    const r = await call(s.url, '/orders', { headers: bearer(readToken) });
    expect(r.status).toBe(502);
    expect(r.json).toEqual({
      error: 'bad_gateway',
      error_description: 'the protected service could not be reached',
    });
    // Still checked first: a bad token is a 401, not a 502.
    expect((await call(s.url, '/orders', {})).status).toBe(401);
    await s.stop();
  });
});

describe('operational endpoints (answered by the sidecar, never proxied)', () => {
  it('/healthz, /readyz and /metrics never reach the upstream, whatever the method', async () => {
    const before = seen.length;
    expect((await call(main.url, '/healthz')).json).toEqual({ status: 'ok' });
    expect((await call(main.url, '/readyz')).json).toMatchObject({
      status: 'ready',
      bundle: { loaded: true },
    });
    expect((await call(main.url, '/healthz', { method: 'POST', headers: bearer(readToken) })).status).toBe(
      405,
    );
    expect((await call(main.url, '/readyz?x=1', { method: 'DELETE' })).status).toBe(405);
    expect(seen.length).toBe(before);
  });

  it('/metrics counts allowed and denied requests by verifier code, and a latency histogram', async () => {
    const r = await call(main.url, '/metrics');
    expect(r.status).toBe(200);
    const line = (labels: string) => {
      const m = new RegExp(`^meridian_sidecar_requests_total\\{${labels}\\} (\\d+)$`, 'm').exec(r.text);
      return m ? Number(m[1]) : undefined;
    };
    expect(line('outcome="allowed",reason="none",mode="proxy"')).toBeGreaterThan(5);
    expect(line('outcome="denied",reason="ERR_TOKEN_ALG",mode="proxy"')).toBeGreaterThanOrEqual(4);
    expect(line('outcome="denied",reason="ERR_INSUFFICIENT_SCOPE",mode="ext_authz"')).toBeGreaterThanOrEqual(
      1,
    );
    expect(line('outcome="denied",reason="ERR_TOKEN_INACTIVE",mode="proxy"')).toBe(0);
    expect(r.text).toMatch(
      /^meridian_sidecar_request_duration_seconds_bucket\{le="0\.005",outcome="allowed",mode="proxy"\} \d+/m,
    );
    expect(r.text).toMatch(/^meridian_sidecar_decision_duration_seconds_count \d+/m);
    expect(r.text).toMatch(/^meridian_sidecar_trust_bundle_loaded 1$/m);
    expect(r.text).toMatch(/^meridian_sidecar_upstream_errors_total\{kind="timeout"\} 1$/m);
  });

  it('logs are JSON lines that never contain a token', async () => {
    const out = main.output();
    const lines = out.trim().split('\n');
    for (const l of lines) expect(() => JSON.parse(l)).not.toThrow();
    expect(lines.some((l) => JSON.parse(l).msg === 'request refused')).toBe(true);
    for (const t of [readToken, writeToken]) {
      expect(out).not.toContain(t.split('.')[2]);
      expect(out).not.toContain(t.split('.')[1]);
    }
  });
});

describe('trust: fail closed without a bundle, keep working without the broker', () => {
  it('started while no broker answers: /readyz 503, requests refused (503 for a well-formed token, 401 for a forgery)', async () => {
    const port = await freePort();
    const s = await spawnSidecar(
      {
        SIDECAR_UPSTREAM: upstreamUrl,
        SIDECAR_AUDIENCE: ORDERS,
        SIDECAR_TRUST_BUNDLE_URL: `http://127.0.0.1:${port}/.well-known/meridian/trust-bundle`,
        SIDECAR_BUNDLE_REFRESH_COOLDOWN_MS: '200',
      },
      'healthz',
    );
    const before = seen.length;
    const ready = await call(s.url, '/readyz');
    expect(ready.status).toBe(503);
    expect(ready.json).toMatchObject({ status: 'no trust bundle loaded', bundle: { loaded: false } });
    const r = await call(s.url, '/orders/1', { headers: bearer(readToken) });
    expect(r.status).toBe(503);
    expect(r.json).toMatchObject({ code: 'ERR_TRUST_UNAVAILABLE' });
    expect(r.headers['www-authenticate']).toBe(
      'Bearer error_description="the trusted issuers are not known yet; retry later"',
    );
    expect(r.headers['retry-after']).toBeDefined();
    await refusedAt(
      s,
      '/orders/1',
      { headers: bearer(forge({ alg: 'none', typ: 'at+jwt' }, claims)) },
      { status: 401, code: 'ERR_TOKEN_ALG', error: 'invalid_token' },
    );
    expect(seen.length).toBe(before);

    // A broker appears at that address: the sidecar becomes ready without a restart.
    const relay = http.createServer((_req, res) => {
      void fetch(bundleUrl).then(async (b) => {
        res.writeHead(b.status, { 'content-type': 'application/json' });
        res.end(await b.text());
      });
    });
    await new Promise<void>((r) => relay.listen(port, '127.0.0.1', r));
    try {
      await expect.poll(async () => (await call(s.url, '/readyz')).status, { timeout: 10_000 }).toBe(200);
      expect((await call(s.url, '/orders/1', { headers: bearer(readToken) })).status).toBe(200);
    } finally {
      await s.stop();
      await new Promise((r) => relay.close(r));
    }
  });

  it('SIGTERM: in-flight requests finish, new connections are refused, exit code 0', async () => {
    const s = await spawnSidecar({
      SIDECAR_UPSTREAM: upstreamUrl,
      SIDECAR_AUDIENCE: ORDERS,
      SIDECAR_TRUST_BUNDLE_URL: bundleUrl,
    });
    const inFlight = call(s.url, '/slow?ms=800', { headers: bearer(readToken) });
    await new Promise((r) => setTimeout(r, 300));
    s.child.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 100));
    await expect(call(s.url, '/healthz')).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    const r = await inFlight;
    expect(r.status).toBe(200);
    expect(await s.exited).toBe(0);
    expect(s.output()).toContain('shutting down');
  });

  // Last: stops the broker.
  it('broker stopped after the bundle loaded: a valid token still passes (cached bundle)', async () => {
    const fresh = await token(reader, ORDERS, 'orders:read'); // never seen by the sidecar
    await broker.stop();
    const r = await call(main.url, '/orders/1', { headers: bearer(fresh) });
    expect(r.status).toBe(200);
    expect((r.json as Seen).headers['x-meridian-sub']).toBe('orders-reader');
    expect((await call(main.url, '/readyz')).status).toBe(200);
    await invalidToken(main, forge({ alg: 'none', typ: 'at+jwt' }, claims), 'ERR_TOKEN_ALG');
  });
});

describe('configuration errors stop the process with a line naming the variable', () => {
  const valid = () => ({
    PORT: '0',
    HOST: '127.0.0.1',
    SIDECAR_UPSTREAM: upstreamUrl,
    SIDECAR_AUDIENCE: ORDERS,
    SIDECAR_TRUST_BUNDLE_URL: bundleUrl,
    LOG_LEVEL: 'info',
  });
  const cases: [string, Record<string, string | undefined>, string][] = [
    ['PORT missing', { PORT: undefined }, 'PORT'],
    ['PORT not a number', { PORT: 'eighty' }, 'PORT'],
    ['PORT out of range', { PORT: '70000' }, 'PORT'],
    ['SIDECAR_UPSTREAM missing', { SIDECAR_UPSTREAM: undefined }, 'SIDECAR_UPSTREAM'],
    ['SIDECAR_UPSTREAM not http(s)', { SIDECAR_UPSTREAM: 'ftp://127.0.0.1:21' }, 'SIDECAR_UPSTREAM'],
    ['SIDECAR_UPSTREAM not a URL', { SIDECAR_UPSTREAM: 'orders-service' }, 'SIDECAR_UPSTREAM'],
    ['SIDECAR_AUDIENCE missing', { SIDECAR_AUDIENCE: undefined }, 'SIDECAR_AUDIENCE'],
    ['SIDECAR_TRUST_BUNDLE_URL missing', { SIDECAR_TRUST_BUNDLE_URL: undefined }, 'SIDECAR_TRUST_BUNDLE_URL'],
    [
      'SIDECAR_TRUST_BUNDLE_URL http off loopback',
      { SIDECAR_TRUST_BUNDLE_URL: 'http://id.example.com/b' },
      'SIDECAR_TRUST_BUNDLE_URL',
    ],
    [
      'SIDECAR_TRUST_BUNDLE_URL not a URL',
      { SIDECAR_TRUST_BUNDLE_URL: 'bundle.json' },
      'SIDECAR_TRUST_BUNDLE_URL',
    ],
    [
      'SIDECAR_REQUIRED_SCOPES invalid',
      { SIDECAR_REQUIRED_SCOPES: 'orders:read "x' },
      'SIDECAR_REQUIRED_SCOPES',
    ],
    ['SIDECAR_REGION invalid', { SIDECAR_REGION: 'EU West' }, 'SIDECAR_REGION'],
    [
      'SIDECAR_ROUTES_FILE missing file',
      { SIDECAR_ROUTES_FILE: '/nonexistent/routes.json' },
      'SIDECAR_ROUTES_FILE',
    ],
    [
      'SIDECAR_EXT_AUTHZ_PREFIX invalid',
      { SIDECAR_EXT_AUTHZ_PREFIX: 'ext-authz/' },
      'SIDECAR_EXT_AUTHZ_PREFIX',
    ],
    [
      'SIDECAR_PUBLIC_URL with a path',
      { SIDECAR_PUBLIC_URL: 'https://orders.example.com/api' },
      'SIDECAR_PUBLIC_URL',
    ],
    [
      'SIDECAR_UPSTREAM_TIMEOUT_MS invalid',
      { SIDECAR_UPSTREAM_TIMEOUT_MS: '-1' },
      'SIDECAR_UPSTREAM_TIMEOUT_MS',
    ],
    [
      'SIDECAR_CLOCK_TOLERANCE_SECONDS invalid',
      { SIDECAR_CLOCK_TOLERANCE_SECONDS: '1h' },
      'SIDECAR_CLOCK_TOLERANCE_SECONDS',
    ],
    ['LOG_LEVEL invalid', { LOG_LEVEL: 'loud' }, 'LOG_LEVEL'],
    [
      'SIDECAR_DECRYPTION_KEYS_FILE missing file',
      { SIDECAR_DECRYPTION_KEYS_FILE: '/nonexistent/keys.json' },
      'SIDECAR_DECRYPTION_KEYS_FILE',
    ],
  ];

  async function run(env: Record<string, string | undefined>) {
    const clean = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined)) as Record<
      string,
      string
    >;
    const p = runSidecar(clean);
    const code = await Promise.race([
      p.exited,
      new Promise<'running'>((r) => setTimeout(() => r('running'), 10_000)),
    ]);
    if (code === 'running') p.child.kill('SIGKILL');
    return { code, stderr: p.stderr(), stdout: p.stdout() };
  }

  it.each(cases)('%s', async (_name, override, variable) => {
    const { code, stderr, stdout } = await run({ ...valid(), ...override });
    expect(code).toBe(1);
    const lines = stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(new RegExp(`^config error: ${variable} `));
    expect(stdout).not.toContain('sidecar listening');
  });

  it('a routes file that is not JSON, or whose rules are wrong, names the file and each rule', async () => {
    const notJson = join(tmp, 'not.json');
    writeFileSync(notJson, '[{ method: POST }]');
    const wrong = join(tmp, 'wrong.json');
    writeFileSync(
      wrong,
      JSON.stringify([
        { method: 'POST', path: 'orders', scopes: ['orders:write'] },
        { path: '/a', scope: ['x'] },
      ]),
    );
    const a = await run({ ...valid(), SIDECAR_ROUTES_FILE: notJson });
    expect(a.code).toBe(1);
    expect(a.stderr).toMatch(/^config error: SIDECAR_ROUTES_FILE is not JSON/m);
    const b = await run({ ...valid(), SIDECAR_ROUTES_FILE: wrong });
    expect(b.code).toBe(1);
    expect(b.stderr.trim().split('\n')).toEqual([
      expect.stringMatching(/^config error: SIDECAR_ROUTES_FILE .*rule 1: "path" must start with "\/"/),
      expect.stringMatching(/^config error: SIDECAR_ROUTES_FILE .*rule 2 has unknown keys \["scope"\]/),
      expect.stringMatching(/^config error: SIDECAR_ROUTES_FILE .*rule 2: "scopes" must be a list/),
    ]);
  });

  it('a decryption key file with a public key only is refused at start', async () => {
    const file = join(tmp, 'public-only.json');
    writeFileSync(file, JSON.stringify({ keys: [sealedPublic] }));
    const { code, stderr } = await run({ ...valid(), SIDECAR_DECRYPTION_KEYS_FILE: file });
    expect(code).toBe(1);
    expect(stderr.trim()).toMatch(
      /^config error: SIDECAR_DECRYPTION_KEYS_FILE .*key 1 \(kid "sealed-1"\) is a public key/,
    );
  });

  it('reports every bad variable at once, one line each', async () => {
    const { code, stderr } = await run({ LOG_LEVEL: 'loud', SIDECAR_REGION: 'EU' });
    expect(code).toBe(1);
    const vars = stderr
      .trim()
      .split('\n')
      .map((l) => /^config error: (\w+) /.exec(l)?.[1]);
    expect(vars).toEqual([
      'PORT',
      'SIDECAR_UPSTREAM',
      'SIDECAR_AUDIENCE',
      'SIDECAR_TRUST_BUNDLE_URL',
      'SIDECAR_REGION',
      'LOG_LEVEL',
    ]);
  });
});
