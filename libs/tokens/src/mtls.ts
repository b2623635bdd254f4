/**
 * RFC 8705 mutual TLS: where the client certificate comes from, and how oidc-provider asks
 * about it. A certificate comes from this process's own TLS listener, or from a configured
 * trusted proxy's header; a certificate header from anyone else is dropped before routing.
 */
import { X509Certificate } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { AddressMatcher } from '@meridian/config';

export const CLIENT_CERT = Symbol.for('meridian.client-certificate');

export interface PresentedCertificate {
  pem: string;
  /** Chains to a configured client CA (tls_client_auth); self-signed ones are not. */
  authorized: boolean;
}

type WithCert = IncomingMessage & { [CLIENT_CERT]?: PresentedCertificate };

function normaliseAddress(address: string | undefined): string {
  return (address ?? '').replace(/^::ffff:/, '');
}

/**
 * Reads the client certificate of a request and removes any certificate header that did not
 * come from a trusted proxy, so nothing downstream can be fooled by a spoofed one.
 */
export function attachClientCertificate(
  req: IncomingMessage,
  o: { trustedProxies: AddressMatcher; header: string },
): void {
  const verifyHeader = `${o.header}-verify`;
  const fromHeader = req.headers[o.header];
  const verified = req.headers[verifyHeader];
  delete req.headers[o.header];
  delete req.headers[verifyHeader];
  const socket = req.socket as TLSSocket;
  if (socket.encrypted) {
    const peer = socket.getPeerX509Certificate?.();
    if (peer)
      (req as WithCert)[CLIENT_CERT] = { pem: peer.toString(), authorized: socket.authorized === true };
    return;
  }
  if (typeof fromHeader === 'string' && o.trustedProxies.has(normaliseAddress(req.socket.remoteAddress))) {
    try {
      const pem = decodeURIComponent(fromHeader);
      new X509Certificate(pem); // parse or drop
      (req as WithCert)[CLIENT_CERT] = { pem, authorized: verified === 'SUCCESS' };
    } catch {
      // an unparseable header is no certificate
    }
  }
}

export function presentedCertificate(req: IncomingMessage): PresentedCertificate | undefined {
  return (req as WithCert)[CLIENT_CERT];
}

/** RFC 4514 distinguished names compared as sets of attribute=value pairs (order and spacing free). */
export function subjectDnMatches(pem: string, expected: string): boolean {
  const actual = new X509Certificate(pem).subject.split('\n');
  const want = expected.split(/(?<!\\),/);
  const norm = (parts: string[]) =>
    parts
      .map((p) => p.trim())
      .filter(Boolean)
      .map((p) => {
        const i = p.indexOf('=');
        return `${p.slice(0, i).trim().toUpperCase()}=${p.slice(i + 1).trim()}`;
      })
      .sort()
      .join(',');
  return norm(actual) === norm(want);
}
