import { describe, expect, it } from 'vitest';
import { parseProxyEntry, trustedProxyMatcher } from '@meridian/config';
import { clientAddress, sourceKey } from './source-address';

const TRUSTED = new Set(['10.0.0.1', '10.0.0.2']);

describe('the source address of a request (MERIDIAN_TRUSTED_PROXIES)', () => {
  it('is the TCP peer when the peer is not a trusted proxy, whatever X-Forwarded-For says', () => {
    expect(clientAddress('198.51.100.7', '203.0.113.9', TRUSTED)).toBe('198.51.100.7');
    expect(clientAddress('198.51.100.7', ['203.0.113.9', '10.0.0.1'], TRUSTED)).toBe('198.51.100.7');
  });

  it('behind a trusted proxy, is the address that proxy saw (the rightmost untrusted hop)', () => {
    expect(clientAddress('10.0.0.1', '203.0.113.9', TRUSTED)).toBe('203.0.113.9');
    // The client prepended a forged hop: the proxy appended the real one; the forgery is ignored.
    expect(clientAddress('10.0.0.1', '192.0.2.66, 203.0.113.9', TRUSTED)).toBe('203.0.113.9');
    // Two trusted proxies in a row.
    expect(clientAddress('10.0.0.1', '192.0.2.66, 203.0.113.9, 10.0.0.2', TRUSTED)).toBe('203.0.113.9');
  });

  it('stops at garbage in the header (the last address a trusted proxy vouched for)', () => {
    expect(clientAddress('10.0.0.1', 'not-an-ip', TRUSTED)).toBe('10.0.0.1');
    expect(clientAddress('10.0.0.1', '203.0.113.9, unknown', TRUSTED)).toBe('10.0.0.1');
  });

  it('reads ports and brackets, and IPv4-mapped IPv6 peers', () => {
    expect(clientAddress('::ffff:10.0.0.1', '203.0.113.9:4711', TRUSTED)).toBe('203.0.113.9');
    expect(clientAddress('10.0.0.1', '[2001:db8::1]:443', TRUSTED)).toBe('2001:db8::1');
    expect(clientAddress('10.0.0.1', '2001:db8::1', TRUSTED)).toBe('2001:db8::1');
    expect(clientAddress('::ffff:198.51.100.7', undefined, TRUSTED)).toBe('198.51.100.7');
  });

  it('buckets IPv6 by /64, IPv4 by address', () => {
    expect(sourceKey('2001:db8:1:2:aaaa::1')).toBe('2001:db8:1:2::/64');
    expect(sourceKey('2001:db8:1:2:bbbb:cccc:dddd:eeee')).toBe('2001:db8:1:2::/64');
    expect(sourceKey('2001:db8::1')).toBe('2001:db8:0:0::/64');
    expect(sourceKey('::1')).toBe('0:0:0:0::/64');
    expect(sourceKey('203.0.113.9')).toBe('203.0.113.9');
  });
});

describe('MERIDIAN_TRUSTED_PROXIES as CIDR ranges (an ingress on a pod network)', () => {
  const PODS = trustedProxyMatcher(['10.42.0.0/16', 'fd00:42::/64', '192.0.2.10']);

  it('believes X-Forwarded-For from any address in a range, and from a single address', () => {
    expect(clientAddress('10.42.7.19', '203.0.113.9', PODS)).toBe('203.0.113.9');
    expect(clientAddress('fd00:42::beef', '203.0.113.9', PODS)).toBe('203.0.113.9');
    expect(clientAddress('192.0.2.10', '203.0.113.9', PODS)).toBe('203.0.113.9');
    // Proxies chained inside the range are skipped, right to left.
    expect(clientAddress('10.42.0.5', '198.51.100.1, 203.0.113.9, 10.42.3.3', PODS)).toBe('203.0.113.9');
  });

  it('ignores the header from just outside a range (a forged header changes nothing)', () => {
    expect(clientAddress('10.43.0.1', '203.0.113.9', PODS)).toBe('10.43.0.1');
    expect(clientAddress('fd00:43::1', '203.0.113.9', PODS)).toBe('fd00:43::1');
    expect(clientAddress('192.0.2.11', '203.0.113.9', PODS)).toBe('192.0.2.11');
    expect(clientAddress('::ffff:10.43.0.1', '203.0.113.9', PODS)).toBe('10.43.0.1');
  });

  it('an empty list trusts no one', () => {
    expect(clientAddress('10.42.0.1', '203.0.113.9', trustedProxyMatcher([]))).toBe('10.42.0.1');
  });

  it('parses addresses and ranges, and nothing else', () => {
    expect(parseProxyEntry('10.0.0.0/8')).toEqual({ address: '10.0.0.0', prefix: 8, v6: false });
    expect(parseProxyEntry('::1')).toEqual({ address: '::1', v6: true });
    for (const bad of [
      '10.0.0.0/33',
      'fd00::/129',
      '10.0.0.0/',
      '10.0.0.0/8/1',
      'proxy.local',
      '10.0.0.0/-1',
      '',
    ])
      expect(parseProxyEntry(bad), bad).toBeUndefined();
  });
});
