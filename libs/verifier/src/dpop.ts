/**
 * RFC 9449 §4.3 — checking a DPoP proof presented with a DPoP-bound access token (§7.1).
 * Server-provided nonces (§8, §9) are not used.
 */
import { createHash } from 'node:crypto';
import { calculateJwkThumbprint, compactVerify, importJWK, type CryptoKey, type JWK } from 'jose';
import { DPOP_ALGORITHMS, VerifierError, quoted } from './errors';
import type { DpopReplayStore } from './types';

const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;
const PROOF_ALGS = new Set(DPOP_ALGORITHMS);
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k', 'priv'];
const MAX_PROOF_BYTES = 8192;

/**
 * Everything {@link verifyDpopProof} compares a proof with.
 *
 * @internal
 * @example
 * ```ts
 * const check: DpopCheck = { proof, method: 'GET', url, accessToken, jkt, now: Date.now(), windowSeconds: 60, leewaySeconds: 30, replay };
 * ```
 */
export interface DpopCheck {
  proof: string;
  method: string;
  url: string;
  /** The access token the proof accompanies (for `ath`). */
  accessToken: string;
  /** `cnf.jkt` of the access token. */
  jkt: string;
  now: number;
  windowSeconds: number;
  leewaySeconds: number;
  replay: DpopReplayStore;
}

function invalid(description: string, detail?: string): VerifierError {
  return new VerifierError('ERR_DPOP_INVALID', description, { detail, scheme: 'DPoP' });
}

function decodeJson(segment: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(Buffer.from(segment, 'base64url').toString('utf8'));
    return typeof value === 'object' && value !== null && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

/**
 * RFC 9449 §4.3 check 9: `htu` compared without query and fragment, after URL normalisation.
 *
 * @internal
 * @example
 * ```ts
 * normalizeHtu('HTTPS://Orders.Example.com:443/a?b#c'); // 'https://orders.example.com/a'
 * ```
 */
export function normalizeHtu(value: string): string | undefined {
  try {
    const url = new URL(value);
    if (url.protocol !== 'https:' && url.protocol !== 'http:') return undefined;
    return `${url.protocol}//${url.host}${url.pathname}`;
  } catch {
    return undefined;
  }
}

/**
 * `ath`: base64url of the SHA-256 of the access token's ASCII bytes (RFC 9449 §4.2).
 *
 * @internal
 * @example
 * ```ts
 * const proof = await new SignJWT({ htm, htu, iat, jti, ath: accessTokenHash(accessToken) })
 * ```
 */
export function accessTokenHash(token: string): string {
  return createHash('sha256').update(token, 'ascii').digest('base64url');
}

/**
 * RFC 9449 §4.3 checks 2–12 and §7.1 (ath, jkt), then the replay cache. Throws a
 * {@link VerifierError} (`ERR_DPOP_INVALID`, `ERR_DPOP_REPLAY`, `ERR_TOKEN_BINDING`).
 *
 * @internal
 * @example
 * ```ts
 * await verifyDpopProof({ proof, method: 'GET', url: 'https://orders.example.com/orders', accessToken, jkt, now: Date.now(), windowSeconds: 60, leewaySeconds: 30, replay });
 * ```
 */
export async function verifyDpopProof(c: DpopCheck): Promise<void> {
  // Check 1 (one header) is the transport's; a joined repeated header has a comma, not a JWS.
  if (typeof c.proof !== 'string' || c.proof.length === 0) {
    throw new VerifierError(
      'ERR_TOKEN_BINDING',
      'the DPoP-bound access token was presented without a DPoP proof',
      {
        scheme: 'DPoP',
      },
    );
  }
  if (c.proof.length > MAX_PROOF_BYTES || !COMPACT_JWS.test(c.proof)) {
    throw invalid('the DPoP proof is not a single well-formed JWS');
  }
  const [h, p] = c.proof.split('.') as [string, string, string];
  const header = decodeJson(h);
  const claims = decodeJson(p);
  if (!header || !claims) throw invalid('the DPoP proof is not a JWT');
  // Check 4: explicit typing (also RFC 8725 §3.11).
  if (header.typ !== 'dpop+jwt')
    throw invalid('the DPoP proof must have typ "dpop+jwt"', `typ=${quoted(header.typ)}`);
  // Check 5: asymmetric and supported; never "none" nor a MAC.
  const alg = header.alg;
  if (typeof alg !== 'string' || !PROOF_ALGS.has(alg)) {
    throw invalid('the DPoP proof algorithm is not allowed', `alg=${quoted(alg)}`);
  }
  if ('crit' in header) throw invalid('the DPoP proof carries a "crit" header that is not understood');
  for (const member of ['jku', 'x5u', 'x5c']) {
    if (member in header) throw invalid(`the DPoP proof must carry its key in "jwk" only, not "${member}"`);
  }
  // Check 7: a public key, nothing private.
  const jwk = header.jwk;
  if (typeof jwk !== 'object' || jwk === null || Array.isArray(jwk)) {
    throw invalid('the DPoP proof has no "jwk" header');
  }
  if (PRIVATE_MEMBERS.some((m) => m in jwk)) throw invalid('the DPoP proof "jwk" must be a public key');
  let key: CryptoKey;
  try {
    key = (await importJWK(jwk as JWK, alg)) as CryptoKey;
  } catch (err) {
    throw new VerifierError('ERR_DPOP_INVALID', 'the DPoP proof "jwk" is not a usable key for its alg', {
      cause: err,
      scheme: 'DPoP',
    });
  }
  // Check 6: the signature, with the key in the proof itself.
  try {
    await compactVerify(c.proof, key, { algorithms: [alg] });
  } catch (err) {
    throw new VerifierError('ERR_DPOP_INVALID', 'the DPoP proof signature is invalid', {
      cause: err,
      scheme: 'DPoP',
    });
  }
  // Check 3: required claims.
  const { jti, htm, htu, iat, ath } = claims;
  if (typeof jti !== 'string' || jti.length === 0 || jti.length > 256)
    throw invalid('the DPoP proof needs a "jti"');
  if (typeof htm !== 'string') throw invalid('the DPoP proof needs "htm"');
  if (typeof htu !== 'string') throw invalid('the DPoP proof needs "htu"');
  if (typeof iat !== 'number' || !Number.isFinite(iat)) throw invalid('the DPoP proof needs a numeric "iat"');
  // Check 8.
  if (htm !== c.method)
    throw invalid('the DPoP proof was made for another HTTP method', `htm=${quoted(htm)}`);
  // Check 9.
  const expected = normalizeHtu(c.url);
  if (expected === undefined || normalizeHtu(htu) !== expected) {
    throw invalid('the DPoP proof was made for another URL', `htu=${quoted(htu)}`);
  }
  // Check 11: a recent proof; a little leeway for a client clock running ahead.
  const nowSeconds = c.now / 1000;
  if (iat < nowSeconds - c.windowSeconds || iat > nowSeconds + c.leewaySeconds) {
    throw invalid('the DPoP proof is not recent', `iat=${iat}`);
  }
  // Check 12 (§7.1): the proof is for this access token.
  if (ath !== accessTokenHash(c.accessToken))
    throw invalid('the DPoP proof "ath" does not match the access token');
  // Check 12 (§7.1): the proof key is the one the token is bound to.
  const thumbprint = await calculateJwkThumbprint(jwk as JWK, 'sha256');
  if (thumbprint !== c.jkt) {
    throw new VerifierError(
      'ERR_TOKEN_BINDING',
      'the access token is bound to another key than the DPoP proof',
      {
        scheme: 'DPoP',
      },
    );
  }
  // §11.1: a proof is single-use within its window. Remembered only once everything else held.
  const first = await c.replay.checkAndRemember(
    `${thumbprint}:${jti}`,
    Math.ceil((iat + c.windowSeconds + c.leewaySeconds) * 1000),
  );
  if (!first) {
    throw new VerifierError('ERR_DPOP_REPLAY', 'the DPoP proof has been used before', { scheme: 'DPoP' });
  }
}
