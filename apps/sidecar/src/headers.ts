/**
 * What crosses the proxy: hop-by-hop fields removed (RFC 9110 §7.6.1), identity headers the
 * caller sent dropped, the verified identity added.
 */
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import { VerifierError, type VerifiedToken } from '@meridian/verifier';

/** Every identity header starts with this; anything a caller sends under it is dropped. */
export const IDENTITY_PREFIX = 'x-meridian-';

/**
 * RFC 9110 §7.6.1 (connection-specific fields) plus the fields of the older proxy vocabulary
 * (RFC 2616 §13.5.1): they describe the connection they came on, not the message.
 */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'te',
  'transfer-encoding',
  'trailer',
  'upgrade',
  'proxy-authenticate',
  'proxy-authorization',
  'http2-settings',
]);

/** Field names the Connection header lists (RFC 9110 §7.6.1: also connection-specific). */
function connectionTokens(value: string | string[] | undefined): Set<string> | undefined {
  if (!value) return undefined;
  const tokens = new Set<string>();
  for (const part of (Array.isArray(value) ? value.join(',') : value).split(',')) {
    const t = part.trim().toLowerCase();
    if (t) tokens.add(t);
  }
  return tokens;
}

export interface ForwardContext {
  /** `host[:port]` of the upstream. */
  upstreamHost: string;
  /** The TCP peer of this request. */
  remoteAddress: string | undefined;
  /** Scheme the client used (x-forwarded-proto). */
  proto: string;
  /** The verified identity (see {@link identityHeaders}). */
  identity: Readonly<Record<string, string>>;
}

/**
 * The request headers sent upstream. Incoming names are lower case (node:http), so the
 * `x-meridian-` test is case-insensitive. `Authorization` (and `DPoP`) are forwarded unchanged:
 * a service may verify the token again; `Host` becomes the upstream's, the client's goes to
 * `x-forwarded-host`. `Expect` was answered here (100-continue is sent only after the check).
 */
export function upstreamRequestHeaders(
  incoming: IncomingHttpHeaders,
  ctx: ForwardContext,
): OutgoingHttpHeaders {
  const listed = connectionTokens(incoming.connection);
  const out: OutgoingHttpHeaders = {};
  for (const name in incoming) {
    if (HOP_BY_HOP.has(name) || listed?.has(name)) continue;
    if (name.startsWith(IDENTITY_PREFIX)) continue;
    if (name === 'host' || name === 'expect' || name === 'x-forwarded-proto' || name === 'x-forwarded-host')
      continue;
    out[name] = incoming[name];
  }
  const prior = incoming['x-forwarded-for'];
  const remote = ctx.remoteAddress ?? 'unknown';
  out['x-forwarded-for'] = prior ? `${Array.isArray(prior) ? prior.join(', ') : prior}, ${remote}` : remote;
  out['x-forwarded-proto'] = ctx.proto;
  if (incoming.host !== undefined) out['x-forwarded-host'] = incoming.host;
  out.host = ctx.upstreamHost;
  for (const name in ctx.identity) out[name] = ctx.identity[name];
  return out;
}

/** The upstream's response headers without its hop-by-hop fields. */
export function downstreamResponseHeaders(incoming: IncomingHttpHeaders): OutgoingHttpHeaders {
  const listed = connectionTokens(incoming.connection);
  const out: OutgoingHttpHeaders = {};
  for (const name in incoming) {
    if (HOP_BY_HOP.has(name) || listed?.has(name)) continue;
    out[name] = incoming[name];
  }
  return out;
}

/** Names of the identity headers a caller sent (for Envoy's `x-envoy-auth-headers-to-remove`). */
export function callerIdentityHeaders(incoming: IncomingHttpHeaders): string[] {
  const names: string[] = [];
  for (const name in incoming) if (name.startsWith(IDENTITY_PREFIX)) names.push(name);
  return names;
}

// Header values: visible ASCII and space only, so no service has to guess an encoding.
const HEADER_SAFE = /^[\x20-\x7E]*$/;

function escapeJson(value: unknown): string {
  return JSON.stringify(value).replace(
    /[\u007F-\uFFFF]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

const identityCache = new WeakMap<VerifiedToken, Readonly<Record<string, string>>>();

/**
 * The identity headers for a verified token: `x-meridian-sub`, `-client-id`, `-scope`
 * (space-separated), `-residency` (JSON, only when the token has the claim), `-issuer`, and
 * `-region` (the issuer's region, when the trust bundle names it). Memoised per verified token
 * (the verifier's cache hands back the same frozen object).
 */
export function identityHeaders(token: VerifiedToken): Readonly<Record<string, string>> {
  const cached = identityCache.get(token);
  if (cached) return cached;
  const headers: Record<string, string> = {
    'x-meridian-sub': token.sub,
    'x-meridian-client-id': token.clientId,
    'x-meridian-scope': token.scope.join(' '),
    'x-meridian-issuer': token.issuer,
  };
  if (token.residency !== undefined) headers['x-meridian-residency'] = escapeJson(token.residency);
  if (token.region !== undefined) headers['x-meridian-region'] = token.region;
  for (const name in headers) {
    if (!HEADER_SAFE.test(headers[name]!)) {
      // A signed token, but one whose identity cannot travel in a header without an encoding
      // the service would have to know about: refused rather than mangled.
      throw new VerifierError('ERR_TOKEN_MALFORMED', 'the access token identity cannot be forwarded', {
        detail: `${name} has characters outside printable ASCII`,
      });
    }
  }
  Object.freeze(headers);
  identityCache.set(token, headers);
  return headers;
}
