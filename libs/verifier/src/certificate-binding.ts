/**
 * RFC 8705 §3 — certificate-bound access tokens: `cnf.x5t#S256` is the base64url SHA-256 of the
 * DER of the client certificate the token was issued to; the certificate of the TLS connection
 * presenting the token must be that one.
 */
import { createHash, timingSafeEqual, X509Certificate } from 'node:crypto';

/**
 * The RFC 8705 §3.1 thumbprint of a certificate (an `X509Certificate`, or its DER or PEM bytes).
 *
 * @example
 * ```ts
 * import { readFileSync } from 'node:fs';
 * import { certificateThumbprint } from '@meridian/verifier';
 *
 * const x5t = certificateThumbprint(readFileSync('client.pem')); // what `cnf.x5t#S256` must say
 * ```
 */
export function certificateThumbprint(certificate: X509Certificate | Buffer | string): string {
  const der =
    certificate instanceof X509Certificate
      ? certificate.raw
      : new X509Certificate(typeof certificate === 'string' ? Buffer.from(certificate) : certificate).raw;
  return createHash('sha256').update(der).digest('base64url');
}

/**
 * True when `x5t` (from the token) names the presented certificate; false for anything unusable.
 *
 * @internal
 * @example
 * ```ts
 * certificateMatches(claims.cnf['x5t#S256'], tlsSocket.getPeerCertificate(false).raw);
 * ```
 */
export function certificateMatches(x5t: string, certificate: X509Certificate | Buffer): boolean {
  let actual: string;
  try {
    actual = certificateThumbprint(certificate);
  } catch {
    return false;
  }
  const a = Buffer.from(actual);
  const b = Buffer.from(x5t);
  return a.length === b.length && timingSafeEqual(a, b);
}
