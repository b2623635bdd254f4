/**
 * RFC 8705 at the broker: tls_client_auth by subject DN, self_signed_tls_client_auth by the
 * registered JWK, certificate-bound access tokens (cnf.x5t#S256), and a client-certificate header
 * believed only from a configured trusted proxy. Real TLS, certificates made at test time.
 */
import { X509Certificate, createHash } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { decodeJwt, exportJWK, importX509 } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminCall, freshDatabases, spawnBroker, type SpawnedBroker } from './support/broker';
import { createVerifier } from '@meridian/verifier';
import { makePki, type Pem } from './support/certs';
import { freePort } from './support/ports';

const API = 'https://api.mtls.example';
const DN = 'CN=svc-mtls,O=Meridian Test,C=DE';
let broker: SpawnedBroker;
let dbs: Awaited<ReturnType<typeof freshDatabases>>;
let pki: ReturnType<typeof makePki>;
let tlsPort: number;
let good: Pem;
let wrongDn: Pem;
let selfSigned: Pem;
const body = new URLSearchParams({
  grant_type: 'client_credentials',
  resource: API,
  scope: 'api:read',
}).toString();

function thumbprint(pem: string): string {
  return createHash('sha256').update(new X509Certificate(pem).raw).digest('base64url');
}

function tlsToken(clientId: string, cert?: Pem): Promise<{ status: number; body: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      {
        host: '127.0.0.1',
        port: tlsPort,
        path: '/token',
        method: 'POST',
        ca: pki.ca.cert,
        ...(cert ? { cert: cert.cert, key: cert.key } : {}),
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
      },
      (res) => {
        let data = '';
        res.on('data', (d: Buffer) => (data += d));
        res.on('end', () =>
          resolve({ status: res.statusCode!, body: JSON.parse(data) as Record<string, unknown> }),
        );
      },
    );
    req.on('error', reject);
    req.end(`${body}&client_id=${encodeURIComponent(clientId)}`);
  });
}

/** Plain HTTP with a certificate header, from a chosen local address (a proxy or not). */
function proxiedToken(clientId: string, cert: Pem, localAddress: string, verify = 'SUCCESS') {
  const port = Number(new URL(broker.url).port);
  return new Promise<{ status: number; body: Record<string, unknown> }>((resolve, reject) => {
    const req = httpRequest(
      {
        host: '127.0.0.1',
        port,
        localAddress,
        path: '/token',
        method: 'POST',
        headers: {
          'content-type': 'application/x-www-form-urlencoded',
          'x-client-cert': encodeURIComponent(cert.cert),
          'x-client-cert-verify': verify,
        },
      },
      (res) => {
        let data = '';
        res.on('data', (d: Buffer) => (data += d));
        res.on('end', () =>
          resolve({ status: res.statusCode!, body: JSON.parse(data) as Record<string, unknown> }),
        );
      },
    );
    req.on('error', reject);
    req.end(`${body}&client_id=${encodeURIComponent(clientId)}`);
  });
}

beforeAll(async () => {
  pki = makePki();
  good = pki.client('good', '/C=DE/O=Meridian Test/CN=svc-mtls');
  wrongDn = pki.client('wrong', '/C=DE/O=Meridian Test/CN=someone-else');
  selfSigned = pki.selfSigned('self', '/CN=self-signed-svc');
  tlsPort = await freePort();
  dbs = await freshDatabases('mtls');
  broker = await spawnBroker({
    controlUrl: dbs.control.url,
    regionUrl: dbs.region.eu!.url,
    extra: {
      MERIDIAN_TLS_PORT: String(tlsPort),
      MERIDIAN_TLS_CERT_FILE: pki.server.certFile,
      MERIDIAN_TLS_KEY_FILE: pki.server.keyFile,
      MERIDIAN_TLS_CLIENT_CA_FILE: pki.ca.certFile,
      MERIDIAN_TRUSTED_PROXIES: '127.0.0.2',
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
  await put('/admin/clients/svc-mtls', {
    ...base,
    token_endpoint_auth_method: 'tls_client_auth',
    tls_client_auth_subject_dn: DN,
    tls_client_certificate_bound_access_tokens: true,
  });
  const jwk = await exportJWK(await importX509(selfSigned.cert, 'ES256'));
  await put('/admin/clients/svc-self-signed', {
    ...base,
    token_endpoint_auth_method: 'self_signed_tls_client_auth',
    jwks: { keys: [{ ...jwk, x5c: [new X509Certificate(selfSigned.cert).raw.toString('base64')] }] },
    tls_client_certificate_bound_access_tokens: true,
  });
});

afterAll(async () => {
  await broker?.stop();
  await dbs?.drop();
});

describe('RFC 8705 §2.1 — tls_client_auth', () => {
  it('authenticates a CA-issued certificate with the registered subject DN and binds the token (§3 cnf.x5t#S256)', async () => {
    const r = await tlsToken('svc-mtls', good);
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    const claims = decodeJwt(r.body.access_token as string) as { cnf?: Record<string, string> };
    expect(claims.cnf?.['x5t#S256']).toBe(thumbprint(good.cert));
  });

  it('refuses a CA-issued certificate with another subject DN', async () => {
    const r = await tlsToken('svc-mtls', wrongDn);
    expect(r.status).toBe(401);
    expect(r.body.error).toBe('invalid_client');
  });

  it('refuses the client without any certificate', async () => {
    const r = await tlsToken('svc-mtls');
    expect([400, 401]).toContain(r.status);
    expect(r.body.access_token).toBeUndefined();
  });

  it('refuses a self-signed certificate carrying the registered DN (not from the client CA)', async () => {
    const forged = pki.selfSigned('forged', '/C=DE/O=Meridian Test/CN=svc-mtls');
    const r = await tlsToken('svc-mtls', forged);
    expect(r.status).toBe(401);
  });
});

describe('RFC 8705 §2.2 — self_signed_tls_client_auth', () => {
  it('authenticates the certificate whose key is registered, and binds the token', async () => {
    const r = await tlsToken('svc-self-signed', selfSigned);
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(
      (decodeJwt(r.body.access_token as string) as { cnf?: Record<string, string> }).cnf?.['x5t#S256'],
    ).toBe(thumbprint(selfSigned.cert));
  });

  it('refuses another self-signed certificate', async () => {
    const r = await tlsToken('svc-self-signed', pki.selfSigned('other-self', '/CN=self-signed-svc'));
    expect(r.status).toBe(401);
  });
});

describe('client certificates forwarded by a proxy', () => {
  it('ignores a certificate header from an address that is not a trusted proxy', async () => {
    const r = await proxiedToken('svc-mtls', good, '127.0.0.1');
    expect([400, 401]).toContain(r.status);
    expect(r.body.access_token).toBeUndefined();
  });

  it('believes the header from a configured trusted proxy, and binds the token to that certificate', async () => {
    const r = await proxiedToken('svc-mtls', good, '127.0.0.2');
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(
      (decodeJwt(r.body.access_token as string) as { cnf?: Record<string, string> }).cnf?.['x5t#S256'],
    ).toBe(thumbprint(good.cert));
  });

  it('refuses a proxied certificate the proxy did not verify', async () => {
    const r = await proxiedToken('svc-mtls', good, '127.0.0.2', 'FAILED:unable to get issuer');
    expect(r.status).toBe(401);
  });
});

describe('RFC 8705 §3 — a certificate-bound token at a service (libs/verifier)', () => {
  it('is accepted with the certificate it is bound to, refused with another or none', async () => {
    const r = await tlsToken('svc-mtls', good);
    const token = r.body.access_token as string;
    const verifier = createVerifier({
      trustBundleUrl: `${broker.url}/.well-known/meridian/trust-bundle`,
      audience: API,
    });
    await expect(
      verifier.verify(token, { clientCertificate: new X509Certificate(good.cert) }),
    ).resolves.toMatchObject({ clientId: 'svc-mtls' });
    await expect(
      verifier.verify(token, { clientCertificate: new X509Certificate(wrongDn.cert) }),
    ).rejects.toMatchObject({ code: 'ERR_TOKEN_BINDING', status: 401 });
    await expect(verifier.verify(token)).rejects.toMatchObject({ code: 'ERR_TOKEN_BINDING', status: 401 });
  });
});
