/**
 * Where a request comes from, as far as limits and lockouts are concerned: the TCP peer, unless
 * the peer is one of the explicitly configured trusted proxies (MERIDIAN_TRUSTED_PROXIES, the
 * same list that decides whose client-certificate header is believed). Only then does
 * `X-Forwarded-For` count, read from the right: the first address that is not itself a trusted
 * proxy is the one the nearest trusted proxy saw. Anything a client writes into that header
 * left of it — or the header as a whole, from an untrusted peer — changes nothing, so a forged
 * header cannot move a request into a fresh bucket.
 */
import type { IncomingMessage } from 'node:http';
import { isIP } from 'node:net';
import type { AddressMatcher } from '@meridian/config';

/** `::ffff:192.0.2.1` → `192.0.2.1`; other addresses unchanged (lower case). */
export function normalizeAddress(address: string): string {
  const a = address.trim().toLowerCase();
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/.exec(a);
  return mapped ? mapped[1]! : a;
}

/** One X-Forwarded-For element: an address, `[v6]`, `[v6]:port` or `v4:port`. */
function hopAddress(raw: string): string {
  const h = raw.trim();
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(h);
  if (bracketed) return normalizeAddress(bracketed[1]!);
  const v4 = /^(\d{1,3}(?:\.\d{1,3}){3}):\d+$/.exec(h);
  return normalizeAddress(v4 ? v4[1]! : h);
}

/** The client's address for a request that reached us from `peer` with these XFF values. */
export function clientAddress(
  peer: string | undefined,
  forwardedFor: string | string[] | undefined,
  trustedProxies: AddressMatcher,
): string {
  let current = normalizeAddress(peer ?? '');
  if (!current || !trustedProxies.has(current) || forwardedFor === undefined) return current || 'unknown';
  // Several X-Forwarded-For lines are one list (RFC 9110 §5.3).
  const hops = (Array.isArray(forwardedFor) ? forwardedFor.join(',') : forwardedFor)
    .split(',')
    .map(hopAddress);
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = hops[i]!;
    // Garbage where an address should be: stop at the last address a trusted proxy vouched for.
    if (isIP(hop) === 0) return current;
    current = hop;
    if (!trustedProxies.has(hop)) return hop;
  }
  return current;
}

/**
 * The bucket an address counts against: IPv4 as is, IPv6 by its /64 (one subscriber usually
 * holds a whole /64; per-address buckets would give one attacker 2^64 of them).
 */
export function sourceKey(address: string): string {
  if (isIP(address) !== 6) return address;
  const [head = '', tail = ''] = address.split('::');
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const groups = address.includes('::')
    ? [...left, ...Array<string>(Math.max(0, 8 - left.length - right.length)).fill('0'), ...right]
    : left;
  return `${groups
    .slice(0, 4)
    .map((g) => (g || '0').replace(/^0+(?=.)/, ''))
    .join(':')}::/64`;
}

const sources = new WeakMap<IncomingMessage, string>();

/** The source key of a request, computed once (by the dispatcher) and read by the OP hooks. */
export function requestSource(req: IncomingMessage, trustedProxies: AddressMatcher): string {
  let key = sources.get(req);
  if (key === undefined) {
    key = sourceKey(clientAddress(req.socket.remoteAddress, req.headers['x-forwarded-for'], trustedProxies));
    sources.set(req, key);
  }
  return key;
}
