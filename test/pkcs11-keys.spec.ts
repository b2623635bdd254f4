/**
 * A region's signing keys in an HSM (PKCS#11), tested against a real SoftHSM2 token: the keys
 * are generated inside the token, sensitive and non-extractable; the broker signs tokens there
 * (CKM_ECDSA over the SHA-256 digest, r || s as RFC 7518 §3.4 wants) and publishes the public
 * halves; what it issues verifies with jose against its JWKS and the trust bundle.
 */
import { Client } from 'pg';
import { compactVerify, createLocalJWKSet, importJWK, jwtVerify, type JSONWebKeySet } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SENSITIVE_VARIABLES, validateBrokerEnv } from '@meridian/config';
import { Pkcs11KeyProvider, privateKeyJwtAuth, signJwt, type JwtSigningKey } from '@meridian/keys';
import Provider from 'oidc-provider';
import * as oidc from 'openid-client';
import {
  adminCall,
  brokerEnv,
  clientCredentials,
  freshDatabases,
  newKek,
  registerService,
  runBrokerProcess,
  spawnBroker,
  type SpawnedBroker,
} from './support/broker';
import { freePort } from './support/ports';
import { createSoftHsmToken, softHsmAvailable, type SoftHsmToken } from './support/softhsm';

const AVAILABLE = softHsmAvailable();
// CI installs the packages: there a missing SoftHSM2 is a failure, not a skip.
const RUN = AVAILABLE || !!process.env.CI;
const AUDIENCE = 'https://hsm.example';

function pkcs11Env(token: SoftHsmToken): Record<string, string> {
  return {
    MERIDIAN_SIGNING_KEY_PROVIDER: 'pkcs11',
    MERIDIAN_PKCS11_MODULE: token.module,
    MERIDIAN_PKCS11_TOKEN_LABEL: token.label,
    MERIDIAN_PKCS11_PIN: token.pin,
    ...token.env,
  };
}

async function jwks(url: string): Promise<JSONWebKeySet> {
  return (await (await fetch(`${url}/jwks`)).json()) as JSONWebKeySet;
}

describe.runIf(RUN)('the PKCS#11 key provider on a SoftHSM2 token', () => {
  let token: SoftHsmToken;
  let hsm: Pkcs11KeyProvider;

  beforeAll(() => {
    token = createSoftHsmToken('meridian-unit');
    process.env.SOFTHSM2_CONF = token.env.SOFTHSM2_CONF;
    hsm = Pkcs11KeyProvider.open({ module: token.module, tokenLabel: token.label, pin: token.pin });
  });

  afterAll(() => {
    hsm?.close();
    token?.remove();
  });

  it('generates a P-256 key inside the token that the token refuses to export', async () => {
    const key = await hsm.generateEs256('unit:');
    expect(key.label).toBe(`unit:${key.kid}`);
    expect(key.publicJwk).toMatchObject({ kty: 'EC', crv: 'P-256', alg: 'ES256', use: 'sig', kid: key.kid });
    expect(key.publicJwk).not.toHaveProperty('d');
    expect(hsm.protection(key.label)).toEqual({ sensitive: true, extractable: false, alwaysSensitive: true });
    expect(hsm.tryExport(key.label)).toBe('CKR_ATTRIBUTE_SENSITIVE');
    expect(hsm.publicJwk(key.label)).toEqual({
      kty: 'EC',
      crv: 'P-256',
      x: key.publicJwk.x,
      y: key.publicJwk.y,
    });
  });

  it('RFC 7515/7518 §3.4: signs an ES256 JWS in the token that jose verifies', async () => {
    const key = await hsm.generateEs256('unit:');
    const header = Buffer.from(JSON.stringify({ alg: 'ES256', kid: key.kid })).toString('base64url');
    const payload = Buffer.from(JSON.stringify({ sub: 'hsm', n: 1 })).toString('base64url');
    const signature = hsm.sign(key.label, Buffer.from(`${header}.${payload}`));
    expect(signature).toHaveLength(64);
    const jws = `${header}.${payload}.${Buffer.from(signature).toString('base64url')}`;
    const verified = await compactVerify(jws, await importJWK(key.publicJwk, 'ES256'));
    expect(JSON.parse(new TextDecoder().decode(verified.payload))).toEqual({ sub: 'hsm', n: 1 });
    // ECDSA is randomised: a second signature differs and verifies too.
    const again = hsm.sign(key.label, Buffer.from(`${header}.${payload}`));
    expect(Buffer.from(again).equals(Buffer.from(signature))).toBe(false);
  });

  /** A region key as SigningKeyStore hands it out in PKCS#11 mode: the private half stays in the token. */
  async function heldKey(): Promise<JwtSigningKey> {
    const ref = await hsm.generateEs256('unit:');
    return {
      kid: ref.kid,
      alg: 'ES256',
      privateJwk: ref.publicJwk,
      external: { sign: async (data) => hsm.sign(ref.label, data) },
    };
  }

  it('RFC 7519 §7.1: signJwt signs an erasure-notice-shaped JWT in the token, typ and kid in its header', async () => {
    const key = await heldKey();
    const jwt = await signJwt(
      key,
      {
        iss: 'https://eu.example',
        aud: 'https://us.example',
        sub: 's-1',
        exp: Math.floor(Date.now() / 1000) + 60,
      },
      { typ: 'meridian-erasure+jwt' },
    );
    const { payload, protectedHeader } = await jwtVerify(jwt, await importJWK(key.privateJwk, 'ES256'), {
      issuer: 'https://eu.example',
      audience: 'https://us.example',
      typ: 'meridian-erasure+jwt',
    });
    expect(payload.sub).toBe('s-1');
    expect(protectedHeader).toEqual({ typ: 'meridian-erasure+jwt', alg: 'ES256', kid: key.kid });
    expect(key.privateJwk).not.toHaveProperty('d');
  });

  it('RFC 7523 §2.2: private_key_jwt client authentication signed in the token is accepted by a real oidc-provider; another key is refused', async () => {
    const key = await heldKey();
    const other = await heldKey();
    const port = await freePort();
    const issuer = `http://127.0.0.1:${port}`;
    const provider = new Provider(issuer, {
      clients: [
        {
          client_id: 'hsm-client',
          token_endpoint_auth_method: 'private_key_jwt',
          token_endpoint_auth_signing_alg: 'ES256',
          jwks: { keys: [key.privateJwk] },
          grant_types: ['client_credentials'],
          redirect_uris: [],
          response_types: [],
        },
      ],
      features: { clientCredentials: { enabled: true } },
    });
    const server = provider.listen(port, '127.0.0.1');
    try {
      const grant = async (k: JwtSigningKey) => {
        const config = await oidc.discovery(
          new URL(issuer),
          'hsm-client',
          undefined,
          await privateKeyJwtAuth(k),
          {
            execute: [oidc.allowInsecureRequests],
          },
        );
        return oidc.clientCredentialsGrant(config);
      };
      const tokens = await grant(key);
      expect(tokens.access_token).toBeTruthy();
      await expect(grant(other)).rejects.toMatchObject({ error: 'invalid_client' });
    } finally {
      await new Promise((r) => server.close(r));
    }
  });

  it('refuses a wrong PIN and an unknown token, naming the variable', () => {
    // A login is per process (PKCS#11 §5.6): the session opened above must be gone first.
    hsm.close();
    expect(() =>
      Pkcs11KeyProvider.open({ module: token.module, tokenLabel: token.label, pin: 'wrong-pin' }),
    ).toThrow(/^MERIDIAN_PKCS11_PIN: the token "meridian-unit" refused the login/);
    expect(() =>
      Pkcs11KeyProvider.open({ module: token.module, tokenLabel: 'no-such-token', pin: token.pin }),
    ).toThrow(/^MERIDIAN_PKCS11_TOKEN_LABEL: no token labelled "no-such-token"/);
  });
});

describe('MERIDIAN_SIGNING_KEY_PROVIDER configuration', () => {
  const base = brokerEnv({
    port: 1,
    controlUrl: 'postgres://h/c',
    regionUrl: 'postgres://h/r',
    kek: newKek(),
  });
  const errors = (extra: Record<string, string>) => {
    const r = validateBrokerEnv({ ...base, ...extra });
    return r.ok ? [] : r.errors;
  };

  it('names each missing or bad variable on one line', () => {
    expect(errors({ MERIDIAN_SIGNING_KEY_PROVIDER: 'pkcs11' })).toEqual([
      expect.stringMatching(/^MERIDIAN_PKCS11_MODULE is required/),
      expect.stringMatching(/^MERIDIAN_PKCS11_TOKEN_LABEL is required/),
      expect.stringMatching(/^MERIDIAN_PKCS11_PIN is required/),
    ]);
    expect(errors({ MERIDIAN_SIGNING_KEY_PROVIDER: 'vault' })).toEqual([
      expect.stringMatching(/^MERIDIAN_SIGNING_KEY_PROVIDER must be kek .* or pkcs11/),
    ]);
    expect(
      errors({
        MERIDIAN_SIGNING_KEY_PROVIDER: 'pkcs11',
        MERIDIAN_PKCS11_MODULE: '/nonexistent/libpkcs11.so',
        MERIDIAN_PKCS11_TOKEN_LABEL: 't',
        MERIDIAN_PKCS11_PIN: '1',
        MERIDIAN_SIGNING_ALG: 'RS256',
      }),
    ).toEqual([
      'MERIDIAN_PKCS11_MODULE must name a readable file (/nonexistent/libpkcs11.so does not exist)',
      expect.stringMatching(/^MERIDIAN_SIGNING_ALG must be ES256 with MERIDIAN_SIGNING_KEY_PROVIDER=pkcs11/),
    ]);
  });

  it('keeps the PIN out of logs', () => {
    expect(SENSITIVE_VARIABLES.has('MERIDIAN_PKCS11_PIN')).toBe(true);
  });
});

describe.runIf(RUN)('a broker whose signing keys live in a SoftHSM2 token', () => {
  let token: SoftHsmToken;
  let dbs: Awaited<ReturnType<typeof freshDatabases>>;
  let broker: SpawnedBroker;
  let port: number;
  let service: { clientId: string; clientSecret: string };
  const start = () =>
    spawnBroker({
      controlUrl: dbs.control.url,
      regionUrl: dbs.region.eu!.url,
      kek: newKek(),
      port,
      extra: pkcs11Env(token),
    });

  beforeAll(async () => {
    if (!AVAILABLE) throw new Error('SoftHSM2 is missing: apt-get install -y softhsm2 opensc');
    token = createSoftHsmToken('meridian-eu');
    dbs = await freshDatabases('pkcs11_keys');
    port = await freePort();
    broker = await start();
    service = await registerService(broker, {
      resourceId: 'hsm-api',
      audience: AUDIENCE,
      scopes: ['hsm:read'],
      clientId: 'hsm-service',
      clientScope: 'hsm:read',
    });
  }, 120_000);

  afterAll(async () => {
    await broker?.stop();
    await dbs?.drop();
    token?.remove();
  });

  async function issueAndVerify(): Promise<string> {
    const r = await clientCredentials(broker.url, service, AUDIENCE);
    expect(r.status).toBe(200);
    const at = r.body.access_token as string;
    const { payload, protectedHeader } = await jwtVerify(at, createLocalJWKSet(await jwks(broker.url)), {
      issuer: broker.issuer,
      audience: AUDIENCE,
      typ: 'at+jwt',
      algorithms: ['ES256'],
    });
    expect(payload.client_id).toBe('hsm-service');
    return protectedHeader.kid!;
  }

  it('publishes only public keys and issues access tokens that verify with jose against its JWKS and trust bundle', async () => {
    const published = await jwks(broker.url);
    expect(published.keys).toHaveLength(2); // current and next
    for (const k of published.keys) {
      expect(k).toMatchObject({ kty: 'EC', crv: 'P-256', alg: 'ES256', use: 'sig' });
      expect(k).not.toHaveProperty('d');
    }
    const kid = await issueAndVerify();
    const bundle = (await (await fetch(`${broker.url}/.well-known/meridian/trust-bundle`)).json()) as {
      regions: { region: string; jwks: JSONWebKeySet }[];
    };
    const eu = bundle.regions.find((r) => r.region === 'eu')!;
    expect(eu.jwks.keys.map((k) => k.kid)).toContain(kid);
  });

  it('keeps no private key in the database: the keys are in the token, sensitive and non-extractable', async () => {
    const client = new Client({ connectionString: dbs.region.eu!.url });
    await client.connect();
    let rows: { kid: string; kek_id: string; label: string; public_jwk: Record<string, unknown> }[];
    try {
      rows = (
        await client.query(
          `select kid, kek_id, convert_from(sealed_private_jwk, 'UTF8') as label, public_jwk from signing_key`,
        )
      ).rows;
    } finally {
      await client.end();
    }
    expect(rows).toHaveLength(2);
    process.env.SOFTHSM2_CONF = token.env.SOFTHSM2_CONF;
    const hsm = Pkcs11KeyProvider.open({ module: token.module, tokenLabel: token.label, pin: token.pin });
    try {
      for (const row of rows) {
        expect(row.kek_id).toBe('pkcs11');
        expect(row.label).toBe(`meridian:eu:${row.kid}`);
        expect(row.public_jwk).not.toHaveProperty('d');
        expect(hsm.protection(row.label)).toEqual({
          sensitive: true,
          extractable: false,
          alwaysSensitive: true,
        });
        expect(hsm.tryExport(row.label)).toBe('CKR_ATTRIBUTE_SENSITIVE');
        expect(hsm.publicJwk(row.label)).toMatchObject({ x: row.public_jwk.x, y: row.public_jwk.y });
      }
    } finally {
      hsm.close();
    }
  });

  it('rotates inside the token: the promoted key signs, the retiring one still verifies', async () => {
    const before = await issueAndVerify();
    const rotated = await adminCall(broker, 'POST', '/admin/keys/rotate');
    expect(rotated.status).toBe(200);
    expect(rotated.body.retiring).toBe(before);
    const after = await issueAndVerify();
    expect(after).toBe(rotated.body.current);
    expect((await jwks(broker.url)).keys.map((k) => k.kid)).toEqual(
      expect.arrayContaining([before, after, rotated.body.next]),
    );
  });

  it('a restarted broker signs with the same keys from the token', async () => {
    const kids = (await jwks(broker.url)).keys.map((k) => k.kid).sort();
    await broker.stop();
    broker = await start();
    expect((await jwks(broker.url)).keys.map((k) => k.kid).sort()).toEqual(kids);
    expect(kids).toContain(await issueAndVerify());
  }, 60_000);

  it('stops at start with one line when the token is not there', async () => {
    const proc = runBrokerProcess(
      brokerEnv({
        controlUrl: dbs.control.url,
        regionUrl: dbs.region.eu!.url,
        port: await freePort(),
        extra: { ...pkcs11Env(token), MERIDIAN_PKCS11_TOKEN_LABEL: 'absent-token' },
      }),
    );
    expect(await proc.exited).toBe(1);
    expect(proc.output()).toMatch(
      /startup error: MERIDIAN_PKCS11_TOKEN_LABEL: no token labelled "absent-token"/,
    );
  }, 60_000);
});
