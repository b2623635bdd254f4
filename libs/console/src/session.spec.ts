import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { safeReturn } from './console.service';
import {
  checkCsrf,
  checkReview,
  csrfToken,
  deriveConsoleKeys,
  newSessionId,
  openLoginState,
  reviewToken,
  sealLoginState,
  signSessionId,
  verifySessionCookie,
} from './session';

const keys = deriveConsoleKeys(randomBytes(32), 'eu');
const other = deriveConsoleKeys(randomBytes(32), 'eu');

describe('session cookie', () => {
  it('verifies what it signed, and nothing else', () => {
    const sid = newSessionId();
    const cookie = signSessionId(keys, sid);
    expect(verifySessionCookie(keys, cookie)).toBe(sid);
    const [id, mac] = cookie.split('.') as [string, string];
    const flip = (s: string) => (s[0] === 'A' ? 'B' : 'A') + s.slice(1);
    for (const bad of [`${id}.${flip(mac)}`, `${flip(id)}.${mac}`, id, `${cookie}.x`, '', `${id}.`])
      expect(verifySessionCookie(keys, bad), bad).toBeUndefined();
    // Another broker's key (another region or KEK) signs other cookies.
    expect(verifySessionCookie(other, cookie)).toBeUndefined();
    expect(verifySessionCookie(deriveConsoleKeys(Buffer.alloc(32, 1), 'us'), cookie)).toBeUndefined();
  });
});

describe('CSRF and review tokens', () => {
  it('a CSRF token belongs to one session', () => {
    const a = newSessionId();
    const b = newSessionId();
    expect(checkCsrf(keys, a, csrfToken(keys, a))).toBe(true);
    expect(checkCsrf(keys, b, csrfToken(keys, a))).toBe(false);
    expect(checkCsrf(keys, a, undefined)).toBe(false);
    expect(checkCsrf(keys, a, [csrfToken(keys, a)])).toBe(false);
  });

  it('a review token names the policy, the exact document and the session', () => {
    const sid = newSessionId();
    const token = reviewToken(keys, sid, 'eu-gdpr', '{"a":1}');
    expect(checkReview(keys, sid, 'eu-gdpr', '{"a":1}', token)).toBe(true);
    expect(checkReview(keys, sid, 'eu-gdpr', '{"a":2}', token)).toBe(false);
    expect(checkReview(keys, sid, 'us-default', '{"a":1}', token)).toBe(false);
    expect(checkReview(keys, newSessionId(), 'eu-gdpr', '{"a":1}', token)).toBe(false);
  });
});

describe('login state cookie', () => {
  it('sealed: opened only by the same key, only before it expires', () => {
    const state = {
      state: 's',
      nonce: 'n',
      codeVerifier: 'v',
      returnTo: '/keys',
      exp: Date.now() / 1000 + 60,
    };
    const sealed = sealLoginState(keys, state);
    expect(openLoginState(keys, sealed)).toEqual(state);
    expect(openLoginState(other, sealed)).toBeUndefined();
    expect(openLoginState(keys, sealed.slice(0, -4) + 'AAAA')).toBeUndefined();
    expect(
      openLoginState(keys, sealLoginState(keys, { ...state, exp: Date.now() / 1000 - 1 })),
    ).toBeUndefined();
  });
});

describe('safeReturn', () => {
  it('only console paths, never another origin', () => {
    expect(safeReturn('/policies/eu-gdpr?x=1')).toBe('/policies/eu-gdpr?x=1');
    for (const bad of [
      '//evil.example',
      'https://evil.example',
      '/\\evil.example',
      'keys',
      '/a\r\nb',
      null,
      '/',
    ])
      expect(safeReturn(bad)).toBe('');
  });
});
