/**
 * MERIDIAN_TRUSTED_PROXIES: the proxies whose `X-Forwarded-For` (rate limits, lockouts) and
 * client-certificate header (mTLS behind a TLS-terminating proxy) are believed. Addresses or
 * CIDR ranges — an ingress controller's pods come from a pod network, not a fixed address —
 * matched with Node's own `net.BlockList`.
 */
import { BlockList, isIP } from 'node:net';

/** Which peers are trusted proxies; `has` takes a plain IPv4 or IPv6 address. */
export interface AddressMatcher {
  has(address: string): boolean;
}

/** One entry: an address, or an address and a prefix length; undefined when it is neither. */
export function parseProxyEntry(
  entry: string,
): { address: string; prefix?: number; v6: boolean } | undefined {
  const [address = '', bits, extra] = entry.trim().split('/');
  const family = isIP(address);
  if (family === 0 || extra !== undefined) return undefined;
  if (bits === undefined) return { address, v6: family === 6 };
  if (!/^\d{1,3}$/.test(bits)) return undefined;
  const prefix = Number(bits);
  if (prefix > (family === 6 ? 128 : 32)) return undefined;
  return { address, prefix, v6: family === 6 };
}

/** A matcher for the configured entries (already validated by the configuration). */
export function trustedProxyMatcher(entries: readonly string[]): AddressMatcher {
  const list = new BlockList();
  let any = false;
  for (const raw of entries) {
    const e = parseProxyEntry(raw);
    if (!e) throw new Error(`not an address or CIDR range: ${raw}`);
    const type = e.v6 ? 'ipv6' : 'ipv4';
    if (e.prefix === undefined) list.addAddress(e.address, type);
    else list.addSubnet(e.address, e.prefix, type);
    any = true;
  }
  return {
    has(address: string): boolean {
      if (!any) return false;
      const family = isIP(address);
      return family !== 0 && list.check(address, family === 6 ? 'ipv6' : 'ipv4');
    },
  };
}
