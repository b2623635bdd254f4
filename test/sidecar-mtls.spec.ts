/**
 * The sidecar terminating inbound mutual TLS itself (RFC 8705 §3): certificate-bound access
 * tokens are accepted only over a connection presenting the certificate they were issued to, and
 * the serving certificate is reloaded from its files without a restart. Real TLS, certificates
 * made with openssl at test time, real broker issuing the bound tokens.
 */
import { X509Certificate } from 'node:crypto';
import { copyFileSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { connect } from 'node:tls';
import { decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { validateSidecarEnv } from '../apps/sidecar/src/config';
import { createSidecarLogger } from '../apps/sidecar/src/logger';
import { startSidecar, type RunningSidecar } from '../apps/sidecar/src/server';
import {
  adminCall,
  clientCredentials,
  freshDatabases,
  spawnBroker,
  type SpawnedBroker,
} from './support/broker';
import { makePki, type Pem } from './support/certs';
import { freePort } from './support/ports';

const API = 'https://api.sidecar-mtls.example';
const DN = 'CN=svc-bound,O=Meridian Test,C=DE';
let broker: SpawnedBroker;
let dbs: Awaited<ReturnType<typeof freshDatabases>>;
let pki: ReturnType<typeof makePki>;
let good: Pem;
let other: Pem;
let selfSigned: Pem;
let boundToken: string;
let plainToken: string;
let upstream: Server;
let upstreamUrl: string;
const seen: IncomingHttpHeaders[] = [];
let withCa: RunningSidecar;
let anyCert: RunningSidecar;
let servingCertFile: string;
let servingKeyFile: string;

interface Answer {
  status: number;
  json: any;
  peerCert: X509Certificate | undefined;
}

function call(port: number, token: string | undefined, cert?: Pem): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      {
        host: '127.0.0.1',
        port,
        path: '/orders/1',
        ca: pki.ca.cert,
        agent: false,
        ...(cert ? { cert: cert.cert, key: cert.key } : {}),
        headers: token ? { authorization: `Bearer ${token}` } : {},
      },
      (res) => {
        let data = '';
        const raw = (res.socket as import('node:tls').TLSSocket).getPeerCertificate(false)?.raw;
        res.on('data', (d: Buffer) => (data += d));
        res.on('end', () =>
          resolve({
            status: res.statusCode!,
            json: data ? JSON.parse(data) : undefined,
            peerCert: raw ? new X509Certificate(raw) : undefined,
          }),
        );
      },
    );
    req.on('error', reject);
    req.end();
  });
}

/** The certificate a fresh TLS connection is served (no HTTP). */
function servedCertificate(port: number): Promise<X509Certificate> {
  return new Promise((resolve, reject) => {
    const socket = connect(
      { host: '127.0.0.1', port, ca: pki.ca.cert, cert: good.cert, key: good.key },
      () => {
        const raw = socket.getPeerCertificate(false).raw;
        socket.end();
        resolve(new X509Certificate(raw));
      },
    );
    socket.on('error', reject);
  });
}

async function sidecarWith(env: Record<string, string>): Promise<RunningSidecar> {
  const result = validateSidecarEnv({
    PORT: '0',
    HOST: '127.0.0.1',
    SIDECAR_UPSTREAM: upstreamUrl,
    SIDECAR_AUDIENCE: API,
    SIDECAR_TRUST_BUNDLE_URL: `${broker.url}/.well-known/meridian/trust-bundle`,
    LOG_LEVEL: 'silent',
    ...env,
  });
  if (!result.ok) throw new Error(result.errors.join('\n'));
  const sidecar = await startSidecar(result.config, {
    logger: createSidecarLogger({ level: 'silent' }),
  });
  await sidecar.verifier.ready();
  return sidecar;
}

async function tlsToken(clientId: string, cert: Pem, tlsPort: number): Promise<string> {
  const body = new URLSearchParams({
    grant_type: 'client_credentials',
    resource: API,
    scope: 'api:read',
    client_id: clientId,
  }).toString();
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      {
        host: '127.0.0.1',
        port: tlsPort,
        path: '/token',
        method: 'POST',
        ca: pki.ca.cert,
        cert: cert.cert,
        key: cert.key,
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
      },
      (res) => {
        let data = '';
        res.on('data', (d: Buffer) => (data += d));
        res.on('end', () => {
          const json = JSON.parse(data) as { access_token?: string };
          if (!json.access_token) reject(new Error(data));
          else resolve(json.access_token);
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

beforeAll(async () => {
  pki = makePki();
  good = pki.client('bound', '/C=DE/O=Meridian Test/CN=svc-bound');
  other = pki.client('other', '/C=DE/O=Meridian Test/CN=svc-other');
  selfSigned = pki.selfSigned('self', '/CN=self-signed-caller');
  // The sidecar's serving pair lives in files of its own, rewritten by the rotation test.
  servingCertFile = join(pki.dir, 'sidecar.crt');
  servingKeyFile = join(pki.dir, 'sidecar.key');
  copyFileSync(pki.server.certFile, servingCertFile);
  copyFileSync(pki.server.keyFile, servingKeyFile);

  const tlsPort = await freePort();
  dbs = await freshDatabases('sidecar_mtls');
  broker = await spawnBroker({
    controlUrl: dbs.control.url,
    regionUrl: dbs.region.eu!.url,
    extra: {
      MERIDIAN_TLS_PORT: String(tlsPort),
      MERIDIAN_TLS_CERT_FILE: pki.server.certFile,
      MERIDIAN_TLS_KEY_FILE: pki.server.keyFile,
      MERIDIAN_TLS_CLIENT_CA_FILE: pki.ca.certFile,
    },
  });
  const put = async (path: string, b: unknown) => {
    const r = await adminCall(broker, 'PUT', path, b);
    expect(r.status, JSON.stringify(r.body)).toBe(201);
  };
  await put('/admin/resources/api', { audience: API, scopes: ['api:read'], region: 'eu' });
  const base = {
    redirect_uris: [],
    response_types: [],
    grant_types: ['client_credentials'],
    scope: 'api:read',
    resources: [API],
  };
  await put('/admin/clients/svc-bound', {
    ...base,
    token_endpoint_auth_method: 'tls_client_auth',
    tls_client_auth_subject_dn: DN,
    tls_client_certificate_bound_access_tokens: true,
  });
  await put('/admin/clients/svc-plain', {
    ...base,
    token_endpoint_auth_method: 'client_secret_basic',
    client_secret: 'plain-secret-0123456789abcdef-0123456789',
  });
  boundToken = await tlsToken('svc-bound', good, tlsPort);
  const plain = await clientCredentials(
    broker.url,
    { clientId: 'svc-plain', clientSecret: 'plain-secret-0123456789abcdef-0123456789' },
    API,
    'api:read',
  );
  plainToken = String(plain.body.access_token);

  upstream = createServer((req, res) => {
    seen.push(req.headers);
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ ok: true }));
  });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', () => r()));
  upstreamUrl = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;

  withCa = await sidecarWith({
    SIDECAR_TLS_CERT_FILE: servingCertFile,
    SIDECAR_TLS_KEY_FILE: servingKeyFile,
    SIDECAR_TLS_CLIENT_CA_FILE: pki.ca.certFile,
  });
  anyCert = await sidecarWith({
    SIDECAR_TLS_CERT_FILE: pki.server.certFile,
    SIDECAR_TLS_KEY_FILE: pki.server.keyFile,
  });
}, 120_000);

afterAll(async () => {
  await withCa?.close();
  await anyCert?.close();
  upstream?.close();
  await broker?.stop();
  await dbs?.drop();
});

describe('RFC 8705 §3 — certificate-bound tokens at the sidecar terminating mTLS', () => {
  it('the broker bound the token to the certificate (cnf.x5t#S256)', () => {
    const cnf = decodeJwt(boundToken).cnf as Record<string, string>;
    expect(cnf['x5t#S256']).toBeTruthy();
  });

  it('the bound token over a connection with its certificate is allowed, identity forwarded as https', async () => {
    const before = seen.length;
    const r = await call(withCa.port, boundToken, good);
    expect(r.status).toBe(200);
    expect(seen.length).toBe(before + 1);
    expect(seen.at(-1)!['x-meridian-client-id']).toBe('svc-bound');
    expect(seen.at(-1)!['x-forwarded-proto']).toBe('https');
  });

  it('RFC 8705 §3 — the same token with another certificate of the same CA → 401, upstream not reached', async () => {
    const before = seen.length;
    const r = await call(withCa.port, boundToken, other);
    expect(r.status).toBe(401);
    expect(r.json.error).toBe('invalid_token');
    expect(seen.length).toBe(before);
  });

  it('RFC 8705 §3 — the same token with a self-signed certificate (any-certificate listener) → 401', async () => {
    const before = seen.length;
    const r = await call(anyCert.port, boundToken, selfSigned);
    expect(r.status).toBe(401);
    expect(seen.length).toBe(before);
  });

  it('RFC 8705 §3 — the same token with no certificate (any-certificate listener) → 401', async () => {
    const before = seen.length;
    const r = await call(anyCert.port, boundToken);
    expect(r.status).toBe(401);
    expect(seen.length).toBe(before);
  });

  it('with SIDECAR_TLS_CLIENT_CA_FILE a connection without a CA-issued certificate is refused in the handshake', async () => {
    const before = seen.length;
    await expect(call(withCa.port, plainToken)).rejects.toThrow();
    await expect(call(withCa.port, plainToken, selfSigned)).rejects.toThrow();
    expect(seen.length).toBe(before);
  });

  it('an unbound token over mTLS is checked as usual (allowed)', async () => {
    expect((await call(withCa.port, plainToken, other)).status).toBe(200);
    expect((await call(anyCert.port, plainToken)).status).toBe(200);
  });
});

describe('serving certificate rotation without restart', () => {
  it('a rewritten certificate and key are served to new connections; a broken pair is refused and the one in use stays', async () => {
    const before = await servedCertificate(withCa.port);
    expect(before.fingerprint256).toBe(new X509Certificate(pki.server.cert).fingerprint256);

    // Mid-rotation: a certificate that does not match the key in place → keep serving the old.
    const next = pki.serverCert('sidecar-next');
    writeFileSync(servingCertFile, next.cert);
    await new Promise((r) => setTimeout(r, 2500));
    expect((await servedCertificate(withCa.port)).fingerprint256).toBe(before.fingerprint256);
    expect((await call(withCa.port, boundToken, good)).status).toBe(200);

    // The key follows: the new pair is served, no restart.
    writeFileSync(servingKeyFile, next.key);
    const deadline = Date.now() + 10_000;
    let now = before;
    while (Date.now() < deadline) {
      now = await servedCertificate(withCa.port);
      if (now.fingerprint256 !== before.fingerprint256) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(now.fingerprint256).toBe(new X509Certificate(next.cert).fingerprint256);
    expect((await call(withCa.port, boundToken, good)).status).toBe(200);
  }, 30_000);
});

describe('configuration', () => {
  it('SIDECAR_TLS_CERT_FILE without SIDECAR_TLS_KEY_FILE stops the start naming the variable', () => {
    const r = validateSidecarEnv({
      PORT: '0',
      SIDECAR_UPSTREAM: 'http://127.0.0.1:1',
      SIDECAR_AUDIENCE: API,
      SIDECAR_TRUST_BUNDLE_URL: 'http://127.0.0.1:1/b',
      SIDECAR_TLS_CERT_FILE: pki.server.certFile,
    });
    expect(r.ok).toBe(false);
    expect(!r.ok && r.errors.some((e) => e.startsWith('SIDECAR_TLS_KEY_FILE is required'))).toBe(true);
  });

  it('an unreadable certificate file is named', () => {
    const r = validateSidecarEnv({
      PORT: '0',
      SIDECAR_UPSTREAM: 'http://127.0.0.1:1',
      SIDECAR_AUDIENCE: API,
      SIDECAR_TRUST_BUNDLE_URL: 'http://127.0.0.1:1/b',
      SIDECAR_TLS_CERT_FILE: '/nonexistent/cert.pem',
      SIDECAR_TLS_KEY_FILE: pki.server.keyFile,
    });
    expect(!r.ok && r.errors.some((e) => e.startsWith('SIDECAR_TLS_CERT_FILE cannot be read'))).toBe(true);
  });

  it('a key that does not match the certificate stops the start', async () => {
    await expect(
      sidecarWith({ SIDECAR_TLS_CERT_FILE: pki.server.certFile, SIDECAR_TLS_KEY_FILE: good.keyFile }),
    ).rejects.toThrow(/SIDECAR_TLS_CERT_FILE\/SIDECAR_TLS_KEY_FILE/);
  });
});
