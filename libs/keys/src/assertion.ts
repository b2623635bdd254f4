/**
 * JWTs this region signs as a client — private_key_jwt client assertions (RFC 7523 §2.2) at
 * upstream IdPs, at peer brokers and at its own console's token endpoint, and erasure notices —
 * with its current signing key, wherever that key lives: a key sealed under the KEK signs with
 * jose (and openid-client's own PrivateKeyJwt); a key held in a PKCS#11 token signs inside the
 * token, the private half never leaving it (the JWS compact serialization around the token's
 * r || s signature, RFC 7515 §7.1 / RFC 7518 §3.4).
 */
import { randomBytes } from 'node:crypto';
import { SignJWT, importJWK, type JWTPayload } from 'jose';
import * as oidc from 'openid-client';
import type { SigningKey } from './signing-keys';

/** What signing needs of a region key. */
export type JwtSigningKey = Pick<SigningKey, 'kid' | 'alg' | 'privateJwk' | 'external'>;

type Imported = Awaited<ReturnType<typeof importJWK>>;
const imported = new WeakMap<object, Promise<Imported>>();

/** The key as jose wants it, imported once per key. */
function softwareKey(key: JwtSigningKey): Promise<Imported> {
  let p = imported.get(key.privateJwk);
  if (!p) {
    p = importJWK(key.privateJwk, key.alg);
    imported.set(key.privateJwk, p);
  }
  return p;
}

const b64u = (s: string) => Buffer.from(s, 'utf8').toString('base64url');

/** A compact JWS of `payload`, `alg` and `kid` of the key in its protected header. */
export async function signJwt(
  key: JwtSigningKey,
  payload: JWTPayload,
  header: Record<string, unknown> = {},
): Promise<string> {
  const protectedHeader = { ...header, alg: key.alg, kid: key.kid };
  if (!key.external)
    return new SignJWT(payload).setProtectedHeader(protectedHeader).sign(await softwareKey(key));
  const input = `${b64u(JSON.stringify(protectedHeader))}.${b64u(JSON.stringify(payload))}`;
  const signature = await key.external.sign(Buffer.from(input, 'ascii'));
  return `${input}.${Buffer.from(signature).toString('base64url')}`;
}

/**
 * openid-client's client authentication by private_key_jwt with this key. The assertion has the
 * claims openid-client's own PrivateKeyJwt puts in (`iss` = `sub` = client id, `aud` = the
 * server's issuer, `jti`, `iat`, `nbf`, `exp` a minute later).
 */
export async function privateKeyJwtAuth(key: JwtSigningKey): Promise<oidc.ClientAuth> {
  if (!key.external)
    return oidc.PrivateKeyJwt({ key: await softwareKey(key), kid: key.kid } as Parameters<
      typeof oidc.PrivateKeyJwt
    >[0]);
  return async (as, client, body) => {
    const now = Math.floor(Date.now() / 1000);
    body.set('client_id', client.client_id);
    body.set('client_assertion_type', 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer');
    body.set(
      'client_assertion',
      await signJwt(key, {
        jti: randomBytes(32).toString('base64url'),
        aud: as.issuer,
        exp: now + 60,
        iat: now,
        nbf: now,
        iss: client.client_id,
        sub: client.client_id,
      }),
    );
  };
}
