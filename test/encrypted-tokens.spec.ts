/**
 * Nested JWT access tokens (RFC 9068 §7, RFC 7519 §11.2): a service that registered a public
 * encryption key gets tokens signed by the broker, then encrypted to it. Only that service's
 * key opens them; weak or mismatched algorithms are refused (RFC 8725 §3.2).
 */
import { generateKeyPairSync } from 'node:crypto';
import {
  CompactEncrypt,
  EncryptJWT,
  SignJWT,
  exportJWK,
  generateKeyPair,
  decodeProtectedHeader,
  type JWK,
} from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createVerifier } from '@meridian/verifier';
import {
  adminCall,
  clientCredentials,
  freshDatabases,
  registerService,
  spawnBroker,
  type SpawnedBroker,
} from './support/broker';

const API = 'https://sensitive.enc.example';
let broker: SpawnedBroker;
let dbs: Awaited<ReturnType<typeof freshDatabases>>;
let client: { clientId: string; clientSecret: string };
let servicePrivate: JWK;
let servicePublic: JWK;

beforeAll(async () => {
  dbs = await freshDatabases('enc');
  broker = await spawnBroker({ controlUrl: dbs.control.url, regionUrl: dbs.region.eu!.url });
  const pair = await generateKeyPair('ECDH-ES+A256KW', { extractable: true });
  servicePrivate = { ...(await exportJWK(pair.privateKey)), kid: 'svc-enc-1', alg: 'ECDH-ES+A256KW' };
  servicePublic = {
    ...(await exportJWK(pair.publicKey)),
    kid: 'svc-enc-1',
    alg: 'ECDH-ES+A256KW',
    enc: 'A256GCM',
  } as JWK;
  client = await registerService(broker, {
    resourceId: 'sensitive',
    audience: API,
    scopes: ['read'],
    clientId: 'enc-client',
    clientScope: 'read',
  });
  const put = await adminCall(broker, 'PUT', '/admin/resources/sensitive', {
    audience: API,
    scopes: ['read'],
    region: 'eu',
    encryptionJwk: servicePublic,
  });
  expect(put.status, JSON.stringify(put.body)).toBe(200);
});

afterAll(async () => {
  await broker?.stop();
  await dbs?.drop();
});

const bundle = () => `${broker.url}/.well-known/meridian/trust-bundle`;

describe('RFC 9068 §7 — access tokens encrypted to the service', () => {
  it('issues a JWE (ECDH-ES+A256KW, A256GCM, cty at+jwt) that only the service’s key opens', async () => {
    // The resource catalog caches for 5 s: wait until the key is in force.
    let token = '';
    for (let i = 0; i < 60 && token.split('.').length !== 5; i++) {
      token = (await clientCredentials(broker.url, client, API, 'read')).body.access_token as string;
      if (token.split('.').length !== 5) await new Promise((r) => setTimeout(r, 100));
    }
    expect(token.split('.')).toHaveLength(5);
    expect(decodeProtectedHeader(token)).toMatchObject({
      alg: 'ECDH-ES+A256KW',
      enc: 'A256GCM',
      cty: 'at+jwt',
      kid: 'svc-enc-1',
    });
    const verified = await createVerifier({
      trustBundleUrl: bundle(),
      audience: API,
      decryptionKeys: [servicePrivate],
    }).verify(token);
    expect(verified.clientId).toBe('enc-client');
    expect(verified.residency).toMatchObject({ region: 'eu' });
    await expect(
      createVerifier({ trustBundleUrl: bundle(), audience: API }).verify(token),
    ).rejects.toMatchObject({ code: 'ERR_TOKEN_MALFORMED' });
    const other = await generateKeyPair('ECDH-ES+A256KW', { extractable: true });
    const otherJwk = { ...(await exportJWK(other.privateKey)), kid: 'svc-enc-1' };
    await expect(
      createVerifier({ trustBundleUrl: bundle(), audience: API, decryptionKeys: [otherJwk] }).verify(token),
    ).rejects.toMatchObject({
      code: 'ERR_TOKEN_MALFORMED',
    });
  });

  it('reloads decryption keys without a restart (a key function is asked each time)', async () => {
    let keys: JWK[] = [];
    const verifier = createVerifier({
      trustBundleUrl: bundle(),
      audience: API,
      decryptionKeys: () => keys,
      cache: false,
    });
    const token = (await clientCredentials(broker.url, client, API, 'read')).body.access_token as string;
    await expect(verifier.verify(token)).rejects.toMatchObject({ code: 'ERR_TOKEN_MALFORMED' });
    keys = [servicePrivate];
    await expect(verifier.verify(token)).resolves.toMatchObject({ clientId: 'enc-client' });
  });
});

describe('RFC 8725 §3.2 — weak or mismatched encryption refused', () => {
  const verifier = () =>
    createVerifier({ trustBundleUrl: bundle(), audience: API, decryptionKeys: [servicePrivate] });
  const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');

  it('refuses RSA1_5 key management before any decryption', async () => {
    const fake = `${b64({ alg: 'RSA1_5', enc: 'A128GCM', cty: 'at+jwt' })}.AAAA.AAAA.AAAA.AAAA`;
    await expect(verifier().verify(fake)).rejects.toMatchObject({ code: 'ERR_TOKEN_ALG' });
  });

  it('refuses `dir` with a guessed shared key', async () => {
    const guessed = new Uint8Array(32);
    const jwe = await new EncryptJWT({ sub: 'x' })
      .setProtectedHeader({ alg: 'dir', enc: 'A256GCM', cty: 'at+jwt' })
      .encrypt(guessed);
    await expect(verifier().verify(jwe)).rejects.toMatchObject({ code: 'ERR_TOKEN_ALG' });
  });

  it('refuses an encrypted token whose content is not signed (alg none inside)', async () => {
    const now = Math.floor(Date.now() / 1000);
    const unsigned = `${b64({ alg: 'none', typ: 'at+jwt' })}.${b64({ iss: broker.issuer, aud: API, sub: 'x', client_id: 'x', jti: 'j', iat: now, exp: now + 60 })}.`;
    const jwe = await new CompactEncrypt(new TextEncoder().encode(unsigned))
      .setProtectedHeader({ alg: 'ECDH-ES+A256KW', enc: 'A256GCM', cty: 'at+jwt', kid: 'svc-enc-1' })
      .encrypt(servicePublic as never);
    await expect(verifier().verify(jwe)).rejects.toMatchObject({ status: 401 });
  });

  it('refuses an encrypted token signed by someone else', async () => {
    const attacker = await generateKeyPair('ES256');
    const forged = await new SignJWT({
      client_id: 'enc-client',
      scope: 'read',
      residency: { region: 'eu', jurisdiction: 'EU', policy: 'none', processing: ['eu'] },
    })
      .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid: 'whatever' })
      .setIssuer(broker.issuer)
      .setAudience(API)
      .setSubject('enc-client')
      .setJti('forged')
      .setIssuedAt()
      .setExpirationTime('5m')
      .sign(attacker.privateKey);
    const jwe = await new CompactEncrypt(new TextEncoder().encode(forged))
      .setProtectedHeader({ alg: 'ECDH-ES+A256KW', enc: 'A256GCM', cty: 'at+jwt' })
      .encrypt(servicePublic as never);
    await expect(verifier().verify(jwe)).rejects.toMatchObject({ status: 401 });
  });
});

describe('registering an encryption key', () => {
  it.each([
    ['a private key', async () => ({ ...servicePrivate })],
    ['RSA1_5', async () => ({ ...servicePublic, alg: 'RSA1_5' })],
    ['dir', async () => ({ kty: 'oct', k: 'AAAA', alg: 'dir' })],
    [
      'a 1024-bit RSA key',
      async () => ({
        ...generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ format: 'jwk' }),
        alg: 'RSA-OAEP-256',
      }),
    ],
  ])('refuses %s with 400 naming encryptionJwk', async (_what, make) => {
    const r = await adminCall(broker, 'PUT', '/admin/resources/enc-probe', {
      audience: 'https://probe.enc.example',
      scopes: ['read'],
      region: 'eu',
      encryptionJwk: await make(),
    });
    expect(r.status).toBe(400);
    expect(r.body.error_description).toContain('encryptionJwk');
  });
});
