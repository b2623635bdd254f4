/**
 * `libs/verifier` with explicit issuers (keys made here, since the broker cannot bind tokens
 * yet): sender-constrained tokens — DPoP (RFC 9449) and certificate binding (RFC 8705) — and
 * the key, header and claim rules that need a signing key the test controls. Also a trust
 * bundle served by a loopback server the test changes at will.
 */
import { execFileSync } from 'node:child_process';
import { randomUUID, X509Certificate } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  SignJWT,
  base64url,
  calculateJwkThumbprint,
  exportJWK,
  generateKeyPair,
  importJWK,
  type CryptoKey,
  type JWK,
  type JWTPayload,
} from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  VERIFIER_ERROR_CODES,
  VerifierError,
  certificateThumbprint,
  createVerifier,
  readCredentials,
  verifierErrorResponse,
  type DpopReplayStore,
  type VerifierErrorCode,
  type VerifierOptions,
} from '../libs/verifier/src';
import { accessTokenHash } from '../libs/verifier/src/dpop';

const ISS = 'https://eu.binding.test.example';
const OTHER_ISS = 'https://us.binding.test.example';
const AUD = 'https://orders.binding.test.example';
const URL_ = 'https://orders.binding.test.example/orders/42';

interface Pair {
  privateKey: CryptoKey;
  jwk: JWK;
}
async function pair(alg: string, kid?: string, extra: Record<string, unknown> = {}): Promise<Pair> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true, ...extra });
  const jwk = await exportJWK(publicKey);
  return { privateKey, jwk: kid ? { ...jwk, kid } : jwk };
}

let issuerKey: Pair;
let otherIssuerKey: Pair;
let clientKey: Pair;
let strangerKey: Pair;
let jkt: string;
let certDir: string | undefined;
let certA: X509Certificate;
let certB: X509Certificate;
let certAPem: Buffer;

const nowS = () => Math.floor(Date.now() / 1000);

function mint(
  claims: JWTPayload & Record<string, unknown> = {},
  header: Record<string, unknown> = {},
  key = issuerKey,
) {
  const iat = nowS();
  return new SignJWT({
    iss: ISS,
    sub: 'user-1',
    aud: AUD,
    client_id: 'app',
    jti: randomUUID(),
    scope: 'orders:read',
    iat,
    exp: iat + 300,
    residency: { region: 'eu', jurisdiction: 'DE', policy: 'p@1', processing: ['eu'] },
    ...claims,
  })
    .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid: key.jwk.kid, ...header } as never)
    .sign(key.privateKey);
}

function verifierFor(o: Partial<VerifierOptions> = {}) {
  return createVerifier({
    issuers: [
      { issuer: ISS, region: 'eu', jwks: { keys: [issuerKey.jwk] } },
      { issuer: OTHER_ISS, region: 'us', jwks: { keys: [otherIssuerKey.jwk] } },
    ],
    audience: AUD,
    cache: false,
    ...o,
  } as VerifierOptions);
}

interface ProofOptions {
  htm?: string;
  htu?: string;
  iat?: number;
  jti?: string;
  ath?: string | undefined;
  key?: Pair;
  jwk?: Record<string, unknown>;
  header?: Record<string, unknown>;
}
function proofFor(token: string, o: ProofOptions = {}) {
  const key = o.key ?? clientKey;
  const payload: Record<string, unknown> = {
    htm: o.htm ?? 'GET',
    htu: o.htu ?? URL_,
    iat: o.iat ?? nowS(),
    jti: o.jti ?? randomUUID(),
  };
  const ath = 'ath' in o ? o.ath : accessTokenHash(token);
  if (ath !== undefined) payload.ath = ath;
  return new SignJWT(payload)
    .setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk: o.jwk ?? key.jwk, ...o.header } as never)
    .sign(key.privateKey);
}

async function refused(p: Promise<unknown>, code: VerifierErrorCode, status = 401) {
  const err = await p.then(
    () => {
      throw new Error(`expected ${code}, but it was accepted`);
    },
    (e: unknown) => e,
  );
  expect(err).toMatchObject({ code, status });
  return err as VerifierError;
}

function makeCertificate(dir: string, cn: string): Buffer {
  const key = join(dir, `${cn}.key`);
  const cert = join(dir, `${cn}.pem`);
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      key,
      '-out',
      cert,
      '-days',
      '1',
      '-subj',
      `/CN=${cn}`,
    ],
    { stdio: 'ignore' },
  );
  return readFileSync(cert);
}

beforeAll(async () => {
  issuerKey = await pair('ES256', 'eu-1');
  otherIssuerKey = await pair('ES256', 'us-1');
  clientKey = await pair('ES256');
  strangerKey = await pair('ES256');
  jkt = await calculateJwkThumbprint(clientKey.jwk, 'sha256');
  try {
    certDir = mkdtempSync(join(tmpdir(), 'verifier-certs-'));
    certAPem = makeCertificate(certDir, 'client-a');
    certB = new X509Certificate(makeCertificate(certDir, 'client-b'));
  } catch {
    // No openssl: any two certificates of the system stand in as "presented" certificates.
    const dir = '/etc/ssl/certs';
    const pems = readdirSync(dir)
      .filter((f) => f.endsWith('.pem'))
      .slice(0, 2);
    certAPem = readFileSync(join(dir, pems[0]!));
    certB = new X509Certificate(readFileSync(join(dir, pems[1]!)));
  }
  certA = new X509Certificate(certAPem);
});

afterAll(() => {
  if (certDir) rmSync(certDir, { recursive: true, force: true });
});

describe('RFC 9449 §4.3, §7.1 — DPoP-bound access tokens', () => {
  it('accepts a valid proof (query and fragment of the request URL ignored for htu)', async () => {
    const token = await mint({ cnf: { jkt } });
    const v = verifierFor();
    const t = await v.verify(token, {
      dpop: { proof: await proofFor(token), method: 'GET', url: `${URL_}?page=2#top` },
    });
    expect(t.claims.cnf).toEqual({ jkt });
    // htu names the URL with a query: compared without it (§4.3 check 9).
    const withQuery = await proofFor(token, { htu: `${URL_}?x=1` });
    await expect(
      v.verify(token, { dpop: { proof: withQuery, method: 'GET', url: URL_ } }),
    ).resolves.toBeDefined();
  });

  it('refuses a replayed proof with ERR_DPOP_REPLAY and a DPoP challenge', async () => {
    const token = await mint({ cnf: { jkt } });
    const v = verifierFor();
    const proof = await proofFor(token);
    await v.verify(token, { dpop: { proof, method: 'GET', url: URL_ } });
    const err = await refused(
      v.verify(token, { dpop: { proof, method: 'GET', url: URL_ } }),
      'ERR_DPOP_REPLAY',
    );
    expect(err.wwwAuthenticate()).toMatch(
      /^DPoP error="invalid_dpop_proof", error_description="[^"]+", algs="ES256 /,
    );
  });

  it('refuses a proof for another method (htm)', async () => {
    const token = await mint({ cnf: { jkt } });
    const proof = await proofFor(token, { htm: 'POST' });
    await refused(
      verifierFor().verify(token, { dpop: { proof, method: 'GET', url: URL_ } }),
      'ERR_DPOP_INVALID',
    );
  });

  it('refuses a proof for another URL (htu: other path, other host)', async () => {
    const token = await mint({ cnf: { jkt } });
    const v = verifierFor();
    for (const htu of [
      'https://orders.binding.test.example/orders/43',
      'https://evil.example/orders/42',
      'not a url',
    ]) {
      const proof = await proofFor(token, { htu });
      await refused(v.verify(token, { dpop: { proof, method: 'GET', url: URL_ } }), 'ERR_DPOP_INVALID');
    }
  });

  it('refuses a proof whose ath is for another token, or that has none', async () => {
    const token = await mint({ cnf: { jkt } });
    const other = await mint({ cnf: { jkt } });
    const v = verifierFor();
    for (const ath of [accessTokenHash(other), base64url.encode('x'), undefined]) {
      const proof = await proofFor(token, { ath });
      await refused(v.verify(token, { dpop: { proof, method: 'GET', url: URL_ } }), 'ERR_DPOP_INVALID');
    }
  });

  it('refuses a stale proof (iat older than the window) and one from the future', async () => {
    const token = await mint({ cnf: { jkt } });
    const v = verifierFor();
    for (const iat of [nowS() - 61, nowS() + 120]) {
      const proof = await proofFor(token, { iat });
      await refused(v.verify(token, { dpop: { proof, method: 'GET', url: URL_ } }), 'ERR_DPOP_INVALID');
    }
    const narrow = verifierFor({ dpop: { proofWindowSeconds: 5 } });
    await refused(
      narrow.verify(token, {
        dpop: { proof: await proofFor(token, { iat: nowS() - 10 }), method: 'GET', url: URL_ },
      }),
      'ERR_DPOP_INVALID',
    );
  });

  it('refuses a valid proof made with another key than the token is bound to (jkt)', async () => {
    const token = await mint({ cnf: { jkt } });
    const proof = await proofFor(token, { key: strangerKey });
    const err = await refused(
      verifierFor().verify(token, { dpop: { proof, method: 'GET', url: URL_ } }),
      'ERR_TOKEN_BINDING',
    );
    expect(err.wwwAuthenticate()).toMatch(/^DPoP error="invalid_token"/);
  });

  it('refuses a proof whose jwk header is not the key that signed it', async () => {
    const token = await mint({ cnf: { jkt } });
    const proof = await proofFor(token, { key: strangerKey, jwk: clientKey.jwk as Record<string, unknown> });
    await refused(
      verifierFor().verify(token, { dpop: { proof, method: 'GET', url: URL_ } }),
      'ERR_DPOP_INVALID',
    );
  });

  it('refuses proofs with typ other than dpop+jwt, a private jwk, or a symmetric / none alg', async () => {
    const token = await mint({ cnf: { jkt } });
    const v = verifierFor();
    const privateJwk = await exportJWK(clientKey.privateKey);
    const bad = [
      await proofFor(token, { header: { typ: 'JWT' } }),
      await proofFor(token, { jwk: privateJwk as Record<string, unknown> }),
      await new SignJWT({
        htm: 'GET',
        htu: URL_,
        iat: nowS(),
        jti: randomUUID(),
        ath: accessTokenHash(token),
      })
        .setProtectedHeader({ alg: 'HS256', typ: 'dpop+jwt', jwk: clientKey.jwk })
        .sign(new TextEncoder().encode(JSON.stringify(clientKey.jwk))),
      `${base64url.encode(JSON.stringify({ alg: 'none', typ: 'dpop+jwt', jwk: clientKey.jwk }))}.${base64url.encode(
        JSON.stringify({
          htm: 'GET',
          htu: URL_,
          iat: nowS(),
          jti: randomUUID(),
          ath: accessTokenHash(token),
        }),
      )}.`,
      'not-a-jwt',
    ];
    for (const proof of bad) {
      await refused(v.verify(token, { dpop: { proof, method: 'GET', url: URL_ } }), 'ERR_DPOP_INVALID');
    }
  });

  it('refuses a DPoP-bound token presented without a proof (as a Bearer token)', async () => {
    const token = await mint({ cnf: { jkt } });
    const err = await refused(verifierFor().verify(token), 'ERR_TOKEN_BINDING');
    expect(err.scheme).toBe('DPoP');
  });

  it('refuses a proof presented with a token that is not DPoP-bound', async () => {
    const token = await mint();
    const proof = await proofFor(token);
    await refused(
      verifierFor().verify(token, { dpop: { proof, method: 'GET', url: URL_ } }),
      'ERR_TOKEN_BINDING',
    );
  });

  it('checks a proof on every request, cache hit or not', async () => {
    const token = await mint({ cnf: { jkt } });
    const v = verifierFor({ cache: {} });
    const proof = await proofFor(token);
    const first = await v.verify(token, { dpop: { proof, method: 'GET', url: URL_ } });
    await refused(v.verify(token, { dpop: { proof, method: 'GET', url: URL_ } }), 'ERR_DPOP_REPLAY');
    await refused(v.verify(token), 'ERR_TOKEN_BINDING');
    await refused(
      v.verify(token, {
        dpop: { proof: await proofFor(token, { htm: 'DELETE' }), method: 'GET', url: URL_ },
      }),
      'ERR_DPOP_INVALID',
    );
    const again = await v.verify(token, { dpop: { proof: await proofFor(token), method: 'GET', url: URL_ } });
    expect(again).toBe(first);
  });

  it('uses a shared replay store when one is given (RFC 9449 §11.1)', async () => {
    const seen = new Map<string, number>();
    const store: DpopReplayStore = {
      checkAndRemember: async (key, until) => {
        if (seen.has(key)) return false;
        seen.set(key, until);
        return true;
      },
    };
    const token = await mint({ cnf: { jkt } });
    const proof = await proofFor(token);
    // Two replicas, one store: a proof used at one is a replay at the other.
    await verifierFor({ dpop: { replayStore: store } }).verify(token, {
      dpop: { proof, method: 'GET', url: URL_ },
    });
    await refused(
      verifierFor({ dpop: { replayStore: store } }).verify(token, {
        dpop: { proof, method: 'GET', url: URL_ },
      }),
      'ERR_DPOP_REPLAY',
    );
    expect([...seen.keys()][0]).toMatch(new RegExp(`^${jkt}:`));
  });
});

describe('RFC 8705 §3 — certificate-bound access tokens (cnf.x5t#S256)', () => {
  it('computes x5t#S256 as openssl does (SHA-256 of the DER)', () => {
    const hex = execFileSync('openssl', ['x509', '-noout', '-fingerprint', '-sha256'], { input: certAPem })
      .toString()
      .split('=')[1]!
      .trim()
      .replace(/:/g, '');
    expect(certificateThumbprint(certA)).toBe(Buffer.from(hex, 'hex').toString('base64url'));
    expect(certificateThumbprint(certAPem)).toBe(certificateThumbprint(certA.raw));
  });

  it('accepts the token with the certificate it is bound to (X509Certificate, PEM or DER)', async () => {
    const token = await mint({ cnf: { 'x5t#S256': certificateThumbprint(certA) } });
    const v = verifierFor();
    for (const presented of [certA, certAPem, certA.raw]) {
      await expect(v.verify(token, { clientCertificate: presented })).resolves.toMatchObject({
        sub: 'user-1',
      });
    }
  });

  it('refuses the token presented with another certificate', async () => {
    const token = await mint({ cnf: { 'x5t#S256': certificateThumbprint(certA) } });
    const err = await refused(verifierFor().verify(token, { clientCertificate: certB }), 'ERR_TOKEN_BINDING');
    expect(err.wwwAuthenticate()).toMatch(/^Bearer error="invalid_token"/);
    await refused(
      verifierFor().verify(token, { clientCertificate: Buffer.from('garbage') }),
      'ERR_TOKEN_BINDING',
    );
  });

  it('refuses the token presented without any certificate, cache hit or not', async () => {
    const token = await mint({ cnf: { 'x5t#S256': certificateThumbprint(certA) } });
    const v = verifierFor({ cache: {} });
    await v.verify(token, { clientCertificate: certA });
    await refused(v.verify(token), 'ERR_TOKEN_BINDING');
  });

  it('accepts an unbound token over a connection with a client certificate', async () => {
    await expect(verifierFor().verify(await mint(), { clientCertificate: certB })).resolves.toBeDefined();
  });
});

describe('RFC 8725 §3.1 — algorithm allow-list derived from the key', () => {
  it('EC P-256 key: ES256 only', async () => {
    const p384 = await pair('ES384', 'eu-1');
    // A P-384 signature under the P-256 key's kid: refused by the key's allow-list, not by luck.
    const token = await mint({}, { alg: 'ES384' }, p384);
    await refused(verifierFor().verify(token), 'ERR_TOKEN_ALG');
  });

  it('RSA key: only the algorithm its JWK names (PS256 here, RS256 refused)', async () => {
    const rsa = await pair('PS256', 'rsa-1');
    const v = createVerifier({
      issuers: [{ issuer: ISS, jwks: { keys: [{ ...rsa.jwk, alg: 'PS256' }] } }],
      audience: AUD,
      cache: false,
    });
    await expect(v.verify(await mint({}, { alg: 'PS256' }, rsa))).resolves.toBeDefined();
    // The same RSA key, used for RS256: a valid signature, but not an algorithm this key allows.
    const asRs256 = {
      ...rsa,
      privateKey: (await importJWK(await exportJWK(rsa.privateKey), 'RS256')) as CryptoKey,
    };
    await refused(v.verify(await mint({}, { alg: 'RS256' }, asRs256)), 'ERR_TOKEN_ALG');
    // Without `alg` in the JWK, both RSA algorithms of RFC 9068 deployments are allowed.
    const open = createVerifier({
      issuers: [{ issuer: ISS, jwks: { keys: [rsa.jwk] } }],
      audience: AUD,
      cache: false,
    });
    await expect(open.verify(await mint({}, { alg: 'RS256' }, asRs256))).resolves.toBeDefined();
  });

  it('OKP Ed25519 key: EdDSA', async () => {
    const ed = await pair('EdDSA', 'ed-1', { crv: 'Ed25519' });
    const v = createVerifier({
      issuers: [{ issuer: ISS, jwks: { keys: [ed.jwk] } }],
      audience: AUD,
      cache: false,
    });
    await expect(v.verify(await mint({}, { alg: 'EdDSA' }, ed))).resolves.toBeDefined();
    await refused(v.verify(await mint({}, { alg: 'ES256' }, issuerKey)), 'ERR_TOKEN_SIGNATURE');
  });

  it('refuses a symmetric key in the trust set at configuration time', () => {
    expect(() =>
      createVerifier({
        issuers: [{ issuer: ISS, jwks: { keys: [{ kty: 'oct', k: 'c2VjcmV0', kid: 'h' }] } }],
        audience: AUD,
      }),
    ).toThrow(/no public signature key/);
  });
});

describe('RFC 9068 §4 — issuer, key ownership, typ and required claims', () => {
  it("refuses a token naming one trusted issuer but signed with another trusted issuer's key", async () => {
    const token = await mint({ iss: OTHER_ISS });
    await refused(verifierFor().verify(token), 'ERR_TOKEN_ISSUER');
  });

  it("reports the issuer's region from the trust set", async () => {
    await expect(
      verifierFor().verify(await mint({ iss: OTHER_ISS }, {}, otherIssuerKey)),
    ).resolves.toMatchObject({
      region: 'us',
      issuer: OTHER_ISS,
    });
  });

  it('accepts typ "application/at+jwt" and any case (RFC 7515 §4.1.9)', async () => {
    const v = verifierFor();
    for (const typ of ['application/at+jwt', 'AT+JWT'])
      await expect(v.verify(await mint({}, { typ }))).resolves.toBeDefined();
  });

  it('accepts aud as an array that contains the audience', async () => {
    await expect(
      verifierFor().verify(await mint({ aud: ['https://x.example', AUD] })),
    ).resolves.toMatchObject({ audience: AUD });
  });

  it('needs a kid when the issuer has several keys for the algorithm', async () => {
    const second = await pair('ES256', 'eu-2');
    const one = createVerifier({
      issuers: [{ issuer: ISS, jwks: { keys: [issuerKey.jwk] } }],
      audience: AUD,
      cache: false,
    });
    const two = createVerifier({
      issuers: [{ issuer: ISS, jwks: { keys: [issuerKey.jwk, second.jwk] } }],
      audience: AUD,
      cache: false,
    });
    const token = await mint({}, { kid: undefined });
    await expect(one.verify(token)).resolves.toBeDefined();
    await refused(two.verify(token), 'ERR_TOKEN_HEADER');
  });

  it('refuses tokens missing a required RFC 9068 §2.2 claim', async () => {
    const v = verifierFor();
    for (const claim of ['sub', 'client_id', 'jti', 'exp', 'iat']) {
      await refused(v.verify(await mint({ [claim]: undefined })), 'ERR_TOKEN_MALFORMED');
    }
    await refused(v.verify(await mint({ iss: undefined })), 'ERR_TOKEN_ISSUER');
    await refused(v.verify(await mint({ aud: undefined })), 'ERR_TOKEN_AUDIENCE');
    await refused(v.verify(await mint({ residency: { region: 'eu' } })), 'ERR_TOKEN_MALFORMED');
  });

  it('fails a residency check closed when the token has no residency', async () => {
    const token = await mint({ residency: undefined });
    await expect(verifierFor().verify(token)).resolves.toBeDefined();
    await refused(verifierFor().verify(token, { region: 'eu' }), 'ERR_RESIDENCY_PROCESSING', 403);
  });
});

describe('trust bundle from a loopback broker stand-in', () => {
  let server: Server;
  let url: string;
  let answer: { status: number; body: string; location?: string };
  let hits = 0;
  const bundle = (keys: JWK[]) =>
    JSON.stringify({ regions: [{ region: 'eu', issuer: ISS, jurisdiction: 'EU', jwks: { keys } }] });

  beforeAll(async () => {
    server = createServer((_req, res) => {
      hits++;
      res.writeHead(answer.status, {
        'content-type': 'application/json',
        ...(answer.location ? { location: answer.location } : {}),
      });
      res.end(answer.body);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/.well-known/meridian/trust-bundle`;
  });
  afterAll(() => new Promise((r) => server.close(r)));

  it('drops cached tokens of a key that left the bundle', async () => {
    answer = { status: 200, body: bundle([issuerKey.jwk]) };
    const v = createVerifier({ trustBundleUrl: url, audience: AUD });
    const token = await mint();
    const first = await v.verify(token);
    expect(await v.verify(token)).toBe(first);
    const replacement = await pair('ES256', 'eu-2');
    answer = { status: 200, body: bundle([replacement.jwk]) };
    await v.refresh();
    await refused(v.verify(token), 'ERR_TOKEN_SIGNATURE');
    await expect(v.verify(await mint({}, {}, replacement))).resolves.toBeDefined();
  });

  it('keeps the last good bundle when the broker answers 500, garbage, an empty bundle or a redirect', async () => {
    answer = { status: 200, body: bundle([issuerKey.jwk]) };
    const v = createVerifier({ trustBundleUrl: url, audience: AUD, cache: false });
    const token = await mint();
    await v.verify(token);
    for (const next of [
      { status: 500, body: '{}' },
      { status: 200, body: 'not json' },
      { status: 200, body: JSON.stringify({ regions: [] }) },
      { status: 302, body: '', location: 'http://127.0.0.1:1/elsewhere' },
    ]) {
      answer = next;
      const status = await v.refresh();
      expect(status).toMatchObject({ loaded: true, stale: true });
      expect(status.lastError).toBeTruthy();
      await expect(v.verify(token)).resolves.toBeDefined();
    }
    answer = { status: 200, body: bundle([issuerKey.jwk]) };
    expect(await v.refresh()).toMatchObject({ loaded: true, stale: false });
    expect(v.bundleStatus().lastError).toBeUndefined();
  });

  it('fetches nothing before the first verify or ready()', async () => {
    answer = { status: 200, body: bundle([issuerKey.jwk]) };
    const before = hits;
    const v = createVerifier({ trustBundleUrl: url, audience: AUD });
    expect(hits).toBe(before);
    expect(await v.ready()).toMatchObject({
      loaded: true,
      issuers: [{ issuer: ISS, region: 'eu', kids: ['eu-1'] }],
    });
    expect(hits).toBe(before + 1);
  });
});

describe('configuration', () => {
  it('lists every invalid option at once', () => {
    let message = '';
    try {
      createVerifier({
        audience: '',
        clockToleranceSeconds: -1,
        trustBundleUrl: 'http://broker.example/x',
        issuers: [],
      } as never);
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toContain('audience is required');
    expect(message).toContain('exactly one of trustBundleUrl');
    expect(message).toContain('trustBundleUrl must be https');
    expect(message).toContain('clockToleranceSeconds');
  });

  it('needs the introspection option for introspect: true', async () => {
    await expect(verifierFor().verify(await mint(), { introspect: true })).rejects.toThrow(TypeError);
  });
});

describe('errors and credentials', () => {
  it('maps every code to 401, 403 or 503 with a WWW-Authenticate challenge', () => {
    for (const code of VERIFIER_ERROR_CODES) {
      const { status, headers, body } = verifierErrorResponse(new VerifierError(code, 'why "it" failed\n'));
      expect([401, 403, 503]).toContain(status);
      expect(headers['www-authenticate']).toMatch(/^Bearer( |$)/);
      expect(headers['www-authenticate']).not.toMatch(/[\n\\]|"it"/);
      expect(body.code).toBe(code);
      if (status === 503) expect(headers['retry-after']).toMatch(/^\d+$/);
    }
  });

  it('reads Bearer and DPoP credentials (RFC 6750 §2.1, RFC 9449 §7.1)', () => {
    expect(readCredentials('Bearer abc.def.ghi')).toEqual({ scheme: 'Bearer', token: 'abc.def.ghi' });
    expect(readCredentials('bearer abc')).toEqual({ scheme: 'Bearer', token: 'abc' });
    expect(readCredentials('DPoP abc', 'p.r.f')).toEqual({ scheme: 'DPoP', token: 'abc', proof: 'p.r.f' });
    expect(readCredentials('Basic dXNlcjpwdw==')).toBeUndefined();
    expect(readCredentials(undefined)).toBeUndefined();
    expect(() => readCredentials('Bearer a b')).toThrow(
      expect.objectContaining({ code: 'ERR_TOKEN_MALFORMED' }),
    );
    expect(() => readCredentials('DPoP abc', 'a.b.c, d.e.f')).toThrow(
      expect.objectContaining({ code: 'ERR_DPOP_INVALID' }),
    );
  });
});
