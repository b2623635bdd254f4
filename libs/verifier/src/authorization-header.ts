/**
 * Reading the credentials of a request: `Authorization: Bearer <token>` (RFC 6750 §2.1) or
 * `Authorization: DPoP <token>` with a `DPoP: <proof>` header (RFC 9449 §7.1).
 */
import { VerifierError } from './errors';

/**
 * What {@link readCredentials} found in a request's headers.
 *
 * @example
 * ```ts
 * import type { PresentedCredentials } from '@meridian/verifier';
 *
 * const usesDpop = (c: PresentedCredentials) => c.scheme === 'DPoP';
 * ```
 */
export interface PresentedCredentials {
  scheme: 'Bearer' | 'DPoP';
  token: string;
  /** The `DPoP` header (only read with the DPoP scheme). */
  proof?: string;
}

// RFC 6750 §2.1 b68token; the auth-scheme is case-insensitive (RFC 9110 §11.1).
const CREDENTIALS = /^(Bearer|DPoP)[ ]+([A-Za-z0-9\-._~+/]+=*)[ ]*$/i;

type HeaderValue = string | string[] | undefined;

/**
 * Extracts the access token (and DPoP proof) from `authorization` and `dpop` header values.
 * Returns undefined when there is no Bearer/DPoP credential at all (→ `ERR_TOKEN_MISSING`);
 * throws `ERR_TOKEN_MALFORMED` for a garbled one and `ERR_DPOP_INVALID` for repeated DPoP headers.
 *
 * @example
 * ```ts
 * import { readCredentials } from '@meridian/verifier';
 *
 * const creds = readCredentials(req.headers.authorization, req.headers.dpop);
 * const token = await verifier.verify(creds?.token, creds?.scheme === 'DPoP'
 *   ? { dpop: { proof: creds.proof ?? '', method: req.method, url: `https://orders.example.com${req.url}` } }
 *   : {});
 * ```
 */
export function readCredentials(
  authorization: HeaderValue,
  dpop?: HeaderValue,
): PresentedCredentials | undefined {
  if (authorization === undefined || authorization === '') return undefined;
  if (Array.isArray(authorization)) {
    throw new VerifierError('ERR_TOKEN_MALFORMED', 'more than one Authorization header was sent');
  }
  const match = CREDENTIALS.exec(authorization);
  if (!match) {
    // Another scheme (Basic, …) carries no access token; a Bearer/DPoP one we cannot read is garbled.
    if (/^(Bearer|DPoP)(\s|$)/i.test(authorization)) {
      throw new VerifierError(
        'ERR_TOKEN_MALFORMED',
        'the Authorization header is not "Bearer <token>" or "DPoP <token>"',
      );
    }
    return undefined;
  }
  const scheme = match[1]!.toLowerCase() === 'dpop' ? 'DPoP' : 'Bearer';
  const token = match[2]!;
  if (scheme === 'Bearer') return { scheme, token };
  // RFC 9449 §4.3 check 1: exactly one DPoP header (Node joins repeated ones with ", ").
  if (Array.isArray(dpop) || (typeof dpop === 'string' && dpop.includes(','))) {
    throw new VerifierError('ERR_DPOP_INVALID', 'more than one DPoP header was sent', { scheme: 'DPoP' });
  }
  return dpop ? { scheme, token, proof: dpop.trim() } : { scheme, token };
}
