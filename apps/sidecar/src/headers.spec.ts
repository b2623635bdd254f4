import type { VerifiedToken } from '@meridian/verifier';
import { describe, expect, it } from 'vitest';
import { downstreamResponseHeaders, identityHeaders, upstreamRequestHeaders } from './headers';

const token = (o: Partial<VerifiedToken> = {}) =>
  Object.freeze({
    sub: 'user-1',
    clientId: 'app',
    scope: ['orders:read', 'orders:write'],
    audience: 'https://orders.example.com',
    issuer: 'https://eu.id.example.com',
    region: 'eu',
    residency: { region: 'eu', jurisdiction: 'DE', processing: ['eu'] },
    claims: {} as VerifiedToken['claims'],
    expiresAt: new Date(),
    ...o,
  }) as VerifiedToken;

describe('identityHeaders', () => {
  it('names the subject, client, scope, issuer, region and residency (JSON)', () => {
    expect(identityHeaders(token())).toEqual({
      'x-meridian-sub': 'user-1',
      'x-meridian-client-id': 'app',
      'x-meridian-scope': 'orders:read orders:write',
      'x-meridian-issuer': 'https://eu.id.example.com',
      'x-meridian-region': 'eu',
      'x-meridian-residency': '{"region":"eu","jurisdiction":"DE","processing":["eu"]}',
    });
  });

  it('is memoised per verified token', () => {
    const t = token();
    expect(identityHeaders(t)).toBe(identityHeaders(t));
  });

  it('escapes non-ASCII in JSON, refuses it in plain headers', () => {
    const t = token({ residency: { region: 'eu', jurisdiction: 'Å', processing: ['eu'] } });
    expect(identityHeaders(t)['x-meridian-residency']).toBe(
      '{"region":"eu","jurisdiction":"\\u00c5","processing":["eu"]}',
    );
    expect(() => identityHeaders(token({ sub: 'a\r\nx-meridian-scope: admin' }))).toThrow(
      expect.objectContaining({ code: 'ERR_TOKEN_MALFORMED' }),
    );
    expect(() => identityHeaders(token({ sub: 'zoë' }))).toThrow(
      expect.objectContaining({ code: 'ERR_TOKEN_MALFORMED' }),
    );
  });
});

describe('upstreamRequestHeaders', () => {
  it('drops hop-by-hop fields, those named in Connection, and every x-meridian-* sent by the caller', () => {
    const out = upstreamRequestHeaders(
      {
        host: 'orders.example.com',
        connection: 'close, X-Secret',
        'x-secret': '1',
        'keep-alive': 'timeout=5',
        'transfer-encoding': 'chunked',
        upgrade: 'websocket',
        expect: '100-continue',
        'x-meridian-sub': 'admin',
        'x-meridian-anything': 'x',
        authorization: 'Bearer t',
        'x-forwarded-proto': 'https',
        accept: 'application/json',
      },
      {
        upstreamHost: '127.0.0.1:3000',
        remoteAddress: '10.1.2.3',
        proto: 'http',
        identity: { 'x-meridian-sub': 'user-1' },
      },
    );
    expect(out).toEqual({
      authorization: 'Bearer t',
      accept: 'application/json',
      host: '127.0.0.1:3000',
      'x-forwarded-for': '10.1.2.3',
      'x-forwarded-proto': 'http',
      'x-forwarded-host': 'orders.example.com',
      'x-meridian-sub': 'user-1',
    });
  });

  it('appends the peer to an existing X-Forwarded-For', () => {
    const out = upstreamRequestHeaders(
      { 'x-forwarded-for': '203.0.113.9' },
      { upstreamHost: 'u', remoteAddress: '10.0.0.1', proto: 'https', identity: {} },
    );
    expect(out['x-forwarded-for']).toBe('203.0.113.9, 10.0.0.1');
  });
});

describe('downstreamResponseHeaders', () => {
  it('keeps repeated set-cookie, drops hop-by-hop', () => {
    expect(
      downstreamResponseHeaders({
        'set-cookie': ['a=1', 'b=2'],
        connection: 'keep-alive',
        'keep-alive': 'timeout=5',
        'transfer-encoding': 'chunked',
        'content-type': 'text/plain',
      }),
    ).toEqual({ 'set-cookie': ['a=1', 'b=2'], 'content-type': 'text/plain' });
  });
});
